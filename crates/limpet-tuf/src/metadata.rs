//! TUF 1.0 metadata: the four top-level roles, parsing into validated types, and signing.
//!
//! Rules kept here:
//! - Signatures cover the canonical JSON of the `signed` object exactly as received
//!   (unrecognised fields included), never a re-serialisation of the parsed struct.
//! - Parsing validates: no key id signs twice (spec 4.2), `_type` matches the role, versions are at least 1, thresholds at
//!   least 1, the spec version's major is 1, and no length field exceeds [`MAX_LENGTH`].
//! - Unrecognised fields are kept (`extra`) so the writer can re-sign metadata without
//!   dropping them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::to_canonical;
use crate::error::Error;
use crate::keys::{Key, KeyId, RoleKey};
use crate::time::UnixTime;
use crate::MAX_LENGTH;

/// The spec version this crate writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// Name of the field in timestamp `signed` carrying its issue time (an addition of this
/// crate; python-tuf keeps unrecognised fields and ignores them). See the client's time floor.
pub const ISSUED_FIELD: &str = "x-limpet-issued";

/// A top-level role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Root: the keys of every role.
    Root,
    /// Timestamp: the newest snapshot.
    Timestamp,
    /// Snapshot: the versions of targets metadata.
    Snapshot,
    /// Targets: the target files.
    Targets,
}

impl Role {
    /// The role name as metadata writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Timestamp => "timestamp",
            Role::Snapshot => "snapshot",
            Role::Targets => "targets",
        }
    }

    /// The metadata file name, e.g. `targets.json`.
    pub const fn file_name(self) -> &'static str {
        match self {
            Role::Root => "root.json",
            Role::Timestamp => "timestamp.json",
            Role::Snapshot => "snapshot.json",
            Role::Targets => "targets.json",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The key id it claims.
    pub keyid: KeyId,
    /// Hex signature.
    pub sig: String,
}

/// The keys and threshold of a role, as listed in root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key ids allowed to sign.
    pub keyids: Vec<KeyId>,
    /// Distinct keys required.
    pub threshold: u64,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Hashes by algorithm name (`sha256`, `sha512`), hex values.
pub type Hashes = BTreeMap<String, String>;

/// Root metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// `"root"`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version.
    pub spec_version: String,
    /// Whether consistent snapshots are used.
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: UnixTime,
    /// Keys by id.
    pub keys: BTreeMap<KeyId, Key>,
    /// Role key lists by role name.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Root {
    /// The keys of `role`.
    pub fn role_keys(&self, role: Role) -> Result<&RoleKeys, Error> {
        self.roles
            .get(role.name())
            .ok_or_else(|| Error::invalid("root.json", format!("no {role} role")))
    }
}

/// An entry of `meta` in timestamp or snapshot metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetaFile {
    /// Version of the listed metadata.
    pub version: u64,
    /// Its length, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Its hashes, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Hashes>,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Timestamp metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    /// `"timestamp"`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: UnixTime,
    /// `snapshot.json` entry.
    pub meta: BTreeMap<String, MetaFile>,
    /// Unrecognised fields (here: [`ISSUED_FIELD`]).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Timestamp {
    /// The signed issue time ([`ISSUED_FIELD`]), if present and well-formed.
    pub fn issued(&self) -> Option<UnixTime> {
        self.extra
            .get(ISSUED_FIELD)
            .and_then(Value::as_str)
            .and_then(UnixTime::parse)
    }
}

/// Snapshot metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `"snapshot"`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: UnixTime,
    /// Targets metadata entries.
    pub meta: BTreeMap<String, MetaFile>,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A target file entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Length in bytes.
    pub length: u64,
    /// Hashes.
    pub hashes: Hashes,
    /// Application data (Limpet: image version, verity root hash, chunk index target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Targets metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// `"targets"`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expires: UnixTime,
    /// Target files by name.
    pub targets: BTreeMap<String, TargetFile>,
    /// Delegations (kept, not followed: see the client's step 5.6.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Value>,
    /// Unrecognised fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Common behaviour of the role types.
pub trait RoleMetadata: DeserializeOwned + Serialize {
    /// Which role.
    const ROLE: Role;
    /// Version.
    fn version(&self) -> u64;
    /// Expiry.
    fn expires(&self) -> UnixTime;
    /// Role-specific validation beyond the common checks.
    fn validate(&self, path: &str) -> Result<(), Error>;
}

fn check_length(field: String, value: u64) -> Result<(), Error> {
    if value > MAX_LENGTH {
        return Err(Error::LengthTooLarge { field, value });
    }
    Ok(())
}

