//! `sinkhost plugin test`: run one plugin on one message, without NATS.
//!
//! Builds the subscription through config's own validation ([`config::load_text`]
//! on a one-entry document made from the command line, so it gets every default
//! and check `run` applies), prepares the plugin as `run` does, hands it a
//! single message and reports its outcome. With `dry_run` the `http` import
//! records requests instead of sending them, so an author can see exactly what
//! a destination would receive. Owns no delivery policy: the outcome is
//! reported, not acted on.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::redact::{LogUrl, redact, show_url};
use crate::config::{self, ConfigError, PluginSearch, Subscription};
use crate::outbound::{self, Allowlist, Outbound};
use crate::plugin::{Delivery, Limits, Message, PluginError, Runtime};
use crate::run;

/// One plugin run, as the command line describes it.
#[derive(Debug, Clone)]
pub(crate) struct TryOut {
    /// The plugin as given: a built-in name or a path to a `.wasm`.
    pub(crate) plugin: String,
    /// Where built-in names resolve.
    pub(crate) plugins: PluginSearch,
    /// `webhook.url`.
    pub(crate) url: String,
    /// `webhook.headers`.
    pub(crate) webhook_headers: BTreeMap<String, String>,
    /// `settings`.
    pub(crate) settings: serde_json::Value,
    /// The message's subject.
    pub(crate) subject: String,
    /// The message's payload.
    pub(crate) payload: Vec<u8>,
    /// The message's NATS headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The message id the plugin sees.
    pub(crate) id: String,
    /// Record requests instead of sending them.
    pub(crate) dry_run: bool,
    /// Per-request timeout when sending for real.
    pub(crate) timeout: Duration,
    /// How much of the URL the output may show (`webhook.log_url`).
    pub(crate) log_url: LogUrl,
}

/// What happened.
#[derive(Debug)]
pub(crate) struct Report {
    /// The plugin's outcome, or why the call failed.
    pub(crate) result: Result<Delivery, PluginError>,
    /// The requests the plugin made (dry run only), secrets masked.
    pub(crate) requests: Vec<String>,
}

/// Why the plugin could not be run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TryOutError {
    /// The command line does not make a valid subscription.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugin did not load or its `init` failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// What the one-entry document of a try-out is called in messages.
const ORIGIN: &str = "plugin test";

impl TryOut {
    /// The subscription `run` would run for this command line.
    fn subscription(&self) -> Result<Subscription, ConfigError> {
        let entry = serde_json::json!({
            "name": "plugin-test",
            "subject": self.subject,
            "consumer": "plugin-test",
            "plugin": self.plugin,
            "webhook": {
                "url": self.url,
                "headers": self.webhook_headers,
                "log_url": self.log_url,
            },
            "settings": self.settings,
            "timeout": humantime::format_duration(self.timeout).to_string(),
            "ack_wait": humantime::format_duration(self.timeout * 2).to_string(),
            "max_concurrency": 1,
        });
        let document = serde_json::json!({ "subscriptions": [entry] });
        let yaml = serde_yaml::to_string(&document).expect("JSON values are valid YAML");
        // Nothing on the command line is a `${VAR}`.
        let text = yaml.replace('$', "$$");
        let mut config = config::load_text(ORIGIN, &text, &|_| None, &self.plugins)?;
        Ok(config.subscriptions.remove(0))
    }

    /// Loads and initialises the plugin, then delivers the message once. A
    /// command line that is no valid subscription, or a plugin that fails to
    /// load or `init`, is an `Err`; a failed `deliver` is reported in
    /// [`Report::result`].
    pub(crate) async fn run(&self) -> Result<Report, TryOutError> {
        let sub = self.subscription()?;
        let allow = Allowlist::new(&sub.allowed_hosts());
        let (outbound, recorder) = if self.dry_run {
            let (outbound, recorder) = Outbound::dry_run(allow);
            (outbound, Some(recorder))
        } else {
            let client = Outbound::shared_client();
            (Outbound::new(client, allow, sub.timeout), None)
        };
        let outbound = outbound
            .with_log_url(self.log_url)
            .with_webhook(&sub.webhook.url);
        let runtime = Runtime::new(Limits::default())?;
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
pub(crate) fn render(req: &outbound::Request, log_url: LogUrl, secrets: &[String]) -> String {
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

    fn tryout(dir: &std::path::Path) -> TryOut {
        std::fs::write(dir.join("my-sink.wasm"), b"").unwrap();
        TryOut {
            plugin: "my-sink".into(),
            plugins: PluginSearch {
                dirs: vec![dir.to_owned()],
            },
            url: "http://127.0.0.1:8091/hook".into(),
            webhook_headers: BTreeMap::from([("X-Key".into(), "pa$$word".into())]),
            settings: serde_json::json!({"api_key": "k3y$HOME"}),
            subject: "mail.welcome".into(),
            payload: Vec::new(),
            headers: Vec::new(),
            id: "plugin-test-1".into(),
            dry_run: true,
            timeout: Duration::from_secs(3),
            log_url: LogUrl::Host,
        }
    }

    #[test]
    fn the_command_line_becomes_a_validated_subscription() {
        let dir = tempfile::tempdir().unwrap();
        let sub = tryout(dir.path()).subscription().unwrap();
        assert_eq!(sub.plugin.path, dir.path().join("my-sink.wasm"));
        assert_eq!(sub.plugin.name, "my-sink");
        assert_eq!(sub.timeout, Duration::from_secs(3));
        assert_eq!(sub.ack_wait, Duration::from_secs(6));
        assert_eq!(
            (sub.retries, sub.backoff),
            (3, Duration::from_secs(2)),
            "config's defaults"
        );
        assert_eq!(
            sub.webhook.headers["X-Key"], "pa$$word",
            "no `${{VAR}}` expansion"
        );
        assert_eq!(sub.settings["api_key"], "k3y$HOME");
    }

    #[test]
    fn a_bad_command_line_gets_configs_message() {
        let dir = tempfile::tempdir().unwrap();
        let bad_url = TryOut {
            url: "ftp://h/x".into(),
            ..tryout(dir.path())
        };
        let error = bad_url.subscription().unwrap_err().to_string();
        assert!(
            error.starts_with("plugin test:") && error.contains("subscriptions[0].webhook.url"),
            "{error}"
        );
        let missing = TryOut {
            plugin: "nope".into(),
            ..tryout(dir.path())
        };
        let error = missing.subscription().unwrap_err().to_string();
        assert!(error.contains("plugin \"nope\" not found"), "{error}");
    }

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
