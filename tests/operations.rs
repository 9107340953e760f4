//! The operator's surface: `sinkhost check`, startup refusals, /healthz,
//! /metrics, and how the host reconciles streams and consumers it finds.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use common::{hostile_plugin, metric, stream_yaml, sub_yaml, wait_metric};
use support::{ConfigDir, Host, NatsServer, Receiver, publish, sinkhost_cli, workspace_root};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_the_reference_config() {
    let dir = workspace_root().join("config.d");
    let out = sinkhost_cli(
        &["check", "--config-dir", dir.to_str().unwrap()],
        "nats://unused:1",
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for name in ["backend-all-events", "mailer-auth-events", "stripe-drupal"] {
        assert!(
            out.stdout.contains(name),
            "{name} missing from:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("config.d is valid: 3 subscription(s)"),
        "{}",
        out.stdout
    );
}

/// `check` and `run` report the same config error, with file, line and key,
/// and exit 2; `run` never gets as far as listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_exit_2_naming_file_line_and_key() {
    let config = ConfigDir::new().file(
        "20-mailer.yml",
        "subscriptions:\n  - name: m\n    subject: mail.>\n    consumer: m-c\n    webhook:\n      url: http://127.0.0.1:1/x\n    backoff: 2x\n",
    );
    let dir = config.path().to_str().unwrap();
    let expected =
        format!("{dir}/20-mailer.yml:7: subscriptions[0].backoff: invalid duration \"2x\"");
    for command in ["check", "run"] {
        let out = sinkhost_cli(
            &[command, "--config-dir", dir],
            "nats://127.0.0.1:1",
            &[],
            WAIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        assert!(
            out.stderr.contains(&expected),
            "{command} stderr:\n{}\nexpected {expected}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("listening"),
            "{command} started anyway"
        );
    }
}

/// A plugin whose `init` fails is a configuration error: `check` names the
/// subscription, and `run` refuses to start before creating any consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_init_failure_stops_check_and_run_before_any_consumer() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let bad = format!(
        "plugin: \"{}\"\nsettings: {{mode: init-error}}",
        hostile_plugin()
    );
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("init_s", &["init.>"]),
            sub_yaml("good", "init.good", &receiver.url("/h"), ""),
            sub_yaml("refuses", "init.bad", &receiver.url("/h"), &bad)
        ),
    );
    let dir = config.path().to_str().unwrap();
    for command in ["check", "run"] {
        let out = sinkhost_cli(&[command, "--config-dir", dir], &nats.url(), &[], WAIT).await;
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        assert!(
            out.stderr.contains("subscription refuses")
                && out
                    .stderr
                    .contains("plugin init failed: settings.mode is init-error"),
            "{command} stderr:\n{}",
            out.stderr
        );
    }
    let js = nats.jetstream().await;
    assert!(
        js.get_stream("init_s").await.is_err(),
        "run touched NATS before refusing"
    );
}

