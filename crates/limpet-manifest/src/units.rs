//! Quantities written as strings: sizes, durations, rates, packet rates, CPU shares, dates.
//!
//! Rules this module keeps:
//! - One spelling per unit, and it is the one Display writes back (`8MiB`, `6h`, `20kbit/s`,
//!   `50/s`, `10%`, `2032-01-01`). Whitespace between number and unit is accepted.
//! - Sizes are binary (KiB, MiB, GiB): `MB` is refused with a hint rather than guessed,
//!   because a silent factor of 1.048576 in a memory budget is a bug that only shows at run
//!   time. Link rates are decimal bits (kbit = 1000 bit) or binary bytes, as network tools
//!   write them.
//! - Integers only, checked for overflow: a budget is never rounded behind the writer's back.
//!   A fraction gets a hint in the next smaller unit when that is exact.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::diag::Problem;

/// Serializes a type as its Display string, so `inspect --json` shows what the manifest says.
macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
pub(crate) use serialize_as_display;

/// Splits `"8 MiB"` into (`"8"`, `"MiB"`): leading digits (with any `.`), then the rest.
fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, u) = s.split_at(end);
    (n, u.trim_start())
}

/// Parses an unsigned integer, or explains why not.
fn integer(n: &str) -> Option<u64> {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// For `"1.5"` with a unit factor ratio, the exact integer in the smaller unit, if any.
/// `ratio` is how many smaller units make one of the written unit.
fn fraction_in_smaller(n: &str, ratio: u64) -> Option<u64> {
    let (int, frac) = n.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let denom = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let frac: u64 = frac.parse().ok()?;
    let scaled = frac.checked_mul(ratio)?;
    if scaled % denom != 0 {
        return None;
    }
    int.checked_mul(ratio)?.checked_add(scaled / denom)
}

/// A size in bytes. Written with a binary unit: `B`, `KiB`, `MiB`, `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const SIZE_UNITS: [(&str, u64); 4] = [("GiB", GIB), ("MiB", MIB), ("KiB", KIB), ("B", 1)];
const SIZE_EXPECTED: &str = "a size in bytes with a binary unit: B, KiB, MiB, GiB";

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A size of `n` mebibytes, for defaults.
    pub(crate) const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in SIZE_UNITS {
            if self.0 != 0 && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}
serialize_as_display!(ByteSize);

/// The binary unit a user probably meant by a decimal or lower-case one.
fn size_unit_guess(unit: &str) -> Option<(&'static str, u64)> {
    match unit.to_ascii_lowercase().as_str() {
        "b" | "byte" | "bytes" => Some(("B", 1)),
        "k" | "kb" | "kib" | "kbyte" | "kbytes" => Some(("KiB", KIB)),
        "m" | "mb" | "mib" | "mbyte" | "mbytes" => Some(("MiB", MIB)),
        "g" | "gb" | "gib" | "gbyte" | "gbytes" => Some(("GiB", GIB)),
        _ => None,
    }
}

impl FromStr for ByteSize {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || Problem::new(format!("invalid size {s:?}")).expected(SIZE_EXPECTED);
        let (n, unit) = split_number(s);
        let exact = SIZE_UNITS.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f);
        let Some(factor) = exact else {
            let hint = match (size_unit_guess(unit), integer(n)) {
                (Some((u, _)), Some(v)) => format!("did you mean \"{v}{u}\"?"),
                (None, Some(v)) if unit.is_empty() => {
                    format!("add a unit, e.g. \"{v}MiB\" or \"{v}B\"")
                }
                _ => "write a whole number and a unit, e.g. \"8MiB\"".to_owned(),
            };
            return Err(err().hint(hint));
        };
        let Some(value) = integer(n) else {
            let smaller = SIZE_UNITS.iter().skip_while(|(_, f)| *f != factor).nth(1);
            let hint = smaller
                .and_then(|(u, f)| {
                    fraction_in_smaller(n, factor / f).map(|v| format!("did you mean \"{v}{u}\"?"))
                })
                .unwrap_or_else(|| "sizes are whole numbers, e.g. \"8MiB\"".to_owned());
            return Err(err().hint(hint));
        };
        value
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| err().hint("that is more than 2^64 bytes"))
    }
}

