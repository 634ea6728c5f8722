//! Delegated targets (TUF specification 1.0.34, the `delegations` object of targets metadata
//! and step 5.6.7.2): which roles a targets role delegates to, which target paths each may
//! sign for, and the pre-order depth-first search that finds a target's metadata.
//!
//! Rules kept here:
//! - A delegation has `paths` (shell-style patterns, matched as python-tuf does: pattern and
//!   target split on `/` must have the same number of parts, each part matched by `fnmatch`)
//!   or `path_hash_prefixes` (prefixes of the hex SHA-256 of the target path), exactly one
//!   (as python-tuf requires). `delegations` has `roles` or `succinct_roles` (hash bins),
//!   exactly one; role names are unique, not empty and not a top-level role's.
//! - [`search`] visits a role only through a delegation whose paths cover the target, so a
//!   target a role lists outside its delegated paths is never found; a terminating delegation
//!   that covers the target ends the search below it (later siblings and roles still on the
//!   stack are dropped); a role already visited is skipped (cycles end); at most
//!   [`MAX_DELEGATIONS`] roles are visited.
//! - A delegated role is verified with the keys and threshold its delegating role lists for
//!   it, never with the keys of any other role (the loader [`search`] calls does that).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::keys::{Key, KeyId};
use crate::metadata::{Role, RoleKeys, TargetFile, Targets};

/// The most roles one target search visits (python-tuf's `max_delegations`), top-level
/// targets included.
pub const MAX_DELEGATIONS: usize = 32;

/// The `delegations` object of targets metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delegations {
    /// Public keys by key id, for the delegated roles.
    pub keys: BTreeMap<KeyId, Key>,
    /// Delegated roles in order of priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    /// Hash bin delegation (TAP 15), instead of `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One delegated role of `delegations.roles`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// The role name (its metadata is `NAME.json`).
    pub name: String,
    /// Key ids (in the delegating role's `keys`) allowed to sign.
    pub keyids: Vec<KeyId>,
    /// Distinct keys required.
    pub threshold: u64,
    /// Whether the search stops below this role when it covers the target.
    pub terminating: bool,
    /// Shell-style path patterns this role may sign for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Prefixes of the hex SHA-256 of target paths this role may sign for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Succinct hash bin delegation: `2^bit_length` roles `NAME_PREFIX-XX` sharing one set of
/// keys, each delegated the targets whose path hash starts with its bin number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    /// Key ids allowed to sign every bin.
    pub keyids: Vec<KeyId>,
    /// Distinct keys required.
    pub threshold: u64,
    /// Number of leading bits of the path hash that pick the bin (1 to 32).
    pub bit_length: u32,
    /// Bin role names are `NAME_PREFIX-` and the bin number in hex.
    pub name_prefix: String,
    /// Fields this crate does not interpret, kept so that re-signing does not drop them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A role the search will visit: its name and what the delegating role says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delegation {
    /// The delegated role's name.
    pub name: String,
    /// The role that delegates it.
    pub delegator: String,
    /// The delegating role's `delegations.keys`.
    pub keys: BTreeMap<KeyId, Key>,
    /// The key ids and threshold the delegating role lists for it.
    pub role_keys: RoleKeys,
    /// Whether the delegation is terminating.
    pub terminating: bool,
}

fn role_keys(keyids: &[KeyId], threshold: u64) -> RoleKeys {
    RoleKeys {
        keyids: keyids.to_vec(),
        threshold,
        extra: Map::new(),
    }
}

impl Delegations {
    /// Checks the rules of the module doc; `path` names the metadata in errors.
    pub fn validate(&self, path: &str) -> Result<(), Error> {
        let bad = |what: String| Err(Error::invalid(path, format!("delegations: {what}")));
        match (&self.roles, &self.succinct_roles) {
            (Some(_), Some(_)) => return bad("both roles and succinct_roles".into()),
            (None, None) => return bad("neither roles nor succinct_roles".into()),
            (Some(roles), None) => {
                let mut names = BTreeSet::new();
                for role in roles {
                    if !names.insert(role.name.as_str()) {
                        return bad(format!("role {:?} delegated twice", role.name));
                    }
                    if role.name.is_empty() || is_top_level(&role.name) {
                        return bad(format!(
                            "role name {:?} is empty or a top-level role's",
                            role.name
                        ));
                    }
                    if role.threshold == 0 {
                        return bad(format!("role {:?} has threshold 0", role.name));
                    }
                    if role.paths.is_some() == role.path_hash_prefixes.is_some() {
                        return bad(format!(
                            "role {:?} must have one of paths and path_hash_prefixes",
                            role.name
                        ));
                    }
                }
            }
            (None, Some(bins)) => {
                if !(1..=32).contains(&bins.bit_length) {
                    return bad(format!("succinct_roles.bit_length {}", bins.bit_length));
                }
                if bins.threshold == 0 {
                    return bad("succinct_roles threshold is 0".into());
                }
            }
        }
        Ok(())
    }

