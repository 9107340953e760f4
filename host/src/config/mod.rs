//! config.d: reads the `*.yml` / `*.yaml` files of a directory, expands `${VAR}`
//! from the environment, and validates them into the [`Config`] the rest of the
//! host runs on.
//!
//! Owns the file format (the reference documentation is in `config/raw.rs`), the
//! expansion syntax (`config/expand.rs`) and every check that can be made without
//! NATS or wasmtime: names, subjects, URLs, durations, uniqueness, and that each
//! plugin file exists. It does not connect to NATS and does not compile or run
//! plugins; `sinkhost check` does both on top of [`load`].
//!
//! Every error names the file (the directory as given joined with the file name),
//! the line when one is known, and the dotted key path:
//!
//! ```text
//! config.d/20-mailer.yml:9: subscriptions[0].backoff: invalid duration "2x" (expected e.g. "2s", "500ms", "1h30m")
//! ```
//!
//! [`load`] stops at the first error, in file order.

mod expand;
mod lines;
mod raw;
pub mod redact;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use expand::{ExpandError, Expanded};
use lines::KeyLines;
use raw::{RawFile, RawStream, RawSubscription, RawWebhook};

pub use crate::bus::ratelimit::RateLimit;
pub use crate::config::redact::LogUrl;
use redact::MIN_SECRET_LEN;

/// The plugin a subscription without `plugin:` uses.
pub const DEFAULT_PLUGIN: &str = "http-webhook";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);
const DEFAULT_MAX_CONCURRENCY: usize = 50;
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(120);

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
    /// The values `${VAR}` expansion took from the environment that are part of
    /// `webhook` or `settings` (not `settings.allow_hosts`): [`secrets`] decides
    /// which of them to keep out of plugin text.
    ///
    /// [`secrets`]: Subscription::secrets
    pub expanded: Vec<String>,
    /// Where the subscription's list entry starts.
    pub origin: Origin,
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

/// Where built-in plugin names (no `/`, no `.wasm` suffix) are looked up: the
/// first directory holding `<name>.wasm` wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSearch {
    /// Searched in order.
    pub dirs: Vec<PathBuf>,
}

