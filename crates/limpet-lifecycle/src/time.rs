//! Trusted time without a trusted clock, the support window and when island mode is due:
//! pure rules over a [`TimeState`].
//!
//! A device's real-time clock may be reset to 1970 by a flat battery, set years ahead by a
//! glitch, or moved by an attacker; its repository may stop answering. These rules decide
//! what time it is and whether the device is still supported from what the device can
//! trust:
//!
//! 1. **The floor** is the latest of: the build time of the signed slot it runs
//!    ([`SlotLifecycle::built`]), the newest signed time it verified from its repository
//!    ([`TimeState::verified`]), and the floor saved on the device. It never goes back.
//! 2. **The earliest time** is the floor plus the device uptime counted since the floor was
//!    last raised ([`TimeState::earliest`]): time cannot have stood still while the device
//!    ran. It never goes back either.
//! 3. **An RTC reading** may move time forward, never below the earliest time
//!    ([`TimeState::now`]). It never raises the floor: an RTC years ahead shows on the clock
//!    but cannot end support or refuse metadata.
//! 4. **A signed time below the floor** is refused ([`TimeError::SignedBelowFloor`]): it was
//!    signed before something the device already trusts. A signed time above the newest one
//!    seen is **fresh**: it raises the floor and restarts the uptime count without fresh
//!    metadata. The same signed time again (a replayed or unchanged timestamp) is not fresh.
//! 5. **Uptime without fresh metadata** ([`TimeState::since_fresh`]) is the device's own
//!    uptime, accumulated across boots ([`TimeState::elapse`]), so a clock set backwards,
//!    or forwards, cannot stop or speed it. When it is persisted, the interval until the next
//!    save is counted in advance ([`TimeState::checkpoint`]), so a power cut can only make
//!    it larger, never smaller: rebooting the device cannot keep it fresh.
//! 6. **The support window** ends at the slot's `support_until`, or at a later end the
//!    device accepted from a signed extension ([`TimeState::extend_support`]). An end
//!    earlier than the one accepted is refused ([`SupportError::Shortening`]); the accepted
//!    end is kept across slots.
//! 7. **Island mode is due** ([`TimeState::island_due`]) when the earliest time reaches the
//!    end of support, or the uptime without fresh metadata reaches the slot's `freshness`.
//! 8. **The device is in island mode** ([`TimeState::island`]) from the moment rule 7 says
//!    it is due until rule 7 says it no longer is ([`TimeState::settle_island`]): a signed
//!    extension or fresh metadata lifts it. The mode is part of the state, so it is saved
//!    with it and survives a reboot.
//! 9. **A verified Roughtime answer** ([`TimeState::roughtime`]) raises the earliest time
//!    to its lower bound (midpoint − radius) when that is above it, and never lowers
//!    anything. It does **not** raise the floor that refuses signed metadata (rule 4): a
//!    repository's timestamp is signed up to a day before it is fetched, and a floor raised
//!    to *now* would refuse every timestamp signed before the answer. The raise is kept as
//!    uptime counted past the floor (`since_floor`), so a PID 1 from before this rule reads
//!    the same earliest time; the last raise is also kept on its own
//!    ([`TimeState::roughtime_raised`]) for the status.
//!
//! Off rule 2 on purpose: the floor used to refuse signed times (rule 4) does not advance
//! with uptime. A device clock that runs fast (crystals drift by tens of ppm, minutes a
//! year) would otherwise put the floor ahead of the repository's clock, and every fresh
//! timestamp after it would be refused.

use core::fmt;

use thiserror::Error;

use crate::island::{IslandChange, IslandMode};

/// A point in time: whole seconds since 1970-01-01T00:00:00Z (UTC). Nothing the device
/// trusts is older than 1970; a clock that says otherwise reads as the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u64);

impl WallTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: WallTime = WallTime(0);

    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        WallTime(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// This time plus `span`, saturating at the far future.
    pub const fn saturating_add(self, span: Uptime) -> Self {
        WallTime(self.0.saturating_add(span.0))
    }

    /// Seconds from `earlier` to this time; 0 when `earlier` is later.
    pub const fn saturating_since(self, earlier: WallTime) -> Uptime {
        Uptime(self.0.saturating_sub(earlier.0))
    }
}

