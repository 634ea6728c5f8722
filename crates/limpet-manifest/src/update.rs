//! `[update]`: where updates come from, the keys that sign them, and how a new slot is
//! tried and committed; the types and their checks. The update agent's task, which a
//! device with `[update]` runs, is declared in [`crate::agent`].
//!
//! Rules this module keeps:
//! - At least one trusted key, each listed once: a key listed twice would count twice
//!   towards a signature threshold.
//! - The repository URL is public and signed: no credentials, query or fragment in it; the
//!   fleet server's URL likewise, and plain `http://` (the agent has no TLS).
//! - The trial timing always leaves a trial room to become healthy: `health_timeout` is longer
//!   than `health`, and `health` is long enough to see a task crash at start.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::diag::Problem;
use crate::raw::{RawKeyRef, RawUpdate};
use crate::task::net::check_dns_name;
use crate::units::{serialize_as_display, Duration};
use crate::validate::{file_path, Checker};

/// Shortest update poll interval: a fleet polling faster would load the repository for no gain.
pub const MIN_POLL: Duration = Duration::secs(60);
/// Shortest health period: long enough for a task that crashes at start to be seen.
pub const MIN_HEALTH: Duration = Duration::secs(5);
/// Default time between update checks.
pub const DEFAULT_POLL: Duration = Duration::secs(6 * 3600);

/// Default health period: how long every task must stay up before a trial is committed.
pub const DEFAULT_HEALTH: Duration = Duration::secs(60);
/// Default time a trial gets to become healthy before it is rolled back.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::secs(600);
/// Default number of boots a trial gets (a power cut during a trial spends one).
pub const DEFAULT_TRY_BOOTS: u32 = 3;
/// Most boots a trial may get.
pub const MAX_TRY_BOOTS: u32 = 10;

/// `[update]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// Base URL of the TUF repository (`https://` or `http://`; metadata is signed either way).
    pub repository: RepositoryUrl,
    /// Time between update checks (default 6h).
    pub poll: Duration,
    /// Root keys trusted for this device's repository; at least one.
    pub keys: Vec<KeyRef>,
    /// The repository's first root metadata (`1.root.json`, relative to the manifest's
    /// directory): the device's trust anchor, put in the slot by `limpet build`, which
    /// checks that it lists the `keys` ids as root keys. Needed to build.
    pub root: Option<PathBuf>,
    /// When the agent may reboot into a staged update: `HH:MM-HH:MM`, UTC (wrapping past
    /// midnight when the end is earlier); `None`: at once.
    pub reboot_window: Option<String>,
    /// The fleet server the agent checks in with (`http://host[:port][/path]`): it can only
    /// delay updates (signed holds); `None`: no check-ins.
    pub fleet: Option<RepositoryUrl>,
    /// How long every task must be up (running and ready, or finished with success)
    /// without a failure before a trial slot is committed (default 60s).
    pub health: Duration,
    /// How long after boot a trial may take to become healthy before it is rolled back
    /// (default 10m; always longer than `health`).
    pub health_timeout: Duration,
    /// How many boots a trial may take before it is rolled back (1 to 10, default 3). The
    /// field keeps the manifest key's name, `try_boots`.
    pub try_boots: u32,
}

/// A checked `http(s)://host[:port][/path]` URL, without user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepositoryUrl(String);

impl RepositoryUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the transport is TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// `host[:port]`: what stands between the scheme and the path.
    fn authority(&self) -> &str {
        let rest = self
            .0
            .strip_prefix("https://")
            .or_else(|| self.0.strip_prefix("http://"))
            .unwrap_or(&self.0);
        rest.split('/').next().unwrap_or("")
    }

    /// The host (a DNS name or IPv4 address; an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        let authority = self.authority();
        if authority.starts_with('[') {
            return authority.split_inclusive(']').next().unwrap_or(authority);
        }
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    }

    /// The port: the one written, else 443 for https and 80 for http.
    pub fn port(&self) -> u16 {
        let authority = self.authority();
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, a)| a);
        after_host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

impl fmt::Display for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_display!(RepositoryUrl);

impl FromStr for RepositoryUrl {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid repository URL {s:?}"))
                .expected("an http:// or https:// URL: scheme, host, optional port and path")
        };
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            let hint = if s.contains("://") {
                "only https:// and http:// are supported".to_owned()
            } else {
                format!("did you mean \"https://{s}\"?")
            };
            return Err(err().hint(hint));
        };
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err().hint(format!("{c:?} is not allowed in a URL")));
        }
        if s.contains(['?', '#']) {
            return Err(err().hint("a repository URL has no query or fragment"));
        }
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(err().hint(
                "credentials do not belong in the manifest; the repository is public and signed",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| err().hint("unclosed '[' in an IPv6 host"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err().hint("invalid IPv6 address"));
            }
            (None, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(authority), None),
            }
        };
        if let Some(host) = host {
            if host.parse::<std::net::Ipv4Addr>().is_err() {
                check_dns_name(host).map_err(|h| err().hint(format!("host: {h}")))?;
            }
        }
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(err().hint("the port must be 1-65535")),
            }
        }
        Ok(RepositoryUrl(s.to_owned()))
    }
}

/// A trusted root key, by file or by key id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRef {
    /// A public key file, relative to the manifest's directory unless absolute.
    File(PathBuf),
    /// A TUF key id: 64 lower-case hex digits (SHA-256 of the canonical public key).
    Id(KeyId),
}

/// A TUF key id: 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_display!(KeyId);

