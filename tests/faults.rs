//! Faults, done for real: a host killed with SIGKILL mid-backlog, nats-server
//! restarted under load, two hosts sharing one consumer (and one of them killed),
//! a node of a three-node JetStream cluster stopped, and destinations that refuse,
//! hang, throttle, flood or speak the wrong protocol. Each test asserts what an
//! operator checks: distinct message ids that arrived, duplicates only where
//! at-least-once allows them, exit codes, /healthz and /metrics.
//!
//! `SINKHOST_SOAK=1` (`make soak`) scales the message counts up to 20,000.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use common::{metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsCluster, NatsServer, Receiver, Recorded, Reply, dlq_messages,
    dlq_stream_name, ids, last_first_arrival, publish, publish_all, wait_for_stream_messages,
};

const WAIT: Duration = Duration::from_secs(60);

/// `n` normally, 20,000 under `SINKHOST_SOAK=1`.
fn scaled(n: usize) -> usize {
    if std::env::var_os("SINKHOST_SOAK").is_some_and(|v| !v.is_empty() && v != "0") {
        n.max(20_000)
    } else {
        n
    }
}

/// Time allowed for draining `n` messages (generous: this machine also builds).
fn drain_time(n: usize) -> Duration {
    WAIT + Duration::from_millis(n as u64 * 20)
}

