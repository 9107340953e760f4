//! Bad input through the default `http-webhook` plugin: empty, binary, non-JSON
//! and near-limit payloads, odd header values and subjects at the wildcard edges.
//! Each message is delivered as the envelope documents, or dead-lettered with a
//! reason; none of them disturbs the host.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{stream_yaml, sub_yaml, wait_metric};
use support::{ConfigDir, Host, NatsServer, Receiver, Recorded, Reply, dlq_messages, publish};

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

/// Header bytes that are not UTF-8 can only be sent below the client libraries,
/// on the wire; the host must survive them and keep consuming.
///
/// Only survival is asserted, and that the other subscriptions keep flowing.
/// The message itself is neither delivered nor dead-lettered today: async-nats
/// cannot parse it, drops the connection and reconnects, and JetStream
/// redelivers it after `ack_wait`, again and again. Messages of the *same*
/// consumer that arrived in the same read are lost with the connection and
/// redelivered after their `ack_wait`, which is why the message that must
/// still arrive goes to another subscription here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_bytes_that_are_not_utf8_do_not_stop_the_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let nats = NatsServer::start();
    let raw = Receiver::ok().await;
    let other = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("raw_s", &["raw.>", "other.>"]),
            sub_yaml("raw", "raw.>", &raw.url("/raw"), ""),
            sub_yaml(
                "other",
                "other.>",
                &other.url("/other"),
                "    timeout: \"1s\"\n    ack_wait: \"3s\""
            ),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    let mut headers = b"NATS/1.0\r\nNats-Msg-Id: rawbin\r\nX-Bin: \xff\xfe\x80ok\r\n\r\n".to_vec();
    let payload = b"{\"raw\": 1}";
    let mut wire = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true}}\r\nHPUB raw.bin {} {}\r\n",
        headers.len(),
        headers.len() + payload.len()
    )
    .into_bytes();
    wire.append(&mut headers);
    wire.extend_from_slice(payload);
    wire.extend_from_slice(b"\r\nPING\r\n");
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", nats.port()))
        .await
        .expect("connecting to nats-server");
    socket.write_all(&wire).await.expect("writing HPUB");
    let mut seen = Vec::new();
    let mut buf = [0_u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
            .await
            .expect("nats-server answers")
            .expect("reading from nats-server");
        assert!(
            n > 0,
            "nats-server closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("-ERR"),
        "{}",
        String::from_utf8_lossy(&seen)
    );

    let js = nats.jetstream().await;
    publish(&js, "other.after", "{}", &[("Nats-Msg-Id", "after")]).await;
    other
        .wait_until(
            |reqs| reqs.iter().any(|r| r.idempotency_key() == Some("after")),
            WAIT,
        )
        .await;
    host.wait_healthy(WAIT).await;
    assert!(host.exit_status().is_none(), "the host is still running");
}
