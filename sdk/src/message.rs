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
    /// [`Reject`](Outcome::Reject); when that is every 4xx but a few, use
    /// [`from_response_rejecting_4xx_except`](Self::from_response_rejecting_4xx_except).
    pub fn from_response(resp: &Response) -> Self {
        if resp.is_success() {
            Self::Delivered
        } else {
            Self::Retry(resp.retry_after_ms())
        }
    }

    /// The classification of a destination whose 4xx means "this request
    /// will never be accepted": a 4xx not listed in `retryable` is
    /// [`Reject`](Outcome::Reject) with the reason `reject` gives for it
    /// (called only then); any other status is
    /// [`from_response`](Self::from_response)'s — 2xx delivered, the rest
    /// (the listed 4xx, 5xx, 3xx, 1xx) retried after `Retry-After`. Statuses
    /// outside 400-499 in `retryable` change nothing.
    ///
    /// ```
    /// use sinkhost_sdk::{Outcome, http::Response, testing};
    ///
    /// fn classify(resp: &Response) -> Outcome {
    ///     Outcome::from_response_rejecting_4xx_except(resp, &[408, 429], |resp| {
    ///         format!("the CRM answered {}", resp.summary(200))
    ///     })
    /// }
    ///
    /// let limited = testing::response(429, &[("Retry-After", "30")], "");
    /// assert_eq!(classify(&limited), Outcome::Retry(Some(30_000)));
    /// let refused = testing::response(422, &[], "no such contact");
    /// assert_eq!(
    ///     classify(&refused),
    ///     Outcome::Reject("the CRM answered HTTP 422: no such contact".into())
    /// );
    /// assert_eq!(classify(&testing::response(503, &[], "")), Outcome::Retry(None));
    /// ```
    pub fn from_response_rejecting_4xx_except(
        resp: &Response,
        retryable: &[u16],
        reject: impl FnOnce(&Response) -> String,
    ) -> Self {
        if (400..500).contains(&resp.status) && !retryable.contains(&resp.status) {
            Self::Reject(reject(resp))
        } else {
            Self::from_response(resp)
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
    fn rejecting_4xx_except_rejects_only_the_unlisted_4xx() {
        let classify = |resp: &Response| {
            Outcome::from_response_rejecting_4xx_except(resp, &[408, 429, 500], |r| {
                format!("refused: {}", r.summary(10))
            })
        };
        for status in [200, 204, 299] {
            assert_eq!(
                classify(&response(status, &[], "")),
                Outcome::Delivered,
                "{status}"
            );
        }
        for status in [400, 401, 404, 422, 425, 499] {
            assert_eq!(
                classify(&response(status, &[], "bad input")),
                Outcome::Reject(format!("refused: HTTP {status}: bad input")),
                "{status}"
            );
        }
        // The listed 4xx and every status that is neither 2xx nor 4xx retry;
        // listing a 5xx changes nothing.
        for status in [408, 429, 100, 301, 304, 500, 503, 599] {
            assert_eq!(
                classify(&response(status, &[], "")),
                Outcome::Retry(None),
                "{status}"
            );
            assert_eq!(
                classify(&response(status, &[("Retry-After", "7")], "")),
                Outcome::Retry(Some(7_000)),
                "{status}"
            );
        }
        // The reason is built only for a reject.
        for status in [200, 408, 503] {
            Outcome::from_response_rejecting_4xx_except(&response(status, &[], ""), &[408], |_| {
                unreachable!("no reject for {status}")
            });
        }
        // With every 4xx listed, it is from_response.
        let all_4xx: Vec<u16> = (400..500).collect();
        for status in [200, 302, 404, 422, 503] {
            let resp = response(status, &[("Retry-After", "3")], "");
            assert_eq!(
                Outcome::from_response_rejecting_4xx_except(&resp, &all_4xx, |_| unreachable!()),
                Outcome::from_response(&resp),
                "{status}"
            );
        }
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
