//! Destination outages, done for real: a receiver that answers 503 for as long
//! as the test says, in front of the real `sinkhost` binary on a real
//! nats-server. What is checked is what an operator checks after an outage:
//! nothing dead-lettered that the destination would have taken, every message
//! id arrived, the destination was not hammered while it was down, and
//! `/healthz`, `/metrics`, the log and the `sinkhost.events.>` messages said
//! what happened. The breaker's other side is checked too: a message that
//! fails on its own, and a destination that fails now and then, never open it.
//!
//! The outages themselves are timed (the test keeps the destination down for
//! so many seconds: that is the scenario); every wait for a condition is
//! bounded by a generous timeout that only fails when something is broken, and
//! no assertion is on how long anything took.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use common::{metric, stream_yaml, sub_yaml, wait_metric};
use futures::StreamExt;
use support::{
    ConfigDir, Host, NatsServer, Receiver, Reply, StoredMessage, dlq_messages, ids, publish_all,
};
use tokio::sync::Notify;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(60);

/// The retry schedule every test runs with: 3 retries 200 ms, 400 ms and
/// 800 ms apart, so a message's attempts are over 1.4 s after its first.
const RETRIES: usize = 3;
const SCHEDULE: Duration = Duration::from_millis(200 + 400 + 800);
const MAX_CONCURRENCY: usize = 20;
/// The breaker's `failures` (its default).
const FAILURES: usize = 5;
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// The subscription settings of the single-host outage tests.
fn settings(more: &str) -> String {
    format!(
        "retries: {RETRIES}\nbackoff: \"200ms\"\nmax_concurrency: {MAX_CONCURRENCY}\n\
         breaker: {{failures: {FAILURES}, probe_interval: 200ms, max_probe_interval: 1s}}\n{more}"
    )
}

/// A config.d with one stream `<subject>_s` over `<subject>.>` and one
/// subscription `name` on it.
fn config(subject: &str, name: &str, url: &str, extra: &str) -> ConfigDir {
    ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml(&format!("{subject}_s"), &[&format!("{subject}.>")]),
            sub_yaml(name, &format!("{subject}.>"), url, extra)
        ),
    )
}

// ---------------------------------------------------------------- the destination

/// One answer the destination gave.
#[derive(Clone, Debug)]
struct Answer {
    /// The request's `Idempotency-Key` (the message id).
    key: String,
    status: u16,
}

/// Every answer the destination gave, in arrival order, and a notification
/// per answer: the tests wait on what was *answered* (a 200 is a delivery, a
/// 503 is not), which the receiver's own log of requests cannot tell.
#[derive(Default)]
struct Answers {
    log: Mutex<Vec<Answer>>,
    changed: Notify,
}

