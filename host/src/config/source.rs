//! config.d as a place: where it is and how its plugin names resolve, read
//! again the same way by every reload, by `sinkhost check` and by the commands
//! that need a subscription.

use std::path::PathBuf;

use super::{Config, ConfigError, PluginSearch, load};

/// Where config.d is and how its plugin names resolve.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The config directory.
    pub dir: PathBuf,
    /// Where built-in plugin names resolve.
    pub plugins: PluginSearch,
}

impl ConfigSource {
    /// `dir`, with plugin names resolved as [`PluginSearch::from_env`] says.
    pub fn from_env(dir: PathBuf) -> Self {
        ConfigSource {
            dir,
            plugins: PluginSearch::from_env(),
        }
    }

    /// Loads and validates config.d, expanding `${VAR}` from the environment.
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(&self.dir, &|name| std::env::var(name).ok(), &self.plugins)
    }

    /// The stream config.d names, without validating the rest
    /// ([`stream_name`](super::stream_name)).
    pub fn stream_name(&self) -> Result<Option<String>, ConfigError> {
        super::stream_name(&self.dir, &|name| std::env::var(name).ok(), &self.plugins)
    }
}