/// Like [`publish_all`] one at a time, retrying each publish until it is acked:
/// for publishing while the cluster elects a new leader. `Nats-Msg-Id` makes a
/// retried publish idempotent.
async fn publish_retrying(js: &jetstream::Context, subject: &str, ids: &[String]) {
    for id in ids {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let sent = js
                .publish_with_headers(
                    subject.to_owned(),
                    headers,
                    format!("{{\"id\":\"{id}\"}}").into(),
                )
                .await;
            let acked = match sent {
                Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack)
                    .await
                    .map_err(|_| "no ack within 5s".to_owned())
                    .and_then(|ack| ack.map(drop).map_err(|err| err.to_string())),
                Err(err) => Err(err.to_string()),
            };
            match acked {
                Ok(()) => break,
                Err(err) => {
                    assert!(Instant::now() < deadline, "publishing {id}: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// How many requests each `Idempotency-Key` got.
fn per_key(requests: &[Recorded]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        let key = request
            .idempotency_key()
            .unwrap_or_else(|| panic!("request without Idempotency-Key: {request:?}"));
        *counts.entry(key.to_owned()).or_default() += 1;
    }
    counts
}

/// Waits until every id in `expected` has arrived at least once; returns all
/// requests. Panics listing the missing ids otherwise.
async fn wait_all_arrived(
    receiver: &Receiver,
    expected: &[String],
    timeout: Duration,
) -> Vec<Recorded> {
    let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    // Incremental: the check runs on every request, and soak runs have 20,000.
    let mut seen = BTreeSet::<String>::new();
    let mut checked = 0;
    let requests = tokio::time::timeout_at(
        deadline,
        receiver.wait_until(
            |requests| {
                for key in requests[checked..]
                    .iter()
                    .filter_map(Recorded::idempotency_key)
                {
                    if wanted.contains(key) && !seen.contains(key) {
                        seen.insert(key.to_owned());
                    }
                }
                checked = requests.len();
                seen.len() == wanted.len()
            },
            timeout + Duration::from_secs(1),
        ),
    )
    .await;
    match requests {
        Ok(requests) => requests,
        Err(_) => {
            let seen = per_key(&receiver.requests());
            let missing: Vec<&&str> = wanted
                .iter()
                .filter(|id| !seen.contains_key(**id))
                .collect();
            panic!(
                "{} of {} message(s) never arrived within {timeout:?}, e.g. {:?}",
                missing.len(),
                wanted.len(),
                &missing[..missing.len().min(10)]
            );
        }
    }
}

/// Asserts that exactly the ids in `expected` arrived (no strangers) and returns
/// the number of duplicate requests (requests beyond the first per id).
fn duplicates(requests: &[Recorded], expected: &[String]) -> usize {
    let counts = per_key(requests);
    let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let strangers: Vec<&String> = counts
        .keys()
        .filter(|k| !wanted.contains(k.as_str()))
        .collect();
    assert!(
        strangers.is_empty(),
        "unexpected ids arrived: {strangers:?}"
    );
    assert_eq!(counts.len(), wanted.len(), "distinct ids");
    requests.len() - counts.len()
}

/// Waits until the durable `consumer` of `stream` has nothing pending and nothing
/// awaiting an ack: from then on no redelivery, and so no further duplicate, can
/// come. Polls the consumer's info every 50 ms (state in another process).
async fn wait_settled(js: &jetstream::Context, stream: &str, consumer: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = match js.get_stream(stream).await {
            Ok(stream) => stream
                .consumer_info(consumer)
                .await
                .map(|info| (info.num_pending, info.num_ack_pending))
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if state == Ok((0, 0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumer {consumer} on {stream} not settled within {WAIT:?}: (pending, ack pending) = {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/healthz` until it answers `status`.
async fn wait_healthz(host: &Host, status: u16, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (now, body) = host.http_get("/healthz").await;
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz stayed {now} ({body}), expected {status} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peak resident set size of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("reading /proc/{pid}/status: {err}"));
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    kb * 1024
}

/// A config.d with one stream and one subscription named `name`.
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

/// What the host-kill and shared-consumer tests run with: at most 20 in flight,
/// and a short ack_wait so a dead host's messages come back quickly.
const FAST_REDELIVERY: &str = "max_concurrency: 20\ntimeout: \"1s\"\nack_wait: \"3s\"";
const MAX_CONCURRENCY: usize = 20;

fn series(name: &str, subscription: &str, label: &str, value: &str) -> String {
    format!("{name}{{subscription=\"{subscription}\",{label}=\"{value}\"}}")
}

async fn delivered(host: &Host, subscription: &str) -> f64 {
    metric(
        host,
        &series(
            "sinkhost_deliveries_total",
            subscription,
            "outcome",
            "delivered",
        ),
    )
    .await
    .unwrap_or(0.0)
}

// ---------------------------------------------------------------- host crashes

/// SIGKILL while draining a backlog: the next host delivers everything, and the
/// only duplicates are messages that were in flight at the kill (at most
/// `max_concurrency`, JetStream's MaxAckPending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backlog_loses_nothing_and_duplicates_only_in_flight() {
    let n = scaled(1_000);
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config("k9_s", "k9", "k9", &receiver.url("/h"), FAST_REDELIVERY);
    let js = nats.jetstream().await;
    jetstream_stream(&js, "k9_s", "k9.>").await;
    let expected = ids("k9", 0..n);
    publish_all(&js, "k9.order", &expected).await;

    let started = Instant::now();
    let first = Host::start(config.path(), &nats.url(), &[]).await;
    receiver.wait_for(n / 4, drain_time(n)).await;
    first.kill9();
    let status = first.wait_exit(WAIT).await;
    let at_kill = receiver.count();
    assert_eq!(status.code(), None, "SIGKILL leaves no exit code: {status}");
    assert!(
        at_kill < n,
        "the backlog drained before the kill ({at_kill} of {n})"
    );

    let second = Host::start(config.path(), &nats.url(), &[]).await;
    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    let elapsed = started.elapsed();
    wait_healthz(&second, 200, WAIT).await;
    // Any redelivery still to come would be a duplicate too: wait it out.
    wait_settled(&js, "k9_s", "k9-consumer").await;
    let dups = duplicates(&receiver.requests(), &expected);
    eprintln!(
        "kill -9 mid-backlog: sent {n}, delivered {} distinct ({at_kill} before the kill), {dups} duplicate(s), {elapsed:?}",
        n
    );
    assert!(
        dups <= MAX_CONCURRENCY,
        "{dups} duplicates, but at most {MAX_CONCURRENCY} messages were in flight at the kill"
    );
}

/// Creates a plain R1 file stream up front, so messages can be published
/// before any host runs; the host then reconciles it.
async fn jetstream_stream(js: &jetstream::Context, name: &str, subject: &str) {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        max_age: Duration::from_secs(3600),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|err| panic!("creating stream {name}: {err}"));
}

// ---------------------------------------------------------------- NATS restarts

/// nats-server stopped while messages flow and started again on the same port
/// and store: the same sinkhost process (never restarted) goes 503 while NATS is
/// down, 200 after, and delivers everything, including what was published after
/// the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load_loses_nothing_and_healthz_follows() {
    let n = scaled(1_000);
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config("nr_s", "nr", "nr", &receiver.url("/h"), FAST_REDELIVERY);
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let before = ids("nr", 0..n / 2);
    let after = ids("nr", n / 2..n);

    let started = Instant::now();
    let js = nats.jetstream().await;
    publish_all(&js, "nr.order", &before).await;
    receiver.wait_for(n / 8, drain_time(n)).await;
    nats.stop();
    let at_stop = receiver.count();
    wait_healthz(&host, 503, WAIT).await;
    let (_, body) = host.http_get("/healthz").await;
    assert_eq!(
        metric(&host, "sinkhost_nats_connected").await,
        Some(0.0),
        "{body}"
    );
    let down = Instant::now();

    nats.restart();
    host.wait_healthy(WAIT).await;
    let outage = down.elapsed();
    assert_eq!(metric(&host, "sinkhost_nats_connected").await, Some(1.0));
    let js = nats.jetstream().await;
    publish_all(&js, "nr.order", &after).await;
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    wait_settled(&js, "nr_s", "nr-consumer").await;
    let dups = duplicates(&receiver.requests(), &expected);
    assert_eq!(
        host.exit_status(),
        None,
        "sinkhost exited during the outage"
    );
    let listening = host
        .logs()
        .iter()
        .filter(|l| l.contains("\"listening\""))
        .count();
    assert_eq!(listening, 1, "sinkhost restarted itself");
    eprintln!(
        "nats restart: sent {n}, delivered {} distinct ({at_stop} before the stop), {dups} duplicate(s), /healthz 503 -> 200 in {outage:?}, total {:?}",
        n,
        started.elapsed()
    );
    assert!(dups <= MAX_CONCURRENCY, "{dups} duplicates");
}

// ---------------------------------------------------------------- two hosts

/// Two sinkhost processes on one config.d share the durable consumer: every
/// message once in total, and both did part of the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_the_consumer_exactly_once() {
    let n = scaled(2_000);
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config("two_s", "two", "two", &receiver.url("/h"), FAST_REDELIVERY);
    let a = Host::start(config.path(), &nats.url(), &[]).await;
    let b = Host::start(config.path(), &nats.url(), &[]).await;
    a.wait_healthy(WAIT).await;
    b.wait_healthy(WAIT).await;

    let started = Instant::now();
    let js = nats.jetstream().await;
    let expected = ids("two", 0..n);
    publish_all(&js, "two.order", &expected).await;
    let all = wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    let elapsed = started.elapsed();
    wait_settled(&js, "two_s", "two-consumer").await;
    receiver
        .assert_count_stays(all.len(), Duration::from_millis(500))
        .await;
    let dups = duplicates(&receiver.requests(), &expected);
    let (by_a, by_b) = (delivered(&a, "two").await, delivered(&b, "two").await);
    eprintln!(
        "two hosts: sent {n}, delivered {} distinct, {dups} duplicate(s), host A {by_a}, host B {by_b}, {elapsed:?}",
        n
    );
    assert_eq!(dups, 0, "a message was delivered twice without any fault");
    assert!(
        by_a > 0.0 && by_b > 0.0,
        "one host did all the work: {by_a} / {by_b}"
    );
    assert_eq!(by_a + by_b, n as f64, "deliveries counted by the two hosts");
}

/// Two hosts, one killed with SIGKILL mid-flow: the survivor delivers the rest,
/// including the dead one's unacked messages after ack_wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_one_killed_the_other_delivers_the_rest() {
    let n = scaled(2_000);
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config(
        "twok_s",
        "twok",
        "twok",
        &receiver.url("/h"),
        FAST_REDELIVERY,
    );
    let a = Host::start(config.path(), &nats.url(), &[]).await;
    let b = Host::start(config.path(), &nats.url(), &[]).await;
    a.wait_healthy(WAIT).await;
    b.wait_healthy(WAIT).await;

    let started = Instant::now();
    let js = nats.jetstream().await;
    let expected = ids("twok", 0..n);
    publish_all(&js, "twok.order", &expected).await;
    receiver.wait_for(n / 4, drain_time(n)).await;
    a.kill9();
    a.wait_exit(WAIT).await;
    let at_kill = receiver.count();
    let b_at_kill = delivered(&b, "twok").await;
    assert!(at_kill < n, "everything was delivered before the kill");

    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    let elapsed = started.elapsed();
    wait_settled(&js, "twok_s", "twok-consumer").await;
    let dups = duplicates(&receiver.requests(), &expected);
    let b_total = delivered(&b, "twok").await;
    eprintln!(
        "two hosts, one kill -9: sent {n}, delivered {} distinct ({at_kill} before the kill), {dups} duplicate(s), survivor delivered {b_total} ({} after the kill), {elapsed:?}",
        n,
        b_total - b_at_kill
    );
    assert!(b_total > b_at_kill, "the survivor did not take over");
    assert!(dups <= MAX_CONCURRENCY, "{dups} duplicates");
    assert_eq!(b.exit_status(), None, "the survivor exited");
}

/// Two hosts on one consumer, one of them stopped with SIGTERM and started again
/// 24 times, every ~0.5 s, while a 5,000-message backlog drains (a rolling
/// restart done too often): each stop returns what its fetch loop had buffered
/// without spending an attempt, to the other host or the next life, once. So
/// with `retries: 3` against a healthy destination nothing is dead-lettered,
/// every message arrives, each exit is clean (status 0), the only duplicates are
/// what was in flight at a stop, and JetStream delivers at most twice per
/// message. Before attempt records each return raised the delivery count the
/// host read as its attempt number: 25 dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_sigterm_restarts_of_two_hosts_dead_letter_nothing() {
    let n = scaled(5_000);
    const RESTARTS: u32 = 24;
    const EVERY: Duration = Duration::from_millis(500);
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(20)).await;
    let config = config(
        "roll_s",
        "roll",
        "roll",
        &receiver.url("/h"),
        "max_concurrency: 20\nretries: 3\nack_wait: \"30s\"",
    );
    let js = nats.jetstream().await;
    jetstream_stream(&js, "roll_s", "roll.>").await;
    let expected = ids("roll", 0..n);
    publish_all(&js, "roll.order", &expected).await;

    let started = Instant::now();
    let a = Host::start(config.path(), &nats.url(), &[]).await;
    let mut b = Host::start(config.path(), &nats.url(), &[]).await;
    a.wait_healthy(WAIT).await;
    // What the stopped lives of host B complained about.
    let mut b_warnings = Vec::<String>::new();
    let restarts_from = tokio::time::Instant::now();
    let mut stopped_at = Vec::new();
    for restart in 1..=RESTARTS {
        tokio::time::sleep_until(restarts_from + EVERY * restart).await;
        // Stopped while consuming, not while still connecting.
        b.wait_healthy(WAIT).await;
        b.sigterm();
        stopped_at.push(Instant::now());
        let status = b.wait_exit(WAIT).await;
        assert_eq!(
            status.code(),
            Some(0),
            "host B's life {restart} exited with {status}:\n{}",
            b.logs().join("\n")
        );
        b_warnings.extend(
            b.logs()
                .into_iter()
                .filter(|line| line.contains("\"WARN\"") || line.contains("\"ERROR\"")),
        );
        b = Host::start(config.path(), &nats.url(), &[]).await;
    }
    let restarts_took = restarts_from.elapsed();

    let dlq = dlq_stream_name("roll_s");
    tokio::select! {
        _ = wait_all_arrived(&receiver, &expected, drain_time(n)) => {}
        dead = wait_for_stream_messages(&js, &dlq, 1, drain_time(n) + WAIT) => {
            panic!(
                "dead-lettered to a healthy destination before every message arrived: {:?}\nhost B's warnings:\n{}",
                dead[0],
                b_warnings.join("\n")
            );
        }
    }
    // Whatever is still to come would be a duplicate too: wait it out.
    wait_settled(&js, "roll_s", "roll-consumer").await;
    let requests = receiver.requests();
    let dups = duplicates(&requests, &expected);
    let drained = last_first_arrival(&requests);
    let during_drain = stopped_at.iter().filter(|&&at| at < drained).count();
    let deliveries = js
        .get_stream("roll_s")
        .await
        .expect("the stream")
        .consumer_info("roll-consumer")
        .await
        .expect("the consumer's info")
        .delivered
        .consumer_sequence;
    let dead = dlq_messages(&js, "roll_s").await;
    let by_a = delivered(&a, "roll").await;
    let by_b = requests.len() as f64 - by_a;
    eprintln!(
        "rolling restarts: host B stopped with SIGTERM and started again {RESTARTS} times in {restarts_took:?} \
         ({during_drain} of the stops while the backlog drained); all {n} distinct delivered {:?} after the hosts \
         began; host A delivered {by_a}, host B's lives the other {by_b} request(s); {dups} duplicate(s), \
         {deliveries} consumer deliveries, {} dead letter(s)",
        drained - started,
        dead.len()
    );
    assert!(
        during_drain > 0,
        "the backlog drained before the first stop: nothing was tested"
    );
    assert!(
        dead.is_empty(),
        "{} message(s) dead-lettered to a healthy destination, e.g. {:?}\nhost B's warnings:\n{}",
        dead.len(),
        dead.first(),
        b_warnings.join("\n")
    );
    let in_flight = MAX_CONCURRENCY * (RESTARTS as usize + 1);
    assert!(
        dups <= in_flight,
        "{dups} duplicates, but at most {in_flight} deliveries were in flight at the stops"
    );
    assert!(
        deliveries <= 2 * n as u64,
        "the consumer delivered {deliveries} times for {n} messages: returned messages bounced"
    );
    assert_eq!(
        metric(&a, "sinkhost_dead_letters_total{subscription=\"roll\"}")
            .await
            .unwrap_or(0.0),
        0.0,
        "host A dead-lettered"
    );
    assert_eq!(a.exit_status(), None, "host A exited");
}

// ---------------------------------------------------------------- destinations

/// Retries fast and dead-letters after two attempts: what the destination-fault
/// tests run with.
/// One message, two attempts, each its own (no breaker: alone, it would look like an outage).
const TWO_ATTEMPTS: &str =
    "retries: 1\nbackoff: \"100ms\"\ntimeout: \"500ms\"\nack_wait: \"5s\"\nbreaker: {failures: 0}";

fn http_series(subscription: &str, result: &str) -> String {
    series(
        "sinkhost_http_requests_total",
        subscription,
        "result",
        result,
    )
}

/// A URL on 127.0.0.1 where nothing listens.
fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}/h")
}

/// Publishes one message, waits for its dead letter and returns
/// (attempts, last error).
async fn dead_letter_of(
    nats: &NatsServer,
    host: &Host,
    stream: &str,
    sub: &str,
    subject: &str,
) -> (String, String) {
    let js = nats.jetstream().await;
    publish(&js, subject, "{}", &[("Nats-Msg-Id", "doomed")]).await;
    wait_metric(
        host,
        &format!("sinkhost_dead_letters_total{{subscription=\"{sub}\"}}"),
        1.0,
        WAIT,
    )
    .await;
    let dead = dlq_messages(&js, stream).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let header = |name: &str| {
        dead[0]
            .header(name)
            .unwrap_or_else(|| panic!("dead letter without {name}: {:?}", dead[0]))
            .to_owned()
    };
    assert_eq!(header("Sinkhost-Message-Id"), "doomed");
    (header("Sinkhost-Attempts"), header("Sinkhost-Last-Error"))
}

/// Connection refused: counted as `connect`, retried, then dead-lettered with a
/// reason that says the connection failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_retried_then_dead_lettered() {
    let nats = NatsServer::start();
    let config = config(
        "refused_s",
        "refused",
        "refused",
        &refused_url(),
        TWO_ATTEMPTS,
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let (attempts, reason) =
        dead_letter_of(&nats, &host, "refused_s", "refused", "refused.x").await;
    eprintln!("connection refused: {attempts} attempts, dead letter reason: {reason}");
    assert_eq!(attempts, "2");
    assert!(
        reason.contains("connection") && reason.to_lowercase().contains("refused"),
        "the reason does not name the connection: {reason}"
    );
    assert_eq!(
        metric(&host, &http_series("refused", "connect")).await,
        Some(2.0)
    );
    wait_healthz(&host, 200, WAIT).await;
}

/// A destination that accepts the connection and never answers: each attempt
/// ends at `timeout` (500 ms), counted as `timeout`, then dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_destination_times_out_each_attempt() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::ok().delay(Duration::from_secs(3600))).await;
    let config = config(
        "silent_s",
        "silent",
        "silent",
        &receiver.url("/h"),
        TWO_ATTEMPTS,
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let started = Instant::now();
    let (attempts, reason) = dead_letter_of(&nats, &host, "silent_s", "silent", "silent.x").await;
    let elapsed = started.elapsed();
    eprintln!("silent destination: {attempts} attempts in {elapsed:?}, reason: {reason}");
    assert_eq!(attempts, "2");
    assert!(
        reason.to_lowercase().contains("timeout") || reason.to_lowercase().contains("timed out"),
        "{reason}"
    );
    assert_eq!(
        metric(&host, &http_series("silent", "timeout")).await,
        Some(2.0)
    );
    let requests = receiver.wait_for(2, WAIT).await;
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= Duration::from_millis(500) && gap < Duration::from_secs(3),
        "second attempt {gap:?} after the first (timeout 500ms + backoff 100ms)"
    );
}

/// 429 with `Retry-After: 1`: the next attempt waits at least a second even
/// though the backoff is 100 ms, and the 4xx and the 2xx are both counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_429_waits_for_retry_after() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(429).header("Retry-After", "1")
        } else {
            Reply::ok()
        }
    })
    .await;
    let config = config("thr_s", "thr", "thr", &receiver.url("/h"), TWO_ATTEMPTS);
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "thr.x", "{}", &[]).await;
    let requests = receiver.wait_for(2, WAIT).await;
    let gap = requests[1].received_at - requests[0].received_at;
    eprintln!("429 Retry-After: 1 -> next attempt after {gap:?}");
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before Retry-After"
    );
    assert!(gap < Duration::from_secs(5), "retried only after {gap:?}");
    wait_metric(
        &host,
        &series("sinkhost_deliveries_total", "thr", "outcome", "delivered"),
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(metric(&host, &http_series("thr", "4xx")).await, Some(1.0));
    assert_eq!(metric(&host, &http_series("thr", "2xx")).await, Some(1.0));
    receiver
        .assert_count_stays(2, Duration::from_millis(300))
        .await;
}

/// Responses of 100 MB: the host reads a bounded prefix, keeps delivering, and
/// its peak RSS stays far below what buffering them would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_response_bodies_are_read_bounded() {
    const HUGE: usize = 100 * 1024 * 1024;
    const LIMIT: u64 = 300 * 1024 * 1024;
    let n = 8;
    let nats = NatsServer::start();
    let body = bytes::Bytes::from(vec![b'x'; HUGE]);
    let receiver = Receiver::start(move |_, _| Reply::ok().body(body.clone())).await;
    let config = config(
        "huge_s",
        "huge",
        "huge",
        &receiver.url("/h"),
        "max_concurrency: 8\ntimeout: \"10s\"\nack_wait: \"30s\"",
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let before = peak_rss(host.pid());
    let js = nats.jetstream().await;
    let expected = ids("huge", 0..n);
    publish_all(&js, "huge.x", &expected).await;
    wait_metric(
        &host,
        &series("sinkhost_deliveries_total", "huge", "outcome", "delivered"),
        n as f64,
        WAIT,
    )
    .await;
    wait_all_arrived(&receiver, &expected, WAIT).await;
    assert_eq!(
        metric(&host, &http_series("huge", "2xx")).await,
        Some(n as f64)
    );
    wait_healthz(&host, 200, WAIT).await;

    // Still working afterwards.
    receiver.set_behaviour(|_, _| Reply::ok());
    publish_all(&js, "huge.x", &ids("after", 0..1)).await;
    wait_metric(
        &host,
        &series("sinkhost_deliveries_total", "huge", "outcome", "delivered"),
        (n + 1) as f64,
        WAIT,
    )
    .await;
    let peak = peak_rss(host.pid());
    eprintln!(
        "{n} x 100 MB responses: VmHWM {} MB before, {} MB after",
        before / (1024 * 1024),
        peak / (1024 * 1024)
    );
    assert!(peak < LIMIT, "peak RSS {} MB", peak / (1024 * 1024));
}

/// An `https://` URL pointing at a plain-HTTP server: the TLS handshake fails,
/// which is a `connect` error, retried, then dead-lettered; the server never
/// sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failure_is_a_connect_error() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let url = format!("https://{}/h", receiver.addr());
    let config = config("tls_s", "tls", "tls", &url, TWO_ATTEMPTS);
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let (attempts, reason) = dead_letter_of(&nats, &host, "tls_s", "tls", "tls.x").await;
    eprintln!("TLS to a plain-HTTP port: {attempts} attempts, reason: {reason}");
    assert_eq!(attempts, "2");
    assert_eq!(
        metric(&host, &http_series("tls", "connect")).await,
        Some(2.0)
    );
    assert_eq!(
        receiver.count(),
        0,
        "a request got through: {:?}",
        receiver.requests()
    );
}

// ---------------------------------------------------------------- NATS cluster

/// A three-node JetStream cluster with an R3 stream (created by the operator,
/// here the test): the host gets every node in `NATS_URL`, keeps the stream's
/// replicas when it reconciles the stream, and loses nothing when the stream's
/// leader node is stopped mid-flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_stopped_mid_flow_loses_nothing() {
    let n = scaled(1_000);
    let cluster = NatsCluster::start(3);
    let js = cluster.jetstream().await;
    let created = cluster
        .create_stream(
            &js,
            stream::Config {
                name: "cl_s".to_owned(),
                subjects: vec!["cl.>".to_owned()],
                // config.d says 1h: the host updates this stream, replicas included.
                max_age: Duration::from_secs(600),
                storage: stream::StorageType::File,
                num_replicas: 3,
                ..Default::default()
            },
            WAIT,
        )
        .await;
    drop(created);
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config("cl_s", "cl", "cl", &receiver.url("/h"), FAST_REDELIVERY);
    let host = Host::start(config.path(), &cluster.urls(), &[]).await;
    host.wait_healthy(WAIT).await;
    let mut stream = js.get_stream("cl_s").await.expect("the R3 stream");
    let info = stream.info().await.expect("stream info").clone();
    assert_eq!(
        info.config.max_age,
        Duration::from_secs(3600),
        "not reconciled"
    );
    assert_eq!(
        info.config.num_replicas, 3,
        "reconciling dropped the replicas"
    );

    let started = Instant::now();
    let before = ids("cl", 0..n / 2);
    let after = ids("cl", n / 2..n);
    publish_all(&js, "cl.order", &before).await;
    receiver.wait_for(n / 8, drain_time(n)).await;
    let leader = info
        .cluster
        .and_then(|cluster| cluster.leader)
        .expect("the R3 stream has a leader");
    let at_stop = receiver.count();
    tokio::task::block_in_place(|| cluster.node(&leader).stop());
    publish_retrying(&js, "cl.order", &after).await;
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    let elapsed = started.elapsed();
    wait_settled(&js, "cl_s", "cl-consumer").await;
    let dups = duplicates(&receiver.requests(), &expected);
    wait_healthz(&host, 200, WAIT).await;
    assert_eq!(host.exit_status(), None, "sinkhost exited");
    let new_leader = js
        .get_stream("cl_s")
        .await
        .expect("the stream after the failover")
        .info()
        .await
        .expect("stream info")
        .cluster
        .clone()
        .and_then(|cluster| cluster.leader);
    eprintln!(
        "cluster: sent {n}, delivered {} distinct ({at_stop} before stopping leader {leader}, new leader {new_leader:?}), {dups} duplicate(s), {elapsed:?}",
        n
    );
    assert_ne!(new_leader.as_deref(), Some(leader.as_str()));
    // Redeliveries are messages unacked at the failover (at most MaxAckPending
    // each time a consumer leader changes hands or the host reconnects).
    assert!(dups <= 2 * MAX_CONCURRENCY, "{dups} duplicates");
}

/// `stream.replicas: 3` in config.d on a three-node cluster: sinkhost creates
/// the stream, its dead-letter stream and its KV buckets with three replicas;
/// with the dead-letter stream's leader node stopped, nothing is lost,
/// messages that cannot be delivered are still dead-lettered, and `dlq list`
/// reads every dead letter from the nodes left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_streams_from_config_d_survive_a_stopped_node() {
    let n = scaled(400);
    let cluster = NatsCluster::start(3);
    let js = cluster.jetstream().await;
    // Wait until the cluster can place an R3 stream; config.d makes the real ones.
    cluster
        .create_stream(
            &js,
            stream::Config {
                name: "r3_ready".to_owned(),
                subjects: vec!["r3ready.>".to_owned()],
                num_replicas: 3,
                ..Default::default()
            },
            WAIT,
        )
        .await;
    js.delete_stream("r3_ready")
        .await
        .expect("deleting r3_ready");
    let receiver = Receiver::ok().await;
    let refusing = Receiver::status(422).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "stream:\n  name: r3_s\n  subjects: [r3.>]\n  max_age: 1h\n  replicas: 3\nsubscriptions:\n{}{}",
            sub_yaml("r3ok", "r3.ok.>", &receiver.url("/h"), FAST_REDELIVERY),
            sub_yaml(
                "r3dead",
                "r3.dead.>",
                &refusing.url("/h"),
                "settings: {reject_status: [422]}"
            ),
        ),
    );
    let host = Host::start(config.path(), &cluster.urls(), &[]).await;
    host.wait_healthy(WAIT).await;
    let info = |name: &'static str| {
        let js = js.clone();
        async move {
            js.get_stream(name)
                .await
                .unwrap_or_else(|e| panic!("stream {name}: {e}"))
                .info()
                .await
                .unwrap_or_else(|e| panic!("stream {name}: {e}"))
                .clone()
        }
    };
    for name in [
        "r3_s",
        "r3_s_dlq",
        "KV_sinkhost_attempt_counts",
        "KV_sinkhost_destinations",
    ] {
        assert_eq!(info(name).await.config.num_replicas, 3, "{name}");
    }

    let before = ids("r3", 0..n / 2);
    let after = ids("r3", n / 2..n);
    publish_all(&js, "r3.ok.order", &before).await;
    for i in 0..3 {
        publish(&js, &format!("r3.dead.{i}"), "{}", &[]).await;
    }
    receiver.wait_for(n / 2, drain_time(n)).await;
    wait_for_stream_messages(&js, "r3_s_dlq", 3, WAIT).await;

    let leader = info("r3_s_dlq")
        .await
        .cluster
        .and_then(|cluster| cluster.leader)
        .expect("the R3 dead-letter stream has a leader");
    tokio::task::block_in_place(|| cluster.node(&leader).stop());
    publish_retrying(&js, "r3.ok.order", &after).await;
    for i in 3..6 {
        let id = format!("r3-dead-{i}");
        publish_retrying(&js, &format!("r3.dead.{i}"), std::slice::from_ref(&id)).await;
    }
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    let dead = wait_for_stream_messages(&js, "r3_s_dlq", 6, WAIT).await;
    assert_eq!(dead.len(), 6);
    assert_eq!(host.exit_status(), None, "sinkhost exited");

    let dir = config.path().to_str().expect("a UTF-8 path");
    let listed = support::sinkhost_cli(
        &["dlq", "list", "--config-dir", dir, "--json"],
        &cluster.urls(),
        &[],
        WAIT,
    )
    .await;
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        listed.stdout.lines().count(),
        6,
        "dead letters listed with {leader} stopped:\n{}",
        listed.stdout
    );
    assert!(
        listed
            .stdout
            .lines()
            .all(|l| l.contains("\"subscription\":\"r3dead\"")),
        "{}",
        listed.stdout
    );
}

/// `replicas: 3` on a single server, which cannot hold them: the start fails
/// with the file, the stream and what NATS said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_a_server_cannot_hold_fail_the_start_clearly() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "stream:\n  name: r3_single_s\n  subjects: [one.>]\n  replicas: 3\nsubscriptions:\n{}",
            sub_yaml("one", "one.>", &receiver.url("/h"), "")
        ),
    );
    let host = Host::spawn(config.path(), &nats.url(), &[]);
    let status = host.wait_exit(WAIT).await;
    let logs = host.logs().join("\n");
    assert_ne!(status.code(), Some(0), "{logs}");
    assert!(
        logs.contains("10.yml:1: stream r3_single_s: creating stream r3_single_s (replicas 3): "),
        "{logs}"
    );
}

