//! Helpers shared by the end-to-end suites on top of `support`: config.d
//! snippets and reading the host's metrics. Included with
//! `#[path = "common.rs"] mod common;`.
#![allow(dead_code)]

use std::time::Duration;

use crate::support::{Host, workspace_root};

/// The `stream:` block for a test stream.
pub fn stream_yaml(name: &str, subjects: &[&str]) -> String {
    format!(
        "stream:\n  name: {name}\n  subjects: [{}]\n  max_age: 1h\n  storage: file\n",
        subjects.join(", ")
    )
}

/// One subscription entry (to be put under `subscriptions:`), with the seed's
/// numbers unless `extra` overrides them (`extra` lines are indented by the caller's
/// convention: two spaces + key).
pub fn sub_yaml(name: &str, subject: &str, url: &str, extra: &str) -> String {
    let mut yaml = format!(
        "  - name: {name}\n    subject: \"{subject}\"\n    consumer: {name}-consumer\n    webhook:\n      url: \"{url}\"\n      headers:\n        Authorization: \"Bearer secret-{name}\"\n"
    );
    let mut keys = vec![
        ("timeout", "\"15s\""),
        ("retries", "3"),
        ("backoff", "\"2s\""),
        ("max_concurrency", "50"),
        ("ack_wait", "\"120s\""),
    ];
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        let key = line.trim().split(':').next().unwrap_or_default();
        keys.retain(|(k, _)| *k != key);
        yaml.push_str(&format!("    {}\n", line.trim()));
    }
    for (key, value) in keys {
        yaml.push_str(&format!("    {key}: {value}\n"));
    }
    yaml
}

/// The test-only hostile plugin (`make plugins` builds it).
pub fn hostile_plugin() -> String {
    let path = workspace_root().join("target/release/test-plugins/hostile.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make plugins`",
        path.display()
    );
    path.display().to_string()
}

/// The value of one series in `/metrics`, e.g.
/// `sinkhost_deliveries_total{subscription="a",outcome="delivered"}`.
pub async fn metric(host: &Host, series: &str) -> Option<f64> {
    let (status, text) = host.http_get("/metrics").await;
    assert_eq!(status, 200, "GET /metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a metric value"))
}

/// Waits until `series` reaches at least `value` (the metric lives in another
/// process, so this polls).
pub async fn wait_metric(host: &Host, series: &str, value: f64, timeout: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = metric(host, series).await.unwrap_or(0.0);
        if now >= value {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {now}, expected >= {value} within {timeout:?}\nlogs:\n{}",
            host.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
