//! Transports fetch repository files; every fetch is length-capped and rate-bounded by
//! construction, and every result the client acts on is hash-checked.
//!
//! Rules kept here:
//! - A [`Transport`] returns a [`Download`], which is the only way to read fetched bytes. It
//!   fails with [`Error::LengthExceeded`] as soon as more than `max_len` bytes arrive, and with
//!   [`Error::SlowRetrieval`] when the average rate falls below the policy's minimum after the
//!   grace period, when a read stalls, or when the overall deadline passes.
//! - [`Transport::prefetch`] is only a hint: bytes fetched ahead are handed out by the next
//!   `fetch` of the same path, once, through a [`Download`] under that call's cap, and are
//!   verified like any other.
//! - [`fetch_metadata`] returns bytes only after their length and hashes (if the parent role
//!   lists them) match; [`fetch_target`] reports success only after the hash matches.

mod file;
mod http;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::digest::DynDigest;
use sha2::{Digest, Sha256, Sha512};

pub use file::FileTransport;
pub use http::HttpTransport;

use crate::error::Error;
use crate::metadata::{Hashes, TargetFile};

/// Bounds on how slowly a file may arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrievalPolicy {
    /// Minimum average rate, bytes per second, enforced once `grace` has passed.
    pub min_bytes_per_sec: u64,
    /// Time allowed before the rate is enforced (connection set-up, slow start).
    pub grace: Duration,
    /// Longest time any single read (or connect) may block.
    pub stall: Duration,
    /// Overall deadline of one file's transfer.
    pub deadline: Duration,
}

impl Default for RetrievalPolicy {
    /// 1 KiB/s after 30 s, no read blocking more than 30 s, one hour per file.
    fn default() -> Self {
        RetrievalPolicy {
            min_bytes_per_sec: 1024,
            grace: Duration::from_secs(30),
            stall: Duration::from_secs(30),
            deadline: Duration::from_secs(3600),
        }
    }
}

/// A source of repository files (metadata or targets).
pub trait Transport: std::fmt::Debug {
    /// Starts fetching `path` (relative to the transport's base, `/`-separated, not
    /// URL-encoded), allowing at most `max_len` bytes. Returns [`Error::NotFound`] if the file
    /// does not exist and [`Error::LengthExceeded`] if it is announced longer than `max_len`.
    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error>;

    /// Starts fetching the file called `name` at the transport's base, where `name` is one
    /// file name that may hold any character, `/` included: a delegated role's metadata,
    /// `[VERSION.]ROLE.json`, which python-tuf requests with the role name percent-encoded.
    /// Caps and errors as [`fetch`](Self::fetch).
    ///
    /// The default fetches `name` as a path when it is a plain file name and refuses any other
    /// with [`Error::BadPath`]; [`HttpTransport`] fetches any name but `.` and `..`, as one
    /// percent-encoded path segment. Transports that wrap another may forward it.
    fn fetch_file_name(&self, name: &str, max_len: u64) -> Result<Download, Error> {
        if name.contains('/') {
            return Err(Error::BadPath {
                path: name.to_owned(),
                reason: "a file name holding / that this transport cannot address",
            });
        }
        check_relative(name)?;
        self.fetch(name, max_len)
    }

    /// A hint: the caller is about to [`fetch`](Self::fetch) these `(path, max_len)` pairs, in
    /// this order. A transport may fetch them now, in one round trip, and serve the following
    /// `fetch` of each path (at most once) from what it got, with the same caps and errors;
    /// whatever it could not get is fetched as usual. Nothing is verified earlier than without
    /// the hint: the caller still checks each file when it fetches it. A new hint replaces
    /// what is left of the previous one.
    ///
    /// The default does nothing. Transports that wrap another should forward it.
    fn prefetch(&self, requests: &[(&str, u64)]) {
        let _ = requests;
    }
}

/// The bytes of one fetch, as they arrive, under a length cap and the retrieval policy.
pub struct Download {
    path: String,
    inner: Box<dyn Read + Send>,
    max_len: u64,
    received: u64,
    started: Instant,
    policy: RetrievalPolicy,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Wraps a transport's raw reader. `started` is when the request began (before connecting),
    /// so connection time counts toward the deadline.
    pub fn new(
        path: &str,
        inner: Box<dyn Read + Send>,
        max_len: u64,
        policy: RetrievalPolicy,
        started: Instant,
    ) -> Self {
        Download {
            path: path.to_owned(),
            inner,
            max_len,
            received: 0,
            started,
            policy,
        }
    }

