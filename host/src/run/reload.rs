//! Config reloads: what one changes.
//!
//! [`plan`] compares the validated new config with what runs, subscription by
//! subscription (the validated [`Subscription`] minus where it is written, the
//! SHA-256 of its plugin file, its stream) and names what to add, remove,
//! restart or leave alone. It decides nothing else: loading and checking the
//! new config is `config` and `app::prepare_in` (the path `sinkhost check`
//! takes), and stopping and starting subscriptions is `supervisor`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::config::{Config, Subscription};
use crate::run::prepare::PrepareError;

/// SHA-256 of a plugin file's content.
pub type Digest = [u8; 32];

/// The digest of every plugin file `config` uses. Reading is what can fail:
/// the file existed when config.d was validated but may have gone since.
pub fn digests(config: &Config) -> Result<HashMap<PathBuf, Digest>, Box<PrepareError>> {
    let mut digests = HashMap::new();
    for sub in &config.subscriptions {
        if digests.contains_key(&sub.plugin.path) {
            continue;
        }
        let bytes = std::fs::read(&sub.plugin.path).map_err(|e| {
            Box::new(PrepareError {
                subscription: Some(sub.clone()),
                error: crate::plugin::PluginError::Load {
                    path: sub.plugin.path.clone(),
                    message: e.to_string(),
                },
            })
        })?;
        digests.insert(sub.plugin.path.clone(), Sha256::digest(&bytes).into());
    }
    Ok(digests)
}

/// A subscription as it runs now.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    /// Its validated config.
    pub sub: &'a Subscription,
    /// The digest of the plugin file it was compiled from.
    pub digest: &'a Digest,
    /// The stream it reads.
    pub stream: &'a str,
}

/// Why a subscription is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A key of its entry in config.d changed.
    Config,
    /// Its plugin file's content changed.
    PluginFile,
    /// The `stream:` block now names another stream.
    Stream,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::Config => "config changed",
            Why::PluginFile => "plugin file changed",
            Why::Stream => "stream changed",
        })
    }
}

/// What a reload changes, by subscription name; each list in config order
/// (`removed` in the order they ran).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the new config only.
    pub added: Vec<String>,
    /// In the running config only.
    pub removed: Vec<String>,
    /// In both, but different.
    pub restarted: Vec<(String, Why)>,
    /// In both, the same.
    pub unchanged: Vec<String>,
    /// Plugin files whose compiled component must not be reused: none of the
    /// running subscriptions uses this content of the file.
    pub recompile: Vec<PathBuf>,
}

impl Plan {
    /// The subscriptions to stop: removed and restarted.
    pub fn stopping(&self) -> impl Iterator<Item = &str> {
        self.removed
            .iter()
            .map(String::as_str)
            .chain(self.restarted.iter().map(|(name, _)| name.as_str()))
    }

    /// The subscriptions of `config` to prepare and start: added and restarted.
    pub fn starting<'c>(&self, config: &'c Config) -> Vec<&'c Subscription> {
        config
            .subscriptions
            .iter()
            .filter(|sub| {
                self.added.contains(&sub.name)
                    || self.restarted.iter().any(|(name, _)| *name == sub.name)
            })
            .collect()
    }

    /// One line for the log: `added: a; removed: -; restarted: b (config changed); unchanged: c`.
    pub fn summary(&self) -> String {
        let list = |names: Vec<String>| {
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join(", ")
            }
        };
        let restarted = self
            .restarted
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        format!(
            "added: {}; removed: {}; restarted: {}; unchanged: {}",
            list(self.added.clone()),
            list(self.removed.clone()),
            list(restarted),
            list(self.unchanged.clone())
        )
    }
}

/// Compares the new `config` (with its plugin files' `digests`) with what runs.
pub fn plan<'a>(
    running: impl IntoIterator<Item = Running<'a>>,
    config: &Config,
    digests: &HashMap<PathBuf, Digest>,
) -> Plan {
    let running: Vec<Running<'a>> = running.into_iter().collect();
    let by_name: BTreeMap<&str, &Running<'a>> =
        running.iter().map(|r| (r.sub.name.as_str(), r)).collect();
    let mut plan = Plan::default();
    for sub in &config.subscriptions {
        let digest = digests.get(&sub.plugin.path);
        let Some(current) = by_name.get(sub.name.as_str()) else {
            plan.added.push(sub.name.clone());
            continue;
        };
        let why = if !same_entry(current.sub, sub) {
            Some(Why::Config)
        } else if digest != Some(current.digest) {
            Some(Why::PluginFile)
        } else if config
            .stream
            .as_ref()
            .is_some_and(|stream| stream.name != current.stream)
        {
            Some(Why::Stream)
        } else {
            None
        };
        match why {
            Some(why) => plan.restarted.push((sub.name.clone(), why)),
            None => plan.unchanged.push(sub.name.clone()),
        }
    }
    plan.removed = running
        .iter()
        .filter(|r| config.subscription(&r.sub.name).is_none())
        .map(|r| r.sub.name.clone())
        .collect();
    let mut paths: Vec<&PathBuf> = config
        .subscriptions
        .iter()
        .map(|s| &s.plugin.path)
        .collect();
    paths.sort();
    paths.dedup();
    plan.recompile = paths
        .into_iter()
        .filter(|path| {
            !running
                .iter()
                .any(|r| r.sub.plugin.path == **path && Some(r.digest) == digests.get(*path))
        })
        .cloned()
        .collect();
    plan
}

