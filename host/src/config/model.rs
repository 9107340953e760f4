//! The validated configuration: what the rest of the host sees of config.d.
//! Field docs show the YAML each field comes from (`raw.rs` has the format).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::rate_limit::RateLimit;
use super::redact::LogUrl;

/// The plugin a subscription without `plugin:` uses.
pub const DEFAULT_PLUGIN: &str = "http-webhook";
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
pub(super) const DEFAULT_RETRIES: u32 = 3;
pub(super) const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);
pub(super) const DEFAULT_MAX_CONCURRENCY: usize = 50;
pub(super) const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(120);
pub(super) const DEFAULT_DEAD_LETTER_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The longest `dead_letter_after`: attempt records are kept a day longer.
pub const MAX_DEAD_LETTER_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// All of config.d, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `stream:` block, if one file has it (at most one may).
    pub stream: Option<StreamConfig>,
    /// Every file's `subscriptions:`, in file order then list order; at least one.
    pub subscriptions: Vec<Subscription>,
}

impl Config {
    /// The subscription called `name`.
    pub fn subscription(&self, name: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.name == name)
    }
}

/// The `stream:` block: the JetStream stream the host creates or updates.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// `name: hns_ticketing_events`
    pub name: String,
    /// `subjects: [ticket.>, order.>, ...]` — at least one, each a valid subject.
    pub subjects: Vec<String>,
    /// `max_age: 72h` — [`Duration::ZERO`] (the default) = unlimited.
    pub max_age: Duration,
    /// `storage: file` (default) or `storage: memory`.
    pub storage: Storage,
    /// `replicas: 3`; `None` leaves an existing stream's as they are.
    pub replicas: Option<usize>,
    /// `dead_letter_replicas: 3`; `None` follows the stream's.
    pub dead_letter_replicas: Option<usize>,
    /// `history: failures` (default), `all` or `off`.
    pub history: History,
    /// `history_max_age: 24h`; `None` follows the stream's `max_age`.
    pub history_max_age: Option<Duration>,
    /// Where the `stream:` key is.
    pub origin: Origin,
}

/// `storage:` of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// `storage: file` — survives a NATS restart.
    #[default]
    File,
    /// `storage: memory`
    Memory,
}

/// `history:` of the stream: which attempts `<stream>_attempts` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    /// Every attempt, first-try successes included.
    All,
    /// Every attempt of a message not delivered at its first try, and every
    /// dead letter: what `make bench` showed cheap (a first-try success
    /// costs a second stored message per message).
    #[default]
    Failures,
    /// None: no attempts stream.
    Off,
}

/// `ordering:` of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// `ordering: none` (the default) — messages run in parallel; a retried
    /// message may be overtaken by later ones.
    #[default]
    None,
    /// `ordering: per-subject` — messages of one subject are delivered in stream
    /// order, each after the previous one was delivered or dead-lettered.
    PerSubject,
}

/// One validated entry of `subscriptions:`.
///
/// `Debug` redacts header values, secret-looking settings and the webhook URL
/// (as its `log_url` says); [`plugin_init_json`] holds them in clear and must
/// not be logged.
///
/// [`plugin_init_json`]: Subscription::plugin_init_json
#[derive(Clone, PartialEq)]
pub struct Subscription {
    /// `name: stripe-drupal` — unique, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// `subject: "stripe.drupal"` — a valid subject filter, wildcards allowed.
    pub subject: String,
    /// `consumer: stripe-drupal-consumer` — the durable consumer's name, unique.
    pub consumer: String,
    /// `plugin: drupal-stripe` (default `http-webhook`), resolved to an existing file.
    pub plugin: PluginRef,
    /// `webhook: {url: ..., headers: {...}}`, expanded.
    pub webhook: Webhook,
    /// `settings: {...}` as JSON; always an object (`{}` when absent).
    pub settings: Value,
    /// `timeout: "15s"` — deadline of one HTTP call; greater than 0.
    pub timeout: Duration,
    /// `retries: 3` — attempts after the first.
    pub retries: u32,
    /// `backoff: "2s"` — delay before the first retry, doubled for each further one.
    pub backoff: Duration,
    /// `max_concurrency: 50` — deliveries in flight; at least 1.
    pub max_concurrency: usize,
    /// `ack_wait: "120s"` — greater than `timeout`.
    pub ack_wait: Duration,
    /// `ordering: per-subject` (default `none`).
    pub ordering: Ordering,
    /// `rate_limit: "200/s"` (also `/m`, `/h`) — delivery attempts started per
    /// period; `None` (the default) = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// `breaker: {...}` — the destination's circuit breaker.
    pub breaker: Breaker,
    /// `dead_letter_after: 24h` — how long after its publication a message
    /// may still be retried; at most [`MAX_DEAD_LETTER_AFTER`].
    pub dead_letter_after: Duration,
    /// The values `${VAR}` expansion took from the environment that are part of
    /// `webhook` or `settings` (not `settings.allow_hosts`): [`secrets`] decides
    /// which of them to keep out of plugin text.
    ///
    /// [`secrets`]: Subscription::secrets
    pub expanded: Vec<String>,
    /// Where the subscription's list entry starts.
    pub origin: Origin,
}

