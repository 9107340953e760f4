//! The on-disk cache of compiled plugins, so a restart does not recompile
//! every component (a JS or Python plugin takes seconds to compile).
//!
//! An entry is the output of `Engine::precompile_component`, named by the
//! SHA-256 of the `.wasm` bytes and of the engine's compatibility hash
//! (wasmtime build and compilation settings): a changed plugin or a different
//! wasmtime gets a new entry instead of a wrong one. Entries are written to a
//! temporary file and renamed into place, so a crash or two hosts starting at
//! once never leave half a file under an entry's name. An entry that does not
//! load (corrupt, truncated, from elsewhere) is compiled again and replaced;
//! the cache can never stop a start, only speed it up. This module does not
//! instantiate or run anything (that is `plugin`).
//!
//! Where: `$SINKHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/sinkhost`, else
//! `~/.cache/sinkhost`; `SINKHOST_CACHE=off` turns it off.

use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled plugins are kept, or nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// The cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        CompileCache {
            dir: Some(dir.into()),
        }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        CompileCache { dir: None }
    }

    /// The cache the environment asks for (see the module docs).
    pub fn from_env() -> Self {
        Self::from_vars(&|name| std::env::var_os(name).filter(|v| !v.is_empty()))
    }

    fn from_vars(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        if var("SINKHOST_CACHE").is_some_and(|v| v.eq_ignore_ascii_case("off")) {
            return Self::disabled();
        }
        let dir = var("SINKHOST_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("sinkhost")))
            .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/sinkhost")));
        CompileCache { dir }
    }

    /// The directory, when caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Compiles `wasm` (read from `path`), or loads the compiled form kept for
    /// exactly these bytes and this engine.
    pub fn component(
        &self,
        engine: &Engine,
        path: &Path,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, wasm);
        };
        let entry = dir.join(entry_name(engine, path, wasm));
        if entry.is_file() {
            let started = Instant::now();
            match load(engine, &entry) {
                Ok(component) => {
                    tracing::info!(
                        plugin = %path.display(), cache = %entry.display(),
                        ms = started.elapsed().as_millis() as u64,
                        "loaded compiled plugin from the cache"
                    );
                    return Ok(component);
                }
                Err(error) => tracing::warn!(
                    plugin = %path.display(), cache = %entry.display(), error = format!("{error:#}"),
                    "compiled plugin in the cache is unusable; compiling again and replacing it"
                ),
            }
        }
        let started = Instant::now();
        // Its own target, so the one-shot commands can show this line alone.
        tracing::info!(
            target: "sinkhost::plugin::compiling",
            plugin = %path.display(), mb = wasm.len() >> 20,
            "compiling plugin (a JS or Python one takes 10-30 s); the next start loads it from the cache"
        );
        let compiled = engine.precompile_component(wasm)?;
        let component = load_bytes(engine, &compiled)?;
        match store(dir, &entry, &compiled) {
            Ok(()) => tracing::info!(
                plugin = %path.display(), cache = %entry.display(),
                ms = started.elapsed().as_millis() as u64,
                "compiled plugin and stored it in the cache"
            ),
            Err(error) => tracing::warn!(
                plugin = %path.display(), cache = %entry.display(), error = %error,
                "compiled plugin but cannot store it in the cache; the next start compiles again"
            ),
        }
        Ok(component)
    }
}

/// `<file stem>-<sha256 of the wasm>-<engine hash>.cwasm`: the stem is for
/// people listing the directory; the hashes decide.
fn entry_name(engine: &Engine, path: &Path, wasm: &[u8]) -> String {
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let wasm_hash = hex(&Sha256::digest(wasm));
    let mut engine_hash = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut engine_hash);
    let engine_hash = hex(&engine_hash.0.finalize());
    format!("{stem}-{}-{}.cwasm", &wasm_hash[..32], &engine_hash[..16])
}

/// Feeds `Hash` output into SHA-256: unlike `DefaultHasher`, its value does
/// not depend on the Rust release that built the host.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the digest is read")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps a cache entry.
#[allow(unsafe_code)]
fn load(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file be the output of
    // `precompile_component` of a compatible engine and not be modified while
    // mapped. Entries are written only by `store` (temp file + rename, never
    // in place), named by the engine's compatibility hash, and wasmtime itself
    // checks the header, version and settings and rejects anything else with
    // an error, which `component` answers by compiling again.
    unsafe { Component::deserialize_file(engine, entry) }
}

/// Loads what `precompile_component` just produced in this process.
#[allow(unsafe_code)]
fn load_bytes(engine: &Engine, compiled: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: the bytes come straight from `engine.precompile_component`.
    unsafe { Component::deserialize(engine, compiled) }
}

/// Writes `bytes` to `entry` atomically: a temporary file in the same
/// directory, renamed over the entry.
fn store(dir: &Path, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".partial-")
        .suffix(".cwasm")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(entry).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn the_directory_follows_the_environment() {
        let dir = |pairs: &[(&str, &str)]| CompileCache::from_vars(&vars(pairs)).dir;
        assert_eq!(
            dir(&[
                ("SINKHOST_CACHE_DIR", "/c"),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ]),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            dir(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]),
            Some(PathBuf::from("/x/sinkhost"))
        );
        assert_eq!(
            dir(&[("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/sinkhost"))
        );
        assert_eq!(dir(&[("SINKHOST_CACHE", "off"), ("HOME", "/h")]), None);
        assert_eq!(dir(&[]), None);
    }
}
