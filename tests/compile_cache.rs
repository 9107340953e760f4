//! The compile cache as an operator sees it through `sinkhost check`: the
//! second start loads the compiled plugin instead of compiling it, a changed
//! `.wasm` is compiled again, a damaged cache file is replaced (never fatal),
//! and `SINKHOST_CACHE=off` leaves no files.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sub_yaml;
use support::{CliOutput, ConfigDir, plugin_dir, sinkhost_cli};

const WAIT: Duration = Duration::from_secs(60);
const COMPILED: &str = "compiled plugin and stored it in the cache";
const LOADED: &str = "loaded compiled plugin from the cache";
const UNUSABLE: &str = "compiled plugin in the cache is unusable";

/// A config.d whose one subscription uses its own copy of http-webhook.
fn config_with_own_plugin() -> ConfigDir {
    let wasm = std::fs::read(plugin_dir().join("http-webhook.wasm"))
        .expect("target/release/plugins/http-webhook.wasm (run `make plugins`)");
    let config = ConfigDir::new().file("sink.wasm", wasm);
    config.write(
        "10-sub.yml",
        format!(
            "subscriptions:\n{}",
            sub_yaml(
                "cached",
                "cache.>",
                "http://127.0.0.1:1/hook",
                "plugin: ./sink.wasm"
            )
        ),
    );
    config
}

async fn check(config: &ConfigDir, cache: &Path, extra: &[(&str, &str)]) -> CliOutput {
    let mut env = vec![
        ("SINKHOST_CACHE_DIR", cache.to_str().unwrap()),
        ("SINKHOST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    let out = sinkhost_cli(
        &["check", "--config-dir", config.path().to_str().unwrap()],
        "nats://unused:1",
        &env,
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    out
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_start_loads_the_compiled_plugin_from_the_cache() {
    let config = config_with_own_plugin();
    let cache = tempfile::tempdir().unwrap();

    let first = check(&config, cache.path(), &[]).await;
    assert!(first.stderr.contains(COMPILED), "{first:?}");
    let stored = entries(cache.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    let name = stored[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("sink-") && name.ends_with(".cwasm"),
        "{name}"
    );

    let second = check(&config, cache.path(), &[]).await;
    assert!(second.stderr.contains(LOADED), "{second:?}");
    assert!(!second.stderr.contains(COMPILED), "{second:?}");
    assert_eq!(entries(cache.path()), stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plugin_is_compiled_again() {
    let config = config_with_own_plugin();
    let cache = tempfile::tempdir().unwrap();
    check(&config, cache.path(), &[]).await;
    let before = entries(cache.path());

    // Same code, different bytes: a custom section appended to the component.
    let mut wasm = std::fs::read(config.path().join("sink.wasm")).unwrap();
    let (name, payload) = (b"rebuilt", b"2");
    wasm.extend([0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    wasm.extend(name);
    wasm.extend(payload);
    config.write("sink.wasm", wasm);

    let out = check(&config, cache.path(), &[]).await;
    assert!(out.stderr.contains(COMPILED), "{out:?}");
    assert!(!out.stderr.contains(LOADED), "{out:?}");
    let after = entries(cache.path());
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(before.iter().all(|entry| after.contains(entry)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_file_is_replaced_not_fatal() {
    let config = config_with_own_plugin();
    let cache = tempfile::tempdir().unwrap();
    check(&config, cache.path(), &[]).await;
    let entry = entries(cache.path()).remove(0);
    let good = std::fs::read(&entry).unwrap();

    for damage in [
        b"not a compiled plugin".to_vec(),
        good[..good.len() / 2].to_vec(),
    ] {
        std::fs::write(&entry, &damage).unwrap();
        let out = check(&config, cache.path(), &[]).await;
        assert!(out.stderr.contains(UNUSABLE), "{out:?}");
        assert!(out.stderr.contains(COMPILED), "{out:?}");
        assert_eq!(std::fs::read(&entry).unwrap().len(), good.len());

        let next = check(&config, cache.path(), &[]).await;
        assert!(next.stderr.contains(LOADED), "{next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_can_be_turned_off() {
    let config = config_with_own_plugin();
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = check(&config, cache.path(), &[("SINKHOST_CACHE", "off")]).await;
        assert!(!out.stderr.contains(COMPILED), "{out:?}");
        assert!(!out.stderr.contains(LOADED), "{out:?}");
    }
    assert_eq!(entries(cache.path()), Vec::<PathBuf>::new());
}
