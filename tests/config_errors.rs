//! Golden tests for config.d.
//!
//! Every folder under `tests/ui/invalid/` is a config directory that must fail to
//! load with exactly the message in its `expected.txt`. Messages are compared with
//! paths relative to the repository root and the plugin search directory shown as
//! `<plugins>`. To accept new messages after a deliberate change:
//!
//! ```text
//! BLESS=1 cargo test --release -p sinkhost --test config_errors
//! ```
//!
//! `tests/ui/valid/` holds directories that must load, and the repository's own
//! `config.d/` is loaded as the reference deployment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sinkhost::config::{self, Config, ConfigError, PluginSearch, Storage};

/// The environment every case sees: fixed, never the process's.
fn env(name: &str) -> Option<String> {
    let value = match name {
        "WEBHOOK_URL" => "http://127.0.0.1:8091/hook",
        "SECRET" => "s3cret-value",
        "EMPTY" => "",
        // A malformed URL whose query is a credential.
        "BAD_SECRET_URL" => "127.0.0.1:8091/hook?token=s3cret-value",
        // The seed's variables.
        "BACKEND_WEBHOOK_URL" => "http://backend:8080/api/v1/webhooks/nats",
        "NATS_WEBHOOK_SECRET" => "backend-secret",
        "MAILER_WEBHOOK_URL" => "http://mailer:3000/mail-template",
        "MAILER_API_KEY" => "mailer-key",
        "DRUPAL_STRIPE_WEBHOOK_URL" => "http://hns_nginx/stripe-webhook",
        "DRUPAL_WEBHOOK_SECRET" => "drupal-secret",
        _ => return None,
    };
    Some(value.to_owned())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned()
}

/// A plugin directory holding only `http-webhook.wasm` (resolution checks that the
/// file exists, not what is in it).
struct Plugins {
    dir: tempfile::TempDir,
    search: PluginSearch,
}

fn plugins() -> Plugins {
    plugins_named(&["http-webhook"])
}

/// Like [`plugins`], with every built-in plugin the reference config.d names.
fn builtin_plugins() -> Plugins {
    plugins_named(&["http-webhook", "mailer-apikey", "drupal-stripe"])
}

fn plugins_named(names: &[&str]) -> Plugins {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        std::fs::write(dir.path().join(format!("{name}.wasm")), b"").expect("dummy plugin");
    }
    let search = PluginSearch {
        dirs: vec![dir.path().to_owned()],
    };
    Plugins { dir, search }
}

fn load(dir: &Path, plugins: &Plugins) -> Result<Config, ConfigError> {
    config::load(dir, &env, &plugins.search)
}

/// The message with machine-specific paths replaced.
fn render(err: &ConfigError, plugins: &Plugins) -> String {
    err.to_string()
        .replace(&format!("{}/", repo_root().display()), "")
        .replace(&plugins.dir.path().display().to_string(), "<plugins>")
}