impl PluginSearch {
    /// The directories of `SINKHOST_PLUGIN_DIR` (one, or several separated like
    /// `PATH`), then `plugins/` next to the running binary.
    pub fn from_env() -> Self {
        let mut dirs = Vec::new();
        if let Some(value) = std::env::var_os("SINKHOST_PLUGIN_DIR") {
            dirs.extend(std::env::split_paths(&value).filter(|d| !d.as_os_str().is_empty()));
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(bin_dir) = exe.parent()
        {
            dirs.push(bin_dir.join("plugins"));
        }
        PluginSearch { dirs }
    }

    /// Resolves a `plugin:` value: a built-in name through [`Self::dirs`], a path
    /// (containing `/` or ending in `.wasm`) relative to `base` (the YAML file's
    /// directory). On failure returns every path that was tried.
    pub fn resolve(&self, plugin: &str, base: &Path) -> Result<PathBuf, Vec<PathBuf>> {
        let candidates: Vec<PathBuf> = if is_plugin_path(plugin) {
            // `components()` drops the `.` of `./x.wasm`, keeping messages readable.
            vec![base.join(plugin).components().collect()]
        } else {
            let file = format!("{plugin}.wasm");
            self.dirs.iter().map(|dir| dir.join(&file)).collect()
        };
        match candidates.iter().find(|path| path.is_file()) {
            Some(found) => Ok(found.clone()),
            None => Err(candidates),
        }
    }
}

fn is_plugin_path(plugin: &str) -> bool {
    plugin.contains('/') || plugin.ends_with(".wasm")
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

    /// Strings to redact from text a plugin writes (log lines, reject reasons,
    /// init errors, traps), longest first. Values shorter than
    /// [`MIN_SECRET_LEN`] are left out.
    ///
    /// - every webhook header value, and the credential alone of a
    ///   `Bearer <token>`-style value;
    /// - the URL's password; unless `log_url: full`, also its user name, path,
    ///   query (whole and each value) and fragment ([`redact::url_secrets`]);
    /// - every string or number under a settings key containing `secret`,
    ///   `key`, `token` or `password` (at any depth);
    /// - every value `${VAR}` expansion put into a header value or `settings`,
    ///   and unless `log_url: full` into the URL's hidden parts. (Scheme, host
    ///   and port are never secret: the host names them in its own messages.)
    pub fn secrets(&self) -> Vec<String> {
        let url_parts = self.url_secrets();
        let mut found = header_secrets(&self.webhook.headers);
        settings_secrets(&self.settings, false, &mut found);
        // A `${VAR}` value counts where it lands in text a plugin could echo;
        // inside the URL that is only its hidden parts.
        let texts: Vec<String> = self
            .webhook
            .headers
            .values()
            .cloned()
            .chain(settings_scalars(&self.settings))
            .chain(url_parts.iter().cloned())
            .collect();
        let expanded = self
            .expanded
            .iter()
            .filter(|value| contained_in(value, &texts));
        found.extend(expanded.cloned());
        found.extend(url_parts);
        let mut secrets: Vec<String> = found
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets
    }

    /// The secret parts of `webhook.url`: all that [`LogUrl::Host`] hides, or
    /// under `log_url: full` the password alone.
    fn url_secrets(&self) -> Vec<String> {
        match Url::parse(&self.webhook.url) {
            Ok(url) if self.webhook.log_url == LogUrl::Host => redact::url_secrets(&url),
            Ok(url) => url.password().map(str::to_owned).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Every header value, and the credential alone of `Bearer <token>`-style
/// values: a plugin may log the token by itself.
fn header_secrets(headers: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for value in headers.values() {
        found.insert(value.clone());
        if let Some((scheme, credential)) = value.trim().split_once(' ')
            && scheme.chars().all(|c| c.is_ascii_alphabetic())
            && !credential.trim().contains(' ')
        {
            found.insert(credential.trim().to_owned());
        }
    }
    found
}

/// Whether `value` occurs in one of `texts`.
fn contained_in(value: &str, texts: &[String]) -> bool {
    texts.iter().any(|text| text.contains(value))
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "key", "token", "password"]
        .iter()
        .any(|word| key.contains(word))
}

fn settings_secrets(value: &Value, secret: bool, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if secret => {
            found.insert(s.clone());
        }
        Value::Number(n) if secret => {
            found.insert(n.to_string());
        }
        Value::Array(items) => {
            for item in items {
                settings_secrets(item, secret, found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                settings_secrets(item, secret || is_secret_key(key), found);
            }
        }
        _ => {}
    }
}

/// Every string and number of `settings` as text, except `allow_hosts` (host
/// names, which the host shows anyway).
fn settings_scalars(settings: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(map) => map
                .iter()
                .filter(|(key, _)| key.as_str() != "allow_hosts")
                .for_each(|(_, item)| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(settings, &mut out);
    out
}

/// `settings` with secret-looking strings replaced, for `Debug`.
fn redacted_settings(value: &Value, secret: bool) -> Value {
    match value {
        Value::String(_) if secret => Value::String("<redacted>".into()),
        Value::Array(items) => items
            .iter()
            .map(|item| redacted_settings(item, secret))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| {
                let item = redacted_settings(item, secret || is_secret_key(key));
                (key.clone(), item)
            })
            .collect(),
        other => other.clone(),
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("Webhook")
            .field("url", &redact::show_url(&self.url, self.log_url))
            .field("headers", &headers)
            .field("log_url", &self.log_url)
            .finish()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("consumer", &self.consumer)
            .field("plugin", &self.plugin)
            .field("webhook", &self.webhook)
            .field("settings", &redacted_settings(&self.settings, false))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_concurrency", &self.max_concurrency)
            .field("ack_wait", &self.ack_wait)
            .field("ordering", &self.ordering)
            .field("rate_limit", &self.rate_limit)
            .field(
                "expanded",
                &format_args!("<{} redacted>", self.expanded.len()),
            )
            .field("origin", &self.origin)
            .finish()
    }
}

/// Why config.d cannot be used. Each message starts with `file:line: key:` where
/// they are known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The directory is missing or unreadable.
    #[error("{dir}: cannot read the config directory: {source}", dir = .dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is unreadable or not UTF-8.
    #[error("{file}: cannot read: {source}", file = .file.display())]
    ReadFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no `*.yml` / `*.yaml` file.
    #[error(
        "{dir}: no *.yml or *.yaml files (sinkhost needs at least one subscription)",
        dir = .dir.display()
    )]
    NoConfigFiles { dir: PathBuf },
    /// The files define no subscription at all.
    #[error(
        "{dir}: subscriptions: none defined in {files} file(s) (sinkhost needs at least one subscription)",
        dir = .dir.display()
    )]
    NoSubscriptions { dir: PathBuf, files: usize },
    /// `${VAR}` without a default, `VAR` unset.
    #[error(
        "{at}: {}environment variable {var} is not set (write ${{{var}:-default}} to give it a default)",
        key_prefix(.key)
    )]
    UnsetVariable {
        at: Origin,
        key: Option<String>,
        var: String,
    },
    /// A malformed `${...}`.
    #[error("{at}: {}{problem}", key_prefix(.key))]
    BadExpansion {
        at: Origin,
        key: Option<String>,
        problem: String,
    },
    /// Not YAML, or not the config.d format: syntax errors, unknown keys
    /// (`deny_unknown_fields`), missing required keys, wrong types. `message` is
    /// serde_yaml's, which starts with the key path.
    #[error("{at}: {message}")]
    Yaml { at: Origin, message: String },
    /// A duration that does not parse.
    #[error("{at}: {key}: invalid duration {value:?} (expected e.g. \"2s\", \"500ms\", \"1h30m\")")]
    InvalidDuration {
        at: Origin,
        key: String,
        value: String,
    },
    /// A subscription, consumer or stream name with characters NATS or sinkhost
    /// do not accept.
    #[error("{at}: {key}: invalid name {value:?} ({reason})")]
    InvalidName {
        at: Origin,
        key: String,
        value: String,
        reason: &'static str,
    },
    /// Not a valid NATS subject.
    #[error("{at}: {key}: invalid subject {value:?} ({reason})")]
    InvalidSubject {
        at: Origin,
        key: String,
        value: String,
        reason: &'static str,
    },
    /// `webhook.url` is not an absolute http(s) URL. `value` is the URL as
    /// `log_url` lets it be shown.
    #[error("{at}: {key}: invalid URL {value:?}: {reason} (expected e.g. \"https://host/path\")")]
    InvalidUrl {
        at: Origin,
        key: String,
        value: String,
        reason: String,
    },
    /// Any other value out of range or of the wrong shape.
    #[error("{at}: {key}: {reason}")]
    InvalidValue {
        at: Origin,
        key: String,
        reason: String,
    },
    /// Two subscriptions with one name. (`first` is boxed to keep `Result`s small.)
    #[error("{at}: {key}: duplicate subscription name {name:?} (first defined at {first})")]
    DuplicateName {
        at: Origin,
        key: String,
        name: String,
        first: Box<Origin>,
    },
    /// Two subscriptions on one durable consumer.
    #[error(
        "{at}: {key}: consumer {consumer:?} is already used at {first} (subscriptions sharing a durable consumer would split its messages)"
    )]
    DuplicateConsumer {
        at: Origin,
        key: String,
        consumer: String,
        first: Box<Origin>,
    },
    /// A second `stream:` block.
    #[error(
        "{at}: stream: defined again (first defined at {first}); config.d may define one stream"
    )]
    DuplicateStream { at: Origin, first: Origin },
    /// The `plugin:` file does not exist.
    #[error("{at}: {key}: plugin {plugin:?} not found ({})", looked_in(.searched))]
    PluginNotFound {
        at: Origin,
        key: String,
        plugin: String,
        searched: Vec<PathBuf>,
    },
    /// `ack_wait` <= `timeout`.
    #[error(
        "{at}: {key}: ack_wait must exceed timeout so a message is not redelivered while its webhook call is still running (ack_wait is {}, timeout is {})",
        humantime::format_duration(*.ack_wait),
        humantime::format_duration(*.timeout)
    )]
    AckWaitNotAboveTimeout {
        at: Origin,
        key: String,
        ack_wait: Duration,
        timeout: Duration,
    },
    /// A subscription subject that none of the stream's subjects overlaps.
    #[error(
        "{at}: {key}: subject {subject:?} is outside stream {stream:?} (no overlap with stream.subjects), so NATS would refuse the consumer"
    )]
    SubjectNotInStream {
        at: Origin,
        key: String,
        subject: String,
        stream: String,
    },
}

