//! `sinkhost replay`: messages still stored in the stream go through one
//! subscription's plugin again — only that subscription's receiver sees them,
//! only the requested range, and what still fails lands in the dead-letter
//! stream with a `replay: ` reason.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{stream_yaml, sub_yaml};
use support::{
    CliOutput, ConfigDir, Host, NatsServer, Receiver, Recorded, Reply, publish, sinkhost_cli,
    unique,
};

const WAIT: Duration = Duration::from_secs(30);

/// A stream over `a.>`, `b.>` and `c.>` with one subscription per prefix,
/// each delivering to its own receiver; `c` retries once after 100 ms.
struct Setup {
    nats: NatsServer,
    a: Receiver,
    b: Receiver,
    c: Receiver,
    config: ConfigDir,
    _host: Host,
    prefix: String,
}

impl Setup {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let (a, b, c) = (
            Receiver::ok().await,
            Receiver::ok().await,
            Receiver::ok().await,
        );
        let prefix = unique("rp");
        let subject = |p: &str| format!("{prefix}{p}.>");
        let config = ConfigDir::new().file(
            "10.yml",
            format!(
                "{}subscriptions:\n{}{}{}",
                stream_yaml(
                    &format!("{prefix}_s"),
                    &[&subject("a"), &subject("b"), &subject("c")]
                ),
                sub_yaml("sub-a", &subject("a"), &a.url("/hook"), ""),
                sub_yaml("sub-b", &subject("b"), &b.url("/hook"), ""),
                sub_yaml(
                    "sub-c",
                    &subject("c"),
                    &c.url("/hook"),
                    "retries: 1\nbackoff: \"100ms\""
                ),
            ),
        );
        let host = Host::start(config.path(), &nats.url(), &[]).await;
        host.wait_healthy(WAIT).await;
        Self {
            nats,
            a,
            b,
            c,
            config,
            _host: host,
            prefix,
        }
    }

    /// Publishes `{"n": n}` to `<prefix><letter>.<n>` with message id
    /// `<letter><n>` and returns its stream sequence.
    async fn publish(&self, letter: &str, n: u32) -> u64 {
        let js = self.nats.jetstream().await;
        publish(
            &js,
            &format!("{}{letter}.{n}", self.prefix),
            format!("{{\"n\": {n}}}"),
            &[("Nats-Msg-Id", &format!("{letter}{n}"))],
        )
        .await
        .sequence
    }

    /// `sinkhost replay --config-dir <dir> <args>`.
    async fn replay(&self, args: &[&str]) -> CliOutput {
        let dir = self.config.path().to_str().expect("a UTF-8 path");
        let mut all = vec!["replay", "--config-dir", dir];
        all.extend_from_slice(args);
        sinkhost_cli(&all, &self.nats.url(), &[], WAIT).await
    }
}