impl Answers {
    fn record(&self, key: &str, status: u16) {
        self.lock().push(Answer {
            key: key.to_owned(),
            status,
        });
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Answer>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn all(&self) -> Vec<Answer> {
        self.lock().clone()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Waits until `done` holds for the answers so far and returns them;
    /// panics after `timeout` saying `what` it waited for.
    async fn wait_until(
        &self,
        what: &str,
        mut done: impl FnMut(&[Answer]) -> bool,
        timeout: Duration,
    ) -> Vec<Answer> {
        let deadline = Instant::now() + timeout;
        loop {
            // Register before checking, so an answer in between still wakes us.
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            {
                let log = self.lock();
                if done(&log) {
                    return log.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let log = self.all();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {} answer(s), {} of them 200, {} distinct message(s) delivered",
                    log.len(),
                    log.iter().filter(|a| a.status == 200).count(),
                    delivered_keys(&log).len()
                );
            }
        }
    }

    /// Waits until every id in `expected` was answered 200 at least once.
    async fn wait_delivered(&self, expected: &[String], timeout: Duration) -> Vec<Answer> {
        let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
        self.wait_until(
            &format!("{} message(s) answered 200", wanted.len()),
            |log| {
                let got = delivered_keys(log);
                wanted.iter().all(|key| got.contains(key))
            },
            timeout,
        )
        .await
    }
}

/// The ids answered 200.
fn delivered_keys(answers: &[Answer]) -> BTreeSet<&str> {
    answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.key.as_str())
        .collect()
}

fn failed(answers: &[Answer]) -> usize {
    answers.iter().filter(|a| a.status != 200).count()
}

/// A receiver answering each request with the status `decide` picks from its
/// `Idempotency-Key`; every answer goes to the returned [`Answers`].
async fn destination(
    decide: impl Fn(&str) -> u16 + Send + Sync + 'static,
) -> (Receiver, Arc<Answers>) {
    let answers = Arc::new(Answers::default());
    let log = Arc::clone(&answers);
    let receiver = Receiver::start(move |request, _| {
        let key = request.idempotency_key().unwrap_or_default().to_owned();
        let status = decide(&key);
        log.record(&key, status);
        Reply::status(status)
    })
    .await;
    (receiver, answers)
}

/// A destination that answers 503 while the flag is set, 200 otherwise.
async fn switchable() -> (Receiver, Arc<Answers>, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    let (receiver, answers) = destination(move |_| {
        if flag.load(Ordering::SeqCst) {
            503
        } else {
            200
        }
    })
    .await;
    (receiver, answers, down)
}

// ---------------------------------------------------------------- NATS side

/// A subscription to `sinkhost.events.<subscription>.>`, registered with the
/// server before this returns (so no event published later is missed).
async fn events(
    nats: &NatsServer,
    subscription: &str,
) -> (async_nats::Client, async_nats::Subscriber) {
    let client = nats.client().await;
    let events = client
        .subscribe(format!("sinkhost.events.{subscription}.>"))
        .await
        .expect("subscribing to the events");
    client.flush().await.expect("flushing the subscription");
    (client, events)
}

/// The next event: its subject and its JSON body.
async fn next_event(events: &mut async_nats::Subscriber) -> (String, serde_json::Value) {
    let message = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))
        .expect("the event subscription ended");
    let body = serde_json::from_slice(&message.payload).unwrap_or_else(|err| {
        panic!(
            "event on {} is not JSON ({err}): {}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        )
    });
    (message.subject.to_string(), body)
}

/// Asserts what every destination event carries.
fn assert_event(event: &serde_json::Value, name: &str, subscription: &str) {
    assert_eq!(event["event"], name, "{event}");
    assert_eq!(event["subscription"], subscription, "{event}");
    let time = event["time"]
        .as_str()
        .unwrap_or_else(|| panic!("no time: {event}"));
    humantime::parse_rfc3339(time).unwrap_or_else(|err| panic!("time {time:?}: {err}"));
    assert!(event["last_error"].is_string(), "{event}");
    let backlog = &event["backlog"];
    assert!(
        backlog.is_null() || (backlog["pending"].is_u64() && backlog["ack_pending"].is_u64()),
        "backlog is neither null nor {{pending, ack_pending}}: {event}"
    );
}

/// The dead letters of `<subject>_s`, with the ids they carry.
async fn dead_letters(js: &jetstream::Context, subject: &str) -> Vec<StoredMessage> {
    dlq_messages(js, &format!("{subject}_s")).await
}

