//! Outbound HTTP through the host's `http` import: a [`Request`] builder,
//! [`send`], and helpers on the [`Response`] a plugin classifies.
//!
//! The plugin has no sockets of its own; the host sends the request with its
//! pooled client, the subscription's `timeout` and its host allowlist.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::__private::bindings::sinkhost::plugin::http as wit;
use crate::trace_context::{TRACEPARENT, TRACESTATE, TraceContext};

pub use wit::{Method, Response};

/// A request for the host to send, built with [`Request::post`] and friends.
///
/// Its `Debug` output names the headers but never shows their values, which
/// are usually credentials.
///
/// ```
/// use sinkhost_sdk::http::Request;
///
/// let req = Request::post("https://example.com/hook")
///     .header("Content-Type", "application/json")
///     .body(br#"{"ok":true}"#.to_vec());
/// assert_eq!(req.url(), "https://example.com/hook");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    // The WIT record `http.request`: `generate!` maps it to this type (`with:`),
    // so the field names and types must stay exactly those of the WIT.
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A request with `method` to the absolute `http(s)://` `url`, no headers, no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request to `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request to `url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// Appends a header. Headers are sent in the order they were added; a name
    /// may repeat.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends every `(name, value)` pair, in order, e.g. the configured
    /// [`Webhook::headers`](crate::Webhook::headers).
    pub fn headers<N, V>(mut self, headers: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(n, v)| (n.into(), v.into())));
        self
    }

    /// Adds the W3C trace context of `msg` (`traceparent`, and `tracestate`
    /// when present) so the destination's spans join the producer's trace;
    /// see [`trace_context`](crate::trace_context). Does nothing when `msg`
    /// has no valid `traceparent` or this request already sets one.
    /// [`deliver`] calls it for you.
    pub fn trace_context(self, msg: &crate::Message) -> Self {
        if self.header_value(TRACEPARENT).is_some() {
            return self;
        }
        match TraceContext::from_message(msg) {
            Some(ctx) => self.with_context(ctx),
            None => self,
        }
    }

    fn with_context(self, ctx: TraceContext) -> Self {
        let req = self.header(TRACEPARENT, ctx.traceparent);
        match ctx.tracestate {
            Some(state) => req.header(TRACESTATE, state),
            None => req,
        }
    }

    /// Sets the body, replacing any earlier one.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The headers, in order.
    pub fn header_list(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why no response arrived: the WIT variant `http.http-error`. Typed so a
/// plugin can tell a failure that may heal ([`Timeout`](Self::Timeout),
/// [`Connect`](Self::Connect)) from one that never will ([`Denied`](Self::Denied))
/// without parsing text; [`Outcome::from_http_error`](crate::Outcome::from_http_error)
/// does exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    // `generate!` maps `http.http-error` to this type (`with:`): the variants
    // must stay exactly those of the WIT, in order.
    /// No complete response within the subscription's `timeout`.
    Timeout,
    /// The connection could not be made or broke: DNS, refused, reset, TLS.
    Connect(String),
    /// The host refused to send: the URL's host is not allowed for this
    /// subscription, or the URL is not http(s). Retrying will not help.
    Denied(String),
    /// Anything else, e.g. an invalid header or method.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no response within the subscription's timeout"),
            Self::Connect(e) => write!(f, "connection failed: {e}"),
            Self::Denied(e) => write!(f, "request denied by the host: {e}"),
            Self::Other(e) => write!(f, "request failed: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Sends `req` through the host and waits for the response. Any status,
/// 4xx and 5xx included, is an `Ok` [`Response`]; `Err` means no response.
///
/// Only callable inside a component: natively (e.g. in unit tests) there is no
/// host and this panics.
pub fn send(req: &Request) -> Result<Response, HttpError> {
    wit::send(req)
}

/// Sends `req` on behalf of `msg` and decides the outcome: `classify` judges
/// a response (e.g. [`Outcome::from_response`](crate::Outcome::from_response)
/// or [`Outcome::from_response_rejecting_4xx_except`](crate::Outcome::from_response_rejecting_4xx_except));
/// a request that got no response goes through
/// [`Outcome::from_http_error`](crate::Outcome::from_http_error). Anything but
/// `Delivered` is logged as a warning naming the message and the attempt, so an
/// operator sees why it is retried or dead-lettered.
///
/// The message's W3C trace context goes along, as
/// [`Request::trace_context`] adds it, unless `req` sets its own.
pub fn deliver(
    msg: &crate::Message,
    req: &Request,
    classify: impl FnOnce(&Response) -> crate::Outcome,
) -> crate::Outcome {
    let (n, max) = (msg.attempt, msg.max_attempts);
    match send(&with_trace_context(req, msg)) {
        Ok(resp) => {
            let outcome = classify(&resp);
            if outcome != crate::Outcome::Delivered {
                crate::warn!(
                    "message {}: {}, attempt {n}/{max}",
                    msg.id,
                    resp.summary(200)
                );
            }
            outcome
        }
        Err(err) => {
            crate::warn!("message {}: {err}, attempt {n}/{max}", msg.id);
            crate::Outcome::from_http_error(&err)
        }
    }
}

/// `req` with `msg`'s trace context, copied only when there is one to add.
fn with_trace_context<'a>(req: &'a Request, msg: &crate::Message) -> Cow<'a, Request> {
    match TraceContext::from_message(msg) {
        Some(ctx) if req.header_value(TRACEPARENT).is_none() => {
            Cow::Owned(req.clone().with_context(ctx))
        }
        _ => Cow::Borrowed(req),
    }
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The delay the destination asked for with `Retry-After`, in milliseconds:
    /// delay-seconds (`120`) or an HTTP-date (measured against the WASI wall
    /// clock; a date in the past is `Some(0)`). `None` when the header is
    /// absent or unparseable.
    pub fn retry_after_ms(&self) -> Option<u64> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        parse_retry_after_ms(self.header("retry-after")?, now_ms)
    }

    /// A one-line description for logs and reject reasons: the status and the
    /// start of the body (at most `max_chars` characters, lossily decoded).
    pub fn summary(&self, max_chars: usize) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body = body.trim();
        let mut out = format!("HTTP {}", self.status);
        if !body.is_empty() && max_chars > 0 {
            out.push_str(": ");
            let mut chars = body.chars();
            out.extend(chars.by_ref().take(max_chars).map(|c| match c {
                '\r' | '\n' | '\t' => ' ',
                c => c,
            }));
            if chars.next().is_some() {
                out.push('…');
            }
        }
        out
    }
}

