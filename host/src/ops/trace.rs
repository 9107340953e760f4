//! Trace context on the host side: every delivery runs in a `delivery` span
//! whose fields (`subscription`, `message_id`, and `trace_id` when the message
//! carries a valid W3C `traceparent` header) appear on each log line of that
//! delivery, the host's and the plugin's alike, so an operator can go from a
//! trace to the log lines of its deliveries.
//!
//! Passing the headers on to the destination is the plugin's business (the
//! Rust SDK's `http::deliver` does it); this module only reads them, with the
//! same validity rule as the SDK (`sinkhost-trace-context`). It does
//! not export spans anywhere.

use async_nats::HeaderMap;
use sinkhost_trace_context::is_valid_traceparent;

/// The span one delivery runs in, with all its fields at once.
///
/// The span is at `error` level so that it is enabled under any `SINKHOST_LOG`
/// filter that lets a line of the delivery through: a span below the filter's
/// level would be disabled, and its fields would vanish from `warn` lines.
pub(crate) fn delivery_span(
    subscription: &str,
    message_id: &str,
    headers: Option<&HeaderMap>,
) -> tracing::Span {
    // An absent trace id (`None`) leaves the field out of the line.
    let trace_id = headers.and_then(trace_id);
    tracing::error_span!("delivery", subscription, message_id, trace_id)
}

/// The trace id of the message's one `traceparent` header (name matched
/// case-insensitively), when that header is valid.
fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let mut parents = headers
        .iter()
        .filter(|(name, _)| AsRef::<[u8]>::as_ref(name).eq_ignore_ascii_case(b"traceparent"))
        .flat_map(|(_, values)| values.iter());
    let parent = parents.next()?.as_str().trim_matches([' ', '\t']);
    if parents.next().is_some() || !is_valid_traceparent(parent) {
        return None;
    }
    Some(&parent[3..35])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, value);
        }
        map
    }

    #[test]
    fn trace_id_of_a_valid_traceparent() {
        assert_eq!(
            trace_id(&headers(&[("Nats-Msg-Id", "m"), ("traceparent", PARENT)])),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id(&headers(&[("Traceparent", &format!(" {PARENT}"))])),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn no_trace_id_without_one_valid_traceparent() {
        for bad in [
            &[("tracestate", "rojo=1")][..],
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            )],
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
            &[(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            &[(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            )],
            &[("traceparent", PARENT), ("traceparent", PARENT)],
        ] {
            assert_eq!(trace_id(&headers(bad)), None, "{bad:?}");
        }
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"
        ));
    }
}
