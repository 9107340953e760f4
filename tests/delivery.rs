//! End to end: config.d -> JetStream -> wasm plugin -> HTTP -> ack, against a
//! real nats-server, real HTTP receivers and the real `sinkhost` binary.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{hostile_plugin, metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Reply, dlq_messages, publish, sinkhost_cli,
    workspace_root,
};

const WAIT: Duration = Duration::from_secs(30);

/// The repo's own config.d, pointed at three receivers, fans each subject out
/// to exactly the subscriptions that match it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_config_fans_out_by_subject_with_envelope_and_auth() {
    let nats = NatsServer::start();
    let backend = Receiver::ok().await;
    let mailer = Receiver::ok().await;
    let drupal = Receiver::ok().await;
    let env = [
        ("BACKEND_WEBHOOK_URL", backend.url("/api/v1/webhooks/nats")),
        ("NATS_WEBHOOK_SECRET", "backend-s3cret".to_owned()),
        ("MAILER_WEBHOOK_URL", mailer.url("/mail-template")),
        ("MAILER_API_KEY", "mailer-k3y".to_owned()),
        ("DRUPAL_STRIPE_WEBHOOK_URL", drupal.url("/stripe-webhook")),
        ("DRUPAL_WEBHOOK_SECRET", "drupal-s3cret".to_owned()),
        (
            "DRUPAL_STRIPE_SIGNING_SECRET",
            "whsec_drupal-s1gn".to_owned(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host = Host::start(&workspace_root().join("config.d"), &nats.url(), &env).await;
    host.wait_healthy(WAIT).await;

    let js = nats.jetstream().await;
    let order = publish(
        &js,
        "order.completed",
        r#"{"order_id":42,"total":"19.90"}"#,
        &[],
    )
    .await;
    publish(
        &js,
        "mail.welcome",
        r#"{"to":"a@example.com"}"#,
        &[("Nats-Msg-Id", "mail-1")],
    )
    .await;
    // Spacing and key order a re-encoding would change: Drupal must get these bytes.
    let stripe_event = r#"{"id": "evt_1", "object": "event", "type": "charge.succeeded"}"#;
    let stripe = publish(&js, "stripe.drupal", stripe_event, &[]).await;

    let at_backend = backend.wait_for(3, WAIT).await;
    let at_mailer = mailer.wait_for(1, WAIT).await;
    let at_drupal = drupal.wait_for(1, WAIT).await;

    let subjects = |reqs: &[support::Recorded]| -> BTreeSet<String> {
        reqs.iter()
            .map(|r| r.json()["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        subjects(&at_backend),
        BTreeSet::from([
            "order.completed".into(),
            "mail.welcome".into(),
            "stripe.drupal".into()
        ])
    );
    assert_eq!(
        subjects(&at_mailer),
        BTreeSet::from(["mail.welcome".into()])
    );
    // drupal-stripe sends the Stripe event itself, not the envelope.
    assert_eq!(at_drupal.len(), 1, "one Stripe event, one POST");
    assert_eq!(at_drupal[0].body_text(), stripe_event);

    // The envelope, field by field, for the order event.
    let order_req = at_backend
        .iter()
        .find(|r| r.json()["subject"] == "order.completed")
        .unwrap();
    let envelope = order_req.json();
    let raw = order_req.body_text();
    let positions: Vec<usize> = [
        "\"subject\":",
        "\"data\":",
        "\"timestamp\":",
        "\"message_id\":",
    ]
    .iter()
    .map(|key| {
        raw.find(key)
            .unwrap_or_else(|| panic!("{key} missing in {raw}"))
    })
    .collect();
    assert!(positions.is_sorted(), "envelope fields out of order: {raw}");
    assert_eq!(envelope.as_object().unwrap().len(), 4, "{raw}");
    assert_eq!(
        envelope["data"],
        serde_json::json!({"order_id": 42, "total": "19.90"})
    );
    let expected_id = format!("nats-msg-{}", order.sequence);
    assert_eq!(envelope["message_id"], expected_id.as_str());
    assert_eq!(
        order_req.header("idempotency-key"),
        Some(expected_id.as_str())
    );
    let timestamp = envelope["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() == 20 && timestamp.ends_with('Z') && timestamp.starts_with("20"),
        "timestamp {timestamp:?} is not RFC 3339 UTC"
    );
    assert_eq!(order_req.method, "POST");
    assert_eq!(order_req.path, "/api/v1/webhooks/nats");
    assert_eq!(order_req.header("content-type"), Some("application/json"));
    assert_eq!(
        order_req.header("authorization"),
        Some("Bearer backend-s3cret")
    );

    // The mailer gets the envelope plus the template named by the subject.
    let mail = at_mailer[0].json();
    assert_eq!(mail.as_object().unwrap().len(), 5, "{mail}");
    assert_eq!(mail["template"], "welcome");
    assert_eq!(mail["data"], serde_json::json!({"to": "a@example.com"}));
    assert_eq!(at_mailer[0].path, "/mail-template");
    assert_eq!(
        at_mailer[0].header("content-type"),
        Some("application/json")
    );

    // Producer-set ids win; each destination gets its own auth.
    assert_eq!(mail["message_id"], "mail-1");
    assert_eq!(at_mailer[0].idempotency_key(), Some("mail-1"));
    assert_eq!(at_mailer[0].header("x-api-key"), Some("mailer-k3y"));
    assert_eq!(at_mailer[0].header("authorization"), None);
    assert_eq!(at_drupal[0].path, "/stripe-webhook");
    assert_eq!(
        at_drupal[0].header("authorization"),
        Some("Bearer drupal-s3cret")
    );
    assert_eq!(
        at_drupal[0].header("content-type"),
        Some("application/json")
    );
    // Stripe's format; tests/plugins_builtin.rs verifies it with stripe-python.
    let signature = at_drupal[0].header("stripe-signature").unwrap_or_default();
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("Stripe-Signature {signature:?}"));
    assert!(t.parse::<u64>().is_ok(), "{signature}");
    assert!(
        v1.len() == 64 && v1.bytes().all(|b| b.is_ascii_hexdigit()),
        "{signature}"
    );

    // The same stream message carries the same id at every subscription.
    let stripe_id = format!("nats-msg-{}", stripe.sequence);
    assert_eq!(at_drupal[0].idempotency_key(), Some(stripe_id.as_str()));
    let at_backend_stripe = at_backend
        .iter()
        .find(|r| r.json()["subject"] == "stripe.drupal")
        .unwrap();
    assert_eq!(at_backend_stripe.json()["message_id"], stripe_id.as_str());

    // Secrets from config.d never reach the log.
    let logs = host.logs().join("\n");
    for secret in [
        "backend-s3cret",
        "mailer-k3y",
        "drupal-s3cret",
        "whsec_drupal-s1gn",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}

/// A destination that fails twice sees three attempts, spaced by the backoff
/// schedule D, 2D — the host's nak delays, not JetStream's immediate redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_schedule() {
    let nats = NatsServer::start();
    let receiver = Receiver::fail_first(2, 503).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("retry_s", &["ev.>"]),
            sub_yaml(
                "retrying",
                "ev.>",
                &receiver.url("/hook"),
                "backoff: \"1s\""
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    publish(&nats.jetstream().await, "ev.one", "{}", &[]).await;

    let attempts = receiver.wait_for(3, WAIT).await;
    let gap1 = attempts[1].received_at - attempts[0].received_at;
    let gap2 = attempts[2].received_at - attempts[1].received_at;
    assert!(
        gap1 >= Duration::from_secs(1),
        "first retry after {gap1:?}, expected >= 1s"
    );
    assert!(
        gap2 >= Duration::from_secs(2),
        "second retry after {gap2:?}, expected >= 2s"
    );
    let delivered = "sinkhost_deliveries_total{subscription=\"retrying\",outcome=\"delivered\"}";
    wait_metric(&host, delivered, 1.0, WAIT).await;
    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"retrying\",outcome=\"retry\"}"
        )
        .await,
        Some(2.0)
    );
    assert_eq!(receiver.count(), 3, "no attempt after the successful one");
}

/// The seed's numbers (backoff 2s, ack_wait 120s, timeout 15s) against a
/// destination that takes 3 s: exactly one POST per message. A consumer
/// BackOff of 2s would have redelivered each message while it was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_destination_gets_exactly_one_post_per_message() {
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_secs(3)).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("slow_s", &["slow.>"]),
            sub_yaml("slow", "slow.>", &receiver.url("/hook"), "")
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 0..5 {
        publish(&js, &format!("slow.{i}"), "{}", &[]).await;
    }
    let series = "sinkhost_deliveries_total{subscription=\"slow\",outcome=\"delivered\"}";
    wait_metric(&host, series, 5.0, WAIT).await;
    let keys: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.idempotency_key().unwrap().to_owned())
        .collect();
    let distinct: BTreeSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), 5, "POSTs: {keys:?}");
    assert_eq!(distinct.len(), 5);
}

