//! How PID 1 treats a task's process: when it restarts it (`restart`) and when it counts
//! as up (`readiness`); the types and their checks.
//!
//! Rules this module keeps:
//! - Restart delays are above zero and the first is never longer than the longest, so the
//!   supervisor's backoff always makes progress.
//! - A readiness `timeout` exists only for `kind = "notify"`; a task that is up when started
//!   has nothing to wait for.

use serde::Serialize;
use toml::Spanned;

use crate::diag::Problem;
use crate::keyword::keywords;
use crate::raw::{RawReadiness, RawRestart, StrOr};
use crate::units::Duration;
use crate::validate::Checker;

/// Most consecutive failures a crash-loop limit may allow.
const MAX_CRASH_LOOP_LIMIT: i64 = 1000;

/// Default first restart delay.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::secs(1);
/// Default longest restart delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::secs(60);
/// Default number of quick consecutive failures that make a crash loop.
pub const DEFAULT_CRASH_LOOP_LIMIT: u32 = 5;

/// Restart policy: `restart = "always"` or a table with the backoff and crash-loop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// When to restart (default `always`).
    pub policy: RestartPolicy,
    /// Delay before the first restart; doubled after each quick failure (default 1s).
    pub backoff_initial: Duration,
    /// Longest delay between restarts; a run longer than this resets the backoff (default 1m).
    pub backoff_max: Duration,
    /// Consecutive failures, each before the task ran for `backoff_max`, after which the task
    /// is crash-looping: an uncommitted update is rolled back, else the task stays stopped
    /// (default 5).
    pub crash_loop_limit: u32,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::Always,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            crash_loop_limit: DEFAULT_CRASH_LOOP_LIMIT,
        }
    }
}

/// When the supervisor restarts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// After any exit.
    Always,
    /// After a non-zero exit or a signal.
    OnFailure,
    /// Never; the task runs once.
    Never,
}

keywords!(RestartPolicy, "restart policy", {
    Always => "always",
    OnFailure => "on-failure",
    Never => "never",
});

/// Default time a `notify` task has to report readiness.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::secs(30);

/// When a task counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Readiness {
    /// As soon as the process has been started (the default).
    #[default]
    Started,
    /// When the task writes `READY=1` to its notify socket (`$NOTIFY_SOCKET`, the sd_notify
    /// protocol); a task that does not within `timeout` has failed.
    Notify {
        /// How long the task has to report (default 30s).
        timeout: Duration,
    },
}

/// How `readiness` (or its `kind`) is written: the word that chooses a [`Readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadinessKind {
    Started,
    Notify,
}

keywords!(ReadinessKind, "readiness", {
    Started => "started",
    Notify => "notify",
});

impl Readiness {
    /// The `kind` word this readiness is written with.
    pub(crate) fn kind(&self) -> ReadinessKind {
        match self {
            Readiness::Started => ReadinessKind::Started,
            Readiness::Notify { .. } => ReadinessKind::Notify,
        }
    }
}

/// Checks `restart`: a policy word, or a table with the policy, backoff and crash-loop limit.
pub(crate) fn check_restart(
    c: &mut Checker<'_>,
    s: &Spanned<StrOr<RawRestart>>,
) -> Option<Restart> {
    c.str_or_table(
        s,
        |c, word| {
            Some(Restart {
                policy: c.keyword(word)?,
                ..Restart::default()
            })
        },
        |c, t| {
            let policy = match &t.policy {
                Some(p) => c.keyword(p),
                None => Some(RestartPolicy::Always),
            };
            let initial = t
                .backoff_initial
                .as_ref()
                .map_or(Some(DEFAULT_BACKOFF_INITIAL), |d| {
                    c.positive_duration(d, "backoff_initial")
                });
            let max = t
                .backoff_max
                .as_ref()
                .map_or(Some(DEFAULT_BACKOFF_MAX), |d| {
                    c.positive_duration(d, "backoff_max")
                });
            let limit = match &t.crash_loop_limit {
                Some(n) => c.int_in(n, "crash_loop_limit", 1, MAX_CRASH_LOOP_LIMIT),
                None => Some(DEFAULT_CRASH_LOOP_LIMIT),
            };
            if let (Some(i), Some(m)) = (initial, max) {
                if i > m {
                    let span = t
                        .backoff_initial
                        .as_ref()
                        .or(t.backoff_max.as_ref())
                        .map_or(s.span(), Spanned::span);
                    c.report(
                        &span,
                        Problem::new(format!(
                            "backoff_initial {i} is longer than backoff_max {m}"
                        ))
                        .expected("backoff_initial <= backoff_max"),
                    );
                    return None;
                }
            }
            Some(Restart {
                policy: policy?,
                backoff_initial: initial?,
                backoff_max: max?,
                crash_loop_limit: limit?,
            })
        },
    )
}

/// Checks `readiness`: a kind word, or a table with the kind and (for `notify`) a timeout.
pub(crate) fn check_readiness(
    c: &mut Checker<'_>,
    s: &Spanned<StrOr<RawReadiness>>,
) -> Option<Readiness> {
    let notify = ReadinessKind::Notify;
    c.str_or_table(
        s,
        |c, word| match c.keyword(word)? {
            ReadinessKind::Started => Some(Readiness::Started),
            ReadinessKind::Notify => Some(Readiness::Notify {
                timeout: DEFAULT_NOTIFY_TIMEOUT,
            }),
        },
        |c, t| match c.keyword(&t.kind)? {
            ReadinessKind::Started => {
                if let Some(to) = &t.timeout {
                    c.report(
                        &to.span(),
                        Problem::new(format!("`timeout` only applies to kind = \"{notify}\""))
                            .expected(format!(
                                "no timeout with kind = \"{}\"",
                                ReadinessKind::Started
                            ))
                            .hint(format!("remove timeout, or set kind = \"{notify}\"")),
                    );
                    return None;
                }
                Some(Readiness::Started)
            }
            ReadinessKind::Notify => {
                let timeout = t
                    .timeout
                    .as_ref()
                    .map_or(Some(DEFAULT_NOTIFY_TIMEOUT), |d| {
                        c.positive_duration(d, "readiness timeout")
                    })?;
                Some(Readiness::Notify { timeout })
            }
        },
    )
}
