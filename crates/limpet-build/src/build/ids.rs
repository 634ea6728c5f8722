//! Deterministic identifiers: UUIDs derived from content, so that rebuilds are identical.
//!
//! Rules this module keeps: an identifier is a pure function of the bytes it is given
//! (never random, never from the clock); its version and variant bits are those of an
//! RFC 4122 version-4 UUID, so tools that check them accept it.

/// An RFC 4122 version-4-shaped UUID string from 16 bytes (of a digest, usually).
pub fn uuid_string(bytes: &[u8; 16]) -> String {
    let mut b = *bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant_bits() {
        let u = uuid_string(&[0xff; 16]);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(&u[19..20], "b");
    }
}