// ---------------------------------------------------------------- soak only

/// Three SIGKILLs during one long backlog (`make soak`): still everything
/// arrives, and each kill costs at most `max_concurrency` duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by `make soak`"]
async fn soak_repeated_kill_9_during_a_long_backlog() {
    let n = scaled(5_000);
    let kills = 3;
    let nats = NatsServer::start();
    let receiver = Receiver::slow(Duration::from_millis(2)).await;
    let config = config(
        "soak_s",
        "soak",
        "soak",
        &receiver.url("/h"),
        FAST_REDELIVERY,
    );
    let js = nats.jetstream().await;
    jetstream_stream(&js, "soak_s", "soak.>").await;
    let expected = ids("soak", 0..n);
    publish_all(&js, "soak.order", &expected).await;

    let started = Instant::now();
    for round in 1..=kills {
        let host = Host::start(config.path(), &nats.url(), &[]).await;
        receiver
            .wait_for(n * round / (kills + 1), drain_time(n))
            .await;
        host.kill9();
        host.wait_exit(WAIT).await;
    }
    let last = Host::start(config.path(), &nats.url(), &[]).await;
    wait_all_arrived(&receiver, &expected, drain_time(n)).await;
    wait_healthz(&last, 200, WAIT).await;
    wait_settled(&js, "soak_s", "soak-consumer").await;
    let dups = duplicates(&receiver.requests(), &expected);
    eprintln!(
        "soak, {kills} x kill -9: sent {n}, delivered {n} distinct, {dups} duplicate(s), {:?}",
        started.elapsed()
    );
    assert!(dups <= kills * MAX_CONCURRENCY, "{dups} duplicates");
}
