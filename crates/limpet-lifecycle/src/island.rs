//! Island mode as the device records it: whether it is in it, since when and why, and the
//! rule that moves it in and out (rule 8 of `time.rs`'s list, docs/end-of-life.md).
//!
//! Rules this module keeps:
//! - The mode follows [`TimeState::island_due`](crate::TimeState::island_due) and nothing
//!   else: due and connected → enter; not due and in island mode → leave; otherwise no
//!   change ([`IslandMode::settle`]). A support extension or fresh signed metadata is what
//!   makes it no longer due.
//! - Each change is stamped with the earliest time (rule 2), which never goes back, so the
//!   record says when it happened without trusting the clock.
//! - Pure: values in, values out.

use crate::time::{IslandReason, WallTime};

/// Why the device is in island mode, as the record keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IslandCause {
    /// The earliest time reached the end of support.
    SupportEnded,
    /// No fresh signed metadata for the slot's `freshness` of uptime.
    Stale,
}

impl IslandCause {
    /// The cause of a reason island mode is due.
    pub const fn of(reason: &IslandReason) -> Self {
        match reason {
            IslandReason::SupportEnded { .. } => IslandCause::SupportEnded,
            IslandReason::Stale { .. } => IslandCause::Stale,
        }
    }

    /// The lower-case name the console and the status file use.
    pub const fn as_str(self) -> &'static str {
        match self {
            IslandCause::SupportEnded => "support ended",
            IslandCause::Stale => "no fresh signed metadata",
        }
    }
}

/// Whether the device is in island mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IslandMode {
    /// Connected: every task runs under the normal network policy.
    #[default]
    Connected,
    /// Left island mode at this earliest time (a signed extension or fresh metadata
    /// arrived); connected since.
    Left {
        /// The earliest time when it left.
        at: WallTime,
    },
    /// In island mode: only the kept tasks and the update agent run, under the island
    /// network policy.
    Island {
        /// Why it entered.
        cause: IslandCause,
        /// The earliest time when it entered.
        since: WallTime,
    },
}

/// A change of [`IslandMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IslandChange {
    /// Island mode began, for this reason.
    Entered(IslandReason),
    /// Island mode ended: it is no longer due.
    Left,
}

impl IslandMode {
    /// Whether this is island mode.
    pub const fn is_island(&self) -> bool {
        matches!(self, IslandMode::Island { .. })
    }

    /// Rule 8: the mode that follows `due` (what [`TimeState::island_due`] says now) at
    /// the earliest time `earliest`, and the change, if any.
    ///
    /// [`TimeState::island_due`]: crate::TimeState::island_due
    pub fn settle(
        self,
        due: Option<IslandReason>,
        earliest: WallTime,
    ) -> (IslandMode, Option<IslandChange>) {
        match (self.is_island(), due) {
            (false, Some(reason)) => (
                IslandMode::Island {
                    cause: IslandCause::of(&reason),
                    since: earliest,
                },
                Some(IslandChange::Entered(reason)),
            ),
            (true, None) => (IslandMode::Left { at: earliest }, Some(IslandChange::Left)),
            _ => (self, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Uptime;

    const T: WallTime = WallTime::from_secs(2_000_000_000);

    fn ended() -> IslandReason {
        IslandReason::SupportEnded {
            until: WallTime::from_secs(1_999_999_000),
            earliest: T,
        }
    }

    #[test]
    fn enters_when_due_and_leaves_when_not() {
        let (mode, change) = IslandMode::Connected.settle(Some(ended()), T);
        assert_eq!(change, Some(IslandChange::Entered(ended())));
        assert_eq!(
            mode,
            IslandMode::Island {
                cause: IslandCause::SupportEnded,
                since: T
            }
        );
        // Still due: no change, the entry time kept.
        let later = T.saturating_add(Uptime::from_secs(600));
        assert_eq!(mode.settle(Some(ended()), later), (mode, None));
        // No longer due: left, stamped.
        assert_eq!(
            mode.settle(None, later),
            (IslandMode::Left { at: later }, Some(IslandChange::Left))
        );
        // Connected and not due: nothing.
        assert_eq!(
            IslandMode::Connected.settle(None, T),
            (IslandMode::Connected, None)
        );
        let left = IslandMode::Left { at: T };
        assert_eq!(left.settle(None, later), (left, None));
    }

    #[test]
    fn a_stale_repository_is_its_own_cause() {
        let stale = IslandReason::Stale {
            since_fresh: Uptime::from_days(46),
            freshness: Uptime::from_days(45),
        };
        let (mode, change) = IslandMode::Left { at: T }.settle(Some(stale), T);
        assert_eq!(change, Some(IslandChange::Entered(stale)));
        assert_eq!(
            mode,
            IslandMode::Island {
                cause: IslandCause::Stale,
                since: T
            }
        );
    }
}
