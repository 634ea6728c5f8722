//! `[lifecycle]`: the support window and island mode, what a device does once its vendor
//! stops supporting it or its repository goes quiet; the types and their checks.
//!
//! Rules this module keeps:
//! - `support_until` is a date without a time: support ends on a day, in no time zone.
//! - `freshness` needs `[update]` and is longer than its poll interval, or a device would
//!   go into island mode between two polls.
//! - `island.keep` names tasks that exist; island mode blocks the network unless `lan`
//!   says otherwise.
//! - Each `roughtime` server has a unique name, an IPv4 address with a port (the device's
//!   network is IPv4 only) and a key that is an Ed25519 public key in base64, checked as
//!   the device will check it (`limpet_roughtime::Server::new`).

use std::net::{SocketAddr, SocketAddrV4};

use serde::Serialize;

use crate::diag::{did_you_mean, Problem};
use crate::names::TaskName;
use crate::raw::{RawLifecycle, RawManifest, RawRoughtime};
use crate::units::{Date, Duration};
use crate::update::Update;
use crate::validate::{Checker, TaskFacts};

/// `[lifecycle]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Last day of vendor support; after it the device goes into island mode and the owner
    /// may take it over with physical presence.
    pub support_until: Date,
    /// If no fresh signed update metadata arrives for this long, the device goes into island
    /// mode (protects against a frozen or cut-off repository). Needs `[update]`.
    pub freshness: Option<Duration>,
    /// What keeps running in island mode.
    pub island: Island,
    /// Roughtime servers PID 1 asks for a signed time that raises the device's earliest
    /// time (docs/end-of-life.md); empty: none.
    pub roughtime: Vec<RoughtimeServer>,
}

/// A Roughtime server: `{ name = "rt1", address = "192.0.2.5:2002", key = "<base64>" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoughtimeServer {
    /// A name for the console and the status file.
    pub name: String,
    /// Where PID 1 sends its queries (UDP).
    pub address: SocketAddrV4,
    /// The server's long-term Ed25519 public key, base64 of its 32 bytes, as written.
    pub key: String,
}

/// Island mode: local function only, nothing towards the internet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Island {
    /// Tasks that keep running in island mode; the others are stopped.
    pub keep: Vec<TaskName>,
    /// Whether kept tasks may still use the local network (default: blocked).
    pub lan: IslandLan,
}

/// LAN access in island mode. Written `lan = true` / `lan = false` in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IslandLan {
    /// No network at all in island mode (the default: an unsupported device exposes nothing).
    #[default]
    Blocked,
    /// Kept tasks keep their `listen` rules with scope `lan` and egress to LAN addresses.
    Allowed,
}

