//! Consumer lag: while a subscription consumes, polls its JetStream consumer
//! every [`POLL`] and publishes what the server reports as gauges
//! (`sinkhost_consumer_pending`, `_ack_pending`, `_redelivered`).
//!
//! It only reads consumer info; it decides nothing. A failed poll (NATS down)
//! keeps the last values, which `sinkhost_nats_connected` puts in context.
//! When the subscription stops, its series are removed, so a subscription
//! that no longer runs does not report a stale backlog.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::ops::metrics;

/// How often the consumer info is read: often enough for an alert, rare
/// enough to cost the server nothing (one small request per subscription).
pub(crate) const POLL: Duration = Duration::from_secs(5);

/// Starts watching `consumer` for `subscription` until `stop` fires or the
/// returned guard drops, whichever comes first.
pub(crate) fn watch(
    subscription: &str,
    consumer: PullConsumer,
    stop: CancellationToken,
) -> DropGuard {
    let name = subscription.to_owned();
    let until = stop.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let info = tokio::select! {
                () = until.cancelled() => break,
                _ = ticks.tick() => tokio::select! {
                    () = until.cancelled() => break,
                    info = consumer.get_info() => info,
                },
            };
            match info {
                Ok(info) => metrics::consumer_state(
                    &name,
                    info.num_pending,
                    info.num_ack_pending,
                    info.num_redelivered,
                ),
                Err(e) => {
                    tracing::debug!(subscription = %name, error = %e, "reading consumer info failed")
                }
            }
        }
        metrics::forget_consumer_state(&name);
    });
    stop.drop_guard()
}
