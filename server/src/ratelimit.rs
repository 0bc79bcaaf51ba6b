//! Per-client rate limiting: a token bucket per client address. Each costly request takes a
//! token; tokens come back at a steady rate up to the burst size. Memory is bounded: past
//! `MAX_CLIENTS` the buckets that have been full longest are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What a request learns from the limiter (also sent as RateLimit headers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until a token is back (when refused) or the bucket is full (when allowed).
    pub reset: Duration,
}

#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` tokens a minute, at most `burst` at once. `per_minute == 0` disables it.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    pub fn check(&self, client: IpAddr, now: Instant) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let full_after = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.duration_since(b.updated) < full_after);
            if buckets.len() >= MAX_CLIENTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let reset = if allowed {
            (self.burst - bucket.tokens) / self.per_second
        } else {
            (1.0 - bucket.tokens) / self.per_second
        };
        Decision {
            allowed,
            limit: self.burst as u32,
            remaining: bucket.tokens.floor() as u32,
            reset: Duration::from_secs_f64(reset.max(0.0)).max(Duration::from_secs(if allowed {
                0
            } else {
                1
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_come_back() {
        let limiter = RateLimiter::new(60, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for expected_remaining in [2, 1, 0] {
            let d = limiter.check(ip, t0);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let refused = limiter.check(ip, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(1));
        assert!(limiter.check(other, t0).allowed, "clients are limited separately");
        assert!(limiter.check(ip, t0 + Duration::from_millis(1100)).allowed, "one token a second");
    }
}