/// Checks `[lifecycle]`, against the tasks and `[update]` it refers to.
pub(crate) fn check(
    c: &mut Checker<'_>,
    l: &RawLifecycle,
    raw: &RawManifest,
    facts: &[TaskFacts],
    update: Option<&Update>,
) -> Option<Lifecycle> {
    let span = l.support_until.span();
    let date = match l.support_until.get_ref() {
        toml::Value::String(s) => match s.parse::<Date>() {
            Ok(d) => Some(d),
            Err(p) => {
                c.report(&span, p);
                None
            }
        },
        toml::Value::Datetime(dt) => match (&dt.date, &dt.time, &dt.offset) {
            (Some(d), None, None) => match Date::from_ymd(d.year, d.month, d.day) {
                Ok(d) => Some(d),
                Err(p) => {
                    c.report(&span, p);
                    None
                }
            },
            _ => {
                c.report(
                    &span,
                    Problem::new(format!("invalid date {dt}"))
                        .expected("a date without a time, YYYY-MM-DD"),
                );
                None
            }
        },
        other => {
            c.report(
                &span,
                Problem::new(format!("invalid date {other}"))
                    .expected("a date, YYYY-MM-DD, e.g. \"2032-01-01\""),
            );
            None
        }
    };
    let freshness = match &l.freshness {
        Some(f) => c.positive_duration(f, "freshness").and_then(|d| {
            match (&raw.update, update) {
                (None, _) => {
                    c.report(&f.span(), Problem::new("freshness needs an [update] section").expected("[update] with a repository whose metadata stays fresh").hint("without updates no fresh metadata ever arrives and the device would go into island mode at once; remove freshness or add [update]"));
                    None
                }
                (Some(_), Some(u)) if d <= u.poll => {
                    c.report(&f.span(), Problem::new(format!("freshness {d} is not longer than the update poll interval {}", u.poll)).expected("freshness well above [update] poll, e.g. several days").hint("a device would go into island mode between two polls"));
                    None
                }
                _ => Some(Some(d)),
            }
        }),
        None => Some(None),
    };
    let island = match &l.island {
        Some(i) => {
            let known: Vec<&str> = facts
                .iter()
                .filter_map(|f| f.name.as_ref())
                .map(|(n, _)| n.as_str())
                .collect();
            let keep = c.list(&i.keep, |v| {
                let name: TaskName = v.parse()?;
                let all_named = facts.iter().all(|f| f.name.is_some());
                if !known.contains(&name.as_str()) && all_named {
                    let list = known
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(
                        Problem::new(format!("unknown task \"{name}\" in island.keep"))
                            .expected(format!("the name of a [[task]]: {list}"))
                            .maybe_hint(
                                did_you_mean(v, known.iter().copied())
                                    .map(|n| format!("did you mean \"{n}\"?")),
                            ),
                    );
                }
                Ok(name)
            });
            let lan = match &i.lan {
                Some(b) if *b.get_ref() => IslandLan::Allowed,
                _ => IslandLan::Blocked,
            };
            keep.map(|keep| Island { keep, lan })
        }
        None => Some(Island::default()),
    };
    let roughtime = roughtime_servers(c, l.roughtime.as_deref().unwrap_or_default());
    Some(Lifecycle {
        support_until: date?,
        freshness: freshness?,
        island: island?,
        roughtime: roughtime?,
    })
}

/// Checks `roughtime`'s servers, each field at its place; `None` if any failed.
fn roughtime_servers(c: &mut Checker<'_>, raw: &[RawRoughtime]) -> Option<Vec<RoughtimeServer>> {
    let mut out = Vec::new();
    let mut ok = true;
    for r in raw {
        let name = c.check(&r.name, |n| {
            if out.iter().any(|s: &RoughtimeServer| s.name == n) {
                return Err(
                    Problem::new(format!("Roughtime server \"{n}\" listed twice"))
                        .expected("a name of its own for each server"),
                );
            }
            n.parse::<TaskName>().map(|_| n.to_owned()).map_err(|_| {
                Problem::new(format!("invalid Roughtime server name \"{n}\""))
                    .expected("[a-z][a-z0-9-]{0,31}, e.g. \"rt1\"")
            })
        });
        let address = c.check(&r.address, roughtime_address);
        let key = c.check(&r.key, |k| {
            limpet_roughtime::Server::new(r.name.get_ref(), k)
                .map(|_| k.to_owned())
                .map_err(|e| {
                    Problem::new(format!("invalid Roughtime key: {e}")).expected(
                        "the server's Ed25519 public key, 32 bytes in base64 (44 characters)",
                    )
                })
        });
        match (name, address, key) {
            (Some(name), Some(address), Some(key)) => {
                out.push(RoughtimeServer { name, address, key })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `IP:PORT`, IPv4, a port above zero.
fn roughtime_address(a: &str) -> Result<SocketAddrV4, Problem> {
    let bad = || {
        Problem::new(format!("invalid Roughtime server address \"{a}\""))
            .expected("an IPv4 address and a UDP port, e.g. \"192.0.2.5:2002\"")
    };
    match a.parse::<SocketAddr>().map_err(|_| bad())? {
        SocketAddr::V4(v4) if v4.port() != 0 && !v4.ip().is_unspecified() => Ok(v4),
        SocketAddr::V4(_) => Err(bad()),
        SocketAddr::V6(_) => Err(bad().hint("the device's network is IPv4 only")),
    }
}
