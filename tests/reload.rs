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
    ConfigDir, Gate, Host, NatsServer, Receiver, Reply, last_first_arrival, plugin_dir, publish,
    sinkhost_cli, unique,
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

/// Publishes `n` messages on `subject` with `Nats-Msg-Id: <prefix>-<i>` (and so
/// those `Idempotency-Key`s at the destination), 500 in flight at a time, and
/// waits for every ack; returns the ids.
async fn publish_numbered(
    js: &async_nats::jetstream::Context,
    subject: &str,
    prefix: &str,
    n: usize,
) -> BTreeSet<String> {
    let ids = support::ids(prefix, 0..n);
    support::publish_all(js, subject, &ids).await;
    ids.into_iter().collect()
}

/// The distinct `Idempotency-Key`s among `requests`.
fn distinct_keys(requests: &[support::Recorded]) -> BTreeSet<String> {
    requests
        .iter()
        .map(|r| {
            r.idempotency_key()
                .unwrap_or_else(|| panic!("a request without Idempotency-Key: {r:?}"))
                .to_owned()
        })
        .collect()
}

/// Waits until every id in `expected` has arrived at least once and returns
/// all requests; panics naming some missing ids after `timeout`.
async fn wait_for_keys(
    receiver: &Receiver,
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> Vec<support::Recorded> {
    // Incremental: the check runs on every request.
    let (mut seen, mut checked) = (BTreeSet::<String>::new(), 0);
    let all = receiver.wait_until(
        |requests| {
            for key in requests[checked..]
                .iter()
                .filter_map(support::Recorded::idempotency_key)
            {
                if expected.contains(key) && !seen.contains(key) {
                    seen.insert(key.to_owned());
                }
            }
            checked = requests.len();
            seen.len() == expected.len()
        },
        timeout + Duration::from_secs(1),
    );
    match tokio::time::timeout(timeout, all).await {
        Ok(requests) => requests,
        Err(_) => {
            let seen = distinct_keys(&receiver.requests());
            let missing: Vec<&String> = expected.difference(&seen).take(10).collect();
            panic!(
                "{} of {} message(s) never arrived within {timeout:?}, e.g. {missing:?}",
                expected.len() - seen.len().min(expected.len()),
                expected.len()
            );
        }
    }
}

/// Waits until `consumer` has nothing pending and nothing awaiting an ack, so
/// no further delivery (and no further duplicate) can come; returns its info.
/// Polls: the state lives in nats-server.
async fn wait_settled(
    nats: &NatsServer,
    stream: &str,
    consumer: &str,
) -> async_nats::jetstream::consumer::Info {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = consumer_info(nats, stream, consumer).await;
        if (info.num_pending, info.num_ack_pending) == (0, 0) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer {consumer} not settled within {WAIT:?}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Thirty reloads while a 5,000-message backlog drains (the subscription's URL
/// path flipped between /a and /b every ~0.66 s for 20 s, SIGHUP after each
/// write, so each one replaces the subscription): what a replaced fetch loop had
/// fetched but not started goes back to the stream without spending an attempt
/// and reaches the replacement once. So with `retries: 3` against a healthy
/// destination nothing is dead-lettered, every message arrives, the only
/// duplicates are what was in flight at a reload (at most `max_concurrency`
/// each), and JetStream delivers at most twice per message. Before attempt
/// records each return raised the delivery count the host read as its attempt
/// number, and returned messages bounced between the loops: 20 dead letters
/// ("gave up after 2128 attempts") and 46,000-57,000 deliveries for 5,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_dead_letter_nothing_and_do_not_bounce() {
    const N: usize = 5_000;
    const MAX_CONCURRENCY: usize = 20;
    const RELOADS: u32 = 30;
    const EVERY: Duration = Duration::from_millis(660);
    let nats = NatsServer::start();
    // 60 ms, not the 20 ms of the run that found the bounce: the backlog then
    // drains in no less than 15 s, so most of the reloads land under load.
    let receiver = Receiver::slow(Duration::from_millis(60)).await;
    let s = unique("bounce");
    let subject = format!("{s}.x");
    let write = |path: &str| {
        subscriptions(&[sub_yaml(
            "bounce",
            &subject,
            &receiver.url(path),
            &format!("max_concurrency: {MAX_CONCURRENCY}\nretries: 3"),
        )])
    };
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&subject]))
        .file("10.yml", write("/a"));
    let host = Host::start(config.path(), &nats.url(), &NO_WATCH).await;
    host.wait_healthy(WAIT).await;

    let started = std::time::Instant::now();
    let js = nats.jetstream().await;
    let expected = publish_numbered(&js, &subject, "bounce", N).await;
    let reloads_from = tokio::time::Instant::now();
    let mut applied_at = Vec::new();
    for reload in 1..=RELOADS {
        tokio::time::sleep_until(reloads_from + EVERY * reload).await;
        config.write("10.yml", write(if reload % 2 == 1 { "/b" } else { "/a" }));
        host.sighup();
        wait_metric(&host, APPLIED, f64::from(reload), WAIT).await;
        applied_at.push(std::time::Instant::now());
    }
    let applied = metric(&host, APPLIED).await.unwrap_or(0.0);
    let restarted = host
        .json_logs()
        .iter()
        .filter(|line| line["fields"]["restarted"] == "bounce")
        .count();

    let drain = WAIT + Duration::from_secs(60);
    let dlq = support::dlq_stream_name(&s);
    tokio::select! {
        _ = wait_for_keys(&receiver, &expected, drain) => {}
        dead = support::wait_for_stream_messages(&js, &dlq, 1, drain + WAIT) => {
            panic!("dead-lettered to a healthy destination before every message arrived: {:?}", dead[0]);
        }
    }
    // Whatever is still to come would be a duplicate too: wait it out.
    let info = wait_settled(&nats, &s, "bounce-consumer").await;
    let requests = receiver.requests();
    let keys = distinct_keys(&requests);
    let drained = last_first_arrival(&requests);
    let during_drain = applied_at.iter().filter(|&&at| at < drained).count();
    let duplicates = requests.len() - keys.len();
    let dead = support::dlq_messages(&js, &s).await;
    let deliveries = info.delivered.consumer_sequence;
    eprintln!(
        "{RELOADS} reloads under load: {applied} applied ({restarted} replacing the subscription, \
         {during_drain} of them while the backlog drained); all {N} distinct delivered {:?} after \
         publishing began; {duplicates} duplicate(s), {deliveries} consumer deliveries, {} dead letter(s)",
        drained - started,
        dead.len()
    );
    assert!(
        during_drain > 0,
        "the backlog drained before the first reload: nothing was tested"
    );
    assert_eq!(applied, f64::from(RELOADS), "reloads applied");
    assert_eq!(
        restarted, RELOADS as usize,
        "reloads that replaced the subscription"
    );
    assert!(
        dead.is_empty(),
        "{} message(s) dead-lettered to a healthy destination, e.g. {:?}",
        dead.len(),
        dead.first()
    );
    assert_eq!(
        metric(
            &host,
            "sinkhost_dead_letters_total{subscription=\"bounce\"}"
        )
        .await
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(&keys, &expected, "the distinct ids that arrived");
    let in_flight = MAX_CONCURRENCY * (RELOADS as usize + 1);
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, but at most {in_flight} deliveries were in flight at the reloads"
    );
    assert!(
        deliveries <= 2 * N as u64,
        "the consumer delivered {deliveries} times for {N} messages: returned messages bounced"
    );
}

