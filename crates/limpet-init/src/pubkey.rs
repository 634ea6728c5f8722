//! The vendor's public image key as the initramfs carries it: an Ed25519
//! SubjectPublicKeyInfo (RFC 8410) in PEM (RFC 7468), the form `limpet keys generate`
//! writes.
//!
//! Read here by a parser of exactly that form instead of the general DER/PKCS#8 stack
//! (der, spki, pem-rfc7468, base64ct), which would stay resident in PID 1 for its whole
//! life for one parse per boot.
//!
//! Rules this module keeps:
//! - only one shape is accepted: the `PUBLIC KEY` boundaries on lines of their own, base64
//!   lines of at most 64 characters (LF or CRLF line ends), and exactly the 44 DER bytes of
//!   an Ed25519 key: the fixed 12-byte prefix, then the 32 key bytes;
//! - base64 is strict: the standard alphabet, padding only at the end, no bits left over;
//! - the key bytes must decode to a curve point (`VerifyingKey::from_bytes`), as with the
//!   general parser.

use ed25519_dalek::VerifyingKey;

/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 (Ed25519) }, BIT STRING (0 unused bits) }`: the
/// DER of every Ed25519 SubjectPublicKeyInfo up to its 32 key bytes (RFC 8410 section 4).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The whole DER: the prefix and the key.
const SPKI_LEN: usize = ED25519_SPKI_PREFIX.len() + 32;
const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const END: &str = "-----END PUBLIC KEY-----";
/// RFC 7468 section 2: base64 lines are at most 64 characters.
const MAX_LINE: usize = 64;

/// Why a text is not an Ed25519 public key in PEM.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PubkeyError {
    #[error("no '{BEGIN}' first line and '{END}' last line")]
    Boundaries,
    #[error("base64 line {line} is longer than {MAX_LINE} characters")]
    LongLine { line: usize },
    #[error("invalid base64 at character {at}")]
    Base64 { at: usize },
    #[error("the key is {len} bytes of DER, an Ed25519 key is {SPKI_LEN}")]
    Length { len: usize },
    #[error("not an Ed25519 SubjectPublicKeyInfo")]
    NotEd25519,
    #[error("the key is not a point of the curve")]
    NotAPoint,
}

/// Parses an Ed25519 public key in PEM (see the module doc for the one accepted shape).
pub fn parse_pem(text: &str) -> Result<VerifyingKey, PubkeyError> {
    let mut lines = text.lines();
    if lines.next() != Some(BEGIN) {
        return Err(PubkeyError::Boundaries);
    }
    let mut body: Vec<&str> = lines.collect();
    if body.pop() != Some(END) {
        return Err(PubkeyError::Boundaries);
    }
    let mut encoded = String::new();
    for (i, line) in body.iter().enumerate() {
        if line.len() > MAX_LINE {
            return Err(PubkeyError::LongLine { line: i + 2 });
        }
        encoded.push_str(line);
    }
    let der = decode_base64(&encoded)?;
    if der.len() != SPKI_LEN {
        return Err(PubkeyError::Length { len: der.len() });
    }
    let (prefix, key) = der.split_at(ED25519_SPKI_PREFIX.len());
    if prefix != ED25519_SPKI_PREFIX {
        return Err(PubkeyError::NotEd25519);
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| PubkeyError::Length { len: der.len() })?;
    VerifyingKey::from_bytes(&key).map_err(|_| PubkeyError::NotAPoint)
}

/// The value of one base64 character of the standard alphabet.
fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Strict base64 (RFC 4648 section 4): whole groups of four, `=` only to pad the last
/// group, and the bits padding leaves over all zero.
fn decode_base64(text: &str) -> Result<Vec<u8>, PubkeyError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(PubkeyError::Base64 { at: bytes.len() });
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let groups = bytes.len() / 4;
    for (g, group) in bytes.chunks_exact(4).enumerate() {
        let last = g + 1 == groups;
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(PubkeyError::Base64 {
                at: g * 4 + 4 - pad,
            });
        }
        let mut bits = 0u32;
        for (i, &c) in group.iter().enumerate().take(4 - pad) {
            let v = sextet(c).ok_or(PubkeyError::Base64 { at: g * 4 + i })?;
            bits |= v << (18 - 6 * i);
        }
        let [_, a, b, c] = bits.to_be_bytes();
        let left_over = match pad {
            0 => 0,
            1 => c,
            _ => b | c,
        };
        if left_over != 0 {
            return Err(PubkeyError::Base64 {
                at: g * 4 + 3 - pad,
            });
        }
        out.extend_from_slice(&[a, b, c][..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    fn key() -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
    }

    /// The PEM the general encoder writes (what `limpet keys generate` stores).
    fn pem(ending: LineEnding) -> String {
        key().to_public_key_pem(ending).unwrap()
    }

    /// `pem` with its base64 body replaced by the encoding of `der`.
    fn pem_of(der: &[u8]) -> String {
        let mut body = String::new();
        for chunk in der.chunks(3) {
            let mut bits = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                bits |= u32::from(*b) << (16 - 8 * i);
            }
            const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for i in 0..4 {
                body.push(if i <= chunk.len() {
                    char::from(ABC[(bits >> (18 - 6 * i) & 63) as usize])
                } else {
                    '='
                });
            }
        }
        format!("{BEGIN}\n{body}\n{END}\n")
    }

    #[test]
    fn the_keys_limpet_writes_parse_to_the_same_key() {
        assert_eq!(parse_pem(&pem(LineEnding::LF)), Ok(key()));
        assert_eq!(parse_pem(&pem(LineEnding::CRLF)), Ok(key()));
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key().as_bytes());
        assert_eq!(pem_of(&der), pem(LineEnding::LF), "the test encoder agrees");
    }

    #[test]
    fn other_labels_and_missing_boundaries_are_refused() {
        let good = pem(LineEnding::LF);
        let private = good.replace("PUBLIC KEY", "PRIVATE KEY");
        assert_eq!(parse_pem(&private), Err(PubkeyError::Boundaries));
        let no_end = good.replace(END, "");
        assert_eq!(parse_pem(&no_end), Err(PubkeyError::Boundaries));
        let trailing = format!("{good}junk\n");
        assert_eq!(parse_pem(&trailing), Err(PubkeyError::Boundaries));
        assert_eq!(parse_pem(""), Err(PubkeyError::Boundaries));
    }

    #[test]
    fn another_algorithm_is_refused() {
        // X25519 (1.3.101.110): the same length and layout, another OID.
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der[8] = 0x6e;
        der.extend_from_slice(key().as_bytes());
        assert_eq!(parse_pem(&pem_of(&der)), Err(PubkeyError::NotEd25519));
    }

    #[test]
    fn extra_or_missing_der_bytes_are_refused() {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key().as_bytes());
        der.push(0);
        assert_eq!(
            parse_pem(&pem_of(&der)),
            Err(PubkeyError::Length { len: 45 })
        );
        der.truncate(43);
        assert_eq!(
            parse_pem(&pem_of(&der)),
            Err(PubkeyError::Length { len: 43 })
        );
    }

    #[test]
    fn bytes_off_the_curve_are_refused() {
        // y = 2 has no x on edwards25519: decompression fails.
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        let mut y = [0u8; 32];
        y[0] = 2;
        der.extend_from_slice(&y);
        assert_eq!(parse_pem(&pem_of(&der)), Err(PubkeyError::NotAPoint));
    }

    #[test]
    fn base64_is_strict() {
        let good = pem(LineEnding::LF);
        let body = good.lines().nth(1).unwrap().to_owned();
        let with = |b: &str| good.replace(&body, b);
        // A character outside the alphabet.
        let bad = format!("*{}", &body[1..]);
        assert_eq!(parse_pem(&with(&bad)), Err(PubkeyError::Base64 { at: 0 }));
        // Not whole groups.
        assert!(matches!(
            parse_pem(&with(&body[..body.len() - 1])),
            Err(PubkeyError::Base64 { .. })
        ));
        // Padding that is not at the end.
        let early = format!("{}=={}", &body[..2], &body[4..]);
        assert!(matches!(
            parse_pem(&with(&early)),
            Err(PubkeyError::Base64 { .. })
        ));
        // Left-over bits that are not zero (the last character before '=' changed).
        assert!(body.ends_with('='));
        let last = body.len() - 2;
        let mut odd = body.clone().into_bytes();
        odd[last] = if odd[last] == b'B' { b'C' } else { b'B' };
        let odd = String::from_utf8(odd).unwrap();
        assert!(matches!(
            parse_pem(&with(&odd)),
            Err(PubkeyError::Base64 { .. })
        ));
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key().as_bytes());
        der.extend_from_slice(&[0; 30]);
        let one_line = pem_of(&der);
        assert_eq!(parse_pem(&one_line), Err(PubkeyError::LongLine { line: 2 }));
    }
}
