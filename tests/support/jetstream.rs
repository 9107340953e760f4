//! JetStream helpers for the tests' side of the bus: create a stream, publish and
//! await the ack, read a stream (or a dead-letter stream) back to the end.
//!
//! Every helper panics with context on failure, as a test wants. None of them
//! consumes with a durable: reading never disturbs the host's consumers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use bytes::Bytes;
use futures::StreamExt;

/// How long to wait for any single JetStream reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A message as stored in a stream.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub subject: String,
    /// The stream sequence.
    pub sequence: u64,
    /// Header names as published (NATS header names keep their case); a repeated
    /// header has several values.
    pub headers: BTreeMap<String, Vec<String>>,
    pub payload: Bytes,
}

impl StoredMessage {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    /// The payload as UTF-8 (lossy).
    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Creates the stream `name` over `subjects` (file storage), or returns it if it
/// exists.
pub async fn ensure_stream(js: &jetstream::Context, name: &str, subjects: &[&str]) -> Stream {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|&subject| subject.to_owned()).collect(),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|err| panic!("creating stream {name} over {subjects:?}: {err}"))
}

/// Publishes `payload` with `headers` (e.g. `[("Nats-Msg-Id", "m1")]`) and waits for
/// the stream's ack.
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> PublishAck {
    let mut header_map = async_nats::HeaderMap::new();
    for &(name, value) in headers {
        header_map.append(name, value);
    }
    let ack = js
        .publish_with_headers(subject.to_owned(), header_map, payload.into())
        .await
        .unwrap_or_else(|err| panic!("publishing to {subject}: {err}"));
    tokio::time::timeout(REPLY_TIMEOUT, ack)
        .await
        .unwrap_or_else(|_| panic!("no publish ack for {subject} within {REPLY_TIMEOUT:?}"))
        .unwrap_or_else(|err| panic!("publish to {subject} not acked: {err}"))
}

/// Every message in stream `name`, oldest first, read with an ephemeral ordered
/// consumer up to the last message present when the call started. Panics if the
/// stream does not exist.
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<StoredMessage> {
    match try_read_stream(js, name).await {
        Some(messages) => messages,
        None => panic!("stream {name} does not exist"),
    }
}

/// The dead-letter stream of `stream` (`<stream>_dlq`, see DESIGN.md), read like
/// [`read_stream`]; empty if nothing has been dead-lettered yet (the stream does
/// not exist).
pub async fn dlq_messages(js: &jetstream::Context, stream: &str) -> Vec<StoredMessage> {
    try_read_stream(js, &dlq_stream_name(stream))
        .await
        .unwrap_or_default()
}

/// The name of the dead-letter stream of `stream`.
pub fn dlq_stream_name(stream: &str) -> String {
    format!("{stream}_dlq")
}

/// Waits until stream `name` holds at least `n` messages and returns them all.
/// Polls every 50 ms (the stream's state is an external condition); panics with
/// what is there after `timeout`.
pub async fn wait_for_stream_messages(
    js: &jetstream::Context,
    name: &str,
    n: usize,
    timeout: Duration,
) -> Vec<StoredMessage> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let messages = try_read_stream(js, name).await.unwrap_or_default();
        if messages.len() >= n {
            return messages;
        }
        if tokio::time::Instant::now() >= deadline {
            let listing: Vec<String> = messages
                .iter()
                .map(|message| {
                    format!(
                        "  #{} {} {:?} {}",
                        message.sequence,
                        message.subject,
                        message.headers,
                        message.payload_text()
                    )
                })
                .collect();
            panic!(
                "stream {name}: timed out after {timeout:?} waiting for {n} message(s); it holds {}:\n{}",
                messages.len(),
                listing.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads all of stream `name`, or `None` if it does not exist.
async fn try_read_stream(js: &jetstream::Context, name: &str) -> Option<Vec<StoredMessage>> {
    let mut stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                return None;
            }
            _ => panic!("looking up stream {name}: {err}"),
        },
    };
    let state = stream
        .info()
        .await
        .unwrap_or_else(|err| panic!("stream {name} info: {err}"))
        .state
        .clone();
    if state.messages == 0 {
        return Some(Vec::new());
    }

    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .unwrap_or_else(|err| panic!("creating an ordered consumer on {name}: {err}"));
    let mut messages = consumer
        .messages()
        .await
        .unwrap_or_else(|err| panic!("reading stream {name}: {err}"));

    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(REPLY_TIMEOUT, messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stream {name}: no message within {REPLY_TIMEOUT:?} after {} of {} (last sequence {})",
                    out.len(),
                    state.messages,
                    state.last_sequence
                )
            })
            .unwrap_or_else(|| panic!("stream {name}: the ordered consumer ended early"))
            .unwrap_or_else(|err| panic!("reading stream {name}: {err}"));
        let info = message
            .info()
            .unwrap_or_else(|err| panic!("stream {name}: message without JetStream info: {err}"));
        let (sequence, pending) = (info.stream_sequence, info.pending);
        out.push(stored(&message, sequence));
        // Stop at what was there when we looked; later messages are the next call's.
        if pending == 0 || sequence >= state.last_sequence {
            return Some(out);
        }
    }
}

fn stored(message: &jetstream::Message, sequence: u64) -> StoredMessage {
    let mut headers = BTreeMap::<String, Vec<String>>::new();
    if let Some(map) = &message.headers {
        for (name, values) in map.iter() {
            headers
                .entry(name.to_string())
                .or_default()
                .extend(values.iter().map(|value| value.as_str().to_owned()));
        }
    }
    StoredMessage {
        subject: message.subject.to_string(),
        sequence,
        headers,
        payload: message.payload.clone(),
    }
}

/// `<prefix>-<i>` for `i` in `range`: the `Nats-Msg-Id`s, and so the
/// `Idempotency-Key`s the destination sees.
pub fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Publishes one message per id on `subject` with `Nats-Msg-Id: <id>`, many in
/// flight at once, and waits for every ack.
pub async fn publish_all(js: &jetstream::Context, subject: &str, ids: &[String]) {
    for chunk in ids.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for id in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = js
                .publish_with_headers(
                    subject.to_owned(),
                    headers,
                    format!("{{\"id\":\"{id}\"}}").into(),
                )
                .await
                .unwrap_or_else(|err| panic!("publishing {id}: {err}"));
            acks.push(ack);
        }
        for (ack, id) in
            futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future))
                .await
                .into_iter()
                .zip(chunk)
        {
            ack.unwrap_or_else(|err| panic!("{id} not acked: {err}"));
        }
    }
}
