//! Files -> [`Config`]: each document is read, expanded, parsed into the raw
//! model and validated into the model; then what spans files (one `stream:`,
//! unique names and consumers, subjects the stream holds) is checked. [`load`]
//! reads a directory; [`load_text`] validates one document held in memory
//! (`sinkhost plugin test` builds its subscription that way, so it gets every
//! default and every check `run` does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::checks::subjects_collide;
use super::document::Document;
use super::error::ConfigError;
use super::model::{Config, Origin, StreamConfig, Subscription};
use super::search::PluginSearch;

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
    let mut texts = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::ReadFile {
            file: file.clone(),
            source,
        })?;
        texts.push((file, text));
    }
    validate(dir, &texts, env, plugins)
}

/// The `stream:` block's `name` in config.d, for the commands that only read
/// the streams (`dlq list`): found without validating the rest, so a
/// `${VAR}` that only a subscription uses may be unset. A file that is not
/// YAML, or a name that does not expand, gets [`load`]'s error (file, line,
/// key).
pub fn stream_name(
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    plugins: &PluginSearch,
) -> Result<Option<String>, ConfigError> {
    for file in config_files(dir)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::ReadFile {
            file: file.clone(),
            source,
        })?;
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            return load(dir, env, plugins).map(|config| config.stream.map(|s| s.name));
        };
        let name = doc.get("stream").and_then(|s| s.get("name"));
        if let Some(name) = name.and_then(serde_yaml::Value::as_str) {
            // Expanded as `load` would; an unset variable here is an error.
            return match super::expand::expand(name, env) {
                Ok(expanded) => Ok(Some(expanded.text)),
                Err(_) => load(dir, env, plugins).map(|config| config.stream.map(|s| s.name)),
            };
        }
    }
    Ok(None)
}

/// Validates one config.d document held in memory, as if it were the only
/// file of a directory; `name` stands for its path in messages, and relative
/// plugin paths resolve from the current directory.
pub fn load_text(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    plugins: &PluginSearch,
) -> Result<Config, ConfigError> {
    validate(
        Path::new(""),
        &[(PathBuf::from(name), text.to_owned())],
        env,
        plugins,
    )
}

/// Validates `files` (path, text) of the directory `dir`, in order.
fn validate(
    dir: &Path,
    files: &[(PathBuf, String)],
    env: &dyn Fn(&str) -> Option<String>,
    plugins: &PluginSearch,
) -> Result<Config, ConfigError> {
    let mut stream: Option<StreamConfig> = None;
    let mut subscriptions = Vec::new();
    // Where each subscription's subject is written, for the stream check below.
    let mut subject_keys = Vec::new();
    // Where each `dead_letter_after` is (if written), for the max_age check.
    let mut dead_letter_keys = Vec::new();
    let mut names: HashMap<String, Origin> = HashMap::new();
    let mut consumers: HashMap<String, Origin> = HashMap::new();
    for (file, text) in files {
        let doc = Document::read(file, text, env)?;
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
            let dead_letter_key = format!("{key}.dead_letter_after");
            dead_letter_keys.push(
                raw_sub
                    .dead_letter_after
                    .is_some()
                    .then(|| (doc.at(&dead_letter_key), dead_letter_key)),
            );
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
        fit_dead_letter_after(stream, &mut subscriptions, dead_letter_keys)?;
    }
    Ok(Config {
        stream,
        subscriptions,
    })
}

/// A message must be dead-lettered before the stream drops it: a written
/// `dead_letter_after` must be shorter than the stream's `max_age`, and the
/// default shrinks to half of it.
fn fit_dead_letter_after(
    stream: &StreamConfig,
    subscriptions: &mut [Subscription],
    written: Vec<Option<(Origin, String)>>,
) -> Result<(), ConfigError> {
    let max_age = stream.max_age;
    if max_age.is_zero() {
        return Ok(());
    }
    for (sub, written) in subscriptions.iter_mut().zip(written) {
        if sub.dead_letter_after < max_age {
            continue;
        }
        match written {
            None => sub.dead_letter_after = max_age / 2,
            Some((at, key)) => {
                return Err(ConfigError::InvalidValue {
                    at,
                    key,
                    reason: format!(
                        "must be shorter than the stream's max_age ({}), which drops a message before it could be dead-lettered",
                        humantime::format_duration(max_age)
                    ),
                });
            }
        }
    }
    Ok(())
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
