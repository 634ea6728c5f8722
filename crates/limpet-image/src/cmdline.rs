//! Limpet's own parameters on the kernel command line, read by the loader and by PID 1
//! and written by the build.
//!
//! - `limpet.watchdog=N` (signed into the slot by the build): the hardware watchdog's
//!   timeout in seconds, which the loader arms before it starts the kernel and PID 1 then
//!   keeps petting. `limpet.watchdog=0` turns it off. A slot without the parameter gets
//!   [`WATCHDOG_DEFAULT_SECS`].
//! - `limpet.cohort=K/N` (signed into the slot by `limpet build --cohorts N`): the slot is
//!   cohort `K` of the `N` cohorts of its release (docs/cohorts.md). `limpet publish` reads
//!   it to publish the slot under its cohort's target names. A slot without it is no
//!   cohort's.
//!
//! Rules: the kernel reads the *last* occurrence of a parameter, and so does every reader
//! here; the kernel ignores `limpet.*` words (they look like parameters of a module named
//! `limpet`, which does not exist), so they reach neither the kernel nor PID 1's argv.

/// The watchdog parameter's name.
pub const WATCHDOG: &str = "limpet.watchdog";
/// The watchdog timeout of a slot whose command line does not say: long enough for a
/// kernel under emulation to reach PID 1, short enough that a hung device is back in a
/// minute.
pub const WATCHDOG_DEFAULT_SECS: u16 = 60;
/// The longest timeout: the i6300ESB's two 20-bit stages at about 1 kHz hold 2046 s
/// (Linux's `i6300esb` driver allows the same).
pub const WATCHDOG_MAX_SECS: u16 = 2046;

/// What a command line asks of the hardware watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watchdog {
    /// Arm it with this timeout, in seconds (1 to [`WATCHDOG_MAX_SECS`]).
    Secs(u16),
    /// `limpet.watchdog=0`: leave it off.
    Off,
    /// The value is not a number of seconds in range: the readers arm the default and say
    /// so (the build refuses to write such a value).
    Invalid,
}

impl Watchdog {
    /// The last `limpet.watchdog=` of `cmdline`; [`WATCHDOG_DEFAULT_SECS`] when there is
    /// none.
    pub fn from_cmdline(cmdline: &str) -> Watchdog {
        cmdline
            .split_ascii_whitespace()
            .rev()
            .filter_map(|word| word.split_once('='))
            .find(|(name, _)| *name == WATCHDOG)
            .map_or(Watchdog::Secs(WATCHDOG_DEFAULT_SECS), |(_, value)| {
                Watchdog::from_value(value)
            })
    }

    /// `N` of `limpet.watchdog=N`.
    pub fn from_value(value: &str) -> Watchdog {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Watchdog::Invalid;
        }
        match value.parse::<u16>() {
            Ok(0) => Watchdog::Off,
            Ok(secs) if secs <= WATCHDOG_MAX_SECS => Watchdog::Secs(secs),
            _ => Watchdog::Invalid,
        }
    }

    /// The timeout to arm, if any: an invalid value arms the default.
    pub fn secs(self) -> Option<u16> {
        match self {
            Watchdog::Secs(secs) => Some(secs),
            Watchdog::Off => None,
            Watchdog::Invalid => Some(WATCHDOG_DEFAULT_SECS),
        }
    }
}

/// The cohort parameter's name.
pub const COHORT: &str = "limpet.cohort";
/// The most cohorts a release may have.
pub const MAX_COHORTS: u32 = 64;

/// What a command line says of the slot's cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CohortParam {
    /// No `limpet.cohort=`: the slot is no cohort's.
    Absent,
    /// Cohort `index` of `count`, `1 <= index <= count <= MAX_COHORTS`.
    Of {
        /// The cohort, from 1.
        index: u32,
        /// How many cohorts the release has.
        count: u32,
    },
    /// A value that is not `K/N` in range (the build never writes one).
    Invalid,
}

impl CohortParam {
    /// The last `limpet.cohort=` of `cmdline`.
    pub fn from_cmdline(cmdline: &str) -> CohortParam {
        cmdline
            .split_ascii_whitespace()
            .rev()
            .filter_map(|word| word.split_once('='))
            .find(|(name, _)| *name == COHORT)
            .map_or(CohortParam::Absent, |(_, value)| {
                CohortParam::from_value(value)
            })
    }

    /// `K/N` of `limpet.cohort=K/N`: decimal digits only, `1 <= K <= N <= MAX_COHORTS`.
    pub fn from_value(value: &str) -> CohortParam {
        let number = |t: &str| -> Option<u32> {
            if t.is_empty() || t.len() > 2 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let Some((k, n)) = value.split_once('/') else {
            return CohortParam::Invalid;
        };
        match (number(k), number(n)) {
            (Some(index), Some(count)) if index >= 1 && index <= count && count <= MAX_COHORTS => {
                CohortParam::Of { index, count }
            }
            _ => CohortParam::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_watchdog_word_counts() {
        assert_eq!(
            Watchdog::from_cmdline("console=ttyS0 limpet.watchdog=20 quiet limpet.watchdog=30"),
            Watchdog::Secs(30)
        );
        assert_eq!(
            Watchdog::from_cmdline("console=ttyS0 quiet"),
            Watchdog::Secs(WATCHDOG_DEFAULT_SECS)
        );
        assert_eq!(Watchdog::from_cmdline("limpet.watchdog=0"), Watchdog::Off);
        // A look-alike is not the parameter.
        assert_eq!(
            Watchdog::from_cmdline("xlimpet.watchdog=5 limpet.watchdogs=5"),
            Watchdog::Secs(WATCHDOG_DEFAULT_SECS)
        );
    }

    #[test]
    fn the_cohort_word_is_read_strictly() {
        assert_eq!(
            CohortParam::from_cmdline("console=ttyS0 limpet.cohort=1/4 limpet.cohort=3/4"),
            CohortParam::Of { index: 3, count: 4 }
        );
        assert_eq!(
            CohortParam::from_cmdline("console=ttyS0 xlimpet.cohort=1/2"),
            CohortParam::Absent
        );
        assert_eq!(
            CohortParam::from_value("64/64"),
            CohortParam::Of {
                index: 64,
                count: 64
            }
        );
        for bad in [
            "", "1", "0/4", "5/4", "1/65", "65/65", "1/0", "+1/4", "1/4/4", "01/4x",
        ] {
            assert_eq!(
                CohortParam::from_value(bad),
                CohortParam::Invalid,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_bad_value_is_invalid_and_arms_the_default() {
        for bad in [
            "",
            "-1",
            "+5",
            "5s",
            "2047",
            "65536",
            "99999999999999999999",
            " 5",
        ] {
            assert_eq!(Watchdog::from_value(bad), Watchdog::Invalid, "{bad:?}");
        }
        assert_eq!(Watchdog::Invalid.secs(), Some(WATCHDOG_DEFAULT_SECS));
        assert_eq!(Watchdog::from_value("2046"), Watchdog::Secs(2046));
        assert_eq!(Watchdog::from_value("007"), Watchdog::Secs(7));
        assert_eq!(Watchdog::Off.secs(), None);
    }
}
