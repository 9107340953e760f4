//! Dead letters: the `<stream>_dlq` stream, writing a message that will not be
//! delivered, and reading what is there.
//!
//! A dead letter keeps the original payload and headers, plus `Sinkhost-*`
//! headers saying where it came from and why it gave up. This module does not
//! decide when a message is dead (that is `retry`) and does not terminate the
//! original (that is `bus`, once the write is acknowledged).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use async_nats::message::Malformed;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;

use super::setup::Placement;
use crate::config::redact;
use crate::delivery::message::flatten_headers;

/// The subscription the message was dead-lettered from.
pub const SUBSCRIPTION: &str = "Sinkhost-Subscription";
/// The subject it was published to.
pub const ORIGINAL_SUBJECT: &str = "Sinkhost-Original-Subject";
/// Its sequence in the original stream.
pub const STREAM_SEQUENCE: &str = "Sinkhost-Stream-Sequence";
/// The stable message id the plugin saw.
pub const MESSAGE_ID: &str = "Sinkhost-Message-Id";
/// How many attempts were made.
pub const ATTEMPTS: &str = "Sinkhost-Attempts";
/// Why it was given up.
pub const LAST_ERROR: &str = "Sinkhost-Last-Error";
/// A malformed message's subject as it arrived, base64 (standard, padded).
pub const RAW_SUBJECT: &str = "Sinkhost-Raw-Subject";
/// A malformed message's header block as it arrived (`NATS/1.0` line
/// included), base64; it replaces the original headers, which could not be read.
pub const RAW_HEADERS: &str = "Sinkhost-Raw-Headers";

/// Longest `Sinkhost-Last-Error` value kept.
const ERROR_BYTES: usize = 1024;

/// The dead-letter stream's name for a stream.
pub fn stream_name(stream: &str) -> String {
    format!("{stream}_dlq")
}

/// The subject a subscription's dead letters are written to.
pub fn subject(subscription: &str) -> String {
    format!("dlq.{subscription}")
}

/// Why a dead letter could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The dead-letter stream could not be created or looked up.
    #[error("dead-letter stream {stream}: {message}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What NATS said.
        message: String,
    },
    /// JetStream did not acknowledge the write.
    #[error("writing the dead letter failed: {0}")]
    Publish(String),
}

/// Creates `<stream>_dlq` (subjects `dlq.>`, no age limit) if it is missing,
/// or moves an existing one to `placement`'s replicas.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    stream: &str,
    placement: Placement,
) -> Result<(), DeadLetterError> {
    let name = stream_name(stream);
    let wanted = stream::Config {
        name: name.clone(),
        subjects: vec!["dlq.>".to_owned()],
        storage: placement.storage,
        num_replicas: placement.replicas,
        retention: stream::RetentionPolicy::Limits,
        description: Some(format!("sinkhost dead letters of {stream}")),
        ..Default::default()
    };
    super::setup::ensure_own_stream(js, wanted, false)
        .await
        .map_err(|message| DeadLetterError::Stream {
            stream: name,
            message,
        })
}

/// Where a message came from, for its dead-letter headers.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The main stream.
    pub stream: &'a str,
    /// The subscription giving up.
    pub subscription: &'a str,
    /// The original subject.
    pub subject: &'a str,
    /// The original stream sequence.
    pub sequence: u64,
    /// The stable message id.
    pub message_id: &'a str,
    /// Attempts made.
    pub attempts: u32,
    /// What could not be read of a malformed message, with its raw bytes.
    pub malformed: Option<&'a Malformed>,
}

/// Writes one dead letter and waits for JetStream's acknowledgement. Writing
/// the same message twice (a crash between write and terminate) is deduplicated
/// by `Nats-Msg-Id` within the stream's duplicate window.
pub async fn publish(
    js: &jetstream::Context,
    origin: &Origin<'_>,
    headers: Option<&HeaderMap>,
    payload: bytes::Bytes,
    reason: &str,
) -> Result<(), DeadLetterError> {
    let mut out = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        if name.to_string().starts_with("Nats-") {
            continue; // Nats-Msg-Id & co. mean something else in the DLQ stream
        }
        for value in values {
            out.append(name.clone(), value.as_str());
        }
    }
    out.insert(SUBSCRIPTION, origin.subscription);
    out.insert(ORIGINAL_SUBJECT, origin.subject);
    out.insert(STREAM_SEQUENCE, origin.sequence.to_string().as_str());
    out.insert(MESSAGE_ID, header_safe(origin.message_id).as_str());
    out.insert(ATTEMPTS, origin.attempts.to_string().as_str());
    out.insert(LAST_ERROR, header_safe(reason).as_str());
    if let Some(malformed) = origin.malformed {
        out.insert(RAW_SUBJECT, BASE64.encode(&malformed.subject).as_str());
        out.insert(RAW_HEADERS, BASE64.encode(&malformed.headers).as_str());
    }
    let dedupe = format!(
        "{}:{}:{}",
        origin.stream, origin.subscription, origin.sequence
    );
    out.insert("Nats-Msg-Id", dedupe.as_str());
    js.publish_with_headers(subject(origin.subscription), out, payload)
        .await
        .map_err(|e| DeadLetterError::Publish(e.to_string()))?
        .await
        .map_err(|e| DeadLetterError::Publish(e.to_string()))?;
    Ok(())
}

/// Header values cannot hold line breaks; long errors are cut.
fn header_safe(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    redact::cap(&mut clean, ERROR_BYTES);
    clean
}