#[test]
fn invalid_configs_fail_with_golden_messages() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v != "0" && !v.is_empty());
    let plugins = plugins();
    let root = repo_root().join("tests/ui/invalid");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/ui/invalid")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 12,
        "only {} cases in {}",
        cases.len(),
        root.display()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy();
        let actual = match load(case, &plugins) {
            Ok(config) => format!("loaded without error: {config:#?}"),
            Err(err) => render(&err, &plugins),
        };
        let expected_file = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_file, format!("{actual}\n")).expect("write expected.txt");
            continue;
        }
        match std::fs::read_to_string(&expected_file) {
            Ok(expected) if expected.trim_end() == actual => {}
            Ok(expected) => failures.push(format!(
                "{name}:\n  expected: {}\n  actual:   {actual}",
                expected.trim_end()
            )),
            Err(err) => failures.push(format!(
                "{name}: cannot read expected.txt ({err}); actual: {actual}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (BLESS=1 rewrites expected.txt):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn error_names_file_line_and_key() {
    let plugins = plugins();
    let dir = repo_root().join("tests/ui/invalid/bad-duration");
    let err = load(&dir, &plugins).unwrap_err();
    let ConfigError::InvalidDuration { at, key, value } = &err else {
        panic!("expected InvalidDuration, got {err:?}");
    };
    assert_eq!(at.file, dir.join("20-mailer.yml"));
    assert_eq!(at.line, Some(9));
    assert_eq!(key, "subscriptions[0].backoff");
    assert_eq!(value, "2x");
    assert_eq!(err.origin(), Some(at));
}

#[test]
fn missing_directory_is_an_error() {
    let plugins = plugins();
    let dir = repo_root().join("tests/ui/no-such-dir");
    let err = load(&dir, &plugins).unwrap_err();
    assert!(matches!(err, ConfigError::ReadDir { .. }), "{err:?}");
    assert!(
        render(&err, &plugins)
            .starts_with("tests/ui/no-such-dir: cannot read the config directory: "),
        "{err}"
    );
}

#[test]
fn seed_files_load_unchanged() {
    let plugins = plugins();
    let dir = repo_root().join("tests/ui/valid/seed");
    let config = load(&dir, &plugins).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.stream, None);
    let summary: Vec<(&str, &str, &str, &str)> = config
        .subscriptions
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.subject.as_str(),
                s.consumer.as_str(),
                s.webhook.url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "backend-all-events",
                ">",
                "backend-all-events-consumer",
                "http://backend:8080/api/v1/webhooks/nats"
            ),
            (
                "mailer-auth-events",
                "mail.>",
                "mailer-auth-events-consumer",
                "http://mailer:3000/mail-template"
            ),
            (
                "stripe-drupal",
                "stripe.drupal",
                "stripe-drupal-consumer",
                "http://hns_nginx/stripe-webhook"
            ),
        ]
    );
    let stripe = config.subscription("stripe-drupal").unwrap();
    assert_eq!(
        stripe
            .webhook
            .headers
            .get("Authorization")
            .map(String::as_str),
        Some("Bearer drupal-secret")
    );
    assert_eq!(stripe.plugin.name, "http-webhook");
    assert_eq!(
        stripe.plugin.path,
        plugins.dir.path().join("http-webhook.wasm")
    );
    assert_eq!(stripe.settings, serde_json::json!({}));
    assert_eq!(stripe.timeout, Duration::from_secs(15));
    assert_eq!(stripe.retries, 3);
    assert_eq!(stripe.max_attempts(), 4);
    assert_eq!(stripe.backoff, Duration::from_secs(2));
    assert_eq!(stripe.max_concurrency, 50);
    assert_eq!(stripe.ack_wait, Duration::from_secs(120));
    assert_eq!(stripe.origin.file, dir.join("30-stripe-drupal.yml"));
    assert_eq!(stripe.origin.line, Some(2));
    let mailer = config.subscription("mailer-auth-events").unwrap();
    // The URL's path counts: for many webhooks the URL is the credential.
    assert_eq!(mailer.secrets(), ["/mail-template", "mailer-key"]);
    assert_eq!(mailer.allowed_hosts(), ["mailer:3000"]);
}

#[test]
fn reference_config_d_loads_with_dev_defaults() {
    let plugins = builtin_plugins();
    let config = config::load(&repo_root().join("config.d"), &|_| None, &plugins.search)
        .unwrap_or_else(|err| panic!("{err}"));
    let stream = config.stream.as_ref().expect("00-stream.yml");
    assert_eq!(stream.name, "hns_ticketing_events");
    assert_eq!(
        stream.subjects,
        [
            "ticket.>",
            "order.>",
            "payment.>",
            "match.>",
            "queue.>",
            "quota.>",
            "blacklist.>",
            "loyalty.>",
            "mail.>",
            "stripe.>"
        ]
    );
    assert_eq!(stream.max_age, Duration::from_secs(72 * 3600));
    assert_eq!(stream.storage, Storage::File);

    let names: Vec<&str> = config
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["backend-all-events", "mailer-auth-events", "stripe-drupal"]
    );
    let backend = config.subscription("backend-all-events").unwrap();
    assert_eq!(backend.subject, ">");
    assert_eq!(backend.consumer, "backend-all-events-consumer");
    assert_eq!(
        backend.webhook.url,
        "http://127.0.0.1:8091/api/v1/webhooks/nats"
    );
    assert_eq!(
        backend.webhook.headers["Authorization"],
        "Bearer dev-backend-secret"
    );
    let mailer = config.subscription("mailer-auth-events").unwrap();
    assert_eq!(mailer.webhook.url, "http://127.0.0.1:8091/mail-template");
    assert!(mailer.webhook.headers.is_empty());
    assert_eq!(
        mailer.settings,
        serde_json::json!({"api_key": "dev-mailer-key"})
    );
    let stripe = config.subscription("stripe-drupal").unwrap();
    assert_eq!(stripe.subject, "stripe.drupal");
    assert_eq!(stripe.webhook.url, "http://127.0.0.1:8091/stripe-webhook");
    assert_eq!(
        stripe.webhook.headers["Authorization"],
        "Bearer dev-drupal-secret"
    );
    assert_eq!(
        stripe.settings,
        serde_json::json!({"signing_secret": "whsec_dev_only_not_secret"})
    );
    let plugin_names: Vec<&str> = config
        .subscriptions
        .iter()
        .map(|s| s.plugin.name.as_str())
        .collect();
    assert_eq!(
        plugin_names,
        ["http-webhook", "mailer-apikey", "drupal-stripe"]
    );
    for sub in &config.subscriptions {
        assert_eq!(
            (
                sub.timeout,
                sub.retries,
                sub.backoff,
                sub.max_concurrency,
                sub.ack_wait
            ),
            (
                Duration::from_secs(15),
                3,
                Duration::from_secs(2),
                50,
                Duration::from_secs(120)
            ),
            "{}",
            sub.name
        );
        assert_eq!(sub.allowed_hosts(), ["127.0.0.1:8091"], "{}", sub.name);
    }
}

