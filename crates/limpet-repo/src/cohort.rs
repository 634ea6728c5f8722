//! Which cohort of a release a device installs (docs/cohorts.md): a pure function of its
//! identity's public key and the number of cohorts the release declares, so the device's
//! cohort is stable and no server chooses it.
//!
//! Rules kept here:
//! - Cohorts are numbered `1..=count`, `1 <= count <= MAX_COHORTS`; [`CohortTag::new`]
//!   refuses anything else, naming the numbers.
//! - The choice is `1 + (u64 of the first 8 bytes, big-endian, of
//!   SHA-256("limpet cohort v1\0" || public key)) mod count`: the same key always gets the
//!   same cohort of a release of `count` cohorts, and the keys spread evenly.
//! - A device without an identity (none made yet, or one PID 1 refused) takes cohort 1:
//!   every such device is in the same cohort, which the docs say.

use sha2::{Digest, Sha256};

/// The most cohorts one release may have (as the slot's `limpet.cohort=K/N` allows:
/// `limpet_image::cmdline::MAX_COHORTS`, which limpet-build's tests hold equal).
pub const MAX_COHORTS: u32 = 64;

/// The domain the cohort hash is computed in, so it is no other hash of the key.
const DOMAIN: &[u8] = b"limpet cohort v1\0";

/// Cohort `index` of `count`, both from 1 (serialized as `{"index": K, "count": N}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CohortTag {
    index: u32,
    count: u32,
}

/// A cohort that cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CohortError {
    /// Zero cohorts, or more than [`MAX_COHORTS`].
    #[error("{0} cohorts: a release has 1 to {MAX_COHORTS}")]
    Count(u32),
    /// An index outside `1..=count`.
    #[error("cohort {index} of {count}: cohorts are numbered 1 to {count}")]
    Index {
        /// The index given.
        index: u32,
        /// The number of cohorts.
        count: u32,
    },
}

impl CohortTag {
    /// Cohort `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, CohortError> {
        if count == 0 || count > MAX_COHORTS {
            return Err(CohortError::Count(count));
        }
        if index == 0 || index > count {
            return Err(CohortError::Index { index, count });
        }
        Ok(CohortTag { index, count })
    }

    /// The cohort a device whose identity key is `key` takes in a release of `count`
    /// cohorts; cohort 1 for a device without an identity (`None`).
    pub fn of_device(key: Option<&[u8; 32]>, count: u32) -> Result<Self, CohortError> {
        CohortTag::new(1, count)?;
        let Some(key) = key else {
            return CohortTag::new(1, count);
        };
        let digest = Sha256::new()
            .chain_update(DOMAIN)
            .chain_update(key)
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let slot = u64::from_be_bytes(first) % u64::from(count);
        // `slot < count <= 64`: the conversion cannot fail.
        CohortTag::new(u32::try_from(slot).unwrap_or(0) + 1, count)
    }

    /// The index, from 1.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// How many cohorts the release has.
    pub const fn count(self) -> u32 {
        self.count
    }

    /// The directory of the cohort's targets inside a release's: `cohort-K`.
    pub fn dir_name(self) -> String {
        format!("cohort-{}", self.index)
    }
}

impl std::fmt::Display for CohortTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cohort {} of {}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_le_bytes());
        k[31] = 0x5a;
        k
    }

    #[test]
    fn a_key_always_takes_the_same_cohort() {
        for n in 0..50 {
            let a = CohortTag::of_device(Some(&key(n)), 7).unwrap();
            let b = CohortTag::of_device(Some(&key(n)), 7).unwrap();
            assert_eq!(a, b);
            assert!((1..=7).contains(&a.index()));
            assert_eq!(a.count(), 7);
        }
        // A fixed vector, so the rule cannot change under the fleet unnoticed:
        // SHA-256("limpet cohort v1\0" || 32 zero bytes) starts 0x…; mod 4, plus 1.
        let zero = CohortTag::of_device(Some(&[0; 32]), 4).unwrap();
        let digest = Sha256::new()
            .chain_update(b"limpet cohort v1\0")
            .chain_update([0u8; 32])
            .finalize();
        let first = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(u64::from(zero.index()), first % 4 + 1);
    }

    #[test]
    fn keys_spread_evenly_over_the_cohorts() {
        let count = 8u32;
        let devices = 8000u32;
        let mut seen = vec![0u32; count as usize];
        for n in 0..devices {
            let c = CohortTag::of_device(Some(&key(n)), count).unwrap();
            seen[(c.index() - 1) as usize] += 1;
        }
        // 1000 expected per cohort; a binomial's standard deviation here is about 30,
        // so 850..1150 is five of them either side.
        for (i, n) in seen.iter().enumerate() {
            assert!(
                (850..1150).contains(n),
                "cohort {}: {n} of {devices}",
                i + 1
            );
        }
    }

    #[test]
    fn a_device_without_identity_takes_cohort_one() {
        assert_eq!(
            CohortTag::of_device(None, 5),
            Ok(CohortTag::new(1, 5).unwrap())
        );
        // One cohort: everyone is in it.
        assert_eq!(CohortTag::of_device(Some(&key(3)), 1).unwrap().index(), 1);
    }

    #[test]
    fn an_index_or_count_out_of_range_is_refused() {
        assert_eq!(
            CohortTag::new(0, 4),
            Err(CohortError::Index { index: 0, count: 4 })
        );
        assert_eq!(
            CohortTag::new(5, 4).unwrap_err().to_string(),
            "cohort 5 of 4: cohorts are numbered 1 to 4"
        );
        assert_eq!(CohortTag::new(1, 0), Err(CohortError::Count(0)));
        assert_eq!(CohortTag::new(1, 65), Err(CohortError::Count(65)));
        assert_eq!(
            CohortTag::of_device(Some(&key(1)), 0),
            Err(CohortError::Count(0))
        );
        assert_eq!(CohortTag::new(4, 4).unwrap().dir_name(), "cohort-4");
    }
}