impl ConfigError {
    /// The file and line the error is about, when it is about one.
    pub fn origin(&self) -> Option<&Origin> {
        use ConfigError::*;
        match self {
            ReadDir { .. } | ReadFile { .. } | NoConfigFiles { .. } | NoSubscriptions { .. } => {
                None
            }
            UnsetVariable { at, .. }
            | BadExpansion { at, .. }
            | Yaml { at, .. }
            | InvalidDuration { at, .. }
            | InvalidName { at, .. }
            | InvalidSubject { at, .. }
            | InvalidUrl { at, .. }
            | InvalidValue { at, .. }
            | DuplicateName { at, .. }
            | DuplicateConsumer { at, .. }
            | DuplicateStream { at, .. }
            | PluginNotFound { at, .. }
            | AckWaitNotAboveTimeout { at, .. }
            | SubjectNotInStream { at, .. } => Some(at),
        }
    }
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

fn looked_in(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return "no plugin directory to look in: set SINKHOST_PLUGIN_DIR".into();
    }
    let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    format!("looked for {}", paths.join(", "))
}

/// Loads and validates every `*.yml` and `*.yaml` file of `dir`, in file name
/// order. `env` supplies `${VAR}` values (`|name| std::env::var(name).ok()` in
/// production); `plugins` resolves built-in plugin names.
pub fn load(
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    plugins: &PluginSearch,
) -> Result<Config, ConfigError> {
    let files = config_files(dir)?;
    if files.is_empty() {
        return Err(ConfigError::NoConfigFiles {
            dir: dir.to_owned(),
        });
    }
    let mut stream: Option<StreamConfig> = None;
    let mut subscriptions = Vec::new();
    // Where each subscription's subject is written, for the stream check below.
    let mut subject_keys = Vec::new();
    let mut names: HashMap<String, Origin> = HashMap::new();
    let mut consumers: HashMap<String, Origin> = HashMap::new();
    for file in &files {
        let doc = Document::read(file, env)?;
        let Some(raw) = doc.parse()? else { continue };
        if let Some(raw_stream) = raw.stream {
            let parsed = doc.stream(raw_stream)?;
            if let Some(first) = &stream {
                return Err(ConfigError::DuplicateStream {
                    at: parsed.origin,
                    first: first.origin.clone(),
                });
            }
            stream = Some(parsed);
        }
        for (index, raw_sub) in raw.subscriptions.into_iter().flatten().enumerate() {
            let key = format!("subscriptions[{index}]");
            let sub = doc.subscription(&key, raw_sub, plugins)?;
            let name_key = format!("{key}.name");
            if let Some(first) = names.get(&sub.name) {
                return Err(ConfigError::DuplicateName {
                    at: doc.at(&name_key),
                    key: name_key,
                    name: sub.name,
                    first: Box::new(first.clone()),
                });
            }
            names.insert(sub.name.clone(), doc.at(&name_key));
            let consumer_key = format!("{key}.consumer");
            if let Some(first) = consumers.get(&sub.consumer) {
                return Err(ConfigError::DuplicateConsumer {
                    at: doc.at(&consumer_key),
                    key: consumer_key,
                    consumer: sub.consumer,
                    first: Box::new(first.clone()),
                });
            }
            consumers.insert(sub.consumer.clone(), doc.at(&consumer_key));
            let subject_key = format!("{key}.subject");
            subject_keys.push((doc.at(&subject_key), subject_key));
            subscriptions.push(sub);
        }
    }
    if subscriptions.is_empty() {
        return Err(ConfigError::NoSubscriptions {
            dir: dir.to_owned(),
            files: files.len(),
        });
    }
    if let Some(stream) = &stream {
        for (sub, (at, key)) in subscriptions.iter().zip(subject_keys) {
            if !stream
                .subjects
                .iter()
                .any(|s| subjects_collide(s, &sub.subject))
            {
                return Err(ConfigError::SubjectNotInStream {
                    at,
                    key,
                    subject: sub.subject.clone(),
                    stream: stream.name.clone(),
                });
            }
        }
    }
    Ok(Config {
        stream,
        subscriptions,
    })
}

