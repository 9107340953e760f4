//! The attempt history: one record per delivery attempt in the
//! `<stream>_attempts` stream, on `sinkhost.attempts.<stream>.<subscription>.<sequence>`,
//! so `sinkhost trace` can say what became of a message.
//!
//! Written off the delivery path. A delivery hands its [`Entry`] to a bounded
//! queue ([`Journal::record`] never waits); one task per NATS client
//! publishes what is queued in batches and awaits JetStream's
//! acknowledgements of a batch together. A record that cannot be queued or is
//! not acknowledged is counted in `sinkhost_attempt_history_dropped_total` and
//! forgotten: the history never holds back or fails a delivery.
//!
//! A record holds what the host saw of the attempt (outcome, HTTP status,
//! error, the start of the response body), never a request header or a
//! secret: the error and the excerpt are redacted like log lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::setup::Placement;
use crate::config::History as Kept;
use crate::config::redact;
use crate::ops::metrics;

/// Records waiting to be published; past this, new ones are dropped.
const QUEUE: usize = 8192;
/// Records published before their acknowledgements are awaited.
const BATCH: usize = 256;
/// Longest `error` kept, in bytes.
const ERROR_BYTES: usize = 1024;

/// The attempts stream's name for a stream.
pub fn stream_name(stream: &str) -> String {
    format!("{stream}_attempts")
}

/// The subject of message `sequence`'s records for `subscription`; `*` for
/// either matches all.
pub fn subject(stream: &str, subscription: &str, sequence: &str) -> String {
    format!("sinkhost.attempts.{stream}.{subscription}.{sequence}")
}

/// What came of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Then {
    /// Acked: the message is done.
    Ack,
    /// Another attempt follows after `retry_in_ms`.
    Retry,
    /// Written to the dead-letter stream and terminated.
    DeadLetter,
    /// The destination is known down: the attempt was not counted and the
    /// message waits for the destination.
    Wait,
    /// Shutdown abandoned the call; the message went back to the stream.
    Returned,
}

/// One attempt, as the history keeps it (the record's JSON body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The subscription delivering.
    pub subscription: String,
    /// The stable message id the plugin saw.
    pub message_id: String,
    /// The message's sequence in the main stream.
    pub stream_sequence: u64,
    /// Its subject.
    pub subject: String,
    /// The attempt's number; 0 when no call was made (a malformed message,
    /// one past `dead_letter_after` before its call).
    pub attempt: u32,
    /// Attempts the subscription allows.
    pub max_attempts: u32,
    /// When the call started (RFC 3339, UTC, milliseconds).
    pub started: String,
    /// How long the call took.
    pub duration_ms: u64,
    /// The call's outcome as metrics count it (`delivered`, `retry`,
    /// `reject`, `trap`, `deadline`, `malformed`, ...).
    pub outcome: String,
    /// What the host did next.
    pub then: Then,
    /// With `then: retry`: the delay before the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// The status of the call's last HTTP response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why it was not delivered (capped at 1 KiB); the dead letter's reason
    /// with `then: dead-letter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the last response's body (capped at 256 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response: String,
}

/// Creates `<stream>_attempts` (records kept for `max_age`, zero: forever)
/// if it is missing, or brings an existing one's age and replicas to these.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    stream: &str,
    placement: Placement,
    max_age: Duration,
) -> Result<(), String> {
    let name = stream_name(stream);
    let wanted = stream::Config {
        name: name.clone(),
        subjects: vec![subject(stream, "*", "*")],
        storage: placement.storage,
        num_replicas: placement.replicas,
        max_age,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        description: Some(format!("sinkhost delivery attempts of {stream}")),
        ..Default::default()
    };
    super::setup::ensure_own_stream(js, wanted, true)
        .await
        .map_err(|e| format!("attempts stream {name}: {e}"))
}

/// One queued record.
struct Queued {
    subscription: Arc<str>,
    subject: String,
    body: Bytes,
}

/// The queue to one NATS client's history task, and what its journals keep.
pub(crate) struct Writer {
    queue: mpsc::Sender<Queued>,
    task: tokio::task::JoinHandle<()>,
    /// A [`Kept`], as [`kept_code`] encodes it: a reload changes it for
    /// every running subscription at once.
    kept: Arc<AtomicU8>,
}

impl Writer {
    /// Starts the task that publishes on `js`, keeping what `kept` says.
    pub(crate) fn start(js: jetstream::Context, kept: Kept) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(publish(js, rx));
        let kept = Arc::new(AtomicU8::new(kept_code(kept)));
        Writer { queue, task, kept }
    }

    /// From now on, every journal of this writer keeps what `kept` says.
    pub(crate) fn keep(&self, kept: Kept) {
        self.kept.store(kept_code(kept), Ordering::Relaxed);
    }

    /// Waits up to `grace` for what is queued to be written, once every
    /// [`Journal`] is dropped (the task ends when the queue does).
    pub(crate) async fn flush(self, grace: Duration) {
        drop(self.queue);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("attempt records still queued at exit were not written");
        }
    }
}

