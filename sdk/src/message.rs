//! Helpers on the two WIT values every plugin handles: the [`Message`] to
//! deliver and the [`Outcome`] it returns.

use crate::http::{HttpError, Response, find_header};
use crate::{Message, Outcome};

impl Message {
    /// The value of the first NATS header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The JetStream store time as RFC 3339 UTC with second precision, e.g.
    /// `2026-04-21T08:09:50Z` (the envelope's `timestamp`).
    pub fn published_rfc3339(&self) -> String {
        crate::time::rfc3339_from_ms(self.published_ms)
    }

    /// The JetStream store time in whole seconds since the Unix epoch.
    pub fn published_unix_secs(&self) -> u64 {
        self.published_ms / 1000
    }

    /// Whether this is the last attempt: a `retry` now dead-letters the message.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

impl Outcome {
    /// The classification of a typical webhook: 2xx is
    /// [`Delivered`](Outcome::Delivered); anything else is
    /// [`Retry`](Outcome::Retry) with the delay from `Retry-After` when the
    /// response has one (else the subscription's backoff). Plugins that treat
    /// some statuses as permanent check those first and return
    /// [`Reject`](Outcome::Reject).
    pub fn from_response(resp: &Response) -> Self {
        if resp.is_success() {
            Self::Delivered
        } else {
            Self::Retry(resp.retry_after_ms())
        }
    }

    /// The classification of a request that got no response:
    /// [`HttpError::Denied`] will never heal and rejects; a timeout, a
    /// connection failure or anything else retries on the backoff schedule.
    pub fn from_http_error(err: &HttpError) -> Self {
        match err {
            HttpError::Denied(_) => Self::Reject(err.to_string()),
            HttpError::Timeout | HttpError::Connect(_) | HttpError::Other(_) => Self::Retry(None),
        }
    }

    /// [`from_response`](Self::from_response) or
    /// [`from_http_error`](Self::from_http_error), for the result of
    /// [`http::send`](crate::http::send) as it is.
    pub fn from_send(result: &Result<Response, HttpError>) -> Self {
        match result {
            Ok(resp) => Self::from_response(resp),
            Err(err) => Self::from_http_error(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, response};

    #[test]
    fn message_helpers() {
        let msg = Message {
            headers: testing::owned(&[("Nats-Msg-Id", "abc"), ("nats-msg-id", "shadowed")]),
            published_ms: 951_782_400_999,
            attempt: 3,
            max_attempts: 3,
            ..testing::message("s", "")
        };
        assert_eq!(msg.header("NATS-MSG-ID"), Some("abc"));
        assert_eq!(msg.header("missing"), None);
        assert_eq!(msg.published_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(msg.published_unix_secs(), 951_782_400);
        assert!(msg.is_last_attempt());
    }

    #[test]
    fn from_response_classifies_like_the_seed() {
        assert_eq!(
            Outcome::from_response(&response(200, &[], "")),
            Outcome::Delivered
        );
        assert_eq!(
            Outcome::from_response(&response(299, &[], "")),
            Outcome::Delivered
        );
        assert_eq!(
            Outcome::from_response(&response(302, &[], "")),
            Outcome::Retry(None)
        );
        assert_eq!(
            Outcome::from_response(&response(422, &[], "")),
            Outcome::Retry(None)
        );
        assert_eq!(
            Outcome::from_response(&response(429, &[("retry-after", "30")], "")),
            Outcome::Retry(Some(30_000))
        );
    }

    #[test]
    fn from_http_error_rejects_only_denied() {
        let denied = HttpError::Denied("host not allowed".into());
        assert_eq!(
            Outcome::from_http_error(&denied),
            Outcome::Reject("request denied by the host: host not allowed".into())
        );
        for err in [
            HttpError::Timeout,
            HttpError::Connect("refused".into()),
            HttpError::Other("?".into()),
        ] {
            assert_eq!(Outcome::from_http_error(&err), Outcome::Retry(None));
        }
        assert_eq!(
            Outcome::from_send(&Ok(response(204, &[], ""))),
            Outcome::Delivered
        );
        assert_eq!(
            Outcome::from_send(&Err(HttpError::Timeout)),
            Outcome::Retry(None)
        );
    }
}
