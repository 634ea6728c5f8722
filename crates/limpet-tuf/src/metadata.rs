//! TUF 1.0 metadata: the four top-level roles, parsing into validated types, and signing.
//!
//! Rules kept here:
//! - Signatures cover the canonical JSON of the `signed` object exactly as received
//!   (unrecognised fields included), never a re-serialisation of the parsed struct.
//! - Parsing validates: no key id signs twice (spec 4.2), `_type` matches the role, versions are at least 1, thresholds at
//!   least 1, the spec version's major is 1, and no length field exceeds [`MAX_LENGTH`]. A
//!   root's keys of an implemented scheme must be usable keys (crate::keys).
//! - Unrecognised fields are kept (`extra`) so the writer can re-sign metadata without
//!   dropping them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::to_canonical;
use crate::delegation::Delegations;
use crate::error::Error;
use crate::keys::{Key, KeyId, PublicKeyError, RoleKey};
use crate::time::UnixTime;
use crate::MAX_LENGTH;

/// The TUF specification version written into the `spec_version` of metadata this crate
/// makes (parsing accepts any 1.x).
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
    /// Hex signature over the canonical JSON of `signed`, in the encoding of its key's scheme.
    pub sig: String,
}

/// The keys and threshold of a role, as listed in root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key ids allowed to sign.
    pub keyids: Vec<KeyId>,
    /// Distinct keys required.
    pub threshold: u64,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Hashes by algorithm name (`sha256`, `sha512`), hex values.
pub type Hashes = BTreeMap<String, String>;

/// Root metadata: the keys and threshold of every top-level role, the trust anchor all
/// other metadata (and the next root) is checked against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// The `_type` field, `"root"`; [`parse`] refuses any other.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The TUF specification version it was written for; [`parse`] refuses a major other
    /// than 1.
    pub spec_version: String,
    /// Whether the repository also publishes version- and hash-prefixed names, which clients
    /// then fetch (safe while a publish is under way).
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// Its version: at least 1, raised on every re-signing, so a client can refuse one
    /// older than it trusts (rollback).
    pub version: u64,
    /// When it stops being valid: a client refuses it once its trusted time reaches this
    /// (freeze).
    pub expires: UnixTime,
    /// Public keys by key id; `roles` names which of them may sign what.
    pub keys: BTreeMap<KeyId, Key>,
    /// The key ids and threshold of each top-level role, by role name.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Root {
    /// The key ids and threshold of `role`; an error when root lists none for it (which
    /// [`parse`] already refuses).
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
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Timestamp metadata: short-lived and re-signed often, it names the newest snapshot, so a
/// client notices quickly when it is fed old metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    /// The `_type` field, `"timestamp"`; [`parse`] refuses any other.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The TUF specification version it was written for; [`parse`] refuses a major other
    /// than 1.
    pub spec_version: String,
    /// Its version: at least 1, raised on every re-signing, so a client can refuse one
    /// older than it trusts (rollback).
    pub version: u64,
    /// When it stops being valid: a client refuses it once its trusted time reaches this
    /// (freeze).
    pub expires: UnixTime,
    /// What it lists about `snapshot.json`, its only entry.
    pub meta: BTreeMap<String, MetaFile>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them (and
    /// [`ISSUED_FIELD`], read by [`Timestamp::issued`]).
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

/// Snapshot metadata: the version (and optionally length and hashes) of the targets
/// metadata, so a client cannot be given a mix of files from different publishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `_type` field, `"snapshot"`; [`parse`] refuses any other.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The TUF specification version it was written for; [`parse`] refuses a major other
    /// than 1.
    pub spec_version: String,
    /// Its version: at least 1, raised on every re-signing, so a client can refuse one
    /// older than it trusts (rollback).
    pub version: u64,
    /// When it stops being valid: a client refuses it once its trusted time reaches this
    /// (freeze).
    pub expires: UnixTime,
    /// What it lists about each targets metadata file, by file name (`targets.json`).
    pub meta: BTreeMap<String, MetaFile>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What targets metadata says about one file: the length and hashes its download must
/// match, and the application data it carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Exact length in bytes: the download cap, and checked when the download ends.
    pub length: u64,
    /// Hashes the downloaded bytes must match, every one listed.
    pub hashes: Hashes,
    /// Application data (Limpet: image version, verity root hash, chunk index target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Targets metadata: the files clients may install, each with its length and hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// The `_type` field, `"targets"`; [`parse`] refuses any other.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The TUF specification version it was written for; [`parse`] refuses a major other
    /// than 1.
    pub spec_version: String,
    /// Its version: at least 1, raised on every re-signing, so a client can refuse one
    /// older than it trusts (rollback).
    pub version: u64,
    /// When it stops being valid: a client refuses it once its trusted time reaches this
    /// (freeze).
    pub expires: UnixTime,
    /// Target files by name.
    pub targets: BTreeMap<String, TargetFile>,
    /// The roles it delegates targets to (searched by the client's step 5.6.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What [`parse`] and the client need of every role's metadata, so one generic parse, load
/// and version and expiry check serve all four roles.
pub trait RoleMetadata: DeserializeOwned + Serialize {
    /// The role these are the metadata of ([`parse`] checks `_type` against it).
    const ROLE: Role;
    /// The metadata version (compared for rollback).
    fn version(&self) -> u64;
    /// When the metadata expires (compared with trusted time for freeze).
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
        // A key of a scheme implemented here must be usable; a pair not implemented loads
        // and never counts (crate::keys rules).
        for (keyid, key) in &self.keys {
            match key.public_key() {
                Ok(_) | Err(PublicKeyError::Unsupported { .. }) => {}
                Err(source) => {
                    return Err(Error::InvalidKey {
                        path: path.to_owned(),
                        keyid: keyid.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
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
        match &self.delegations {
            Some(delegations) => delegations.validate(path),
            None => Ok(()),
        }
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
    /// The signatures as received, none checked yet:
    /// [`verify_threshold`](crate::verify::verify_threshold) decides which count.
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
    let signatures = keys
        .iter()
        .map(|k| Ok(serde_json::json!({"keyid": k.id(), "sig": k.sign_hex(&canonical)?})))
        .collect::<Result<Vec<Value>, Error>>()?;
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
