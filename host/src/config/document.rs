//! One config.d document -> the model: `${VAR}` expansion, YAML into the raw
//! structs (`raw.rs`), then each value checked and defaulted into the
//! validated types, every error placed at its file, line and key.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::checks::{
    header_problem, json_kind, nats_name_problem, parse_duration, subject_problem,
    subscription_name_problem, url_problem,
};
use super::error::ConfigError;
use super::expand::{self, ExpandError, Expanded};
use super::lines::KeyLines;
use super::model::{
    Breaker, DEFAULT_ACK_WAIT, DEFAULT_BACKOFF, DEFAULT_DEAD_LETTER_AFTER, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PLUGIN, DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_DEAD_LETTER_AFTER, Origin, PluginRef,
    StreamConfig, Subscription, Webhook,
};
use super::rate_limit::RateLimit;
use super::raw::{RawBreaker, RawFile, RawStream, RawSubscription, RawWebhook};
use super::redact::{self, LogUrl};
use super::search::PluginSearch;
use super::secrets::{contained_in, settings_scalars};

/// One expanded file, with the line index that places its keys.
pub(super) struct Document<'a> {
    file: &'a Path,
    expanded: Expanded,
    lines: KeyLines,
}

impl<'a> Document<'a> {
    pub(super) fn read(
        file: &'a Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
    pub(super) fn parse(&self) -> Result<Option<RawFile>, ConfigError> {
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
    pub(super) fn at(&self, key: &str) -> Origin {
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

    pub(super) fn stream(&self, raw: RawStream) -> Result<StreamConfig, ConfigError> {
        self.check_name("stream.name", &raw.name, nats_name_problem)?;
        if raw.subjects.is_empty() {
            return Err(self.invalid("stream.subjects".into(), "must list at least one subject"));
        }
        for (index, subject) in raw.subjects.iter().enumerate() {
            self.check_subject(format!("stream.subjects[{index}]"), subject)?;
        }
        for (key, replicas) in [
            ("stream.replicas", raw.replicas),
            ("stream.dead_letter_replicas", raw.dead_letter_replicas),
        ] {
            if replicas.is_some_and(|r| !(1..=5).contains(&r)) {
                return Err(self.invalid(
                    key.into(),
                    "must be 1 to 5 (JetStream's limit; 3 or 5 survive losing a node)",
                ));
            }
        }
        Ok(StreamConfig {
            max_age: self.duration("stream.max_age", raw.max_age, Duration::ZERO)?,
            name: raw.name,
            subjects: raw.subjects,
            storage: raw.storage.unwrap_or_default(),
            replicas: raw.replicas,
            dead_letter_replicas: raw.dead_letter_replicas,
            history: raw.history.unwrap_or_default(),
            history_max_age: raw
                .history_max_age
                .map(|age| self.duration("stream.history_max_age", Some(age), Duration::ZERO))
                .transpose()?,
            origin: self.at("stream"),
        })
    }

    pub(super) fn subscription(
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
        let breaker = self.breaker(&field("breaker"), raw.breaker)?;
        let dead_letter_after = match raw.dead_letter_after {
            None => DEFAULT_DEAD_LETTER_AFTER,
            written => {
                let key = field("dead_letter_after");
                let after = self.duration(&key, written, DEFAULT_DEAD_LETTER_AFTER)?;
                if after.is_zero() || after > MAX_DEAD_LETTER_AFTER {
                    return Err(self.invalid(key, "must be greater than 0 and at most 168h"));
                }
                after
            }
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
            breaker,
            dead_letter_after,
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

    fn breaker(&self, key: &str, raw: Option<RawBreaker>) -> Result<Breaker, ConfigError> {
        let default = Breaker::default();
        let Some(raw) = raw else {
            return Ok(default);
        };
        let field = |name: &str| format!("{key}.{name}");
        let probe_interval = self.duration(
            &field("probe_interval"),
            raw.probe_interval,
            default.probe_interval,
        )?;
        if probe_interval.is_zero() {
            return Err(self.invalid(field("probe_interval"), "must be greater than 0"));
        }
        let max_written = raw.max_probe_interval.is_some();
        let max_probe_interval = self.duration(
            &field("max_probe_interval"),
            raw.max_probe_interval,
            default.max_probe_interval,
        )?;
        if max_probe_interval < probe_interval {
            let reason = format!(
                "must be at least probe_interval ({probe_interval:?}){}",
                if max_written {
                    ""
                } else {
                    "; its default is 60s"
                }
            );
            return Err(self.invalid(field("max_probe_interval"), reason));
        }
        Ok(Breaker {
            failures: raw.failures.unwrap_or(default.failures),
            probe_interval,
            max_probe_interval,
        })
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
