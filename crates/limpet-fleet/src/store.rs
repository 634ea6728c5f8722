//! Storage: SQLite (a file, embedded, no setup) or PostgreSQL (a `postgres://` URL), one
//! schema and one code path (sqlx's Any driver), migrations embedded in the binary.
//!
//! Rules kept here:
//! - A check-in is stored whole or not at all, in one transaction: the device row's sequence
//!   number moves only forward (the update names the old number, so two concurrent
//!   check-ins with one number cannot both land), and a replay stores nothing
//!   ([`Store::check_in`]).
//! - A report that changes the device's state is kept as signed (canonical JSON and
//!   signature) in `reports`; an unchanged one only moves the device row forward.
//! - Every SQL text is the same for both engines: `$n` parameters, TEXT and BIGINT only.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row};
use thiserror::Error;

use crate::halt::{DeviceState, RawThresholds};
use crate::hold::SignedHold;
use crate::report::{Outcome, Report, ReportError, VerifiedReport};
use crate::waves::RawReleaseWaves;

/// The migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "fleet", include_str!("../migrations/0001_fleet.sql"))];

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("database URL {url:?}: expected sqlite://PATH or postgres://…")]
    Url {
        /// The URL, without its password.
        url: String,
    },
    /// The database could not be opened.
    #[error("opening database {url:?}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("migrating the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query ({what})")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The report is refused (a replay); nothing was stored.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A rollout for the release exists already.
    #[error("a rollout of {release} exists already")]
    RolloutExists {
        /// The release.
        release: String,
    },
    /// No rollout for the release.
    #[error("no rollout of {release}")]
    NoRollout {
        /// The release.
        release: String,
    },
    /// A stored value does not read back (a database written by something else).
    #[error("stored {what} is corrupt: {problem}")]
    Corrupt {
        /// What.
        what: &'static str,
        /// How.
        problem: String,
    },
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>>
    {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The fleet server's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

/// What a stored check-in did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckIn {
    /// The device's state changed (or it is new): the report was kept.
    Changed,
    /// Same state as before: only the sequence number and time moved.
    Unchanged,
}

/// A device as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Key, hex.
    pub device: String,
    /// Last sequence number.
    pub last_seq: i64,
    /// First check-in, server time.
    pub first_seen: i64,
    /// Last check-in, server time.
    pub last_seen: i64,
    /// Running version.
    pub running: String,
    /// Other slot's version.
    pub other: Option<String>,
    /// Last update outcome.
    pub last_outcome: String,
    /// The release it concerned.
    pub last_release: Option<String>,
    /// The latest signed report (canonical JSON).
    pub last_report: String,
    /// Its signature, hex.
    pub last_signature: String,
}

/// A stored signed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// Sequence number.
    pub seq: i64,
    /// Server time received.
    pub received: i64,
    /// Outcome.
    pub outcome: String,
    /// Release.
    pub release: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// Canonical JSON as signed.
    pub report: String,
    /// Signature, hex.
    pub signature: String,
}

/// Whether a rollout goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Rolling out.
    Active,
    /// Halted (by the rule or an operator).
    Halted,
}

impl RolloutState {
    fn as_str(self) -> &'static str {
        match self {
            RolloutState::Active => "active",
            RolloutState::Halted => "halted",
        }
    }
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The release.
    pub release: String,
    /// Created, server time.
    pub created: i64,
    /// The release's waves as in the signed metadata.
    pub waves: RawReleaseWaves,
    /// The signed metadata's `max_hold_secs`.
    pub max_hold_secs: u64,
    /// The halt thresholds.
    pub thresholds: RawThresholds,
    /// Active or halted.
    pub state: RolloutState,
    /// Why it halted.
    pub halt_reason: Option<String>,
    /// Reports from this server time on count.
    pub counted_from: i64,
}

