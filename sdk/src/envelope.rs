//! The JSON envelope of DESIGN.md, the body the `http-webhook` plugin POSTs:
//!
//! ```json
//! {"subject":"order.completed","data":{"id":42},"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}
//! ```
//!
//! Written by hand rather than through a `Serialize` struct so that the field
//! order is fixed by this file and a JSON payload is embedded byte for byte
//! (checked against the JSON grammar with `serde_json::value::RawValue`, never
//! re-encoded): big integers, float spellings and key order stay the producer's.

use serde_json::value::RawValue;

use crate::{Message, sign};

/// The envelope for `msg`: `subject`, then `data`, `timestamp` (the JetStream
/// store time, RFC 3339 UTC) and `message_id` (the stable [`Message::id`]).
///
/// `data` is the payload itself when it is valid JSON (surrounding whitespace
/// trimmed); else, when it is UTF-8, the payload as a JSON string; else `data`
/// is left out and `data_base64` (standard alphabet, padded) holds the bytes.
pub fn envelope(msg: &Message) -> Vec<u8> {
    envelope_with(msg, &[])
}

/// [`envelope`] with `extra` fields appended after `message_id`, in order,
/// e.g. `envelope_with(msg, &[("template", "welcome".into())])`. The caller
/// keeps the names distinct from the envelope's own.
pub fn envelope_with(msg: &Message, extra: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.payload.len() * 4 / 3 + msg.subject.len() + 160);
    field(&mut out, '{', "subject", &msg.subject);
    match std::str::from_utf8(&msg.payload) {
        Ok(text) => match serde_json::from_str::<&RawValue>(text) {
            Ok(json) => {
                key(&mut out, ',', "data");
                out.extend_from_slice(json.get().as_bytes());
            }
            Err(_) => field(&mut out, ',', "data", text),
        },
        Err(_) => field(&mut out, ',', "data_base64", &sign::base64(&msg.payload)),
    }
    field(&mut out, ',', "timestamp", &msg.published_rfc3339());
    field(&mut out, ',', "message_id", &msg.id);
    for (name, value) in extra {
        field(&mut out, ',', name, value);
    }
    out.push(b'}');
    out
}

fn key(out: &mut Vec<u8>, sep: char, name: &str) {
    out.push(sep as u8);
    write_json(out, name);
    out.push(b':');
}

fn field<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, sep: char, name: &str, value: &T) {
    key(out, sep, name);
    write_json(out, value);
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing strings and `Value`s into a Vec cannot fail.
    serde_json::to_writer(out, value).expect("JSON into a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &[u8]) -> Message {
        Message {
            id: "nats-msg-12345".into(),
            // The envelope's timestamp has second precision.
            published_ms: 1_776_758_990_123,
            ..crate::testing::message("order.completed", payload)
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_payload_is_embedded_byte_for_byte() {
        // Key order, a 2^64+ integer and `1.50` would all change if re-encoded.
        let payload = b"  {\"z\": 1, \"a\": 18446744073709551616, \"f\": 1.50}\n";
        assert_eq!(
            text(envelope(&msg(payload))),
            r#"{"subject":"order.completed","data":{"z": 1, "a": 18446744073709551616, "f": 1.50},"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}"#
        );
    }

    #[test]
    fn json_scalars_are_json_too() {
        let out = text(envelope(&msg(b"42")));
        assert!(out.contains(r#""data":42,"#), "{out}");
        let out = text(envelope(&msg(b"\"quoted\"")));
        assert!(out.contains(r#""data":"quoted","#), "{out}");
    }

    #[test]
    fn non_json_utf8_becomes_an_escaped_string() {
        assert_eq!(
            text(envelope(&msg("héllo \"world\"\n{".as_bytes()))),
            r#"{"subject":"order.completed","data":"héllo \"world\"\n{","timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}"#
        );
        // An empty payload is not JSON, but it is (empty) UTF-8.
        assert!(text(envelope(&msg(b""))).contains(r#""data":"","#));
    }

    #[test]
    fn binary_goes_under_data_base64_and_data_is_absent() {
        let out = text(envelope(&msg(&[0xff, 0x00, 0xfe, 0x7b])));
        assert_eq!(
            out,
            r#"{"subject":"order.completed","data_base64":"/wD+ew==","timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(value.get("data").is_none());
    }

    #[test]
    fn extra_fields_follow_message_id() {
        let out = text(envelope_with(
            &msg(b"{}"),
            &[("template", "welcome".into())],
        ));
        assert!(
            out.ends_with(r#""message_id":"nats-msg-12345","template":"welcome"}"#),
            "{out}"
        );
    }

    #[test]
    fn every_envelope_is_valid_json() {
        for payload in [
            &b"{\"a\":"[..],
            b"[1,2]",
            b"null",
            b"\xc3\x28",
            b"\"\\ud83d\\ude00 \\u00e9\"",
            b"\x00\x01",
        ] {
            let out = envelope(&msg(payload));
            serde_json::from_slice::<serde_json::Value>(&out)
                .unwrap_or_else(|e| panic!("{payload:?}: {e}: {}", String::from_utf8_lossy(&out)));
        }
    }

    #[test]
    fn json_validity_is_the_rfc_8259_grammar() {
        // A lone surrogate escape is grammatical JSON (RFC 8259 section 8.2 calls
        // it unpredictable, not invalid), so it passes through as the producer
        // wrote it rather than silently turning `data` into a string.
        let out = text(envelope(&msg(b"\"\\ud800\"")));
        assert!(out.contains(r#""data":"\ud800","#), "{out}");
    }
}
