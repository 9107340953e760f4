//! W3C trace context end to end: a `traceparent`/`tracestate` on the NATS
//! message reaches the destination unchanged through the built-in plugins
//! (`http-webhook`, `mailer-apikey`), an invalid or absent one reaches it not
//! at all, and the host's log lines for the delivery carry the trace id.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{stream_yaml, sub_yaml};
use support::{ConfigDir, Host, NatsServer, Receiver, Recorded, publish};

const WAIT: Duration = Duration::from_secs(30);

const HOOK_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HOOK_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const HOOK_STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
const MAIL_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const MAIL_PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const MAIL_STATE: &str = "vendor=opaque value";
/// Upper-case hex: invalid, so it must not be forwarded.
const BAD_PARENT: &str = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";

/// The requests with `Idempotency-Key: id`, in arrival order.
fn of<'a>(requests: &'a [Recorded], id: &str) -> Vec<&'a Recorded> {
    requests
        .iter()
        .filter(|r| r.idempotency_key() == Some(id))
        .collect()
}

/// The first attempt of each message fails with a 503, so every message
/// arrives twice and the host logs a "will retry" line for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_reach_the_destination_and_the_host_log() {
    let nats = NatsServer::start();
    let receiver = Receiver::fail_first(1, 503).await;
    let retry_soon = "backoff: \"1s\"";
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("trace_s", &["hook.>", "mail.>"]),
            sub_yaml("hooks", "hook.>", &receiver.url("/hook"), retry_soon),
            sub_yaml(
                "mails",
                "mail.>",
                &receiver.url("/mail-template"),
                &format!("plugin: mailer-apikey\nsettings: {{api_key: \"k3y\"}}\n{retry_soon}")
            ),
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(
        &js,
        "hook.traced",
        "{}",
        &[
            ("Nats-Msg-Id", "traced"),
            ("traceparent", HOOK_PARENT),
            ("tracestate", HOOK_STATE),
        ],
    )
    .await;
    publish(&js, "hook.plain", "{}", &[("Nats-Msg-Id", "plain")]).await;
    publish(
        &js,
        "hook.bad",
        "{}",
        &[
            ("Nats-Msg-Id", "bad"),
            ("traceparent", BAD_PARENT),
            ("tracestate", HOOK_STATE),
        ],
    )
    .await;
    publish(
        &js,
        "mail.welcome",
        "{}",
        &[
            ("Nats-Msg-Id", "mail"),
            ("traceparent", MAIL_PARENT),
            ("tracestate", MAIL_STATE),
        ],
    )
    .await;

    // Two attempts of each of the four messages.
    let requests = receiver.wait_for(8, WAIT).await;
    for (id, parent, state) in [
        ("traced", HOOK_PARENT, HOOK_STATE),
        ("mail", MAIL_PARENT, MAIL_STATE),
    ] {
        let attempts = of(&requests, id);
        assert_eq!(attempts.len(), 2, "{id}: {attempts:?}");
        for req in attempts {
            assert_eq!(req.header("traceparent"), Some(parent), "{id}");
            assert_eq!(req.header("tracestate"), Some(state), "{id}");
        }
    }
    for id in ["plain", "bad"] {
        let attempts = of(&requests, id);
        assert_eq!(attempts.len(), 2, "{id}: {attempts:?}");
        for req in attempts {
            assert_eq!(req.header("traceparent"), None, "{id}: {req:?}");
            assert_eq!(req.header("tracestate"), None, "{id}: {req:?}");
        }
    }

    // The host's "will retry" line and the plugin's own warning carry the trace id.
    let logs = host.json_logs();
    let lines_of = |id: &str| -> Vec<&serde_json::Value> {
        logs.iter()
            .filter(|l| l["span"]["name"] == "delivery" && l["span"]["message_id"] == id)
            .collect()
    };
    for (id, subscription, trace) in [
        ("traced", "hooks", HOOK_TRACE),
        ("mail", "mails", MAIL_TRACE),
    ] {
        let lines = lines_of(id);
        let retry = lines
            .iter()
            .find(|l| l["fields"]["message"] == "delivery failed; will retry")
            .unwrap_or_else(|| panic!("no retry line for {id}:\n{lines:#?}"));
        assert_eq!(retry["span"]["trace_id"], trace, "{retry}");
        assert_eq!(retry["span"]["subscription"], subscription, "{retry}");
        let plugin = lines
            .iter()
            .find(|l| l["fields"]["plugin"] == true)
            .unwrap_or_else(|| panic!("no plugin line for {id}:\n{lines:#?}"));
        assert_eq!(plugin["span"]["trace_id"], trace, "{plugin}");
    }
    for id in ["plain", "bad"] {
        let lines = lines_of(id);
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "delivery failed; will retry"),
            "no retry line for {id}:\n{lines:#?}"
        );
        for line in lines {
            assert!(line["span"].get("trace_id").is_none(), "{line}");
        }
    }
}
