//! `sinkhost dlq replay`: dead letters go back through their own subscription's
//! plugin (never through the subject, which would reach every subscription), the
//! delivered ones leave the dead-letter stream and `dlq list` shows the rest.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{stream_yaml, sub_yaml, wait_metric};
use support::{CliOutput, ConfigDir, Host, NatsServer, Receiver, Reply, publish, sinkhost_cli};

const WAIT: Duration = Duration::from_secs(30);

async fn cli(args: &[&str], nats: &NatsServer) -> CliOutput {
    sinkhost_cli(args, &nats.url(), &[], WAIT).await
}

/// `subscription/message-id` of what `dlq list --json` shows for `subscription`
/// (all when `None`), sorted.
async fn listed(config: &ConfigDir, nats: &NatsServer, subscription: Option<&str>) -> Vec<String> {
    let dir = config.path().to_str().expect("a UTF-8 path");
    let mut args = vec!["dlq", "list", "--config-dir", dir, "--json"];
    if let Some(subscription) = subscription {
        args.extend(["--subscription", subscription]);
    }
    let out = cli(&args, nats).await;
    assert!(out.status.success(), "{out:?}");
    out.stdout
        .lines()
        .map(|line| {
            let letter: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            format!(
                "{}/{}",
                letter["subscription"].as_str().unwrap_or_default(),
                letter["message_id"].as_str().unwrap_or_default()
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn count_key(receiver: &Receiver, key: &str) -> usize {
    receiver
        .requests()
        .iter()
        .filter(|r| r.idempotency_key() == Some(key))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_through_the_one_subscription_and_removes_what_it_delivered() {
    let nats = NatsServer::start();
    let target = Receiver::status(500).await;
    let bystander = Receiver::ok().await;
    let broken = Receiver::status(500).await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("replay_s", &["rp.>"]),
            sub_yaml("target", "rp.>", &target.url("/hook"), "retries: 0"),
            sub_yaml("bystander", "rp.>", &bystander.url("/hook"), ""),
            sub_yaml("broken", "rp.>", &broken.url("/hook"), "retries: 0"),
        ),
    );
    let dir = config.path().to_str().expect("a UTF-8 path").to_owned();
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 1..=3 {
        let payload = format!("{{\"order\": {i}}}");
        publish(
            &js,
            &format!("rp.{i}"),
            payload,
            &[("Nats-Msg-Id", &format!("m{i}"))],
        )
        .await;
    }
    for sub in ["target", "broken"] {
        wait_metric(
            &host,
            &format!("sinkhost_dead_letters_total{{subscription=\"{sub}\"}}"),
            3.0,
            WAIT,
        )
        .await;
    }
    bystander.wait_for(3, WAIT).await;
    assert_eq!(listed(&config, &nats, Some("target")).await.len(), 3);

    // The destination heals, except for m3.
    target.set_behaviour(|r, _| {
        if r.idempotency_key() == Some("m3") {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let out = cli(
        &[
            "dlq",
            "replay",
            "--config-dir",
            &dir,
            "--subscription",
            "target",
        ],
        &nats,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("replayed 3, delivered 2, still failing 1"),
        "{}",
        out.stdout
    );
    let line = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(&format!(" {id} ")))
            .unwrap_or_else(|| panic!("no line for {id}:\n{}", out.stdout))
            .to_owned()
    };
    assert!(line("m1").contains("delivered, removed"), "{}", out.stdout);
    assert!(
        line("m3").contains("still failing: plugin asked to retry after HTTP 500"),
        "{}",
        out.stdout
    );

    // Each message reached the target once more, as its plugin sends it.
    for (i, key) in ["m1", "m2", "m3"].iter().enumerate() {
        assert_eq!(count_key(&target, key), 2, "{key}");
        let replayed = target
            .requests()
            .into_iter()
            .rfind(|r| r.idempotency_key() == Some(key))
            .expect("the replayed request")
            .json();
        assert_eq!(replayed["subject"], format!("rp.{}", i + 1));
        assert_eq!(replayed["message_id"], *key);
        assert_eq!(replayed["data"]["order"], i + 1);
    }
    // Nothing was republished: the other subscriptions saw nothing more.
    bystander
        .assert_count_stays(3, Duration::from_millis(500))
        .await;
    assert_eq!(broken.count(), 3);
    assert_eq!(listed(&config, &nats, Some("target")).await, ["target/m3"]);
    assert_eq!(
        listed(&config, &nats, None).await,
        ["broken/m1", "broken/m2", "broken/m3", "target/m3"]
    );

    // --id picks one; an unknown id fails the command.
    target.set_behaviour(|_, _| Reply::ok());
    let out = cli(
        &[
            "dlq",
            "replay",
            "--config-dir",
            &dir,
            "--subscription",
            "target",
            "--id",
            "m3",
        ],
        &nats,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("replayed 1, delivered 1, still failing 0"),
        "{}",
        out.stdout
    );
    assert!(listed(&config, &nats, Some("target")).await.is_empty());
    let out = cli(
        &[
            "dlq",
            "replay",
            "--config-dir",
            &dir,
            "--subscription",
            "target",
            "--id",
            "nope",
        ],
        &nats,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("no dead letter of target has message id nope"),
        "{}",
        out.stdout
    );
    assert_eq!(broken.count(), 3);
    assert_eq!(bystander.count(), 3);

    // `dlq list` reads only the stream's name: a config.d whose webhook
    // variables are not set on this machine still lists the dead letters.
    let elsewhere = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("replay_s", &["rp.>"]),
            sub_yaml("broken", "rp.>", "${SINKHOST_TEST_UNSET_URL}", ""),
        ),
    );
    let still = listed(&config, &nats, None).await;
    assert!(!still.is_empty());
    assert_eq!(listed(&elsewhere, &nats, None).await, still);
}