/// `(message id, "n" of the body)` of each request after the first `skip`.
fn keys_and_bodies(requests: &[Recorded], skip: usize) -> Vec<(String, i64)> {
    requests
        .iter()
        .skip(skip)
        .map(|r| {
            (
                r.idempotency_key().unwrap_or_default().to_owned(),
                r.json()["data"]["n"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_range_reaches_only_that_subscription_and_only_that_range() {
    let s = Setup::start().await;
    // Interleaved subjects: a1 b1 a2 b2 a3 b3 a4.
    let mut seq = std::collections::BTreeMap::new();
    for n in 1..=3 {
        seq.insert(format!("a{n}"), s.publish("a", n).await);
        seq.insert(format!("b{n}"), s.publish("b", n).await);
    }
    seq.insert("a4".to_owned(), s.publish("a", 4).await);
    s.a.wait_for(4, WAIT).await;
    s.b.wait_for(3, WAIT).await;

    // From a2 to b3: a2 and a3 are sub-a's messages in that range.
    let (from, to) = (seq["a2"].to_string(), seq["b3"].to_string());
    let out = s
        .replay(&[
            "--subscription",
            "sub-a",
            "--from-seq",
            &from,
            "--to-seq",
            &to,
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = s.a.wait_for(6, WAIT).await;
    assert_eq!(
        keys_and_bodies(&got, 4),
        [("a2".to_owned(), 2), ("a3".to_owned(), 3)]
    );
    let replayed = got[4].json();
    assert_eq!(replayed["subject"], format!("{}a.2", s.prefix));
    assert_eq!(replayed["message_id"], "a2");
    for id in ["a2", "a3"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {id} ")))
            .unwrap_or_else(|| panic!("no progress line for {id}:\n{}", out.stdout));
        assert!(
            line.trim_start().starts_with(&seq[id].to_string()),
            "{line}"
        );
        assert!(line.ends_with("delivered"), "{line}");
    }
    assert!(
        out.stdout.contains(&format!(
            "replayed 2, delivered 2, dead-lettered 0 (up to stream sequence {to})"
        )),
        "{}",
        out.stdout
    );
    // Nothing was republished and the durable consumers are untouched: sub-b
    // saw nothing more, and a new message reaches sub-a exactly once.
    s.b.assert_count_stays(3, Duration::from_millis(500)).await;
    s.publish("a", 5).await;
    let got = s.a.wait_for(7, WAIT).await;
    assert_eq!(keys_and_bodies(&got, 6), [("a5".to_owned(), 5)]);
    s.a.assert_count_stays(7, Duration::from_millis(500)).await;
    assert_eq!(s.c.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_replays_what_was_stored_in_that_window() {
    let s = Setup::start().await;
    s.publish("a", 1).await;
    s.publish("b", 1).await;
    s.a.wait_for(1, WAIT).await;
    // A gap the window can fall into; the window is measured from the newer messages.
    const GAP: Duration = Duration::from_secs(4);
    tokio::time::sleep(GAP).await;
    let newer = Instant::now();
    s.publish("a", 2).await;
    s.publish("a", 3).await;
    s.publish("b", 2).await;
    s.a.wait_for(3, WAIT).await;
    s.b.wait_for(2, WAIT).await;

    // Half the gap further back than the newer messages: a2 and a3, not a1.
    let since = format!("{}ms", (newer.elapsed() + GAP / 2).as_millis());
    let out = s
        .replay(&["--subscription", "sub-a", "--since", &since])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = s.a.wait_for(5, WAIT).await;
    assert_eq!(
        keys_and_bodies(&got, 3),
        [("a2".to_owned(), 2), ("a3".to_owned(), 3)]
    );
    assert!(
        out.stdout
            .contains("replayed 2, delivered 2, dead-lettered 0"),
        "{}",
        out.stdout
    );

    // A window wider than everything replays all of sub-a, still nothing of sub-b.
    let out = s
        .replay(&["--subscription", "sub-a", "--since", "1h"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = s.a.wait_for(8, WAIT).await;
    assert_eq!(
        keys_and_bodies(&got, 5),
        [
            ("a1".to_owned(), 1),
            ("a2".to_owned(), 2),
            ("a3".to_owned(), 3)
        ]
    );
    s.a.assert_count_stays(8, Duration::from_millis(500)).await;
    assert_eq!(s.b.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_still_fails_is_dead_lettered_with_the_replay_reason() {
    let s = Setup::start().await;
    // The first two requests are the original deliveries; then, in the
    // replay, c1 fails both its attempts and c2 heals on its second.
    s.c.set_behaviour(|r, _| match r.seq {
        2 | 3 => Reply::status(500),
        4 => Reply::status(503),
        _ => Reply::ok(),
    });
    let c1 = s.publish("c", 1).await;
    let c2 = s.publish("c", 2).await;
    s.c.wait_for(2, WAIT).await;

    let out = s
        .replay(&["--subscription", "sub-c", "--from-seq", &c1.to_string()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // retries: 1 -> two attempts each, in-process.
    let got = s.c.wait_for(6, WAIT).await;
    let keys: Vec<_> = keys_and_bodies(&got, 2)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["c1", "c1", "c2", "c2"]);
    let reason = format!(
        "replay: gave up after 2 attempts; last: plugin asked to retry after HTTP 500 from http://{}/...",
        s.c.addr()
    );
    assert!(
        out.stdout
            .contains(&format!("dead-lettered to dlq.sub-c: {reason}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("delivered on attempt 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "replayed 2, delivered 1, dead-lettered 1 (up to stream sequence {c2})"
        )),
        "{}",
        out.stdout
    );

    // The dead letter is what `dlq list` shows for a normal final failure.
    let dir = s.config.path().to_str().expect("a UTF-8 path");
    let list = sinkhost_cli(
        &["dlq", "list", "--config-dir", dir, "--json"],
        &s.nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert!(list.status.success(), "{list:?}");
    let letters: Vec<serde_json::Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(letters.len(), 1, "{}", list.stdout);
    assert_eq!(letters[0]["subscription"], "sub-c");
    assert_eq!(letters[0]["message_id"], "c1");
    assert_eq!(letters[0]["subject"], format!("{}c.1", s.prefix));
    assert_eq!(letters[0]["stream_sequence"], c1);
    assert_eq!(letters[0]["attempts"], 2);
    assert_eq!(letters[0]["last_error"], reason);
    assert_eq!(s.a.count() + s.b.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_with_a_clear_error() {
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("rp_bad", &["rpbad.>"]),
            sub_yaml("only", "rpbad.>", "http://127.0.0.1:9/hook", ""),
        ),
    );
    let dir = config.path().to_str().expect("a UTF-8 path");
    // Nothing listens here: every error below comes before connecting.
    let nats = "nats://127.0.0.1:9";
    let run = |args: &'static [&'static str]| {
        let mut all = vec!["replay", "--config-dir", dir];
        all.extend_from_slice(args);
        async move { sinkhost_cli(&all, nats, &[], WAIT).await }
    };
    let out = run(&["--subscription", "nope", "--from-seq", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("config.d has no subscription \"nope\" (it has only)"),
        "{}",
        out.stderr
    );
    let out = run(&["--subscription", "only"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--since") && out.stderr.contains("--from-seq"),
        "{}",
        out.stderr
    );
    let out = run(&["--subscription", "only", "--since", "1h", "--from-seq", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = run(&["--subscription", "only", "--since", "2x"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("invalid value '2x' for '--since <SINCE>'"),
        "{}",
        out.stderr
    );
    let out = run(&["--subscription", "only", "--from-seq", "9", "--to-seq", "3"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("--to-seq 3 is before --from-seq 9"),
        "{}",
        out.stderr
    );
}
