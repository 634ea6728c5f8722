//! What a published version looks like in the TUF targets metadata: target names and the
//! signed `custom` object. Shared by the publisher and the device's update agent, so the
//! two cannot drift apart.
//!
//! Per published version `V` of device model `D`:
//!
//! | target | content |
//! | --- | --- |
//! | `D/V/slot.img` | the whole slot image (for tools and other TUF clients) |
//! | `D/V/slot.cidx` | the slot's chunk index (`limpet-chunk` format 1): what devices fetch |
//! | `D/V/from-F.delta` | a `limpet-delta` from version `F` (the release before `V`), when the publisher made one |
//!
//! A release built in cohorts (docs/cohorts.md) has the same three per cohort `K`, under
//! `D/V/cohort-K/`, and their custom also carries `"cohort": K, "cohorts": N`. A release is
//! either one target set or `N` cohort sets, never both (the publisher refuses a mix).
//!
//! All carry `custom = {"limpet": {...}}` with the fields of [`SlotTarget`]; the index's
//! also has `"index_format": 1`, a delta's `"delta_from": "F"`. A device running `F`
//! fetches the delta; any other, or one whose delta fails, fetches chunks. The chunks themselves are not TUF targets: they live in the
//! chunk store [`CHUNKS_DIR`] next to `metadata/` and `targets/`, named by their SHA-256,
//! and are trusted only through the signed index that names them.
//!
//! Rules kept here:
//! - Parsing is strict about what the agent relies on (device, version, target, hashes,
//!   length, index format) and ignores unknown fields, so a newer publisher can add some.
//! - A target name and its `custom` must agree on device, version and cohort, or the entry
//!   is refused: the name is what a repository listing shows, the custom what the agent
//!   acts on. A custom with a cohort out of range, or with only one of `cohort` and
//!   `cohorts`, is malformed.

use limpet_state::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cohort::CohortTag;

/// The chunk store's directory in the repository, beside `metadata/` and `targets/`.
pub const CHUNKS_DIR: &str = "chunks";
/// The only chunk index format this crate writes and reads.
pub const INDEX_FORMAT: u32 = 1;
/// File name of the chunk index target.
pub const INDEX_FILE: &str = "slot.cidx";
/// File name of the whole-slot target.
pub const SLOT_FILE: &str = "slot.img";
/// Largest delta the publisher offers and the agent fetches: the agent holds it in memory
/// while applying, and a delta this large has lost against the chunk store anyway.
pub const MAX_DELTA: u64 = 1024 * 1024;
/// The key of Limpet's object inside a target's `custom`.
pub const CUSTOM_KEY: &str = "limpet";

/// The directory of a release's targets: `D/V`, or `D/V/cohort-K` for cohort `K`.
pub fn release_dir(device: &str, version: &str, cohort: Option<CohortTag>) -> String {
    match cohort {
        Some(c) => format!("{device}/{version}/{}", c.dir_name()),
        None => format!("{device}/{version}"),
    }
}

/// The chunk index target of `version` of `device`: `D/V/slot.cidx`.
pub fn index_target_name(device: &str, version: &str) -> String {
    index_target_name_in(device, version, None)
}

/// As [`index_target_name`], of cohort `cohort`: `D/V/cohort-K/slot.cidx`.
pub fn index_target_name_in(device: &str, version: &str, cohort: Option<CohortTag>) -> String {
    format!("{}/{INDEX_FILE}", release_dir(device, version, cohort))
}

/// The whole-slot target of `version` of `device`: `D/V/slot.img`.
pub fn slot_target_name(device: &str, version: &str) -> String {
    slot_target_name_in(device, version, None)
}

/// As [`slot_target_name`], of cohort `cohort`: `D/V/cohort-K/slot.img`.
pub fn slot_target_name_in(device: &str, version: &str, cohort: Option<CohortTag>) -> String {
    format!("{}/{SLOT_FILE}", release_dir(device, version, cohort))
}

/// The delta target that makes `version` of `device` from version `from`:
/// `D/V/from-F.delta`.
pub fn delta_target_name(device: &str, version: &str, from: &str) -> String {
    delta_target_name_in(device, version, from, None)
}

