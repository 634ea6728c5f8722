//! Sealing the identity's secret with a TPM 2.0, to PCRs (docs/identity.md, "tpm-sealed").
//!
//! [`seal`] makes the storage primary key (CreatePrimary, the same key every time while
//! the owner hierarchy's seed is unchanged), computes the policy "these PCRs hold their
//! current values" in a trial session (StartAuthSession, PolicyPCR, PolicyGetDigest) and
//! creates a sealed data object with the secret under that policy (Create). [`unseal`]
//! makes the primary again, loads the object (Load), satisfies the policy in a real
//! session (StartAuthSession, PolicyPCR) and unseals (Unseal). When a PCR differs from
//! its value at sealing, Unseal fails with `TPM_RC_POLICY_FAIL`
//! ([`wire::RC_POLICY_FAIL_SESSION_1`]).
//!
//! Rules this module keeps:
//! - The commands are marshalled by hand ([`wire`]); no C TSS stack in PID 1.
//! - Every transient object and session a call made is flushed before it returns, on
//!   success and on error ([`Open`]), so a failure cannot exhaust the TPM's slots.
//! - The transport is a parameter ([`Transport`]): `/dev/tpmrm0` on the device
//!   ([`Device`]), a socket to `swtpm` in tests.

pub mod wire;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use wire::WireError;

/// The largest response read (TPM responses are at most a few KiB).
pub const MAX_RESPONSE: usize = 8192;

/// One command to the TPM and its response.
pub trait Transport {
    /// Sends `command` and returns the whole response.
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("TPM2_{command}: cannot talk to the TPM")]
    Io {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("TPM2_{command}")]
    Wire {
        command: &'static str,
        source: WireError,
    },
    #[error("cannot read the kernel's random number generator for a session nonce")]
    Random { source: std::io::Error },
}

impl TpmError {
    /// The TPM's response code, when the TPM refused the command.
    pub fn code(&self) -> Option<u32> {
        match self {
            TpmError::Wire {
                source: WireError::Code { code },
                ..
            } => Some(*code),
            _ => None,
        }
    }
}

/// A sealed object as the TPM returned it: `TPM2B_PUBLIC` and `TPM2B_PRIVATE`, each with
/// its size (the private part is encrypted by the TPM's storage key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The object's `TPM2B_PUBLIC`.
    pub public: Vec<u8>,
    /// The object's `TPM2B_PRIVATE`.
    pub private: Vec<u8>,
}

impl Sealed {
    /// `public || private`: how the identity file stores them.
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.public.as_slice(), self.private.as_slice()].concat()
    }

    /// The two parts of [`Sealed::to_bytes`], each checked to be one whole `TPM2B`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sealed, WireError> {
        let mut r = wire::Reader::new(bytes);
        let public = r.sized_raw("sealed public")?.to_vec();
        let private = r.sized_raw("sealed private")?.to_vec();
        if r.take(1, "").is_ok() {
            return Err(WireError::Malformed {
                what: "bytes after the sealed object",
            });
        }
        Ok(Sealed { public, private })
    }
}

/// Handles to flush when the call that opened them ends, however it ends.
struct Open<'t, T: Transport + ?Sized> {
    tpm: &'t mut T,
    handles: Vec<u32>,
}

impl<T: Transport + ?Sized> Drop for Open<'_, T> {
    fn drop(&mut self) {
        for handle in self.handles.drain(..).rev() {
            // Best effort: a handle that cannot be flushed is freed at the next TPM reset,
            // and /dev/tpmrm0 flushes a closed file's objects.
            let _ = self.tpm.transact(&wire::flush_context(handle));
        }
    }
}

impl<T: Transport + ?Sized> Open<'_, T> {
    /// Sends `command`; the response's bytes.
    fn send(&mut self, name: &'static str, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        self.tpm.transact(command).map_err(|source| TpmError::Io {
            command: name,
            source,
        })
    }

    /// The storage primary key's handle (kept to be flushed).
    fn primary(&mut self) -> Result<u32, TpmError> {
        let name = "CreatePrimary";
        let bytes = self.send(name, &wire::create_primary())?;
        let handle = first_handle(name, &bytes)?;
        self.handles.push(handle);
        Ok(handle)
    }

    /// A session of `kind` (kept to be flushed).
    fn session(&mut self, kind: u8) -> Result<u32, TpmError> {
        let name = "StartAuthSession";
        let nonce = crate::random::kernel_seed().map_err(|source| TpmError::Random { source })?;
        let bytes = self.send(name, &wire::start_auth_session(kind, &nonce))?;
        let handle = first_handle(name, &bytes)?;
        self.handles.push(handle);
        Ok(handle)
    }

    fn policy_pcr(&mut self, session: u32, pcrs: &[u8]) -> Result<(), TpmError> {
        let name = "PolicyPCR";
        let bytes = self.send(name, &wire::policy_pcr(session, pcrs))?;
        wire::response(&bytes, 0).map_err(|source| TpmError::Wire {
            command: name,
            source,
        })?;
        Ok(())
    }
}

fn first_handle(name: &'static str, bytes: &[u8]) -> Result<u32, TpmError> {
    let wire_err = |source| TpmError::Wire {
        command: name,
        source,
    };
    let r = wire::response(bytes, 1).map_err(wire_err)?;
    r.handles
        .first()
        .copied()
        .ok_or(wire_err(WireError::Malformed { what: "no handle" }))
}

