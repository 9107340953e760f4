//! sinkhost's default sink: POSTs the JSON envelope (see `sinkhost_sdk::envelope`)
//! to `webhook.url` with `Content-Type: application/json`, the configured
//! `webhook.headers` as given, and `Idempotency-Key: <message id>`.
//!
//! 2xx is delivered; any other status retries, after `Retry-After` when the
//! response has one, unless `settings.reject_status` lists it, which rejects
//! (dead-letters) at once. A request the host denies rejects; timeouts and
//! connection failures retry.
//!
//! With `settings.signing_secret` each request is also signed the
//! [Standard Webhooks](https://www.standardwebhooks.com/) way, so receivers can
//! verify it with that project's libraries: `webhook-id` (the message id),
//! `webhook-timestamp` (unix seconds when sent) and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed by the
//! base64-decoded part of the secret after `whsec_`.
//!
//! ```yaml
//! settings:
//!   reject_status: [400, 404, 422]   # optional; default: none, every non-2xx retries
//!   signing_secret: "${HOOK_SIGNING_SECRET}"   # optional; whsec_<base64>
//! ```

use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::{Config, Message, Outcome, Sink, envelope, export_sink, http, sign};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    /// Statuses that will never succeed for this message, e.g. `[400, 404, 422]`.
    #[serde(default)]
    reject_status: Vec<u16>,
    /// A Standard Webhooks secret, `whsec_<base64>`.
    #[serde(default)]
    signing_secret: Option<String>,
}

/// The headers a Standard Webhooks signature consists of.
const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

struct Webhook {
    url: String,
    /// `Content-Type` (unless configured) followed by the configured headers.
    headers: Vec<(String, String)>,
    reject_status: Vec<u16>,
    /// The decoded Standard Webhooks key, when requests are signed.
    signing_key: Option<Vec<u8>>,
}