/// /healthz is 503 while NATS is unreachable (before the first connection
/// and after losing it) and 200 once every subscription consumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_nats_and_the_consumers() {
    let nats = NatsServer::start();
    nats.stop();
    let receiver = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("health_s", &["health.>"]),
            sub_yaml("watched", "health.>", &receiver.url("/h"), "")
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    let (status, body) = host.http_get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["subscriptions"]["watched"], "starting");

    nats.restart();
    host.wait_healthy(WAIT).await;
    let (_, body) = host.http_get("/healthz").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ok", "nats": "connected",
            "subscriptions": {"watched": "consuming"},
            "destinations": {"watched": {"state": "up"}},
        })
    );

    nats.stop();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = host.http_get("/healthz").await;
        if status == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz stayed {status} with NATS down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_failures_and_dead_letters_per_subscription() {
    let nats = NatsServer::start();
    let ok = Receiver::ok().await;
    let broken = Receiver::status(503).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("metrics_s", &["m.>"]),
            sub_yaml("fine", "m.ok", &ok.url("/h"), ""),
            sub_yaml(
                "failing",
                "m.bad",
                &broken.url("/h"),
                // Each message spends its own retries: no breaker.
                "retries: 1\nbackoff: \"100ms\"\nbreaker: {failures: 0}"
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for _ in 0..3 {
        publish(&js, "m.ok", "{}", &[]).await;
    }
    publish(&js, "m.bad", "{}", &[]).await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"failing\"}",
        1.0,
        WAIT,
    )
    .await;
    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"fine\",outcome=\"delivered\"}",
        3.0,
        WAIT,
    )
    .await;

    let series = [
        (
            "sinkhost_deliveries_total{subscription=\"failing\",outcome=\"retry\"}",
            2.0,
        ),
        (
            "sinkhost_http_requests_total{subscription=\"fine\",result=\"2xx\"}",
            3.0,
        ),
        (
            "sinkhost_http_requests_total{subscription=\"failing\",result=\"5xx\"}",
            2.0,
        ),
        (
            "sinkhost_delivery_duration_seconds_count{subscription=\"fine\"}",
            3.0,
        ),
        ("sinkhost_in_flight{subscription=\"fine\"}", 0.0),
        (
            "sinkhost_subscription_consuming{subscription=\"failing\"}",
            1.0,
        ),
        ("sinkhost_nats_connected", 1.0),
    ];
    for (name, value) in series {
        assert_eq!(metric(&host, name).await, Some(value), "{name}");
    }
    let (_, text) = host.http_get("/metrics").await;
    assert!(
        text.contains("# TYPE sinkhost_delivery_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        !text.contains("secret-fine"),
        "a header value leaked into /metrics"
    );
}

