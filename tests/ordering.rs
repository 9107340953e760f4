//! End to end: `ordering: per-subject` and `rate_limit:`, against a real
//! nats-server, real HTTP receivers and the real `sinkhost` binary.
//!
//! Ordering is judged the way a destination sees it: per subject, the first
//! successful POST of each message must come in publish order. Retries are what
//! would break it (a nak with delay lets the next message overtake), so the
//! receivers fail the first attempt of some messages.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Recorded, Reply, dlq_messages, ensure_stream, publish,
};

const WAIT: Duration = Duration::from_secs(60);

/// How long the receivers take to answer: two requests that arrive less than
/// this apart were in flight at the same time.
const ANSWER_DELAY: Duration = Duration::from_millis(100);

/// A message id `<subject>#<n>`, as published in `Nats-Msg-Id`.
fn key(subject: &str, n: usize) -> String {
    format!("{subject}#{n}")
}

fn split_key(key: &str) -> (&str, usize) {
    let (subject, n) = key.rsplit_once('#').expect("a <subject>#<n> key");
    (subject, n.parse().expect("a message number"))
}

/// Each request with its message's subject and number, and how many requests
/// of that message came before it (0 = first attempt).
fn attempts(requests: &[Recorded]) -> Vec<(&Recorded, String, usize, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    requests
        .iter()
        .map(|r| {
            let key = r.idempotency_key().expect("an Idempotency-Key");
            let (subject, n) = split_key(key);
            let nth = seen.entry(key.to_owned()).or_default();
            let before = *nth;
            *nth += 1;
            (r, subject.to_owned(), n, before)
        })
        .collect()
}

/// Per subject, the message numbers in the order of their first successful
/// request; `succeeded(message number, earlier attempts)` says which answers were 2xx.
fn first_successes(
    requests: &[Recorded],
    succeeded: impl Fn(&str, usize, usize) -> bool,
) -> BTreeMap<String, Vec<usize>> {
    let mut order: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (_, subject, n, before) in attempts(requests) {
        let done = order.entry(subject.clone()).or_default();
        if succeeded(&subject, n, before) && !done.contains(&n) {
            done.push(n);
        }
    }
    order
}

fn config(stream: &str, subject: &str, name: &str, url: &str, extra: &str) -> ConfigDir {
    ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml(stream, &[&format!("{subject}.>")]),
            sub_yaml(name, &format!("{subject}.>"), url, extra)
        ),
    )
}

