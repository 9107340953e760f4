//! Every plugin in the repository — built-ins and the JS/Python examples —
//! passes the same checks, run through the host's plugin runtime without NATS:
//!
//! 1. `init` with settings it does not know returns an error (a config error
//!    `sinkhost check` can report), it does not trap;
//! 2. `deliver` of a payload that is not JSON (nor UTF-8) does not trap;
//! 3. a host HTTP error (connection refused) becomes `retry`, never `delivered`;
//! 4. with a destination that answers 200, the message is `delivered`.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sinkhost::outbound::{Allowlist, Outbound};
use sinkhost::plugin::{Limits, Message, Outcome, PluginError, Runtime, Sink, SinkSpec};
use support::{Receiver, workspace_root};

struct Case {
    plugin: PathBuf,
    settings: serde_json::Value,
    subject: &'static str,
    payload: &'static str,
}

fn cases() -> Vec<Case> {
    let root = workspace_root().join("target");
    let builtin = |name: &str| root.join("release/plugins").join(format!("{name}.wasm"));
    let example = |name: &str| root.join("examples").join(format!("{name}.wasm"));
    let order = r#"{"order_id": 42, "total": "19.90", "customer": "Ada"}"#;
    vec![
        Case {
            plugin: builtin("http-webhook"),
            settings: json!({"reject_status": [422]}),
            subject: "order.completed",
            payload: order,
        },
        Case {
            plugin: builtin("mailer-apikey"),
            settings: json!({"api_key": "k-conformance"}),
            subject: "mail.welcome",
            payload: r#"{"to": "a@example.com"}"#,
        },
        Case {
            plugin: builtin("drupal-stripe"),
            settings: json!({"signing_secret": "whsec_conformance"}),
            subject: "stripe.drupal",
            payload: r#"{"id": "evt_1", "type": "charge.succeeded", "data": {"object": {}}}"#,
        },
        Case {
            plugin: example("js-teams"),
            settings: json!({}),
            subject: "order.completed",
            payload: order,
        },
        Case {
            plugin: example("python-slack"),
            settings: json!({}),
            subject: "order.completed",
            payload: order,
        },
    ]
}

fn sink(runtime: &Runtime, case: &Case, url: &str, settings: &serde_json::Value) -> Sink {
    assert!(
        case.plugin.is_file(),
        "{} is missing: run `make plugins examples`",
        case.plugin.display()
    );
    let host = url::Url::parse(url).unwrap();
    let allow = Allowlist::new(&[format!(
        "{}:{}",
        host.host_str().unwrap(),
        host.port().unwrap()
    )]);
    runtime
        .sink(SinkSpec {
            subscription: "conformance".into(),
            plugin: case.plugin.clone(),
            init_json: json!({
                "subscription": "conformance",
                "webhook": {"url": url, "headers": {"Authorization": "Bearer conformance"}},
                "settings": settings,
            })
            .to_string(),
            outbound: Outbound::new(Outbound::shared_client(), allow, Duration::from_secs(5)),
            secrets: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.plugin.display()))
}

fn message(case: &Case, payload: &[u8]) -> Message {
    Message {
        subject: case.subject.into(),
        payload: payload.to_vec(),
        headers: vec![("Nats-Msg-Id".into(), "conformance-1".into())],
        id: "conformance-1".into(),
        published_ms: 1_776_758_990_000,
        attempt: 1,
        max_attempts: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_passes_the_conformance_checks() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    let receiver = Receiver::ok().await;
    let refused = {
        // a port that was just free: connecting to it is refused
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/hook")
    };
    let mut failures = Vec::new();
    for case in cases() {
        let name = case
            .plugin
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                failures.push(format!("{name}: {what}: {detail}"));
            }
        };

        // 1. unknown settings: an init error, not a trap
        let mut bad = case.settings.clone();
        bad["conformance_no_such_setting"] = json!(true);
        let result = sink(&runtime, &case, &receiver.url("/hook"), &bad)
            .check()
            .await;
        check(
            "init with an unknown setting returns an error",
            matches!(result, Err(PluginError::Init(_))),
            format!("{result:?}"),
        );

        // 2. a payload that is neither JSON nor UTF-8: any outcome but a trap
        let good = sink(&runtime, &case, &receiver.url("/hook"), &case.settings);
        good.check()
            .await
            .unwrap_or_else(|e| panic!("{name}: init with valid settings: {e}"));
        let result = good
            .deliver(&message(&case, &[0xff, 0xfe, 0x00, b'{']))
            .await;
        check(
            "deliver of a non-JSON payload does not trap",
            result.is_ok(),
            format!("{result:?}"),
        );

        // 3. a host HTTP error becomes retry
        let down = sink(&runtime, &case, &refused, &case.settings);
        let result = down.deliver(&message(&case, case.payload.as_bytes())).await;
        check(
            "a refused connection becomes retry",
            matches!(&result, Ok(d) if matches!(d.outcome, Outcome::Retry(_))),
            format!("{result:?}"),
        );

        // 4. a healthy destination gets it
        let result = good.deliver(&message(&case, case.payload.as_bytes())).await;
        check(
            "a 200 is delivered",
            matches!(&result, Ok(d) if d.outcome == Outcome::Delivered),
            format!("{result:?}"),
        );
    }
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}
