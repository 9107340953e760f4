//! [W3C Trace Context](https://www.w3.org/TR/trace-context/): the
//! `traceparent` and `tracestate` headers a producer put on the NATS message,
//! passed on to the destination so its spans join the producer's trace.
//!
//! [`http::deliver`](crate::http::deliver) does this for every request it
//! sends; a plugin that calls [`http::send`](crate::http::send) itself adds
//! them with [`Request::trace_context`](crate::http::Request::trace_context).
//!
//! The spec says a vendor must not forward a `traceparent` it cannot parse, so
//! an invalid one is dropped, and its `tracestate` with it (a `tracestate`
//! means nothing without its `traceparent`). A `tracestate` that could not be
//! sent as an HTTP header value (control or non-ASCII characters) is dropped
//! too, so a bad header never costs a delivery. Valid values are sent byte for
//! byte; repeated `tracestate` headers are joined with `,` as the spec's list
//! syntax allows.

pub use sinkhost_trace_context::is_valid_traceparent;

use crate::Message;

/// The header naming the trace and the producer's span:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion of [`TRACEPARENT`]: `key=value,key=value`.
pub const TRACESTATE: &str = "tracestate";

/// A message's trace context, ready to be sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` value, validated.
    pub traceparent: String,
    /// The `tracestate` value, when the message has a sendable one.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The trace context of `msg`: `None` when it has no `traceparent`, more
    /// than one, or an invalid one.
    pub fn from_message(msg: &Message) -> Option<Self> {
        Self::from_headers(&msg.headers)
    }

    /// Like [`from_message`](Self::from_message), on a header list.
    pub fn from_headers(headers: &[(String, String)]) -> Option<Self> {
        let mut parents = named(headers, TRACEPARENT);
        let traceparent = parents.next()?.trim_matches(OWS);
        if parents.next().is_some() || !is_valid_traceparent(traceparent) {
            return None;
        }
        let states: Vec<&str> = named(headers, TRACESTATE)
            .map(|v| v.trim_matches(OWS))
            .filter(|v| !v.is_empty())
            .collect();
        let tracestate =
            (!states.is_empty() && states.iter().all(|v| is_sendable(v))).then(|| states.join(","));
        Some(Self {
            traceparent: traceparent.to_owned(),
            tracestate,
        })
    }

    /// The 32 lower-case hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
}

/// HTTP's optional whitespace around a header value.
const OWS: &[char] = &[' ', '\t'];

fn named<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether `value` can be an HTTP header value as it is: visible ASCII,
/// spaces and tabs.
fn is_sendable(value: &str) -> bool {
    value
        .bytes()
        .all(|c| c == b'\t' || (b' '..=b'~').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn context_is_copied_as_is() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("Nats-Msg-Id", "m1"),
            ("Traceparent", PARENT),
            ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ]))
        .unwrap();
        assert_eq!(ctx.traceparent, PARENT);
        assert_eq!(
            ctx.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn repeated_tracestate_headers_join_and_whitespace_is_trimmed() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("traceparent", &format!(" {PARENT}\t")),
            ("tracestate", "rojo=1"),
            ("tracestate", " congo=2 "),
        ]))
        .unwrap();
        assert_eq!(ctx.traceparent, PARENT);
        assert_eq!(ctx.tracestate.as_deref(), Some("rojo=1,congo=2"));
    }

    #[test]
    fn no_or_bad_traceparent_means_no_context() {
        assert_eq!(
            TraceContext::from_headers(&headers(&[("tracestate", "rojo=1")])),
            None
        );
        assert_eq!(
            TraceContext::from_headers(&headers(&[
                ("traceparent", "00-bad"),
                ("tracestate", "rojo=1")
            ])),
            None
        );
        // Two parents: which one is the producer's span is unknowable.
        assert_eq!(
            TraceContext::from_headers(&headers(&[
                ("traceparent", PARENT),
                ("traceparent", PARENT)
            ])),
            None
        );
    }

    #[test]
    fn unsendable_tracestate_is_dropped_but_the_parent_kept() {
        let ctx = TraceContext::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "rojo=1\r\nx-injected: yes"),
        ]))
        .unwrap();
        assert_eq!(ctx.traceparent, PARENT);
        assert_eq!(ctx.tracestate, None);
    }
}