    /// The delegated roles that cover `target`, in order, each with whether it terminates:
    /// every matching entry of `roles`, or the one hash bin of `succinct_roles`.
    pub fn roles_for_target(&self, delegator: &str, target: &str) -> Vec<Delegation> {
        let make = |name: String, keyids: &[KeyId], threshold: u64, terminating: bool| Delegation {
            name,
            delegator: delegator.to_owned(),
            keys: self.keys.clone(),
            role_keys: role_keys(keyids, threshold),
            terminating,
        };
        if let Some(bins) = &self.succinct_roles {
            let name = bins.role_for_target(target);
            return vec![make(name, &bins.keyids, bins.threshold, true)];
        }
        self.roles
            .iter()
            .flatten()
            .filter(|role| role.covers(target))
            .map(|role| {
                make(
                    role.name.clone(),
                    &role.keyids,
                    role.threshold,
                    role.terminating,
                )
            })
            .collect()
    }
}

fn is_top_level(name: &str) -> bool {
    [Role::Root, Role::Timestamp, Role::Snapshot, Role::Targets]
        .iter()
        .any(|r| r.name() == name)
}

/// The hex SHA-256 of a target path, which `path_hash_prefixes` and hash bins look at.
pub fn target_path_hash(target: &str) -> String {
    hex::encode(Sha256::digest(target.as_bytes()))
}

impl DelegatedRole {
    /// Whether this role is delegated `target` (by `paths` or `path_hash_prefixes`).
    pub fn covers(&self, target: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, target));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let hash = target_path_hash(target);
            return prefixes.iter().any(|p| hash.starts_with(p.as_str()));
        }
        false
    }
}

impl SuccinctRoles {
    /// How many hex digits a bin number has: those of `2^bit_length - 1`.
    fn suffix_len(&self) -> usize {
        let last = (1u64 << self.bit_length.min(32)) - 1;
        format!("{last:x}").len()
    }

    /// The bin number of `target`: the first `bit_length` bits of its path hash.
    pub fn bin_for_target(&self, target: &str) -> u64 {
        let digest = Sha256::digest(target.as_bytes());
        let mut first = [0u8; 4];
        first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
        let shift = 32u32.saturating_sub(self.bit_length.clamp(1, 32));
        u64::from(u32::from_be_bytes(first) >> shift)
    }

    /// The name of bin number `bin`: `NAME_PREFIX-` and `bin` in zero-padded hex.
    pub fn bin_name(&self, bin: u64) -> String {
        format!(
            "{}-{bin:0width$x}",
            self.name_prefix,
            width = self.suffix_len()
        )
    }

    /// The bin role delegated `target`.
    pub fn role_for_target(&self, target: &str) -> String {
        self.bin_name(self.bin_for_target(target))
    }

    /// Every bin role name, in bin order.
    pub fn role_names(&self) -> impl Iterator<Item = String> + '_ {
        (0..(1u64 << self.bit_length.min(32))).map(|bin| self.bin_name(bin))
    }
}

/// Whether `target` matches the delegated path pattern `pattern`, as python-tuf decides: both
/// split on `/` into the same number of parts, each target part matched by the pattern part
/// with `fnmatch` (`*` any run, `?` one character, `[seq]`/`[!seq]` a set).
pub fn path_matches(pattern: &str, target: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = target.split('/').collect();
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| fnmatch(p, t))
}

/// Python's `fnmatch.fnmatchcase` on one path part. Linear backtracking over the last `*`
/// (time at most pattern length × text length, whatever the pattern), as glob matchers do.
fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: the pattern index after it, and the text index it
    // has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match (p.get(pi), t.get(ti)) {
            (Some('*'), _) => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            (Some(_), Some(c)) => one_char(&p, pi, *c),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((after_star, swallowed))) => {
                pi = after_star;
                ti = swallowed + 1;
                star = Some((after_star, swallowed + 1));
            }
            (None, None) => return false,
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// Whether the pattern element at `p[pi]` (not `*`) matches `c`; if so, the index after it.
fn one_char(p: &[char], pi: usize, c: char) -> Option<usize> {
    match p.get(pi)? {
        '?' => Some(pi + 1),
        '[' => {
            let rest = p.get(pi + 1..)?;
            match set_end(rest) {
                Some(end) => {
                    let set = rest.get(..end)?;
                    in_set(set, c).then_some(pi + 1 + end + 1)
                }
                // No closing bracket: Python takes `[` literally.
                None => (c == '[').then_some(pi + 1),
            }
        }
        d => (*d == c).then_some(pi + 1),
    }
}

