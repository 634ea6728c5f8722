//! Delegated targets roles in the repository writer: [`Repository::add_delegation`] makes a
//! role that a targets role delegates a set of target paths to, with its own keys, and
//! [`Repository::add_delegated_target`] publishes a target in it.
//!
//! Rules kept here:
//! - A delegated role's name is one plain file name: ASCII letters, digits, `-`, `_` and `.`,
//!   starting with a letter, and not a top-level role's name. Its metadata is
//!   `metadata/NAME.json` (and `metadata/VERSION.NAME.json` with consistent snapshots).
//! - A role is delegated once in the repository, by `targets` or by another delegated role;
//!   the writer finds its delegation by walking the delegations down from `targets`.
//! - A target goes into a delegated role only when that role's delegation, and each
//!   delegation above it up to `targets`, covers its name (the test the client's search
//!   applies at each step), so the writer does not sign what clients would never look for
//!   there. (An earlier terminating delegation of the same paths can still hide it: the
//!   order of delegations is the publisher's choice.)
//! - Files are written leaf first: the delegated role, then the role delegating it, then
//!   snapshot (listing both) and timestamp; a client never sees a name before its file.
//! - Delegated role keys are Ed25519 PKCS#8 PEM files `NAME-KEYID16.pem` in the keys
//!   directory, mode 0600, never overwritten, like the top-level roles' keys; the root keys
//!   are not needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::{check_target_name, io_err, RepoError, Repository};
use crate::delegation::{DelegatedRole, Delegations, MAX_DELEGATIONS};
use crate::keys::{Key, KeyId, KeyRing, RoleKey, Scheme};
use crate::metadata::{self, MetaFile, Role, Root, TargetFile, Targets, SPEC_VERSION};

/// What a delegation gives its role: path patterns or path hash prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DelegatedPaths {
    /// Shell-style patterns (`*`, `?`, `[…]`), matched part by part between `/`.
    Patterns(Vec<String>),
    /// Prefixes of the lowercase hex SHA-256 of target paths.
    HashPrefixes(Vec<String>),
}

/// Whether the client's search may go on past a delegation that covers a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Termination {
    /// Later delegations are still searched when this role does not list the target.
    #[default]
    Continue,
    /// This role is the last one searched for the paths it covers.
    Terminating,
}

/// A new delegation: [`Repository::add_delegation`]'s argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelegationSpec {
    /// The new role's name (see the module rules).
    pub name: String,
    /// The role delegating to it: `targets` or an existing delegated role.
    pub delegator: String,
    /// What it may sign for.
    pub paths: DelegatedPaths,
    /// How many new keys it gets.
    pub keys: usize,
    /// Their signature scheme (key type).
    pub scheme: Scheme,
    /// How many of them must sign.
    pub threshold: u64,
    /// Whether the delegation is terminating.
    pub termination: Termination,
}

/// Why a delegation could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationError {
    /// A role name that is not a plain file name, or is a top-level role's.
    #[error("role name {name:?}: {reason}")]
    BadRoleName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A role that already exists.
    #[error("role {name:?} already exists")]
    RoleExists {
        /// The name.
        name: String,
    },
    /// A role no delegation from `targets` leads to.
    #[error("no delegated role {name:?} in the repository")]
    NoSuchRole {
        /// The name.
        name: String,
    },
    /// Bad paths or path hash prefixes.
    #[error("delegation {name:?}: {reason}")]
    BadPaths {
        /// The role.
        name: String,
        /// Why.
        reason: String,
    },
    /// A delegating role that uses hash bins (`succinct_roles`), which this writer does
    /// not extend.
    #[error("{delegator:?} delegates with succinct_roles (hash bins); no role can be added")]
    HashBins {
        /// The delegating role.
        delegator: String,
    },
    /// A target outside the paths delegated to the role.
    #[error("target {target:?} is not delegated to role {role:?}")]
    NotDelegated {
        /// The role.
        role: String,
        /// The target.
        target: String,
    },
    /// Too few private keys of a delegated role in the keys directory.
    #[error(
        "{role}: {have} private key(s) available in the keys directory, threshold is {threshold}"
    )]
    MissingKeys {
        /// The role.
        role: String,
        /// Keys found.
        have: u64,
        /// Keys required.
        threshold: u64,
    },
}

