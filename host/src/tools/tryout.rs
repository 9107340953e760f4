//! `sinkhost plugin test`: run one plugin on one message, without NATS.
//!
//! Builds the same subscription, init JSON and sandbox that `run` would, hands
//! the plugin a single message and reports its outcome. With `dry_run` the
//! `http` import records requests instead of sending them, so an author can see
//! exactly what a destination would receive. Owns no delivery policy: the
//! outcome is reported, not acted on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::redact::{LogUrl, redact, show_url};
use crate::config::{Origin, PluginRef, Subscription, Webhook};
use crate::outbound::{self, Allowlist, Outbound};
use crate::plugin::{Delivery, Limits, Message, PluginError, Runtime};
use crate::run;

/// One plugin run, as the command line describes it.
#[derive(Debug, Clone)]
pub struct TryOut {
    /// The resolved `.wasm`.
    pub plugin: PathBuf,
    /// The name shown for it.
    pub plugin_name: String,
    /// `webhook.url`.
    pub url: String,
    /// `webhook.headers`.
    pub webhook_headers: BTreeMap<String, String>,
    /// `settings`.
    pub settings: serde_json::Value,
    /// The message's subject.
    pub subject: String,
    /// The message's payload.
    pub payload: Vec<u8>,
    /// The message's NATS headers.
    pub headers: Vec<(String, String)>,
    /// The message id the plugin sees.
    pub id: String,
    /// Record requests instead of sending them.
    pub dry_run: bool,
    /// Per-request timeout when sending for real.
    pub timeout: Duration,
    /// How much of the URL the output may show (`webhook.log_url`).
    pub log_url: LogUrl,
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    /// The plugin's outcome, or why the call failed.
    pub result: Result<Delivery, PluginError>,
    /// The requests the plugin made (dry run only), secrets masked.
    pub requests: Vec<String>,
}

impl TryOut {
    fn subscription(&self) -> Subscription {
        Subscription {
            name: "plugin-test".into(),
            subject: self.subject.clone(),
            consumer: "plugin-test".into(),
            plugin: PluginRef {
                name: self.plugin_name.clone(),
                path: self.plugin.clone(),
            },
            webhook: Webhook {
                url: self.url.clone(),
                headers: self.webhook_headers.clone(),
                log_url: self.log_url,
            },
            settings: self.settings.clone(),
            timeout: self.timeout,
            retries: 3,
            backoff: Duration::from_secs(2),
            max_concurrency: 1,
            ack_wait: self.timeout * 2,
            ordering: crate::config::Ordering::None,
            rate_limit: None,
            // Nothing on the command line is expanded from the environment.
            expanded: Vec::new(),
            origin: Origin {
                file: PathBuf::from("<command line>"),
                line: None,
            },
        }
    }

    /// Loads and initialises the plugin, then delivers the message once. A
    /// plugin that fails to load or `init` is an `Err`; a failed `deliver`
    /// is reported in [`Report::result`].
    pub async fn run(&self) -> Result<Report, PluginError> {
        let sub = self.subscription();
        let allow = Allowlist::new(&sub.allowed_hosts());
        let (outbound, recorder) = if self.dry_run {
            let (outbound, recorder) = Outbound::dry_run(allow);
            (outbound, Some(recorder))
        } else {
            let client = Outbound::shared_client();
            (Outbound::new(client, allow, sub.timeout), None)
        };
        let outbound = outbound.with_log_url(self.log_url);
        let runtime = Runtime::new(Limits::default(), 2)?;
        let sink = runtime.sink(run::sink_spec(&sub, outbound))?;
        sink.check().await?;
        let message = Message {
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            id: self.id.clone(),
            published_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            attempt: 1,
            max_attempts: sub.max_attempts(),
        };
        let result = sink.deliver(&message).await;
        let secrets = sub.secrets();
        let requests = recorder
            .map(|r| {
                let taken = r.take();
                taken
                    .iter()
                    .map(|req| render(req, self.log_url, &secrets))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Report { result, requests })
    }
}

/// Header names whose values are credentials whatever config.d says.
const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "stripe-signature",
    "webhook-signature",
];

/// A request as an author wants to read it: method and URL (as `log_url`
/// lets it be shown), headers with credentials masked, and the body (text, or
/// its size when binary).
pub fn render(req: &outbound::Request, log_url: LogUrl, secrets: &[String]) -> String {
    let mut text = format!("{} {}\n", req.method, show_url(&req.url, log_url));
    for (name, value) in &req.headers {
        let shown = if SENSITIVE.contains(&name.to_ascii_lowercase().as_str()) {
            "[masked]".to_owned()
        } else {
            redact(value, secrets)
        };
        text.push_str(&format!("{name}: {shown}\n"));
    }
    text.push('\n');
    match std::str::from_utf8(&req.body) {
        Ok(body) => text.push_str(&redact(body, secrets)),
        Err(_) => text.push_str(&format!("<{} bytes of binary body>", req.body.len())),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_masks_credentials_and_configured_secrets() {
        let req = outbound::Request {
            method: "POST".into(),
            url: "http://h.example/hook?token=tok-12345".into(),
            headers: vec![
                ("Authorization".into(), "Bearer abcdef".into()),
                ("X-Echo".into(), "copy of tok-12345".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: br#"{"key":"tok-12345"}"#.to_vec(),
        };
        let secrets = ["tok-12345".to_owned()];
        let shown = render(&req, LogUrl::Host, &secrets);
        assert_eq!(
            shown,
            "POST http://h.example:80/...\nAuthorization: [masked]\nX-Echo: copy of [redacted]\nContent-Type: application/json\n\n{\"key\":\"[redacted]\"}"
        );
        let full = render(&req, LogUrl::Full, &secrets);
        assert!(
            full.starts_with("POST http://h.example/hook?token=tok-12345\n"),
            "{full}"
        );
    }
}
