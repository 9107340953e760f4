//! The `rate_limit: "200/s"` value: attempts per second, minute or hour. The
//! token bucket that spaces attempts to it is `bus`'s.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
    pub(crate) fn per_second(self) -> f64 {
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
}
