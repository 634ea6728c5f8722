//! An external signer: a command that signs with a key kept in an HSM or a cloud KMS, so
//! the private key is never on the host's disk.
//!
//! Rules kept here:
//! - The command runs as `sh -c COMMAND`, once per signature. It gets the exact bytes to
//!   sign (the canonical JSON of a `signed` object) on standard input, and the key it must
//!   sign with in the environment: `LIMPET_SIGN_KEYID` (the TUF key id), `LIMPET_SIGN_KEYTYPE`,
//!   `LIMPET_SIGN_SCHEME`. It writes the raw signature to standard output, in the scheme's
//!   encoding: Ed25519 64 bytes; ECDSA DER (a raw 64-byte `r || s`, as PKCS#11 returns it,
//!   is turned into DER); RSASSA-PSS exactly the modulus length (SHA-256, MGF1-SHA-256, salt
//!   32). It hashes the message itself. Its standard error goes to the user (PIN prompts,
//!   diagnostics).
//! - A command that cannot start, exits unsuccessfully, writes nothing, or writes more than
//!   [`MAX_SIGNATURE`] bytes is an error naming the command and key; so is a signature that
//!   does not verify with the public key given (the caller checks that, as for every
//!   signature made here).

use std::fmt;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::public::{PublicKey, Scheme};
use super::KeyId;

/// The most bytes a signer command may write: a 4096-bit RSA signature is 512.
pub const MAX_SIGNATURE: usize = 4096;

/// Why a signer command did not give a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerCommandError {
    /// The command could not be started or fed.
    #[error("running it failed")]
    Io(#[source] std::io::Error),
    /// It exited unsuccessfully.
    #[error("it exited with {status}")]
    Status {
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// It wrote nothing.
    #[error("it wrote no signature on standard output")]
    Empty,
    /// It wrote too much.
    #[error("it wrote more than {MAX_SIGNATURE} bytes, no signature is that long")]
    TooLong,
}

/// A key whose signatures a command makes.
#[derive(Clone)]
pub struct ExternalSigner {
    command: String,
    public: PublicKey,
}

impl fmt::Debug for ExternalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSigner")
            .field("command", &self.command)
            .field("scheme", &self.public.scheme())
            .finish()
    }
}

impl ExternalSigner {
    /// A signer running `command` (a shell command line) for the key `public`.
    pub fn new(command: impl Into<String>, public: PublicKey) -> Self {
        ExternalSigner {
            command: command.into(),
            public,
        }
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The key it signs with.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Runs the command for `msg` (module rules); returns the signature's bytes, ECDSA in DER.
    pub(crate) fn sign(&self, id: &KeyId, msg: &[u8]) -> Result<Vec<u8>, SignerCommandError> {
        let scheme = self.public.scheme();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .env("LIMPET_SIGN_KEYID", &id.0)
            .env("LIMPET_SIGN_KEYTYPE", scheme.keytype())
            .env("LIMPET_SIGN_SCHEME", scheme.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(SignerCommandError::Io)?;
        // Fed from a thread, so a command that writes before it has read everything cannot
        // dead-lock against us.
        let feeder = child.stdin.take().map(|mut stdin| {
            let msg = msg.to_vec();
            std::thread::spawn(move || stdin.write_all(&msg))
        });
        let mut out = Vec::new();
        let read = match child.stdout.take() {
            Some(stdout) => stdout
                .take(u64::try_from(MAX_SIGNATURE).unwrap_or(u64::MAX) + 1)
                .read_to_end(&mut out)
                .map(|_| ()),
            None => Ok(()),
        };
        let status = child.wait().map_err(SignerCommandError::Io)?;
        // A command that signs without reading all its input closes the pipe early: that is
        // its business, its exit status tells.
        let fed = feeder.map(|t| t.join());
        read.map_err(SignerCommandError::Io)?;
        if !status.success() {
            return Err(SignerCommandError::Status { status });
        }
        if let Some(Ok(Err(e))) = fed {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(SignerCommandError::Io(e));
            }
        }
        if out.is_empty() {
            return Err(SignerCommandError::Empty);
        }
        if out.len() > MAX_SIGNATURE {
            return Err(SignerCommandError::TooLong);
        }
        if scheme == Scheme::EcdsaP256Sha256 && out.len() == 64 {
            if let Ok(sig) = p256::ecdsa::Signature::from_slice(&out) {
                return Ok(sig.to_der().as_bytes().to_vec());
            }
        }
        Ok(out)
    }
}
