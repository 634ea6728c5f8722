//! A task's seccomp program as the policy stores it, and the architecture it is for.
//!
//! Rules this module keeps:
//! - A [`Bpf`] always holds 1..=[`MAX_INSTRUCTIONS`] whole instructions: it is checked when
//!   it is made or read, so whoever installs one needs no check of its own.
//! - Programs are stored as raw `struct sock_filter`s, [`INSTRUCTION_BYTES`] bytes each,
//!   little-endian (`u16 code, u8 jt, u8 jf, u32 k`): both device architectures are
//!   little-endian. In JSON, a lower-case hex string.
//! - A [`Bpf`] is immutable and cheap to clone: equal programs can share one copy (PID 1
//!   keeps every task's program for its whole life; see `DevicePolicy::from_json`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;
/// Bytes in one `struct sock_filter`.
pub const INSTRUCTION_BYTES: usize = 8;

/// A CPU architecture a filter is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// 64-bit x86 (the x86_64 ABI only).
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit Arm.
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    /// Every architecture filters can be built for.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this code was compiled for, if filters can be built for it.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// `x86_64` or `aarch64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored program that is not one.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// Stored program bytes are not whole instructions.
    #[error("a seccomp program of {len} bytes is not a whole number of {INSTRUCTION_BYTES}-byte instructions")]
    Truncated {
        /// The stored program's length in bytes.
        len: usize,
    },
    /// Stored program is empty or longer than the kernel accepts.
    #[error("a seccomp program of {len} instructions is outside 1..={MAX_INSTRUCTIONS}")]
    BadLength {
        /// The stored program's length in instructions.
        len: usize,
    },
    /// Stored program text is not hex.
    #[error("seccomp program is not hex")]
    Hex(#[source] hex::FromHexError),
}

/// A compiled seccomp program: raw `struct sock_filter`s, 8 bytes each, little-endian.
/// Serialized as a hex string. Always 1..=4096 whole instructions. Clones share the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Bpf(Arc<[u8]>);

impl Bpf {
    /// Checks that `bytes` hold 1..=4096 whole instructions.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Bpf, BpfError> {
        if !bytes.len().is_multiple_of(INSTRUCTION_BYTES) {
            return Err(BpfError::Truncated { len: bytes.len() });
        }
        let len = bytes.len() / INSTRUCTION_BYTES;
        if len == 0 || len > MAX_INSTRUCTIONS {
            return Err(BpfError::BadLength { len });
        }
        Ok(Bpf(bytes.into()))
    }

    /// Whether `self` and `other` are one stored copy (not only equal).
    pub fn shares_bytes_with(&self, other: &Bpf) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The raw program.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.0.len() / INSTRUCTION_BYTES
    }

    /// Never true: a program has at least one instruction.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The instructions, decoded: `(code, jt, jf, k)` of each `struct sock_filter`.
    pub fn instructions(&self) -> impl Iterator<Item = (u16, u8, u8, u32)> + '_ {
        self.0.chunks_exact(INSTRUCTION_BYTES).map(|c| {
            (
                u16::from_le_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
    }
}

impl fmt::Debug for Bpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bpf({} instructions)", self.len())
    }
}

impl Serialize for Bpf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bpf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor)
    }
}

/// Decodes a program's hex text where the deserializer holds it (borrowed from the input,
/// for serde_json's `from_slice`), without a copy of its own: PID 1 would otherwise
/// allocate and free a 10 KB string per task while it reads the policy.
struct HexVisitor;

impl serde::de::Visitor<'_> for HexVisitor {
    type Value = Bpf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a seccomp program as a hex string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Bpf, E> {
        // Decoded into a buffer of the exact size: `hex::decode` grows its vector by
        // doubling, which left PID 1 holding up to twice each program for its whole life.
        let mut bytes = vec![0; text.len() / 2];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(BpfError::Hex)
            .map_err(E::custom)?;
        Bpf::from_bytes(bytes).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn bytes_round_trip_and_are_checked() {
        // BPF_RET|BPF_K 0x7fff0000 (allow), BPF_LD|BPF_W|BPF_ABS 4 (the architecture).
        let bytes = vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f, 0x20, 0, 0, 0, 4, 0, 0, 0];
        let bpf = Bpf::from_bytes(bytes).unwrap();
        let json = serde_json::to_string(&bpf).unwrap();
        assert_eq!(json, "\"060000000000ff7f2000000004000000\"");
        let back: Bpf = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bpf);
        assert_eq!(
            bpf.instructions().collect::<Vec<_>>(),
            [(0x06, 0, 0, 0x7fff_0000), (0x20, 0, 0, 4)]
        );
        assert_eq!(format!("{bpf:?}"), "Bpf(2 instructions)");
        assert!(matches!(
            Bpf::from_bytes(vec![0; 7]),
            Err(BpfError::Truncated { len: 7 })
        ));
        assert!(matches!(
            Bpf::from_bytes(Vec::new()),
            Err(BpfError::BadLength { len: 0 })
        ));
        assert!(matches!(
            Bpf::from_bytes(vec![0; 8 * 4097]),
            Err(BpfError::BadLength { len: 4097 })
        ));
        assert!(Bpf::from_bytes(vec![0; 8 * 4096]).is_ok());
        assert!(serde_json::from_str::<Bpf>("\"zz\"").is_err());
        assert!(matches!(
            serde_json::from_str::<Bpf>("\"060\"").map_err(|e| e.to_string()),
            Err(e) if e.contains("not hex")
        ));
        assert!(serde_json::from_str::<Bpf>("\"\"").is_err());
        assert!(serde_json::from_str::<Bpf>("6").is_err(), "not a string");
        // An escaped string is not borrowed from the input, and reads the same.
        let escaped = serde_json::from_str::<Bpf>("\"060000000000ff7f\\u0032000000004000000\"");
        assert_eq!(escaped.unwrap(), bpf);
    }

    #[test]
    fn arch_names() {
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), "\"x86_64\"");
        assert_eq!(
            serde_json::to_string(&Arch::Aarch64).unwrap(),
            "\"aarch64\""
        );
        for arch in Arch::ALL {
            assert_eq!(arch.to_string(), arch.as_str());
        }
    }
}