async fn publish(js: jetstream::Context, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut acks = Vec::with_capacity(batch.len());
        for Queued {
            subscription,
            subject,
            body,
        } in batch.drain(..)
        {
            match js.publish(subject, body).await {
                Ok(ack) => acks.push((subscription, ack)),
                Err(e) => dropped(&subscription, &e),
            }
        }
        for (subscription, ack) in acks {
            if let Err(e) = ack.await {
                dropped(&subscription, &e);
            }
        }
    }
}

fn dropped(subscription: &str, error: &dyn std::fmt::Display) {
    metrics::attempt_history_dropped(subscription);
    tracing::debug!(subscription, error = %error, "attempt record not written");
}

/// One subscription's way into the history.
pub(crate) struct Journal {
    queue: mpsc::Sender<Queued>,
    stream: String,
    subscription: Arc<str>,
    kept: Arc<AtomicU8>,
}

impl Journal {
    /// `subscription`'s history in `stream`'s attempts stream.
    pub(crate) fn new(writer: &Writer, stream: &str, subscription: &str) -> Self {
        Journal {
            queue: writer.queue.clone(),
            stream: stream.to_owned(),
            subscription: subscription.into(),
            kept: writer.kept.clone(),
        }
    }

    /// Whether an attempt ending in `then` is kept: with `history:
    /// failures`, a first attempt that delivered is not, unless this
    /// delivery already recorded something (a call the destination being
    /// down did not count), which the success then ends.
    pub(crate) fn keeps(&self, attempt: u32, then: Then, recorded: bool) -> bool {
        let kept = match self.kept.load(Ordering::Relaxed) {
            0 => Kept::Off,
            1 => Kept::Failures,
            _ => Kept::All,
        };
        keeps(kept, attempt, then, recorded)
    }

    /// Queues `entry` without waiting; a full queue drops it (counted).
    pub(crate) fn record(&self, mut entry: Entry) {
        if let Some(error) = &mut entry.error {
            redact::cap(error, ERROR_BYTES);
        }
        let subject = subject(
            &self.stream,
            &self.subscription,
            &entry.stream_sequence.to_string(),
        );
        let body = match serde_json::to_vec(&entry) {
            Ok(body) => Bytes::from(body),
            Err(e) => return dropped(&self.subscription, &e),
        };
        let queued = Queued {
            subscription: self.subscription.clone(),
            subject,
            body,
        };
        if self.queue.try_send(queued).is_err() {
            dropped(&self.subscription, &"the history queue is full");
        }
    }
}

fn kept_code(kept: Kept) -> u8 {
    match kept {
        Kept::Off => 0,
        Kept::Failures => 1,
        Kept::All => 2,
    }
}

fn keeps(kept: Kept, attempt: u32, then: Then, recorded: bool) -> bool {
    match kept {
        Kept::All => true,
        Kept::Failures => attempt > 1 || then != Then::Ack || recorded,
        Kept::Off => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_everything_but_a_plain_first_try_success() {
        assert!(!keeps(Kept::Failures, 1, Then::Ack, false));
        assert!(
            keeps(Kept::Failures, 1, Then::Ack, true),
            "ends a held delivery"
        );
        assert!(keeps(Kept::Failures, 2, Then::Ack, false));
        for then in [Then::Retry, Then::DeadLetter, Then::Wait, Then::Returned] {
            assert!(keeps(Kept::Failures, 1, then, false), "{then:?}");
        }
        assert!(keeps(Kept::All, 1, Then::Ack, false));
        assert!(!keeps(Kept::Off, 3, Then::DeadLetter, true));
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let entry = Entry {
            subscription: "mailer".into(),
            message_id: "order-123".into(),
            stream_sequence: 42,
            subject: "mail.welcome".into(),
            attempt: 2,
            max_attempts: 4,
            started: "2026-12-02T10:00:00.000Z".into(),
            duration_ms: 12,
            outcome: "retry".into(),
            then: Then::Retry,
            retry_in_ms: Some(4000),
            http_status: Some(503),
            error: Some("plugin asked to retry after HTTP 503".into()),
            response: "busy".into(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["then"], "retry");
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), entry);
        assert_eq!(
            subject("events", "mailer", "42"),
            "sinkhost.attempts.events.mailer.42"
        );
    }
}