/// The config files of `dir`, sorted by file name. Hidden files are skipped
/// (editor backups, Kubernetes ConfigMap `..data` entries).
fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_dir_error = |source| ConfigError::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
        let name = entry.map_err(read_dir_error)?.file_name();
        let path = Path::new(&name);
        let is_yaml = path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml");
        let hidden = name.as_encoded_bytes().starts_with(b".");
        if is_yaml && !hidden && dir.join(&name).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// One expanded file, with the line index that places its keys.
struct Document<'a> {
    file: &'a Path,
    expanded: Expanded,
    lines: KeyLines,
}

impl<'a> Document<'a> {
    fn read(file: &'a Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::ReadFile {
            file: file.to_owned(),
            source,
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let expanded = expand::expand(text, env).map_err(|err| {
            let (ExpandError::Unset { line, .. } | ExpandError::Syntax { line, .. }) = err;
            // The unexpanded text is usually valid YAML: use it to name the key.
            let key = KeyLines::parse(text)
                .value_path_on_line(line)
                .map(str::to_owned);
            let at = Origin {
                file: file.to_owned(),
                line: Some(line),
            };
            match err {
                ExpandError::Unset { var, .. } => ConfigError::UnsetVariable { at, key, var },
                ExpandError::Syntax { problem, .. } => ConfigError::BadExpansion {
                    at,
                    key,
                    problem: problem.to_string(),
                },
            }
        })?;
        let lines = KeyLines::parse(&expanded.text);
        Ok(Document {
            file,
            expanded,
            lines,
        })
    }

