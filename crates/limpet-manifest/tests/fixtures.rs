//! Good fixtures parse and roundtrip through the canonical form; every bad fixture fails
//! with the exact first line and the hints its `.expected` file names.

// Test code: a failure should stop the test loudly, which is what unwrap and panic do.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use limpet_manifest::parse;

#[test]
fn good_fixtures_parse_and_roundtrip() {
    let good = common::fixtures("good");
    assert!(good.len() >= 2);
    for (name, text) in good {
        let m = parse(&name, &text).unwrap_or_else(|e| panic!("{name} should parse:\n{e}"));
        let canon = m.to_canonical_toml();
        let again = parse(&name, &canon)
            .unwrap_or_else(|e| panic!("canonical {name} should parse:\n{e}\n{canon}"));
        assert_eq!(again, m, "{name}: roundtrip changed the manifest\n{canon}");
        // The canonical form is a fixed point.
        assert_eq!(again.to_canonical_toml(), canon, "{name}");
        // And the JSON view serializes.
        serde_json::to_string(&m).unwrap();
    }
}

#[test]
fn bad_fixtures_fail_as_expected() {
    let bad = common::fixtures("bad");
    assert!(bad.len() >= 30, "only {} bad fixtures", bad.len());
    let mut failures = Vec::new();
    for (name, text) in bad {
        let expected_path = common::fixture_dir("bad").join(name.replace(".toml", ".expected"));
        if std::env::var_os("LIMPET_BLESS").is_some() && !expected_path.exists() {
            // Seed a new fixture's expectation from the current output, for review.
            if let Err(e) = parse(&name, &text) {
                let d = &e.0[0];
                let mut seed = format!("{}\n", d.to_string().lines().next().unwrap_or(""));
                if let Some(h) = &d.hint {
                    seed.push_str(&format!("hint: {h}\n"));
                }
                std::fs::write(&expected_path, seed).unwrap();
            }
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        let mut lines = expected.lines();
        let first = lines.next().unwrap_or("");
        let shown = match parse(&name, &text) {
            Ok(_) => {
                failures.push(format!("{name}: parsed, expected an error"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if shown.lines().next() != Some(first) {
            failures.push(format!(
                "{name}: first line\n  got:  {}\n  want: {first}",
                shown.lines().next().unwrap_or("")
            ));
        }
        for needle in lines.filter(|l| !l.trim().is_empty()) {
            if !shown.contains(needle) {
                failures.push(format!("{name}: missing {needle:?} in\n{shown}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_semantic_errors_are_reported_together() {
    let text = r#"
[device]
name = "Bad_Name"
version = "1.4"
target = "arm"

[[task]]
name = "a"
package = "a"
memory = "8MB"
cpu = "10"
"#;
    let e = parse("limpet.toml", text).unwrap_err();
    assert_eq!(e.0.len(), 5, "{e}");
    let lines: Vec<usize> = e.0.iter().map(|d| d.line).collect();
    assert_eq!(lines, [3, 4, 5, 10, 11]);
}

#[test]
fn minimal_canonical_form() {
    let (name, text) = common::fixtures("good")
        .into_iter()
        .find(|(n, _)| n == "minimal.toml")
        .unwrap();
    let canon = parse(&name, &text).unwrap().to_canonical_toml();
    let path = common::fixture_dir("canonical").join("minimal.toml");
    // LIMPET_BLESS=1 rewrites the snapshot; the diff is then reviewed like any change.
    if std::env::var_os("LIMPET_BLESS").is_some() {
        std::fs::write(&path, &canon).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(canon, want);
}
