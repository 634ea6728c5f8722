//! Owner mode: the owner key store the boot loader keeps, and the request the running OS
//! leaves for it (docs/owner-mode.md).
//!
//! Two small byte formats, parsed strictly (every byte has one valid value or range, the
//! CRC-32 covers the rest), so a damaged or forged one is refused by name:
//! - [`OwnerStore`], [`STORE_LEN`] bytes: the mode ([`Mode`]), the owner's image key and
//!   whether a wipe is pending. The loader keeps it in a UEFI non-volatile variable with
//!   boot-services access only, which the running OS can neither read nor write.
//! - [`Request`], [`REQUEST_LEN`] bytes at [`REQUEST_OFFSET`] of the `state` partition (a
//!   block neither the A/B record copies nor the time record use): "enter owner mode with
//!   this key", "leave owner mode" or "hand the device over to this key". Root on the
//!   device can write it; the loader acts on it only after a physical confirmation, and
//!   clears it either way.
//!
//! Rules this module keeps:
//! - Pure: no I/O; the loader and the command line share the same encoders and parsers.
//! - An all-zero request block is "no request"; anything else that does not parse is
//!   damaged (reported, then cleared by the loader).
//! - A store that does not parse is damaged; the loader treats it as vendor mode (the
//!   safe default: only the vendor's key) and says so.
//! - Handing over is one way ([`confirmed`]): no request brings the vendor's key back or
//!   changes the owner's key of a device handed over, and the vendor's key verifies only
//!   the committed slot while handing over, until an owner's slot is committed
//!   ([`retired`]).
//!
//! Layout of both (little-endian, offsets in bytes):
//!
//! ```text
//! offset len  field
//!      0   8  magic: "LIMPETOS" (store) or "LIMPETOR" (request)
//!      8   1  format version: 1
//!      9   1  store: mode (0 vendor, 1 owner, 2 handed over, 3 handing over)
//!             request: kind (1 enter owner mode, 2 leave owner mode, 3 hand over)
//!     10   1  store: wipe (0 none, 1 pending); request: 0
//!     11   5  zero
//!     16  32  the owner's Ed25519 image public key (all zero in vendor mode and in a
//!             leave request)
//!     48   4  CRC-32 (IEEE) of bytes 0..48
//! ```

use crate::crc::crc32;

/// Bytes of a store or a request.
pub const STORE_LEN: usize = 52;
/// Bytes of a request (the same layout as the store's).
pub const REQUEST_LEN: usize = STORE_LEN;
/// Where the request block is in the `state` partition (between the A/B record's first copy
/// at 0 and the time record's at 256 KiB).
pub const REQUEST_OFFSET: u64 = 128 * 1024;
/// The request block's size on disk: one 4 KiB block, written whole.
pub const REQUEST_BLOCK: usize = 4096;

const STORE_MAGIC: &[u8; 8] = b"LIMPETOS";
const REQUEST_MAGIC: &[u8; 8] = b"LIMPETOR";
const FORMAT: u8 = 1;
const CRC_AT: usize = 48;

/// Which image keys the loader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Only the vendor's image key (the factory mode, and the fallback for a damaged store).
    #[default]
    Vendor,
    /// The vendor's key and the owner's.
    Owner,
    /// Only the owner's key: the vendor handed the device over (issue 13's handover) and an
    /// image signed by the owner's key has been committed since.
    HandedOver,
    /// Handed over, but the committed slot may still be the vendor's: the owner's key
    /// verifies every slot, the vendor's only the committed slot of a stored A/B state (so
    /// the device boots what it ran until the owner's first image commits; no vendor image
    /// can become a trial). The loader moves to [`Mode::HandedOver`] at the first boot of a
    /// committed slot signed by the owner's key ([`retired`]).
    HandingOver,
}

impl Mode {
    fn byte(self) -> u8 {
        match self {
            Mode::Vendor => 0,
            Mode::Owner => 1,
            Mode::HandedOver => 2,
            Mode::HandingOver => 3,
        }
    }

