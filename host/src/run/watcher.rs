//! What asks `run` for a reload: a signal (SIGHUP in `sinkhost run`) or a
//! change in config.d that has then been quiet for [`DEBOUNCE`]. The
//! [`Watcher`] polls instead of using inotify: a stat of each file every
//! [`POLL`] costs nothing at this size, needs no dependency and no watch limit,
//! and also sees what inotify on the directory misses: a Kubernetes ConfigMap
//! swapping its `..data` symlink (the visible files are symlinks, and their
//! targets' mtime changes) and a plugin `.wasm` referenced from outside config.d.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;

use crate::config::ConfigSource;

/// How often the watcher looks at config.d.
pub const POLL: Duration = Duration::from_millis(250);
/// How long config.d must stay unchanged before a change is reloaded, so a
/// copy of several files is read once, complete.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// How `run` reloads its config.
pub struct Reloading {
    /// config.d.
    pub source: ConfigSource,
    /// Each item asks for a reload now (SIGHUP in `sinkhost run`).
    pub requests: BoxStream<'static, ()>,
    /// Also reload when config.d (or a plugin file it uses) changes.
    pub watch: bool,
}

/// What the watcher compares: each file's path, size and modification time
/// (`None` when it cannot be read).
type Fingerprint = Vec<(PathBuf, Option<(u64, Option<SystemTime>)>)>;

/// Notices changes to config.d (every file directly in it that is not hidden)
/// and to the plugin files the running config uses.
#[derive(Debug)]
pub struct Watcher {
    dir: PathBuf,
    seen: Fingerprint,
    changed_at: Option<tokio::time::Instant>,
}

impl Watcher {
    /// Starts from config.d as it is now.
    pub fn new(dir: &Path, plugin_files: &[PathBuf]) -> Self {
        Watcher {
            dir: dir.to_owned(),
            seen: fingerprint(dir, plugin_files),
            changed_at: None,
        }
    }

    /// Takes config.d as it is now as seen, after a reload read it: a change
    /// that reload already picked up does not ask for another one.
    pub fn rebase(&mut self, plugin_files: &[PathBuf]) {
        self.seen = fingerprint(&self.dir, plugin_files);
        self.changed_at = None;
    }

    /// Resolves once something changed and then stayed unchanged for
    /// [`DEBOUNCE`]. Cancel-safe: what it saw is kept in `self`.
    pub async fn settled(&mut self, plugin_files: &[PathBuf]) {
        loop {
            tokio::time::sleep(POLL).await;
            let now = fingerprint(&self.dir, plugin_files);
            if now != self.seen {
                self.seen = now;
                self.changed_at = Some(tokio::time::Instant::now());
            } else if self.changed_at.is_some_and(|at| at.elapsed() >= DEBOUNCE) {
                self.changed_at = None;
                return;
            }
        }
    }
}

/// A few `stat`s; small enough to run on the async thread.
fn fingerprint(dir: &Path, plugin_files: &[PathBuf]) -> Fingerprint {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| !entry.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|entry| entry.path())
        .collect();
    paths.extend(plugin_files.iter().cloned());
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|path| {
            // `metadata` follows symlinks: a swapped target shows as a change.
            let stat = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()));
            (path, stat)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_sees_new_changed_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.yml"), "a").unwrap();
        std::fs::write(dir.path().join(".hidden.swp"), "x").unwrap();
        let base = fingerprint(dir.path(), &[]);
        assert_eq!(base.len(), 1, "hidden files are ignored: {base:?}");
        std::fs::write(dir.path().join(".hidden.swp"), "xy").unwrap();
        assert_eq!(fingerprint(dir.path(), &[]), base);
        std::fs::write(dir.path().join("10.yml"), "ab").unwrap();
        let changed = fingerprint(dir.path(), &[]);
        assert_ne!(changed, base);
        std::fs::write(dir.path().join("20.yml"), "b").unwrap();
        assert_ne!(fingerprint(dir.path(), &[]), changed);
        std::fs::remove_file(dir.path().join("20.yml")).unwrap();
        assert_eq!(fingerprint(dir.path(), &[]), changed);
        let outside = dir.path().join("sub/x.wasm");
        assert_eq!(
            fingerprint(dir.path(), std::slice::from_ref(&outside)).len(),
            2
        );
    }
}
