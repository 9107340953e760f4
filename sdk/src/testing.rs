//! Values for a plugin's unit tests: a [`Response`] as [`http::send`] would
//! return it and a [`Message`] as the host would deliver it.
//!
//! `http::send` needs the host, so a plugin's tests exercise the plain
//! functions around it — the one that builds the request for a message, the
//! one that turns a response into an [`Outcome`](crate::Outcome) — natively
//! with `cargo test`. This module only builds values; it calls nothing in the
//! host, so it works in any test.
//!
//! ```
//! use sinkhost_sdk::{Message, Outcome, envelope, testing};
//!
//! let resp = testing::response(429, &[("Retry-After", "30")], "slow down");
//! assert_eq!(Outcome::from_response(&resp), Outcome::Retry(Some(30_000)));
//!
//! let last = Message { attempt: 4, ..testing::message("order.completed", r#"{"id":42}"#) };
//! assert!(last.is_last_attempt());
//! assert_eq!(
//!     envelope(&last),
//!     br#"{"subject":"order.completed","data":{"id":42},"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-1"}"#
//! );
//! ```
//!
//! [`http::send`]: crate::http::send

use crate::Message;
use crate::http::Response;

/// A response with `status`, the `(name, value)` `headers` in order, and `body`.
///
/// ```
/// let resp = sinkhost_sdk::testing::response(503, &[("Retry-After", "5")], "busy");
/// assert_eq!(resp.retry_after_ms(), Some(5_000));
/// assert_eq!(resp.summary(100), "HTTP 503: busy");
/// ```
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Response {
    Response {
        status,
        headers: owned(headers),
        body: body.into(),
    }
}

/// A message on `subject` with `payload` and otherwise what a first delivery
/// typically looks like: no headers, id `nats-msg-1`, published at
/// `2026-04-21T08:09:50Z` (`published_ms` 1 776 758 990 000), attempt 1 of 4
/// (a subscription's default `retries: 3`). Change any field with struct
/// update syntax: `Message { attempt: 4, ..testing::message(subject, payload) }`.
pub fn message(subject: &str, payload: impl Into<Vec<u8>>) -> Message {
    Message {
        subject: subject.into(),
        payload: payload.into(),
        headers: Vec::new(),
        id: "nats-msg-1".into(),
        published_ms: 1_776_758_990_000,
        attempt: 1,
        max_attempts: 4,
    }
}

/// `(name, value)` pairs as the owned pairs [`Message`] and [`Response`] hold.
pub(crate) fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}
