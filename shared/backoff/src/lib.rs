//! Exponential backoff with jitter: how long every careloop loop waits before trying
//! again (the outbox relay, consumers, projections, optimistic-concurrency retries of
//! commands, webhook deliveries).
//!
//! One policy, one place: the delay of the n-th retry is `base * factor^(n-1)`, capped
//! at `max`, with up to `jitter` (a share of the delay) added at random so that
//! writers that collided once do not collide again in step.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub factor: u32,
    /// Up to this share of the delay is added at random (0.0 for none).
    pub jitter: f64,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            factor: 2,
            jitter: 0.0,
        }
    }

    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let factor = (self.factor as u64)
            .saturating_pow(exp)
            .min(u32::MAX as u64) as u32;
        let d = self.base.saturating_mul(factor).min(self.max);
        if self.jitter <= 0.0 {
            return d;
        }
        d + d.mul_f64(self.jitter * random_unit())
    }

    /// A counter over this policy for one loop: `next()` after each failure,
    /// `reset()` after a success.
    pub fn start(&self) -> Retries {
        Retries {
            policy: *self,
            attempt: 0,
        }
    }
}

/// The retries of one loop under a [`Backoff`] policy.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    attempt: u32,
}

impl Retries {
    /// The wait before the next try (and counts the failure).
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.policy.delay(self.attempt)
    }

    /// Waits [`Self::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in `[0, 1)` that differs between calls and processes; good enough to
/// spread retries, not for anything secret.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1), "never overflows");
    }

    #[test]
    fn jitter_adds_at_most_its_share() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.5);
        for n in 1..=5 {
            let d = b.delay(n);
            let plain = Backoff { jitter: 0.0, ..b }.delay(n);
            assert!(d >= plain && d <= plain.mul_f64(1.5), "{d:?} vs {plain:?}");
        }
    }

    #[test]
    fn retries_count_and_reset() {
        let mut r = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).start();
        assert_eq!(r.next_delay(), Duration::from_millis(10));
        assert_eq!(r.next_delay(), Duration::from_millis(20));
        assert_eq!(r.attempts(), 2);
        r.reset();
        assert_eq!(r.next_delay(), Duration::from_millis(10));
    }
}