/// As [`delta_target_name`], of cohort `cohort`: `D/V/cohort-K/from-F.delta`.
pub fn delta_target_name_in(
    device: &str,
    version: &str,
    from: &str,
    cohort: Option<CohortTag>,
) -> String {
    format!("{}/from-{from}.delta", release_dir(device, version, cohort))
}

/// The version part of `D/V/slot.cidx` or `D/V/cohort-K/slot.cidx` when the name is an
/// index target of `device`.
pub fn index_target_version<'a>(name: &'a str, device: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(device)?.strip_prefix('/')?;
    let dir = rest.strip_suffix(INDEX_FILE)?.strip_suffix('/')?;
    let version = match dir.split_once('/') {
        Some((version, cohort)) => {
            let k = cohort.strip_prefix("cohort-")?;
            (!k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())).then_some(version)?
        }
        None => dir,
    };
    (!version.is_empty() && !version.contains('/')).then_some(version)
}

/// The parts of a target name `D/V/FILE` or `D/V/cohort-K/FILE`: device, version, the
/// cohort directory (empty when none) and the file.
fn name_parts(name: &str) -> (&str, &str, &str, &str) {
    let (head, file) = name.rsplit_once('/').unwrap_or(("", name));
    let (head, cohort) = match head.rsplit_once('/') {
        Some((h, c)) if c.starts_with("cohort-") && h.contains('/') => (h, c),
        _ => (head, ""),
    };
    let (device, version) = head.rsplit_once('/').unwrap_or((head, ""));
    (device, version, cohort, file)
}

/// The repository path (`/`-separated) of the chunk whose SHA-256 is `id_hex`:
/// `chunks/<first 2 hex>/<64 hex>.zst`, as `limpet-chunk` lays the store out.
pub fn chunk_path(id_hex: &str) -> String {
    let prefix = id_hex.get(..2).unwrap_or(id_hex);
    format!("{CHUNKS_DIR}/{prefix}/{id_hex}.zst")
}

/// The signed facts about one published slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTarget {
    /// Device model (the slot header's `device`).
    pub device: String,
    /// Version (the slot header's `version`).
    pub version: Version,
    /// Target architecture (`x86_64`, `aarch64`).
    pub target: String,
    /// The dm-verity root hash the slot header carries: what PID 1 must find after writing.
    pub verity_root: [u8; 32],
    /// Bytes of the slot image.
    pub slot_length: u64,
    /// SHA-256 of the slot image (also the index's payload hash).
    pub slot_sha256: [u8; 32],
    /// The cohort the slot was built for (its header's `limpet.cohort=K/N`); `None` for a
    /// release not built in cohorts.
    pub cohort: Option<CohortTag>,
}

/// The JSON form inside `custom.limpet`.
#[derive(Debug, Serialize, Deserialize)]
struct RawSlotTarget {
    device: String,
    version: String,
    target: String,
    verity_root: String,
    slot_length: u64,
    slot_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index_format: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cohort: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cohorts: Option<u32>,
}

/// Why a target's `custom` is not a usable Limpet slot description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomError {
    /// No `custom.limpet` object.
    #[error("target {name:?}: no custom.{CUSTOM_KEY} object")]
    Missing {
        /// The target.
        name: String,
    },
    /// The object does not have the expected fields and types.
    #[error("target {name:?}: custom.{CUSTOM_KEY} is malformed: {reason}")]
    Malformed {
        /// The target.
        name: String,
        /// What serde said, or which field is wrong.
        reason: String,
    },
    /// A chunk index in a format this agent cannot read.
    #[error("target {name:?}: index format {found:?}, this agent reads format {INDEX_FORMAT}")]
    IndexFormat {
        /// The target.
        name: String,
        /// The format listed (none for a missing field).
        found: Option<u32>,
    },
    /// A delta target without `delta_from`.
    #[error("target {name:?}: custom.{CUSTOM_KEY} has no delta_from")]
    NotADelta {
        /// The target.
        name: String,
    },
    /// The name says one device or version and the custom another.
    #[error("target {name:?}: custom.{CUSTOM_KEY} names {field} {found:?}, the target name says {expected:?}")]
    NameMismatch {
        /// The target.
        name: String,
        /// `device` or `version`.
        field: &'static str,
        /// From the name.
        expected: String,
        /// From the custom.
        found: String,
    },
}

