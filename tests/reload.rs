//! Reloading config.d while running: on SIGHUP and on a change in config.d,
//! a valid config replaces only the subscriptions that changed (in-flight
//! deliveries of the others untouched), an invalid one is rejected with
//! `sinkhost check`'s message and changes nothing. Real nats-server, real
//! receivers, the real binary.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use common::{metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Gate, Host, NatsServer, Receiver, Reply, plugin_dir, publish, sinkhost_cli, unique,
};

const WAIT: Duration = Duration::from_secs(30);
const APPLIED: &str = "sinkhost_config_reloads_total{result=\"applied\"}";
const REJECTED: &str = "sinkhost_config_reloads_total{result=\"rejected\"}";

/// SIGHUP only; the tests of the watcher leave it on.
const NO_WATCH: [(&str, &str); 1] = [("SINKHOST_WATCH_CONFIG", "false")];

fn subscriptions(entries: &[String]) -> String {
    format!("subscriptions:\n{}", entries.concat())
}

/// Waits for the info line of an applied reload and returns its fields.
async fn reloaded(host: &Host) -> serde_json::Value {
    let line = host.wait_for_log("config reloaded", WAIT).await;
    let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(line["level"], "INFO", "{line}");
    line["fields"].clone()
}

/// `/healthz`'s subscriptions, once every one of them consumes.
async fn healthy_subscriptions(host: &Host) -> serde_json::Value {
    host.wait_healthy(WAIT).await;
    let (_, body) = host.http_get("/healthz").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["subscriptions"].clone()
}

async fn consumer_info(
    nats: &NatsServer,
    stream: &str,
    consumer: &str,
) -> async_nats::jetstream::consumer::Info {
    let js = nats.jetstream().await;
    let mut consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer::<pull::Config>(consumer)
        .await
        .unwrap();
    consumer.info().await.unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_starts_a_subscription_added_to_config_d() {
    let nats = NatsServer::start();
    let first = Receiver::ok().await;
    let second = Receiver::ok().await;
    let s = unique("hup");
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&format!("{s}.>")]))
        .file(
            "10-a.yml",
            subscriptions(&[sub_yaml("a", &format!("{s}.a"), &first.url("/a"), "")]),
        );
    let host = Host::start(config.path(), &nats.url(), &NO_WATCH).await;
    host.wait_healthy(WAIT).await;
    assert_eq!(metric(&host, APPLIED).await, Some(0.0));

    config.write(
        "20-b.yml",
        subscriptions(&[sub_yaml("b", &format!("{s}.b"), &second.url("/b"), "")]),
    );
    host.sighup();
    let fields = reloaded(&host).await;
    assert_eq!(fields["added"], "b", "{fields}");
    assert_eq!(fields["unchanged"], "a", "{fields}");
    assert_eq!(fields["removed"], "", "{fields}");
    assert_eq!(metric(&host, APPLIED).await, Some(1.0));
    assert_eq!(
        healthy_subscriptions(&host).await,
        serde_json::json!({"a": "consuming", "b": "consuming"})
    );

    let js = nats.jetstream().await;
    publish(&js, &format!("{s}.b"), r#"{"n":1}"#, &[]).await;
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/b");
    assert_eq!(got[0].json()["subject"], format!("{s}.b"));
    assert_eq!(got[0].json()["data"], serde_json::json!({"n": 1}));
    assert_eq!(first.count(), 0);
}

/// Without a signal: a new file, a removed file and a wider `stream:` block
/// are picked up together once config.d has been quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_config_d_is_reloaded_without_a_signal() {
    let nats = NatsServer::start();
    let kept = Receiver::ok().await;
    let removed = Receiver::ok().await;
    let added = Receiver::ok().await;
    let s = unique("watch");
    let (a, gone, new) = (format!("{s}.a"), format!("{s}.gone"), format!("{s}.new"));
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&a, &gone]))
        .file(
            "10-a.yml",
            subscriptions(&[sub_yaml("a", &a, &kept.url("/a"), "")]),
        )
        .file(
            "30-gone.yml",
            subscriptions(&[sub_yaml("gone", &gone, &removed.url("/gone"), "")]),
        );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    config.write("00-stream.yml", stream_yaml(&s, &[&a, &gone, &new]));
    config.write(
        "20-new.yml",
        subscriptions(&[sub_yaml("new", &new, &added.url("/new"), "")]),
    );
    config.remove("30-gone.yml");
    let fields = reloaded(&host).await;
    assert_eq!(fields["added"], "new", "{fields}");
    assert_eq!(fields["removed"], "gone", "{fields}");
    assert_eq!(fields["unchanged"], "a", "{fields}");
    assert_eq!(
        healthy_subscriptions(&host).await,
        serde_json::json!({"a": "consuming", "new": "consuming"})
    );
    let js = nats.jetstream().await;
    let subjects = js
        .get_stream(&s)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .subjects
        .clone();
    assert_eq!(subjects, [a.clone(), gone.clone(), new.clone()]);

    publish(&js, &gone, "{}", &[]).await;
    publish(&js, &new, "{}", &[]).await;
    publish(&js, &a, "{}", &[]).await;
    added.wait_for(1, WAIT).await;
    kept.wait_for(1, WAIT).await;
    // The removed subscription's durable stays, unread.
    assert_eq!(
        consumer_info(&nats, &s, "gone-consumer").await.num_pending,
        1
    );
    removed.assert_count_stays(0, Duration::from_secs(2)).await;
    assert_eq!(metric(&host, APPLIED).await, Some(1.0));
    assert_eq!(metric(&host, REJECTED).await, Some(0.0));
}