    /// The mode in words, as the loader prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Vendor => "vendor",
            Mode::Owner => "owner",
            Mode::HandedOver => "handed over",
            Mode::HandingOver => "handing over",
        }
    }

    /// The mode as PID 1 reads it on the kernel command line (`limpet.owner=`).
    pub fn param(self) -> &'static str {
        match self {
            Mode::Vendor => "vendor",
            Mode::Owner => "owner",
            Mode::HandedOver => "handed-over",
            Mode::HandingOver => "handing-over",
        }
    }

    /// Whether slots signed by the vendor's key boot (any slot).
    pub fn accepts_vendor(self) -> bool {
        matches!(self, Mode::Vendor | Mode::Owner)
    }

    /// Whether the vendor's key still verifies the committed slot of a stored A/B state.
    pub fn accepts_vendor_committed(self) -> bool {
        matches!(self, Mode::Vendor | Mode::Owner | Mode::HandingOver)
    }

    /// Whether the device is handed over (or being handed over): new slots are the
    /// owner's only, whatever the initramfs's key.
    pub fn is_handed_over(self) -> bool {
        matches!(self, Mode::HandedOver | Mode::HandingOver)
    }
}

/// Whether the data partition still has to be wiped (a wipe a power cut interrupted is
/// finished at the next boot, before any slot is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wipe {
    /// Nothing to wipe.
    #[default]
    None,
    /// The mode changed and the data partition is not wiped yet.
    Pending,
}

/// The loader's owner key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnerStore {
    /// The mode.
    pub mode: Mode,
    /// The owner's image key (`Some` exactly when the mode is not vendor).
    pub owner_key: Option<[u8; 32]>,
    /// Whether a wipe is pending.
    pub wipe: Wipe,
}

/// What the running OS asks the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Enter owner mode with this image key.
    Enter {
        /// The owner's Ed25519 image public key.
        key: [u8; 32],
    },
    /// Leave owner mode (back to vendor-only images).
    Leave,
    /// Hand the device over to this image key for good (the update agent writes it, through
    /// PID 1, when it enrols an owner's root against the vendor's handover statement).
    HandOver {
        /// The owner's Ed25519 image public key.
        key: [u8; 32],
    },
}

/// Why store or request bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// Not the expected length.
    #[error("{what}: {found} bytes, expected {STORE_LEN}")]
    Length {
        /// Store or request.
        what: &'static str,
        /// The length found.
        found: usize,
    },
    /// Wrong magic.
    #[error("{what}: bad magic")]
    Magic {
        /// Store or request.
        what: &'static str,
    },
    /// Unknown format version.
    #[error("{what}: format version {found}, this loader reads {FORMAT}")]
    Format {
        /// Store or request.
        what: &'static str,
        /// The version found.
        found: u8,
    },
    /// The checksum does not match.
    #[error("{what}: checksum mismatch")]
    Checksum {
        /// Store or request.
        what: &'static str,
    },
    /// A field holds a value it cannot hold.
    #[error("{what}: byte {offset} holds {value}, which is not valid there")]
    Field {
        /// Store or request.
        what: &'static str,
        /// The field's offset.
        offset: usize,
        /// The byte found.
        value: u8,
    },
    /// The key field does not match the mode or kind (a key in vendor mode or a leave
    /// request, none in owner mode or an enter request).
    #[error("{what}: the key field does not match its mode")]
    Key {
        /// Store or request.
        what: &'static str,
    },
}