/// Seconds since the epoch, as `date -d @SECS` takes them: `@1893456000`. (The calendar
/// form is the TUF crate's and the command line's business; the device needs none.)
impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// A span of device uptime (the kernel's `CLOCK_BOOTTIME`: it cannot be set, and counts
/// suspend), in whole seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uptime(u64);

impl Uptime {
    /// No time.
    pub const ZERO: Uptime = Uptime(0);

    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Uptime(secs)
    }

    /// `days` days.
    pub const fn from_days(days: u64) -> Self {
        Uptime(days.saturating_mul(86_400))
    }

    /// The span in seconds.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// This span plus `other`, saturating.
    pub const fn saturating_add(self, other: Uptime) -> Self {
        Uptime(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Uptime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// What the signed slot the device runs says about its life (`policy.json`'s `lifecycle`,
/// from the manifest's `[lifecycle]` and the build's `SOURCE_DATE_EPOCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLifecycle {
    /// When the slot was built: no signed slot can run before it was made.
    pub built: WallTime,
    /// The first second after the last day of support (`support_until` + 1 day, 00:00 UTC);
    /// `None`: the manifest declares no end.
    pub support_until: Option<WallTime>,
    /// How much uptime without fresh signed metadata puts the device into island mode;
    /// `None`: no freshness rule.
    pub freshness: Option<Uptime>,
}

impl From<&limpet_policy::LifecyclePolicy> for SlotLifecycle {
    /// The signed `policy.json`'s values, as `limpet build` wrote them.
    fn from(p: &limpet_policy::LifecyclePolicy) -> Self {
        SlotLifecycle {
            built: WallTime::from_secs(p.built),
            support_until: p.support_until.map(WallTime::from_secs),
            freshness: p.freshness_secs.map(Uptime::from_secs),
        }
    }
}

/// A refused signed time.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Rule 4: signed before the floor (replayed or back-dated metadata).
    #[error("signed time {signed} is below the time floor {floor}")]
    SignedBelowFloor {
        /// The time offered.
        signed: WallTime,
        /// The floor.
        floor: WallTime,
    },
}

/// A refused support extension.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SupportError {
    /// Rule 6: the offered end is before the end the device already accepted.
    #[error("support end {offered} is before the accepted end {accepted}")]
    Shortening {
        /// The end the device holds (the slot's or an accepted extension).
        accepted: WallTime,
        /// The end offered.
        offered: WallTime,
    },
    /// The slot declares no end of support, so there is nothing to extend (and an end
    /// would shorten unlimited support).
    #[error("the slot declares no end of support; an extension to {offered} cannot give it one")]
    NoWindow {
        /// The end offered.
        offered: WallTime,
    },
}

/// Whether a verified signed time was news.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Newer than any signed time seen: the uptime count restarted.
    Fresh,
    /// The newest one seen again: nothing changed.
    Seen,
}

/// Where [`TimeState::now`]'s answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// The RTC, at or above the earliest time.
    Rtc,
    /// The earliest time: the RTC was below it, or there is none.
    Earliest,
}

/// What time the device should run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// The time.
    pub time: WallTime,
    /// Where it came from.
    pub source: TimeSource,
}

/// Why island mode is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IslandReason {
    /// The earliest time reached the end of support.
    SupportEnded {
        /// The end of support (first second after the last day).
        until: WallTime,
        /// The earliest time.
        earliest: WallTime,
    },
    /// No fresh signed metadata for the slot's `freshness` of uptime.
    Stale {
        /// Uptime without fresh metadata.
        since_fresh: Uptime,
        /// The slot's limit.
        freshness: Uptime,
    },
}

/// A [`TimeStateParts`] that breaks a rule of [`TimeState`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InvariantError {
    /// The newest signed time is above the floor, which it raises.
    #[error("newest signed time {signed} is above the floor {floor}")]
    SignedAboveFloor {
        /// The newest signed time.
        signed: WallTime,
        /// The floor.
        floor: WallTime,
    },
    /// The last Roughtime raise is above the earliest time, which it raised.
    #[error("Roughtime-raised time {raised} is above the earliest time {earliest}")]
    RoughtimeAboveEarliest {
        /// The recorded raise.
        raised: WallTime,
        /// The earliest time.
        earliest: WallTime,
    },
}

