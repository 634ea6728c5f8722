//! Little-endian integers at fixed offsets of a buffer the caller has sized (the GPT
//! header and entries, the slot header): callers index only within their fixed layouts.

/// The `u32` at `at`.
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// The `u64` at `at`.
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
