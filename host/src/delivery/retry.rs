//! The retry policy: what to do with a message after one delivery attempt.
//!
//! A pure function of the attempt's typed result, the attempt number and the
//! subscription's schedule. It owns no I/O and no clock: the bus applies the
//! [`Action`] it returns (ack, nak with delay, or dead-letter then terminate).
//! [`in_place`] runs attempt after attempt of one message for the callers that
//! keep a retried message (ordered subscriptions, `sinkhost replay`); how an
//! attempt is made and how a delay is waited out is theirs ([`Attempts`]).

use std::time::Duration;

use crate::config::Subscription;

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
    /// The attempt failed in the host: the plugin trapped or ran past its
    /// deadline.
    Failed(String),
    /// The plugin was never called (no instance could be made): try again
    /// later without spending an attempt.
    NotCalled(String),
    /// The message is past its subscription's `dead_letter_after`.
    Expired(String),
}

impl Attempt {
    /// What the attempt came to, in words, for a log line.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Attempt::Delivered => "delivered",
            Attempt::Retry { reason, .. } => reason,
            Attempt::Reject(reason)
            | Attempt::Failed(reason)
            | Attempt::NotCalled(reason)
            | Attempt::Expired(reason) => reason,
        }
    }
}

/// What the bus does with the message next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge: the message is done.
    Ack,
    /// Negative-acknowledge: JetStream redelivers after this delay.
    Nak(Duration),
    /// Like `Nak`, but the attempt did not happen: the next one keeps its number.
    Again(Duration),
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
    /// The policy of `sub`: `retries + 1` attempts, `backoff` doubling.
    pub(crate) fn of(sub: &Subscription) -> Self {
        Policy {
            max_attempts: sub.max_attempts(),
            backoff: sub.backoff,
        }
    }

    /// The result of an attempt numbered past `max_attempts`, which is only
    /// reachable when the outcome of the last one never reached JetStream
    /// (host killed, dead-letter write failed): such a message is given up
    /// without calling the plugin again. `None` for an attempt within limits.
    pub(crate) fn lost(&self, attempt: u32) -> Option<Attempt> {
        (attempt > self.max_attempts).then(|| {
            Attempt::Failed(format!(
                "attempt {attempt} of {}: the last attempt's outcome was lost (host stopped or dead-letter write failed)",
                self.max_attempts
            ))
        })
    }

    /// Decides what follows attempt number `attempt` (1-based) that produced `result`.
    pub fn decide(&self, result: Attempt, attempt: u32) -> Action {
        match result {
            Attempt::Delivered => Action::Ack,
            Attempt::Reject(reason) => Action::DeadLetter(format!("rejected: {reason}")),
            Attempt::Expired(reason) => Action::DeadLetter(reason),
            Attempt::NotCalled(_) => Action::Again(self.delay_after(attempt)),
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

/// How [`in_place`] makes the attempts of one message and waits between them.
pub(crate) trait Attempts {
    /// Makes attempt number `attempt`; `None` when it was abandoned (the
    /// message has left the loop, e.g. returned to the stream at shutdown).
    async fn attempt(&mut self, attempt: u32) -> Option<Attempt>;

    /// Attempt number `attempt` failed with `failed` and the policy retries it
    /// after `delay`: waits it out and says `Some`, or says `None` when the
    /// message leaves the loop instead (handed back to JetStream with the delay,
    /// or abandoned while waiting).
    async fn retry_after(&mut self, delay: Duration, failed: &Attempt, attempt: u32) -> Option<()>;
}

/// How [`in_place`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Delivered on this attempt.
    Delivered(u32),
    /// To be dead-lettered with this reason after this many attempts.
    DeadLetter(String, u32),
    /// It left the loop (see [`Attempts`]); nothing more to do here.
    Left,
}

/// Runs attempts of one message from number `first` on, as `policy` decides,
/// until it is delivered, must be dead-lettered or leaves the loop.
pub(crate) async fn in_place(policy: Policy, first: u32, attempts: &mut impl Attempts) -> Settled {
    let mut attempt = first;
    loop {
        let Some(result) = attempts.attempt(attempt).await else {
            return Settled::Left;
        };
        match policy.decide(result.clone(), attempt) {
            Action::Ack => return Settled::Delivered(attempt),
            Action::DeadLetter(reason) => return Settled::DeadLetter(reason, attempt),
            Action::Nak(delay) | Action::Again(delay) => {
                if attempts
                    .retry_after(delay, &result, attempt)
                    .await
                    .is_none()
                {
                    return Settled::Left;
                }
                if !matches!(result, Attempt::NotCalled(_)) {
                    attempt += 1;
                }
            }
        }
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
    fn an_attempt_that_never_called_the_plugin_keeps_its_number() {
        let not_called = Attempt::NotCalled("cannot instantiate plugin".into());
        assert_eq!(
            POLICY.decide(not_called.clone(), 4),
            Action::Again(Duration::from_secs(16)),
            "not dead-lettered on the last attempt"
        );
        assert_eq!(
            POLICY.decide(Attempt::Expired("too old".into()), 1),
            Action::DeadLetter("too old".into())
        );
    }

    #[tokio::test]
    async fn in_place_does_not_count_calls_that_never_happened() {
        let not_called = || Some(Attempt::NotCalled("no instance".into()));
        let mut attempts = scripted(
            vec![
                not_called(),
                not_called(),
                Some(retry(None)),
                Some(Attempt::Delivered),
            ],
            false,
        );
        assert_eq!(
            in_place(POLICY, 1, &mut attempts).await,
            Settled::Delivered(2)
        );
        let numbers: Vec<u32> = attempts.waits.iter().map(|w| w.1).collect();
        assert_eq!(numbers, [1, 1, 1]);
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

    /// Answers each attempt from a script and records the waits.
    struct Scripted {
        results: Vec<Option<Attempt>>,
        waits: Vec<(Duration, u32)>,
        leave_on_wait: bool,
    }

    impl Attempts for Scripted {
        async fn attempt(&mut self, _attempt: u32) -> Option<Attempt> {
            self.results.remove(0)
        }

        async fn retry_after(&mut self, delay: Duration, _: &Attempt, attempt: u32) -> Option<()> {
            self.waits.push((delay, attempt));
            (!self.leave_on_wait).then_some(())
        }
    }

    fn scripted(results: Vec<Option<Attempt>>, leave_on_wait: bool) -> Scripted {
        Scripted {
            results,
            waits: Vec::new(),
            leave_on_wait,
        }
    }

    #[tokio::test]
    async fn in_place_retries_on_the_schedule_until_delivered() {
        let mut attempts = scripted(
            vec![
                Some(retry(None)),
                Some(retry(None)),
                Some(Attempt::Delivered),
            ],
            false,
        );
        assert_eq!(
            in_place(POLICY, 1, &mut attempts).await,
            Settled::Delivered(3)
        );
        assert_eq!(
            attempts.waits,
            [(Duration::from_secs(2), 1), (Duration::from_secs(4), 2)]
        );
    }

    #[tokio::test]
    async fn in_place_gives_up_after_the_last_attempt() {
        let mut attempts = scripted(vec![Some(retry(None)); 4], false);
        assert_eq!(
            in_place(POLICY, 1, &mut attempts).await,
            Settled::DeadLetter("gave up after 4 attempts; last: HTTP 503".into(), 4)
        );
        assert_eq!(attempts.waits.len(), 3);
    }

    #[tokio::test]
    async fn in_place_stops_where_the_message_leaves() {
        let mut handed_back = scripted(vec![Some(retry(None))], true);
        assert_eq!(in_place(POLICY, 2, &mut handed_back).await, Settled::Left);
        assert_eq!(handed_back.waits, [(Duration::from_secs(4), 2)]);
        let mut abandoned = scripted(vec![None], false);
        assert_eq!(in_place(POLICY, 1, &mut abandoned).await, Settled::Left);
    }

    #[test]
    fn an_attempt_past_the_last_was_lost() {
        assert_eq!(POLICY.lost(4), None);
        assert_eq!(
            POLICY.lost(5),
            Some(Attempt::Failed(
                "attempt 5 of 4: the last attempt's outcome was lost (host stopped or dead-letter write failed)".into()
            ))
        );
    }
}
