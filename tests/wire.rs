//! The NATS connection itself: a broken or hostile server's frames end in a
//! reconnect with the reason logged, never in a panic; and a client whose
//! connection task ends anyway is replaced, with every subscription resumed.
//! (What a publisher can put in a message is tests/bad_input.rs.)

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{stream_yaml, sub_yaml, wait_metric};
use support::{ConfigDir, Host, NatsProxy, NatsServer, Receiver, publish};

const WAIT: Duration = Duration::from_secs(30);

/// Frames no sane server sends, slipped between the real server's frames: a
/// `-ERR` without text (then the connection closes, as nats-server does), an
/// `INFO` that is not JSON, a `MSG` whose length is near `usize::MAX`. Each
/// ends the connection with its reason in the log; the client reconnects and
/// the next message is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_server_frame_ends_in_a_reconnect_with_the_reason_logged() {
    let nats = NatsServer::start();
    let proxy = NatsProxy::start(nats.port()).await;
    let dest = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("wire_s", &["wire.>"]),
            sub_yaml("wire", "wire.>", &dest.url("/wire"), ""),
        ),
    );
    let host = Host::start(config.path(), &proxy.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "wire.first", "{}", &[]).await;
    dest.wait_for(1, WAIT).await;

    let huge = format!("MSG wire.x 1 {}\r\n", usize::MAX);
    let broken: [(&[u8], bool, &str); 3] = [
        (b"-ERR\r\n", true, "nats: -ERR without a message"),
        (
            b"INFO {not json\r\n",
            false,
            "connection lost: INFO is not JSON",
        ),
        (
            huge.as_bytes(),
            false,
            "connection lost: message length out of range",
        ),
    ];
    for (n, (frame, close, reason)) in broken.into_iter().enumerate() {
        let connections = proxy.connections();
        proxy.inject(frame, close);
        host.wait_for_log_where(
            &format!("a warning saying {reason:?}"),
            |line| line.contains("\"WARN\"") && line.contains(reason),
            WAIT,
        )
        .await;
        proxy.wait_connections(connections + 1, WAIT).await;
        host.wait_healthy(WAIT).await;
        publish(&js, &format!("wire.after{n}"), "{}", &[]).await;
        dest.wait_for(n + 2, WAIT).await;
    }
    assert!(host.exit_status().is_none(), "the host is still running");
    let logs = host.logs().join("\n");
    assert!(!logs.contains("panicked"), "{logs}");
}

/// async-nats reconnects by itself; a client whose connection task ends all
/// the same (a panic, or here giving up after `SINKHOST_NATS_RECONNECTS`
/// attempts while the server is down) is noticed, logged at error level,
/// reported by `/healthz` and replaced, and every subscription resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_client_whose_task_ends_is_rebuilt_and_every_subscription_resumes() {
    let nats = NatsServer::start();
    let a = Receiver::ok().await;
    let b = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("rebuild_s", &["a.>", "b.>"]),
            sub_yaml("a", "a.>", &a.url("/a"), ""),
            sub_yaml("b", "b.>", &b.url("/b"), ""),
        ),
    );
    let host = Host::start(
        config.path(),
        &nats.url(),
        &[("SINKHOST_NATS_RECONNECTS", "3")],
    )
    .await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "a.before", "{}", &[]).await;
    a.wait_for(1, WAIT).await;

    nats.stop();
    let line = host
        .wait_for_log("the NATS client's connection task ended", WAIT)
        .await;
    assert!(line.contains("\"ERROR\""), "{line}");
    let (status, body) = host.http_get("/healthz").await;
    assert_eq!(status, 503, "{body}");

    nats.restart();
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "a.after", "{}", &[]).await;
    publish(&js, "b.after", "{}", &[]).await;
    a.wait_for(2, WAIT).await;
    b.wait_for(1, WAIT).await;
    wait_metric(&host, "sinkhost_nats_client_rebuilds_total", 1.0, WAIT).await;
    host.wait_for_log("NATS client rebuilt", WAIT).await;
    assert!(host.exit_status().is_none(), "the host is still running");
}