/// True when two entries configure the same thing: every validated key is
/// equal; only where the entry is written (`origin`) may differ, so a line
/// added above it restarts nothing.
fn same_entry(running: &Subscription, new: &Subscription) -> bool {
    let placed_alike = Subscription {
        origin: running.origin.clone(),
        ..new.clone()
    };
    *running == placed_alike
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, PluginSearch};

    /// A config.d in a temporary directory, loaded the way `run` loads it.
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("p.wasm"), "").unwrap();
            Dir(dir)
        }

        /// config.d with `stream` and one subscription per `(name, url)`,
        /// after `blank_lines` empty lines.
        fn config(&self, stream: &str, subs: &[(&str, &str)], blank_lines: usize) -> Config {
            let mut yaml = "\n".repeat(blank_lines);
            yaml.push_str(&format!(
                "stream:\n  name: {stream}\n  subjects: [\">\"]\nsubscriptions:\n"
            ));
            for (name, url) in subs {
                yaml.push_str(&format!(
                    "  - name: {name}\n    subject: {name}.x\n    consumer: {name}-c\n    plugin: ./p.wasm\n    webhook: {{url: \"{url}\"}}\n"
                ));
            }
            std::fs::write(self.0.path().join("10.yml"), yaml).unwrap();
            ConfigSource {
                dir: self.0.path().to_owned(),
                plugins: PluginSearch::default(),
            }
            .load()
            .unwrap()
        }

        fn plugin(&self) -> PathBuf {
            self.0.path().join("p.wasm")
        }
    }

    const OLD: Digest = [1; 32];
    const NEW: Digest = [2; 32];

    fn plan_from(
        running: &Config,
        digest: Digest,
        new: &Config,
        digests: &HashMap<PathBuf, Digest>,
    ) -> Plan {
        let stream = running.stream.as_ref().unwrap().name.clone();
        plan(
            running.subscriptions.iter().map(|sub| Running {
                sub,
                digest: &digest,
                stream: &stream,
            }),
            new,
            digests,
        )
    }

    #[test]
    fn only_what_differs_is_restarted_added_or_removed() {
        let dir = Dir::new();
        let digests = HashMap::from([(dir.plugin(), OLD)]);
        let running = dir.config(
            "s",
            &[
                ("a", "http://h/a"),
                ("b", "http://h/b"),
                ("gone", "http://h/g"),
            ],
            0,
        );
        // Moved down by two lines: `origin` differs, nothing else.
        let new = dir.config(
            "s",
            &[
                ("a", "http://h/a"),
                ("b", "http://h/other"),
                ("fresh", "http://h/f"),
            ],
            2,
        );
        assert_ne!(running.subscriptions[0].origin, new.subscriptions[0].origin);
        let plan = plan_from(&running, OLD, &new, &digests);
        assert_eq!(plan.unchanged, ["a"]);
        assert_eq!(plan.restarted, [("b".to_owned(), Why::Config)]);
        assert_eq!(plan.added, ["fresh"]);
        assert_eq!(plan.removed, ["gone"]);
        assert!(plan.recompile.is_empty(), "{:?}", plan.recompile);
        let starting: Vec<&str> = plan
            .starting(&new)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(starting, ["b", "fresh"]);
        assert_eq!(plan.stopping().collect::<Vec<_>>(), ["gone", "b"]);
        assert_eq!(
            plan.summary(),
            "added: fresh; removed: gone; restarted: b (config changed); unchanged: a"
        );
    }

    #[test]
    fn a_changed_plugin_file_restarts_its_users_and_is_recompiled() {
        let dir = Dir::new();
        let config = dir.config("s", &[("a", "http://h/a")], 0);
        let plan = plan_from(&config, OLD, &config, &HashMap::from([(dir.plugin(), NEW)]));
        assert_eq!(plan.restarted, [("a".to_owned(), Why::PluginFile)]);
        assert_eq!(plan.recompile, [dir.plugin()]);
    }

    #[test]
    fn another_stream_restarts_every_subscription_on_the_old_one() {
        let dir = Dir::new();
        let digests = HashMap::from([(dir.plugin(), OLD)]);
        let running = dir.config("s", &[("a", "http://h/a")], 0);
        let new = dir.config("t", &[("a", "http://h/a")], 0);
        let plan = plan_from(&running, OLD, &new, &digests);
        assert_eq!(plan.restarted, [("a".to_owned(), Why::Stream)]);
    }

    #[test]
    fn digests_are_of_the_content() {
        let dir = Dir::new();
        let config = dir.config("s", &[("a", "http://h/a")], 0);
        let empty = digests(&config).unwrap()[&dir.plugin()];
        std::fs::write(dir.plugin(), "other").unwrap();
        assert_ne!(digests(&config).unwrap()[&dir.plugin()], empty);
    }
}
