//! The release stamp: which release a compiled PID 1 belongs to, written into the binary by
//! `limpet build` after it is compiled, so that every release carries its own PID 1
//! (a v2 boots a PID 1 that says "v2") without compiling limpet-init once per version.
//!
//! limpet-init holds one [`PLACEHOLDER`]: [`MARKER`] and then [`TEXT_LEN`] zero bytes. The
//! build finds the marker (exactly once, or it refuses) and writes the release's text
//! after it ([`write`]); limpet-init reads it back ([`read`]). The stamp is inside the
//! initramfs, so the slot's signature covers it like every other byte of PID 1.
//!
//! Rules: the text is printable ASCII, at most [`TEXT_LEN`] bytes, NUL-padded; an
//! unstamped binary reads as `None`; [`read`] never looks at the marker, so the marker's
//! bytes exist once in limpet-init (in its placeholder), never as a second constant.

/// The bytes that open the placeholder.
pub const MARKER: [u8; 16] = *b"LIMPET-RELEASE:\0";
/// The bytes of text after the marker: a device name (32), a space, a version (64, as
/// the slot header holds it) and ` (aarch64)`.
pub const TEXT_LEN: usize = 112;
/// The whole placeholder's length.
pub const LEN: usize = MARKER.len() + TEXT_LEN;

/// What limpet-init's static holds before the build stamps it.
pub const PLACEHOLDER: [u8; LEN] = {
    let mut bytes = [0u8; LEN];
    let mut i = 0;
    while i < MARKER.len() {
        bytes[i] = MARKER[i];
        i += 1;
    }
    bytes
};

/// Why a binary cannot be stamped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The binary has no placeholder (not a limpet-init, or one from before stamps).
    #[error("no release placeholder in the binary")]
    NoPlaceholder,
    /// The marker is there more than once: which one PID 1 reads is unknowable.
    #[error("the release placeholder is in the binary {count} times")]
    Ambiguous {
        /// How many times.
        count: usize,
    },
    /// The text does not fit or is not printable ASCII.
    #[error("release text {text:?} is not printable ASCII of at most {TEXT_LEN} bytes")]
    Text {
        /// The text.
        text: alloc::string::String,
    },
}

/// Writes `text` into the one placeholder of `binary`.
pub fn write(binary: &mut [u8], text: &str) -> Result<(), StampError> {
    if text.len() > TEXT_LEN || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(StampError::Text { text: text.into() });
    }
    let mut found = binary
        .windows(LEN)
        .enumerate()
        .filter(|(_, w)| w[..MARKER.len()] == MARKER)
        .map(|(at, _)| at);
    let at = found.next().ok_or(StampError::NoPlaceholder)?;
    let others = found.count();
    if others > 0 {
        return Err(StampError::Ambiguous { count: others + 1 });
    }
    let field = &mut binary[at + MARKER.len()..at + LEN];
    field.fill(0);
    field[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// The text of a placeholder, `None` when unstamped or not printable.
pub fn read(placeholder: &[u8; LEN]) -> Option<&str> {
    let field = &placeholder[MARKER.len()..];
    let end = field.iter().position(|&b| b == 0).unwrap_or(TEXT_LEN);
    let text = &field[..end];
    if text.is_empty() || !text.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    core::str::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn binary_with(placeholders: usize) -> Vec<u8> {
        let mut b = alloc::vec![0x90u8; 100];
        for _ in 0..placeholders {
            b.extend_from_slice(&PLACEHOLDER);
            b.extend_from_slice(&[0xcc; 10]);
        }
        b
    }

    #[test]
    fn a_stamp_reads_back_and_a_restamp_replaces_it() {
        let mut b = binary_with(1);
        let len = b.len();
        write(&mut b, "hello 0.2.0 (x86_64)").unwrap();
        assert_eq!(b.len(), len);
        let at = 100;
        let placeholder: &[u8; LEN] = b[at..at + LEN].try_into().unwrap();
        assert_eq!(read(placeholder), Some("hello 0.2.0 (x86_64)"));
        write(&mut b, "hello 0.3.0").unwrap();
        let placeholder: &[u8; LEN] = b[at..at + LEN].try_into().unwrap();
        assert_eq!(read(placeholder), Some("hello 0.3.0"));
        // Nothing outside the placeholder moved.
        assert!(b[..at].iter().all(|&x| x == 0x90));
        assert!(b[at + LEN..].iter().all(|&x| x == 0xcc));
        assert_eq!(read(&PLACEHOLDER), None);
    }

    #[test]
    fn no_placeholder_two_placeholders_or_bad_text_are_refused_and_change_nothing() {
        let mut b = binary_with(0);
        assert_eq!(write(&mut b, "x"), Err(StampError::NoPlaceholder));
        let mut b = binary_with(2);
        let before = b.clone();
        assert_eq!(write(&mut b, "x"), Err(StampError::Ambiguous { count: 2 }));
        assert_eq!(b, before);
        let mut b = binary_with(1);
        let before = b.clone();
        for bad in ["a\nb", "é", &"x".repeat(TEXT_LEN + 1)] {
            assert!(matches!(write(&mut b, bad), Err(StampError::Text { .. })));
        }
        assert_eq!(b, before);
        assert!(write(&mut b, &"x".repeat(TEXT_LEN)).is_ok());
    }
}
