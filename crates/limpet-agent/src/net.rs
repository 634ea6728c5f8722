//! The repository as the agent reaches it: three transports below one base URL
//! (`metadata/`, `targets/`, the chunk store), all counting what they fetch.
//!
//! Rules kept here:
//! - Every fetch goes through limpet-tuf's transports, so it is length-capped and bounded by
//!   the [`RetrievalPolicy`] (minimum rate, stall, deadline) by construction.
//! - [`Traffic`] counts requests (each is one HTTP round trip: the client closes every
//!   connection) and body bytes received. HTTP headers are not counted here.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limpet_tuf::transport::{transport_for_url, Download};
use limpet_tuf::{Error, RetrievalPolicy, Transport};

/// Requests made and body bytes received, shared by the transports of one poll.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    /// Requests made (HTTP round trips).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body bytes received.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A transport that counts into a [`Traffic`].
#[derive(Debug)]
struct Counted {
    inner: Box<dyn Transport + Send + Sync>,
    traffic: Arc<Traffic>,
}

/// The outer [`Download`] only counts and caps the length; the inner one (from the real
/// transport) enforces the retrieval policy.
const COUNTING_POLICY: RetrievalPolicy = RetrievalPolicy {
    min_bytes_per_sec: 0,
    grace: Duration::MAX,
    stall: Duration::MAX,
    deadline: Duration::MAX,
};

impl Transport for Counted {
    fn prefetch(&self, requests: &[(&str, u64)]) {
        self.inner.prefetch(requests);
    }

    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error> {
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        // The inner download is not length-capped, so the outer one, which has the caller's
        // cap, sees every byte and reports an oversized file as `LengthExceeded`.
        let inner = self.inner.fetch(path, u64::MAX)?;
        let reader = CountingReader {
            inner,
            traffic: Arc::clone(&self.traffic),
        };
        Ok(Download::new(
            path,
            Box::new(reader),
            max_len,
            COUNTING_POLICY,
            Instant::now(),
        ))
    }
}

struct CountingReader {
    inner: Download,
    traffic: Arc<Traffic>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read_chunk(buf) {
            Ok(n) => {
                self.traffic
                    .bytes
                    .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                Ok(n)
            }
            // The outer download turns `TimedOut` into its own `SlowRetrieval`.
            Err(e @ Error::SlowRetrieval { .. }) => {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
            }
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The transports of one poll.
#[derive(Debug)]
pub struct Remote {
    /// `BASE/metadata/` (shared with the TUF client, which owns its transport).
    metadata: Arc<Counted>,
    /// `BASE/targets/`.
    pub targets: Box<dyn Transport + Send + Sync>,
    /// `BASE/` (chunk paths start with `chunks/`).
    pub base: Box<dyn Transport + Send + Sync>,
    /// What they fetched.
    pub traffic: Arc<Traffic>,
}

impl Remote {
    /// Transports below `base_url` (`http://host[:port]/path` or a `file://` URL).
    pub fn new(base_url: &str, policy: RetrievalPolicy) -> Result<Self, Error> {
        let traffic = Arc::new(Traffic::default());
        let base = base_url.trim_end_matches('/');
        let counted = |url: String| -> Result<Counted, Error> {
            Ok(Counted {
                inner: transport_for_url(&url, policy)?,
                traffic: Arc::clone(&traffic),
            })
        };
        Ok(Remote {
            metadata: Arc::new(counted(format!("{base}/metadata"))?),
            targets: Box::new(counted(format!("{base}/targets"))?),
            base: Box::new(counted(base.to_owned())?),
            traffic: Arc::clone(&traffic),
        })
    }

    /// The metadata transport, for the TUF client; it counts into the same [`Traffic`].
    pub fn metadata(&self) -> Box<dyn Transport> {
        Box::new(SharedTransport(Arc::clone(&self.metadata)))
    }
}

#[derive(Debug)]
struct SharedTransport(Arc<Counted>);

impl Transport for SharedTransport {
    fn prefetch(&self, requests: &[(&str, u64)]) {
        self.0.prefetch(requests);
    }

    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error> {
        self.0.fetch(path, max_len)
    }
}

/// Reads a whole download (at most its cap).
pub fn read_all(mut download: Download) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = download.read_chunk(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
}
