//! Why config.d cannot be used: one variant per problem, each message
//! starting with `file:line: key:` where they are known.

use std::path::PathBuf;
use std::time::Duration;

use super::model::Origin;

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
