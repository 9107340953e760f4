//! The one rule for a W3C `traceparent` header value
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>) that both sides
//! of sinkhost apply: the Rust SDK forwards a trace context only when it holds,
//! and the host puts a trace id on a delivery's log lines only when it holds,
//! so the logs name a trace exactly when the destination received it.
//! No dependencies: it builds for the host and for wasm32-wasip2 guests.

#![no_std]

/// Whether `value` is a `traceparent` the spec lets a vendor forward:
/// version `00` exactly as specified, or a later version whose first 55
/// characters parse as version 00 does (the spec's forward-compatibility
/// rule). Lower-case hex only; an all-zero trace id or parent id, and version
/// `ff`, are invalid.
pub fn is_valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 55 || !b.iter().all(u8::is_ascii_graphic) {
        return false;
    }
    let hex = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    let zero = |from: usize, to: usize| b[from..to].iter().all(|&c| c == b'0');
    let version = &b[0..2];
    let rest_ok = match version {
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b[55] == b'-',
    };
    hex(0, 2)
        && version != b"ff"
        && rest_ok
        && b[2] == b'-'
        && hex(3, 35)
        && !zero(3, 35)
        && b[35] == b'-'
        && hex(36, 52)
        && !zero(36, 52)
        && b[52] == b'-'
        && hex(53, 55)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparents() {
        for ok in [
            PARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            // A later version may carry more fields after a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
        ] {
            assert!(is_valid_traceparent(ok), "{ok}");
        }
    }

    #[test]
    fn invalid_traceparents() {
        for bad in [
            "",
            "garbage",
            // Upper-case hex, all-zero ids, version ff.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 is exactly 55 characters.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // Wrong separators or lengths.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\u{e9}",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
