//! Per-subscription rate limits: the `rate_limit: "200/s"` value and the token
//! bucket that spaces delivery attempts to it.
//!
//! The bucket holds up to one second's worth of tokens (at least one) and refills
//! continuously; every delivery attempt, first or retry, takes one token. When
//! the bucket is empty a caller reserves the next token anyway (the count goes
//! negative) and sleeps until it is due, so waiting callers start in the order
//! they asked, spaced `1/rate` apart. The bucket only decides *when*; keeping the
//! waiting message leased with JetStream is the caller's business (see `lease`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ops::metrics;

/// A validated `rate_limit:`: `count` attempts per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many attempts; at least 1.
    pub count: u32,
    /// In how long: one second, minute or hour.
    pub per: Duration,
}

impl RateLimit {
    /// Tokens per second.
    fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

/// Why a `rate_limit:` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit {value:?}: {reason} (expected e.g. \"200/s\", \"600/m\", \"1000/h\")")]
pub struct RateLimitError {
    value: String,
    reason: &'static str,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    /// `"200/s"`, `"600/m"`, `"1000/h"`; spaces around the parts are allowed.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| RateLimitError {
            value: value.to_owned(),
            reason,
        };
        let (count, unit) = value
            .split_once('/')
            .ok_or_else(|| error("no '/' between count and unit"))?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(error("the unit must be s, m or h")),
        };
        let count = count.trim();
        if count.is_empty() || !count.chars().all(|c| c.is_ascii_digit()) {
            return Err(error("the count must be a whole number"));
        }
        let count: u32 = count.parse().map_err(|_| error("the count is too large"))?;
        if count == 0 {
            return Err(error("the count must be at least 1"));
        }
        Ok(RateLimit { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

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

    #[test]
    fn parses_per_second_minute_and_hour() {
        assert_eq!(
            limit("200/s"),
            RateLimit {
                count: 200,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(limit(" 600 / m ").per, Duration::from_secs(60));
        assert_eq!(limit("1000/h").per, Duration::from_secs(3600));
        assert_eq!(limit("600/m").to_string(), "600/m");
        assert_eq!(limit("600/m").per_second(), 10.0);
    }

    #[test]
    fn rejects_what_it_cannot_mean() {
        for (bad, reason) in [
            ("200", "no '/' between count and unit"),
            ("200/d", "the unit must be s, m or h"),
            ("200/sec", "the unit must be s, m or h"),
            ("1.5/s", "the count must be a whole number"),
            ("-1/s", "the count must be a whole number"),
            ("/s", "the count must be a whole number"),
            ("0/s", "the count must be at least 1"),
            ("99999999999/s", "the count is too large"),
        ] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert_eq!(err.reason, reason, "{bad}");
        }
        assert_eq!(
            "2/x".parse::<RateLimit>().unwrap_err().to_string(),
            "invalid rate limit \"2/x\": the unit must be s, m or h (expected e.g. \"200/s\", \"600/m\", \"1000/h\")"
        );
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