/// The `breaker:` block of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// `failures: 5` — consecutive destination failures that open it; 0 = off.
    pub failures: u32,
    /// `probe_interval: 1s` — the first wait before a probe; greater than 0.
    pub probe_interval: Duration,
    /// `max_probe_interval: 60s` — the longest; at least `probe_interval`.
    pub max_probe_interval: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 5,
            probe_interval: Duration::from_secs(1),
            max_probe_interval: Duration::from_secs(60),
        }
    }
}

/// The `plugin:` of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// As written (`http-webhook`, `./sinks/x.wasm`); `http-webhook` when absent.
    pub name: String,
    /// The `.wasm` file it resolved to; it existed when the config was loaded.
    pub path: PathBuf,
}

/// The `webhook:` block of a subscription, after `${VAR}` expansion.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `url: "https://..."` — an absolute http(s) URL, as written.
    pub url: String,
    /// `headers: {Authorization: "Bearer ..."}` — possibly empty.
    pub headers: BTreeMap<String, String>,
    /// `log_url: host` (default) or `log_url: full` — how much of `url` the host
    /// may print (see [`LogUrl`]).
    pub log_url: LogUrl,
}

/// A place in config.d: a file and, when known, a 1-based line. Displays as
/// `file:line` (or `file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config directory as given, joined with the file name.
    pub file: PathBuf,
    /// 1-based line in the file as written (before `${VAR}` expansion).
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

impl Subscription {
    /// How often a message is tried before it is dead-lettered: `retries + 1`.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The JSON handed to the plugin's `init`:
    /// `{"subscription": name, "webhook": {"url": .., "headers": {..}}, "settings": {..}}`.
    /// Holds secrets in clear: never log it.
    /// `settings.allow_hosts` is the host's (see [`Subscription::allowed_hosts`])
    /// and is left out, so a plugin with strict settings never has to declare it.
    pub fn plugin_init_json(&self) -> String {
        let mut settings = self.settings.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("allow_hosts");
        }
        serde_json::json!({
            "subscription": self.name,
            "webhook": {"url": self.webhook.url, "headers": self.webhook.headers},
            "settings": settings,
        })
        .to_string()
    }

    /// Hosts the plugin may send to, lowercase, without duplicates: first
    /// `webhook.url`'s `host:port` (the port written or the scheme's default, so
    /// allowing the webhook does not open every port of its host), then each entry
    /// of `settings.allow_hosts` as written (`host` = any port, `host:port`).
    pub fn allowed_hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        if let Ok(url) = Url::parse(&self.webhook.url)
            && let Some(host) = url.host_str()
        {
            let host = host.to_ascii_lowercase();
            match url.port_or_known_default() {
                Some(port) => hosts.push(format!("{host}:{port}")),
                None => hosts.push(host),
            }
        }
        let extra = self.settings.get("allow_hosts").and_then(Value::as_array);
        for host in extra.into_iter().flatten().filter_map(Value::as_str) {
            let host = host.to_ascii_lowercase();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::subscription;

    #[test]
    fn init_json_carries_webhook_and_settings() {
        let sub = subscription(
            serde_json::json!({"reject_status": [400], "allow_hosts": ["other.example"]}),
            &[("Authorization", "Bearer abc")],
        );
        // allow_hosts is the host's business, not the plugin's
        let json: Value = serde_json::from_str(&sub.plugin_init_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "subscription": "s",
                "webhook": {
                    "url": "https://user:hunter22@Hooks.Example.com:8443/x?y=1",
                    "headers": {"Authorization": "Bearer abc"},
                },
                "settings": {"reject_status": [400]},
            })
        );
        assert_eq!(sub.max_attempts(), 4);
    }

    #[test]
    fn allowed_hosts_adds_settings_hosts_once() {
        let sub = subscription(
            serde_json::json!({"allow_hosts": ["api.stripe.com", "HOOKS.example.com", "api.stripe.com"]}),
            &[],
        );
        assert_eq!(
            sub.allowed_hosts(),
            [
                "hooks.example.com:8443",
                "api.stripe.com",
                "hooks.example.com"
            ]
        );
        let mut default_port = subscription(Value::Object(Default::default()), &[]);
        default_port.webhook.url = "http://[::1]/x".into();
        assert_eq!(default_port.allowed_hosts(), ["[::1]:80"]);
    }
}