fn dead_letter_ids(dead: &[StoredMessage]) -> Vec<String> {
    dead.iter()
        .map(|m| {
            m.header("Sinkhost-Message-Id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------- host side

/// `/healthz`: its status and its JSON body.
async fn healthz(host: &Host) -> (u16, serde_json::Value) {
    let (status, body) = host.http_get("/healthz").await;
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|err| panic!("/healthz is not JSON ({err}): {body}"));
    (status, json)
}

/// Polls `/healthz` (another process's state, so every 50 ms) until
/// `destinations.<subscription>.state` is `state`; returns that object.
async fn wait_destination(host: &Host, subscription: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = healthz(host).await;
        let destination = body["destinations"][subscription].clone();
        if destination["state"] == state {
            return destination;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never said destination {subscription} is {state} within {WAIT:?}; last: {body}\nlogs:\n{}",
            host.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn up_series(subscription: &str) -> String {
    format!("sinkhost_destination_up{{subscription=\"{subscription}\"}}")
}

fn transitions_series(subscription: &str, to: &str) -> String {
    format!("sinkhost_destination_transitions_total{{subscription=\"{subscription}\",to=\"{to}\"}}")
}

fn not_counted_series(subscription: &str) -> String {
    format!("sinkhost_attempts_not_counted_total{{subscription=\"{subscription}\"}}")
}

fn dead_letters_series(subscription: &str) -> String {
    format!("sinkhost_dead_letters_total{{subscription=\"{subscription}\"}}")
}

/// A counter that may not exist yet (a family's series appears on its first
/// increment): absent is 0.
async fn count(host: &Host, series: &str) -> f64 {
    metric(host, series).await.unwrap_or(0.0)
}

/// The JSON log lines whose message starts with `prefix`.
fn log_lines(host: &Host, prefix: &str) -> Vec<serde_json::Value> {
    host.json_logs()
        .into_iter()
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

const DOWN_LINE: &str = "destination down: holding deliveries (no attempts spent) and probing";
const UP_LINE: &str = "destination up again: resuming deliveries";

/// Asserts that the breaker of `subscription` never opened on `host`, in
/// every place an operator would look.
async fn assert_never_opened(host: &Host, subscription: &str) {
    assert_eq!(
        metric(host, &up_series(subscription)).await,
        Some(1.0),
        "sinkhost_destination_up"
    );
    assert_eq!(
        count(host, &transitions_series(subscription, "down")).await,
        0.0
    );
    assert_eq!(count(host, &not_counted_series(subscription)).await, 0.0);
    let (status, body) = healthz(host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["destinations"][subscription]["state"], "up", "{body}");
    let down = log_lines(host, "destination down");
    assert!(down.is_empty(), "the breaker opened: {down:?}");
}

// ---------------------------------------------------------------- an outage

/// An outage several times longer than the whole retry schedule (8 s against
/// 1.4 s), with 300 messages published as the destination goes down:
/// nothing is dead-lettered and every message is delivered once it is back.
/// Meanwhile the destination is not hammered: it gets at most
/// `max_concurrency + failures + 1` POSTs while the breaker opens (20 + 5 + 1:
/// what was in flight, the run that opens it, one more) plus one probe per
/// `probe_interval` of the outage and 2 for the edges (outage / 200 ms + 2),
/// i.e. 68 for 8 s, where retrying each message on its own would have made
/// 1,200 and dead-lettered all 300. During the outage `/healthz` stays 200 and
/// says the destination is down with its last error (an HTTP 503),
/// `sinkhost_destination_up` is 0; after it, 1, with one transition each way,
/// one "destination down" log line, and one `destination_down` and one
/// `destination_up` event on `sinkhost.events.<subscription>.>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retry_schedule_dead_letters_nothing() {
    const MESSAGES: usize = 300;
    const OUTAGE: Duration = Duration::from_secs(8);
    let sub = "out";
    let nats = NatsServer::start();
    let (receiver, answers, down) = switchable().await;
    let config = config("out", sub, &receiver.url("/h"), &settings(""));
    let (_client, mut events) = events(&nats, sub).await;
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    assert_eq!(
        wait_destination(&host, sub, "up").await,
        serde_json::json!({"state": "up"})
    );
    assert_eq!(metric(&host, &up_series(sub)).await, Some(1.0));

    let js = nats.jetstream().await;
    let expected = ids("out", 0..MESSAGES);
    down.store(true, Ordering::SeqCst);
    let outage_started = Instant::now();
    publish_all(&js, "out.order", &expected).await;

    // During the outage.
    let seen_down = wait_destination(&host, sub, "down").await;
    let posts_when_seen_down = answers.len();
    let (status, body) = healthz(&host).await;
    assert_eq!(
        status, 200,
        "/healthz while the destination is down: {body}"
    );
    let last_error = seen_down["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("HTTP 503") && last_error.contains(&receiver.addr().to_string()),
        "last_error does not name the 503 from the receiver: {seen_down}"
    );
    let since = seen_down["since"].as_str().unwrap_or_default();
    humantime::parse_rfc3339(since).unwrap_or_else(|err| panic!("since {since:?}: {err}"));
    assert_eq!(metric(&host, &up_series(sub)).await, Some(0.0));
    host.wait_for_log(DOWN_LINE, WAIT).await;

    tokio::time::sleep_until(outage_started + OUTAGE).await;
    // Still down, and still nothing given up, well past the retry schedule.
    let (status, body) = healthz(&host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["destinations"][sub]["state"], "down", "{body}");
    assert_eq!(count(&host, &dead_letters_series(sub)).await, 0.0);
    let outage = outage_started.elapsed();
    down.store(false, Ordering::SeqCst);
    let recovery_started = Instant::now();

    let answered = answers.wait_delivered(&expected, WAIT).await;
    let recovered_in = recovery_started.elapsed();
    let posts_during_outage = failed(&answered);
    let probes = answered[posts_when_seen_down..]
        .iter()
        .filter(|a| a.status != 200)
        .count();
    let bound = MAX_CONCURRENCY
        + FAILURES
        + 1
        + (outage.as_millis() / PROBE_INTERVAL.as_millis()) as usize
        + 2;
    let not_counted = count(&host, &not_counted_series(sub)).await;
    println!(
        "outage of {outage:?} (retry schedule {SCHEDULE:?}), {MESSAGES} messages: {posts_during_outage} POSTs during the outage (bound {bound}), \
         {posts_when_seen_down} before /healthz said down, {probes} probes after; {not_counted} attempts not counted; \
         all delivered {recovered_in:?} after the destination came back"
    );
    assert!(
        posts_during_outage <= bound,
        "{posts_during_outage} POSTs during a {outage:?} outage, more than {bound}"
    );
    assert_eq!(
        delivered_keys(&answered).len(),
        MESSAGES,
        "distinct ids delivered"
    );

    // After it.
    assert_eq!(
        wait_destination(&host, sub, "up").await,
        serde_json::json!({"state": "up"})
    );
    wait_metric(
        &host,
        &format!("sinkhost_deliveries_total{{subscription=\"{sub}\",outcome=\"delivered\"}}"),
        MESSAGES as f64,
        WAIT,
    )
    .await;
    assert_eq!(metric(&host, &up_series(sub)).await, Some(1.0));
    assert_eq!(
        metric(&host, &transitions_series(sub, "down")).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&host, &transitions_series(sub, "up")).await,
        Some(1.0)
    );
    assert_eq!(count(&host, &dead_letters_series(sub)).await, 0.0);
    let dead = dead_letters(&js, "out").await;
    assert!(
        dead.is_empty(),
        "dead-lettered: {:?}",
        dead_letter_ids(&dead)
    );

    host.wait_for_log(UP_LINE, WAIT).await;
    let down_lines = log_lines(&host, "destination down");
    assert_eq!(down_lines.len(), 1, "{down_lines:?}");
    let line = &down_lines[0];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["fields"]["message"], DOWN_LINE, "{line}");
    assert_eq!(line["fields"]["subscription"], sub, "{line}");
    let logged_error = line["fields"]["last_error"].as_str().unwrap_or_default();
    assert!(logged_error.contains("HTTP 503"), "{line}");
    let up_lines = log_lines(&host, "destination up");
    assert_eq!(up_lines.len(), 1, "{up_lines:?}");
    assert_eq!(up_lines[0]["level"], "INFO", "{}", up_lines[0]);

    let (subject, went_down) = next_event(&mut events).await;
    assert_eq!(
        subject,
        format!("sinkhost.events.{sub}.destination_down"),
        "{went_down}"
    );
    assert_event(&went_down, "destination_down", sub);
    assert!(
        went_down["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("HTTP 503"),
        "{went_down}"
    );
    if !went_down["backlog"].is_null() {
        let backlog = went_down["backlog"]["pending"].as_u64().unwrap_or(0)
            + went_down["backlog"]["ack_pending"].as_u64().unwrap_or(0);
        assert!(
            backlog >= 1,
            "held messages are not in the backlog: {went_down}"
        );
    }
    let (subject, came_up) = next_event(&mut events).await;
    assert_eq!(
        subject,
        format!("sinkhost.events.{sub}.destination_up"),
        "{came_up}"
    );
    assert_event(&came_up, "destination_up", sub);
    println!("events: {went_down}, then {came_up}");
}

// ---------------------------------------------------------------- not an outage

/// One message that fails on its own (the destination answers 503 for its id
/// and 200 for every other) among 100 successes: it is dead-lettered after
/// exactly `retries + 1` = 4 POSTs, with "gave up after 4 attempts" as its
/// reason, every other message is delivered, and the breaker never opens
/// (the successes between its attempts reset the run of failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_on_its_own_is_dead_lettered_and_the_breaker_stays_closed() {
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 25;
    let sub = "lone";
    let nats = NatsServer::start();
    let (receiver, answers) = destination(|key| if key == "poison" { 503 } else { 200 }).await;
    let config = config("lone", sub, &receiver.url("/h"), &settings(""));
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;

    // After each of the poison message's attempts, 25 others: successes
    // between every two of its failures.
    publish_all(&js, "lone.x", &["poison".to_owned()]).await;
    let mut expected = Vec::new();
    for round in 1..=ROUNDS {
        let poisoned = |log: &[Answer]| log.iter().filter(|a| a.key == "poison").count();
        answers
            .wait_until(
                &format!("attempt {round} of the poison message"),
                |log| poisoned(log) >= round,
                WAIT,
            )
            .await;
        let batch = ids(&format!("lone{round}"), 0..PER_ROUND);
        publish_all(&js, "lone.x", &batch).await;
        expected.extend(batch);
        answers.wait_delivered(&expected, WAIT).await;
    }

    wait_metric(&host, &dead_letters_series(sub), 1.0, WAIT).await;
    let dead = dead_letters(&js, "lone").await;
    assert_eq!(dead_letter_ids(&dead), ["poison"], "{dead:?}");
    let attempts = dead[0].header("Sinkhost-Attempts").unwrap_or_default();
    let reason = dead[0].header("Sinkhost-Last-Error").unwrap_or_default();
    let answered = answers.all();
    let poison_posts = answered.iter().filter(|a| a.key == "poison").count();
    println!(
        "lone failing message: {poison_posts} POSTs, Sinkhost-Attempts {attempts}, reason: {reason}"
    );
    assert_eq!(poison_posts, RETRIES + 1, "POSTs of the failing message");
    assert_eq!(attempts, "4");
    assert!(
        reason.contains("gave up after 4 attempts") && reason.contains("HTTP 503"),
        "{reason}"
    );
    let delivered = delivered_keys(&answered);
    assert_eq!(
        delivered.len(),
        ROUNDS * PER_ROUND,
        "distinct ids delivered"
    );
    assert!(!delivered.contains("poison"));
    assert_never_opened(&host, sub).await;
}

/// A destination failing about 10% of requests at random (a seeded PRNG;
/// so that no unlucky run of 5 in a row can happen, a request is never failed
/// when either of the two requests before it failed): the breaker stays
/// closed through 300 messages, every message is delivered, except one that
/// itself failed all 4 of its attempts, which is dead-lettered (and only such).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_failing_now_and_then_keeps_the_breaker_closed() {
    const MESSAGES: usize = 300;
    let sub = "flaky";
    let nats = NatsServer::start();
    let coin = Mutex::new(Coin::new(0x5eed_f1a4));
    let (receiver, answers) = destination(move |_| {
        if coin.lock().unwrap_or_else(PoisonError::into_inner).fails() {
            503
        } else {
            200
        }
    })
    .await;
    let config = config("flaky", sub, &receiver.url("/h"), &settings(""));
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let expected = ids("flaky", 0..MESSAGES);
    publish_all(&js, "flaky.x", &expected).await;

    // Settled: delivered, or failed every one of its attempts.
    let answered = answers
        .wait_until(
            "every message delivered or failed 4 times",
            |log| {
                let per_key = tally(log);
                expected.iter().all(|id| {
                    per_key
                        .get(id.as_str())
                        .is_some_and(|&(ok, failures)| ok > 0 || failures > RETRIES)
                })
            },
            WAIT,
        )
        .await;
    let per_key = tally(&answered);
    let given_up: Vec<&str> = per_key
        .iter()
        .filter(|(_, (ok, _))| *ok == 0)
        .map(|(key, _)| *key)
        .collect();
    if !given_up.is_empty() {
        wait_metric(
            &host,
            &dead_letters_series(sub),
            given_up.len() as f64,
            WAIT,
        )
        .await;
    }
    let mut dead = dead_letter_ids(&dead_letters(&js, "flaky").await);
    dead.sort();
    let failures = failed(&answered);
    println!(
        "flaky destination: {} requests, {failures} answered 503, {} message(s) failed all their attempts",
        answered.len(),
        given_up.len()
    );
    assert!(
        failures >= 10,
        "only {failures} failures: the test needs them"
    );
    assert_eq!(
        dead, given_up,
        "dead letters: only messages that failed every attempt"
    );
    assert_eq!(
        delivered_keys(&answered).len() + given_up.len(),
        MESSAGES,
        "every message delivered or dead-lettered"
    );
    assert_never_opened(&host, sub).await;
}

/// Per message id: (answers 200, answers not 200).
fn tally(answers: &[Answer]) -> BTreeMap<&str, (usize, usize)> {
    let mut per_key: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for answer in answers {
        let entry = per_key.entry(answer.key.as_str()).or_default();
        if answer.status == 200 {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    per_key
}

/// A seeded coin that comes up "fail" about one time in ten (xorshift64*), but
/// never right after a failure or the request after one.
struct Coin {
    state: u64,
    recent: [bool; 2],
}

impl Coin {
    fn new(seed: u64) -> Self {
        Coin {
            state: seed,
            recent: [false; 2],
        }
    }

    fn fails(&mut self) -> bool {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let random = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        let fail = random.is_multiple_of(10) && !self.recent.contains(&true);
        self.recent = [self.recent[1], fail];
        fail
    }
}

// ---------------------------------------------------------------- dead_letter_after

/// `dead_letter_after: 3s` against a destination that is always 503: the
/// message is held once its own attempts are over (the breaker opens on its
/// last one) and is dead-lettered when it is 3 s old, with a reason that
/// names `dead_letter_after`, not "gave up after 4 attempts", and with the
/// three attempts it spent (the probes spent none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_past_dead_letter_after_is_dead_lettered() {
    let sub = "aged";
    let nats = NatsServer::start();
    let (receiver, answers) = destination(|_| 503).await;
    let config = config(
        "aged",
        sub,
        &receiver.url("/h"),
        &format!(
            "retries: {RETRIES}\nbackoff: \"200ms\"\nbreaker: {{probe_interval: 200ms, max_probe_interval: 500ms}}\ndead_letter_after: \"3s\""
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish_all(&js, "aged.x", &["held".to_owned()]).await;

    wait_metric(&host, &dead_letters_series(sub), 1.0, WAIT).await;
    let dead = dead_letters(&js, "aged").await;
    assert_eq!(dead_letter_ids(&dead), ["held"], "{dead:?}");
    let reason = dead[0].header("Sinkhost-Last-Error").unwrap_or_default();
    let attempts = dead[0].header("Sinkhost-Attempts").unwrap_or_default();
    println!(
        "dead_letter_after 3s, destination always 503: {} POSTs, Sinkhost-Attempts {attempts}, reason: {reason}",
        answers.len()
    );
    assert!(
        reason.contains("not delivered within dead_letter_after"),
        "the reason does not name dead_letter_after: {reason}"
    );
    assert!(!reason.contains("gave up after"), "{reason}");
    assert!(
        reason.contains("dead_letter_after (3s)")
            && reason.contains("the destination is down since"),
        "{reason}"
    );
    assert_eq!(
        attempts, "3",
        "attempts 1-3 spent; the 4th opened the breaker and the probes cost nothing"
    );
    assert_eq!(
        metric(&host, &transitions_series(sub, "down")).await,
        Some(1.0)
    );
    let (status, body) = healthz(&host).await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------- two hosts

/// Two hosts on one durable consumer through a 10 s outage, with a constant
/// probe schedule (`probe_interval` = `max_probe_interval` = 500 ms): once
/// both hosts' `/healthz` say the destination is down, the destination gets
/// at most 1.5x the probes one host's schedule allows (window / 500 ms + 1),
/// not the 2x of two hosts probing on their own: they share the schedule
/// through the `sinkhost_destinations` bucket. Then it comes back and
/// everything is delivered, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_probe_schedule() {
    const MESSAGES: usize = 200;
    const OUTAGE: Duration = Duration::from_secs(10);
    const INTERVAL: Duration = Duration::from_millis(500);
    let sub = "pair";
    let nats = NatsServer::start();
    let (receiver, answers, down) = switchable().await;
    let config = config(
        "pair",
        sub,
        &receiver.url("/h"),
        &format!(
            "retries: {RETRIES}\nbackoff: \"200ms\"\nmax_concurrency: {MAX_CONCURRENCY}\nbreaker: {{probe_interval: 500ms, max_probe_interval: 500ms}}"
        ),
    );
    let a = Host::start(config.path(), &nats.url(), &[]).await;
    let b = Host::start(config.path(), &nats.url(), &[]).await;
    a.wait_healthy(WAIT).await;
    b.wait_healthy(WAIT).await;

    let js = nats.jetstream().await;
    let expected = ids("pair", 0..MESSAGES);
    down.store(true, Ordering::SeqCst);
    let outage_started = Instant::now();
    publish_all(&js, "pair.x", &expected).await;
    wait_destination(&a, sub, "down").await;
    wait_destination(&b, sub, "down").await;
    let steady_from = answers.len();
    let steady_started = Instant::now();
    tokio::time::sleep_until(outage_started + OUTAGE).await;
    let window = steady_started.elapsed();
    down.store(false, Ordering::SeqCst);

    let answered = answers.wait_delivered(&expected, WAIT).await;
    let probes = answered[steady_from..]
        .iter()
        .filter(|a| a.status != 200)
        .count();
    let one_host = (window.as_millis() / INTERVAL.as_millis()) as usize + 1;
    let rate = probes as f64 / window.as_secs_f64();
    println!(
        "two hosts, one consumer: {probes} probes in {window:?} of steady outage ({rate:.2}/s; one host's schedule allows {one_host}, {:.2}/s), {} POSTs during the whole outage",
        1.0 / INTERVAL.as_secs_f64(),
        failed(&answered)
    );
    assert!(
        probes as f64 <= 1.5 * one_host as f64,
        "{probes} probes where one host's schedule allows {one_host}: the hosts do not share it"
    );
    assert_eq!(delivered_keys(&answered).len(), MESSAGES);
    wait_destination(&a, sub, "up").await;
    wait_destination(&b, sub, "up").await;
    assert_eq!(count(&a, &dead_letters_series(sub)).await, 0.0);
    assert_eq!(count(&b, &dead_letters_series(sub)).await, 0.0);
    let dead = dead_letters(&js, "pair").await;
    assert!(
        dead.is_empty(),
        "dead-lettered: {:?}",
        dead_letter_ids(&dead)
    );
}

// ---------------------------------------------------------------- restarts in an outage

/// SIGTERM and kill -9 during an outage lose nothing: host A holds messages
/// while the destination is down and is stopped with SIGTERM (exit 0); host B
/// takes them over, goes down too and is killed with SIGKILL; host C takes
/// over, and when the destination comes back every message is delivered and
/// none is dead-lettered: attempts returned unstarted or failed against a
/// destination known down were never spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_kill_9_during_an_outage_lose_nothing() {
    const MESSAGES: usize = 100;
    let sub = "relay";
    let nats = NatsServer::start();
    let (receiver, answers, down) = switchable().await;
    // A short ack_wait, so the killed host's messages come back soon.
    let config = config(
        "relay",
        sub,
        &receiver.url("/h"),
        &settings("timeout: \"1s\"\nack_wait: \"3s\""),
    );
    let js = nats.jetstream().await;
    let expected = ids("relay", 0..MESSAGES);

    let a = Host::start(config.path(), &nats.url(), &[]).await;
    a.wait_healthy(WAIT).await;
    down.store(true, Ordering::SeqCst);
    publish_all(&js, "relay.x", &expected).await;
    wait_destination(&a, sub, "down").await;
    a.sigterm();
    let status = a.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");
    let after_a = answers.len();

    let b = Host::start(config.path(), &nats.url(), &[]).await;
    wait_destination(&b, sub, "down").await;
    b.kill9();
    let status = b.wait_exit(WAIT).await;
    assert_eq!(status.code(), None, "SIGKILL leaves no exit code: {status}");
    let after_b = answers.len();

    let c = Host::start(config.path(), &nats.url(), &[]).await;
    wait_destination(&c, sub, "down").await;
    let after_c = answers.len();
    down.store(false, Ordering::SeqCst);

    let answered = answers.wait_delivered(&expected, WAIT).await;
    println!(
        "SIGTERM and kill -9 in an outage: POSTs during it: {after_a} with host A, {} with B, {} with C before it ended; {} in all",
        after_b - after_a,
        after_c - after_b,
        answered.len()
    );
    assert_eq!(delivered_keys(&answered).len(), MESSAGES);
    wait_destination(&c, sub, "up").await;
    assert_eq!(count(&c, &dead_letters_series(sub)).await, 0.0);
    let dead = dead_letters(&js, "relay").await;
    assert!(
        dead.is_empty(),
        "dead-lettered: {:?}",
        dead_letter_ids(&dead)
    );
}

// ---------------------------------------------------------------- ordering

/// `ordering: per-subject` keeps order through an outage: 3 subjects x 15
/// messages, the destination goes down after the 15th success and stays down
/// 3 s after the breaker opened (twice the retry schedule). Per subject, the
/// requests answered 200 carry the messages in publish order, each once, with
/// none missing (none dead-lettered while the destination was down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subject_order_survives_an_outage() {
    const SUBJECTS: usize = 3;
    const PER_SUBJECT: usize = 15;
    const BEFORE_OUTAGE: usize = 15;
    let sub = "inorder";
    let nats = NatsServer::start();
    // (successes so far, down): down from the request after the 15th success
    // until the test ends the outage.
    let phase = Arc::new(Mutex::new((0_usize, false)));
    let ended = Arc::new(AtomicBool::new(false));
    let (receiver, answers) = {
        let phase = Arc::clone(&phase);
        let ended = Arc::clone(&ended);
        destination(move |_| {
            let mut phase = phase.lock().unwrap_or_else(PoisonError::into_inner);
            if phase.1 && !ended.load(Ordering::SeqCst) {
                return 503;
            }
            phase.0 += 1;
            if phase.0 == BEFORE_OUTAGE {
                phase.1 = true;
            }
            200
        })
        .await
    };
    let config = config(
        "ord",
        sub,
        &receiver.url("/h"),
        &settings("ordering: per-subject"),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let mut expected = Vec::new();
    for n in 0..PER_SUBJECT {
        for s in 0..SUBJECTS {
            let subject = format!("ord.{s}");
            let id = format!("{subject}#{n}");
            publish_all(&js, &subject, std::slice::from_ref(&id)).await;
            expected.push(id);
        }
    }

    wait_destination(&host, sub, "down").await;
    tokio::time::sleep(2 * SCHEDULE + Duration::from_millis(200)).await;
    ended.store(true, Ordering::SeqCst);

    let answered = answers.wait_delivered(&expected, WAIT).await;
    let mut order: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for answer in answered.iter().filter(|a| a.status == 200) {
        let (subject, n) = answer.key.rsplit_once('#').expect("a <subject>#<n> id");
        order
            .entry(subject)
            .or_default()
            .push(n.parse().expect("a message number"));
    }
    println!(
        "per-subject through an outage: {} POSTs answered 503, {} answered 200",
        failed(&answered),
        answered.len() - failed(&answered)
    );
    let in_publish_order: Vec<usize> = (0..PER_SUBJECT).collect();
    assert_eq!(order.len(), SUBJECTS, "{order:?}");
    for (subject, numbers) in &order {
        assert_eq!(
            numbers, &in_publish_order,
            "successful deliveries of {subject}"
        );
    }
    assert_eq!(
        metric(&host, &transitions_series(sub, "down")).await,
        Some(1.0)
    );
    assert_eq!(count(&host, &dead_letters_series(sub)).await, 0.0);
    let dead = dead_letters(&js, "ord").await;
    assert!(
        dead.is_empty(),
        "dead-lettered: {:?}",
        dead_letter_ids(&dead)
    );
}