/// The index in `p` (just after a `[`) of the `]` closing the set, as Python finds it: a `!`
/// first and then a `]` first are part of the set.
fn set_end(p: &[char]) -> Option<usize> {
    let mut i = 0;
    if p.first() == Some(&'!') {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    p.iter().skip(i).position(|c| *c == ']').map(|j| i + j)
}

fn in_set(set: &[char], c: char) -> bool {
    let (negate, set) = match set.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, set),
    };
    let mut found = false;
    let mut i = 0;
    while let Some(&first) = set.get(i) {
        match (set.get(i + 1), set.get(i + 2)) {
            (Some('-'), Some(&last)) => {
                found |= first <= c && c <= last;
                i += 3;
            }
            _ => {
                found |= first == c;
                i += 1;
            }
        }
    }
    found != negate
}

/// Step 5.6.7.2: the pre-order depth-first search for `target`, starting at the trusted
/// top-level `targets`. `load` fetches and verifies one delegated role (with the delegating
/// role's keys and threshold for it, the version snapshot lists, its expiry); its errors end
/// the search. Returns the target's metadata, or `None` when no role visited lists it.
pub fn search(
    targets: &Targets,
    target: &str,
    load: &mut dyn FnMut(&Delegation) -> Result<Targets, Error>,
) -> Result<Option<TargetFile>, Error> {
    let top = Role::Targets.name();
    // 5.6.7.1 for the top-level targets role: it lists the target.
    if let Some(file) = targets.targets.get(target) {
        return Ok(Some(file.clone()));
    }
    let mut visited = BTreeSet::from([top.to_owned()]);
    let mut to_visit = Vec::new();
    // 5.6.7.2: its delegations, in order of appearance (first on top of the stack).
    push_children(&mut to_visit, targets, top, target);
    // 5.6.7.1: at most MAX_DELEGATIONS roles visited.
    while visited.len() < MAX_DELEGATIONS {
        let Some(next) = to_visit.pop() else {
            return Ok(None);
        };
        // 5.6.7.1: a role visited before is skipped (cycles).
        if visited.contains(&next.name) {
            continue;
        }
        let role = load(&next)?;
        // 5.6.7.1: the role lists the target.
        if let Some(file) = role.targets.get(target) {
            return Ok(Some(file.clone()));
        }
        visited.insert(next.name.clone());
        // 5.6.7.2: recurse into its delegations.
        push_children(&mut to_visit, &role, &next.name, target);
    }
    if !to_visit.is_empty() {
        tracing::warn!(
            target,
            max = MAX_DELEGATIONS,
            "target search stopped: too many delegated roles"
        );
    }
    Ok(None)
}