/// `stream.history` changed by a reload applies to the running
/// subscriptions at once: with `off` no attempts stream exists and a retried
/// message leaves no record; after the reload to `failures` the next one
/// leaves one record per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_attempt_history_on_for_running_subscriptions() {
    let nats = NatsServer::start();
    // Each message's first request fails, its second is delivered.
    let flaky = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let s = unique("hist");
    let stream = |history: &str| {
        format!(
            "{}  history: {history}\n",
            stream_yaml(&s, &[&format!("{s}.>")])
        )
    };
    let config = ConfigDir::new().file("00-stream.yml", stream("off")).file(
        "10-a.yml",
        subscriptions(&[sub_yaml(
            "a",
            &format!("{s}.>"),
            &flaky.url("/a"),
            "backoff: \"100ms\"",
        )]),
    );
    let host = Host::start(config.path(), &nats.url(), &NO_WATCH).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, &format!("{s}.1"), "{}", &[]).await;
    flaky.wait_for(2, WAIT).await;
    let attempts = format!("{s}_attempts");
    assert!(
        js.get_stream(&attempts).await.is_err(),
        "history: off made {attempts}"
    );

    config.write("00-stream.yml", stream("failures"));
    host.sighup();
    let fields = reloaded(&host).await;
    assert_eq!(fields["unchanged"], "a", "{fields}");
    let second = publish(&js, &format!("{s}.2"), "{}", &[]).await;
    flaky.wait_for(4, WAIT).await;
    let records = support::wait_for_stream_messages(&js, &attempts, 2, WAIT).await;
    let sequence = second.sequence.to_string();
    for record in &records {
        assert!(
            record.subject.ends_with(&format!(".a.{sequence}")),
            "{}",
            record.subject
        );
    }
}