/// 4 subjects x 25 messages, published interleaved, with every third message
/// failing its first attempt: per subject, the first successful deliveries come
/// in publish order, and different subjects are delivered at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subject_order_survives_retries_and_subjects_run_in_parallel() {
    const SUBJECTS: usize = 4;
    const PER_SUBJECT: usize = 25;
    // Message k (in publish order) fails its first attempt when k % 3 == 0.
    let fails_first = |subject: &str, n: usize| {
        let s: usize = subject.rsplit('.').next().unwrap().parse().unwrap();
        (n * SUBJECTS + s).is_multiple_of(3)
    };
    let receiver = Receiver::start(move |request, nth| {
        let (subject, n) = split_key(request.idempotency_key().unwrap());
        let status = if nth == 1 && fails_first(subject, n) {
            503
        } else {
            200
        };
        Reply::status(status).delay(ANSWER_DELAY)
    })
    .await;
    let nats = NatsServer::start();
    let config = config(
        "ord_s",
        "ord",
        "ordered",
        &receiver.url("/hook"),
        "ordering: per-subject\nmax_concurrency: 8\nbackoff: \"200ms\"\nretries: 3",
    );
    let js = nats.jetstream().await;
    // The host updates this stream to match config.d.
    ensure_stream(&js, "ord_s", &["ord.>"]).await;
    // Published before the host starts, so its first fetch holds several
    // messages of each subject: without ordering the retried ones would be
    // overtaken.
    for n in 0..PER_SUBJECT {
        for s in 0..SUBJECTS {
            let subject = format!("ord.{s}");
            publish(&js, &subject, "{}", &[("Nats-Msg-Id", &key(&subject, n))]).await;
        }
    }
    let host = Host::start(config.path(), &nats.url(), &[]).await;

    let succeeded =
        |subject: &str, n: usize, before: usize| !(before == 0 && fails_first(subject, n));
    let requests = receiver
        .wait_until(
            |reqs| {
                first_successes(reqs, succeeded)
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
                    == SUBJECTS * PER_SUBJECT
            },
            WAIT,
        )
        .await;

    let expected: Vec<usize> = (0..PER_SUBJECT).collect();
    for (subject, order) in first_successes(&requests, succeeded) {
        assert_eq!(order, expected, "first successful deliveries of {subject}");
    }
    let retried = attempts(&requests)
        .iter()
        .filter(|(_, _, _, before)| *before == 1)
        .count();
    assert!(
        retried >= 30,
        "only {retried} retries: the test needs the 503s"
    );

    // Within a subject nothing overlaps: the next request arrives only after
    // the previous one was answered. Across subjects requests do overlap.
    let mut last_of_subject: HashMap<String, &Recorded> = HashMap::new();
    let mut overlapping_subjects = 0;
    let all = attempts(&requests);
    for (i, (request, subject, _, _)) in all.iter().enumerate() {
        if let Some(previous) = last_of_subject.insert(subject.clone(), request) {
            let gap = request.received_at - previous.received_at;
            assert!(
                gap >= ANSWER_DELAY,
                "{subject}: request #{} came {gap:?} after #{}, before it was answered",
                request.seq,
                previous.seq
            );
        }
        overlapping_subjects += all[..i]
            .iter()
            .filter(|(earlier, other, _, _)| {
                other != subject && request.received_at - earlier.received_at < ANSWER_DELAY
            })
            .count();
    }
    assert!(
        overlapping_subjects > 0,
        "no two subjects were ever delivered at the same time"
    );
    let waiting = metric(&host, "sinkhost_ordering_waiting{subscription=\"ordered\"}").await;
    assert_eq!(
        waiting,
        Some(0.0),
        "messages waited behind their subject, and none is left waiting"
    );
}

/// A message that fails every attempt holds back only its own subject: it is
/// dead-lettered after its last attempt, the next message of its subject comes
/// after that, and another subject is delivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_message_releases_its_subject_after_its_last_attempt() {
    let receiver = Receiver::start(|request, _| {
        let status = if request.idempotency_key() == Some("dl.a#1") {
            500
        } else {
            200
        };
        Reply::status(status)
    })
    .await;
    let nats = NatsServer::start();
    let config = config(
        "dl_s",
        "dl",
        "ordered-dl",
        &receiver.url("/hook"),
        // With nothing else failing, dl.a#1 alone would look like an outage.
        "ordering: per-subject\nretries: 2\nbackoff: \"300ms\"\nbreaker: {failures: 0}",
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for (subject, n) in [("dl.a", 0), ("dl.a", 1), ("dl.a", 2), ("dl.b", 0)] {
        publish(
            &js,
            subject,
            format!("{n}"),
            &[("Nats-Msg-Id", &key(subject, n))],
        )
        .await;
    }

    let requests = receiver
        .wait_until(
            |reqs| reqs.iter().any(|r| r.idempotency_key() == Some("dl.a#2")),
            WAIT,
        )
        .await;
    let keys: Vec<&str> = requests
        .iter()
        .filter_map(Recorded::idempotency_key)
        .collect();
    let of_a: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("dl.a"))
        .collect();
    assert_eq!(
        of_a,
        ["dl.a#0", "dl.a#1", "dl.a#1", "dl.a#1", "dl.a#2"],
        "retries: 2 = three attempts of dl.a#1, then dl.a#2"
    );
    let position = |key: &str| keys.iter().position(|k| *k == key).unwrap();
    assert!(
        position("dl.b#0") < keys.iter().rposition(|k| *k == "dl.a#1").unwrap(),
        "dl.b is not held back by dl.a: {keys:?}"
    );

    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"ordered-dl\"}",
        1.0,
        WAIT,
    )
    .await;
    let letters = dlq_messages(&js, "dl_s").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload_text(), "1");
    assert_eq!(letters[0].header("Sinkhost-Original-Subject"), Some("dl.a"));
    assert!(
        host.json_logs().iter().any(|line| {
            line["fields"]["message"] == "dead-lettered" && line["fields"]["message_id"] == "dl.a#1"
        }),
        "the host logs which message it dead-lettered"
    );
}