/// An unknown key: the log carries `sinkhost check`'s error, the rejection is
/// counted, and the running subscription keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_rejected_and_the_running_config_stays() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let s = unique("invalid");
    let subject = format!("{s}.x");
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&subject]))
        .file(
            "10-keep.yml",
            subscriptions(&[sub_yaml("keep", &subject, &receiver.url("/keep"), "")]),
        );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    config.write(
        "10-keep.yml",
        subscriptions(&[sub_yaml(
            "keep",
            &subject,
            &receiver.url("/elsewhere"),
            "colour: blue",
        )]),
    );
    wait_metric(&host, REJECTED, 1.0, WAIT).await;

    let check = sinkhost_cli(
        &["check", "--config-dir", config.path().to_str().unwrap()],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let expected = check
        .stderr
        .trim()
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("check's stderr: {}", check.stderr));
    assert!(
        expected.contains("10-keep.yml:") && expected.contains("colour"),
        "{expected}"
    );
    let rejected = host
        .json_logs()
        .into_iter()
        .find(|line| line["fields"]["error"] == expected)
        .unwrap_or_else(|| panic!("no log line with the error {expected:?}"));
    assert_eq!(rejected["level"], "ERROR");
    assert!(
        rejected["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("config reload rejected"),
        "{rejected}"
    );
    assert_eq!(metric(&host, REJECTED).await, Some(1.0));
    assert_eq!(metric(&host, APPLIED).await, Some(0.0));

    let js = nats.jetstream().await;
    publish(&js, &subject, "{}", &[]).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/keep", "the rejected URL was used");
    assert_eq!(
        healthy_subscriptions(&host).await,
        serde_json::json!({"keep": "consuming"})
    );
}

