//! Property tests of the config.d loader: mutated and arbitrary files never
//! panic it, and every error it reports points at the file. `make test` runs
//! proptest's default 256 cases per property; `make fuzz` runs 100,000.

use proptest::prelude::*;
use sinkhost::config::{self, PluginSearch};

/// A valid file of the reference shape, with `${VAR}`s the environment below has.
const VALID: &str = r#"stream:
  name: events
  subjects: [order.>, mail.>]
  max_age: 72h
  storage: file

subscriptions:
  - name: backend
    subject: ">"
    consumer: backend-consumer
    webhook:
      url: "${URL:-http://127.0.0.1:8091/hook}"
      headers:
        Authorization: "Bearer ${TOKEN}"
    settings: {reject_status: [400, 422]}
    timeout: "15s"
    retries: 3
    backoff: "2s"
    max_concurrency: 50
    ack_wait: "120s"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("t0k$en: {not yaml".into()),
        "URL" => Some(String::new()),
        _ => None,
    }
}

/// Fragments that mean something to YAML or to `${}` expansion.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(": ".to_owned()),
        Just("\n  - ".to_owned()),
        Just("\n    ".to_owned()),
        Just("${".to_owned()),
        Just("${UNSET}".to_owned()),
        Just("$$".to_owned()),
        Just("}".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("&a *a".to_owned()),
        Just("!!binary ".to_owned()),
        Just("# ".to_owned()),
        Just("\t".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("1e400".to_owned()),
        Just("1ms".to_owned()),
        Just("*".to_owned()),
        Just(">".to_owned()),
        "\\PC{0,6}",
    ]
}

/// `VALID` with a few bytes replaced, inserted or removed at char boundaries.
fn mutated() -> impl Strategy<Value = String> {
    prop::collection::vec((0..VALID.len(), 0usize..8, fragment()), 1..5).prop_map(|edits| {
        let mut text = VALID.to_owned();
        for (at, remove, insert) in edits {
            let mut start = at.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + remove).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(start..end, &insert);
        }
        text
    })
}

/// Loads `text` as config.d/10.yml; an error must name the file.
fn load(text: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("10.yml"), text).expect("writing 10.yml");
    let plugins = PluginSearch {
        dirs: vec![dir.path().to_owned()],
    };
    std::fs::write(dir.path().join("http-webhook.wasm"), b"").expect("a plugin file");
    if let Err(error) = config::load(dir.path(), &env, &plugins) {
        let message = error.to_string();
        prop_assert!(
            message.contains("10.yml") || message.contains(&dir.path().display().to_string()),
            "the error does not name the file: {message}"
        );
    }
    Ok(())
}

#[test]
fn the_unmutated_file_is_valid() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("10.yml"), VALID).expect("writing 10.yml");
    std::fs::write(dir.path().join("http-webhook.wasm"), b"").expect("a plugin file");
    let plugins = PluginSearch {
        dirs: vec![dir.path().to_owned()],
    };
    let config = config::load(dir.path(), &env, &plugins).expect("VALID loads");
    assert_eq!(config.subscriptions.len(), 1);
}

proptest! {
    #[test]
    fn mutated_files_never_panic_the_loader(text in mutated()) {
        load(&text)?;
    }

    #[test]
    fn arbitrary_files_never_panic_the_loader(text in "\\PC*") {
        load(&text)?;
    }
}
