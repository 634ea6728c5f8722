//! Frames on a byte stream: a 2-byte big-endian length, then that many bytes.
//!
//! Rules this module keeps: a frame is at most [`MAX_FRAME`] bytes (a Noise message's
//! limit), a reader never allocates more than that, and an end of stream inside a frame is
//! an error, never a short frame.

use std::io::{self, Read, Write};

/// The largest frame: a Noise message's maximum size.
pub const MAX_FRAME: usize = 65535;

/// Writes one frame.
pub fn write(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u16::try_from(bytes.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 65535 bytes")
    })?;
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    w.write_all(&out)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream before its first byte.
pub fn read(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read(&mut len[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..])?,
    }
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// Reads one frame, an end of stream being an error.
pub fn read_some(r: &mut impl Read) -> io::Result<Vec<u8>> {
    read(r)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut buf = Vec::new();
        write(&mut buf, b"hello").unwrap();
        write(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read(&mut r).unwrap().unwrap(), b"hello");
        assert_eq!(read(&mut r).unwrap().unwrap(), b"");
        assert!(read(&mut r).unwrap().is_none());
        let mut cut = &buf[..4];
        assert_eq!(
            read(&mut cut).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(write(&mut Vec::new(), &vec![0; MAX_FRAME + 1]).is_err());
    }
}