/// Seals `secret` to the current values of `pcrs` (SHA-256 bank).
pub fn seal<T: Transport + ?Sized>(
    tpm: &mut T,
    pcrs: &[u8],
    secret: &[u8],
) -> Result<Sealed, TpmError> {
    let mut open = Open {
        tpm,
        handles: Vec::new(),
    };
    let primary = open.primary()?;
    let trial = open.session(wire::SE_TRIAL)?;
    open.policy_pcr(trial, pcrs)?;
    let name = "PolicyGetDigest";
    let bytes = open.send(name, &wire::policy_get_digest(trial))?;
    let wire_err = |source| TpmError::Wire {
        command: name,
        source,
    };
    let mut r = wire::response(&bytes, 0).map_err(wire_err)?;
    let policy = r.params.sized("policy digest").map_err(wire_err)?.to_vec();

    let name = "Create";
    let bytes = open.send(name, &wire::create_sealed(primary, &policy, secret))?;
    let wire_err = |source| TpmError::Wire {
        command: name,
        source,
    };
    let mut r = wire::response(&bytes, 0).map_err(wire_err)?;
    let private = r.params.sized_raw("outPrivate").map_err(wire_err)?.to_vec();
    let public = r.params.sized_raw("outPublic").map_err(wire_err)?.to_vec();
    Ok(Sealed { public, private })
}

/// Unseals `sealed`, which succeeds only while `pcrs` hold the values they had at sealing.
pub fn unseal<T: Transport + ?Sized>(
    tpm: &mut T,
    pcrs: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let mut open = Open {
        tpm,
        handles: Vec::new(),
    };
    let primary = open.primary()?;
    let name = "Load";
    let bytes = open.send(name, &wire::load(primary, &sealed.private, &sealed.public))?;
    let item = first_handle(name, &bytes)?;
    open.handles.push(item);
    let session = open.session(wire::SE_POLICY)?;
    open.policy_pcr(session, pcrs)?;
    let name = "Unseal";
    let bytes = Zeroizing::new(open.send(name, &wire::unseal(item, session))?);
    let wire_err = |source| TpmError::Wire {
        command: name,
        source,
    };
    let mut r = wire::response(&bytes, 0).map_err(wire_err)?;
    let data = r.params.sized("outData").map_err(wire_err)?;
    Ok(Zeroizing::new(data.to_vec()))
}

/// Extends `pcr` with `digest` (SHA-256 bank).
pub fn extend<T: Transport + ?Sized>(
    tpm: &mut T,
    pcr: u32,
    digest: &[u8; 32],
) -> Result<(), TpmError> {
    let name = "PCR_Extend";
    let bytes = tpm
        .transact(&wire::pcr_extend(pcr, digest))
        .map_err(|source| TpmError::Io {
            command: name,
            source,
        })?;
    wire::response(&bytes, 0).map_err(|source| TpmError::Wire {
        command: name,
        source,
    })?;
    Ok(())
}

/// The SHA-256 bank's value of `pcr`; `None` when the TPM has no such PCR or bank.
pub fn read_pcr<T: Transport + ?Sized>(tpm: &mut T, pcr: u8) -> Result<Option<[u8; 32]>, TpmError> {
    let name = "PCR_Read";
    let bytes = tpm
        .transact(&wire::pcr_read(pcr))
        .map_err(|source| TpmError::Io {
            command: name,
            source,
        })?;
    let wire_err = |source| TpmError::Wire {
        command: name,
        source,
    };
    let mut r = wire::response(&bytes, 0).map_err(wire_err)?;
    wire::pcr_read_value(&mut r.params).map_err(wire_err)
}

/// Reads one whole response from a byte stream: the 10-byte header, then the rest of the
/// size it names (at most [`MAX_RESPONSE`]).
pub fn read_response(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; 10];
    stream.read_exact(&mut bytes)?;
    let size = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let size = usize::try_from(size)
        .ok()
        .filter(|s| (10..=MAX_RESPONSE).contains(s))
        .ok_or_else(|| std::io::Error::other(format!("response size {size} out of range")))?;
    bytes.resize(size, 0);
    stream.read_exact(bytes.get_mut(10..).unwrap_or_default())?;
    Ok(bytes)
}

/// The kernel's TPM resource manager device (`/dev/tpmrm0`): one command written, its
/// response read back.
#[derive(Debug)]
pub struct Device {
    path: PathBuf,
    file: std::fs::File,
}

impl Device {
    /// The device under `root` (`<root>/dev/tpmrm0`).
    pub fn open(root: &Path) -> std::io::Result<Device> {
        let path = root.join("dev/tpmrm0");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        Ok(Device { path, file })
    }

    /// Where it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        self.file.write_all(command)?;
        // The kernel returns a whole response to one read.
        let mut bytes = vec![0u8; MAX_RESPONSE];
        let n = self.file.read(&mut bytes)?;
        bytes.truncate(n);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_object_round_trips_through_its_bytes() {
        let sealed = Sealed {
            public: vec![0, 2, 0xAA, 0xBB],
            private: vec![0, 1, 0xCC],
        };
        let bytes = sealed.to_bytes();
        assert_eq!(Sealed::from_bytes(&bytes).unwrap(), sealed);
        assert!(Sealed::from_bytes(&bytes[..5]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Sealed::from_bytes(&longer).is_err());
    }

    /// A response stream is read by the size in its header, and a size past the cap is
    /// refused rather than allocated.
    #[test]
    fn responses_are_read_by_their_size() {
        let stream = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 7, 8, 9];
        let got = read_response(&mut &stream[..]).unwrap();
        assert_eq!(got, &stream[..12]);
        let huge = [0x80, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
        assert!(read_response(&mut &huge[..]).is_err());
    }
}