/// A destination that always fails sees retries + 1 attempts; the message then
/// lands in the dead-letter stream with its payload and where it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_forever_dead_letters_after_the_last_attempt() {
    let nats = NatsServer::start();
    let receiver = Receiver::status(500).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("dead_s", &["dead.>"]),
            sub_yaml(
                "doomed",
                "dead.>",
                &receiver.url("/hook"),
                // Each message spends its own retries: no breaker.
                "retries: 2\nbackoff: \"200ms\"\nbreaker: {failures: 0}"
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let payload = r#"{"ticket":7}"#;
    let ack = publish(&js, "dead.letter", payload, &[("X-Trace", "abc")]).await;

    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"doomed\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(receiver.count(), 3, "retries: 2 means 3 attempts");
    let letters = dlq_messages(&js, "dead_s").await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject, "dlq.doomed");
    assert_eq!(letter.payload_text(), payload);
    assert_eq!(
        letter.header("Sinkhost-Original-Subject"),
        Some("dead.letter")
    );
    assert_eq!(
        letter.header("Sinkhost-Stream-Sequence"),
        Some(ack.sequence.to_string().as_str())
    );
    assert_eq!(letter.header("Sinkhost-Attempts"), Some("3"));
    assert_eq!(
        letter.header("X-Trace"),
        Some("abc"),
        "original headers are kept"
    );
    let last_error = letter.header("Sinkhost-Last-Error").unwrap();
    assert!(
        last_error.contains("gave up after 3 attempts"),
        "{last_error}"
    );

    // The operator's view of the same dead letter.
    let out = sinkhost_cli(
        &[
            "dlq",
            "list",
            "--config-dir",
            config.path().to_str().unwrap(),
        ],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("doomed") && out.stdout.contains("dead.letter"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 dead letter(s) in dead_s_dlq"),
        "{}",
        out.stdout
    );
    assert!(
        !host.logs().join("\n").contains("secret-doomed"),
        "a header value leaked into the log"
    );
    // The plugin's own log lines land in the host's log, with the subscription.
    let plugin_lines: Vec<serde_json::Value> = host
        .json_logs()
        .into_iter()
        .filter(|l| l["fields"]["plugin"] == true && l["fields"]["subscription"] == "doomed")
        .collect();
    assert_eq!(plugin_lines.len(), 3, "one warning per failed attempt");
    let first = plugin_lines[0]["fields"]["message"].as_str().unwrap();
    assert!(
        first.contains("HTTP 500") && first.contains("attempt 1/3"),
        "{first}"
    );
}

