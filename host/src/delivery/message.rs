//! What a JetStream message becomes for the plugin: its stable id, its
//! headers as name/value pairs and its store time in milliseconds. `bus` and
//! `tools::stream_replay` convert a message of the main stream with
//! [`for_plugin`]; `tools::replay` rebuilds one from a dead letter with the
//! same id rule ([`message_id`]).

use async_nats::HeaderMap;
use async_nats::jetstream::message::Info;

use crate::plugin;

/// The stable id of a message, the same on every redelivery: the producer's
/// `Nats-Msg-Id` when set, else `nats-msg-<stream sequence>`.
pub(crate) fn message_id(nats_msg_id: Option<&str>, stream_sequence: u64) -> String {
    nats_msg_id
        .filter(|id| !id.is_empty())
        .map_or_else(|| format!("nats-msg-{stream_sequence}"), str::to_owned)
}

/// [`message_id`] of a message with `headers`.
pub(crate) fn id_of(headers: Option<&HeaderMap>, stream_sequence: u64) -> String {
    let nats_msg_id = headers
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(async_nats::HeaderValue::as_str);
    message_id(nats_msg_id, stream_sequence)
}

/// Why a message that arrived malformed (bytes no client library would
/// produce) is dead-lettered instead of handed to a plugin; `None` for a
/// well-formed one.
pub(crate) fn malformed_reason(message: &async_nats::Message) -> Option<String> {
    let malformed = message.malformed.as_deref()?;
    Some(format!("malformed message: {}", malformed.reason))
}

/// Every header value as a `(name, value)` pair, a repeated header once per value.
pub(crate) fn flatten_headers(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .flat_map(HeaderMap::iter)
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_owned()))
        })
        .collect()
}

/// A time as milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: time::OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The plugin's view of attempt `attempt` (of `max_attempts`) of `message`,
/// whose JetStream metadata is `info`.
pub(crate) fn for_plugin(
    message: &async_nats::Message,
    info: &Info,
    attempt: u32,
    max_attempts: u32,
) -> plugin::Message {
    plugin::Message {
        subject: message.subject.to_string(),
        payload: message.payload.to_vec(),
        headers: flatten_headers(message.headers.as_ref()),
        id: id_of(message.headers.as_ref(), info.stream_sequence),
        published_ms: unix_ms(info.published),
        attempt,
        max_attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_producers_else_the_stream_sequence() {
        assert_eq!(message_id(Some("order-42"), 7), "order-42");
        assert_eq!(message_id(Some(""), 7), "nats-msg-7");
        assert_eq!(message_id(None, 7), "nats-msg-7");
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", "order-42");
        assert_eq!(id_of(Some(&headers), 7), "order-42");
        assert_eq!(id_of(None, 7), "nats-msg-7");
    }

    #[test]
    fn a_malformed_message_says_what_could_not_be_read() {
        let mut message = async_nats::Message {
            subject: "orders.created".into(),
            reply: None,
            payload: "{}".into(),
            headers: None,
            status: None,
            description: None,
            length: 2,
            malformed: None,
        };
        assert_eq!(malformed_reason(&message), None);
        message.malformed = Some(Box::new(async_nats::message::Malformed {
            reason: "header block is not UTF-8 (byte 0xff at offset 12)".into(),
            subject: "orders.created".into(),
            headers: b"NATS/1.0\r\nX: \xff\r\n\r\n".to_vec().into(),
        }));
        assert_eq!(
            malformed_reason(&message).as_deref(),
            Some("malformed message: header block is not UTF-8 (byte 0xff at offset 12)")
        );
    }

    #[test]
    fn headers_flatten_to_one_pair_per_value() {
        let mut headers = HeaderMap::new();
        headers.append("X-Repeated", "one");
        headers.append("X-Repeated", "two");
        let flat = flatten_headers(Some(&headers));
        assert_eq!(
            flat,
            [
                ("X-Repeated".to_owned(), "one".to_owned()),
                ("X-Repeated".to_owned(), "two".to_owned())
            ]
        );
        assert!(flatten_headers(None).is_empty());
    }

    #[test]
    fn store_times_are_milliseconds_since_the_epoch() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_776_758_990_123_456_789).unwrap();
        assert_eq!(unix_ms(t), 1_776_758_990_123);
        assert_eq!(
            unix_ms(time::OffsetDateTime::UNIX_EPOCH - time::Duration::SECOND),
            0
        );
    }
}
