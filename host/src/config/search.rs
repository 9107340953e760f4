//! Where built-in plugin names resolve to `.wasm` files.

use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
