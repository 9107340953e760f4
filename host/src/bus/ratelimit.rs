//! Per-subscription rate limits: the token bucket that spaces delivery
//! attempts to the subscription's `rate_limit:` ([`RateLimit`], a config value).
//!
//! The bucket holds up to one second's worth of tokens (at least one) and refills
//! continuously; every delivery attempt, first or retry, takes one token. When
//! the bucket is empty a caller reserves the next token anyway (the count goes
//! negative) and sleeps until it is due, so waiting callers start in the order
//! they asked, spaced `1/rate` apart. The bucket only decides *when*; keeping the
//! waiting message leased with JetStream is the caller's business (see `lease`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimit;
use crate::ops::metrics;

/// The token bucket of one subscription.
pub(crate) struct TokenBucket {
    subscription: String,
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

struct State {
    /// Negative when callers are already waiting for future tokens.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket for `limit`, counting waits under `subscription`.
    pub(crate) fn new(subscription: &str, limit: RateLimit) -> Self {
        let rate = limit.per_second();
        let burst = rate.max(1.0);
        TokenBucket {
            subscription: subscription.to_owned(),
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes a token at `now` and says how long to wait until it is due.
    fn reserve(&self, now: Instant) -> Duration {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        state.at = now;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.rate)
        }
    }

    /// Waits for a token (if any had to be waited for, counts the wait in
    /// `sinkhost_rate_limit_waits` and `sinkhost_rate_limit_wait_seconds`).
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            metrics::rate_limit_wait(&self.subscription, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(value: &str) -> RateLimit {
        value.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_bursts_one_second_then_spaces_attempts() {
        let bucket = TokenBucket::new("t", limit("10/s"));
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(bucket.reserve(now), Duration::ZERO);
        }
        // Empty: each further caller waits one more tenth of a second.
        let waits: Vec<Duration> = (0..3).map(|_| bucket.reserve(now)).collect();
        assert_eq!(
            waits,
            [100, 200, 300].map(Duration::from_millis),
            "queued reservations"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refills_at_the_rate_and_never_beyond_the_burst() {
        let bucket = TokenBucket::new("t", limit("10/s"));
        let start = Instant::now();
        for _ in 0..10 {
            bucket.reserve(start);
        }
        // Half a second refills five tokens.
        let later = start + Duration::from_millis(500);
        for _ in 0..5 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), Duration::from_millis(100));
        // A long idle spell refills one second's worth, not more.
        let idle = later + Duration::from_secs(60);
        let free = (0..20)
            .take_while(|_| bucket.reserve(idle).is_zero())
            .count();
        assert_eq!(free, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_rates_still_allow_one_attempt_at_a_time() {
        let bucket = TokenBucket::new("t", limit("60/m"));
        let now = Instant::now();
        assert_eq!(bucket.reserve(now), Duration::ZERO);
        assert_eq!(bucket.reserve(now), Duration::from_secs(1));
        let hourly = TokenBucket::new("t", limit("2/h"));
        assert_eq!(hourly.reserve(now), Duration::ZERO);
        assert_eq!(hourly.reserve(now), Duration::from_secs(1800));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_until_the_token_is_due() {
        let bucket = TokenBucket::new("t", limit("4/s"));
        let start = Instant::now();
        for _ in 0..4 {
            bucket.acquire().await;
        }
        assert_eq!(Instant::now(), start, "the burst does not wait");
        bucket.acquire().await;
        bucket.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
    }
}
