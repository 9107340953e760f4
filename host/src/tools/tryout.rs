//! `sinkhost plugin test`: run one plugin on one message, without NATS.
//!
//! Builds the subscription through config's own validation ([`config::load_text`]
//! on a one-entry document made from the command line, so it gets every default
//! and check `run` applies), prepares the plugin as `run` does, hands it a
//! single message and reports its outcome with what the host would do next
//! (the retry policy's own [`Action`]). With `dry_run` the `http` import
//! records requests instead of sending them, so an author can see exactly what
//! a destination would receive; `respond` scripts the destination's answers,
//! and while they last a retried message is delivered again, attempt after
//! attempt, as the host would (without waiting out the delays).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::redact::{LogUrl, redact, show_url};
use crate::config::{self, ConfigError, PluginSearch, Subscription};
use crate::delivery::classify::classify;
use crate::delivery::retry::{Action, Policy};
use crate::outbound::{self, Allowlist, Answer, Outbound, Recorder};
use crate::plugin::{Delivery, Limits, Message, PluginError, Runtime, Sink};
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
    /// The destination's answers, one per request, in order (implies
    /// `dry_run`); `200` once they are used up.
    pub(crate) respond: Vec<Answer>,
    /// The number of the first attempt.
    pub(crate) attempt: u32,
    /// Attempts in all (`retries + 1`); `None` keeps config's default.
    pub(crate) max_attempts: Option<u32>,
    /// Per-request timeout when sending for real.
    pub(crate) timeout: Duration,
    /// How much of the URL the output may show (`webhook.log_url`).
    pub(crate) log_url: LogUrl,
}

/// What happened, attempt by attempt.
#[derive(Debug)]
pub(crate) struct Report {
    /// At least one.
    pub(crate) attempts: Vec<Tried>,
}

/// One `deliver` call and what the host would do after it.
#[derive(Debug)]
pub(crate) struct Tried {
    /// Its attempt number, and of how many.
    pub(crate) attempt: u32,
    /// Attempts in all.
    pub(crate) max_attempts: u32,
    /// The requests the plugin made (dry run only) as an author reads them,
    /// secrets masked, each with the scripted answer it got.
    pub(crate) requests: Vec<String>,
    /// The plugin's outcome, or why the call failed.
    pub(crate) result: Result<Delivery, PluginError>,
    /// What the host would do next, as its retry policy decides.
    pub(crate) action: Action,
}

impl Report {
    /// Whether the message ended delivered.
    pub(crate) fn delivered(&self) -> bool {
        self.attempts
            .last()
            .is_some_and(|tried| tried.action == Action::Ack)
    }
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
    pub(crate) fn subscription(&self) -> Result<Subscription, ConfigError> {
        let mut entry = serde_json::json!({
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
        if let Some(max) = self.max_attempts {
            entry["retries"] = max.saturating_sub(1).into();
        }
        let document = serde_json::json!({ "subscriptions": [entry] });
        let yaml = serde_yaml::to_string(&document).expect("JSON values are valid YAML");
        // Nothing on the command line is a `${VAR}`.
        let text = yaml.replace('$', "$$");
        let mut config = config::load_text(ORIGIN, &text, &|_| None, &self.plugins)?;
        Ok(config.subscriptions.remove(0))
    }

    /// The plugin of `sub`, loaded and initialised as `run` does it, sending
    /// through `outbound`.
    pub(crate) async fn sink(
        &self,
        runtime: &Runtime,
        sub: &Subscription,
        outbound: Outbound,
    ) -> Result<Sink, PluginError> {
        let outbound = outbound
            .with_log_url(self.log_url)
            .with_webhook(&sub.webhook.url);
        let sink = runtime.sink(run::sink_spec(sub, outbound))?;
        sink.check().await?;
        Ok(sink)
    }

    /// The message, as attempt `attempt` of `max_attempts` hands it over.
    pub(crate) fn message(&self, attempt: u32, max_attempts: u32) -> Message {
        Message {
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            id: self.id.clone(),
            published_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            attempt,
            max_attempts,
        }
    }

    /// Loads and initialises the plugin, then delivers the message: once, or
    /// again after each retry while scripted answers are left. A command line
    /// that is no valid subscription, or a plugin that fails to load or
    /// `init`, is an `Err`; a failed `deliver` is reported in [`Tried::result`].
    pub(crate) async fn run(&self) -> Result<Report, TryOutError> {
        let sub = self.subscription()?;
        let allow = Allowlist::new(&sub.allowed_hosts());
        let (outbound, recorder) = if self.dry_run || !self.respond.is_empty() {
            let (outbound, recorder) = Outbound::dry_run(allow);
            recorder.script(self.respond.iter().cloned());
            (outbound, Some(recorder))
        } else {
            let client = Outbound::shared_client();
            (Outbound::new(client, allow, sub.timeout), None)
        };
        let runtime = Runtime::new(Limits::default())?;
        let sink = self.sink(&runtime, &sub, outbound).await?;
        let policy = Policy::of(&sub);
        let secrets = sub.secrets();
        let mut attempts = Vec::new();
        let mut attempt = self.attempt.max(1);
        // One message: a redelivery keeps its id and publication time.
        let mut message = self.message(attempt, policy.max_attempts);
        loop {
            message.attempt = attempt;
            let result = sink.deliver(&message).await;
            let (classified, _) = classify(&sub, Ok(result.clone()));
            let action = policy.decide(classified, attempt);
            let again = matches!(action, Action::Nak(_) | Action::Again(_))
                && recorder.as_ref().is_some_and(|r| r.unanswered() > 0);
            let requests = recorder
                .as_ref()
                .map(|r| self.rendered(r, &secrets))
                .unwrap_or_default();
            attempts.push(Tried {
                attempt,
                max_attempts: policy.max_attempts,
                requests,
                result,
                action: action.clone(),
            });
            if !again {
                return Ok(Report { attempts });
            }
            // `Again`: the call did not happen, the number stays.
            if matches!(action, Action::Nak(_)) {
                attempt += 1;
            }
        }
    }

    fn rendered(&self, recorder: &Recorder, secrets: &[String]) -> Vec<String> {
        recorder
            .take_answered()
            .iter()
            .map(|(req, answer)| {
                let mut text = render(req, self.log_url, secrets);
                text.push_str(&format!("\n-> answered {}", answer.status));
                for (name, value) in &answer.headers {
                    text.push_str(&format!(", {name}: {value}"));
                }
                text
            })
            .collect()
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
            respond: Vec::new(),
            attempt: 1,
            max_attempts: None,
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