#[test]
fn reference_config_d_takes_values_from_the_environment() {
    let plugins = builtin_plugins();
    let env = |name: &str| match name {
        "MAILER_WEBHOOK_URL" => Some("https://mailer.internal/mail-template".to_owned()),
        "MAILER_API_KEY" => Some("prod-key-123".to_owned()),
        // Set but empty falls back to the default, as in the shell.
        "NATS_WEBHOOK_SECRET" => Some(String::new()),
        _ => None,
    };
    let config = config::load(&repo_root().join("config.d"), &env, &plugins.search)
        .unwrap_or_else(|err| panic!("{err}"));
    let mailer = config.subscription("mailer-auth-events").unwrap();
    assert_eq!(mailer.webhook.url, "https://mailer.internal/mail-template");
    assert_eq!(mailer.settings["api_key"], "prod-key-123");
    assert_eq!(mailer.allowed_hosts(), ["mailer.internal:443"]);
    let backend = config.subscription("backend-all-events").unwrap();
    assert_eq!(
        backend.webhook.headers["Authorization"],
        "Bearer dev-backend-secret"
    );
}

#[test]
fn every_optional_key_loads() {
    let plugins = plugins();
    let dir = repo_root().join("tests/ui/valid/full");
    let config = load(&dir, &plugins).unwrap_or_else(|err| panic!("{err}"));
    let stream = config.stream.as_ref().unwrap();
    assert_eq!(stream.name, "events_test");
    assert_eq!(stream.subjects, ["order.>", "stripe.*"]);
    assert_eq!(stream.max_age, Duration::from_secs(5400));
    assert_eq!(stream.storage, Storage::Memory);
    assert_eq!(stream.origin.file, dir.join("00-stream.yaml"));
    assert_eq!(stream.origin.line, Some(2));

    let [orders, stripe] = &config.subscriptions[..] else {
        panic!("two subscriptions expected: {config:#?}");
    };
    assert_eq!(orders.plugin.name, "./sinks/orders-sink.wasm");
    assert_eq!(orders.plugin.path, dir.join("sinks/orders-sink.wasm"));
    assert_eq!(orders.webhook.headers["X-Note"], "costs $5, plan basic");
    assert_eq!(orders.timeout, Duration::from_millis(500));
    assert_eq!((orders.retries, orders.max_attempts()), (0, 1));
    assert_eq!(orders.backoff, Duration::ZERO);
    assert_eq!(orders.max_concurrency, 1);
    assert_eq!(orders.ack_wait, Duration::from_secs(3600));
    assert_eq!(orders.ordering, config::Ordering::PerSubject);
    assert_eq!(
        orders.rate_limit,
        Some(config::RateLimit {
            count: 600,
            per: Duration::from_secs(60)
        })
    );
    assert_eq!(
        orders.breaker,
        config::Breaker {
            failures: 3,
            probe_interval: Duration::from_millis(250),
            max_probe_interval: Duration::from_secs(10),
        }
    );
    assert_eq!(orders.dead_letter_after, Duration::from_secs(3600));
    assert_eq!(orders.origin.line, Some(3));
    assert_eq!(
        orders.allowed_hosts(),
        ["127.0.0.1:8091", "api.example.com"]
    );
    assert_eq!(
        orders.secrets(),
        [
            "costs $5, plan basic",
            "Bearer s3cret-value",
            "whsec_s3cret-value",
            "s3cret-value",
            "/hook"
        ]
    );
    let init: serde_json::Value = serde_json::from_str(&orders.plugin_init_json()).unwrap();
    assert_eq!(
        init,
        serde_json::json!({
            "subscription": "orders_v2",
            "webhook": {
                "url": "http://127.0.0.1:8091/hook",
                "headers": {
                    "Authorization": "Bearer s3cret-value",
                    "X-Note": "costs $5, plan basic",
                },
            },
            "settings": {
                "signing_secret": "whsec_s3cret-value",
                "reject_status": [400, 422],
            },
        })
    );
    // Debug output is safe to log.
    let debug = format!("{config:?}");
    for secret in orders.secrets() {
        assert!(!debug.contains(&secret), "{secret:?} leaked into {debug}");
    }

    assert_eq!(stripe.plugin.name, "http-webhook");
    assert_eq!(stripe.ordering, config::Ordering::None);
    assert_eq!(stripe.rate_limit, None);
    assert_eq!(stripe.breaker, config::Breaker::default());
    assert_eq!(
        stripe.dead_letter_after,
        Duration::from_secs(45 * 60),
        "the default 24h is cut to half the stream's max_age of 1h30m"
    );
    assert_eq!(stripe.webhook.headers.len(), 0);
    assert_eq!(stripe.origin.line, Some(28));
    assert_eq!(stripe.secrets(), ["/stripe-webhook"]);
}