/// A length of time, to the millisecond. Written `500ms`, `30s`, `5m`, `6h`, `45d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];
const DURATION_EXPECTED: &str =
    "a whole number and a unit: ms, s, m, h, d (e.g. \"30s\", \"6h\", \"45d\")";

impl Duration {
    /// The duration in milliseconds.
    pub fn as_millis(self) -> u64 {
        self.millis
    }

    /// As a `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// `n` seconds, for defaults.
    pub(crate) const fn secs(n: u64) -> Self {
        Duration { millis: n * 1000 }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in DURATION_UNITS {
            if self.millis != 0 && self.millis.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.millis / factor);
            }
        }
        write!(f, "{}s", self.millis)
    }
}
serialize_as_display!(Duration);

impl FromStr for Duration {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || Problem::new(format!("invalid duration {s:?}")).expected(DURATION_EXPECTED);
        let (n, unit) = split_number(s);
        let factor = DURATION_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f);
        let Some(factor) = factor else {
            let guess = match unit.to_ascii_lowercase().as_str() {
                "msec" | "msecs" | "millis" | "milliseconds" => Some(("ms", 1)),
                "sec" | "secs" | "second" | "seconds" => Some(("s", 1)),
                "min" | "mins" | "minute" | "minutes" => Some(("m", 1)),
                "hr" | "hrs" | "hour" | "hours" => Some(("h", 1)),
                "day" | "days" => Some(("d", 1)),
                "w" | "wk" | "week" | "weeks" => Some(("d", 7)),
                "ms" | "s" | "m" | "h" | "d" => Some((unit_lower(unit), 1)),
                _ => None,
            };
            let hint = match (guess, integer(n)) {
                (Some((u, mult)), Some(v)) => v
                    .checked_mul(mult)
                    .map(|v| format!("did you mean \"{v}{u}\"?")),
                (None, Some(v)) if unit.is_empty() => Some(format!("add a unit, e.g. \"{v}s\"")),
                _ => None,
            };
            return Err(err().maybe_hint(hint));
        };
        let Some(value) = integer(n) else {
            let smaller = DURATION_UNITS
                .iter()
                .skip_while(|(_, f)| *f != factor)
                .nth(1);
            let hint = smaller.and_then(|(u, f)| {
                fraction_in_smaller(n, factor / f).map(|v| format!("did you mean \"{v}{u}\"?"))
            });
            return Err(err().maybe_hint(hint));
        };
        value
            .checked_mul(factor)
            .map(|millis| Duration { millis })
            .ok_or_else(|| err().hint("that is longer than this device will live"))
    }
}

fn unit_lower(u: &str) -> &'static str {
    match u.to_ascii_lowercase().as_str() {
        "ms" => "ms",
        "s" => "s",
        "m" => "m",
        "h" => "h",
        _ => "d",
    }
}

/// A data rate, in bits per second. Written in decimal bits (`bit/s`, `kbit/s`, `Mbit/s`,
/// `Gbit/s`) or binary bytes (`B/s`, `KiB/s`, `MiB/s`, `GiB/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate {
    bits_per_second: u64,
}

const RATE_UNITS: [(&str, u64); 8] = [
    ("GiB", GIB * 8),
    ("MiB", MIB * 8),
    ("KiB", KIB * 8),
    ("Gbit", 1_000_000_000),
    ("Mbit", 1_000_000),
    ("kbit", 1_000),
    ("B", 8),
    ("bit", 1),
];
const RATE_EXPECTED: &str =
    "a whole number and a rate unit: bit/s, kbit/s, Mbit/s, Gbit/s, B/s, KiB/s, MiB/s, GiB/s";

impl Rate {
    /// Bits per second.
    pub fn bits_per_second(self) -> u64 {
        self.bits_per_second
    }

    /// Bytes per second, rounded up so a cap is never tighter than written.
    pub fn bytes_per_second(self) -> u64 {
        self.bits_per_second.div_ceil(8)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Units are tried from the largest; bytes before bits so that 8192 bit/s reads 1KiB/s.
        for (unit, factor) in RATE_UNITS {
            if self.bits_per_second != 0 && self.bits_per_second.is_multiple_of(factor) {
                return write!(f, "{}{unit}/s", self.bits_per_second / factor);
            }
        }
        write!(f, "{}bit/s", self.bits_per_second)
    }
}
serialize_as_display!(Rate);

