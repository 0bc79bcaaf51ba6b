//! Per-client rate limiting: a token bucket (GCRA, from the `governor` crate) per client. Each
//! costly request takes a token; tokens come back at a steady rate up to the burst size.
//!
//! Clients are keyed by IPv4 address, or by IPv6 /64 (one host usually holds a whole /64, so a
//! bucket per IPv6 address would let it take as many buckets as it likes). Memory is bounded by
//! pruning: every `PRUNE_EVERY` checks the buckets that are full again (indistinguishable from a
//! fresh one) are dropped. A bucket that still holds a debt is never dropped, however many other
//! clients come and go.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// Checks between two prunings of the full buckets.
const PRUNE_EVERY: u64 = 4096;

/// The key a client is counted under: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
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

type Buckets<C> = Gcra<ClientKey, DashMapStateStore<ClientKey>, C, StateInformationMiddleware>;

pub struct RateLimiter<C: Clock = DefaultClock> {
    /// `None` when rate limiting is off.
    buckets: Option<Buckets<C>>,
    clock: C,
    burst: u32,
    /// Time for one token to come back.
    per_token: Duration,
    checks: AtomicU64,
}

impl RateLimiter {
    /// `per_minute` tokens a minute, at most `burst` at once. `per_minute == 0` disables it.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<C: Clock> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("burst", &self.burst)
            .field("per_token", &self.per_token)
            .field("clients", &self.clients())
            .finish()
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_minute: u32, burst: u32, clock: C) -> RateLimiter<C> {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let per_token = Duration::from_secs(60) / per_minute.max(1);
        let buckets = NonZeroU32::new(per_minute).map(|_| {
            let quota =
                Quota::with_period(per_token).expect("a positive period").allow_burst(burst);
            Gcra::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>()
        });
        RateLimiter { buckets, clock, burst: burst.get(), per_token, checks: AtomicU64::new(0) }
    }

    pub fn enabled(&self) -> bool {
        self.buckets.is_some()
    }

    /// Takes a token for `client`, or says when one will be back.
    pub fn check(&self, client: IpAddr) -> Decision {
        let Some(buckets) = &self.buckets else {
            return Decision {
                allowed: true,
                limit: self.burst,
                remaining: self.burst,
                reset: Duration::ZERO,
            };
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
        match buckets.check_key(&ClientKey::from(client)) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: self.burst,
                    remaining,
                    reset: self.per_token * (self.burst - remaining),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset: not_until.wait_time_from(self.clock.now()).max(Duration::from_secs(1)),
            },
        }
    }
}

impl<C: Clock> RateLimiter<C> {
    /// Buckets held now (for tests and metrics).
    pub fn clients(&self) -> usize {
        self.buckets.as_ref().map_or(0, |b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_come_back() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(60, 3, clock.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for expected_remaining in [2, 1, 0] {
            let d = limiter.check(ip);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let refused = limiter.check(ip);
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_secs(1));
        assert!(limiter.check(other).allowed, "clients are limited separately");
        clock.advance(Duration::from_millis(1100));
        assert!(limiter.check(ip).allowed, "one token a second");
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let limiter = RateLimiter::with_clock(60, 2, FakeRelativeClock::default());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(a).allowed);
        assert!(limiter.check(b).allowed);
        assert!(!limiter.check(a).allowed, "another address in the same /64 took the last token");
        assert!(limiter.check(elsewhere).allowed, "the next /64 is another client");
        // An IPv4-mapped IPv6 address is the IPv4 client.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limiter.check(v4).allowed);
        assert!(limiter.check(mapped).allowed);
        assert!(!limiter.check(v4).allowed);
    }

    #[test]
    fn twenty_thousand_other_clients_reset_no_one_and_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(60, 2, clock.clone());
        let victim: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(limiter.check(victim).allowed);
        assert!(limiter.check(victim).allowed);
        assert!(!limiter.check(victim).allowed);
        for round in 0..2u32 {
            for n in 0..20_000u32 {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
                limiter.check(ip);
            }
            // Within the same 1 s nobody's bucket has refilled: the victim is still limited.
            assert!(!limiter.check(victim).allowed, "round {round}: the victim's debt survived");
        }
        // Once every bucket has refilled, pruning drops them: memory does not grow forever.
        clock.advance(Duration::from_secs(10));
        for n in 0..PRUNE_EVERY as u32 {
            limiter.check(IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + n)));
        }
        assert!(limiter.clients() < 20_000, "{} buckets kept", limiter.clients());
        assert!(limiter.check(victim).allowed, "the victim's tokens came back");
    }

    #[test]
    fn off_means_every_request_passes() {
        let limiter = RateLimiter::new(0, 5);
        assert!(!limiter.enabled());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| limiter.check(ip).allowed));
    }
}
