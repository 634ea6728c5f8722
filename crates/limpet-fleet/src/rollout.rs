//! Rollouts: the deciding modules ([`report`](crate::report), [`waves`](crate::waves),
//! [`hold`](crate::hold), [`halt`](crate::halt)) put together over the [`Store`].
//!
//! Rules kept here:
//! - A rollout is created only from waves of the `x-limpet-waves` form that parse, whose
//!   `hold_keys` include this server's hold key (else no device would honour its holds),
//!   and from thresholds that validate.
//! - A check-in is verified before anything is stored; after it is stored, the rollout of
//!   the release it reports on is evaluated at once, and a wave crossing its threshold
//!   halts the rollout and signs a hold in the same step ([`Fleet::evaluate`]). A failed
//!   evaluation does not fail the stored check-in; [`Fleet::tick`] evaluates again.
//! - A halted rollout keeps a hold in force: [`Fleet::tick`] signs a new one (never
//!   longer than `max_hold`) when the one in force has less than half of it left.

use ed25519_dalek::SigningKey;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::halt::{self, RawThresholds, Tally, ThresholdError, Thresholds, Verdict};
use crate::hold::{self, Hold, HoldError, Scope, SignedHold};
use crate::report::{self, ReportError};
use crate::store::{CheckIn, Rollout, RolloutState, Store, StoreError};
use crate::waves::{self, Waves, WavesError, WavesField, WAVES_FIELD};

/// What an operator sends to create a rollout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// The release, `model/version`.
    pub release: String,
    /// The `x-limpet-waves` field, as in the signed targets metadata.
    pub waves: Value,
    /// The halt thresholds.
    pub thresholds: RawThresholds,
}

/// A rollout operation that failed.
#[derive(Debug, Error)]
pub enum FleetError {
    /// The waves do not parse.
    #[error(transparent)]
    Waves(#[from] WavesError),
    /// The release has no entry in the waves.
    #[error("{WAVES_FIELD} has no entry for release {release}")]
    NoWaves {
        /// The release.
        release: String,
    },
    /// This server's hold key is not among the signed `hold_keys`.
    #[error("this server's hold key {key} is not among the hold_keys of {WAVES_FIELD}: devices would ignore its holds")]
    HoldKeyNotTrusted {
        /// The key, hex.
        key: String,
    },
    /// Bad thresholds.
    #[error("thresholds of the rollout of {release}")]
    Thresholds {
        /// The release.
        release: String,
        /// The cause.
        #[source]
        source: ThresholdError,
    },
    /// A hold could not be signed.
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// A refused report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FleetError {
    /// The refused report, if that is what this is (a replay is found by the store).
    pub fn report_error(&self) -> Option<&ReportError> {
        match self {
            FleetError::Report(e) | FleetError::Store(StoreError::Report(e)) => Some(e),
            _ => None,
        }
    }
}

/// The fleet: its store and its hold key.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The database.
    pub store: Store,
    hold_key: SigningKey,
}

/// A rollout with its counts per wave.
#[derive(Debug, Clone)]
pub struct RolloutView {
    /// The rollout.
    pub rollout: Rollout,
    /// Counts per wave, in wave order.
    pub waves: Vec<Tally>,
}

impl Fleet {
    /// A fleet over `store`, signing holds with `hold_key`.
    pub fn new(store: Store, hold_key: SigningKey) -> Self {
        Fleet { store, hold_key }
    }

    /// The hold key's public half, hex: what goes into `hold_keys`.
    pub fn hold_public_key(&self) -> String {
        hex::encode(self.hold_key.verifying_key().as_bytes())
    }

    /// Creates a rollout after validating its waves and thresholds.
    pub async fn create_rollout(&self, req: &CreateRollout, now: i64) -> Result<(), FleetError> {
        let mut extra = serde_json::Map::new();
        extra.insert(WAVES_FIELD.to_owned(), req.waves.clone());
        let field = WavesField::from_targets(&extra)?.ok_or_else(|| FleetError::NoWaves {
            release: req.release.clone(),
        })?;
        let release_waves =
            field
                .releases
                .get(&req.release)
                .ok_or_else(|| FleetError::NoWaves {
                    release: req.release.clone(),
                })?;
        if !field.hold_keys.contains(&self.hold_key.verifying_key()) {
            return Err(FleetError::HoldKeyNotTrusted {
                key: self.hold_public_key(),
            });
        }
        let thresholds =
            Thresholds::new(req.thresholds).map_err(|source| FleetError::Thresholds {
                release: req.release.clone(),
                source,
            })?;
        self.store
            .create_rollout(
                &req.release,
                &release_waves.to_raw(),
                field.max_hold_secs,
                thresholds.raw(),
                now,
            )
            .await?;
        Ok(())
    }

