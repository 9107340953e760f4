//! The mailer sink: for `mail.<template>` subjects, POSTs the JSON envelope
//! (see `sinkhost_sdk::envelope`) plus `"template"` — the subject after
//! `mail.`, so `mail.welcome` -> `welcome` and `mail.auth.reset` ->
//! `auth.reset` — to `webhook.url` (the mailer's `/mail-template`), with
//! `Content-Type: application/json`, the configured `webhook.headers`,
//! `X-API-Key: <settings.api_key>` and `Idempotency-Key: <message id>`.
//!
//! 2xx is delivered. 408, 425, 429 and 5xx retry (after `Retry-After` when
//! given), and so do timeouts and connection failures. Any other 4xx rejects
//! at once: the mailer refused this request (an unknown template, a missing
//! recipient) and sending it again will not change its mind. A subject not
//! under `mail.` rejects too. (1xx/3xx, which a mailer should never answer,
//! retry: with redirects not followed, nothing is lost by giving them the
//! subscription's attempts before the dead letter.)
//!
//! ```yaml
//! plugin: mailer-apikey
//! settings:
//!   api_key: "${MAILER_API_KEY}"   # required
//! ```

use sinkhost_sdk::http::{self, Response};
use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::{Config, Message, Outcome, Sink, envelope_with, export_sink};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    /// The mailer's API key, sent as `X-API-Key`.
    #[serde(default)]
    api_key: Option<String>,
}

const API_KEY_HEADER: &str = "X-API-Key";

struct Mailer {
    url: String,
    /// `Content-Type` (unless configured), the configured headers, `X-API-Key`.
    headers: Vec<(String, String)>,
}

