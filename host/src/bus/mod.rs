//! The bus: everything that talks to JetStream for a running subscription.
//!
//! `setup` creates or reconciles the stream and each durable pull consumer;
//! `fetch` keeps at most `max_concurrency` deliveries in flight; `deliver` is
//! the path of one message (plugin call, then what `delivery` says: ack, nak
//! with delay, or dead-letter and terminate), sending in-progress acks while a
//! call runs, so JetStream never redelivers a message that is still being
//! delivered. `ordering: per-subject` (queues in `ordering`) and `rate_limit:`
//! (the bucket in `ratelimit`) only make a delivery wait before an attempt;
//! `lease` keeps the message acked-in-progress meanwhile. [`destination`]
//! holds deliveries while the destination is down and probes it;
//! [`attempts`] remembers what each message spent, so a message handed back
//! unstarted never spends an attempt. [`deadletter`] owns the `<stream>_dlq`
//! stream and [`history`] the `<stream>_attempts` stream `sinkhost trace`
//! reads; `lag` polls the consumer's backlog for metrics.

pub(crate) mod attempts;
pub(crate) mod deadletter;
pub(crate) mod destination;
pub(crate) mod history;
mod lag;
mod lease;
mod ordering;
pub(crate) mod ratelimit;

mod deliver;
mod fetch;
mod setup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream;

use crate::config::Subscription;
use crate::delivery::retry::Policy;
use crate::ops::metrics;
use crate::plugin::Sink;

pub(crate) use fetch::consume;
pub(crate) use setup::{BusError, Placement, ensure_consumer, ensure_stream, find_stream, max_age};

/// One subscription, ready to consume.
pub(crate) struct Subscriber {
    /// The validated config.
    pub(crate) sub: Subscription,
    /// The stream it reads.
    pub(crate) stream: String,
    /// Its plugin.
    pub(crate) sink: Arc<Sink>,
    /// JetStream, for dead letters.
    pub(crate) js: jetstream::Context,
    /// True while the fetch loop is receiving.
    pub(crate) consuming: Arc<AtomicBool>,
    /// Its per-delivery metrics.
    pub(crate) metrics: metrics::PerSubscription,
    /// Its destination's state (the breaker).
    pub(crate) destination: Arc<destination::Destination>,
    /// The attempt records (`None`: the delivery count is the attempt number).
    pub(crate) attempts: Option<jetstream::kv::Store>,
    /// The attempt history.
    pub(crate) history: history::Journal,
}

impl Subscriber {
    fn policy(&self) -> Policy {
        Policy::of(&self.sub)
    }

    /// Called per message: the gauge is written only when the flag changes.
    fn set_consuming(&self, yes: bool) {
        if self.consuming.swap(yes, Ordering::Relaxed) != yes {
            self.metrics.consuming(yes);
        }
    }
}
