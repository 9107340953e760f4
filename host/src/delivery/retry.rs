//! The retry policy: what to do with a message after one delivery attempt.
//!
//! A pure function of the attempt's typed result, the attempt number and the
//! subscription's schedule. It owns no I/O and no clock: the bus applies the
//! [`Action`] it returns (ack, nak with delay, or dead-letter then terminate).

use std::time::Duration;

/// The longest delay the host ever asks JetStream for, whether from the backoff
/// schedule or from a plugin (e.g. a `Retry-After: 86400`).
pub const MAX_DELAY: Duration = Duration::from_secs(60 * 60);

/// What one delivery attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The plugin reported the message delivered.
    Delivered,
    /// The plugin asked to retry, optionally after a delay of its choosing.
    Retry {
        /// The plugin's delay; `None` follows the schedule.
        delay: Option<Duration>,
        /// What the host saw of the attempt, for the dead letter if it was the last.
        reason: String,
    },
    /// The plugin declared the message undeliverable.
    Reject(String),
    /// The attempt failed in the host: the plugin trapped, ran past its
    /// deadline or could not be instantiated.
    Failed(String),
}

/// What the bus does with the message next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge: the message is done.
    Ack,
    /// Negative-acknowledge: JetStream redelivers after this delay.
    Nak(Duration),
    /// Write the message to the dead-letter stream with this reason, then terminate it.
    DeadLetter(String),
}

/// Retry policy of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all: `retries + 1`.
    pub max_attempts: u32,
    /// The first delay `D` of the schedule `D, 2D, 4D, ...`.
    pub backoff: Duration,
}

impl Policy {
    /// Decides what follows attempt number `attempt` (1-based) that produced `result`.
    pub fn decide(&self, result: Attempt, attempt: u32) -> Action {
        match result {
            Attempt::Delivered => Action::Ack,
            Attempt::Reject(reason) => Action::DeadLetter(format!("rejected: {reason}")),
            Attempt::Retry { reason: last, .. } | Attempt::Failed(last)
                if attempt >= self.max_attempts =>
            {
                Action::DeadLetter(format!("gave up after {attempt} attempts; last: {last}"))
            }
            Attempt::Retry {
                delay: Some(delay), ..
            } => Action::Nak(delay.min(MAX_DELAY)),
            Attempt::Retry { delay: None, .. } | Attempt::Failed(_) => {
                Action::Nak(self.delay_after(attempt))
            }
        }
    }

    /// The schedule's delay after attempt `attempt`: `D * 2^(attempt - 1)`,
    /// capped at [`MAX_DELAY`].
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.backoff
            .checked_mul(1u32 << doublings)
            .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_attempts: 4,
        backoff: Duration::from_secs(2),
    };

    fn retry(delay: Option<Duration>) -> Attempt {
        Attempt::Retry {
            delay,
            reason: "HTTP 503".into(),
        }
    }

    #[test]
    fn delivered_acks_on_any_attempt() {
        assert_eq!(POLICY.decide(Attempt::Delivered, 1), Action::Ack);
        assert_eq!(POLICY.decide(Attempt::Delivered, 4), Action::Ack);
    }

    #[test]
    fn failures_follow_the_doubling_schedule() {
        let failed = || Attempt::Failed("trap".into());
        assert_eq!(
            POLICY.decide(failed(), 1),
            Action::Nak(Duration::from_secs(2))
        );
        assert_eq!(
            POLICY.decide(failed(), 2),
            Action::Nak(Duration::from_secs(4))
        );
        assert_eq!(
            POLICY.decide(retry(None), 3),
            Action::Nak(Duration::from_secs(8))
        );
    }

    #[test]
    fn plugin_delay_wins_but_is_capped() {
        let asked = retry(Some(Duration::from_millis(1500)));
        assert_eq!(
            POLICY.decide(asked, 1),
            Action::Nak(Duration::from_millis(1500))
        );
        let huge = retry(Some(Duration::from_secs(86_400)));
        assert_eq!(POLICY.decide(huge, 1), Action::Nak(MAX_DELAY));
    }

    #[test]
    fn last_attempt_dead_letters_with_the_last_error() {
        let action = POLICY.decide(Attempt::Failed("http timeout".into()), 4);
        assert_eq!(
            action,
            Action::DeadLetter("gave up after 4 attempts; last: http timeout".into())
        );
        assert_eq!(
            POLICY.decide(retry(Some(Duration::from_secs(1))), 5),
            Action::DeadLetter("gave up after 5 attempts; last: HTTP 503".into())
        );
    }

    #[test]
    fn reject_dead_letters_at_once() {
        assert_eq!(
            POLICY.decide(Attempt::Reject("422 unprocessable".into()), 1),
            Action::DeadLetter("rejected: 422 unprocessable".into())
        );
    }

    #[test]
    fn schedule_saturates_instead_of_overflowing() {
        assert_eq!(POLICY.delay_after(40), MAX_DELAY);
        let zero = Policy {
            max_attempts: 1,
            backoff: Duration::ZERO,
        };
        assert_eq!(zero.delay_after(3), Duration::ZERO);
    }
}
