//! Arbitrary UTF-8 into `parse`: it must return, never panic; and whatever parses must
//! roundtrip through the canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(m) = limpet_manifest::parse("fuzz.toml", text) {
        let canon = m.to_canonical_toml();
        assert_eq!(limpet_manifest::parse("fuzz.toml", &canon), Ok(m));
    }
});
