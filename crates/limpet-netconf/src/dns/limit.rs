//! Token buckets: one on the stub's upstream queries, one per client source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

/// Tokens are counted in thousandths so that integer arithmetic refills smoothly.
const MILLI: u64 = 1000;

/// A token bucket, full when created.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    milli_tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            milli_tokens: u64::from(rate.burst) * MILLI,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        // Capped so the multiplication below cannot overflow after a long idle time.
        let ms = u64::try_from(elapsed.min(Duration::from_secs(3600)).as_millis()).unwrap_or(0);
        let cap = u64::from(self.rate.burst) * MILLI;
        self.milli_tokens = (self.milli_tokens + ms * u64::from(self.rate.per_second)).min(cap);
        if now > self.last {
            self.last = now;
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now` (a full bucket is as good as a new one).
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli_tokens >= u64::from(self.rate.burst) * MILLI
    }
}

/// One bucket per source address, for at most `max_sources` sources at a time.
#[derive(Debug)]
pub struct PerSource {
    rate: Rate,
    max_sources: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl PerSource {
    /// An empty table.
    pub fn new(rate: Rate, max_sources: usize) -> Self {
        Self {
            rate,
            max_sources,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `source`'s bucket. When the table is full, buckets that have
    /// refilled completely are forgotten first; if none has, the query is refused, so a
    /// spray of spoofed sources cannot grow the table or bypass the limit.
    pub fn try_take(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::new(self.rate, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Rate {
                per_second: 20,
                burst: 40,
            },
            t0,
        );
        assert_eq!((0..100).filter(|_| b.try_take(t0)).count(), 40);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.try_take(t1)).count(), 10);
        // Time going backwards refills nothing and does not panic.
        assert!(!b.try_take(t0));
    }

    #[test]
    fn per_source_table_is_bounded() {
        let t0 = Instant::now();
        let mut p = PerSource::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            2,
        );
        assert!(p.try_take("192.0.2.1".parse().unwrap_or(IpAddr::from([0; 4])), t0));
        assert!(p.try_take(IpAddr::from([192, 0, 2, 2]), t0));
        assert!(
            !p.try_take(IpAddr::from([192, 0, 2, 3]), t0),
            "table full of busy sources"
        );
        let later = t0 + Duration::from_secs(5);
        assert!(
            p.try_take(IpAddr::from([192, 0, 2, 3]), later),
            "idle sources were forgotten"
        );
    }
}
