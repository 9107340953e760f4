//! Bad input through the default `http-webhook` plugin: empty, binary, non-JSON
//! and near-limit payloads, odd header values and subjects at the wildcard edges,
//! and on the wire (raw `HPUB`) subjects and header blocks no client library
//! would produce. Each message is delivered as the envelope documents, or
//! dead-lettered with a reason; none of them disturbs the host or delays another.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Recorded, Reply, dlq_messages, publish, sinkhost_cli,
};

const WAIT: Duration = Duration::from_secs(30);

/// Just under NATS's default `max_payload` of 1 MiB, leaving room for headers
/// (here and in the dead letter).
const BIG: usize = 1_000_000;

/// The request whose `Idempotency-Key` is `id`.
fn by_key(requests: &[Recorded], id: &str) -> serde_json::Value {
    requests
        .iter()
        .find(|r| r.idempotency_key() == Some(id))
        .unwrap_or_else(|| panic!("no request for {id}"))
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_payloads_headers_and_subjects_are_delivered_or_dead_lettered() {
    let nats = NatsServer::start();
    // Like many web servers, this destination refuses bodies over 512 KiB.
    let all = Receiver::start(|r, _| {
        if r.body.len() > 512 << 10 {
            Reply::status(413)
        } else {
            Reply::ok()
        }
    })
    .await;
    let star = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("bad_s", &["a", "a.>", "solo"]),
            sub_yaml(
                "all",
                ">",
                &all.url("/all"),
                "settings: {reject_status: [413]}"
            ),
            sub_yaml("star", "a.*", &star.url("/star"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;

    let long_value = "v".repeat(32 << 10);
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(BIG - 11));
    assert_eq!(big.len(), BIG);
    publish(&js, "a.b", "", &[("Nats-Msg-Id", "empty")]).await;
    publish(
        &js,
        "a.b",
        &[0xff_u8, 0xfe, 0x00, 0x80][..],
        &[("Nats-Msg-Id", "binary")],
    )
    .await;
    publish(
        &js,
        "a.b.c",
        "héllo, not JSON ✓",
        &[("Nats-Msg-Id", "text")],
    )
    .await;
    publish(
        &js,
        "a",
        "{\"ok\": true}",
        &[
            ("Nats-Msg-Id", "headers"),
            ("X-Unicode", "héllo ✓ ünïcödé 日本"),
            ("X-Long", &long_value),
            ("X-Odd", "tab\there; semi=colon, \"quotes\" \u{7f}"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
        ],
    )
    .await;
    publish(&js, "solo", big.clone(), &[("Nats-Msg-Id", "big")]).await;

    // `>` sees all five, `a.*` only the two on a.b.
    let got = all.wait_for(5, WAIT).await;
    let empty = by_key(&got, "empty");
    assert_eq!(
        empty["data"], "",
        "an empty payload is the empty string: {empty}"
    );
    assert_eq!(empty["subject"], "a.b");
    let binary = by_key(&got, "binary");
    assert_eq!(binary["data_base64"], "//4AgA==", "{binary}");
    assert!(binary.get("data").is_none(), "{binary}");
    let text = by_key(&got, "text");
    assert_eq!(text["data"], "héllo, not JSON ✓");
    assert_eq!(text["subject"], "a.b.c");
    let headers = by_key(&got, "headers");
    assert_eq!(headers["data"], serde_json::json!({"ok": true}));
    assert_eq!(headers["subject"], "a");
    let big_request = by_key(&got, "big");
    assert_eq!(big_request["subject"], "solo");
    assert_eq!(
        big_request["data"]["blob"].as_str().map(str::len),
        Some(BIG - 11)
    );

    let star_got = star.wait_for(2, WAIT).await;
    let mut star_keys: Vec<&str> = star_got
        .iter()
        .filter_map(Recorded::idempotency_key)
        .collect();
    star_keys.sort_unstable();
    assert_eq!(star_keys, ["binary", "empty"]);

    // The destination refused the big one: dead-lettered, whole, with the reason.
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"all\"}",
        1.0,
        WAIT,
    )
    .await;
    let letters = dlq_messages(&js, "bad_s").await;
    assert_eq!(letters.len(), 1, "only the big one is dead-lettered");
    assert_eq!(letters[0].header("Sinkhost-Message-Id"), Some("big"));
    let reason = letters[0].header("Sinkhost-Last-Error").unwrap_or_default();
    assert!(
        reason.starts_with("rejected: ") && reason.contains("413"),
        "{reason}"
    );
    assert_eq!(letters[0].payload.len(), BIG);

    // Nothing crashed: still healthy, and the next message flows to both.
    star.assert_count_stays(2, Duration::from_millis(300)).await;
    let (status, _) = host.http_get("/healthz").await;
    assert_eq!(status, 200);
    publish(&js, "a.z", "{}", &[("Nats-Msg-Id", "after")]).await;
    all.wait_for(6, WAIT).await;
    star.wait_for(3, WAIT).await;
    assert_eq!(all.count(), 6, "no message was delivered twice");
}

/// Bytes no client library would produce, sent on the wire with a raw `HPUB`
/// as any publisher may: a lone CR in a header value (it used to panic the NATS
/// client), header or subject bytes that are not UTF-8, a header line without a
/// colon, a header name with a space.
struct Malformed {
    subject: &'static [u8],
    headers: &'static [u8],
    /// What the dead letter's reason must say.
    reason: &'static str,
}

const MALFORMED: [Malformed; 5] = [
    Malformed {
        subject: b"raw.cr",
        headers: b"NATS/1.0\r\nX-Note: a\rb\r\n\r\n",
        reason: "header X-Note: value contains a carriage return",
    },
    Malformed {
        subject: b"raw.latin1",
        headers: b"NATS/1.0\r\nX-Name: M\xfcller\r\n\r\n",
        reason: "header block is not UTF-8 (byte 0xfc at offset 19)",
    },
    Malformed {
        subject: b"raw.p\xffison",
        headers: b"NATS/1.0\r\nX-A: 1\r\n\r\n",
        reason: "subject is not UTF-8",
    },
    Malformed {
        subject: b"raw.nocolon",
        headers: b"NATS/1.0\r\nno colon here\r\n\r\n",
        reason: "header line \"no colon here\" has no colon",
    },
    Malformed {
        subject: b"raw.spacename",
        headers: b"NATS/1.0\r\nX Name: v\r\n\r\n",
        reason: "header name \"X Name\" is not a valid name",
    },
];

/// Header blocks that are odd but readable: delivered as usual.
fn readable() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // An empty block (header length 0) carries nothing to lose.
        ("empty", b"".to_vec()),
        // Just under JetStream's 64 KiB limit on a message's header block.
        (
            "long",
            format!(
                "NATS/1.0\r\nNats-Msg-Id: long\r\nX-Long: {}\r\n\r\n",
                "v".repeat((64 << 10) - 64)
            )
            .into_bytes(),
        ),
        (
            "control",
            b"NATS/1.0\r\nNats-Msg-Id: control\r\nX-Ctl: a\x01\x1b\x7fb\r\n\r\n".to_vec(),
        ),
        (
            "bare-lf",
            b"NATS/1.0\r\nNats-Msg-Id: bare-lf\nX-B: 2\r\n\r\n".to_vec(),
        ),
    ]
}