fn hash32(name: &str, field: &str, text: &str) -> Result<[u8; 32], CustomError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| CustomError::Malformed {
        name: name.to_owned(),
        reason: format!("{field}: not 64 hex digits: {e}"),
    })?;
    Ok(out)
}

impl SlotTarget {
    /// The `custom` object of the chunk index target (with `index_format`).
    pub fn index_custom(&self) -> Value {
        self.custom(Some(INDEX_FORMAT))
    }

    /// The `custom` object of the whole-slot target.
    pub fn slot_custom(&self) -> Value {
        self.custom(None)
    }

    fn custom(&self, index_format: Option<u32>) -> Value {
        self.custom_with(index_format, None)
    }

    fn custom_with(&self, index_format: Option<u32>, delta_from: Option<String>) -> Value {
        let raw = RawSlotTarget {
            device: self.device.clone(),
            version: self.version.to_string(),
            target: self.target.clone(),
            verity_root: hex::encode(self.verity_root),
            slot_length: self.slot_length,
            slot_sha256: hex::encode(self.slot_sha256),
            index_format,
            delta_from,
            cohort: self.cohort.map(CohortTag::index),
            cohorts: self.cohort.map(CohortTag::count),
        };
        // Strings and integers only: serializing cannot fail.
        let inner = serde_json::to_value(raw).unwrap_or(Value::Null);
        serde_json::json!({ CUSTOM_KEY: inner })
    }

    /// Reads the `custom` of the index target `name` (`D/V/slot.cidx`): checks the index
    /// format and that device and version agree with the name.
    pub fn from_index_custom(name: &str, custom: Option<&Value>) -> Result<Self, CustomError> {
        let (slot, raw) = Self::from_custom(name, custom, |raw, cohort| {
            index_target_name_in(&raw.device, &raw.version, cohort)
        })?;
        if raw.index_format != Some(INDEX_FORMAT) {
            return Err(CustomError::IndexFormat {
                name: name.to_owned(),
                found: raw.index_format,
            });
        }
        Ok(slot)
    }