/// A plugin that traps costs its message attempts, never the host: the other
/// subscription keeps delivering, and the trapped message is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_plugin_is_retried_while_other_subscriptions_flow() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let trap = format!(
        "plugin: \"{}\"\nretries: 1\nbackoff: \"100ms\"\nsettings: {{mode: trap}}",
        hostile_plugin()
    );
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("trap_s", &["trap.>", "fine.>"]),
            sub_yaml("trapper", "trap.>", &pings.url("/ping"), &trap),
            sub_yaml("fine", "fine.>", &healthy.url("/hook"), "")
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "trap.boom", "{}", &[]).await;
    for i in 0..10 {
        publish(&js, &format!("fine.{i}"), "{}", &[]).await;
    }

    healthy.wait_for(10, WAIT).await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"trapper\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(
        pings.count(),
        2,
        "retries: 1 means two attempts reached the plugin"
    );
    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"trapper\",outcome=\"trap\"}"
        )
        .await,
        Some(2.0)
    );
    let letters = dlq_messages(&js, "trap_s").await;
    let last_error = letters[0].header("Sinkhost-Last-Error").unwrap();
    assert!(last_error.contains("plugin trapped"), "{last_error}");
    let (status, _) = host.http_get("/healthz").await;
    assert_eq!(status, 200, "the host is still healthy");
}

