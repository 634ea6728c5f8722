//! The manifest as written: serde shapes over the TOML, before any meaning is checked.
//!
//! Rules this module keeps:
//! - Every table denies unknown keys, so a typo is an error with a location, never a
//!   silently ignored setting.
//! - Values that need a semantic check are `Spanned`, so the check can point at them.
//! - Optional keys are `Option` here; defaults are applied by the validator, so a default is
//!   never confused with an explicit value of the same spelling.
//! - No `untagged` enums: they lose the inner error and its location. A value that may be a
//!   string or a table goes through [`StrOr`], which keeps both; the checks tell the two
//!   apart in one place, `Checker::str_or_table`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A string, or a table of `T` (e.g. `restart = "always"` or `restart = { policy = ... }`).
#[derive(Debug)]
pub(crate) enum StrOr<T> {
    Str(String),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOr::Str(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StrOr::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A port: an integer, or a string holding a port or an `a-b` range.
#[derive(Debug)]
pub(crate) enum RawPort {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range string like \"8000-8080\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

type Str = Spanned<String>;
type Strs = Option<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    pub device: RawDevice,
    pub kernel: Option<RawKernel>,
    pub disk: Option<RawDisk>,
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub task: Vec<Spanned<RawTask>>,
    pub update: Option<RawUpdate>,
    pub lifecycle: Option<RawLifecycle>,
    pub remote: Option<RawRemote>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub name: Str,
    pub version: Str,
    pub target: Str,
    pub memory: Option<Str>,
    pub cpus: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKernel {
    pub source: Option<Spanned<StrOr<RawKernelPaths>>>,
    pub modules: Strs,
    pub cmdline: Option<Str>,
    pub watchdog: Option<Str>,
    pub tpm: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKernelPaths {
    pub image: Str,
    pub modules: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisk {
    pub slot_size: Option<Str>,
    pub data_size: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub mode: Option<Str>,
    pub address: Option<Str>,
    pub gateway: Option<Str>,
    pub dns: Strs,
    pub interfaces: Strs,
    pub egress_cap: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTask {
    pub name: Str,
    pub package: Str,
    pub binary: Option<Str>,
    pub args: Strs,
    pub env: Option<BTreeMap<Str, Str>>,
    pub memory: Str,
    pub cpu: Str,
    pub pids: Option<Spanned<i64>>,
    pub restart: Option<Spanned<StrOr<RawRestart>>>,
    pub readiness: Option<Spanned<StrOr<RawReadiness>>>,
    pub files: Option<RawFiles>,
    pub devices: Strs,
    pub syscalls: Option<Spanned<StrOr<RawSyscalls>>>,
    pub network: Option<Str>,
    #[serde(default)]
    pub egress: Vec<Spanned<RawEgress>>,
    #[serde(default)]
    pub listen: Vec<Spanned<RawListen>>,
    pub tmp: Option<Str>,
    pub rights: Strs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub policy: Option<Str>,
    pub backoff_initial: Option<Str>,
    pub backoff_max: Option<Str>,
    pub crash_loop_limit: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReadiness {
    pub kind: Str,
    pub timeout: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFiles {
    pub read: Strs,
    pub write: Strs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSyscalls {
    pub profile: Option<Str>,
    pub allow: Strs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    pub host: Str,
    pub ports: Spanned<Vec<Spanned<RawPort>>>,
    pub proto: Option<Str>,
    pub rate: Option<Str>,
    pub packets: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub port: Spanned<i64>,
    pub proto: Option<Str>,
    pub scope: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpdate {
    pub repository: Str,
    pub poll: Option<Str>,
    pub keys: Spanned<Vec<Spanned<RawKeyRef>>>,
    pub root: Option<Str>,
    pub reboot_window: Option<Str>,
    pub fleet: Option<Str>,
    pub health: Option<Str>,
    pub health_timeout: Option<Str>,
    pub try_boots: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(crate) enum RawKeyRef {
    File(String),
    Id(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLifecycle {
    /// A string or a TOML date literal.
    pub support_until: Spanned<toml::Value>,
    pub freshness: Option<Str>,
    pub island: Option<RawIsland>,
    pub roughtime: Option<Vec<RawRoughtime>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoughtime {
    pub name: Str,
    pub address: Str,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIsland {
    pub keep: Strs,
    pub lan: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemote {
    pub relay: Str,
    pub access_key: Str,
    pub services: Spanned<Vec<Spanned<RawService>>>,
    #[serde(default)]
    pub direct: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Str,
    pub task: Str,
    pub port: Spanned<i64>,
}