    /// The fields every target's custom has, checked against the name `expected` makes.
    fn from_custom(
        name: &str,
        custom: Option<&Value>,
        expected: impl Fn(&RawSlotTarget, Option<CohortTag>) -> String,
    ) -> Result<(Self, RawSlotTarget), CustomError> {
        let object =
            custom
                .and_then(|c| c.get(CUSTOM_KEY))
                .ok_or_else(|| CustomError::Missing {
                    name: name.to_owned(),
                })?;
        let raw: RawSlotTarget =
            serde_json::from_value(object.clone()).map_err(|e| CustomError::Malformed {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
        let version = Version::parse(&raw.version).map_err(|e| CustomError::Malformed {
            name: name.to_owned(),
            reason: format!("version: {e}"),
        })?;
        let cohort = match (raw.cohort, raw.cohorts) {
            (None, None) => None,
            (Some(index), Some(count)) => {
                Some(
                    CohortTag::new(index, count).map_err(|e| CustomError::Malformed {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?,
                )
            }
            _ => {
                return Err(CustomError::Malformed {
                    name: name.to_owned(),
                    reason: "cohort and cohorts go together".into(),
                })
            }
        };
        let mismatch = |field, expected: &str, found: &str| CustomError::NameMismatch {
            name: name.to_owned(),
            field,
            expected: expected.to_owned(),
            found: found.to_owned(),
        };
        let wanted = expected(&raw, cohort);
        if name != wanted {
            let (device, ver, dir, file) = name_parts(name);
            let (_, _, wanted_dir, wanted_file) = name_parts(&wanted);
            return Err(if device != raw.device {
                mismatch("device", device, &raw.device)
            } else if ver != raw.version {
                mismatch("version", ver, &raw.version)
            } else if dir != wanted_dir {
                mismatch("cohort", dir, wanted_dir)
            } else {
                mismatch("file", file, wanted_file)
            });
        }
        let slot = SlotTarget {
            verity_root: hash32(name, "verity_root", &raw.verity_root)?,
            slot_sha256: hash32(name, "slot_sha256", &raw.slot_sha256)?,
            device: raw.device.clone(),
            version,
            target: raw.target.clone(),
            slot_length: raw.slot_length,
            cohort,
        };
        Ok((slot, raw))
    }
}

/// A delta target: the slot it makes, and the version it starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaTarget {
    /// The slot the delta makes (as the index and slot targets of that version say).
    pub slot: SlotTarget,
    /// The version whose slot the delta applies to.
    pub from: Version,
}

impl DeltaTarget {
    /// This delta's target name, `D/V/from-F.delta` (`D/V/cohort-K/from-F.delta` for a
    /// cohort's slot).
    pub fn name(&self) -> String {
        delta_target_name_in(
            &self.slot.device,
            &self.slot.version.to_string(),
            &self.from.to_string(),
            self.slot.cohort,
        )
    }

    /// The `custom` object of the delta target.
    pub fn custom(&self) -> Value {
        self.slot.custom_with(None, Some(self.from.to_string()))
    }

    /// Reads the `custom` of the delta target `name`: device, version and `delta_from` must
    /// agree with the name.
    pub fn from_custom(name: &str, custom: Option<&Value>) -> Result<Self, CustomError> {
        let (slot, raw) = SlotTarget::from_custom(name, custom, |raw, cohort| {
            delta_target_name_in(
                &raw.device,
                &raw.version,
                raw.delta_from.as_deref().unwrap_or(""),
                cohort,
            )
        })?;
        let from = raw.delta_from.ok_or_else(|| CustomError::NotADelta {
            name: name.to_owned(),
        })?;
        let from = Version::parse(&from).map_err(|e| CustomError::Malformed {
            name: name.to_owned(),
            reason: format!("delta_from: {e}"),
        })?;
        Ok(DeltaTarget { slot, from })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SlotTarget {
        SlotTarget {
            device: "hello".into(),
            version: Version::parse("1.2.3").unwrap(),
            target: "x86_64".into(),
            verity_root: [7; 32],
            slot_length: 4096 * 3,
            slot_sha256: [9; 32],
            cohort: None,
        }
    }

    #[test]
    fn a_cohorts_targets_carry_it_in_name_and_custom() {
        let mut t = sample();
        t.cohort = Some(CohortTag::new(2, 3).unwrap());
        let name = index_target_name_in("hello", "1.2.3", t.cohort);
        assert_eq!(name, "hello/1.2.3/cohort-2/slot.cidx");
        assert_eq!(index_target_version(&name, "hello"), Some("1.2.3"));
        assert_eq!(
            index_target_version("hello/1.2.3/x-2/slot.cidx", "hello"),
            None
        );
        let c = t.index_custom();
        assert_eq!(
            (&c["limpet"]["cohort"], &c["limpet"]["cohorts"]),
            (&2.into(), &3.into())
        );
        assert_eq!(
            SlotTarget::from_index_custom(&name, Some(&c)),
            Ok(t.clone())
        );
        // Listed under another cohort, or under the release's own names.
        for (other, found) in [
            ("hello/1.2.3/cohort-1/slot.cidx", "cohort-1"),
            ("hello/1.2.3/slot.cidx", ""),
        ] {
            let e = SlotTarget::from_index_custom(other, Some(&c));
            assert!(
                matches!(&e, Err(CustomError::NameMismatch { field: "cohort", expected, found: f, .. })
                    if expected == found && f == "cohort-2"),
                "{other}: {e:?}"
            );
        }
        // A cohort's delta.
        let d = DeltaTarget {
            slot: t.clone(),
            from: Version::parse("1.2.2").unwrap(),
        };
        assert_eq!(d.name(), "hello/1.2.3/cohort-2/from-1.2.2.delta");
        assert_eq!(
            DeltaTarget::from_custom(&d.name(), Some(&d.custom())),
            Ok(d)
        );
        // A cohort out of range, or half of one.
        for (k, n) in [
            (Some(4), Some(3)),
            (Some(0), Some(3)),
            (Some(1), Some(65)),
            (Some(1), None),
            (None, Some(2)),
        ] {
            let mut bad = c.clone();
            bad["limpet"]["cohort"] = k.into();
            bad["limpet"]["cohorts"] = n.into();
            let e = SlotTarget::from_index_custom(&name, Some(&bad));
            assert!(
                matches!(e, Err(CustomError::Malformed { .. })),
                "{k:?}/{n:?}: {e:?}"
            );
        }
    }

    #[test]
    fn custom_round_trips() {
        let t = sample();
        let name = index_target_name("hello", "1.2.3");
        assert_eq!(
            SlotTarget::from_index_custom(&name, Some(&t.index_custom())),
            Ok(t.clone())
        );
        let c = t.index_custom();
        assert_eq!(c["limpet"]["index_format"], 1);
        assert_eq!(c["limpet"]["verity_root"], "07".repeat(32));
        // The whole-slot target's custom is not an index description.
        assert!(matches!(
            SlotTarget::from_index_custom(&name, Some(&t.slot_custom())),
            Err(CustomError::IndexFormat { found: None, .. })
        ));
    }

    #[test]
    fn delta_custom_round_trips_and_must_match_its_name() {
        let d = DeltaTarget {
            slot: sample(),
            from: Version::parse("1.2.2").unwrap(),
        };
        assert_eq!(d.name(), "hello/1.2.3/from-1.2.2.delta");
        assert_eq!(d.custom()["limpet"]["delta_from"], "1.2.2");
        assert_eq!(
            DeltaTarget::from_custom(&d.name(), Some(&d.custom())),
            Ok(d.clone())
        );
        // Listed under another starting version.
        let e = DeltaTarget::from_custom("hello/1.2.3/from-1.0.0.delta", Some(&d.custom()));
        assert!(
            matches!(&e, Err(CustomError::NameMismatch { field: "file", expected, found, .. })
                if expected == "from-1.0.0.delta" && found == "from-1.2.2.delta"),
            "{e:?}"
        );
        // An index's custom is not a delta's.
        let e = DeltaTarget::from_custom(&d.name(), Some(&d.slot.index_custom()));
        assert!(matches!(e, Err(CustomError::NameMismatch { .. })), "{e:?}");
    }

    #[test]
    fn name_and_custom_must_agree() {
        let t = sample();
        let e = SlotTarget::from_index_custom("hello/9.9.9/slot.cidx", Some(&t.index_custom()));
        assert!(
            matches!(
                e,
                Err(CustomError::NameMismatch {
                    field: "version",
                    ..
                })
            ),
            "{e:?}"
        );
        let e = SlotTarget::from_index_custom("other/1.2.3/slot.cidx", Some(&t.index_custom()));
        assert!(
            matches!(
                e,
                Err(CustomError::NameMismatch {
                    field: "device",
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(matches!(
            SlotTarget::from_index_custom("hello/1.2.3/slot.cidx", None),
            Err(CustomError::Missing { .. })
        ));
        let mut bad = t.index_custom();
        bad["limpet"]["verity_root"] = "zz".into();
        assert!(matches!(
            SlotTarget::from_index_custom("hello/1.2.3/slot.cidx", Some(&bad)),
            Err(CustomError::Malformed { .. })
        ));
    }

    #[test]
    fn index_names() {
        assert_eq!(
            index_target_version("hello/1.2.3/slot.cidx", "hello"),
            Some("1.2.3")
        );
        assert_eq!(index_target_version("hello/1.2.3/slot.img", "hello"), None);
        assert_eq!(index_target_version("hellox/1/slot.cidx", "hello"), None);
        assert_eq!(index_target_version("hello/a/b/slot.cidx", "hello"), None);
        assert_eq!(index_target_version("hello//slot.cidx", "hello"), None);
        assert_eq!(chunk_path("abcd"), "chunks/ab/abcd.zst");
    }
}