    /// The path being fetched.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn slow(&self, reason: &'static str) -> Error {
        Error::SlowRetrieval {
            path: self.path.clone(),
            received: self.received,
            elapsed_ms: self.started.elapsed().as_millis(),
            reason,
        }
    }

    fn check_rate(&self) -> Result<(), Error> {
        let elapsed = self.started.elapsed();
        if elapsed > self.policy.deadline {
            return Err(self.slow("overall deadline passed"));
        }
        if elapsed > self.policy.grace {
            let needed =
                u128::from(self.policy.min_bytes_per_sec).saturating_mul(elapsed.as_millis());
            if u128::from(self.received).saturating_mul(1000) < needed {
                return Err(self.slow("average rate below the minimum"));
            }
        }
        Ok(())
    }

    /// Reads the next bytes into `buf`; `Ok(0)` at the end. These bytes are NOT verified.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.check_rate()?;
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(self.slow("read stalled"))
                }
                Err(e) => return Err(Error::io(format!("{}: reading", self.path), e)),
            }
        };
        self.received = self
            .received
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.received > self.max_len {
            return Err(Error::LengthExceeded {
                path: self.path.clone(),
                max: self.max_len,
            });
        }
        if n > 0 {
            self.check_rate()?;
        }
        Ok(n)
    }

    /// Reads everything (at most `max_len` bytes). The bytes are NOT verified.
    fn read_all(mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }
}

/// The hash algorithms of `hashes` this client computes, by the names python-tuf
/// (securesystemslib, Python's `hashlib`) gives them: the SHA-2 and SHA-3 families, BLAKE2b
/// (`blake2b`, and `blake2b-256` as PEP 458 uses it) and BLAKE2s. Others are not checked
/// (MD5 and SHA-1 are not trusted, SHAKE has no fixed length), and a list naming none of
/// these is refused.
pub const HASH_ALGORITHMS: [&str; 13] = [
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sha512_224",
    "sha512_256",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "blake2b",
    "blake2b-256",
    "blake2s",
];

/// A running hash of an algorithm in [`HASH_ALGORITHMS`].
fn hasher(algorithm: &str) -> Option<Box<dyn DynDigest>> {
    Some(match algorithm {
        "sha224" => Box::new(sha2::Sha224::new()),
        "sha256" => Box::new(Sha256::new()),
        "sha384" => Box::new(sha2::Sha384::new()),
        "sha512" => Box::new(Sha512::new()),
        "sha512_224" => Box::new(sha2::Sha512_224::new()),
        "sha512_256" => Box::new(sha2::Sha512_256::new()),
        "sha3_224" => Box::new(sha3::Sha3_224::new()),
        "sha3_256" => Box::new(sha3::Sha3_256::new()),
        "sha3_384" => Box::new(sha3::Sha3_384::new()),
        "sha3_512" => Box::new(sha3::Sha3_512::new()),
        "blake2b" => Box::new(blake2::Blake2b512::new()),
        "blake2b-256" => Box::new(blake2::Blake2b::<blake2::digest::consts::U32>::new()),
        "blake2s" => Box::new(blake2::Blake2s256::new()),
        _ => return None,
    })
}

/// Hashers for every algorithm a hash list names that this client knows.
struct MultiHasher {
    hashers: Vec<(String, Box<dyn DynDigest>)>,
}