/// An existing durable with other settings is updated to the config (no
/// get-or-create that keeps the old one), and the stream's age limit too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_stream_and_consumer_are_reconciled_with_the_config() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let old_stream = js
        .create_stream(stream::Config {
            name: "rec_s".into(),
            subjects: vec!["rec.>".into()],
            max_age: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .unwrap();
    old_stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("rec-consumer".into()),
            filter_subject: "rec.>".into(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            max_deliver: 10,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
            ..Default::default()
        })
        .await
        .unwrap();
    let receiver = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("rec_s", &["rec.>", "more.>"]),
            sub_yaml(
                "rec",
                "rec.>",
                &receiver.url("/h"),
                "max_concurrency: 7\nack_wait: \"45s\""
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    let mut stream = js.get_stream("rec_s").await.unwrap();
    let info = stream.info().await.unwrap().config.clone();
    assert_eq!(info.max_age, Duration::from_secs(3600));
    assert_eq!(info.subjects, ["rec.>", "more.>"]);
    let mut consumer: consumer::PullConsumer = stream.get_consumer("rec-consumer").await.unwrap();
    let got = consumer.info().await.unwrap().config.clone();
    assert_eq!(got.max_ack_pending, 7);
    assert_eq!(got.ack_wait, Duration::from_secs(45));
    assert!(
        got.backoff.is_empty(),
        "a consumer BackOff would replace AckWait: {:?}",
        got.backoff
    );
    assert_eq!(
        got.max_deliver, -1,
        "attempts are counted by the host (see README)"
    );
    publish(&js, "rec.x", "{}", &[]).await;
    receiver.wait_for(1, WAIT).await;
}

/// A difference NATS cannot apply in place fails the start, saying what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchangeable_differences_fail_the_start_loudly() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let existing = js
        .create_stream(stream::Config {
            name: "fixed_s".into(),
            subjects: vec!["fixed.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    existing
        .create_consumer(consumer::pull::Config {
            durable_name: Some("fixed-consumer".into()),
            filter_subject: "fixed.>".into(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let receiver = Receiver::ok().await;
    let sub = sub_yaml("fixed", "fixed.>", &receiver.url("/h"), "");

    let consumer_conflict = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{sub}",
            stream_yaml("fixed_s", &["fixed.>"])
        ),
    );
    let host = Host::start(consumer_conflict.path(), &nats.url(), &[]).await;
    let status = host.wait_exit(WAIT).await;
    assert!(!status.success());
    let logs = host.logs().join("\n");
    assert!(
        logs.contains("fixed-consumer") && logs.contains("deliver policy"),
        "{logs}"
    );

    let storage_conflict = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{sub}",
            stream_yaml("fixed_s", &["fixed.>"]).replace("storage: file", "storage: memory")
        ),
    );
    let host = Host::start(storage_conflict.path(), &nats.url(), &[]).await;
    let status = host.wait_exit(WAIT).await;
    assert!(!status.success());
    let logs = host.logs().join("\n");
    assert!(
        logs.contains("stream fixed_s exists with storage file, config.d wants memory"),
        "{logs}"
    );
}

/// The seed's format has no `stream:` block: each subscription uses the
/// stream that already holds its subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_format_uses_the_existing_stream_of_its_subject() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "seed_s".into(),
        subjects: vec!["order.>".into(), "stripe.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let receiver = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "30-stripe-drupal.yml",
        format!(
            "subscriptions:\n{}",
            sub_yaml(
                "stripe-drupal",
                "stripe.drupal",
                &receiver.url("/stripe"),
                ""
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    publish(&js, "stripe.drupal", r#"{"id":"evt_1"}"#, &[]).await;
    publish(&js, "order.created", "{}", &[]).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["subject"], "stripe.drupal");
    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"stripe-drupal\",outcome=\"delivered\"}",
        1.0,
        WAIT,
    )
    .await;
    receiver
        .assert_count_stays(1, Duration::from_millis(500))
        .await;
}

/// `plugin test --dry-run` shows what the destination would receive, with
/// credentials masked, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_dry_run_prints_the_request_with_secrets_masked() {
    let config = ConfigDir::new().file("order.json", r#"{"order_id":42}"#);
    let payload = config.path().join("order.json");
    let out = sinkhost_cli(
        &[
            "plugin",
            "test",
            "http-webhook",
            "--subject",
            "order.completed",
            "--payload",
            payload.to_str().unwrap(),
            "--webhook-header",
            "Authorization: Bearer hush-123456",
            "--settings",
            r#"{"reject_status": [422]}"#,
            "--id",
            "order-42",
            "--dry-run",
        ],
        "nats://unused:1",
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "attempt 1 of 4");
    // The URL's path and query may be credentials: shown only with --log-url full.
    assert_eq!(lines[1], "POST http://127.0.0.1:8091/...");
    assert!(lines.contains(&"Authorization: [masked]"), "{}", out.stdout);
    assert!(
        lines.contains(&"Idempotency-Key: order-42"),
        "{}",
        out.stdout
    );
    let body = lines
        .iter()
        .find(|l| l.starts_with('{'))
        .expect("a JSON body");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["data"], serde_json::json!({"order_id": 42}));
    assert_eq!(body["message_id"], "order-42");
    assert_eq!(
        lines[lines.len() - 4..],
        [
            "-> answered 200",
            "",
            "outcome: delivered (last HTTP 200 from http://127.0.0.1:8091/...)",
            "host: ack (the message is done)"
        ]
    );
    assert!(!out.stdout.contains("hush-123456") && !out.stderr.contains("hush-123456"));
}

/// `--respond` answers like a destination would, one answer per request: a
/// retried message is delivered again as the next attempt while answers are
/// left, and each attempt says what the host would do after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_respond_walks_the_attempts_as_the_host_would() {
    let run = |extra: &'static [&'static str]| async move {
        let mut args = vec![
            "plugin",
            "test",
            "http-webhook",
            "--subject",
            "order.completed",
            "--payload",
            r#"{"order_id": 42}"#,
        ];
        args.extend(extra);
        sinkhost_cli(&args, "nats://unused:1", &[], WAIT).await
    };
    let host_lines = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|l| {
                l.starts_with("attempt ")
                    || l.starts_with("-> ")
                    || l.starts_with("outcome: ")
                    || l.starts_with("host: ")
            })
            .map(String::from)
            .collect()
    };

    let out = run(&["--respond", "429:Retry-After=3", "--respond", "200"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        host_lines(&out.stdout),
        [
            "attempt 1 of 4",
            "-> answered 429, Retry-After: 3",
            "outcome: retry in 3000ms (last HTTP 429 from http://127.0.0.1:8091/...)",
            "host: nak; attempt 2 of 4 in 3s",
            "attempt 2 of 4",
            "-> answered 200",
            "outcome: delivered (last HTTP 200 from http://127.0.0.1:8091/...)",
            "host: ack (the message is done)",
        ]
    );

    let out = run(&[
        "--respond",
        "503",
        "--respond",
        "503",
        "--max-attempts",
        "2",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = host_lines(&out.stdout);
    assert_eq!(lines[3], "host: nak; attempt 2 of 2 in 2s", "{lines:?}");
    assert_eq!(
        lines[7],
        "host: dead-letter: gave up after 2 attempts; last: plugin asked to retry after HTTP 503 from http://127.0.0.1:8091/...",
        "{lines:?}"
    );
    assert_eq!(lines.len(), 8, "{lines:?}");

    // The last attempt, as the plugin sees it on a redelivery.
    let out = run(&["--respond", "503", "--attempt", "4"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(host_lines(&out.stdout)[0], "attempt 4 of 4");
    assert!(
        out.stdout
            .contains("\nhost: dead-letter: gave up after 4 attempts; "),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("HTTP 503, attempt 4/4"),
        "the plugin's own warning names the attempt: {}",
        out.stderr
    );

    let out = run(&["--respond", "ok"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("start with an HTTP status, e.g. `503` or `429:Retry-After=3`"),
        "{}",
        out.stderr
    );
}

/// Without `--dry-run` the request really goes out; a failing destination
/// shows as `retry`, and a plugin that rejects its settings exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_sends_for_real_and_reports_init_errors() {
    let receiver = Receiver::status(503).await;
    let config = ConfigDir::new().file("p.json", "{}");
    let payload = config.path().join("p.json");
    let url = receiver.url("/hook");
    let base = [
        "plugin",
        "test",
        "http-webhook",
        "--subject",
        "a.b",
        "--payload",
        payload.to_str().unwrap(),
        "--url",
        url.as_str(),
    ];
    let out = sinkhost_cli(&base, "nats://unused:1", &[], WAIT).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "attempt 1 of 4\noutcome: retry (last HTTP 503 from http://{}/...)\nhost: nak; attempt 2 of 4 in 2s",
            receiver.addr()
        )
    );
    assert_eq!(receiver.count(), 1);

    let mut bad = base.to_vec();
    bad.extend(["--settings", r#"{"reject_stauts": [422]}"#]);
    let out = sinkhost_cli(&bad, "nats://unused:1", &[], WAIT).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("plugin init failed: invalid settings: unknown field `reject_stauts`"),
        "{}",
        out.stderr
    );
}

/// SIGTERM while NATS is unreachable still stops the host promptly, exit 0:
/// nothing waits for a reconnect that may never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_down_exits_promptly() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("down_s", &["down.>"]),
            sub_yaml("down", "down.>", &receiver.url("/h"), "")
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    publish(&nats.jetstream().await, "down.1", "{}", &[]).await;
    receiver.wait_for(1, WAIT).await;
    nats.kill();
    host.sigterm();
    let status = host.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", host.logs().join("\n"));
}

/// The `sinkhost status --json` lines, by subscription.
async fn status_lines(
    config: &ConfigDir,
    nats: &NatsServer,
    host: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let dir = config.path().to_str().expect("a UTF-8 path");
    let out = sinkhost_cli(
        &["status", "--config-dir", dir, "--host", host, "--json"],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    out.stdout
        .lines()
        .map(|line| {
            let status: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            (status["subscription"].as_str().unwrap().to_owned(), status)
        })
        .collect()
}

/// `sinkhost status`: a healthy subscription, one whose destination is down
/// (messages held), one that dead-letters. With the host running it adds the
/// host's view; with the host stopped, JetStream's alone still says the
/// destination is down (the state the hosts share) and counts the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_subscription_at_a_glance() {
    let nats = NatsServer::start();
    let fine = Receiver::ok().await;
    let down = Receiver::status(503).await;
    let refusing = Receiver::status(422).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("status_s", &["ok.>", "down.>", "bad.>"]),
            sub_yaml("fine", "ok.>", &fine.url("/h"), ""),
            sub_yaml(
                "broken",
                "down.>",
                &down.url("/h"),
                "backoff: \"100ms\"\nbreaker: {failures: 2, probe_interval: 500ms, max_probe_interval: 1s}"
            ),
            sub_yaml(
                "rejecting",
                "bad.>",
                &refusing.url("/h"),
                "settings: {reject_status: [422]}"
            ),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 0..3 {
        publish(&js, &format!("ok.{i}"), "{}", &[]).await;
        publish(&js, &format!("down.{i}"), "{}", &[]).await;
        publish(&js, &format!("bad.{i}"), "{}", &[]).await;
    }
    fine.wait_for(3, WAIT).await;
    support::wait_for_stream_messages(&js, "status_s_dlq", 3, WAIT).await;
    let addr = host.addr().to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    let lines = loop {
        // The breaker opens after two failures, and a failed message comes
        // back after its 100 ms backoff to be held: no event to wait on here.
        let lines = status_lines(&config, &nats, &addr).await;
        if lines["broken"]["destination"] == "down" && lines["broken"]["ack_pending"] == 3 {
            break lines;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fine_line = &lines["fine"];
    assert_eq!(fine_line["destination"], "up", "{fine_line}");
    assert_eq!(fine_line["host"], "consuming", "{fine_line}");
    assert_eq!(
        (
            &fine_line["pending"],
            &fine_line["ack_pending"],
            &fine_line["dead_letters"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{fine_line}"
    );
    let broken = &lines["broken"];
    assert!(
        broken["last_error"].as_str().unwrap().contains("HTTP 503"),
        "{broken}"
    );
    assert!(broken["down_since"].is_string(), "{broken}");
    assert_eq!(broken["pending"], 0, "{broken}");
    assert_eq!(
        broken["dead_letters"], 0,
        "held, not dead-lettered: {broken}"
    );
    let rejecting = &lines["rejecting"];
    assert_eq!(rejecting["dead_letters"], 3, "{rejecting}");
    assert!(
        rejecting["last_error"]
            .as_str()
            .unwrap()
            .starts_with("rejected: "),
        "{rejecting}"
    );

    // The table says the same.
    let dir = config.path().to_str().unwrap();
    let out = sinkhost_cli(
        &["status", "--config-dir", dir, "--host", &addr],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    eprintln!("{}", out.stdout);
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert!(rows[0].starts_with("SUBSCRIPTION "), "{}", out.stdout);
    assert!(rows[0].ends_with("LAST ERROR"), "{}", out.stdout);
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let broken = row("broken");
    // destination, backlog, unacked; dead letters, host
    assert_eq!(broken[1..4], ["down", "0", "3"], "{}", out.stdout);
    assert_eq!(broken[5..7], ["0", "consuming"], "{}", out.stdout);
    assert_eq!(row("rejecting")[5], "3");

    // Without a host: JetStream's view, the shared destination state included.
    host.sigterm();
    host.wait_exit(WAIT).await;
    let lines = status_lines(&config, &nats, "127.0.0.1:1").await;
    assert_eq!(lines["broken"]["destination"], "down", "{lines:?}");
    assert_eq!(lines["broken"]["host"], serde_json::Value::Null);
    assert_eq!(lines["rejecting"]["dead_letters"], 3, "{lines:?}");
}

/// `sinkhost trace` and its arguments, as JSON.
async fn trace_json(config: &ConfigDir, nats: &NatsServer, target: &[&str]) -> serde_json::Value {
    let dir = config.path().to_str().expect("a UTF-8 path");
    let mut args = vec!["trace", "--config-dir", dir, "--json"];
    args.extend_from_slice(target);
    let out = sinkhost_cli(&args, &nats.url(), &[], WAIT).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Waits until `consumer` of `stream` has settled every message up to `sequence`.
async fn wait_settled(
    js: &async_nats::jetstream::Context,
    stream: &str,
    consumer: &str,
    sequence: u64,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = js
            .get_stream(stream)
            .await
            .expect("the stream")
            .consumer_info(consumer)
            .await
            .expect("the consumer");
        if info.ack_floor.stream_sequence >= sequence {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "Where is message X?": one message delivered at once (found by the
/// producer's Nats-Msg-Id), one delivered after a 503, one dead-lettered, one
/// published while no host runs. `sinkhost trace` tells each from the attempt
/// history (by default, every attempt of a message not delivered at once)
/// and the consumers; the history holds what the destination answered and
/// never a request header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_tells_where_each_message_is() {
    let nats = NatsServer::start();
    let fine = Receiver::ok().await;
    let flaky = support::Receiver::start(|_, nth| {
        if nth == 1 {
            support::Reply::status(503).body("upstream down, try later")
        } else {
            support::Reply::ok()
        }
    })
    .await;
    let refusing =
        support::Receiver::start(|_, _| support::Reply::status(422).body("no such customer")).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("trace_s", &["t.>"]),
            sub_yaml("fine", "t.ok", &fine.url("/h"), ""),
            sub_yaml("flaky", "t.flaky", &flaky.url("/h"), "backoff: \"100ms\""),
            sub_yaml(
                "refusing",
                "t.bad",
                &refusing.url("/h"),
                "settings: {reject_status: [422]}"
            ),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let delivered = publish(
        &js,
        "t.ok",
        "{\"order\":123}",
        &[("Nats-Msg-Id", "order-123")],
    )
    .await;
    let retried = publish(&js, "t.flaky", "{}", &[]).await;
    let dead = publish(&js, "t.bad", "{}", &[]).await;
    fine.wait_for(1, WAIT).await;
    flaky.wait_for(2, WAIT).await;
    support::wait_for_stream_messages(&js, "trace_s_dlq", 1, WAIT).await;
    // One record per attempt but the first-try success: 2 + 1.
    let records = support::wait_for_stream_messages(&js, "trace_s_attempts", 3, WAIT).await;
    wait_settled(&js, "trace_s", "fine-consumer", delivered.sequence).await;
    for record in &records {
        let text = String::from_utf8_lossy(&record.payload);
        assert!(
            !text.contains("secret-"),
            "a request header in the history: {text}"
        );
    }
    host.sigterm();
    host.wait_exit(WAIT).await;
    let unreached = publish(&js, "t.ok", "{}", &[]).await;

    let one = trace_json(&config, &nats, &["order-123"]).await;
    assert_eq!(one["sequence"], delivered.sequence, "{one:#}");
    assert_eq!(one["message_id"], "order-123");
    assert_eq!(one["subject"], "t.ok");
    assert!(one["stored"].is_string(), "{one:#}");
    let subs = one["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "only `fine` takes t.ok: {one:#}");
    assert_eq!(subs[0]["subscription"], "fine");
    assert_eq!(subs[0]["state"], "delivered", "{one:#}");
    assert_eq!(
        subs[0]["summary"],
        "delivered at its first attempt (history: failures keeps no first-try success)",
        "{one:#}"
    );
    assert_eq!(subs[0]["attempts"], serde_json::json!([]));

    let seq = retried.sequence.to_string();
    let two = trace_json(&config, &nats, &["--seq", &seq]).await;
    let flaky_where = &two["subscriptions"][0];
    assert_eq!(flaky_where["subscription"], "flaky", "{two:#}");
    assert_eq!(flaky_where["state"], "delivered", "{two:#}");
    assert!(
        flaky_where["summary"]
            .as_str()
            .unwrap()
            .ends_with("after 2 attempts"),
        "{two:#}"
    );
    let first = &flaky_where["attempts"][0];
    assert_eq!(first["outcome"], "retry", "{two:#}");
    assert_eq!(first["then"], "retry");
    assert_eq!(first["retry_in_ms"], 100);
    assert_eq!(first["http_status"], 503);
    assert_eq!(first["response"], "upstream down, try later");
    assert!(
        first["error"].as_str().unwrap().contains("HTTP 503"),
        "{two:#}"
    );
    assert_eq!(flaky_where["attempts"][1]["then"], "ack", "{two:#}");

    let id = format!("nats-msg-{}", dead.sequence);
    let three = trace_json(&config, &nats, &[&id]).await;
    let refused = &three["subscriptions"][0];
    assert_eq!(refused["state"], "dead-lettered", "{three:#}");
    assert!(
        refused["summary"].as_str().unwrap().contains("rejected: "),
        "{three:#}"
    );
    assert_eq!(refused["attempts"][0]["then"], "dead-letter");
    assert_eq!(refused["attempts"][0]["http_status"], 422);
    assert_eq!(refused["attempts"][0]["response"], "no such customer");

    let seq = unreached.sequence.to_string();
    let four = trace_json(&config, &nats, &["--seq", &seq]).await;
    let waiting = &four["subscriptions"][0];
    assert_eq!(waiting["state"], "not-reached", "{four:#}");
    assert_eq!(
        waiting["summary"],
        format!(
            "not yet reached: the consumer is behind by 1 message (it last delivered #{})",
            delivered.sequence
        ),
        "{four:#}"
    );
    assert_eq!(waiting["attempts"], serde_json::json!([]));

    // The text an operator reads.
    let dir = config.path().to_str().unwrap();
    let seq = retried.sequence.to_string();
    let out = sinkhost_cli(
        &["trace", "--config-dir", dir, "--seq", &seq],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    eprintln!("{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "message nats-msg-{seq} (stream trace_s #{seq}), subject t.flaky, stored at "
        )),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("  flaky: delivered at "),
        "{}",
        out.stdout
    );
    assert!(lines[2].starts_with("    attempt 1/4  "), "{}", out.stdout);
    assert!(
        lines[2].ends_with("retry HTTP 503  -> retry in 100ms"),
        "{}",
        out.stdout
    );
    assert!(
        lines[3].contains("plugin asked to retry after HTTP 503"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[4], "      response: upstream down, try later",
        "{}",
        out.stdout
    );
    assert!(
        lines[5].ends_with("delivered HTTP 200  -> ack"),
        "{}",
        out.stdout
    );

    let out = sinkhost_cli(
        &[
            "trace",
            "--config-dir",
            dir,
            "--seq",
            &seq,
            "--subscription",
            "nope",
        ],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no subscription nope in config.d"),
        "{out:?}"
    );
}

/// A history that cannot be written holds back no delivery: with an
/// attempts stream (made by an operator) that takes one record, every
/// message is delivered and each record it refused is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_history_drops_records_and_delivers_everything() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "drop_s_attempts".into(),
        subjects: vec!["sinkhost.attempts.drop_s.*.*".into()],
        max_messages: 1,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("creating the attempts stream");
    let fine = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("drop_s", &["d.>"]) + "  history: all\n",
            sub_yaml("dropping", "d.>", &fine.url("/h"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    for i in 0..5 {
        publish(&js, &format!("d.{i}"), "{}", &[]).await;
    }
    fine.wait_for(5, WAIT).await;
    let series = r#"sinkhost_attempt_history_dropped_total{subscription="dropping"}"#;
    assert_eq!(wait_metric(&host, series, 4.0, WAIT).await, 4.0);
    let deliveries = r#"sinkhost_deliveries_total{subscription="dropping",outcome="delivered"}"#;
    assert_eq!(metric(&host, deliveries).await, Some(5.0));
    assert_eq!(support::read_stream(&js, "drop_s_attempts").await.len(), 1);
}

/// With `history: all` a first-try success is recorded too, with what the
/// destination answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_with_history_all_shows_a_first_try_success() {
    let nats = NatsServer::start();
    let fine =
        support::Receiver::start(|_, _| support::Reply::ok().body("{\"queued\":true}")).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}  history: all\nsubscriptions:\n{}",
            stream_yaml("trace_all", &["a.>"]),
            sub_yaml("fine", "a.>", &fine.url("/h"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let ack = publish(&js, "a.1", "{}", &[]).await;
    support::wait_for_stream_messages(&js, "trace_all_attempts", 1, WAIT).await;
    let found = trace_json(&config, &nats, &["--seq", &ack.sequence.to_string()]).await;
    let fine_where = &found["subscriptions"][0];
    assert_eq!(fine_where["state"], "delivered", "{found:#}");
    assert!(
        fine_where["summary"]
            .as_str()
            .unwrap()
            .ends_with("after 1 attempt"),
        "{found:#}"
    );
    let attempt = &fine_where["attempts"][0];
    assert_eq!(
        (
            &attempt["attempt"],
            &attempt["outcome"],
            &attempt["then"],
            &attempt["http_status"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!("delivered"),
            &serde_json::json!("ack"),
            &serde_json::json!(200)
        ),
        "{found:#}"
    );
    assert_eq!(attempt["response"], "{\"queued\":true}");
    assert_eq!(attempt["message_id"], format!("nats-msg-{}", ack.sequence));
    assert!(attempt.get("error").is_none(), "{found:#}");
}
