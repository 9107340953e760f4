//! Self-tests of the end-to-end fixtures in `tests/support`: each fixture does what
//! the suites rely on, against a real nats-server and real HTTP.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{
    ConfigDir, Host, NatsServer, Receiver, Reply, dlq_messages, ensure_stream, publish,
    read_stream, unique,
};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn nats_server_stores_and_returns_messages() {
    let nats = NatsServer::start();
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    assert_ne!(nats.port(), 0);
    let js = nats.jetstream().await;
    let stream = unique("selftest");
    let subject = format!("{stream}.created");
    ensure_stream(&js, &stream, &[&format!("{stream}.>")]).await;

    let first = publish(
        &js,
        &subject,
        "one",
        &[("Nats-Msg-Id", "m-1"), ("X-Trace", "abc")],
    )
    .await;
    let second = publish(&js, &subject, "two", &[]).await;
    assert_eq!((first.sequence, second.sequence), (1, 2));
    assert!(!first.duplicate);

    let messages = read_stream(&js, &stream).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].subject, subject);
    assert_eq!(messages[0].payload_text(), "one");
    assert_eq!(messages[0].header("nats-msg-id"), Some("m-1"));
    assert_eq!(messages[0].header("X-Trace"), Some("abc"));
    assert_eq!(
        (messages[1].sequence, messages[1].payload_text().as_str()),
        (2, "two")
    );

    // No dead-letter stream yet: empty, not a hang or a panic.
    assert!(dlq_messages(&js, &stream).await.is_empty());
}

#[tokio::test]
async fn nats_server_restart_keeps_port_and_messages() {
    let nats = NatsServer::start();
    let port = nats.port();
    let stream = unique("restart");
    {
        let js = nats.jetstream().await;
        ensure_stream(&js, &stream, &[&format!("{stream}.>")]).await;
        publish(&js, &format!("{stream}.a"), "kept", &[]).await;
    }

    nats.restart();
    assert!(nats.is_running());
    assert_eq!(nats.port(), port);
    let js = nats.jetstream().await;
    let messages = read_stream(&js, &stream).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload_text(), "kept");

    // A crash (SIGKILL) and a start on the same port and store.
    nats.kill();
    assert!(!nats.is_running());
    nats.restart();
    let js = nats.jetstream().await;
    assert_eq!(read_stream(&js, &stream).await.len(), 1);
    let logs = nats.logs();
    let readies = logs
        .iter()
        .filter(|line| line.contains("Server is ready"))
        .count();
    assert_eq!(
        readies,
        3,
        "logs of every run are kept:\n{}",
        logs.join("\n")
    );
}

#[tokio::test]
async fn dlq_messages_reads_the_dead_letter_stream() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = unique("events");
    let dlq = format!("{stream}_dlq");
    ensure_stream(&js, &dlq, &[&format!("{dlq}.>")]).await;
    for n in 0..3 {
        publish(
            &js,
            &format!("{dlq}.sub"),
            format!("dead {n}"),
            &[("Nats-Sequence", "7")],
        )
        .await;
    }
    let dead = dlq_messages(&js, &stream).await;
    let payloads: Vec<String> = dead.iter().map(|message| message.payload_text()).collect();
    assert_eq!(payloads, ["dead 0", "dead 1", "dead 2"]);
    assert_eq!(dead[2].header("Nats-Sequence"), Some("7"));
}

