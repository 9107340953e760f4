//! sinkhost's default sink: POSTs the JSON envelope (see `sinkhost_sdk::envelope`)
//! to `webhook.url` with `Content-Type: application/json`, the configured
//! `webhook.headers` as given, and `Idempotency-Key: <message id>`.
//!
//! 2xx is delivered; any other status retries, after `Retry-After` when the
//! response has one, unless `settings.reject_status` lists it, which rejects
//! (dead-letters) at once. A request the host denies rejects; timeouts and
//! connection failures retry.
//!
//! ```yaml
//! settings:
//!   reject_status: [400, 404, 422]   # optional; default: none, every non-2xx retries
//! ```

use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::{Config, Message, Outcome, Sink, envelope, export_sink, http, warn};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    /// Statuses that will never succeed for this message, e.g. `[400, 404, 422]`.
    #[serde(default)]
    reject_status: Vec<u16>,
}

struct Webhook {
    url: String,
    /// `Content-Type` (unless configured) followed by the configured headers.
    headers: Vec<(String, String)>,
    reject_status: Vec<u16>,
}

impl Sink for Webhook {
    fn init(config: Config) -> Result<Self, String> {
        let Settings { reject_status } = config.settings()?;
        if let Some(s) = reject_status.iter().find(|s| !(300..=599).contains(*s)) {
            return Err(format!(
                "settings.reject_status: {s} is not a 3xx-5xx status"
            ));
        }
        let url = config.webhook.url;
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if url.is_empty() || rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err("webhook.url must be an absolute http:// or https:// URL".into());
        }
        let mut headers = config.webhook.headers;
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.insert(0, ("Content-Type".into(), "application/json".into()));
        }
        Ok(Webhook {
            url,
            headers,
            reject_status,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let req = http::Request::post(&self.url)
            .headers(self.headers.iter().cloned())
            .header("Idempotency-Key", &msg.id)
            .body(envelope(msg));
        let (n, max) = (msg.attempt, msg.max_attempts);
        match http::send(&req) {
            Ok(resp) if self.reject_status.contains(&resp.status) => Outcome::Reject(format!(
                "{} (listed in settings.reject_status)",
                resp.summary(200)
            )),
            Ok(resp) => {
                let outcome = Outcome::from_response(&resp);
                if outcome != Outcome::Delivered {
                    warn!(
                        "message {}: {}, attempt {n}/{max}",
                        msg.id,
                        resp.summary(200)
                    );
                }
                outcome
            }
            Err(err) => {
                warn!("message {}: {err}, attempt {n}/{max}", msg.id);
                Outcome::from_http_error(&err)
            }
        }
    }
}

export_sink!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

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
                "invalid settings: unknown field `reject_stauts`, expected `reject_status`",
            ),
            (
                r#"{"subscription": "s", "webhook": {"url": "https://h"}, "settings": {"reject_status": [200]}}"#,
                "settings.reject_status: 200 is not a 3xx-5xx status",
            ),
        ] {
            assert_eq!(init(json).err().as_deref(), Some(expected), "{json}");
        }
    }
}