impl Sink for Webhook {
    fn init(config: Config) -> Result<Self, String> {
        let Settings {
            reject_status,
            signing_secret,
        } = config.settings()?;
        if let Some(s) = reject_status.iter().find(|s| !(300..=599).contains(*s)) {
            return Err(format!(
                "settings.reject_status: {s} is not a 3xx-5xx status"
            ));
        }
        let signing_key = signing_secret.as_deref().map(signing_key).transpose()?;
        if signing_key.is_some()
            && let Some(name) = SIGNATURE_HEADERS
                .iter()
                .find(|name| config.webhook.has_header(name))
        {
            return Err(format!(
                "webhook.headers sets {name}, which settings.signing_secret computes; remove it"
            ));
        }
        Ok(Webhook {
            url: config.webhook.require_url()?,
            headers: config
                .webhook
                .headers_with_defaults(&[("Content-Type", "application/json")]),
            reject_status,
            signing_key,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let req = self.request(msg, sign::unix_now());
        http::deliver(msg, &req, |resp| {
            if self.reject_status.contains(&resp.status) {
                Outcome::Reject(format!(
                    "{} (listed in settings.reject_status)",
                    resp.summary(200)
                ))
            } else {
                Outcome::from_response(resp)
            }
        })
    }
}

impl Webhook {
    /// The request for `msg`, signed at `now` (unix seconds) when signing.
    fn request(&self, msg: &Message, now: u64) -> http::Request {
        let body = envelope(msg);
        let mut req = http::Request::post(&self.url)
            .headers(self.headers.iter().cloned())
            .header("Idempotency-Key", &msg.id);
        if let Some(key) = &self.signing_key {
            req = req
                .header("webhook-id", &msg.id)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", signature(key, &msg.id, now, &body));
        }
        req.body(body)
    }
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`.
/// Errors never repeat the secret: `sinkhost check` prints them.
fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(sign::base64_decode)
        .ok_or("settings.signing_secret must be whsec_ followed by standard base64 (a Standard Webhooks secret)")?;
    if key.is_empty() {
        return Err("settings.signing_secret has an empty key after whsec_".into());
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1,{}", sign::base64(&sign::hmac_sha256(key, &signed)))
}

export_sink!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhost_sdk::testing;

    fn init(json: &str) -> Result<Webhook, String> {
        Webhook::init(Config::from_json(json)?)
    }

    #[test]
    fn init_takes_url_headers_and_settings() {
        let hook = init(
            r#"{"subscription": "s", "webhook": {"url": "https://example.com/h",
                "headers": {"Authorization": "Bearer t", "X-Team": "ops"}},
                "settings": {"reject_status": [400, 422]}}"#,
        )
        .unwrap();
        let names: Vec<_> = hook.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Content-Type", "Authorization", "X-Team"]);
        assert_eq!(hook.reject_status, [400, 422]);
        assert_eq!(hook.signing_key, None);
    }

    #[test]
    fn a_configured_content_type_replaces_the_default() {
        let hook = init(
            r#"{"subscription": "s", "webhook": {"url": "http://h",
                "headers": {"content-type": "application/cloudevents+json"}}}"#,
        )
        .unwrap();
        assert_eq!(
            hook.headers,
            [(
                "content-type".to_string(),
                "application/cloudevents+json".to_string()
            )]
        );
    }

    #[test]
    fn init_fails_clearly_on_bad_config() {
        let url_err = "webhook.url must be an absolute http:// or https:// URL";
        let secret_err = "settings.signing_secret must be whsec_ followed by standard base64 (a Standard Webhooks secret)";
        for (json, expected) in [
            (r#"{"subscription": "s"}"#, url_err),
            (
                r#"{"subscription": "s", "webhook": {"url": "ftp://h/x"}}"#,
                url_err,
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://"}}"#,
                url_err,
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"reject_stauts": [422]}}"#,
                "invalid settings: unknown field `reject_stauts`, expected `reject_status` or `signing_secret`",
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"reject_status": [200]}}"#,
                "settings.reject_status: 200 is not a 3xx-5xx status",
            ),
            // A Stripe-style secret is not base64; neither is a missing prefix.
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"signing_secret": "whsec_dev_only_not_secret"}}"#,
                secret_err,
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"signing_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}"#,
                secret_err,
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"signing_secret": "whsec_"}}"#,
                "settings.signing_secret has an empty key after whsec_",
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h", "headers": {"Webhook-Signature": "x"}},
                    "settings": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}"#,
                "webhook.headers sets webhook-signature, which settings.signing_secret computes; remove it",
            ),
        ] {
            assert_eq!(init(json).err().as_deref(), Some(expected), "{json}");
        }
    }

    #[test]
    fn init_decodes_the_secret_padded_or_not() {
        for secret in ["whsec_Zm9vYmE=", "whsec_Zm9vYmE"] {
            let hook = init(&format!(
                r#"{{"subscription": "s", "webhook": {{"url": "https://h"}}, "settings": {{"signing_secret": "{secret}"}}}}"#
            ))
            .unwrap();
            assert_eq!(hook.signing_key.as_deref(), Some(&b"fooba"[..]));
        }
    }

    #[test]
    fn requests_are_signed_only_with_a_secret() {
        let msg = Message {
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
            ..testing::message("order.completed", r#"{"order_id":42}"#)
        };
        let url = r#""webhook": {"url": "https://h/x", "headers": {"Authorization": "Bearer t"}}"#;
        let plain = init(&format!(r#"{{"subscription": "s", {url}}}"#)).unwrap();
        let names = |req: &http::Request| -> Vec<String> {
            req.header_list().iter().map(|(n, _)| n.clone()).collect()
        };
        let req = plain.request(&msg, 1_614_265_330);
        assert_eq!(
            names(&req),
            ["Content-Type", "Authorization", "Idempotency-Key"]
        );
        assert_eq!(req.body_bytes(), envelope(&msg));

        let signed = init(&format!(
            r#"{{"subscription": "s", {url}, "settings": {{"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}}"#
        ))
        .unwrap();
        let req = signed.request(&msg, 1_614_265_330);
        assert_eq!(
            names(&req),
            [
                "Content-Type",
                "Authorization",
                "Idempotency-Key",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature"
            ]
        );
        assert_eq!(req.header_value("webhook-id"), Some(msg.id.as_str()));
        assert_eq!(req.header_value("webhook-timestamp"), Some("1614265330"));
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            req.header_value("webhook-signature"),
            Some(signature(&key, &msg.id, 1_614_265_330, &envelope(&msg)).as_str())
        );
    }

    /// The Standard Webhooks reference libraries' own test vector (the same
    /// secret, id, timestamp and payload; `standardwebhooks` on PyPI agrees).
    #[test]
    fn signature_matches_the_standard_webhooks_vector() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