    /// `None` for a file without any YAML content (empty, or only comments).
    fn parse(&self) -> Result<Option<RawFile>, ConfigError> {
        serde_yaml::from_str(&self.expanded.text).map_err(|err| {
            let message = err.to_string();
            let (line, message) = match err.location() {
                Some(location) => {
                    let mark = format!(" at line {} column {}", location.line(), location.column());
                    let message = message.replacen(&mark, "", 1);
                    // serde_yaml places a duplicate key at its mapping; point at the repeat.
                    let line = self.duplicate_key_line(&message).unwrap_or(location.line());
                    (Some(self.expanded.source_line(line)), message)
                }
                None => (None, message),
            };
            ConfigError::Yaml {
                at: Origin {
                    file: self.file.to_owned(),
                    line,
                },
                message,
            }
        })
    }

    /// For serde's ``subscriptions[0]: duplicate field `name` ``, the line of the repeated key.
    fn duplicate_key_line(&self, message: &str) -> Option<usize> {
        let (path, rest) = match message.split_once(": duplicate field `") {
            Some((path, rest)) => (format!("{path}."), rest),
            None => (String::new(), message.strip_prefix("duplicate field `")?),
        };
        let name = rest.strip_suffix('`')?;
        self.lines.line(&format!("{path}{name}"))
    }

    /// Where `key` (or its nearest written ancestor) is.
    fn at(&self, key: &str) -> Origin {
        Origin {
            file: self.file.to_owned(),
            line: self
                .lines
                .line_or_parent(key)
                .map(|line| self.expanded.source_line(line)),
        }
    }