/// A new URL restarts that subscription only: a delivery of another one that
/// the destination holds across the reload completes once and is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_subscription_restarts_alone_and_in_flight_work_of_others_completes_once() {
    let nats = NatsServer::start();
    let gate = Gate::new();
    let slow = Receiver::start({
        let gate = gate.clone();
        move |_, _| Reply::ok().hold(gate.clone())
    })
    .await;
    let old = Receiver::ok().await;
    let new = Receiver::ok().await;
    let s = unique("restart");
    let (steady, moving) = (format!("{s}.steady"), format!("{s}.moving"));
    let write = |url: &str| {
        subscriptions(&[
            sub_yaml("steady", &steady, &slow.url("/steady"), ""),
            sub_yaml("moving", &moving, url, ""),
        ])
    };
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&steady, &moving]))
        .file("10.yml", write(&old.url("/old")));
    let host = Host::start(config.path(), &nats.url(), &NO_WATCH).await;
    host.wait_healthy(WAIT).await;

    let js = nats.jetstream().await;
    publish(&js, &steady, r#"{"slow":true}"#, &[]).await;
    slow.wait_for(1, WAIT).await;

    config.write("10.yml", write(&new.url("/new")));
    host.sighup();
    let fields = reloaded(&host).await;
    assert_eq!(fields["restarted"], "moving", "{fields}");
    assert_eq!(fields["unchanged"], "steady", "{fields}");
    let in_flight = "sinkhost_in_flight{subscription=\"steady\"}";
    assert_eq!(
        metric(&host, in_flight).await,
        Some(1.0),
        "held across the reload"
    );

    publish(&js, &moving, "{}", &[]).await;
    assert_eq!(new.wait_for(1, WAIT).await[0].path, "/new");
    assert_eq!(old.count(), 0);

    gate.open();
    let delivered = "sinkhost_deliveries_total{subscription=\"steady\",outcome=\"delivered\"}";
    wait_metric(&host, delivered, 1.0, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let info = loop {
        let info = consumer_info(&nats, &s, "steady-consumer").await;
        if info.ack_floor.stream_sequence == 1 || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(info.ack_floor.stream_sequence, 1, "not acked: {info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    assert_eq!(slow.count(), 1, "{:?}", slow.requests());
    assert_eq!(metric(&host, delivered).await, Some(1.0));
}

/// A `.wasm` replaced under the same path is a change: the subscription is
/// restarted with the new plugin, and no message is lost on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_file_is_swapped_without_losing_messages() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let s = unique("swap");
    let subject = format!("{s}.events");
    let config = ConfigDir::new().file("00-stream.yml", stream_yaml(&s, &[&subject]));
    let wasm = config.path().join("sink.wasm");
    std::fs::copy(plugin_dir().join("http-webhook.wasm"), &wasm).unwrap();
    // A setting both plugins take: http-webhook signs the Standard Webhooks
    // way with it, drupal-stripe with Stripe-Signature.
    let settings = "plugin: ./sink.wasm\nsettings: {signing_secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}";
    config.write(
        "10.yml",
        subscriptions(&[sub_yaml("swap", &subject, &receiver.url("/hook"), settings)]),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    let js = nats.jetstream().await;
    let event = |id: &str| format!(r#"{{"id": "evt_{id}", "type": "test.event"}}"#);
    let publish_batch = async |batch: &str| {
        for i in 0..5 {
            let id = format!("{batch}-{i}");
            publish(&js, &subject, event(&id), &[("Nats-Msg-Id", &id)]).await;
        }
    };
    publish_batch("before").await;
    receiver.wait_for(5, WAIT).await;

    std::fs::copy(plugin_dir().join("drupal-stripe.wasm"), &wasm).unwrap();
    publish_batch("during").await;
    let fields = reloaded(&host).await;
    assert_eq!(fields["restarted"], "swap", "{fields}");
    assert!(
        fields["message"]
            .as_str()
            .unwrap()
            .contains("swap (plugin file changed)"),
        "{fields}"
    );
    publish_batch("after").await;

    let keys = |requests: &[support::Recorded]| -> BTreeSet<String> {
        requests
            .iter()
            .filter_map(|r| r.idempotency_key().map(str::to_owned))
            .collect()
    };
    let got = receiver
        .wait_until(|requests| keys(requests).len() == 15, WAIT)
        .await;
    receiver
        .assert_count_stays(15, Duration::from_secs(1))
        .await;
    for request in &got {
        let id = request.idempotency_key().unwrap();
        let stripe_format = request.body_text() == event(id);
        if id.starts_with("before") {
            assert!(!stripe_format, "{id} sent by the new plugin");
        }
        if id.starts_with("after") {
            assert!(
                stripe_format,
                "{id} not sent as is: {}",
                request.body_text()
            );
        }
        if stripe_format {
            assert!(
                request
                    .header("stripe-signature")
                    .unwrap()
                    .starts_with("t="),
                "{id}"
            );
            assert_eq!(request.header("webhook-signature"), None, "{id}");
        } else {
            assert_eq!(request.json()["data"]["id"], format!("evt_{id}"), "{id}");
            assert!(request.header("webhook-signature").is_some(), "{id}");
        }
    }
    assert_eq!(
        metric(&host, "sinkhost_dead_letters_total{subscription=\"swap\"}").await,
        None
    );
}

/// Plugin instances are allocated as deliveries need them, not reserved at
/// start: a reload may raise concurrency far past what config.d started with
/// (this one needs 2,050 instances where the start needed 50), and the new
/// subscription delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_far_past_the_starting_concurrency_is_applied() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let s = unique("capacity");
    let (small, huge) = (format!("{s}.small"), format!("{s}.huge"));
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&small, &huge]))
        .file(
            "10.yml",
            subscriptions(&[sub_yaml("small", &small, &receiver.url("/small"), "")]),
        );
    let host = Host::start(config.path(), &nats.url(), &NO_WATCH).await;
    host.wait_healthy(WAIT).await;

    config.write(
        "20.yml",
        subscriptions(&[sub_yaml(
            "huge",
            &huge,
            &receiver.url("/huge"),
            "max_concurrency: 2000",
        )]),
    );
    host.sighup();
    wait_metric(&host, APPLIED, 1.0, WAIT).await;
    assert_eq!(
        healthy_subscriptions(&host).await,
        serde_json::json!({"small": "consuming", "huge": "consuming"})
    );
    publish(&nats.jetstream().await, &huge, "{}", &[]).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/huge");
    assert_eq!(metric(&host, REJECTED).await, Some(0.0));
}
