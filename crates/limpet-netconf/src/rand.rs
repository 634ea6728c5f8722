//! Random numbers for transaction ids, DNS query ids, 0x20 case bits and retransmission
//! jitter, from the kernel's CSPRNG (`getrandom`).
//!
//! On Debian's 6.1 kernel `getrandom` blocks only until the CRNG is seeded, which the
//! kernel's jitter-entropy fallback bounds to about a second after boot. Should the call
//! fail, a process-wide SplitMix64 sequence seeded from the clock and an address is used so
//! that PID 1 never stalls or panics; that fallback is predictable, which for DHCP
//! transaction ids is harmless and for DNS ids only weakens spoofing resistance to what the
//! source-port randomisation of the socket gives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};

static FALLBACK: AtomicU64 = AtomicU64::new(0);

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    if OsRng.try_fill_bytes(buf).is_ok() {
        return;
    }
    for chunk in buf.chunks_mut(8) {
        let word = fallback_next().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// A random `u16`.
pub fn u16() -> u16 {
    let mut b = [0u8; 2];
    fill(&mut b);
    u16::from_le_bytes(b)
}

/// A random `u32`.
pub fn u32() -> u32 {
    let mut b = [0u8; 4];
    fill(&mut b);
    u32::from_le_bytes(b)
}

/// A random value in `0..bound` (`0` when `bound` is 0). The modulo bias is below 2^-32
/// for the small bounds used here.
pub fn below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b) % bound
}

fn fallback_next() -> u64 {
    let mut seed = FALLBACK.load(Ordering::Relaxed);
    if seed == 0 {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let here = &seed as *const u64 as usize as u128;
        seed = u64::try_from((clock ^ (here << 17)) & u128::from(u64::MAX)).unwrap_or(1) | 1;
    }
    let next = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    FALLBACK.store(next, Ordering::Relaxed);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