impl FromStr for KeyId {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(KeyId(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        let hint = if lower != s && KeyId::from_str(&lower).is_ok() {
            format!("write it in lower case: \"{lower}\"")
        } else {
            format!("this id has {} characters", s.chars().count())
        };
        Err(Problem::new(format!("invalid key id {s:?}"))
            .expected("64 lower-case hex digits (a TUF key id)")
            .hint(hint))
    }
}

/// Checks `[update]`.
pub(crate) fn check(c: &mut Checker<'_>, u: &RawUpdate) -> Option<Update> {
    let repository = c.parse(&u.repository);
    let poll = match &u.poll {
        Some(p) => c.parse::<Duration>(p).and_then(|d| {
            if d < MIN_POLL {
                c.report(&p.span(), Problem::new(format!("poll interval {d} is too short")).expected(format!("at least {MIN_POLL}")).hint("devices of a fleet poll together; a short interval loads the repository for nothing"));
                None
            } else {
                Some(d)
            }
        }),
        None => Some(DEFAULT_POLL),
    };
    let mut keys = Vec::new();
    let mut ok = true;
    for k in u.keys.get_ref() {
        let parsed = match k.get_ref() {
            RawKeyRef::File(f) => file_path("key file", f).map(KeyRef::File),
            RawKeyRef::Id(id) => id.parse().map(KeyRef::Id),
        };
        match parsed {
            Ok(key) if keys.contains(&key) => {
                ok = false;
                c.report(
                    &k.span(),
                    Problem::new("duplicate key")
                        .expected("each key once")
                        .hint("a key listed twice would count twice towards a signature threshold"),
                );
            }
            Ok(key) => keys.push(key),
            Err(p) => {
                ok = false;
                c.report(&k.span(), p);
            }
        }
    }
    if u.keys.get_ref().is_empty() {
        ok = false;
        c.report(&u.keys.span(), Problem::new("no update keys listed").expected("at least one key: { file = \"keys/root.pub\" } or { id = \"<64 hex digits>\" }").hint("without a trusted key the device cannot accept any update"));
    }
    let health = match &u.health {
        Some(h) => c.parse::<Duration>(h).and_then(|d| {
            if d < MIN_HEALTH {
                c.report(&h.span(), Problem::new(format!("health period {d} is too short")).expected(format!("at least {MIN_HEALTH}")).hint("a try is committed only after every task stayed up this long; a crash a moment later would go unseen"));
                None
            } else {
                Some(d)
            }
        }),
        None => Some(DEFAULT_HEALTH),
    };
    let health_timeout = match &u.health_timeout {
        Some(t) => c.parse::<Duration>(t).and_then(|d| match health {
            Some(h) if d <= h => {
                c.report(
                    &t.span(),
                    Problem::new(format!(
                        "health_timeout {d} is not longer than the health period {h}"
                    ))
                    .expected("a timeout well above `health`, e.g. 10m")
                    .hint(
                        "a try could never become healthy in time and every update would roll back",
                    ),
                );
                None
            }
            _ => Some(d),
        }),
        None => match health {
            Some(h) if h >= DEFAULT_HEALTH_TIMEOUT => {
                c.report(&u.repository.span(), Problem::new(format!("health period {h} needs a longer health_timeout than the default {DEFAULT_HEALTH_TIMEOUT}")).expected("`health_timeout` set above `health`").hint("add health_timeout = \"...\" to [update]"));
                None
            }
            _ => Some(DEFAULT_HEALTH_TIMEOUT),
        },
    };
    let try_boots = match &u.try_boots {
        Some(n) => c.int_in(n, "try_boots", 1, i64::from(MAX_TRY_BOOTS)),
        None => Some(DEFAULT_TRY_BOOTS),
    };
    let root = match &u.root {
        Some(r) => match file_path("root metadata", r.get_ref()) {
            Ok(p) => Some(Some(p)),
            Err(p) => {
                c.report(&r.span(), p);
                None
            }
        },
        None => Some(None),
    };
    let reboot_window = match &u.reboot_window {
        Some(w) if reboot_window_ok(w.get_ref()) => Some(Some(w.get_ref().clone())),
        Some(w) => {
            c.report(
                &w.span(),
                Problem::new(format!("invalid reboot window {:?}", w.get_ref()))
                    .expected("HH:MM-HH:MM in UTC, e.g. \"03:00-05:00\" (two different times)")
                    .hint("the device reboots into a staged update only inside this window"),
            );
            None
        }
        None => Some(None),
    };
    let fleet = match &u.fleet {
        Some(f) => match c.parse::<RepositoryUrl>(f) {
            Some(url) if url.is_https() => {
                c.report(
                    &f.span(),
                    Problem::new(format!("fleet server {:?} is https://", f.get_ref()))
                        .expected("an http:// URL")
                        .hint("the update agent speaks plain HTTP; check-ins and holds are signed end to end, so TLS adds nothing for them"),
                );
                None
            }
            Some(url) => Some(Some(url)),
            None => None,
        },
        None => Some(None),
    };
    ok.then_some(())?;
    Some(Update {
        fleet: fleet?,
        repository: repository?,
        poll: poll?,
        keys,
        root: root?,
        reboot_window: reboot_window?,
        health: health?,
        health_timeout: health_timeout?,
        try_boots: try_boots?,
    })
}

/// `HH:MM-HH:MM` with two different valid times (the agent's `--reboot-window`).
fn reboot_window_ok(w: &str) -> bool {
    let time = |t: &str| {
        let b = t.as_bytes();
        t.len() == 5
            && b.get(2) == Some(&b':')
            && t.get(..2)
                .and_then(|h| h.parse::<u8>().ok())
                .is_some_and(|h| h < 24)
            && t.get(3..)
                .and_then(|m| m.parse::<u8>().ok())
                .is_some_and(|m| m < 60)
    };
    w.split_once('-')
        .is_some_and(|(a, b)| time(a) && time(b) && a != b)
}