/// Messages queued behind a slow one of their subject wait longer than
/// `ack_wait`; in-progress acks keep JetStream from handing them out again, so
/// every message is POSTed exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_behind_a_subject_outlasts_ack_wait_without_redelivery() {
    let receiver = Receiver::start(|_, _| Reply::ok().delay(Duration::from_millis(600))).await;
    let nats = NatsServer::start();
    let config = config(
        "wait_s",
        "wait",
        "ordered-slow",
        &receiver.url("/hook"),
        "ordering: per-subject\ntimeout: \"1s\"\nack_wait: \"2s\"",
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for n in 0..8 {
        publish(
            &js,
            "wait.one",
            "{}",
            &[("Nats-Msg-Id", &key("wait.one", n))],
        )
        .await;
    }
    // The last one waits about 4.2 s, more than twice ack_wait.
    receiver.wait_for(8, WAIT).await;
    receiver.assert_count_stays(8, Duration::from_secs(3)).await;
    let keys: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| r.idempotency_key().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..8).map(|n| key("wait.one", n)).collect();
    assert_eq!(keys, expected);
}

/// SIGTERM while messages wait behind their subject: the host exits 0 without
/// starting them, and the next host delivers every message, each once. (Their
/// order across the restart is up to NATS, which may hand a returned message
/// out after later ones; see README, Operating.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_returns_waiting_messages_and_loses_nothing() {
    let receiver = Receiver::start(|_, _| Reply::ok().delay(Duration::from_millis(500))).await;
    let nats = NatsServer::start();
    let config = config(
        "term_o",
        "term",
        "ordered-term",
        &receiver.url("/hook"),
        "ordering: per-subject",
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for n in 0..10 {
        publish(
            &js,
            "term.one",
            "{}",
            &[("Nats-Msg-Id", &key("term.one", n))],
        )
        .await;
    }
    receiver.wait_for(1, WAIT).await;
    host.sigterm();
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", host.logs().join("\n"));
    let before_restart = receiver.count();
    assert!(before_restart < 10, "the test needs messages left waiting");
    assert!(
        host.logs()
            .iter()
            .any(|line| line.contains("shutdown: message not started, returned to the stream")),
        "the host says it returned the waiting messages"
    );

    let _again = Host::start(config.path(), &nats.url(), &[]).await;
    let requests = receiver.wait_for(10, WAIT).await;
    receiver
        .assert_count_stays(10, Duration::from_secs(1))
        .await;
    let mut keys: Vec<&str> = requests
        .iter()
        .filter_map(Recorded::idempotency_key)
        .collect();
    keys.sort_by_key(|k| split_key(k).1);
    keys.dedup();
    assert_eq!(keys.len(), 10, "every message once: {keys:?}");
}

/// `rate_limit: "50/s"` with 200 messages waiting: after the first second's
/// burst, the receiver sees about 50 requests a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_deliveries_to_the_configured_rate() {
    const MESSAGES: usize = 200;
    let receiver = Receiver::ok().await;
    let nats = NatsServer::start();
    let config = config(
        "rate_s",
        "rate",
        "limited",
        &receiver.url("/hook"),
        "rate_limit: \"50/s\"",
    );
    let js = nats.jetstream().await;
    ensure_stream(&js, "rate_s", &["rate.>"]).await;
    for n in 0..MESSAGES {
        publish(&js, &format!("rate.{}", n % 7), "{}", &[]).await;
    }
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    let requests = receiver.wait_for(MESSAGES, WAIT).await;

    // Skip the burst (one second's worth) and a little more; measure the rest.
    let steady = &requests[60..MESSAGES];
    let span = steady.last().unwrap().received_at - steady[0].received_at;
    let rate = (steady.len() - 1) as f64 / span.as_secs_f64();
    println!("measured rate: {rate:.1} requests/s over {span:?}");
    assert!(
        (35.0..=65.0).contains(&rate),
        "{rate:.1} requests/s with rate_limit 50/s"
    );
    let waits = metric(
        &host,
        "sinkhost_rate_limit_waits_total{subscription=\"limited\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(waits >= 100.0, "{waits} deliveries waited for a token");
    let waited = metric(
        &host,
        "sinkhost_rate_limit_wait_seconds_total{subscription=\"limited\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(waited > 0.0, "{waited} s waited");
}