/// What a verified Roughtime answer did (rule 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoughtimeChange {
    /// The earliest time was raised to the answer's lower bound.
    Raised {
        /// The earliest time before.
        from: WallTime,
        /// The answer's lower bound: the earliest time now.
        to: WallTime,
    },
    /// The answer's lower bound is not above the earliest time: nothing changed.
    NotAbove {
        /// The answer's lower bound.
        lower: WallTime,
        /// The earliest time, unchanged.
        earliest: WallTime,
    },
}

/// The fields of a [`TimeState`], for the record to encode and decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeStateParts {
    /// The floor (rule 1).
    pub floor: WallTime,
    /// Uptime since the floor was last raised (rule 2).
    pub since_floor: Uptime,
    /// The newest verified signed time, if any (rule 4).
    pub newest_signed: Option<WallTime>,
    /// Uptime without fresh signed metadata (rule 5).
    pub since_fresh: Uptime,
    /// The latest support end accepted from a signed extension, if any (rule 6).
    pub support_until: Option<WallTime>,
    /// Whether the device is in island mode (rule 8).
    pub island: IslandMode,
    /// The lower bound of the last Roughtime answer that raised the earliest time (rule 9).
    pub roughtime: Option<WallTime>,
}

/// What the device knows about time, as it persists it. Valid by construction: the newest
/// signed time is never above the floor; transitions never lower the floor, the earliest
/// time or the accepted end of support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeState {
    parts: TimeStateParts,
}

impl TimeState {
    /// A device's first state: the floor at the build time of the slot it runs, nothing
    /// verified, no uptime counted.
    pub const fn factory(slot: &SlotLifecycle) -> Self {
        TimeState {
            parts: TimeStateParts {
                floor: slot.built,
                since_floor: Uptime::ZERO,
                newest_signed: None,
                since_fresh: Uptime::ZERO,
                support_until: None,
                island: IslandMode::Connected,
                roughtime: None,
            },
        }
    }

    /// The state with these fields, if they keep the rules.
    pub fn from_parts(parts: TimeStateParts) -> Result<Self, InvariantError> {
        if let Some(signed) = parts.newest_signed {
            if signed > parts.floor {
                return Err(InvariantError::SignedAboveFloor {
                    signed,
                    floor: parts.floor,
                });
            }
        }
        let state = TimeState { parts };
        if let Some(raised) = parts.roughtime {
            let earliest = state.earliest();
            if raised > earliest {
                return Err(InvariantError::RoughtimeAboveEarliest { raised, earliest });
            }
        }
        Ok(state)
    }

    /// Its fields.
    pub const fn parts(&self) -> TimeStateParts {
        self.parts
    }

    /// Rule 1: the floor.
    pub const fn floor(&self) -> WallTime {
        self.parts.floor
    }

    /// Rule 2: the earliest the time can be.
    pub const fn earliest(&self) -> WallTime {
        self.parts.floor.saturating_add(self.parts.since_floor)
    }

    /// Rule 4: the newest verified signed time.
    pub const fn newest_signed(&self) -> Option<WallTime> {
        self.parts.newest_signed
    }

    /// Rule 9: the lower bound of the last Roughtime answer that raised the earliest time.
    pub const fn roughtime_raised(&self) -> Option<WallTime> {
        self.parts.roughtime
    }

    /// Rule 9: a verified Roughtime answer whose lower bound (midpoint − radius) is
    /// `lower`: raises the earliest time to it when it is above, and never the floor.
    pub fn roughtime(mut self, lower: WallTime) -> (Self, RoughtimeChange) {
        let earliest = self.earliest();
        if lower <= earliest {
            return (self, RoughtimeChange::NotAbove { lower, earliest });
        }
        self.parts.since_floor = lower.saturating_since(self.parts.floor);
        self.parts.roughtime = Some(lower);
        (
            self,
            RoughtimeChange::Raised {
                from: earliest,
                to: lower,
            },
        )
    }

    /// Rule 5: uptime without fresh signed metadata.
    pub const fn since_fresh(&self) -> Uptime {
        self.parts.since_fresh
    }

    /// At boot of a slot: the floor rises to its build time (rule 1).
    pub fn boot(mut self, slot: &SlotLifecycle) -> Self {
        self.raise_floor(slot.built);
        self
    }

