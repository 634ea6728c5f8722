//! The seed of a new identity, from the kernel's random number generator.
//!
//! Rules this module keeps:
//! - Only `getrandom(2)` without `GRND_NONBLOCK`: it blocks until the kernel's generator
//!   is initialised, so a device that boots with little entropy waits instead of making a
//!   guessable key. No user-space generator, no seed from the build.
//! - Short reads are continued, interrupted calls retried; any other failure is an error,
//!   never a weaker fallback.

use zeroize::Zeroizing;

/// 32 bytes from the kernel's RNG.
pub fn kernel_seed() -> std::io::Result<Zeroizing<[u8; 32]>> {
    let mut seed = Zeroizing::new([0u8; 32]);
    let mut filled = 0;
    while filled < seed.len() {
        let rest = seed.get_mut(filled..).unwrap_or_default();
        match rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => return Err(std::io::Error::other("getrandom returned no bytes")),
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_seeds_differ() {
        let a = kernel_seed().unwrap();
        let b = kernel_seed().unwrap();
        assert_ne!(*a, *b);
        assert_ne!(*a, [0u8; 32]);
    }
}
