//! Deterministic mutations of the good fixtures: `parse` must return, never panic.
//!
//! A stable-Rust stand-in for the cargo-fuzz target in `fuzz/`, so every `cargo test` run
//! covers truncations, flips and stray TOML punctuation.

// Test code: a failure should stop the test loudly, which is what unwrap and panic do.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next() % n).unwrap_or(0)
    }
}

const INSERTS: &[&str] = &[
    "\"",
    "[",
    "]",
    "=",
    "\n",
    "{",
    "}",
    ",",
    "'",
    "#",
    "é",
    "\u{0}",
    "-",
    ".",
    "0",
    "99999999999999999999",
    "\"\"\"",
    "[[task]]\n",
    "/",
    "\\",
    " ",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(4) {
        let len = chars.len();
        match rng.below(6) {
            0 => chars.truncate(rng.below(len + 1)),
            1 if len > 0 => {
                let i = rng.below(len);
                // Flip a low bit of the char; keep it a valid char.
                let c = chars[i] as u32 ^ (1 << rng.below(7));
                chars[i] = char::from_u32(c).unwrap_or('x');
            }
            2 if len > 0 => {
                chars.remove(rng.below(len));
            }
            3 if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                chars.swap(a, b);
            }
            _ => {
                let ins = INSERTS[rng.below(INSERTS.len())];
                let at = rng.below(len + 1);
                chars.splice(at..at, ins.chars());
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_manifests_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut good = 0;
    let sources: Vec<(String, String)> = common::fixtures("good")
        .into_iter()
        .chain(common::fixtures("bad"))
        .collect();
    for case in 0..4000 {
        let (name, text) = &sources[case % sources.len()];
        let mutated = mutate(&mut rng, text);
        match limpet_manifest::parse(name, &mutated) {
            Ok(m) => {
                good += 1;
                // A manifest that parses must roundtrip too.
                let canon = m.to_canonical_toml();
                assert_eq!(
                    limpet_manifest::parse(name, &canon).as_ref(),
                    Ok(&m),
                    "case {case}:\n{mutated}\n---\n{canon}"
                );
            }
            Err(e) => {
                assert!(!e.0.is_empty());
                let _ = e.to_string();
            }
        }
    }
    // Some mutations (in comments, say) leave a valid manifest; the test would be weaker if none did.
    assert!(good > 0);
}

#[test]
fn end_of_file_and_multibyte_spans() {
    for text in [
        "",
        "[",
        "[device",
        "[device]\nname = \"é",
        "é",
        "[device]\nname = \"ü\"\nversion = \"x\"\ntarget = \"ü\"",
        "\u{0}",
        "a = 1\n\n\n",
    ] {
        let e = limpet_manifest::parse("t.toml", text).unwrap_err();
        assert!(e.0.iter().all(|d| d.line >= 1 && d.column >= 1), "{e}");
    }
}
