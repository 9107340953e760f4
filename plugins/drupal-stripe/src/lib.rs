//! The Drupal Stripe sink: for `stripe.drupal`, whose payloads are Stripe
//! events already verified upstream, POSTs the event itself — the payload
//! byte for byte, not the envelope — to `webhook.url` (Drupal's Stripe webhook
//! route), re-signed so that Drupal's stock Stripe modules (stripe-php
//! `Webhook::constructEvent`) accept it:
//!
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
//! keyed by the whole `whsec_...` string of `settings.signing_secret`, as
//! Stripe does. `t` is the time of sending, not of publishing: Stripe's
//! libraries refuse a `t` more than 300 s old, and a retried message may be.
//! Also sent: `Content-Type: application/json`, the configured
//! `webhook.headers` (the Bearer token) and `Idempotency-Key: <message id>`.
//!
//! 2xx is delivered. 408, 429 and everything else that is not a 4xx (5xx,
//! timeouts, connection failures) retries, after `Retry-After` when given.
//! Any other 4xx rejects at once: Drupal refused this request and will refuse
//! it again. A payload that is not a Stripe event (a JSON object with string
//! `id` and `type`) rejects without a request.
//!
//! ```yaml
//! plugin: drupal-stripe
//! settings:
//!   signing_secret: "${DRUPAL_STRIPE_SIGNING_SECRET}"   # required, whsec_...
//! ```

use sinkhost_sdk::http::{self, Response};
use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::serde_json::{self, Value};
use sinkhost_sdk::{Config, Message, Outcome, Sink, export_sink, sign};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    /// The endpoint's signing secret as Drupal knows it, `whsec_...`.
    #[serde(default)]
    signing_secret: Option<String>,
}

const SIGNATURE_HEADER: &str = "Stripe-Signature";

struct Drupal {
    url: String,
    /// `Content-Type` (unless configured) followed by the configured headers.
    headers: Vec<(String, String)>,
    signing_secret: String,
}

impl Sink for Drupal {
    fn init(config: Config) -> Result<Self, String> {
        let Settings { signing_secret } = config.settings()?;
        // Errors never repeat the secret: `sinkhost check` prints them.
        let signing_secret = signing_secret.filter(|s| !s.is_empty()).ok_or(
            "settings.signing_secret is required: the whsec_... secret Drupal verifies Stripe-Signature with",
        )?;
        if signing_secret.len() <= "whsec_".len() || !signing_secret.starts_with("whsec_") {
            return Err(
                "settings.signing_secret must be a Stripe webhook signing secret: whsec_ followed by the secret"
                    .into(),
            );
        }
        if config.webhook.has_header(SIGNATURE_HEADER) {
            return Err(format!(
                "webhook.headers sets {SIGNATURE_HEADER}, which settings.signing_secret computes; remove it"
            ));
        }
        Ok(Drupal {
            url: config.webhook.require_url()?,
            headers: config
                .webhook
                .headers_with_defaults(&[("Content-Type", "application/json")]),
            signing_secret,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let req = match self.request(msg, sign::unix_now()) {
            Ok(req) => req,
            Err(reason) => return Outcome::Reject(reason),
        };
        http::deliver(msg, &req, classify)
    }
}

impl Drupal {
    /// The request for `msg` signed at `now` (unix seconds), or why there can be none.
    fn request(&self, msg: &Message, now: u64) -> Result<http::Request, String> {
        check_event(&msg.payload)?;
        Ok(http::Request::post(&self.url)
            .headers(self.headers.iter().cloned())
            .header(
                SIGNATURE_HEADER,
                stripe_signature(&self.signing_secret, now, &msg.payload),
            )
            .header("Idempotency-Key", &msg.id)
            .body(msg.payload.clone()))
    }
}

/// Checks that `payload` looks like a Stripe event: a JSON object with string
/// `id` and `type`, which is what a Stripe webhook handler dispatches on.
fn check_event(payload: &[u8]) -> Result<(), String> {
    let problem = match serde_json::from_slice::<Value>(payload) {
        Err(err) => format!("not JSON ({err})"),
        Ok(Value::Object(event)) => {
            let missing = ["id", "type"]
                .into_iter()
                .find(|field| !event.get(*field).is_some_and(Value::is_string));
            match missing {
                None => return Ok(()),
                Some(field) => format!("no string \"{field}\""),
            }
        }
        Ok(_) => "JSON, but not an object".into(),
    };
    Err(format!(
        "payload is not a Stripe event (a JSON object with string \"id\" and \"type\"): {problem}"
    ))
}

/// The `Stripe-Signature` value: `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
/// keyed by the secret's text, `whsec_` included, as Stripe signs.
fn stripe_signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let mac = sign::hmac_sha256(secret.as_bytes(), &signed);
    format!("t={t},v1={}", sign::hex(&mac))
}

/// Drupal's answer as an outcome (see the crate docs).
fn classify(resp: &Response) -> Outcome {
    Outcome::from_response_rejecting_4xx_except(resp, &[408, 429], |resp| {
        format!(
            "Drupal answered {} (a 4xx other than 408 or 429 is not retried: Drupal refused this request, e.g. a Bearer token or signing secret it does not accept)",
            resp.summary(200)
        )
    })
}

export_sink!(Drupal);

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhost_sdk::testing::{self, response};