impl FromStr for Rate {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || Problem::new(format!("invalid rate {s:?}")).expected(RATE_EXPECTED);
        let (n, rest) = split_number(s);
        let (unit, per) = rest.split_once('/').unwrap_or((rest, ""));
        let unit = unit.trim_end();
        let guess = |v: u64| -> Option<String> {
            let u = match unit.to_ascii_lowercase().as_str() {
                "kbps" | "kb" | "kbit" | "kbits" => "kbit",
                "mbps" | "mb" | "mbit" | "mbits" => "Mbit",
                "gbps" | "gb" | "gbit" | "gbits" => "Gbit",
                "bps" | "bit" | "bits" => "bit",
                "kib" | "kbyte" | "kbytes" => "KiB",
                "mib" | "mbyte" | "mbytes" => "MiB",
                "gib" | "gbyte" | "gbytes" => "GiB",
                "b" | "byte" | "bytes" => "B",
                _ => return None,
            };
            Some(format!("did you mean \"{v}{u}/s\"?"))
        };
        let factor = RATE_UNITS.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f);
        let Some(value) = integer(n) else {
            return Err(
                err().hint("rates are whole numbers; use a smaller unit, e.g. \"1500kbit/s\"")
            );
        };
        match (factor, per.trim()) {
            (Some(factor), "s") => value
                .checked_mul(factor)
                .map(|bits_per_second| Rate { bits_per_second })
                .ok_or_else(|| err().hint("that is more than 2^64 bit/s")),
            (Some(_), "") => Err(err().hint(format!("add the time unit: \"{value}{unit}/s\""))),
            (Some(_), _) => Err(err().hint(format!(
                "rates are per second: \"{}\"",
                format_args!("{value}{unit}/s")
            ))),
            (None, _) => Err(err().maybe_hint(guess(value))),
        }
    }
}

/// A packet rate: a count per second, minute or hour. Written `50/s`, `600/m`, `1000/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketRate {
    /// Packets allowed per `per`.
    pub count: u64,
    /// The time unit of the count.
    pub per: PacketRatePer,
}

/// The time unit of a [`PacketRate`], as nftables `limit rate` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketRatePer {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

impl fmt::Display for PacketRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            PacketRatePer::Second => "s",
            PacketRatePer::Minute => "m",
            PacketRatePer::Hour => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}
serialize_as_display!(PacketRate);

impl FromStr for PacketRate {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid packet rate {s:?}"))
                .expected("packets per time unit: \"50/s\", \"600/m\", \"1000/h\"")
        };
        let (n, rest) = split_number(s);
        let Some(count) = integer(n) else {
            return Err(err().hint("write a whole number of packets, e.g. \"50/s\""));
        };
        let per = match rest.strip_prefix('/').map(str::trim) {
            Some("s") => PacketRatePer::Second,
            Some("m") => PacketRatePer::Minute,
            Some("h") => PacketRatePer::Hour,
            Some("sec" | "second") => {
                return Err(err().hint(format!("did you mean \"{count}/s\"?")))
            }
            Some("min" | "minute") => {
                return Err(err().hint(format!("did you mean \"{count}/m\"?")))
            }
            Some("hour") => return Err(err().hint(format!("did you mean \"{count}/h\"?"))),
            _ => return Err(err().hint(format!("did you mean \"{count}/s\"?"))),
        };
        if count == 0 {
            return Err(
                err().hint("a packet rate of zero blocks the rule; remove the rule instead")
            );
        }
        Ok(PacketRate { count, per })
    }
}

/// A CPU budget in percent of one CPU: `10%`; more than `100%` spans several CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuShare {
    percent: u32,
}

impl CpuShare {
    /// Percent of one CPU (100 = one whole CPU).
    pub fn percent(self) -> u32 {
        self.percent
    }
}

impl fmt::Display for CpuShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent)
    }
}
serialize_as_display!(CpuShare);