    /// Verifies and stores a check-in body received at `now`, then evaluates the rollout of
    /// the release it reports on.
    pub async fn check_in(&self, body: &[u8], now: i64) -> Result<CheckIn, FleetError> {
        let verified = report::verify(body)?;
        let stored = self.store.check_in(&verified, now).await?;
        if stored == CheckIn::Changed {
            if let Some(release) = &verified.report.last_update.release {
                // The report is stored: a failure to evaluate now must not make the device
                // send it again (it would be a replay). The next tick evaluates again.
                if let Err(e) = self.evaluate(release, now).await {
                    tracing::error!("evaluating the rollout of {release} after a check-in: {e}");
                }
            }
        }
        Ok(stored)
    }

    /// A rollout's counts per wave at `now`.
    pub async fn view(&self, rollout: Rollout, now: i64) -> Result<RolloutView, FleetError> {
        let waves = Waves::from_raw(&rollout.release, &rollout.waves)?;
        let thresholds =
            Thresholds::new(rollout.thresholds).map_err(|source| FleetError::Thresholds {
                release: rollout.release.clone(),
                source,
            })?;
        let mut tallies = vec![Tally::default(); waves.waves().len()];
        for (device, state) in self
            .store
            .release_states(&rollout.release, rollout.counted_from)
            .await?
        {
            let Some(key) = hex::decode(&device)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
            else {
                continue;
            };
            if let Some(t) = tallies.get_mut(waves.wave_of(&key, &rollout.release)) {
                t.add(state, &thresholds, now);
            }
        }
        Ok(RolloutView {
            rollout,
            waves: tallies,
        })
    }

    /// Applies the halt rule to the active rollout of `release` at `now`; returns the reason
    /// when it halted it.
    pub async fn evaluate(&self, release: &str, now: i64) -> Result<Option<String>, FleetError> {
        let Some(rollout) = self.store.rollout(release).await? else {
            return Ok(None);
        };
        if rollout.state != RolloutState::Active {
            return Ok(None);
        }
        let thresholds =
            Thresholds::new(rollout.thresholds).map_err(|source| FleetError::Thresholds {
                release: release.to_owned(),
                source,
            })?;
        let view = self.view(rollout, now).await?;
        for (i, tally) in view.waves.iter().enumerate() {
            if let Verdict::Halt(reason) = halt::evaluate(&thresholds, i, tally) {
                let halted = self.halt(release, &reason, now).await?;
                return Ok(halted.then_some(reason));
            }
        }
        Ok(None)
    }

    fn sign(
        &self,
        release: &str,
        reason: &str,
        max_hold_secs: u64,
        now: i64,
    ) -> Result<SignedHold, FleetError> {
        let until = now.saturating_add(i64::try_from(max_hold_secs).unwrap_or(i64::MAX));
        Ok(hold::sign_hold(
            Hold {
                release: release.to_owned(),
                scope: Scope::All,
                issued: now,
                until,
                reason: reason.to_owned(),
            },
            &self.hold_key,
            max_hold_secs,
        )?)
    }

    /// Halts an active rollout with `reason`, signing a hold of `max_hold` for the whole
    /// fleet. False when it was not active.
    pub async fn halt(&self, release: &str, reason: &str, now: i64) -> Result<bool, FleetError> {
        let rollout = self
            .store
            .rollout(release)
            .await?
            .ok_or_else(|| StoreError::NoRollout {
                release: release.to_owned(),
            })?;
        let hold = self.sign(release, reason, rollout.max_hold_secs, now)?;
        Ok(self.store.halt(release, reason, &hold).await?)
    }

    /// Resumes a rollout: its holds are lifted and counting starts again at `now`.
    pub async fn resume(&self, release: &str, now: i64) -> Result<(), FleetError> {
        Ok(self.store.resume(release, now).await?)
    }

    /// The periodic step: evaluates every active rollout (downloads time out with the clock)
    /// and renews the hold of every halted one.
    pub async fn tick(&self, now: i64) -> Result<(), FleetError> {
        let holds = self.store.holds(now).await?;
        for rollout in self.store.rollouts().await? {
            match rollout.state {
                RolloutState::Active => {
                    self.evaluate(&rollout.release, now).await?;
                }
                RolloutState::Halted => {
                    let half = i64::try_from(rollout.max_hold_secs / 2).unwrap_or(i64::MAX);
                    let covered = holds.iter().any(|h| {
                        h.hold.release == rollout.release && h.hold.until > now.saturating_add(half)
                    });
                    if !covered {
                        let reason = rollout.halt_reason.clone().unwrap_or_default();
                        let hold =
                            self.sign(&rollout.release, &reason, rollout.max_hold_secs, now)?;
                        self.store.add_hold(&rollout.release, &hold).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The holds in force at `now`, and their tag for `If-None-Match`: the SHA-256 of their
    /// signatures.
    pub async fn holds(&self, now: i64) -> Result<(Vec<SignedHold>, String), FleetError> {
        let holds = self.store.holds(now).await?;
        let mut all = String::new();
        for h in &holds {
            all.push_str(&h.signature);
        }
        let tag = crate::store::sha256_hex(all.as_bytes());
        Ok((holds, tag[..32].to_owned()))
    }
}

/// Checks a release name for the API.
pub fn valid_release(release: &str) -> bool {
    waves::valid_release(release)
}
