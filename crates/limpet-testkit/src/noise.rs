//! Deterministic pseudo-random bytes for test data, so a failing run replays from its seed.
//!
//! Two generators: xorshift64 ([`xorshift_bytes`], [`noise`]) and xorshift64* ([`Rng`],
//! also for numbers). Rules kept here: each function's output for a seed never changes
//! (tests assert sizes and counts that depend on it); the state is never zero (xorshift
//! stays at zero), which [`noise`] and [`Rng::new`] guarantee and [`xorshift_bytes`]
//! leaves to its caller.

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

/// xorshift64*: numbers and bytes from a seed, so a failing sequence replays from it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (made odd, so never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` incompressible bytes: the next numbers, little-endian.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
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
