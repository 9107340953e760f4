//! Keeps a fetched message leased while the host holds it: in-progress acks
//! every `ack_wait / 2`, so JetStream never redelivers a message the host is
//! still working on or waiting to start, and the shutdown signals that end
//! the hold.
//!
//! One [`Lease`] lives as long as the delivery task of one message, across every
//! phase (waiting behind its subject, waiting for a rate-limit token, the plugin
//! call, the pause before an in-place retry), so the ack clock keeps running from
//! phase to phase. It does not settle the message: what to do when a hold ends
//! early is the bus's decision.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::AckKind;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The shutdown signals a delivery obeys.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    /// Fires first: start nothing new.
    pub(crate) stop: CancellationToken,
    /// Fires after the grace period: abandon what is running.
    pub(crate) abort: CancellationToken,
}

/// A message held by the host; see the module docs.
pub(crate) struct Lease<'a> {
    message: &'a jetstream::Message,
    subscription: &'a str,
    shutdown: &'a Shutdown,
    progress: Interval,
}

impl<'a> Lease<'a> {
    /// Starts the ack clock for `message`, fetched just now.
    pub(crate) fn new(
        message: &'a jetstream::Message,
        subscription: &'a str,
        ack_wait: Duration,
        shutdown: &'a Shutdown,
    ) -> Self {
        let half = ack_wait / 2;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Lease {
            message,
            subscription,
            shutdown,
            progress,
        }
    }

    /// Runs work already under way (a plugin call) to its end; `None` if
    /// `abort` fired first.
    pub(crate) async fn run<F: Future>(&mut self, work: F) -> Option<F::Output> {
        let abort = self.shutdown.abort.clone();
        self.hold(work, &abort).await
    }

    /// Waits for `until` before starting (again); `None` if shutdown has begun,
    /// so nothing new starts once `stop` fired.
    pub(crate) async fn wait<F: Future>(&mut self, until: F) -> Option<F::Output> {
        let stop = self.shutdown.stop.clone();
        if stop.is_cancelled() {
            return None;
        }
        self.hold(until, &stop).await
    }

    async fn hold<F: Future>(&mut self, work: F, end: &CancellationToken) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Some(output),
                () = end.cancelled() => return None,
                _ = self.progress.tick() => {
                    if let Err(e) = self.message.ack_with(AckKind::Progress).await {
                        tracing::warn!(subscription = %self.subscription, error = %e, "in-progress ack failed");
                    }
                }
            }
        }
    }
}
