//! One running subscription: its fetch loop (`bus::consume`) with its own
//! stop-fetching and abort tokens and its own tracker of in-flight deliveries,
//! so one subscription can be drained and replaced while the others keep
//! delivering, and the rule for how long a stop waits for them ([`grace`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{self, Subscriber};
use crate::config::Subscription;
use crate::run::reload::Digest;

/// One running subscription.
pub(super) struct Entry {
    pub(super) subscriber: Arc<Subscriber>,
    pub(super) digest: Digest,
    stop_fetching: CancellationToken,
    abort: CancellationToken,
    in_flight: TaskTracker,
    fetch_loop: JoinHandle<()>,
}

impl Entry {
    /// Starts consuming; without a `consumer`, first creates or updates it,
    /// retrying until it works or the entry is stopped.
    pub(super) fn spawn(
        subscriber: Arc<Subscriber>,
        digest: Digest,
        consumer: Option<PullConsumer>,
        stop: &CancellationToken,
    ) -> Self {
        subscriber.metrics.consuming(false);
        let stop_fetching = stop.child_token();
        let abort = CancellationToken::new();
        let in_flight = TaskTracker::new();
        let fetch_loop = tokio::spawn({
            let subscriber = subscriber.clone();
            let stop_fetching = stop_fetching.clone();
            let abort = abort.clone();
            let in_flight = in_flight.clone();
            async move {
                let consumer = match consumer {
                    Some(consumer) => consumer,
                    None => match reconcile(&subscriber, &stop_fetching).await {
                        Some(consumer) => consumer,
                        None => return,
                    },
                };
                bus::consume(subscriber, consumer, stop_fetching, abort, in_flight).await;
            }
        });
        Entry {
            subscriber,
            digest,
            stop_fetching,
            abort,
            in_flight,
            fetch_loop,
        }
    }

    /// Stops fetching (returning fetched but unstarted messages), waits up to
    /// `grace` for in-flight deliveries, then naks those still running.
    /// `replaced`: the process goes on (a reload), so make sure NATS stops
    /// sending to this loop; at shutdown closing the connection does that.
    pub(super) async fn stop(self, grace: Duration, replaced: bool) {
        self.stop_fetching.cancel();
        let _ = self.fetch_loop.await;
        // The loop's pull request outlives it on the server until the server
        // has processed the unsubscribe of its inbox; a message sent there
        // meanwhile would wait out `ack_wait`. The server answers a request
        // only after what the connection sent before it (a flush only writes),
        // so after this round trip the next messages go to the replacement.
        let round_trip = self.subscriber.js.query_account();
        if replaced
            && !matches!(
                tokio::time::timeout(Duration::from_secs(5), round_trip).await,
                Ok(Ok(_))
            )
        {
            tracing::warn!(subscription = %self.subscriber.sub.name, "NATS did not confirm that the stopped fetch loop's pull request is gone");
        }
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                subscription = %self.subscriber.sub.name, grace = ?grace,
                "in-flight deliveries still running; returning them to the stream"
            );
            self.abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.in_flight.wait()).await;
        }
    }
}

/// Creates or updates the subscription's consumer; on failure logs and tries
/// again every 5 s (`/healthz` says "starting" meanwhile). None once stopped.
async fn reconcile(subscriber: &Subscriber, stop: &CancellationToken) -> Option<PullConsumer> {
    let sub = &subscriber.sub;
    loop {
        let result = tokio::select! {
            () = stop.cancelled() => return None,
            result = bus::ensure_consumer(&subscriber.js, &subscriber.stream, sub) => result,
        };
        match result {
            Ok(consumer) => return Some(consumer),
            Err(e) => tracing::error!(
                subscription = %sub.name,
                error = format!("{}: subscription {}: {e}", sub.origin, sub.name),
                "cannot set up the consumer; retrying in 5s"
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Waits as long as the slowest HTTP call of `subs`, but never past their
/// shortest `ack_wait`, after which JetStream would redeliver anyway.
pub(super) fn grace<'a>(subs: impl Iterator<Item = &'a Subscription> + Clone) -> Duration {
    let longest_call = subs.clone().map(|s| s.timeout).max().unwrap_or_default();
    let shortest_ack_wait = subs.map(|s| s.ack_wait).min().unwrap_or_default();
    (longest_call + Duration::from_secs(2)).min(shortest_ack_wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::subscription;

    #[test]
    fn a_stop_waits_for_the_slowest_call_but_never_past_ack_wait() {
        let base = subscription(serde_json::json!({}), &[]);
        let slow = Subscription {
            timeout: Duration::from_secs(30),
            ack_wait: Duration::from_secs(120),
            ..base.clone()
        };
        let tight = Subscription {
            timeout: Duration::from_secs(1),
            ack_wait: Duration::from_secs(10),
            ..base
        };
        assert_eq!(grace([&slow].into_iter()), Duration::from_secs(32));
        assert_eq!(grace([&slow, &tight].into_iter()), Duration::from_secs(10));
        assert_eq!(grace(std::iter::empty()), Duration::ZERO);
    }
}
