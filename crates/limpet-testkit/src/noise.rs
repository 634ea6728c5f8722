//! Deterministic pseudo-random bytes for test data, so a failing run replays from its seed.
//!
//! Rules kept here: each function's output for a seed never changes (tests assert sizes
//! and counts that depend on it); the seeds callers pass must not make the state zero
//! (xorshift stays at zero), which [`noise`] guarantees and [`xorshift_bytes`] leaves to
//! its caller.

/// The xorshift64 sequence (shifts 13, 7, 17) after `state`.
fn xorshift64(mut state: u64) -> impl Iterator<Item = u64> {
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    })
}

/// `n` incompressible bytes: the low byte of each xorshift64 step from `state` (non-zero).
pub fn xorshift_bytes(state: u64, n: usize) -> Vec<u8> {
    xorshift64(state)
        .map(|x| x.to_le_bytes()[0])
        .take(n)
        .collect()
}

/// `n` incompressible bytes for any `seed` (the state is spread and made odd first).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    xorshift64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        .map(|x| x.to_le_bytes()[3])
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_fixed() {
        // The first bytes of the sequence, computed apart from this code.
        assert_eq!(xorshift_bytes(1, 4), [65, 65, 41, 37]);
        assert_eq!(noise(7, 4), noise(7, 8)[..4]);
        assert_ne!(noise(7, 16), noise(8, 16));
    }
}