    /// `span` of uptime has passed (rules 2 and 5).
    pub fn elapse(mut self, span: Uptime) -> Self {
        self.parts.since_floor = self.parts.since_floor.saturating_add(span);
        self.parts.since_fresh = self.parts.since_fresh.saturating_add(span);
        self
    }

    /// The state to persist when the next save is `credit` of uptime away: the uptime
    /// without fresh metadata counted in advance (rule 5), so a power cut before that save
    /// cannot make it smaller. The earliest time is not credited: it must never run ahead.
    pub fn checkpoint(mut self, credit: Uptime) -> Self {
        self.parts.since_fresh = self.parts.since_fresh.saturating_add(credit);
        self
    }

    /// A signed time verified from the repository (rule 4): refused below the floor; fresh
    /// when newer than any seen, which raises the floor and restarts the count of uptime
    /// without fresh metadata.
    pub fn verified(mut self, signed: WallTime) -> Result<(Self, Freshness), TimeError> {
        let floor = self.parts.floor;
        if signed < floor {
            return Err(TimeError::SignedBelowFloor { signed, floor });
        }
        if self
            .parts
            .newest_signed
            .is_some_and(|newest| newest >= signed)
        {
            return Ok((self, Freshness::Seen));
        }
        self.raise_floor(signed);
        self.parts.newest_signed = Some(signed);
        self.parts.since_fresh = Uptime::ZERO;
        Ok((self, Freshness::Fresh))
    }

    /// Rule 3: the time to run at, given the RTC's reading (`None`: no RTC, or it cannot
    /// be read).
    pub fn now(&self, rtc: Option<WallTime>) -> Now {
        let earliest = self.earliest();
        match rtc {
            Some(rtc) if rtc >= earliest => Now {
                time: rtc,
                source: TimeSource::Rtc,
            },
            _ => Now {
                time: earliest,
                source: TimeSource::Earliest,
            },
        }
    }

    /// Rule 6: the end of support: the later of the slot's and the accepted extension;
    /// `None` when the slot declares none.
    pub fn support_until(&self, slot: &SlotLifecycle) -> Option<WallTime> {
        let slot_end = slot.support_until?;
        Some(match self.parts.support_until {
            Some(accepted) if accepted > slot_end => accepted,
            _ => slot_end,
        })
    }

    /// Rule 6: a signed extension of the support window to `offered`. Refused when it would
    /// shorten the end the device holds, or when the slot declares no end. An end equal to
    /// the one held changes nothing.
    pub fn extend_support(
        mut self,
        slot: &SlotLifecycle,
        offered: WallTime,
    ) -> Result<Self, SupportError> {
        let accepted = self
            .support_until(slot)
            .ok_or(SupportError::NoWindow { offered })?;
        if offered < accepted {
            return Err(SupportError::Shortening { accepted, offered });
        }
        if offered > accepted {
            self.parts.support_until = Some(offered);
        }
        Ok(self)
    }

    /// Rule 8: whether the device is in island mode, as recorded.
    pub const fn island(&self) -> IslandMode {
        self.parts.island
    }

    /// Rule 8: island mode follows rule 7 ([`IslandMode::settle`]): the state with the mode
    /// that follows what is due now, and the change, if any.
    pub fn settle_island(mut self, slot: &SlotLifecycle) -> (Self, Option<IslandChange>) {
        let (mode, change) = self
            .parts
            .island
            .settle(self.island_due(slot), self.earliest());
        self.parts.island = mode;
        (self, change)
    }

    /// Rule 7: whether island mode is due, and why (the end of support first).
    pub fn island_due(&self, slot: &SlotLifecycle) -> Option<IslandReason> {
        let earliest = self.earliest();
        if let Some(until) = self.support_until(slot) {
            if earliest >= until {
                return Some(IslandReason::SupportEnded { until, earliest });
            }
        }
        let freshness = slot.freshness?;
        let since_fresh = self.parts.since_fresh;
        (since_fresh >= freshness).then_some(IslandReason::Stale {
            since_fresh,
            freshness,
        })
    }

    /// Raises the floor to `to` (never lowers it), keeping the earliest time from going back:
    /// uptime already counted past `to` stays counted.
    fn raise_floor(&mut self, to: WallTime) {
        if to <= self.parts.floor {
            return;
        }
        let earliest = self.earliest();
        self.parts.floor = to;
        self.parts.since_floor = earliest.saturating_since(to);
    }
}

#[cfg(test)]
mod tests;