/// Hex SHA-256, for session tokens.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// `conflict()` when `e` is a unique-key violation (a concurrent writer got there first),
/// else the query error.
fn unique_or(
    e: sqlx::Error,
    conflict: impl FnOnce() -> StoreError,
    what: &'static str,
) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => conflict(),
        _ => StoreError::Query { what, source: e },
    }
}

fn hold_json(hold: &SignedHold) -> Result<String, StoreError> {
    serde_json::to_string(hold).map_err(|e| StoreError::Corrupt {
        what: "hold",
        problem: e.to_string(),
    })
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating a SQLite file when missing) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (engine, url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            let url = if rest.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            (Engine::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url { url: redact(url) });
        };
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time: more connections only wait on its lock.
            .max_connections(if engine == Engine::Sqlite { 1 } else { 8 })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                url: redact(&url),
                source,
            })?;
        if engine == Engine::Sqlite {
            // Write-ahead logging: a commit is one append and one fsync of the log instead of
            // the rollback journal's several (a stored check-in is still on disk when it is
            // answered), and the dashboard's reads do not wait for the writer. The mode is
            // kept in the database file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| StoreError::Open {
                    url: redact(&url),
                    source,
                })?;
        }
        Migrator::new(Embedded)
            .await
            .map_err(StoreError::Migrate)?
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Store { pool, engine })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores a verified report received at server time `now`, or refuses it as a replay
    /// (storing nothing).
    pub async fn check_in(&self, v: &VerifiedReport, now: i64) -> Result<CheckIn, StoreError> {
        let r = &v.report;
        let seq = int(r.seq);
        let mut tx = self.pool.begin().await.map_err(q("begin check-in"))?;
        let row = sqlx::query("SELECT last_seq, last_report FROM devices WHERE device = $1")
            .bind(&r.device)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read device"))?;
        let previous = match &row {
            Some(row) => {
                let last_seq: i64 = row.try_get(0).map_err(q("read device"))?;
                let last: String = row.try_get(1).map_err(q("read device"))?;
                crate::report::check_fresh(r, Some(uint(last_seq)))?;
                Some((last_seq, last))
            }
            None => None,
        };
        let changed = match &previous {
            Some((_, last)) => match serde_json::from_str::<Report>(last) {
                Ok(last) => !last.state_eq(r),
                Err(_) => true,
            },
            None => true,
        };
        let replay = || {
            StoreError::Report(ReportError::Replayed {
                device: r.device.clone(),
                seq: r.seq,
                stored: previous.as_ref().map_or(r.seq, |p| uint(p.0)),
            })
        };
        let outcome = r.last_update.outcome.as_str();
        let release = r.last_update.release.as_deref();
        match &previous {
            None => {
                sqlx::query(
                    "INSERT INTO devices (device, last_seq, first_seen, last_seen, running, other, \
                     last_outcome, last_release, last_report, last_signature) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&r.device)
                .bind(seq)
                .bind(now)
                .bind(&r.running)
                .bind(r.other.as_deref())
                .bind(outcome)
                .bind(release)
                .bind(&v.canonical)
                .bind(&v.signature)
                .execute(&mut *tx)
                .await
                // A concurrent first check-in of the same device got there first.
                .map_err(|e| unique_or(e, replay, "insert device"))?;
            }
            Some((last_seq, _)) => {
                let done = sqlx::query(
                    "UPDATE devices SET last_seq = $2, last_seen = $3, running = $4, other = $5, \
                     last_outcome = $6, last_release = $7, last_report = $8, last_signature = $9 \
                     WHERE device = $1 AND last_seq = $10",
                )
                .bind(&r.device)
                .bind(seq)
                .bind(now)
                .bind(&r.running)
                .bind(r.other.as_deref())
                .bind(outcome)
                .bind(release)
                .bind(&v.canonical)
                .bind(&v.signature)
                .bind(*last_seq)
                .execute(&mut *tx)
                .await
                .map_err(q("update device"))?;
                if done.rows_affected() != 1 {
                    return Err(replay());
                }
            }
        }
        if changed {
            sqlx::query(
                "INSERT INTO reports (device, seq, received, outcome, release_name, reason, report, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&r.device)
            .bind(seq)
            .bind(now)
            .bind(outcome)
            .bind(release)
            .bind(r.last_update.reason.as_deref())
            .bind(&v.canonical)
            .bind(&v.signature)
            .execute(&mut *tx)
            .await
            .map_err(|e| unique_or(e, replay, "insert report"))?;
        }
        tx.commit().await.map_err(q("commit check-in"))?;
        Ok(if changed {
            CheckIn::Changed
        } else {
            CheckIn::Unchanged
        })
    }

    fn device_of(row: &AnyRow) -> Result<Device, StoreError> {
        Ok(Device {
            device: row.try_get(0).map_err(q("read device"))?,
            last_seq: row.try_get(1).map_err(q("read device"))?,
            first_seen: row.try_get(2).map_err(q("read device"))?,
            last_seen: row.try_get(3).map_err(q("read device"))?,
            running: row.try_get(4).map_err(q("read device"))?,
            other: row.try_get(5).map_err(q("read device"))?,
            last_outcome: row.try_get(6).map_err(q("read device"))?,
            last_release: row.try_get(7).map_err(q("read device"))?,
            last_report: row.try_get(8).map_err(q("read device"))?,
            last_signature: row.try_get(9).map_err(q("read device"))?,
        })
    }

    const DEVICE_COLUMNS: &'static str =
        "device, last_seq, first_seen, last_seen, running, other, \
        last_outcome, last_release, last_report, last_signature";

    /// One device.
    pub async fn device(&self, device: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM devices WHERE device = $1",
            Self::DEVICE_COLUMNS
        ))
        .bind(device)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read device"))?;
        row.as_ref().map(Self::device_of).transpose()
    }

    /// Devices, most recently seen first, at most `limit`.
    pub async fn devices(&self, limit: i64) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM devices ORDER BY last_seen DESC, device LIMIT $1",
            Self::DEVICE_COLUMNS
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list devices"))?;
        rows.iter().map(Self::device_of).collect()
    }

    /// A device's stored reports, newest first, at most `limit`.
    pub async fn reports(&self, device: &str, limit: i64) -> Result<Vec<StoredReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, received, outcome, release_name, reason, report, signature FROM reports \
             WHERE device = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(device)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list reports"))?;
        rows.iter()
            .map(|row| {
                let e = || q("read report");
                Ok(StoredReport {
                    seq: row.try_get(0).map_err(e())?,
                    received: row.try_get(1).map_err(e())?,
                    outcome: row.try_get(2).map_err(e())?,
                    release: row.try_get(3).map_err(e())?,
                    reason: row.try_get(4).map_err(e())?,
                    report: row.try_get(5).map_err(e())?,
                    signature: row.try_get(6).map_err(e())?,
                })
            })
            .collect()
    }

    /// How many devices run each version, most first.
    pub async fn version_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT running, COUNT(*) AS n FROM devices GROUP BY running ORDER BY n DESC, running",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("count versions"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(q("count versions"))?,
                    row.try_get(1).map_err(q("count versions"))?,
                ))
            })
            .collect()
    }

    /// Every device's latest state for `release` from reports received at or after `since`,
    /// with its key: what the halt rule counts.
    pub async fn release_states(
        &self,
        release: &str,
        since: i64,
    ) -> Result<Vec<(String, DeviceState)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, outcome, received FROM reports WHERE release_name = $1 AND received >= $2 \
             ORDER BY device, seq",
        )
        .bind(release)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read release reports"))?;
        let mut out: Vec<(String, DeviceState)> = Vec::new();
        for row in &rows {
            let device: String = row.try_get(0).map_err(q("read release reports"))?;
            let outcome: String = row.try_get(1).map_err(q("read release reports"))?;
            let received: i64 = row.try_get(2).map_err(q("read release reports"))?;
            let state = match Outcome::parse(&outcome) {
                Some(Outcome::Downloaded) => DeviceState::Downloaded { at: received },
                Some(Outcome::Installed) => DeviceState::Installed,
                Some(Outcome::InstallError) => DeviceState::InstallError,
                Some(Outcome::RolledBack) => DeviceState::RolledBack,
                Some(Outcome::None) => continue,
                None => {
                    return Err(StoreError::Corrupt {
                        what: "report outcome",
                        problem: outcome,
                    })
                }
            };
            match out.last_mut() {
                Some((d, prev)) if *d == device => {
                    // A download still awaiting its outcome keeps its first time.
                    if !matches!(
                        (*prev, state),
                        (
                            DeviceState::Downloaded { .. },
                            DeviceState::Downloaded { .. }
                        )
                    ) {
                        *prev = state;
                    }
                }
                _ => out.push((device, state)),
            }
        }
        Ok(out)
    }

    /// Creates a rollout (active, counting from `now`).
    pub async fn create_rollout(
        &self,
        release: &str,
        waves: &RawReleaseWaves,
        max_hold_secs: u64,
        thresholds: RawThresholds,
        now: i64,
    ) -> Result<(), StoreError> {
        let waves_json = serde_json::to_string(waves).map_err(|e| StoreError::Corrupt {
            what: "waves",
            problem: e.to_string(),
        })?;
        let exists = || StoreError::RolloutExists {
            release: release.to_owned(),
        };
        if self.rollout(release).await?.is_some() {
            return Err(exists());
        }
        sqlx::query(
            "INSERT INTO rollouts (release_name, created, waves, max_hold_secs, max_failure_bp, \
             min_reports, report_deadline_secs, state, halt_reason, counted_from) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', NULL, $2)",
        )
        .bind(release)
        .bind(now)
        .bind(waves_json)
        .bind(int(max_hold_secs))
        .bind(i64::from(thresholds.max_failure_bp))
        .bind(i64::from(thresholds.min_reports))
        .bind(int(thresholds.report_deadline_secs))
        .execute(&self.pool)
        .await
        .map_err(|e| unique_or(e, exists, "insert rollout"))?;
        Ok(())
    }

    fn rollout_of(row: &AnyRow) -> Result<Rollout, StoreError> {
        let e = || q("read rollout");
        let waves: String = row.try_get(2).map_err(e())?;
        let state: String = row.try_get(7).map_err(e())?;
        let num = |i: usize| -> Result<i64, StoreError> { row.try_get(i).map_err(e()) };
        Ok(Rollout {
            release: row.try_get(0).map_err(e())?,
            created: num(1)?,
            waves: serde_json::from_str(&waves).map_err(|err| StoreError::Corrupt {
                what: "rollout waves",
                problem: err.to_string(),
            })?,
            max_hold_secs: uint(num(3)?),
            thresholds: RawThresholds {
                max_failure_bp: u32::try_from(num(4)?).unwrap_or(0),
                min_reports: u32::try_from(num(5)?).unwrap_or(0),
                report_deadline_secs: uint(num(6)?),
            },
            state: match state.as_str() {
                "active" => RolloutState::Active,
                "halted" => RolloutState::Halted,
                _ => {
                    return Err(StoreError::Corrupt {
                        what: "rollout state",
                        problem: state,
                    })
                }
            },
            halt_reason: row.try_get(8).map_err(e())?,
            counted_from: num(9)?,
        })
    }

    const ROLLOUT_COLUMNS: &'static str = "release_name, created, waves, max_hold_secs, \
        max_failure_bp, min_reports, report_deadline_secs, state, halt_reason, counted_from";

    /// One rollout.
    pub async fn rollout(&self, release: &str) -> Result<Option<Rollout>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM rollouts WHERE release_name = $1",
            Self::ROLLOUT_COLUMNS
        ))
        .bind(release)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read rollout"))?;
        row.as_ref().map(Self::rollout_of).transpose()
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM rollouts ORDER BY created DESC, release_name",
            Self::ROLLOUT_COLUMNS
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list rollouts"))?;
        rows.iter().map(Self::rollout_of).collect()
    }

    /// Halts an active rollout and stores the hold that says so, in one transaction.
    /// Returns false when it was not active (nothing stored).
    pub async fn halt(
        &self,
        release: &str,
        reason: &str,
        hold: &SignedHold,
    ) -> Result<bool, StoreError> {
        let statement = hold_json(hold)?;
        let mut tx = self.pool.begin().await.map_err(q("begin halt"))?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = 'halted', halt_reason = $2 WHERE release_name = $1 AND state = 'active'",
        )
        .bind(release)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(q("halt rollout"))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        Self::insert_hold(&mut tx, release, hold, statement).await?;
        tx.commit().await.map_err(q("commit halt"))?;
        Ok(true)
    }

    /// Stores another hold for a (halted) rollout.
    pub async fn add_hold(&self, release: &str, hold: &SignedHold) -> Result<(), StoreError> {
        let statement = hold_json(hold)?;
        let mut tx = self.pool.begin().await.map_err(q("begin hold"))?;
        Self::insert_hold(&mut tx, release, hold, statement).await?;
        tx.commit().await.map_err(q("commit hold"))
    }

    async fn insert_hold(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        release: &str,
        hold: &SignedHold,
        statement: String,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO holds (id, release_name, issued, until_time, statement, lifted) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&hold.signature)
        .bind(release)
        .bind(hold.hold.issued)
        .bind(hold.hold.until)
        .bind(statement)
        .execute(&mut **tx)
        .await
        .map_err(q("store hold"))?;
        Ok(())
    }

    /// Resumes a rollout: lifts its holds, and counts reports from `now` on.
    pub async fn resume(&self, release: &str, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin resume"))?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = $2, halt_reason = NULL, counted_from = $3 WHERE release_name = $1",
        )
        .bind(release)
        .bind(RolloutState::Active.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("resume rollout"))?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NoRollout {
                release: release.to_owned(),
            });
        }
        sqlx::query("UPDATE holds SET lifted = $2 WHERE release_name = $1 AND lifted IS NULL")
            .bind(release)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("lift holds"))?;
        tx.commit().await.map_err(q("commit resume"))?;
        Ok(())
    }

    /// The holds in force at `now` (not lifted, not ended), oldest first.
    pub async fn holds(&self, now: i64) -> Result<Vec<SignedHold>, StoreError> {
        let rows = sqlx::query(
            "SELECT statement FROM holds WHERE lifted IS NULL AND until_time > $1 ORDER BY issued, id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list holds"))?;
        rows.iter()
            .map(|row| {
                let s: String = row.try_get(0).map_err(q("list holds"))?;
                serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                    what: "hold",
                    problem: e.to_string(),
                })
            })
            .collect()
    }

    /// Adds an operator or replaces its password hash.
    pub async fn set_operator(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin operator"))?;
        sqlx::query("DELETE FROM operators WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("replace operator"))?;
        sqlx::query("INSERT INTO operators (name, password_hash) VALUES ($1, $2)")
            .bind(name)
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .map_err(q("add operator"))?;
        tx.commit().await.map_err(q("commit operator"))
    }

    /// An operator's password hash.
    pub async fn operator_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM operators WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read operator"))?;
        row.map(|r| r.try_get(0).map_err(q("read operator")))
            .transpose()
    }

    /// Stores a session (by the hash of its token).
    pub async fn create_session(
        &self,
        token_hash: &str,
        operator: &str,
        expires: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (token_hash, operator, expires) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(operator)
            .bind(expires)
            .execute(&self.pool)
            .await
            .map_err(q("create session"))?;
        Ok(())
    }

    /// The operator of a session still valid at `now`.
    pub async fn session(&self, token_hash: &str, now: i64) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT operator FROM sessions WHERE token_hash = $1 AND expires > $2")
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("read session"))?;
        row.map(|r| r.try_get(0).map_err(q("read session")))
            .transpose()
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(q("delete session"))?;
        Ok(())
    }
}