impl Sink for Mailer {
    fn init(config: Config) -> Result<Self, String> {
        let Settings { api_key } = config.settings()?;
        let api_key = api_key
            .filter(|key| !key.is_empty())
            .ok_or("settings.api_key is required: the mailer's API key, sent as X-API-Key")?;
        if config.webhook.has_header(API_KEY_HEADER) {
            return Err(format!(
                "webhook.headers sets {API_KEY_HEADER}, which settings.api_key provides; remove it"
            ));
        }
        let mut headers = config
            .webhook
            .headers_with_defaults(&[("Content-Type", "application/json")]);
        headers.push((API_KEY_HEADER.into(), api_key));
        Ok(Mailer {
            url: config.webhook.require_url()?,
            headers,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let req = match self.request(msg) {
            Ok(req) => req,
            Err(reason) => return Outcome::Reject(reason),
        };
        http::deliver(msg, &req, classify)
    }
}

impl Mailer {
    /// The request for `msg`, or why there can be none.
    fn request(&self, msg: &Message) -> Result<http::Request, String> {
        let template = template(&msg.subject).ok_or_else(|| {
            format!(
                "subject {:?} is not under mail.: the mailer-apikey plugin sends mail.<template> subjects only",
                msg.subject
            )
        })?;
        Ok(http::Request::post(&self.url)
            .headers(self.headers.iter().cloned())
            .header("Idempotency-Key", &msg.id)
            .body(envelope_with(msg, &[("template", template.into())])))
    }
}

/// The template a subject names: what follows `mail.`.
fn template(subject: &str) -> Option<&str> {
    subject.strip_prefix("mail.").filter(|t| !t.is_empty())
}

/// The mailer's answer as an outcome (see the crate docs).
fn classify(resp: &Response) -> Outcome {
    Outcome::from_response_rejecting_4xx_except(resp, &[408, 425, 429], |resp| {
        format!(
            "the mailer answered {} (a 4xx other than 408, 425 or 429 never heals, e.g. an unknown template)",
            resp.summary(200)
        )
    })
}

export_sink!(Mailer);

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhost_sdk::testing::{self, response};

    fn init(json: &str) -> Result<Mailer, String> {
        Mailer::init(Config::from_json(json)?)
    }

    fn mailer() -> Mailer {
        init(
            r#"{"subscription": "m", "webhook": {"url": "http://mailer:3000/mail-template",
                "headers": {"X-Team": "crm"}}, "settings": {"api_key": "k3y"}}"#,
        )
        .unwrap()
    }

    fn msg(subject: &str) -> Message {
        Message {
            id: "mail-1".into(),
            ..testing::message(subject, r#"{"to":"a@example.com"}"#)
        }
    }

    #[test]
    fn template_is_the_subject_after_mail() {
        assert_eq!(template("mail.welcome"), Some("welcome"));
        assert_eq!(template("mail.auth.reset"), Some("auth.reset"));
        for other in [
            "mail",
            "mail.",
            "mailer.welcome",
            "order.completed",
            "x.mail.welcome",
        ] {
            assert_eq!(template(other), None, "{other}");
        }
    }

    #[test]
    fn request_is_the_envelope_plus_template_with_the_api_key() {
        let req = mailer().request(&msg("mail.auth.reset")).unwrap();
        assert_eq!(req.url(), "http://mailer:3000/mail-template");
        assert_eq!(
            req.header_list(),
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-Team".to_string(), "crm".to_string()),
                ("X-API-Key".to_string(), "k3y".to_string()),
                ("Idempotency-Key".to_string(), "mail-1".to_string()),
            ]
        );
        assert_eq!(
            String::from_utf8(req.body_bytes().to_vec()).unwrap(),
            r#"{"subject":"mail.auth.reset","data":{"to":"a@example.com"},"timestamp":"2026-04-21T08:09:50Z","message_id":"mail-1","template":"auth.reset"}"#
        );
    }

    #[test]
    fn a_subject_outside_mail_is_rejected_with_the_reason() {
        let err = mailer().request(&msg("order.completed")).unwrap_err();
        assert_eq!(
            err,
            r#"subject "order.completed" is not under mail.: the mailer-apikey plugin sends mail.<template> subjects only"#
        );
    }

    #[test]
    fn classification_by_status() {
        assert_eq!(classify(&response(200, &[], "")), Outcome::Delivered);
        assert_eq!(classify(&response(202, &[], "")), Outcome::Delivered);
        for status in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                classify(&response(status, &[], "")),
                Outcome::Retry(None),
                "{status}"
            );
        }
        assert_eq!(
            classify(&response(429, &[("Retry-After", "30")], "")),
            Outcome::Retry(Some(30_000))
        );
        assert_eq!(
            classify(&response(503, &[("retry-after", "5")], "")),
            Outcome::Retry(Some(5_000))
        );
        for status in [400, 401, 403, 404, 409, 410, 413, 422, 451, 499] {
            let Outcome::Reject(reason) = classify(&response(status, &[], "")) else {
                panic!("{status} should reject");
            };
            assert!(
                reason.starts_with(&format!("the mailer answered HTTP {status} (")),
                "{reason}"
            );
        }
        assert_eq!(
            classify(&response(422, &[], "unknown template \"welcom\"\n")),
            Outcome::Reject(
                "the mailer answered HTTP 422: unknown template \"welcom\" (a 4xx other than 408, 425 or 429 never heals, e.g. an unknown template)".into()
            )
        );
        // Never expected from a mailer; retried, then dead-lettered as usual.
        assert_eq!(classify(&response(301, &[], "")), Outcome::Retry(None));
    }

    #[test]
    fn init_requires_the_api_key_and_a_url() {
        let missing = "settings.api_key is required: the mailer's API key, sent as X-API-Key";
        for (json, expected) in [
            (
                r#"{"subscription": "m", "webhook": {"url": "http://m/x"}}"#,
                missing,
            ),
            (
                r#"{"subscription": "m", "webhook": {"url": "http://m/x"}, "settings": {"api_key": ""}}"#,
                missing,
            ),
            (
                r#"{"subscription": "m", "webhook": {"url": "http://m/x"}, "settings": {"apikey": "k"}}"#,
                "invalid settings: unknown field `apikey`, expected `api_key`",
            ),
            (
                r#"{"subscription": "m", "webhook": {"url": "http://m/x", "headers": {"x-api-key": "old"}},
                    "settings": {"api_key": "k"}}"#,
                "webhook.headers sets X-API-Key, which settings.api_key provides; remove it",
            ),
            (
                r#"{"subscription": "m", "settings": {"api_key": "k"}}"#,
                "webhook.url must be an absolute http:// or https:// URL",
            ),
        ] {
            assert_eq!(init(json).err().as_deref(), Some(expected), "{json}");
        }
    }
}