/// A delegation as the repository holds it: who delegates, to what, with which keys.
#[derive(Clone)]
struct Found {
    delegator: String,
    role: DelegatedRole,
    keys: BTreeMap<KeyId, Key>,
}

fn check_role_name(name: &str) -> Result<(), DelegationError> {
    let bad = |reason| DelegationError::BadRoleName {
        name: name.to_owned(),
        reason,
    };
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(bad("must start with an ASCII letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("may hold only ASCII letters, digits, '-', '_' and '.'"));
    }
    if [Role::Root, Role::Timestamp, Role::Snapshot, Role::Targets]
        .iter()
        .any(|r| r.name() == name)
    {
        return Err(bad("is a top-level role"));
    }
    Ok(())
}

fn check_paths(name: &str, paths: &DelegatedPaths) -> Result<(), DelegationError> {
    let bad = |reason: String| DelegationError::BadPaths {
        name: name.to_owned(),
        reason,
    };
    let list = match paths {
        DelegatedPaths::Patterns(p) | DelegatedPaths::HashPrefixes(p) => p,
    };
    if list.is_empty() {
        return Err(bad("no paths: the role would be delegated nothing".into()));
    }
    if let DelegatedPaths::HashPrefixes(prefixes) = paths {
        if let Some(p) = prefixes.iter().find(|p| {
            p.is_empty()
                || p.len() > 64
                || !p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }) {
            return Err(bad(format!(
                "path hash prefix {p:?} is not 1 to 64 lowercase hex digits"
            )));
        }
    }
    Ok(())
}

impl Repository {
    /// Makes the delegated role `spec.name`: `spec.keys` new keys (threshold
    /// `spec.threshold`), listed with its paths in the delegations of `spec.delegator`, and
    /// its metadata (version 1, no targets); re-signs the delegator, snapshot and timestamp.
    /// Needs the delegator's keys, not the root keys. Returns the new key ids.
    pub fn add_delegation(&self, spec: &DelegationSpec) -> Result<Vec<KeyId>, RepoError> {
        check_role_name(&spec.name)?;
        check_paths(&spec.name, &spec.paths)?;
        if spec.threshold == 0 || u64::try_from(spec.keys).unwrap_or(0) < spec.threshold {
            return Err(RepoError::BadThreshold {
                threshold: spec.threshold,
                keys: spec.keys,
            });
        }
        let root = self.read_role::<Root>()?;
        let mut ring = self.ring()?;
        if self.delegated_path(&spec.name).exists() || self.find(&spec.name)?.is_some() {
            return Err(DelegationError::RoleExists {
                name: spec.name.clone(),
            }
            .into());
        }
        let mut delegator = self.targets_role(&spec.delegator)?;
        // Check the delegator can be re-signed before making keys, so a failure leaves no
        // new files.
        self.role_signing_keys(&spec.delegator, &ring)?;
        let delegations = delegator.delegations.get_or_insert_with(|| Delegations {
            keys: BTreeMap::new(),
            roles: Some(Vec::new()),
            succinct_roles: None,
            extra: Map::new(),
        });
        if delegations.succinct_roles.is_some() {
            return Err(DelegationError::HashBins {
                delegator: spec.delegator.clone(),
            }
            .into());
        }
        let mut ids = Vec::new();
        for _ in 0..spec.keys {
            let key = self.new_delegated_key(&spec.name, spec.scheme)?;
            delegations.keys.insert(key.id().clone(), key.key().clone());
            ids.push(key.id().clone());
            ring.insert(key);
        }
        let (paths, path_hash_prefixes) = match &spec.paths {
            DelegatedPaths::Patterns(p) => (Some(p.clone()), None),
            DelegatedPaths::HashPrefixes(p) => (None, Some(p.clone())),
        };
        delegations
            .roles
            .get_or_insert_with(Vec::new)
            .push(DelegatedRole {
                name: spec.name.clone(),
                keyids: ids.clone(),
                threshold: spec.threshold,
                terminating: spec.termination == Termination::Terminating,
                paths,
                path_hash_prefixes,
                extra: Map::new(),
            });
        let role = Targets {
            type_: "targets".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: self.expires(self.expiry.targets),
            targets: BTreeMap::new(),
            delegations: None,
            extra: Map::new(),
        };
        let keys: Vec<&RoleKey> = ids.iter().filter_map(|id| ring.get(id)).collect();
        let role_meta = self.write_delegated(&root, &spec.name, &role, &keys)?;
        self.bump(
            &mut delegator.version,
            &mut delegator.expires,
            self.expiry.targets,
        );
        let delegator_meta = self.write_targets_role(&root, &ring, &spec.delegator, &delegator)?;
        self.publish_snapshot_listing(
            &root,
            &ring,
            vec![
                (format!("{}.json", spec.name), role_meta),
                (format!("{}.json", spec.delegator), delegator_meta),
            ],
        )?;
        Ok(ids)
    }

    /// Publishes the file at `source` as target `name` of the delegated role `role` (which
    /// must be delegated `name`), then re-signs that role, snapshot and timestamp. Needs only
    /// the role's keys (and snapshot's and timestamp's).
    pub fn add_delegated_target(
        &self,
        role: &str,
        name: &str,
        source: &Path,
        custom: Option<Value>,
    ) -> Result<TargetFile, RepoError> {
        check_target_name(name)?;
        let found = self
            .find(role)?
            .ok_or_else(|| DelegationError::NoSuchRole {
                name: role.to_owned(),
            })?;
        // Every delegation from `targets` down to the role must cover the name.
        let mut edge = Some(found.clone());
        let mut hops = 0;
        while let Some(link) = edge {
            if !link.role.covers(name) {
                return Err(DelegationError::NotDelegated {
                    role: link.role.name,
                    target: name.to_owned(),
                }
                .into());
            }
            hops += 1;
            edge = match link.delegator.as_str() {
                _ if hops > MAX_DELEGATIONS => None,
                "targets" => None,
                delegator => self.find(delegator)?,
            };
        }
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let keys = signing_keys_of(&found, &ring)?;
        let mut targets = self.delegated_targets(role)?;
        let mut file = std::fs::File::open(source).map_err(io_err(source))?;
        let entry = self.store_target_file(name, &mut file, custom)?;
        targets.targets.insert(name.to_owned(), entry.clone());
        self.bump(
            &mut targets.version,
            &mut targets.expires,
            self.expiry.targets,
        );
        let meta = self.write_delegated(&root, role, &targets, &keys)?;
        self.publish_snapshot_listing(&root, &ring, vec![(format!("{role}.json"), meta)])?;
        Ok(entry)
    }

    /// The delegated role `role`'s metadata as `DIR/metadata/ROLE.json` holds it (parsed;
    /// signatures are not checked).
    pub fn delegated_targets(&self, role: &str) -> Result<Targets, RepoError> {
        check_role_name(role)?;
        let path = self.delegated_path(role);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RepoError::from(DelegationError::NoSuchRole {
                name: role.to_owned(),
            }),
            _ => io_err(&path)(e),
        })?;
        Ok(metadata::parse::<Targets>(&format!("{role}.json"), &bytes)?.signed)
    }

    // ---- internals ------------------------------------------------------------------------

    fn delegated_path(&self, role: &str) -> std::path::PathBuf {
        self.metadata_dir().join(format!("{role}.json"))
    }

    /// `targets` or a delegated role's metadata.
    fn targets_role(&self, role: &str) -> Result<Targets, RepoError> {
        if role == Role::Targets.name() {
            self.read_role::<Targets>()
        } else {
            self.delegated_targets(role)
        }
    }

    /// The delegation of `role`, walking the delegations down from `targets`.
    fn find(&self, role: &str) -> Result<Option<Found>, RepoError> {
        let mut to_visit = vec![(
            Role::Targets.name().to_owned(),
            self.read_role::<Targets>()?,
        )];
        let mut visited = BTreeSet::new();
        while let Some((name, targets)) = to_visit.pop() {
            if !visited.insert(name.clone()) {
                continue;
            }
            let Some(delegations) = targets.delegations else {
                continue;
            };
            for child in delegations.roles.into_iter().flatten() {
                if child.name == role {
                    return Ok(Some(Found {
                        delegator: name,
                        role: child,
                        keys: delegations.keys,
                    }));
                }
                if !visited.contains(&child.name) && self.delegated_path(&child.name).exists() {
                    let metadata = self.delegated_targets(&child.name)?;
                    to_visit.push((child.name, metadata));
                }
            }
        }
        Ok(None)
    }

    /// The private keys that sign `role` (`targets` or delegated), at least its threshold.
    fn role_signing_keys<'a>(
        &self,
        role: &str,
        ring: &'a KeyRing,
    ) -> Result<Vec<&'a RoleKey>, RepoError> {
        if role == Role::Targets.name() {
            return self.signing_keys(&self.read_role::<Root>()?, Role::Targets, ring);
        }
        let found = self
            .find(role)?
            .ok_or_else(|| DelegationError::NoSuchRole {
                name: role.to_owned(),
            })?;
        signing_keys_of(&found, ring)
    }

    /// Signs and writes `targets` or a delegated role; returns what snapshot lists about it.
    fn write_targets_role(
        &self,
        root: &Root,
        ring: &KeyRing,
        role: &str,
        targets: &Targets,
    ) -> Result<MetaFile, RepoError> {
        if role == Role::Targets.name() {
            return self.write_role(root, ring, targets);
        }
        let keys = self.role_signing_keys(role, ring)?;
        self.write_delegated(root, role, targets, &keys)
    }

    /// Signs a delegated role with `keys` and writes `VERSION.ROLE.json` (with consistent
    /// snapshots) and `ROLE.json`.
    fn write_delegated(
        &self,
        root: &Root,
        role: &str,
        targets: &Targets,
        keys: &[&RoleKey],
    ) -> Result<MetaFile, RepoError> {
        let bytes = metadata::sign(targets, keys)?;
        if root.consistent_snapshot {
            self.write_metadata(&format!("{}.{role}.json", targets.version), &bytes)?;
        }
        self.write_metadata(&format!("{role}.json"), &bytes)?;
        Ok(self.meta_for(targets.version, &bytes))
    }

    fn new_delegated_key(&self, role: &str, scheme: Scheme) -> Result<RoleKey, RepoError> {
        self.create_keys_dir()?;
        let key = RoleKey::generate_scheme(scheme)?;
        let short = key.id().0.get(..16).unwrap_or_default().to_owned();
        key.save_new(&self.keys_dir.join(format!("{role}-{short}.pem")))?;
        Ok(key)
    }
}

fn signing_keys_of<'a>(found: &Found, ring: &'a KeyRing) -> Result<Vec<&'a RoleKey>, RepoError> {
    let keys: Vec<&RoleKey> = found
        .role
        .keyids
        .iter()
        .filter(|id| found.keys.contains_key(id))
        .filter_map(|id| ring.get(id))
        .collect();
    let have = u64::try_from(keys.len()).unwrap_or(u64::MAX);
    if have < found.role.threshold {
        return Err(DelegationError::MissingKeys {
            role: format!("{} (delegated by {})", found.role.name, found.delegator),
            have,
            threshold: found.role.threshold,
        }
        .into());
    }
    Ok(keys)
}