fn encode(magic: &[u8; 8], kind: u8, flag: u8, key: Option<&[u8; 32]>) -> [u8; STORE_LEN] {
    let mut b = [0u8; STORE_LEN];
    b[..8].copy_from_slice(magic);
    b[8] = FORMAT;
    b[9] = kind;
    b[10] = flag;
    if let Some(key) = key {
        b[16..48].copy_from_slice(key);
    }
    let crc = crc32(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks the frame (length, magic, version, checksum, zero bytes 11..16) and returns
/// (byte 9, byte 10, the key field when not all zero).
fn decode(
    what: &'static str,
    magic: &[u8; 8],
    bytes: &[u8],
) -> Result<(u8, u8, Option<[u8; 32]>), OwnerError> {
    let b: &[u8; STORE_LEN] = bytes.try_into().map_err(|_| OwnerError::Length {
        what,
        found: bytes.len(),
    })?;
    if &b[..8] != magic {
        return Err(OwnerError::Magic { what });
    }
    if b[8] != FORMAT {
        return Err(OwnerError::Format { what, found: b[8] });
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[CRC_AT..]);
    if crc32(&b[..CRC_AT]) != u32::from_le_bytes(crc) {
        return Err(OwnerError::Checksum { what });
    }
    if let Some(offset) = (11..16).find(|&i| b[i] != 0) {
        return Err(OwnerError::Field {
            what,
            offset,
            value: b[offset],
        });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&b[16..48]);
    let key = (key != [0; 32]).then_some(key);
    Ok((b[9], b[10], key))
}

impl OwnerStore {
    /// The store's bytes.
    pub fn encode(&self) -> [u8; STORE_LEN] {
        let wipe = match self.wipe {
            Wipe::None => 0,
            Wipe::Pending => 1,
        };
        let key = match self.mode {
            Mode::Vendor => None,
            Mode::Owner | Mode::HandedOver | Mode::HandingOver => self.owner_key.as_ref(),
        };
        encode(STORE_MAGIC, self.mode.byte(), wipe, key)
    }

    /// Parses the store's bytes (the module doc's layout).
    pub fn parse(bytes: &[u8]) -> Result<OwnerStore, OwnerError> {
        const WHAT: &str = "owner store";
        let (mode, wipe, key) = decode(WHAT, STORE_MAGIC, bytes)?;
        let mode = match mode {
            0 => Mode::Vendor,
            1 => Mode::Owner,
            2 => Mode::HandedOver,
            3 => Mode::HandingOver,
            value => {
                return Err(OwnerError::Field {
                    what: WHAT,
                    offset: 9,
                    value,
                })
            }
        };
        let wipe = match wipe {
            0 => Wipe::None,
            1 => Wipe::Pending,
            value => {
                return Err(OwnerError::Field {
                    what: WHAT,
                    offset: 10,
                    value,
                })
            }
        };
        if (mode == Mode::Vendor) != key.is_none() {
            return Err(OwnerError::Key { what: WHAT });
        }
        Ok(OwnerStore {
            mode,
            owner_key: key,
            wipe,
        })
    }
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        match self {
            Request::Enter { key } => encode(REQUEST_MAGIC, 1, 0, Some(key)),
            Request::Leave => encode(REQUEST_MAGIC, 2, 0, None),
            Request::HandOver { key } => encode(REQUEST_MAGIC, 3, 0, Some(key)),
        }
    }

    /// The whole 4 KiB block the request is written as.
    pub fn block(&self) -> [u8; REQUEST_BLOCK] {
        let mut block = [0u8; REQUEST_BLOCK];
        block[..REQUEST_LEN].copy_from_slice(&self.encode());
        block
    }

    /// Parses a request block: `Ok(None)` when it is all zero (no request).
    pub fn parse_block(block: &[u8]) -> Result<Option<Request>, OwnerError> {
        const WHAT: &str = "owner request";
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if let Some(offset) = block
            .iter()
            .enumerate()
            .skip(REQUEST_LEN)
            .find_map(|(i, &b)| (b != 0).then_some(i))
        {
            return Err(OwnerError::Field {
                what: WHAT,
                offset,
                value: block.get(offset).copied().unwrap_or_default(),
            });
        }
        let head = block.get(..REQUEST_LEN).ok_or(OwnerError::Length {
            what: WHAT,
            found: block.len(),
        })?;
        let (kind, flag, key) = decode(WHAT, REQUEST_MAGIC, head)?;
        if flag != 0 {
            return Err(OwnerError::Field {
                what: WHAT,
                offset: 10,
                value: flag,
            });
        }
        match (kind, key) {
            (1, Some(key)) => Ok(Some(Request::Enter { key })),
            (2, None) => Ok(Some(Request::Leave)),
            (3, Some(key)) => Ok(Some(Request::HandOver { key })),
            (1..=3, _) => Err(OwnerError::Key { what: WHAT }),
            (value, _) => Err(OwnerError::Field {
                what: WHAT,
                offset: 9,
                value,
            }),
        }
    }
}

/// What the loader does with a confirmed request in `store`: the new store (with the wipe
/// pending), or `None` when the request changes nothing. Entering owner mode again with
/// another key replaces the key (and wipes, as any change does); handing over goes from
/// vendor or owner mode to [`Mode::HandingOver`]. A device handed over (or handing over)
/// takes no request: the vendor's key does not come back by a button press, and the
/// owner's key is not replaced by one (the owner rotates keys through their own
/// repository, and a new image key would leave the committed slot unbootable).
pub fn confirmed(store: &OwnerStore, request: &Request) -> Option<OwnerStore> {
    if store.mode.is_handed_over() {
        return None;
    }
    match request {
        Request::Enter { key } => Some(OwnerStore {
            mode: Mode::Owner,
            owner_key: Some(*key),
            wipe: Wipe::Pending,
        }),
        Request::HandOver { key } => Some(OwnerStore {
            mode: Mode::HandingOver,
            owner_key: Some(*key),
            wipe: Wipe::Pending,
        }),
        Request::Leave => match store.mode {
            Mode::Owner => Some(OwnerStore {
                mode: Mode::Vendor,
                owner_key: None,
                wipe: Wipe::Pending,
            }),
            Mode::Vendor | Mode::HandedOver | Mode::HandingOver => None,
        },
    }
}

/// The store once a committed slot signed by the owner's key booted while handing over:
/// handed over (the vendor's key verifies nothing any more), no wipe. `None` in any other
/// mode (nothing to retire).
pub fn retired(store: &OwnerStore) -> Option<OwnerStore> {
    (store.mode == Mode::HandingOver).then_some(OwnerStore {
        mode: Mode::HandedOver,
        owner_key: store.owner_key,
        wipe: Wipe::None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn store_round_trips_in_every_mode() {
        for store in [
            OwnerStore::default(),
            OwnerStore {
                mode: Mode::Owner,
                owner_key: Some(KEY),
                wipe: Wipe::Pending,
            },
            OwnerStore {
                mode: Mode::HandedOver,
                owner_key: Some(KEY),
                wipe: Wipe::None,
            },
            OwnerStore {
                mode: Mode::HandingOver,
                owner_key: Some(KEY),
                wipe: Wipe::Pending,
            },
        ] {
            assert_eq!(OwnerStore::parse(&store.encode()).unwrap(), store);
        }
    }

    #[test]
    fn a_damaged_store_is_refused_by_name() {
        let good = OwnerStore {
            mode: Mode::Owner,
            owner_key: Some(KEY),
            wipe: Wipe::None,
        }
        .encode();
        // Every single-bit flip is caught.
        for byte in 0..STORE_LEN {
            for bit in 0..8 {
                let mut bad = good;
                bad[byte] ^= 1 << bit;
                assert!(OwnerStore::parse(&bad).is_err(), "byte {byte} bit {bit}");
            }
        }
        assert_eq!(
            OwnerStore::parse(&good[..51]),
            Err(OwnerError::Length {
                what: "owner store",
                found: 51
            })
        );
        // A well-checksummed store with an unknown mode, or a key in vendor mode.
        assert_eq!(
            OwnerStore::parse(&encode(STORE_MAGIC, 4, 0, None)),
            Err(OwnerError::Field {
                what: "owner store",
                offset: 9,
                value: 4
            })
        );
        assert_eq!(
            OwnerStore::parse(&encode(STORE_MAGIC, 0, 0, Some(&KEY))),
            Err(OwnerError::Key {
                what: "owner store"
            })
        );
        assert_eq!(
            OwnerStore::parse(&encode(STORE_MAGIC, 1, 0, None)),
            Err(OwnerError::Key {
                what: "owner store"
            })
        );
        // A request is not a store.
        assert_eq!(
            OwnerStore::parse(&Request::Leave.encode()),
            Err(OwnerError::Magic {
                what: "owner store"
            })
        );
    }

    #[test]
    fn requests_round_trip_and_zero_is_none() {
        for r in [
            Request::Enter { key: KEY },
            Request::Leave,
            Request::HandOver { key: KEY },
        ] {
            assert_eq!(Request::parse_block(&r.block()).unwrap(), Some(r));
        }
        assert_eq!(Request::parse_block(&[0; REQUEST_BLOCK]).unwrap(), None);
    }

    #[test]
    fn a_damaged_request_is_refused_by_name() {
        let mut trailing = Request::Leave.block();
        trailing[100] = 1;
        assert_eq!(
            Request::parse_block(&trailing),
            Err(OwnerError::Field {
                what: "owner request",
                offset: 100,
                value: 1
            })
        );
        let mut flipped = Request::Enter { key: KEY }.block();
        flipped[20] ^= 1;
        assert_eq!(
            Request::parse_block(&flipped),
            Err(OwnerError::Checksum {
                what: "owner request"
            })
        );
        let mut block = [0u8; REQUEST_BLOCK];
        block[..REQUEST_LEN].copy_from_slice(&encode(REQUEST_MAGIC, 1, 0, None));
        assert_eq!(
            Request::parse_block(&block),
            Err(OwnerError::Key {
                what: "owner request"
            })
        );
        // A hand-over request without a key, and an unknown kind.
        block[..REQUEST_LEN].copy_from_slice(&encode(REQUEST_MAGIC, 3, 0, None));
        assert_eq!(
            Request::parse_block(&block),
            Err(OwnerError::Key {
                what: "owner request"
            })
        );
        block[..REQUEST_LEN].copy_from_slice(&encode(REQUEST_MAGIC, 4, 0, Some(&KEY)));
        assert_eq!(
            Request::parse_block(&block),
            Err(OwnerError::Field {
                what: "owner request",
                offset: 9,
                value: 4
            })
        );
    }

    #[test]
    fn confirmed_requests_change_the_mode_and_always_wipe() {
        let vendor = OwnerStore::default();
        let owner = confirmed(&vendor, &Request::Enter { key: KEY }).unwrap();
        assert_eq!(owner.mode, Mode::Owner);
        assert_eq!(owner.owner_key, Some(KEY));
        assert_eq!(owner.wipe, Wipe::Pending);
        let back = confirmed(&owner, &Request::Leave).unwrap();
        assert_eq!(back.mode, Mode::Vendor);
        assert_eq!(back.owner_key, None);
        assert_eq!(back.wipe, Wipe::Pending);
        assert_eq!(confirmed(&vendor, &Request::Leave), None);
        assert!(Mode::Owner.accepts_vendor());
        assert!(!Mode::HandedOver.accepts_vendor());
    }

    #[test]
    fn handing_over_is_one_way() {
        const OTHER: [u8; 32] = [8; 32];
        let vendor = OwnerStore::default();
        let owner = confirmed(&vendor, &Request::Enter { key: KEY }).unwrap();
        for from in [vendor, owner] {
            let handing = confirmed(&from, &Request::HandOver { key: KEY }).unwrap();
            assert_eq!(
                handing,
                OwnerStore {
                    mode: Mode::HandingOver,
                    owner_key: Some(KEY),
                    wipe: Wipe::Pending
                }
            );
        }
        let handing = OwnerStore {
            mode: Mode::HandingOver,
            owner_key: Some(KEY),
            wipe: Wipe::None,
        };
        let handed = retired(&handing).unwrap();
        assert_eq!(
            handed,
            OwnerStore {
                mode: Mode::HandedOver,
                owner_key: Some(KEY),
                wipe: Wipe::None
            }
        );
        // No request changes a device handed over or handing over: not leaving (the
        // vendor's key back), not entering owner mode (the vendor's key back besides the
        // owner's), not another hand-over (the owner's key replaced by a button press).
        for store in [handing, handed] {
            for request in [
                Request::Leave,
                Request::Enter { key: OTHER },
                Request::HandOver { key: OTHER },
                Request::HandOver { key: KEY },
            ] {
                assert_eq!(confirmed(&store, &request), None, "{store:?} {request:?}");
            }
        }
        // Only handing over retires the vendor's key.
        assert_eq!(retired(&vendor), None);
        assert_eq!(retired(&owner), None);
        assert_eq!(retired(&handed), None);
        assert!(Mode::HandingOver.accepts_vendor_committed());
        assert!(!Mode::HandingOver.accepts_vendor());
        assert!(!Mode::HandedOver.accepts_vendor_committed());
    }
}
