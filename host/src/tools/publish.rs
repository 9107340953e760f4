//! `sinkhost publish`: one message to JetStream, a development convenience.

use anyhow::Context as _;
use async_nats::jetstream;

/// Where JetStream stored a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The stream that holds it.
    pub(crate) stream: String,
    /// Its sequence there.
    pub(crate) sequence: u64,
}

/// Publishes `payload` to `subject` with `headers` (and `Nats-Msg-Id: id`
/// when given) and waits for JetStream's ack.
pub(crate) async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
    headers: &[(String, String)],
    id: Option<&str>,
) -> anyhow::Result<Stored> {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.append(name.as_str(), value.as_str());
    }
    if let Some(id) = id {
        map.insert("Nats-Msg-Id", id);
    }
    let ack = js
        .publish_with_headers(subject.to_owned(), map, payload.into())
        .await
        .context("publishing")?
        .await
        .context("waiting for the JetStream ack (does a stream hold this subject?)")?;
    Ok(Stored {
        stream: ack.stream,
        sequence: ack.sequence,
    })
}
