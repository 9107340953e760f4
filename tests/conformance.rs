//! Every plugin in the repository — built-ins and the JS/Python examples —
//! passes `sinkhost plugin conformance`: the same checks
//! (`sinkhost::conformance`) run here through the library and once through
//! the command, against the loopback destination the checks start. A plugin
//! that breaks the contract fails them, with exit code 1.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sinkhost::conformance::{self, Sample};
use support::{sinkhost_cli, workspace_root};

/// A JS or Python plugin compiles for up to half a minute on its first use.
const WAIT: Duration = Duration::from_secs(120);

struct Case {
    plugin: PathBuf,
    settings: serde_json::Value,
    sample: Sample,
    /// Follows the templates' policy too: the advice rows pass.
    policy: bool,
}

fn cases() -> Vec<Case> {
    let root = workspace_root().join("target");
    let builtin = |name: &str| root.join("release/plugins").join(format!("{name}.wasm"));
    let example = |name: &str| root.join("examples").join(format!("{name}.wasm"));
    let sample = |subject: &str, payload: &str| Sample {
        subject: subject.into(),
        payload: payload.as_bytes().to_vec(),
    };
    vec![
        // The seed's default: every non-2xx is retried unless listed.
        Case {
            plugin: builtin("http-webhook"),
            settings: json!({"reject_status": [422]}),
            sample: Sample::default(),
            policy: false,
        },
        Case {
            plugin: builtin("mailer-apikey"),
            settings: json!({"api_key": "k-conformance"}),
            sample: sample("mail.welcome", r#"{"to": "a@example.com"}"#),
            policy: true,
        },
        Case {
            plugin: builtin("drupal-stripe"),
            settings: json!({"signing_secret": "whsec_conformance"}),
            sample: sample(
                "stripe.drupal",
                r#"{"id": "evt_1", "type": "charge.succeeded", "data": {"object": {}}}"#,
            ),
            policy: true,
        },
        Case {
            plugin: example("js-teams"),
            settings: json!({}),
            sample: Sample::default(),
            policy: true,
        },
        Case {
            plugin: example("python-slack"),
            settings: json!({}),
            sample: Sample::default(),
            policy: true,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_passes_the_conformance_checks() {
    let mut failures = Vec::new();
    for case in cases() {
        assert!(
            case.plugin.is_file(),
            "{} is missing: run `make plugins examples`",
            case.plugin.display()
        );
        let verdict = conformance::check(&case.plugin, case.settings.clone(), &case.sample).await;
        assert_eq!(verdict.checks.len(), 12, "{verdict:?}");
        for check in &verdict.checks {
            if !check.passed && (check.required || case.policy) {
                failures.push(format!(
                    "{}: {}: {}",
                    case.plugin.display(),
                    check.name,
                    check.detail
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}

/// The command prints one row per check and exits 0; on a plugin that traps
/// in `deliver` the rows that need a call say FAIL with the trap, and it
/// exits 1. A plugin that is no component fails the first row and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_the_table_and_exits_by_the_required_checks() {
    let root = workspace_root().join("target/release");
    let webhook = root.join("plugins/http-webhook.wasm");
    let out = sinkhost_cli(
        &["plugin", "conformance", webhook.to_str().unwrap()],
        "nats://unused:1",
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert!(rows[0].starts_with("check ") && rows[0].contains("result  detail"));
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name:?} in\n{}", out.stdout))
            .to_string()
    };
    assert!(row("2xx is delivered").contains(" ok "), "{}", out.stdout);
    assert!(
        row("429 Retry-After: 7 is honoured").ends_with("retry in 7000ms"),
        "{}",
        out.stdout
    );
    // http-webhook retries a 400 unless `reject_status` lists it: advice only.
    assert!(
        row("400 is rejected").contains(" advice "),
        "{}",
        out.stdout
    );
    assert_eq!(
        rows.last(),
        Some(&"passed: 12 checks, 0 failed, 1 advice (not required)")
    );

    let hostile = root.join("test-plugins/hostile.wasm");
    let out = sinkhost_cli(
        &[
            "plugin",
            "conformance",
            hostile.to_str().unwrap(),
            "--settings",
            r#"{"mode": "trap"}"#,
        ],
        "nats://unused:1",
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let delivered = out
        .stdout
        .lines()
        .find(|r| r.starts_with("2xx is delivered"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        delivered.contains(" FAIL ") && delivered.contains("plugin trapped"),
        "{delivered}"
    );
    assert!(
        out.stdout.contains("\nFAILED: 12 checks, "),
        "{}",
        out.stdout
    );

    let not_wasm = support::ConfigDir::new().file("broken.wasm", "not a component");
    let broken = not_wasm.path().join("broken.wasm");
    let out = sinkhost_cli(
        &["plugin", "conformance", broken.to_str().unwrap()],
        "nats://unused:1",
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert!(
        rows[1].starts_with("loads and initialises") && rows[1].contains(" FAIL "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAILED: 1 checks, 1 failed"),
        "{}",
        out.stdout
    );
}