impl FromStr for CpuShare {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid CPU share {s:?}")).expected(
                "a whole percentage of one CPU, e.g. \"10%\" (over 100% uses several CPUs)",
            )
        };
        let t = s.trim();
        let Some(n) = t.strip_suffix('%') else {
            // "0.1" is probably a fraction of a CPU; "10" is probably a percentage.
            let hint = match (integer(t), fraction_in_smaller(t, 100)) {
                (Some(v), _) => Some(format!("did you mean \"{v}%\"?")),
                (None, Some(v)) => Some(format!("did you mean \"{v}%\"?")),
                _ => None,
            };
            return Err(err().maybe_hint(hint));
        };
        let n = n.trim_end();
        let Some(v) = integer(n) else {
            return Err(err().hint("use a whole percentage, e.g. \"5%\""));
        };
        match u32::try_from(v) {
            Ok(0) => Err(err().hint("a task needs some CPU; at least \"1%\"")),
            Ok(percent) => Ok(CpuShare { percent }),
            Err(_) => Err(err().hint("that is more CPUs than any device has")),
        }
    }
}

/// A calendar date, `YYYY-MM-DD`, checked against the real calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }
    /// The month, 1-12.
    pub fn month(self) -> u8 {
        self.month
    }
    /// The day of the month, 1-31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Builds a date, or says why it is not one.
    pub(crate) fn from_ymd(year: u16, month: u8, day: u8) -> Result<Self, Problem> {
        let shown = format!("{year:04}-{month:02}-{day:02}");
        let err = || {
            Problem::new(format!("invalid date {shown:?}"))
                .expected("a real calendar date, YYYY-MM-DD")
        };
        if !(1970..=9999).contains(&year) {
            return Err(err().hint("the year must be between 1970 and 9999"));
        }
        if !(1..=12).contains(&month) {
            return Err(err().hint("months run from 01 to 12"));
        }
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day == 0 || day > days {
            return Err(err().hint(format!("{year:04}-{month:02} has {days} days")));
        }
        Ok(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}
serialize_as_display!(Date);

impl FromStr for Date {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid date {s:?}")).expected("a real calendar date, YYYY-MM-DD")
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(err().hint("write it as YYYY-MM-DD, e.g. \"2032-01-01\""));
        };
        let num = |p: &str, len: usize| if p.len() == len { integer(p) } else { None };
        match (num(y, 4), num(m, 2), num(d, 2)) {
            (Some(y), Some(m), Some(d)) => {
                let (Ok(y), Ok(m), Ok(d)) = (u16::try_from(y), u8::try_from(m), u8::try_from(d))
                else {
                    return Err(err());
                };
                Date::from_ymd(y, m, d)
            }
            _ => Err(err().hint("write it as YYYY-MM-DD with leading zeros, e.g. \"2032-01-01\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("8MiB".parse::<ByteSize>().map(ByteSize::bytes), Ok(8 * MIB));
        assert_eq!(
            "8 MiB".parse::<ByteSize>().map(ByteSize::bytes),
            Ok(8 * MIB)
        );
        assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
        let e = "8MB".parse::<ByteSize>().unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean \"8MiB\"?"));
        let e = "1.5GiB".parse::<ByteSize>().unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean \"1536MiB\"?"));
        assert!("99999999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_rates_dates() {
        assert_eq!(
            "90m".parse::<Duration>().map(|d| d.to_string()),
            Ok("90m".to_owned())
        );
        assert_eq!(
            "120m".parse::<Duration>().map(|d| d.to_string()),
            Ok("2h".to_owned())
        );
        assert_eq!(
            "20kbit/s".parse::<Rate>().map(Rate::bytes_per_second),
            Ok(2500)
        );
        assert_eq!(
            "8192bit/s".parse::<Rate>().map(|r| r.to_string()),
            Ok("1KiB/s".to_owned())
        );
        assert!("2032-02-30".parse::<Date>().is_err());
        assert!("2032-02-29".parse::<Date>().is_ok());
        assert!("2100-02-29".parse::<Date>().is_err());
        assert_eq!(
            "50/s".parse::<PacketRate>().map(|p| p.to_string()),
            Ok("50/s".to_owned())
        );
        assert_eq!(
            "0.1".parse::<CpuShare>().unwrap_err().hint.as_deref(),
            Some("did you mean \"10%\"?")
        );
    }
}