/// The payload every raw message carries: not UTF-8, with a NUL and CR LF.
const PAYLOAD: &[u8] = b"{\"raw\": 1}\x00\xff\r\nend";

/// Malformed messages cost nothing to the others: the next message of the
/// same subscription (whose `ack_wait` is 120 s, longer than any wait here)
/// and of another one arrive, the malformed ones are dead-lettered byte for
/// byte with a reason naming what is wrong and settled (nothing left for
/// redelivery), and the readable odd ones are delivered. `dlq list` shows the
/// dead letters; `dlq replay` keeps them and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_nothing_else_waits() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    let nats = NatsServer::start();
    let raw = Receiver::ok().await;
    let other = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("raw_s", &["raw.>", "other.>"]),
            sub_yaml("raw", "raw.>", &raw.url("/raw"), ""),
            sub_yaml("other", "other.>", &other.url("/other"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    let readable = readable();
    let mut frames: Vec<(&[u8], &[u8], &[u8])> = MALFORMED
        .iter()
        .map(|m| (m.subject, m.headers, PAYLOAD))
        .collect();
    frames.extend(
        readable
            .iter()
            .map(|(_, block)| (&b"raw.readable"[..], block.as_slice(), PAYLOAD)),
    );
    nats.publish_raw(&frames).await;
    let js = nats.jetstream().await;
    publish(&js, "raw.after", "{}", &[("Nats-Msg-Id", "raw-after")]).await;
    publish(&js, "other.after", "{}", &[("Nats-Msg-Id", "other-after")]).await;

    // The readable ones and the next message of the same subscription, none
    // after a whole ack_wait.
    let got = raw.wait_for(readable.len() + 1, WAIT).await;
    let mut keys: Vec<String> = got
        .iter()
        .map(|r| r.idempotency_key().unwrap_or_default().to_owned())
        .collect();
    keys.sort();
    let empty_id = format!("nats-msg-{}", MALFORMED.len() + 1);
    let mut expected = vec!["bare-lf", "control", "long", "raw-after", empty_id.as_str()];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let barelf = got
        .iter()
        .find(|r| r.idempotency_key() == Some("bare-lf"))
        .expect("bare-lf");
    assert_eq!(barelf.json()["data_base64"], BASE64.encode(PAYLOAD));
    other
        .wait_until(
            |reqs| {
                reqs.iter()
                    .any(|r| r.idempotency_key() == Some("other-after"))
            },
            WAIT,
        )
        .await;

    // Each malformed one is dead-lettered as it arrived.
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"raw\"}",
        MALFORMED.len() as f64,
        WAIT,
    )
    .await;
    let letters = dlq_messages(&js, "raw_s").await;
    assert_eq!(letters.len(), MALFORMED.len(), "only the malformed ones");
    let decoded = |letter: &support::StoredMessage, name| {
        BASE64
            .decode(letter.header(name).unwrap_or_default())
            .expect("base64")
    };
    for sent in &MALFORMED {
        // Dead-lettered concurrently, so in any order.
        let letter = letters
            .iter()
            .find(|l| decoded(l, "Sinkhost-Raw-Subject") == sent.subject)
            .unwrap_or_else(|| panic!("no dead letter for {:?}", sent.subject));
        assert_eq!(&letter.payload[..], PAYLOAD, "payload byte for byte");
        assert_eq!(decoded(letter, "Sinkhost-Raw-Headers"), sent.headers);
        assert_eq!(
            letter.header("Sinkhost-Last-Error"),
            Some(format!("malformed message: {}", sent.reason).as_str())
        );
        assert_eq!(
            letter.header("Sinkhost-Original-Subject"),
            Some(String::from_utf8_lossy(sent.subject).as_ref())
        );
        assert_eq!(letter.header("Sinkhost-Attempts"), Some("0"));
    }
    assert_eq!(
        raw.count(),
        readable.len() + 1,
        "no plugin saw a malformed one"
    );

    // Settled: nothing of `raw` waits for a redelivery. (The dead-letter
    // metric counts just before the terminating ack goes out, so the
    // consumer's state is awaited, well inside the 120 s ack_wait.)
    let mut consumer = js
        .get_stream("raw_s")
        .await
        .expect("stream")
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("raw-consumer")
        .await
        .expect("consumer");
    let deadline = tokio::time::Instant::now() + WAIT;
    let info = loop {
        let info = consumer.info().await.expect("consumer info").clone();
        let settled = (info.num_ack_pending, info.num_redelivered) == (0, 0);
        if settled || tokio::time::Instant::now() >= deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered),
        (0, 0),
        "{info:?}"
    );

    // What an operator sees, and what a replay does with them.
    let dir = config.path().display().to_string();
    let list = sinkhost_cli(
        &["dlq", "list", "--config-dir", &dir, "--subscription", "raw"],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert!(list.status.success(), "{list:?}");
    for sent in &MALFORMED {
        assert!(list.stdout.contains(sent.reason), "{}", list.stdout);
    }
    let json = sinkhost_cli(
        &["dlq", "list", "--config-dir", &dir, "--json"],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    let listed: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(listed.len(), MALFORMED.len(), "{}", json.stdout);
    let cr = BASE64.encode(MALFORMED[0].subject);
    let listed_cr = listed
        .iter()
        .find(|l| l["raw_subject"].as_str() == Some(cr.as_str()))
        .expect("the lone-CR letter in --json");
    assert_eq!(
        listed_cr["raw_headers"].as_str(),
        Some(BASE64.encode(MALFORMED[0].headers).as_str())
    );
    let replay = sinkhost_cli(
        &[
            "dlq",
            "replay",
            "--config-dir",
            &dir,
            "--subscription",
            "raw",
        ],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(replay.status.code(), Some(1), "{replay:?}");
    assert!(
        replay.stdout.contains("kept: not replayed: malformed message: header X-Note: value contains a carriage return; its raw subject and headers are in Sinkhost-Raw-Subject and Sinkhost-Raw-Headers"),
        "{}",
        replay.stdout
    );
    assert!(
        replay
            .stdout
            .contains("replayed 0, delivered 0, still failing 0, malformed (kept) 5"),
        "{}",
        replay.stdout
    );
    assert_eq!(dlq_messages(&js, "raw_s").await.len(), MALFORMED.len());
    assert_eq!(raw.count(), readable.len() + 1);

    // Replayed from the stream, they are dead-lettered again, not delivered.
    let again = sinkhost_cli(
        &[
            "replay",
            "--config-dir",
            &dir,
            "--subscription",
            "raw",
            "--from-seq",
            "1",
            "--to-seq",
            "5",
        ],
        &nats.url(),
        &[],
        WAIT,
    )
    .await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        again.stdout.contains("dead-lettered to dlq.raw: replay: malformed message: header X-Note: value contains a carriage return"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("replayed 5, delivered 0, dead-lettered 5 (up to stream sequence 5)"),
        "{}",
        again.stdout
    );
    assert_eq!(raw.count(), readable.len() + 1, "no plugin saw them");

    host.wait_healthy(WAIT).await;
    assert!(host.exit_status().is_none(), "the host is still running");
    assert!(
        !host.logs().iter().any(|l| l.contains("panicked")),
        "{}",
        host.logs().join("\n")
    );
}
