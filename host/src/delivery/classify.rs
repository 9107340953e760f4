//! What one plugin call means: its result, bounded by [`call_limit`], as the
//! typed [`Attempt`] the retry policy decides on, with the `outcome` label it
//! is counted under in metrics, and as what it [`Seen`] of the destination
//! for the breaker. `bus`, `tools::replay` and `tools::stream_replay` read
//! every call through [`classify`].

use std::time::Duration;

use crate::config::Subscription;
use crate::delivery::breaker::Seen;
use crate::delivery::retry::Attempt;
use crate::plugin::{Delivery, Outcome, PluginError};

/// A plugin call bounded by [`call_limit`], as its caller gets it back.
pub(crate) type Called = Result<Result<Delivery, PluginError>, tokio::time::error::Elapsed>;

/// The longest one `deliver` call may take: room for a few HTTP calls of
/// `timeout` each, and at least `ack_wait`. In-progress acks keep JetStream
/// from redelivering the message meanwhile.
pub(crate) fn call_limit(sub: &Subscription) -> Duration {
    sub.ack_wait.max(sub.timeout * 4)
}

/// What `called` means to the retry policy, and its metrics label.
pub(crate) fn classify(sub: &Subscription, called: Called) -> (Attempt, &'static str) {
    match called {
        Ok(Ok(Delivery {
            outcome: Outcome::Delivered,
            ..
        })) => (Attempt::Delivered, "delivered"),
        Ok(Ok(Delivery {
            outcome: Outcome::Retry(delay),
            last_http,
        })) => {
            let reason = match last_http {
                Some(http) => format!("plugin asked to retry after {http}"),
                None => "plugin asked to retry".to_owned(),
            };
            (Attempt::Retry { delay, reason }, "retry")
        }
        Ok(Ok(Delivery {
            outcome: Outcome::Reject(reason),
            ..
        })) => (Attempt::Reject(reason), "reject"),
        Ok(Err(error @ (PluginError::Instantiate(_) | PluginError::Init(_)))) => {
            (Attempt::NotCalled(error.to_string()), error.kind())
        }
        Ok(Err(error)) => (Attempt::Failed(error.to_string()), error.kind()),
        Err(_) => {
            let slow = format!("delivery still running after {:?}", call_limit(sub));
            (Attempt::Failed(slow), "call_limit")
        }
    }
}

/// What `called` showed of the destination: down when the plugin asked to
/// retry after a destination failure; up when the destination answered or
/// the plugin delivered; unknown otherwise (a trap, no HTTP call).
pub(crate) fn seen(called: &Called) -> Seen {
    let Ok(Ok(delivery)) = called else {
        return Seen::Unknown;
    };
    match (&delivery.outcome, &delivery.last_http) {
        (Outcome::Retry(delay), Some(http)) if http.destination_failed => Seen::Down {
            reason: http.text.clone(),
            retry_after: *delay,
        },
        (Outcome::Delivered, _) | (_, Some(_)) => Seen::Up,
        (_, None) => Seen::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::LastHttp;

    fn sub() -> Subscription {
        crate::config::testing::subscription(serde_json::json!({}), &[])
    }

    fn delivered(outcome: Outcome, last_http: Option<&str>) -> Called {
        Ok(Ok(Delivery {
            outcome,
            last_http: last_http.map(|text| LastHttp {
                text: text.to_owned(),
                destination_failed: text.starts_with("HTTP 5") || text.starts_with("HTTP 429"),
                status: None,
                excerpt: Vec::new(),
            }),
        }))
    }

    #[test]
    fn only_a_retry_after_a_destination_failure_says_it_is_down() {
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            seen(&delivered(Outcome::Retry(wait), Some("HTTP 429"))),
            Seen::Down {
                reason: "HTTP 429".into(),
                retry_after: wait
            }
        );
        assert_eq!(
            seen(&delivered(Outcome::Retry(None), Some("HTTP 400"))),
            Seen::Up
        );
        assert_eq!(
            seen(&delivered(Outcome::Reject("no".into()), Some("HTTP 422"))),
            Seen::Up
        );
        assert_eq!(seen(&delivered(Outcome::Delivered, None)), Seen::Up);
        assert_eq!(seen(&delivered(Outcome::Retry(None), None)), Seen::Unknown);
        assert_eq!(
            seen(&Ok(Err(PluginError::Trap("unreachable".into())))),
            Seen::Unknown
        );
    }

    #[test]
    fn a_plugin_that_could_not_be_instantiated_was_not_called() {
        let sub = sub();
        let called = Ok(Err(PluginError::Instantiate(
            "Cannot allocate memory".into(),
        )));
        assert_eq!(
            classify(&sub, called),
            (
                Attempt::NotCalled("cannot instantiate plugin: Cannot allocate memory".into()),
                "instantiate"
            )
        );
    }

    #[test]
    fn outcomes_become_attempts_with_their_labels() {
        let sub = sub();
        assert_eq!(
            classify(&sub, delivered(Outcome::Delivered, Some("HTTP 200"))),
            (Attempt::Delivered, "delivered")
        );
        assert_eq!(
            classify(
                &sub,
                delivered(
                    Outcome::Retry(Some(Duration::from_secs(3))),
                    Some("HTTP 429")
                )
            ),
            (
                Attempt::Retry {
                    delay: Some(Duration::from_secs(3)),
                    reason: "plugin asked to retry after HTTP 429".into()
                },
                "retry"
            )
        );
        assert_eq!(
            classify(&sub, delivered(Outcome::Retry(None), None)).0,
            Attempt::Retry {
                delay: None,
                reason: "plugin asked to retry".into()
            }
        );
        assert_eq!(
            classify(
                &sub,
                delivered(Outcome::Reject("bad".into()), Some("HTTP 422"))
            ),
            (Attempt::Reject("bad".into()), "reject")
        );
    }

    #[test]
    fn failures_in_the_host_are_failed_attempts() {
        let sub = sub();
        let trap = classify(&sub, Ok(Err(PluginError::Trap("unreachable".into()))));
        assert_eq!(
            trap,
            (
                Attempt::Failed("plugin trapped: unreachable".into()),
                "trap"
            )
        );
        let deadline = classify(&sub, Ok(Err(PluginError::Deadline(Duration::from_secs(1)))));
        assert_eq!(deadline.1, "deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_limit_is_a_failed_attempt() {
        let sub = sub();
        assert_eq!(
            call_limit(&sub),
            Duration::from_secs(120),
            "ack_wait beats 4 x 15 s"
        );
        let elapsed = tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(
            classify(&sub, Err(elapsed)),
            (
                Attempt::Failed("delivery still running after 120s".into()),
                "call_limit"
            )
        );
    }
}