#[tokio::test]
async fn receiver_fail_first_fails_each_key_then_succeeds() {
    let receiver = Receiver::fail_first(2, 503).await;
    let http = reqwest::Client::new();
    let post = |key: &'static str| {
        http.post(receiver.url("/hook?x=1"))
            .header("Idempotency-Key", key)
            .header("X-Multi", "a")
            .header("X-Multi", "b")
            .body(format!("{{\"key\":\"{key}\"}}"))
            .send()
    };
    let mut statuses = Vec::new();
    for key in ["a", "a", "b", "a", "b", "b"] {
        statuses.push(
            post(key)
                .await
                .expect("POST to the receiver")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 503, 200, 503, 200]);

    let requests = receiver.wait_for(6, TIMEOUT).await;
    assert_eq!(receiver.count(), 6);
    let first = &requests[0];
    assert_eq!(
        (first.seq, first.method.as_str(), first.path.as_str()),
        (0, "POST", "/hook")
    );
    assert_eq!(first.query.as_deref(), Some("x=1"));
    assert_eq!(first.idempotency_key(), Some("a"));
    assert_eq!(first.header("x-multi"), Some("a, b"));
    assert_eq!(first.json()["key"], "a");
    assert!(
        requests
            .windows(2)
            .all(|pair| pair[0].received_at <= pair[1].received_at)
    );
}

#[tokio::test]
async fn receiver_replies_as_programmed() {
    let receiver = Receiver::start(|request, nth| {
        Reply::status(429)
            .header("Retry-After", "3")
            .body(format!("{} #{nth}", request.path))
    })
    .await;
    let response = reqwest::get(receiver.url("/x"))
        .await
        .expect("GET the receiver");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.text().await.expect("body"), "/x #1");

    receiver.set_behaviour(|_, _| Reply::ok().body("changed"));
    let response = reqwest::get(receiver.url("/x"))
        .await
        .expect("GET the receiver");
    assert_eq!(response.text().await.expect("body"), "changed");
    receiver
        .assert_count_stays(2, Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn receiver_wait_until_wakes_on_arrival_and_slow_delays() {
    let receiver = Receiver::slow(Duration::from_millis(300)).await;
    let url = receiver.url("/slow");
    let started = std::time::Instant::now();
    let request = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    // Recorded on arrival, before the delayed reply.
    let requests = receiver
        .wait_until(
            |requests| requests.iter().any(|r| r.path == "/slow"),
            TIMEOUT,
        )
        .await;
    assert_eq!(requests.len(), 1);
    assert!(!request.is_finished());
    assert_eq!(request.await.expect("join").expect("GET"), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
#[should_panic(expected = "timed out after 200ms waiting for 2 request(s); 1 request(s) arrived")]
async fn receiver_wait_for_times_out_with_what_arrived() {
    let receiver = Receiver::ok().await;
    reqwest::Client::new()
        .post(receiver.url("/only-one"))
        .header("Idempotency-Key", "k-1")
        .body("hello")
        .send()
        .await
        .expect("POST to the receiver");
    receiver.wait_for(2, Duration::from_millis(200)).await;
}

#[test]
fn config_dir_writes_files_and_unique_names_differ() {
    let config = ConfigDir::new()
        .file("00-stream.yml", "stream: {}\n")
        .file("sub/plugin.wasm", [0_u8, 97, 115, 109]);
    assert_eq!(
        std::fs::read_to_string(config.path().join("00-stream.yml")).expect("read back"),
        "stream: {}\n"
    );
    assert_eq!(
        std::fs::read(config.path().join("sub/plugin.wasm"))
            .expect("read back")
            .len(),
        4
    );
    config.remove("00-stream.yml");
    assert!(!config.path().join("00-stream.yml").exists());

    let (a, b) = (unique("orders"), unique("orders"));
    assert_ne!(a, b);
    assert!(a.starts_with("orders_"));
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
}

/// Compiles the `Host` fixture without running the (not yet finished) binary.
#[allow(dead_code)]
async fn host_fixture_compiles(config: &ConfigDir, nats: &NatsServer) {
    let host = Host::start(config.path(), &nats.url(), &[("SINKHOST_LOG", "debug")]).await;
    host.wait_healthy(TIMEOUT).await;
    let (status, _body) = host.http_get("/metrics").await;
    assert_eq!(status, 200);
    host.wait_for_log("consuming", TIMEOUT).await;
    host.sigterm();
    assert!(host.wait_exit(TIMEOUT).await.success());
}