impl MultiHasher {
    /// Hashers for the known algorithms of `hashes`: an error when it lists none, or none
    /// this client knows.
    fn for_hashes(path: &str, hashes: &Hashes) -> Result<Self, Error> {
        if hashes.is_empty() {
            return Err(Error::NoHashes {
                path: path.to_owned(),
            });
        }
        let hashers: Vec<(String, Box<dyn DynDigest>)> = hashes
            .keys()
            .filter_map(|alg| hasher(alg).map(|h| (alg.clone(), h)))
            .collect();
        if hashers.is_empty() {
            return Err(Error::UnsupportedHash {
                path: path.to_owned(),
                algorithm: hashes.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(MultiHasher { hashers })
    }

    fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.hashers {
            h.update(data);
        }
    }

    /// Checks every known listed hash; returns the SHA-256 if it was computed.
    fn verify(self, path: &str, hashes: &Hashes) -> Result<Option<[u8; 32]>, Error> {
        let mismatch = || Error::HashMismatch {
            path: path.to_owned(),
        };
        let mut sha256 = None;
        for (alg, hasher) in self.hashers {
            let got = hasher.finalize();
            let want = hashes.get(&alg).ok_or_else(mismatch)?;
            let want = hex::decode(want).map_err(|_| mismatch())?;
            if *got != *want {
                return Err(mismatch());
            }
            if alg == "sha256" {
                sha256 = <[u8; 32]>::try_from(&*got).ok();
            }
        }
        Ok(sha256)
    }
}

/// Fetches a metadata file of at most `max_len` bytes and, when the parent role lists them,
/// checks its exact length and hashes. Returns the bytes exactly as received.
pub fn fetch_metadata(
    transport: &dyn Transport,
    path: &str,
    max_len: u64,
    length: Option<u64>,
    hashes: Option<&Hashes>,
) -> Result<Vec<u8>, Error> {
    let max_len = length.map_or(max_len, |l| l.min(max_len));
    let bytes = transport.fetch(path, max_len)?.read_all()?;
    check_bytes(path, &bytes, length, hashes)?;
    Ok(bytes)
}

/// As [`fetch_metadata`], for a file named by [`Transport::fetch_file_name`] (a delegated
/// role's metadata).
pub fn fetch_metadata_file_name(
    transport: &dyn Transport,
    name: &str,
    max_len: u64,
    length: Option<u64>,
    hashes: Option<&Hashes>,
) -> Result<Vec<u8>, Error> {
    let max_len = length.map_or(max_len, |l| l.min(max_len));
    let bytes = transport.fetch_file_name(name, max_len)?.read_all()?;
    check_bytes(name, &bytes, length, hashes)?;
    Ok(bytes)
}

/// Checks bytes against the length and hashes a parent role lists (each only if listed).
pub(crate) fn check_bytes(
    path: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: Option<&Hashes>,
) -> Result<(), Error> {
    let got = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if let Some(expected) = length {
        if got != expected {
            return Err(Error::LengthMismatch {
                path: path.to_owned(),
                expected,
                got,
            });
        }
    }
    if let Some(hashes) = hashes {
        let mut h = MultiHasher::for_hashes(path, hashes)?;
        h.update(bytes);
        h.verify(path, hashes)?;
    }
    Ok(())
}

/// Proof that a target's bytes matched trusted metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTarget {
    /// Bytes written to the sink.
    pub length: u64,
    /// Their SHA-256, when the metadata lists one.
    pub sha256: Option<[u8; 32]>,
}

/// Streams the target at `path` into `sink`, at most `target.length` bytes, and returns
/// success only if the length and every listed hash match.
///
/// The sink receives bytes before they are verified: the caller MUST NOT use (install,
/// execute, parse) anything written to it unless this function returned `Ok`. Write to a
/// temporary file or an inactive slot and act on it only after success.
pub fn fetch_target(
    transport: &dyn Transport,
    path: &str,
    target: &TargetFile,
    sink: &mut dyn Write,
) -> Result<VerifiedTarget, Error> {
    let mut hasher = MultiHasher::for_hashes(path, &target.hashes)?;
    let mut download = transport.fetch(path, target.length)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = download.read_chunk(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        sink.write_all(chunk).map_err(|source| Error::Sink {
            path: path.to_owned(),
            source,
        })?;
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    if total != target.length {
        return Err(Error::LengthMismatch {
            path: path.to_owned(),
            expected: target.length,
            got: total,
        });
    }
    let sha256 = hasher.verify(path, &target.hashes)?;
    sink.flush().map_err(|source| Error::Sink {
        path: path.to_owned(),
        source,
    })?;
    Ok(VerifiedTarget {
        length: total,
        sha256,
    })
}

/// Checks bytes already on disk (a cached target) against trusted metadata.
pub fn verify_local_target(path: &Path, target: &TargetFile) -> Result<(), Error> {
    let name = path.display().to_string();
    let mut hasher = MultiHasher::for_hashes(&name, &target.hashes)?;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("{name}: open"), e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("{name}: read"), e))?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if total > target.length {
            return Err(Error::LengthExceeded {
                path: name,
                max: target.length,
            });
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    if total != target.length {
        return Err(Error::LengthMismatch {
            path: name,
            expected: target.length,
            got: total,
        });
    }
    hasher.verify(&name, &target.hashes).map(|_| ())
}

/// A transport for `url`: `http://…` or `file:///…` (or a plain directory path).
pub fn transport_for_url(
    url: &str,
    policy: RetrievalPolicy,
) -> Result<Box<dyn Transport + Send + Sync>, Error> {
    if url.starts_with("http://") {
        Ok(Box::new(HttpTransport::new(url, policy)?))
    } else if url.starts_with("https://") {
        Err(Error::UnsupportedUrl {
            url: url.to_owned(),
            reason: "TLS is not implemented; TUF metadata provides integrity, use http://",
        })
    } else if let Some(path) = url.strip_prefix("file://") {
        Ok(Box::new(FileTransport::new(path, policy)))
    } else if url.contains("://") {
        Err(Error::UnsupportedUrl {
            url: url.to_owned(),
            reason: "only http:// and file:// are supported",
        })
    } else {
        Ok(Box::new(FileTransport::new(url, policy)))
    }
}

/// Checks a repository-relative path: no empty, `.` or `..` component, not absolute, no NUL
/// or backslash. Shared by the transports, the repository writer and limpet-repo's
/// development server.
pub fn check_relative(path: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() || path.starts_with('/') {
        return bad("empty or absolute");
    }
    if path.contains('\0') || path.contains('\\') {
        return bad("NUL or backslash");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("empty, . or .. component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each algorithm's digest of `limpet`, as securesystemslib (python-tuf) computes it.
    const LIMPET: [(&str, &str); 13] = [
        ("sha224", "961bd762893fb7322bb202edde116cc40d5f19c3b7b48325beb30544"),
        ("sha256", "209d63405462da2edd9ea18daf82b8ad5b16a7b104c0e410392f869446fa1db5"),
        ("sha384", "f105ddcac244d00ef6befa31480869878ad56bcfea54207d403c39996c3c6b0c42663938418d006eb126e58c4cd04e55"),
        ("sha512", "2d7e1ab3a6dea2d8ae9beae52377197bd7bdcb384b1436fc096025d9ab797a4c26c152573971d7af2096787258069b2e1472c6c05aaf1a3b24f55318afee9ee7"),
        ("sha512_224", "d574f2c93af44aff9cb27d845326862cc5eeaf5bafb0945df3edc1de"),
        ("sha512_256", "93839171aefcdd9986f390e3bd52189424bfc74054017c7630d86430ec3d2e80"),
        ("sha3_224", "1da04a5c71e04eae7fa85b373cb425192343bef0fd7112d1424a298d"),
        ("sha3_256", "897745ace1265e50cb7b1f439fa8c3939af46220d2a067ac35181923e702d5aa"),
        ("sha3_384", "dab79a26f961ffa3a0e4ec3b3b4ea6aaca0b5d39924a6d583bf52914bc604af58db306b75e45b46acf1fc79f4c9fc02e"),
        ("sha3_512", "b1f5e2cb8f64cf18968b31845510dddca9068cef8c2fa4f2f45a09525a92baa1351c8711f5174b1b5dfc73570f96fd45d65d10184526e4061d1a3d0c761ceb81"),
        ("blake2b", "14c10453070d9cfd1d8680f3ecd2c1157d70621a1d618a46b2ec9ada4a17b0d9231d34f8cbb314908805b47c5be02b9cdbbfb4b79e64144ee08a9f9acdb36936"),
        ("blake2b-256", "70d6e4c043057c65a4d96c49a24041f13b2791fe55f80bb05c377f2d87895048"),
        ("blake2s", "e1223ce79304bf76b1df93f0707daeae56eec0b54a480ad9dbb04f22a2f06ca7"),
    ];

    #[test]
    fn every_algorithm_agrees_with_python_tuf() {
        assert_eq!(LIMPET.map(|(alg, _)| alg), HASH_ALGORITHMS);
        for (alg, hex) in LIMPET {
            let hashes = Hashes::from([(alg.to_owned(), hex.to_owned())]);
            assert!(
                check_bytes("f", b"limpet", None, Some(&hashes)).is_ok(),
                "{alg}"
            );
            assert!(
                matches!(
                    check_bytes("f", b"limpeT", None, Some(&hashes)),
                    Err(Error::HashMismatch { .. })
                ),
                "{alg}"
            );
        }
        // All of them at once, one of them wrong: refused.
        let mut all: Hashes = LIMPET
            .iter()
            .map(|(a, h)| ((*a).to_owned(), (*h).to_owned()))
            .collect();
        assert!(check_bytes("f", b"limpet", None, Some(&all)).is_ok());
        all.insert("sha3_256".into(), "00".repeat(32));
        assert!(matches!(
            check_bytes("f", b"limpet", None, Some(&all)),
            Err(Error::HashMismatch { .. })
        ));
    }
}