    fn invalid(&self, key: String, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            at: self.at(&key),
            key,
            reason: reason.into(),
        }
    }

    fn stream(&self, raw: RawStream) -> Result<StreamConfig, ConfigError> {
        self.check_name("stream.name", &raw.name, nats_name_problem)?;
        if raw.subjects.is_empty() {
            return Err(self.invalid("stream.subjects".into(), "must list at least one subject"));
        }
        for (index, subject) in raw.subjects.iter().enumerate() {
            self.check_subject(format!("stream.subjects[{index}]"), subject)?;
        }
        Ok(StreamConfig {
            max_age: self.duration("stream.max_age", raw.max_age, Duration::ZERO)?,
            name: raw.name,
            subjects: raw.subjects,
            storage: raw.storage.unwrap_or_default(),
            origin: self.at("stream"),
        })
    }

    fn subscription(
        &self,
        key: &str,
        raw: RawSubscription,
        plugins: &PluginSearch,
    ) -> Result<Subscription, ConfigError> {
        let field = |name: &str| format!("{key}.{name}");
        self.check_name(&field("name"), &raw.name, subscription_name_problem)?;
        self.check_subject(field("subject"), &raw.subject)?;
        self.check_name(&field("consumer"), &raw.consumer, nats_name_problem)?;
        let plugin = self.plugin(&field("plugin"), raw.plugin, plugins)?;
        let webhook = self.webhook(&field("webhook"), raw.webhook)?;
        let settings = self.settings(&field("settings"), raw.settings)?;
        let timeout = self.duration(&field("timeout"), raw.timeout, DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(self.invalid(field("timeout"), "must be greater than 0"));
        }
        let backoff = self.duration(&field("backoff"), raw.backoff, DEFAULT_BACKOFF)?;
        let max_concurrency = raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if max_concurrency == 0 {
            return Err(self.invalid(field("max_concurrency"), "must be at least 1"));
        }
        let ack_wait_written = raw.ack_wait.is_some();
        let ack_wait = self.duration(&field("ack_wait"), raw.ack_wait, DEFAULT_ACK_WAIT)?;
        if ack_wait <= timeout {
            // Point at ack_wait if written, else at the timeout that outgrew the default.
            let at = self.at(&field(if ack_wait_written {
                "ack_wait"
            } else {
                "timeout"
            }));
            return Err(ConfigError::AckWaitNotAboveTimeout {
                at,
                key: field("ack_wait"),
                ack_wait,
                timeout,
            });
        }
        let rate_limit = match raw.rate_limit {
            None => None,
            Some(value) => Some(
                value
                    .parse::<RateLimit>()
                    .map_err(|reason| self.invalid(field("rate_limit"), reason.to_string()))?,
            ),
        };
        let expanded = self.expanded_into(&webhook, &settings);
        Ok(Subscription {
            name: raw.name,
            subject: raw.subject,
            consumer: raw.consumer,
            plugin,
            webhook,
            settings,
            timeout,
            retries: raw.retries.unwrap_or(DEFAULT_RETRIES),
            backoff,
            max_concurrency,
            ack_wait,
            ordering: raw.ordering.unwrap_or_default(),
            rate_limit,
            expanded,
            origin: self.at(key),
        })
    }

    /// The values expanded from the environment that are part of `webhook` or
    /// `settings`.
    fn expanded_into(&self, webhook: &Webhook, settings: &Value) -> Vec<String> {
        let texts: Vec<String> = std::iter::once(webhook.url.clone())
            .chain(webhook.headers.values().cloned())
            .chain(settings_scalars(settings))
            .collect();
        let from_env = self.expanded.from_env.iter();
        from_env
            .filter(|value| contained_in(value, &texts))
            .cloned()
            .collect()
    }

    fn check_name(
        &self,
        key: &str,
        value: &str,
        problem: fn(&str) -> Option<&'static str>,
    ) -> Result<(), ConfigError> {
        match problem(value) {
            None => Ok(()),
            Some(reason) => Err(ConfigError::InvalidName {
                at: self.at(key),
                key: key.to_owned(),
                value: value.to_owned(),
                reason,
            }),
        }
    }

    fn check_subject(&self, key: String, subject: &str) -> Result<(), ConfigError> {
        match subject_problem(subject) {
            None => Ok(()),
            Some(reason) => Err(ConfigError::InvalidSubject {
                at: self.at(&key),
                key,
                value: subject.to_owned(),
                reason,
            }),
        }
    }

    fn duration(
        &self,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        parse_duration(&value).ok_or_else(|| ConfigError::InvalidDuration {
            at: self.at(key),
            key: key.to_owned(),
            value,
        })
    }

    fn plugin(
        &self,
        key: &str,
        value: Option<String>,
        plugins: &PluginSearch,
    ) -> Result<PluginRef, ConfigError> {
        let name = value.unwrap_or_else(|| DEFAULT_PLUGIN.to_owned());
        if name.trim().is_empty() {
            return Err(self.invalid(
                key.to_owned(),
                format!("must not be empty (leave it out for the default, {DEFAULT_PLUGIN})"),
            ));
        }
        let base = self.file.parent().unwrap_or(Path::new(""));
        match plugins.resolve(&name, base) {
            Ok(path) => Ok(PluginRef { name, path }),
            Err(searched) => Err(ConfigError::PluginNotFound {
                at: self.at(key),
                key: key.to_owned(),
                plugin: name,
                searched,
            }),
        }
    }

    fn webhook(&self, key: &str, raw: RawWebhook) -> Result<Webhook, ConfigError> {
        let url_key = format!("{key}.url");
        let log_url = raw.log_url.unwrap_or_default();
        if let Some(reason) = url_problem(&raw.url) {
            // The message is printed by `check` and logged by a reload: show
            // only what `log_url` allows and no value from the environment
            // (a malformed URL has no host part known to be safe).
            let shown = match log_url {
                LogUrl::Full => raw.url,
                LogUrl::Host => redact::redact(
                    &redact::show_url(&raw.url, log_url),
                    &self.expanded.from_env,
                ),
            };
            return Err(ConfigError::InvalidUrl {
                at: self.at(&url_key),
                key: url_key,
                value: shown,
                reason,
            });
        }
        let headers = raw.headers.unwrap_or_default();
        for (name, value) in &headers {
            let header_key = format!("{key}.headers.{name}");
            if let Some(reason) = header_problem(name, value) {
                return Err(self.invalid(header_key, reason));
            }
        }
        Ok(Webhook {
            url: raw.url,
            headers,
            log_url,
        })
    }

    fn settings(&self, key: &str, value: Option<Value>) -> Result<Value, ConfigError> {
        let settings = match value {
            None | Some(Value::Null) => return Ok(Value::Object(Default::default())),
            Some(settings @ Value::Object(_)) => settings,
            Some(other) => {
                return Err(self.invalid(
                    key.to_owned(),
                    format!(
                        "must be a mapping (e.g. `settings: {{}}`), not {}",
                        json_kind(&other)
                    ),
                ));
            }
        };
        if let Some(hosts) = settings.get("allow_hosts") {
            let ok = hosts.as_array().is_some_and(|list| {
                list.iter()
                    .all(|h| h.as_str().is_some_and(|h| !h.trim().is_empty()))
            });
            if !ok {
                return Err(self.invalid(
                    format!("{key}.allow_hosts"),
                    "must be a list of host names, e.g. [hooks.example.com]",
                ));
            }
        }
        Ok(settings)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Go/humantime durations: `500ms`, `15s`, `2m`, `1h30m`, `72h`, `1.5h`; `0` is zero.
fn parse_duration(value: &str) -> Option<Duration> {
    if value.trim() == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(value.trim()).ok()
}

fn subscription_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Some("use only letters, digits, '-' and '_'")
    } else {
        None
    }
}

