//! `ConfigDir`: a temporary `config.d` written by the test, and `unique` names so that
//! tests running in parallel never share a stream, subject or consumer.
//!
//! It writes files verbatim; what they mean is the host's business.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

/// A temporary config directory, deleted on Drop.
pub struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sinkhost-config-")
            .tempdir()
            .expect("creating a temporary config directory");
        Self { dir }
    }

    /// Adds (or replaces) `name` with `contents`; chains.
    pub fn file(self, name: &str, contents: impl AsRef<[u8]>) -> Self {
        self.write(name, contents);
        self
    }

    /// Writes (or replaces) `name` with `contents` and returns its path; `name` may
    /// contain subdirectories, which are created.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("creating {}: {err}", parent.display()));
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        path
    }

    /// Deletes `name`.
    pub fn remove(&self, name: &str) {
        let path = self.dir.path().join(name);
        std::fs::remove_file(&path)
            .unwrap_or_else(|err| panic!("removing {}: {err}", path.display()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

/// `<prefix>_<pid>_<n>`: unique among every test running on this machine right now.
/// Only `[A-Za-z0-9_-]` is added, so the result is a valid stream, consumer and
/// subject-token name as long as `prefix` is.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}