fn check_meta(path: &str, meta: &BTreeMap<String, MetaFile>) -> Result<(), Error> {
    for (name, m) in meta {
        if m.version == 0 {
            return Err(Error::invalid(path, format!("meta[{name:?}].version is 0")));
        }
        if let Some(len) = m.length {
            check_length(format!("{path}: meta[{name:?}].length"), len)?;
        }
    }
    Ok(())
}

impl RoleMetadata for Root {
    const ROLE: Role = Role::Root;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> UnixTime {
        self.expires
    }
    fn validate(&self, path: &str) -> Result<(), Error> {
        for role in [Role::Root, Role::Timestamp, Role::Snapshot, Role::Targets] {
            let keys = self
                .roles
                .get(role.name())
                .ok_or_else(|| Error::invalid(path, format!("no {role} role")))?;
            if keys.threshold == 0 {
                return Err(Error::invalid(path, format!("{role} threshold is 0")));
            }
        }
        Ok(())
    }
}

impl RoleMetadata for Timestamp {
    const ROLE: Role = Role::Timestamp;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> UnixTime {
        self.expires
    }
    fn validate(&self, path: &str) -> Result<(), Error> {
        check_meta(path, &self.meta)
    }
}

impl RoleMetadata for Snapshot {
    const ROLE: Role = Role::Snapshot;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> UnixTime {
        self.expires
    }
    fn validate(&self, path: &str) -> Result<(), Error> {
        check_meta(path, &self.meta)
    }
}

impl RoleMetadata for Targets {
    const ROLE: Role = Role::Targets;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> UnixTime {
        self.expires
    }
    fn validate(&self, path: &str) -> Result<(), Error> {
        for (name, t) in &self.targets {
            check_length(format!("{path}: targets[{name:?}].length"), t.length)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    signatures: Vec<Signature>,
    signed: Value,
}

/// Parsed metadata whose signatures have NOT been checked yet.
#[derive(Clone, Debug)]
pub struct Unverified<T> {
    /// The parsed `signed` object.
    pub signed: T,
    /// The signatures.
    pub signatures: Vec<Signature>,
    /// Canonical JSON of the `signed` object as received: what the signatures cover.
    pub canonical: Vec<u8>,
}

/// Parses a metadata file of role `T` (named `path` in errors). Checks shape and the rules in
/// the module doc; does not check signatures.
pub fn parse<T: RoleMetadata>(path: &str, bytes: &[u8]) -> Result<Unverified<T>, Error> {
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for sig in &raw.signatures {
        if !seen.insert(&sig.keyid) {
            return Err(Error::DuplicateSignature {
                path: path.to_owned(),
                keyid: sig.keyid.0.clone(),
            });
        }
    }
    let type_ = raw.signed.get("_type").and_then(Value::as_str);
    if type_ != Some(T::ROLE.name()) {
        return Err(Error::invalid(
            path,
            format!("_type is {type_:?}, expected {:?}", T::ROLE.name()),
        ));
    }
    let spec = raw.signed.get("spec_version").and_then(Value::as_str);
    if !spec.is_some_and(|s| s.split('.').next() == Some("1") && s.split('.').count() >= 2) {
        return Err(Error::invalid(
            path,
            format!("unsupported spec_version {spec:?}"),
        ));
    }
    let canonical = to_canonical(&raw.signed).map_err(|e| Error::invalid(path, e.to_string()))?;
    let signed: T = serde_json::from_value(raw.signed).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    if signed.version() == 0 {
        return Err(Error::invalid(path, "version is 0"));
    }
    signed.validate(path)?;
    Ok(Unverified {
        signed,
        signatures: raw.signatures,
        canonical,
    })
}

/// Signs `signed` with `keys` and returns the metadata file's bytes (pretty JSON; the
/// signatures cover the canonical form).
pub fn sign<T: Serialize>(signed: &T, keys: &[&RoleKey]) -> Result<Vec<u8>, Error> {
    let value = serde_json::to_value(signed).map_err(|source| Error::Json {
        path: "(new metadata)".into(),
        source,
    })?;
    sign_value(value, keys)
}

/// Signs an arbitrary `signed` JSON value (used to build attack fixtures too).
pub fn sign_value(value: Value, keys: &[&RoleKey]) -> Result<Vec<u8>, Error> {
    let canonical =
        to_canonical(&value).map_err(|e| Error::invalid("(new metadata)", e.to_string()))?;
    let signatures: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::json!({"keyid": k.id(), "sig": k.sign_hex(&canonical)}))
        .collect();
    let mut envelope = Map::new();
    envelope.insert("signatures".into(), Value::Array(signatures));
    envelope.insert("signed".into(), value);
    let mut out =
        serde_json::to_vec_pretty(&Value::Object(envelope)).map_err(|source| Error::Json {
            path: "(new metadata)".into(),
            source,
        })?;
    out.push(b'\n');
    Ok(out)
}
