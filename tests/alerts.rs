//! The shipped alerting rules (packaging/prometheus/sinkhost.rules.yml) on a
//! real Prometheus scraping a real sinkhost: while a destination answers 503
//! the `SinkhostDestinationDown` alert fires for that subscription, and for
//! no other. The rules are loaded as shipped except for their `for:`
//! durations, cut to one second so the test does not wait five minutes (the
//! rules' own timing is `promtool test rules`' job: `make test-alert-rules`).
//!
//! Needs the `prometheus` binary (`make test` installs Debian's package);
//! without it the test says so and passes.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{stream_yaml, sub_yaml};
use support::{ConfigDir, Host, NatsServer, Receiver, publish, workspace_root};

const WAIT: Duration = Duration::from_secs(60);

/// `prometheus` from `$PROMETHEUS_BIN`, else from the PATH.
fn prometheus_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PROMETHEUS_BIN") {
        return Some(bin.into());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|bin| bin.is_file())
    })
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (job `sinkhost`) every second and evaluates `rules`
    /// every second.
    fn start(bin: &PathBuf, target: &str, rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sinkhost.rules.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [sinkhost.rules.yml]\n\
                 scrape_configs:\n  - job_name: sinkhost\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The alerts Prometheus holds now, as `/api/v1/alerts` lists them (none
    /// while it is still starting).
    async fn alerts(&self) -> Vec<serde_json::Value> {
        let Ok(response) = reqwest::get(format!("{}/api/v1/alerts", self.url)).await else {
            return Vec::new();
        };
        let text = response.text().await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped rules with every `for:` cut to 1 s.
fn rules_with_short_for() -> String {
    let shipped =
        std::fs::read_to_string(workspace_root().join("packaging/prometheus/sinkhost.rules.yml"))
            .unwrap();
    let mut cut = 0;
    let rules: Vec<String> = shipped
        .lines()
        .map(|line| match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                cut += 1;
                format!("{indent}for: 1s")
            }
            _ => line.to_owned(),
        })
        .collect();
    assert!(cut >= 4, "the rules have {cut} `for:` lines");
    rules.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_down_alert_fires_during_an_outage() {
    let Some(bin) = prometheus_bin() else {
        eprintln!(
            "SKIPPED: no `prometheus` binary (install Debian's `prometheus` package, or set PROMETHEUS_BIN)"
        );
        return;
    };
    let nats = NatsServer::start();
    let down = Receiver::status(503).await;
    let fine = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("alerts_s", &["down.>", "fine.>"]),
            sub_yaml(
                "broken",
                "down.>",
                &down.url("/hook"),
                "backoff: \"100ms\"\nbreaker: {failures: 2, probe_interval: 500ms, max_probe_interval: 1s}\n"
            ),
            sub_yaml("working", "fine.>", &fine.url("/hook"), ""),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let prometheus = Prometheus::start(&bin, &host.addr().to_string(), &rules_with_short_for());

    let js = nats.jetstream().await;
    for i in 0..5 {
        publish(&js, &format!("down.{i}"), "{}", &[]).await;
        publish(&js, &format!("fine.{i}"), "{}", &[]).await;
    }
    fine.wait_for(5, WAIT).await;

    // Prometheus has no event to wait on: poll its alerts.
    let deadline = tokio::time::Instant::now() + WAIT;
    let firing = loop {
        let alerts = prometheus.alerts().await;
        let firing: Vec<serde_json::Value> = alerts
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect();
        if firing
            .iter()
            .any(|a| a["labels"]["alertname"] == "SinkhostDestinationDown")
        {
            break firing;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SinkhostDestinationDown never fired; firing: {firing:?}; /metrics:\n{}",
            host.http_get("/metrics").await.1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let down_alerts: Vec<&serde_json::Value> = firing
        .iter()
        .filter(|a| a["labels"]["alertname"] == "SinkhostDestinationDown")
        .collect();
    assert_eq!(down_alerts.len(), 1, "{firing:?}");
    let alert = down_alerts[0];
    assert_eq!(alert["labels"]["subscription"], "broken", "{alert}");
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "The destination of broken has been down for 5 minutes",
        "{alert}"
    );
    // Nothing else is wrong with this host.
    let others: Vec<&serde_json::Value> = firing
        .iter()
        .filter(|a| a["labels"]["alertname"] != "SinkhostDestinationDown")
        .collect();
    assert!(others.is_empty(), "{others:?}");
}