/// Parses a `Retry-After` value against the current time `now_ms` (ms since
/// the Unix epoch).
pub(crate) fn parse_retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate: "99999999999999999999" means "a very long time", not garbage.
        return Some(
            value
                .parse::<u64>()
                .unwrap_or(u64::MAX)
                .saturating_mul(1000),
        );
    }
    crate::time::parse_http_date_ms(value).map(|at| at.saturating_sub(now_ms))
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Debug-formats headers as `["Authorization: <redacted>", ...]`.
pub(crate) struct RedactedHeaders<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| format!("{n}: <redacted>")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, response};

    #[test]
    fn retry_after_delay_seconds() {
        assert_eq!(parse_retry_after_ms("120", 0), Some(120_000));
        assert_eq!(parse_retry_after_ms(" 0 ", 0), Some(0));
        assert_eq!(
            parse_retry_after_ms("99999999999999999999999", 0),
            Some(u64::MAX)
        );
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        let date = "Tue, 21 Apr 2026 08:09:50 GMT";
        let at = 1_776_758_990_000;
        assert_eq!(parse_retry_after_ms(date, at - 30_000), Some(30_000));
        assert_eq!(parse_retry_after_ms(date, at + 5_000), Some(0));
    }

    #[test]
    fn retry_after_garbage_is_none() {
        for bad in ["", "-5", "1.5", "soon", "120s"] {
            assert_eq!(parse_retry_after_ms(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn response_header_lookup_is_case_insensitive_and_first_wins() {
        let resp = response(503, &[("retry-after", "7"), ("Retry-After", "9")], "");
        assert_eq!(resp.header("Retry-After"), Some("7"));
        assert_eq!(resp.retry_after_ms(), Some(7_000));
        assert_eq!(resp.header("x-missing"), None);
        assert!(!resp.is_success());
        assert!(response(204, &[], "").is_success());
    }

    #[test]
    fn summary_is_one_bounded_line() {
        let resp = response(422, &[], "  bad\nthing happened  ");
        assert_eq!(resp.summary(100), "HTTP 422: bad thing happened");
        assert_eq!(resp.summary(3), "HTTP 422: bad…");
        assert_eq!(response(500, &[], "").summary(100), "HTTP 500");
    }

    #[test]
    fn request_builder_keeps_header_order_and_debug_hides_values() {
        let req = Request::post("https://example.com/hook")
            .header("Authorization", "Bearer s3cret")
            .headers([("X-A", "1"), ("x-a", "2")])
            .body("{}");
        assert_eq!(req.method(), &Method::Post);
        assert_eq!(req.header_value("authorization"), Some("Bearer s3cret"));
        assert_eq!(req.header_value("X-A"), Some("1"));
        assert_eq!(req.header_list().len(), 3);
        assert_eq!(req.body_bytes(), b"{}");
        let debug = format!("{req:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("Authorization: <redacted>"), "{debug}");
    }

    fn message(headers: &[(&str, &str)]) -> crate::Message {
        crate::Message {
            headers: testing::owned(headers),
            ..testing::message("s", "")
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_context_is_copied_onto_the_request() {
        let msg = message(&[("traceparent", PARENT), ("tracestate", "rojo=1,congo=2")]);
        let req = Request::post("https://example.com/hook").header("X-A", "1");
        let sent = with_trace_context(&req, &msg);
        assert_eq!(
            sent.header_list(),
            [
                ("X-A".to_string(), "1".to_string()),
                ("traceparent".to_string(), PARENT.to_string()),
                ("tracestate".to_string(), "rojo=1,congo=2".to_string()),
            ]
        );
        assert_eq!(*sent, req.clone().trace_context(&msg));
    }

    #[test]
    fn trace_context_is_not_added_when_absent_invalid_or_set_by_the_plugin() {
        let req = Request::post("https://example.com/hook");
        let none = message(&[("tracestate", "rojo=1")]);
        assert!(matches!(with_trace_context(&req, &none), Cow::Borrowed(_)));
        let invalid = message(&[("traceparent", "00-abc-01"), ("tracestate", "rojo=1")]);
        assert!(with_trace_context(&req, &invalid).header_list().is_empty());

        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let mine = req.header("TraceParent", own);
        let msg = message(&[("traceparent", PARENT), ("tracestate", "rojo=1")]);
        let sent = with_trace_context(&mine, &msg);
        assert_eq!(
            sent.header_list(),
            [("TraceParent".to_string(), own.to_string())]
        );
        assert_eq!(mine.clone().trace_context(&msg), mine);
    }

    #[test]
    fn http_error_display_is_readable() {
        assert_eq!(
            HttpError::Denied("host evil.example is not allowed".into()).to_string(),
            "request denied by the host: host evil.example is not allowed"
        );
        assert_eq!(
            HttpError::Timeout.to_string(),
            "no response within the subscription's timeout"
        );
    }
}