/// SIGTERM with deliveries in flight: they finish, the host exits 0, and a new
/// host delivers everything that was left. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_deliveries_and_loses_nothing() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::ok().delay(Duration::from_millis(700))).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("term_s", &["term.>"]),
            sub_yaml(
                "draining",
                "term.>",
                &receiver.url("/hook"),
                "max_concurrency: 4"
            )
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 0..20 {
        publish(&js, &format!("term.{i}"), "{}", &[]).await;
    }
    receiver.wait_for(2, WAIT).await;
    host.sigterm();
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", host.logs().join("\n"));
    let before_restart = receiver.count();
    assert!(
        before_restart < 20,
        "the test needs messages left over after SIGTERM"
    );

    let again = Host::start(config.path(), &nats.url(), &[]).await;
    let all = receiver
        .wait_until(
            |reqs| {
                reqs.iter()
                    .filter_map(|r| r.idempotency_key())
                    .collect::<BTreeSet<_>>()
                    .len()
                    == 20
            },
            WAIT,
        )
        .await;
    let deliveries_at_first_host: Vec<&str> = all[..before_restart]
        .iter()
        .filter_map(|r| r.idempotency_key())
        .collect();
    drop(again);
    // Everything the first host started, it finished: no message was POSTed
    // by the first host and then again by the second.
    let redelivered: Vec<&&str> = deliveries_at_first_host
        .iter()
        .filter(|id| {
            all[before_restart..]
                .iter()
                .any(|r| r.idempotency_key() == Some(id))
        })
        .collect();
    assert!(
        redelivered.is_empty(),
        "re-sent after a clean shutdown: {redelivered:?}"
    );
}

/// A call that outlasts `ack_wait` (three HTTP calls of 0.9 s, ack_wait 2 s)
/// is kept alive by in-progress acks: JetStream never hands the message to a
/// second delivery while the first is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_acks_keep_a_long_call_from_being_redelivered() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::ok().delay(Duration::from_millis(900))).await;
    let slow_plugin = format!(
        "plugin: \"{}\"\nsettings: {{mode: three-calls}}\ntimeout: \"1s\"\nack_wait: \"2s\"",
        hostile_plugin()
    );
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("long_s", &["long.>"]),
            sub_yaml("long", "long.>", &receiver.url("/ping"), &slow_plugin)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    publish(&nats.jetstream().await, "long.call", "{}", &[]).await;

    let series = "sinkhost_deliveries_total{subscription=\"long\",outcome=\"delivered\"}";
    wait_metric(&host, series, 1.0, WAIT).await;
    let bodies: Vec<String> = receiver.requests().iter().map(|r| r.body_text()).collect();
    assert_eq!(
        bodies,
        ["attempt 1", "attempt 1", "attempt 1"],
        "one delivery, three calls"
    );
    // Wait past another ack_wait: an unacked message would come back by now.
    receiver.assert_count_stays(3, Duration::from_secs(3)).await;
}

/// A plugin that spins forever hits its CPU deadline; one that allocates
/// without end hits its memory cap. Both cost their message an attempt and
/// are dead-lettered with the reason, while a third subscription keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_deadline_and_memory_cap_contain_runaway_plugins() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let hostile = |mode: &str| {
        format!(
            "plugin: \"{}\"\nretries: 0\nsettings: {{mode: {mode}}}",
            hostile_plugin()
        )
    };
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("runaway_s", &["spin.>", "hog.>", "fine.>"]),
            sub_yaml("spinner", "spin.>", &pings.url("/spin"), &hostile("loop")),
            sub_yaml("hog", "hog.>", &pings.url("/hog"), &hostile("alloc")),
            sub_yaml("fine", "fine.>", &healthy.url("/hook"), "")
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "spin.1", "{}", &[]).await;
    publish(&js, "hog.1", "{}", &[]).await;
    for i in 0..5 {
        publish(&js, &format!("fine.{i}"), "{}", &[]).await;
    }
    healthy.wait_for(5, WAIT).await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"spinner\"}",
        1.0,
        WAIT,
    )
    .await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"hog\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"spinner\",outcome=\"deadline\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"hog\",outcome=\"trap\"}"
        )
        .await,
        Some(1.0)
    );
    let letters = dlq_messages(&js, "runaway_s").await;
    let reason = |sub: &str| {
        letters
            .iter()
            .find(|l| l.subject == format!("dlq.{sub}"))
            .and_then(|l| l.header("Sinkhost-Last-Error"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        reason("spinner").contains("exceeded its CPU budget"),
        "{}",
        reason("spinner")
    );
    assert!(
        reason("hog").contains("plugin trapped"),
        "{}",
        reason("hog")
    );
    let (status, _) = host.http_get("/healthz").await;
    assert_eq!(status, 200);
}