/// Pushes the roles `role` delegates `target` to, so the first is popped first. 5.6.7.2.1:
/// a terminating one drops what follows it and everything already on the stack, so the
/// search ends below it (as python-tuf does).
fn push_children(to_visit: &mut Vec<Delegation>, role: &Targets, name: &str, target: &str) {
    let Some(delegations) = &role.delegations else {
        return;
    };
    let mut children = Vec::new();
    for child in delegations.roles_for_target(name, target) {
        let terminating = child.terminating;
        children.push(child);
        if terminating {
            to_visit.clear();
            break;
        }
    }
    children.reverse();
    to_visit.extend(children);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_python_tuf() {
        for (pattern, target, want) in [
            ("*", "a.img", true),
            ("*", "dir/a.img", false),
            ("dir/*", "dir/a.img", true),
            ("dir/*", "dir/sub/a.img", false),
            ("*/*.img", "x/a.img", true),
            ("a?.txt", "ab.txt", true),
            ("a?.txt", "a.txt", false),
            ("file[0-9].txt", "file5.txt", true),
            ("file[!0-9].txt", "file5.txt", false),
            ("file[!0-9].txt", "filex.txt", true),
            ("[]]", "]", true),
            ("a[", "a[", true),
            ("*.img", ".img", true),
            ("", "", true),
            ("targets/*.tgz", "targets/x.tgz", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("a*", "a", true),
            ("**", "", true),
            ("*[ab]", "zzb", true),
            ("*?", "", false),
        ] {
            assert_eq!(path_matches(pattern, target), want, "{pattern} vs {target}");
        }
    }

    #[test]
    fn hostile_patterns_match_in_linear_time() {
        // Exponential for a naive recursive matcher; here 40 x 4000 steps at most.
        let pattern = "*a".repeat(20) + "b";
        assert!(!path_matches(&pattern, &"a".repeat(4000)));
    }

    #[test]
    fn hash_bins_match_python_tuf() {
        // python-tuf: SuccinctRoles([], 1, 8, "bin").get_role_for_target("a") and bit
        // lengths giving 1-, 2- and 3-digit suffixes.
        let bins = |bit_length| SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length,
            name_prefix: "bin".into(),
            extra: Map::new(),
        };
        // sha256("a") = ca978112…: first byte 0xca.
        assert_eq!(bins(8).role_for_target("a"), "bin-ca");
        assert_eq!(bins(1).role_for_target("a"), "bin-1");
        assert_eq!(bins(4).role_for_target("a"), "bin-c");
        assert_eq!(bins(10).role_for_target("a"), "bin-32a");
        assert_eq!(
            bins(2).role_names().collect::<Vec<_>>(),
            ["bin-0", "bin-1", "bin-2", "bin-3"]
        );
    }

    /// A targets `signed` object with `delegations`, parsed (signatures are not looked at).
    fn parse_delegations(delegations: serde_json::Value) -> Result<Targets, Error> {
        let signed = serde_json::json!({"_type": "targets", "spec_version": "1.0.31",
            "version": 1, "expires": "2031-01-01T00:00:00Z", "targets": {},
            "delegations": delegations});
        let envelope = serde_json::json!({"signatures": [], "signed": signed});
        crate::metadata::parse::<Targets>("targets.json", envelope.to_string().as_bytes())
            .map(|u| u.signed)
    }

    #[test]
    fn malformed_delegations_are_refused_at_parse() {
        let role = |name: &str, extra: serde_json::Value| {
            let mut r = serde_json::json!({"name": name, "keyids": [], "threshold": 1,
                "terminating": false});
            if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
                r.extend(extra.clone());
            }
            r
        };
        let bins = serde_json::json!({"keyids": [], "threshold": 1, "bit_length": 4,
            "name_prefix": "bin"});
        let paths = serde_json::json!({"paths": ["*"]});
        for (why, delegations) in [
            (
                "both",
                serde_json::json!({"keys": {}, "roles": [], "succinct_roles": bins}),
            ),
            ("neither", serde_json::json!({"keys": {}})),
            (
                "top-level",
                serde_json::json!({"keys": {}, "roles": [role("snapshot", paths.clone())]}),
            ),
            (
                "empty name",
                serde_json::json!({"keys": {}, "roles": [role("", paths.clone())]}),
            ),
            (
                "twice",
                serde_json::json!({"keys": {}, "roles": [role("a", paths.clone()), role("a", paths.clone())]}),
            ),
            (
                "no paths",
                serde_json::json!({"keys": {}, "roles": [role("a", serde_json::json!({}))]}),
            ),
            (
                "both paths",
                serde_json::json!({"keys": {}, "roles": [role("a",
                serde_json::json!({"paths": ["*"], "path_hash_prefixes": ["ab"]}))]}),
            ),
            (
                "threshold 0",
                serde_json::json!({"keys": {}, "roles": [role("a",
                serde_json::json!({"paths": ["*"], "threshold": 0}))]}),
            ),
            (
                "bit_length 0",
                serde_json::json!({"keys": {}, "succinct_roles":
                {"keyids": [], "threshold": 1, "bit_length": 0, "name_prefix": "bin"}}),
            ),
            (
                "bit_length 33",
                serde_json::json!({"keys": {}, "succinct_roles":
                {"keyids": [], "threshold": 1, "bit_length": 33, "name_prefix": "bin"}}),
            ),
        ] {
            let err = parse_delegations(delegations).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidMetadata { path, .. } if path == "targets.json"),
                "{why}: {err:?}"
            );
        }
        assert!(
            parse_delegations(serde_json::json!({"keys": {}, "roles": [role("a", paths)]})).is_ok()
        );
        assert!(parse_delegations(serde_json::json!({"keys": {}, "succinct_roles": bins})).is_ok());
    }
}
