//! `limpet mud` from the command line: the MUD file of the example and of the complete
//! fixture validates against the RFC 8520 structure (`tests/data/mud.schema.json`), every
//! policy names an ACL that exists, the output is reproducible, and a bad manifest is
//! refused with its located error.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// 2023-11-14T22:13:20Z: a fixed `last-update`.
const EPOCH: &str = "1700000000";

fn full_manifest() -> PathBuf {
    repo_root().join("crates/limpet-manifest/tests/fixtures/good/full.toml")
}

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mud.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::meta::validate(&schema).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Panics with every schema error, and with any policy naming an ACL that does not exist.
fn assert_valid_mud(doc: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    let acls: Vec<&str> = doc["ietf-access-control-list:acls"]["acl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for policy in ["from-device-policy", "to-device-policy"] {
        for list in doc["ietf-mud:mud"][policy]["access-lists"]["access-list"]
            .as_array()
            .unwrap()
        {
            let name = list["name"].as_str().unwrap();
            assert!(
                acls.contains(&name),
                "{policy} names {name}, not in {acls:?}"
            );
        }
    }
    // And every ACL is used by a policy: an unreferenced ACL would be dead weight.
    for acl in &acls {
        let used = ["from-device-policy", "to-device-policy"].iter().any(|p| {
            doc["ietf-mud:mud"][p]["access-lists"]["access-list"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["name"] == *acl)
        });
        assert!(used, "ACL {acl} is in no policy");
    }
}

fn mud(manifest: &Path, extra: &[&str]) -> Value {
    let out = run(
        limpet()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("mud")
            .arg("--manifest")
            .arg(manifest)
            .args(extra),
        true,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_example_without_network_gives_a_valid_empty_policy() {
    let doc = mud(
        &hello_manifest(),
        &["--url", "https://example.com/mud.json"],
    );
    assert_valid_mud(&doc);
    let m = &doc["ietf-mud:mud"];
    assert_eq!(m["mud-url"], "https://example.com/mud.json");
    assert_eq!(m["last-update"], "2023-11-14T22:13:20Z");
    assert_eq!(m["systeminfo"], "hello 0.1.0");
    assert_eq!(
        m["from-device-policy"]["access-lists"]["access-list"],
        serde_json::json!([])
    );
    assert_eq!(
        doc["ietf-access-control-list:acls"]["acl"],
        serde_json::json!([])
    );
}

#[test]
fn the_complete_manifest_gives_a_valid_mud_file() {
    let doc = mud(&full_manifest(), &["--url", "https://example.com/mud.json"]);
    assert_valid_mud(&doc);
    assert_eq!(doc["ietf-mud:mud"]["is-supported"], true);
    assert_eq!(
        doc["ietf-access-control-list:acls"]["acl"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn the_url_defaults_to_the_update_repository_and_the_output_is_reproducible() {
    let doc = mud(&full_manifest(), &[]);
    assert_valid_mud(&doc);
    assert_eq!(
        doc["ietf-mud:mud"]["mud-url"],
        "https://updates.example.com/thermostat/mud.json"
    );
    let file = scratch().join("mud.json");
    let out = run(
        limpet()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("mud")
            .arg("--manifest")
            .arg(full_manifest())
            .arg("--out")
            .arg(&file),
        true,
    );
    assert!(out.stdout.is_empty());
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, doc);
}

#[test]
fn no_url_and_no_repository_is_a_clear_error() {
    let out = run(
        limpet()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("mud")
            .arg("--manifest")
            .arg(hello_manifest()),
        false,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pass --url"), "{}", stderr(&out));
    let out = run(
        limpet()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["mud", "--url", "http://example.com/mud.json", "--manifest"])
            .arg(hello_manifest()),
        false,
    );
    assert!(
        stderr(&out).contains("RFC 8520 requires https://"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_manifest_exits_1_with_its_located_error() {
    let dir = repo_root().join("crates/limpet-manifest/tests/fixtures/bad");
    let expected = std::fs::read_to_string(dir.join("cidr-everything.expected")).unwrap();
    let first = expected.lines().next().unwrap();
    let out = run(
        limpet()
            .current_dir(&dir)
            .args(["mud", "--url", "https://example.com/mud.json"])
            .args(["--manifest", "cidr-everything.toml"]),
        false,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(first), "expected `{first}` in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_schema_refuses_what_rfc_8520_forbids() {
    let good = mud(&full_manifest(), &["--url", "https://example.com/mud.json"]);
    let v = validator();
    assert!(v.is_valid(&good));
    let broken: [(&str, Value); 6] = [
        ("/ietf-mud:mud/mud-version", 2.into()),
        (
            "/ietf-mud:mud/mud-url",
            "http://example.com/mud.json".into(),
        ),
        ("/ietf-mud:mud/last-update", "yesterday".into()),
        ("/ietf-mud:mud/cache-validity", 169.into()),
        ("/ietf-mud:mud/systeminfo", "x".repeat(61).into()),
        ("/ietf-mud:mud/is-supported", "yes".into()),
    ];
    for (pointer, value) in broken {
        let mut doc = good.clone();
        *doc.pointer_mut(pointer).unwrap() = value;
        assert!(!v.is_valid(&doc), "{pointer} accepted");
    }
    let mut doc = good.clone();
    doc["ietf-mud:mud"]
        .as_object_mut()
        .unwrap()
        .remove("systeminfo");
    assert!(!v.is_valid(&doc), "missing systeminfo accepted");
}