/// One message in the dead-letter stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub dlq_sequence: u64,
    /// When it was dead-lettered (RFC 3339).
    pub time: String,
    /// The subscription that gave up.
    pub subscription: String,
    /// The original subject.
    pub subject: String,
    /// The original stream sequence.
    pub stream_sequence: Option<u64>,
    /// The stable message id.
    pub message_id: String,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// Why it was given up.
    pub last_error: String,
    /// The payload's size in bytes.
    pub payload_bytes: usize,
    /// A malformed message's subject as it arrived, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_subject: Option<String>,
    /// A malformed message's header block as it arrived, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_headers: Option<String>,
}

impl DeadLetter {
    /// True for a message whose subject or headers could not be read: its
    /// raw bytes are in `raw_subject` and `raw_headers`.
    pub fn is_malformed(&self) -> bool {
        self.raw_headers.is_some()
    }
}

/// One dead letter with what is needed to deliver it again.
#[derive(Debug, Clone)]
pub struct Stored {
    /// What `dlq list` shows.
    pub letter: DeadLetter,
    /// The original payload.
    pub payload: bytes::Bytes,
    /// The original headers, without the `Sinkhost-*` ones this module added.
    pub headers: Vec<(String, String)>,
    /// When it was dead-lettered, in ms since the Unix epoch.
    pub dead_lettered_ms: u64,
}

/// Reads every dead letter of `stream` (optionally of one subscription), oldest first.
pub async fn list(
    js: &jetstream::Context,
    stream: &str,
    subscription: Option<&str>,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    Ok(read(js, stream, subscription)
        .await?
        .into_iter()
        .map(|stored| stored.letter)
        .collect())
}

/// How many dead letters `subscription` has in `<stream>_dlq`, and the last
/// one's error (for `sinkhost status`); `None` when the stream cannot be read.
pub(crate) async fn summary(
    js: &jetstream::Context,
    stream: &str,
    subscription: &str,
) -> Option<(u64, Option<String>)> {
    let (dlq, _) = open(js, stream).await.ok()?;
    let subject = subject(subscription);
    let mut counts = dlq.info_with_subjects(&subject).await.ok()?;
    let mut count = 0;
    while let Some(entry) = counts.next().await {
        count += entry.ok()?.1 as u64;
    }
    if count == 0 {
        return Some((0, None));
    }
    let last = dlq.get_last_raw_message_by_subject(&subject).await.ok()?;
    let error = last
        .headers
        .get(LAST_ERROR)
        .map(|value| value.as_str().to_owned());
    Some((count, error))
}

/// Opens `<stream>_dlq`, with the error constructor for what goes wrong on it.
async fn open(
    js: &jetstream::Context,
    stream: &str,
) -> Result<(stream::Stream, impl Fn(String) -> DeadLetterError), DeadLetterError> {
    let name = stream_name(stream);
    let stream_error = move |message: String| DeadLetterError::Stream {
        stream: name.clone(),
        message,
    };
    let dlq = js
        .get_stream(stream_name(stream))
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    Ok((dlq, stream_error))
}

/// Like [`list`], with each dead letter's payload and original headers.
pub async fn read(
    js: &jetstream::Context,
    stream: &str,
    subscription: Option<&str>,
) -> Result<Vec<Stored>, DeadLetterError> {
    let (dlq, stream_error) = open(js, stream).await?;
    let consumer = dlq
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subscription.map(subject).unwrap_or_else(|| "dlq.>".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    let mut consumer = consumer;
    let pending = consumer
        .info()
        .await
        .map_err(|e| stream_error(e.to_string()))?
        .num_pending;
    let mut letters = Vec::new();
    if pending == 0 {
        return Ok(letters);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    while (letters.len() as u64) < pending {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(Ok(message))) = next else {
            return Err(stream_error(
                "the dead-letter stream stopped answering".into(),
            ));
        };
        let optional = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let header = |name: &str| optional(name).unwrap_or_default();
        let info = message.info().map_err(|e| stream_error(e.to_string()))?;
        let letter = DeadLetter {
            dlq_sequence: info.stream_sequence,
            time: info
                .published
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            subscription: header(SUBSCRIPTION),
            subject: header(ORIGINAL_SUBJECT),
            stream_sequence: header(STREAM_SEQUENCE).parse().ok(),
            message_id: header(MESSAGE_ID),
            attempts: header(ATTEMPTS).parse().ok(),
            last_error: header(LAST_ERROR),
            payload_bytes: message.payload.len(),
            raw_subject: optional(RAW_SUBJECT),
            raw_headers: optional(RAW_HEADERS),
        };
        let dead_lettered_ms =
            u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        letters.push(Stored {
            letter,
            payload: message.payload.clone(),
            headers: original_headers(message.headers.as_ref()),
            dead_lettered_ms,
        });
    }
    Ok(letters)
}

/// Deletes the dead letter at `dlq_sequence` from `<stream>_dlq` (once it has
/// been delivered after all).
pub async fn remove(
    js: &jetstream::Context,
    stream: &str,
    dlq_sequence: u64,
) -> Result<(), DeadLetterError> {
    let (dlq, stream_error) = open(js, stream).await?;
    match dlq.delete_message(dlq_sequence).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(stream_error(format!(
            "message {dlq_sequence} was not deleted"
        ))),
        Err(e) => Err(stream_error(format!(
            "deleting message {dlq_sequence}: {e}"
        ))),
    }
}

/// The headers a dead letter was published with, minus the `Sinkhost-*` ones
/// and the dead-letter stream's own `Nats-Msg-Id` ([`publish`] drops the
/// original `Nats-*` headers).
fn original_headers(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    flatten_headers(headers)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("Sinkhost-") && !name.starts_with("Nats-"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_lose_line_breaks_and_length() {
        assert_eq!(header_safe("a\r\nb"), "a  b");
        assert_eq!(header_safe(&"x".repeat(5000)).len(), ERROR_BYTES);
        assert_eq!(header_safe(&"é".repeat(1000)).len(), ERROR_BYTES);
    }
}