/// Stream and durable consumer names: NATS puts them in API subjects and file names.
fn nats_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        Some("NATS names may not contain whitespace, '.', '*', '>', '/' or '\\'")
    } else {
        None
    }
}

/// NATS subject syntax: `.`-separated non-empty tokens, `*` and `>` only as whole
/// tokens, `>` only last.
fn subject_problem(subject: &str) -> Option<&'static str> {
    if subject.is_empty() {
        return Some("must not be empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Some("empty token: leading, trailing or doubled '.'");
        }
        if token.len() > 1 && token.contains(['*', '>']) {
            return Some("'*' and '>' must be whole tokens, as in \"orders.*\" or \"orders.>\"");
        }
        if *token == ">" && index + 1 != tokens.len() {
            return Some("'>' must be the last token");
        }
    }
    None
}

/// Whether some subject matches both filters (NATS's `SubjectsCollide`, which the
/// server uses to accept a consumer filter on a stream).
fn subjects_collide(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

fn url_problem(value: &str) -> Option<String> {
    match Url::parse(value) {
        Err(err) => Some(err.to_string()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Some(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        )),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("no host".into()),
        Ok(_) => None,
    }
}

/// RFC 9110 field names are tokens; values may not break the header line.
fn header_problem(name: &str, value: &str) -> Option<String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Some(format!("invalid header name {name:?}"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Some("header value contains a control character (e.g. a newline)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(settings: Value, headers: &[(&str, &str)]) -> Subscription {
        Subscription {
            name: "s".into(),
            subject: "a.>".into(),
            consumer: "c".into(),
            plugin: PluginRef {
                name: DEFAULT_PLUGIN.into(),
                path: "/p/http-webhook.wasm".into(),
            },
            webhook: Webhook {
                url: "https://user:hunter22@Hooks.Example.com:8443/x?y=1".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                log_url: LogUrl::Host,
            },
            settings,
            timeout: DEFAULT_TIMEOUT,
            retries: 3,
            backoff: DEFAULT_BACKOFF,
            max_concurrency: 1,
            ack_wait: DEFAULT_ACK_WAIT,
            ordering: Ordering::None,
            rate_limit: None,
            expanded: Vec::new(),
            origin: Origin {
                file: "config.d/x.yml".into(),
                line: Some(2),
            },
        }
    }

    #[test]
    fn subjects() {
        for ok in [">", "a", "a.b", "a.*", "a.>", "*.b.>", "stripe.drupal", "*"] {
            assert_eq!(subject_problem(ok), None, "{ok}");
        }
        for bad in [
            "", "a..b", ".a", "a.", "a b", "a.>.b", "a*", "a.b>", ">.a", "a.\tb",
        ] {
            assert!(subject_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn collisions() {
        assert!(subjects_collide("ticket.>", ">"));
        assert!(subjects_collide("stripe.>", "stripe.drupal"));
        assert!(subjects_collide("stripe.*", "stripe.drupal"));
        assert!(subjects_collide("*.drupal", "stripe.*"));
        assert!(subjects_collide("mail.>", "mail.>"));
        assert!(!subjects_collide("mail.>", "mail"));
        assert!(!subjects_collide("mail.>", "stripe.drupal"));
        assert!(!subjects_collide("a.b", "a.b.c"));
        assert!(!subjects_collide("a.*", "a.b.c"));
    }

    #[test]
    fn names() {
        assert_eq!(subscription_name_problem("stripe-drupal_2"), None);
        assert!(subscription_name_problem("a.b").is_some());
        assert!(subscription_name_problem("").is_some());
        assert_eq!(nats_name_problem("stripe-drupal-consumer"), None);
        for bad in ["a.b", "a b", "a*", "a>", "a/b", "a\\b", ""] {
            assert!(nats_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["2x", "15", "", "-1s", "s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_and_headers() {
        assert_eq!(url_problem("http://127.0.0.1:8091/api"), None);
        assert_eq!(url_problem("https://shop.example.com/x?y"), None);
        for bad in ["", "127.0.0.1:8091/x", "ftp://x/y", "http://", "/relative"] {
            assert!(url_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(header_problem("X-API-Key", "abc def"), None);
        assert!(header_problem("Bad Name", "v").is_some());
        assert!(header_problem("X", "a\r\nInjected: 1").is_some());
    }

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

    #[test]
    fn secrets_cover_headers_url_parts_and_secret_settings() {
        let sub = subscription(
            serde_json::json!({
                "signing_secret": "whsec_abcdef",
                "api_key": "k-123456",
                "nested": {"auth_token": ["t-1111", 55555], "name": "not-secret"},
                "template": "welcome",
            }),
            &[("Authorization", "Bearer tok-999"), ("X-Version", "1")],
        );
        assert_eq!(
            sub.secrets(),
            [
                "Bearer tok-999",
                "whsec_abcdef",
                "hunter22",
                "k-123456",
                "tok-999",
                "/x?y=1",
                "t-1111",
                "55555",
                "user",
            ]
        );
    }

    #[test]
    fn log_url_full_keeps_only_the_password_of_the_url() {
        let mut sub = subscription(Value::Object(Default::default()), &[]);
        sub.webhook.url = "https://user:hunter22@hooks.example/path-secret?sig=abcd#frag".into();
        let secrets = sub.secrets();
        assert!(
            secrets.iter().any(|s| s == "/path-secret?sig=abcd#frag"),
            "{secrets:?}"
        );
        sub.webhook.log_url = LogUrl::Full;
        assert_eq!(sub.secrets(), ["hunter22"]);
    }

    #[test]
    fn expanded_values_in_headers_settings_and_hidden_url_parts_are_secrets() {
        let mut sub = subscription(
            serde_json::json!({"note": "hello ${NOTE}", "allow_hosts": ["api.example"]}),
            &[("X-Team", "team-crm")],
        );
        sub.webhook.url = "https://hooks.example:8443/services/PATHPART?x=1".into();
        sub.settings["note"] = "hello note-from-env".into();
        sub.expanded = [
            "note-from-env",
            "team-crm",
            "PATHPART",
            "hooks.example",
            "api.example",
        ]
        .map(String::from)
        .to_vec();
        let secrets = sub.secrets();
        for secret in ["note-from-env", "team-crm", "PATHPART"] {
            assert!(
                secrets.iter().any(|s| s == secret),
                "{secret} in {secrets:?}"
            );
        }
        // The host, and the hosts of allow_hosts, are never secret.
        for shown in ["hooks.example", "api.example"] {
            assert!(
                !secrets.iter().any(|s| s == shown),
                "{shown} in {secrets:?}"
            );
        }
        // Under log_url: full, a value only in the URL is shown with it.
        sub.webhook.log_url = LogUrl::Full;
        let secrets = sub.secrets();
        assert!(!secrets.iter().any(|s| s == "PATHPART"), "{secrets:?}");
        assert!(secrets.iter().any(|s| s == "note-from-env"), "{secrets:?}");
    }

    #[test]
    fn debug_redacts() {
        let sub = subscription(
            serde_json::json!({"signing_secret": "whsec_abcdef", "x": 1}),
            &[("Authorization", "Bearer tok-999")],
        );
        let debug = format!("{sub:?}");
        for secret in sub.secrets() {
            assert!(!debug.contains(&secret), "{secret} in {debug}");
        }
        assert!(debug.contains("Authorization"));
        assert!(
            debug.contains("https://hooks.example.com:8443/..."),
            "{debug}"
        );
    }

    #[test]
    fn plugin_search_resolves_names_and_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let tmp = tmp.path();
        let (first, second) = (tmp.join("first"), tmp.join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(second.join("mailer-apikey.wasm"), b"").unwrap();
        std::fs::write(tmp.join("own.wasm"), b"").unwrap();
        let search = PluginSearch {
            dirs: vec![first.clone(), second.clone()],
        };
        assert_eq!(
            search.resolve("mailer-apikey", Path::new("/nowhere")),
            Ok(second.join("mailer-apikey.wasm"))
        );
        assert_eq!(
            search.resolve("nope", Path::new("/nowhere")),
            Err(vec![first.join("nope.wasm"), second.join("nope.wasm")])
        );
        assert_eq!(search.resolve("./own.wasm", tmp), Ok(tmp.join("own.wasm")));
        assert_eq!(search.resolve("own.wasm", tmp), Ok(tmp.join("own.wasm")));
    }
}