    /// A Stripe event as Stripe spells it, with the spacing a re-encoding would lose.
    const EVENT: &str = r#"{"id": "evt_1MqqbKLt4dXK03v5qaIbiNCC", "object": "event", "type": "charge.succeeded", "data": {"object": {"amount": 1990}}}"#;

    fn init(json: &str) -> Result<Drupal, String> {
        Drupal::init(Config::from_json(json)?)
    }

    fn drupal() -> Drupal {
        init(
            r#"{"subscription": "d", "webhook": {"url": "http://drupal/stripe-webhook",
                "headers": {"Authorization": "Bearer t0k"}},
                "settings": {"signing_secret": "whsec_test_secret"}}"#,
        )
        .unwrap()
    }

    fn msg(payload: &str) -> Message {
        Message {
            id: "nats-msg-7".into(),
            attempt: 2,
            ..testing::message("stripe.drupal", payload)
        }
    }

    /// Computed once with stripe-python 16.1.0:
    /// `stripe.WebhookSignature._compute_signature("1700000000." + EVENT, "whsec_test_secret")`.
    #[test]
    fn signature_matches_stripe_python() {
        assert_eq!(
            stripe_signature("whsec_test_secret", 1_700_000_000, EVENT.as_bytes()),
            "t=1700000000,v1=d3291833a5252a9c06ea901f3765b8fdbad8fd31541c8111549c8ce437cd8d58"
        );
    }

    #[test]
    fn request_is_the_event_byte_for_byte_signed_at_send_time() {
        let req = drupal().request(&msg(EVENT), 1_700_000_000).unwrap();
        assert_eq!(req.url(), "http://drupal/stripe-webhook");
        assert_eq!(req.body_bytes(), EVENT.as_bytes());
        assert_eq!(
            req.header_list(),
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("Authorization".to_string(), "Bearer t0k".to_string()),
                (
                    "Stripe-Signature".to_string(),
                    "t=1700000000,v1=d3291833a5252a9c06ea901f3765b8fdbad8fd31541c8111549c8ce437cd8d58"
                        .to_string()
                ),
                ("Idempotency-Key".to_string(), "nats-msg-7".to_string()),
            ]
        );
    }

    #[test]
    fn payloads_that_are_not_stripe_events_are_rejected_with_the_reason() {
        let prefix =
            r#"payload is not a Stripe event (a JSON object with string "id" and "type"): "#;
        for (payload, problem) in [
            (r#"{"type": "charge.succeeded"}"#, r#"no string "id""#),
            (r#"{"id": "evt_1", "type": 7}"#, r#"no string "type""#),
            (r#"{"id": null, "type": "x"}"#, r#"no string "id""#),
            (
                r#"["evt_1", "charge.succeeded"]"#,
                "JSON, but not an object",
            ),
            (r#""evt_1""#, "JSON, but not an object"),
        ] {
            let err = drupal().request(&msg(payload), 0).unwrap_err();
            assert_eq!(err, format!("{prefix}{problem}"), "{payload}");
        }
        let err = drupal().request(&msg("hello"), 0).unwrap_err();
        assert!(err.starts_with(&format!("{prefix}not JSON (")), "{err}");
        let err = check_event(&[0xff, 0xfe]).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        assert_eq!(check_event(EVENT.as_bytes()), Ok(()));
    }

    #[test]
    fn classification_by_status() {
        assert_eq!(classify(&response(200, &[], "nope")), Outcome::Delivered);
        assert_eq!(classify(&response(204, &[], "nope")), Outcome::Delivered);
        for status in [408, 429, 500, 502, 503, 301] {
            assert_eq!(
                classify(&response(status, &[], "nope")),
                Outcome::Retry(None),
                "{status}"
            );
        }
        assert_eq!(
            classify(&response(429, &[("Retry-After", "12")], "nope")),
            Outcome::Retry(Some(12_000))
        );
        for status in [400, 401, 403, 404, 405, 410, 422, 425] {
            let Outcome::Reject(reason) = classify(&response(status, &[], "nope")) else {
                panic!("{status} should reject");
            };
            assert!(
                reason.starts_with(&format!("Drupal answered HTTP {status}: nope (")),
                "{reason}"
            );
        }
    }

    #[test]
    fn init_requires_a_whsec_secret() {
        let required = "settings.signing_secret is required: the whsec_... secret Drupal verifies Stripe-Signature with";
        let format = "settings.signing_secret must be a Stripe webhook signing secret: whsec_ followed by the secret";
        for (settings, expected) in [
            ("{}", required),
            (r#"{"signing_secret": ""}"#, required),
            (r#"{"signing_secret": "s3cret"}"#, format),
            (r#"{"signing_secret": "whsec_"}"#, format),
            (
                r#"{"signing_secret": "whsec_x", "secret": "y"}"#,
                "invalid settings: unknown field `secret`, expected `signing_secret`",
            ),
        ] {
            let json = format!(
                r#"{{"subscription": "d", "webhook": {{"url": "http://d/x"}}, "settings": {settings}}}"#
            );
            assert_eq!(init(&json).err().as_deref(), Some(expected), "{settings}");
        }
        let err = init(
            r#"{"subscription": "d", "webhook": {"url": "http://d/x", "headers": {"stripe-signature": "t=1"}},
                "settings": {"signing_secret": "whsec_x"}}"#,
        )
        .err();
        assert_eq!(
            err.as_deref(),
            Some(
                "webhook.headers sets Stripe-Signature, which settings.signing_secret computes; remove it"
            )
        );
    }
}
