//! The metrics an operator alerts on beyond delivery counts: the consumer's
//! backlog as JetStream reports it (`sinkhost_consumer_*`, polled every 5 s)
//! and plugin traps (`sinkhost_plugin_traps_total`). docs/metrics.md lists
//! every metric.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{hostile_plugin, metric, stream_yaml, sub_yaml, wait_metric};
use support::{ConfigDir, Host, NatsServer, Receiver, publish};

/// Room for a few 5 s polls of the consumer info.
const WAIT: Duration = Duration::from_secs(40);

/// With the destination down and `max_concurrency: 2`, two of five messages
/// are out (unacked, retried on the backoff) and three wait in the stream;
/// once both have been retried, both count as redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_backlog_is_exposed_per_subscription() {
    let nats = NatsServer::start();
    let down = Receiver::status(503).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("lag_s", &["lag.>"]),
            sub_yaml(
                "lagging",
                "lag.>",
                &down.url("/hook"),
                // Each message spends its own retries: no breaker.
                "max_concurrency: 2\nretries: 10\nbackoff: \"2s\"\nbreaker: {failures: 0}"
            ),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 0..5 {
        publish(&js, &format!("lag.{i}"), "{}", &[]).await;
    }
    // Each of the two messages out has had its retry.
    down.wait_for(4, WAIT).await;
    let series = |name: &str| format!("{name}{{subscription=\"lagging\"}}");
    wait_metric(&host, &series("sinkhost_consumer_redelivered"), 2.0, WAIT).await;
    assert_eq!(
        metric(&host, &series("sinkhost_consumer_pending")).await,
        Some(3.0)
    );
    assert_eq!(
        metric(&host, &series("sinkhost_consumer_ack_pending")).await,
        Some(2.0)
    );
    let (_, text) = host.http_get("/metrics").await;
    for name in [
        "sinkhost_consumer_pending",
        "sinkhost_consumer_ack_pending",
        "sinkhost_consumer_redelivered",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name}:\n{text}"
        );
    }
}

/// Every attempt that traps is counted, per subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_traps_are_counted() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("traps_s", &["trap.>", "fine.>"]),
            sub_yaml(
                "trapper",
                "trap.>",
                &pings.url("/trap"),
                &format!(
                    "plugin: \"{}\"\nsettings: {{mode: trap}}\nretries: 1\nbackoff: \"1s\"",
                    hostile_plugin()
                )
            ),
            sub_yaml("fine", "fine.>", &pings.url("/fine"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "trap.1", "{}", &[]).await;
    publish(&js, "fine.1", "{}", &[]).await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"trapper\"}",
        1.0,
        WAIT,
    )
    .await;
    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"fine\",outcome=\"delivered\"}",
        1.0,
        WAIT,
    )
    .await;
    // Two attempts (retries: 1), both trapped; the healthy subscription has none.
    assert_eq!(
        metric(
            &host,
            "sinkhost_plugin_traps_total{subscription=\"trapper\"}"
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(&host, "sinkhost_plugin_traps_total{subscription=\"fine\"}").await,
        None
    );
}
