//! The third-party style example plugins (`examples/`, built by `make examples`
//! with npm's componentize-js and PyPI's componentize-py), end to end: the real
//! host on an `order.>` subscription, a real receiver, the exact bytes and
//! headers that arrive, and how each plugin classifies what goes wrong.
//!
//! A 12-19 MB component takes several seconds to compile, and the host compiles
//! before it listens, so the waits here are generous.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Reply, StoredMessage, dlq_messages, publish,
    sinkhost_cli, unique, workspace_root,
};

const WAIT: Duration = Duration::from_secs(60);

/// How long compiling an example may take before the host listens (or `check`
/// answers): several seconds alone, far more while other tests and builds
/// share the machine's two cores. A ceiling, not a sleep.
const COMPILE_WAIT: Duration = Duration::from_secs(180);

/// The order event every test publishes.
const ORDER: &str =
    r#"{"order_id":42,"total":"19.90","currency":"EUR","items":[{"sku":"T-1","qty":2}]}"#;

/// What the JS example POSTs for [`ORDER`] on `order.completed`: a Teams message
/// with an Adaptive Card, fields in payload order, `{id}` the message id.
const TEAMS_CARD: &str = r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.2","body":[{"type":"TextBlock","size":"Medium","weight":"Bolder","text":"Order 42 completed","wrap":true},{"type":"FactSet","facts":[{"title":"total","value":"19.90"},{"title":"currency","value":"EUR"},{"title":"items","value":"[{\"sku\":\"T-1\",\"qty\":2}]"},{"title":"message id","value":"{id}"}]}]}}]}"#;

/// The same card with `settings: {facts: [total]}`.
const TEAMS_CARD_TOTAL_ONLY: &str = r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.2","body":[{"type":"TextBlock","size":"Medium","weight":"Bolder","text":"Order 42 completed","wrap":true},{"type":"FactSet","facts":[{"title":"total","value":"19.90"},{"title":"message id","value":"{id}"}]}]}}]}"#;

/// What the Python example POSTs for [`ORDER`] on `order.completed`: a Slack
/// incoming-webhook message with Block Kit blocks.
const SLACK_MESSAGE: &str = r#"{"text":"Order 42 completed","blocks":[{"type":"header","text":{"type":"plain_text","text":"Order 42 completed"}},{"type":"section","fields":[{"type":"mrkdwn","text":"*total*\n19.90"},{"type":"mrkdwn","text":"*currency*\nEUR"},{"type":"mrkdwn","text":"*items*\n[{\"sku\":\"T-1\",\"qty\":2}]"}]},{"type":"context","elements":[{"type":"mrkdwn","text":"message id `{id}`"}]}]}"#;

/// The same message with `settings: {fields: [total]}`.
const SLACK_MESSAGE_TOTAL_ONLY: &str = r#"{"text":"Order 42 completed","blocks":[{"type":"header","text":{"type":"plain_text","text":"Order 42 completed"}},{"type":"section","fields":[{"type":"mrkdwn","text":"*total*\n19.90"}]},{"type":"context","elements":[{"type":"mrkdwn","text":"message id `{id}`"}]}]}"#;

/// One example plugin and what differs between them.
struct Example {
    /// `target/examples/<name>.wasm`.
    name: &'static str,
    /// The body for [`ORDER`], with `{id}` for the message id.
    order_body: &'static str,
    /// The body with only the `total` field selected, and the setting that does it.
    total_only_body: &'static str,
    total_only_setting: &'static str,
}

const JS_TEAMS: Example = Example {
    name: "js-teams",
    order_body: TEAMS_CARD,
    total_only_body: TEAMS_CARD_TOTAL_ONLY,
    total_only_setting: "settings: {facts: [total]}",
};

const PYTHON_SLACK: Example = Example {
    name: "python-slack",
    order_body: SLACK_MESSAGE,
    total_only_body: SLACK_MESSAGE_TOTAL_ONLY,
    total_only_setting: "settings: {fields: [total]}",
};

impl Example {
    /// The built component; panics with the command that builds it.
    fn wasm(&self) -> String {
        let path = workspace_root().join(format!("target/examples/{}.wasm", self.name));
        assert!(
            path.exists(),
            "{} is missing: run `make examples`",
            path.display()
        );
        path.display().to_string()
    }

    /// `plugin:` plus `extra` lines for [`sub_yaml`].
    fn plugin_yaml(&self, extra: &str) -> String {
        format!("plugin: \"{}\"\n{extra}", self.wasm())
    }
}

/// Starts the host on `config` and waits until it consumes; compiling the
/// example takes longer than `Host::start` allows.
async fn start_host(config: &ConfigDir, nats: &NatsServer) -> Host {
    let host = Host::spawn(config.path(), &nats.url(), &[]);
    host.wait_listening(COMPILE_WAIT).await;
    host.wait_healthy(WAIT).await;
    host
}

/// A URL on 127.0.0.1 where nothing listens: the host's `http.send` fails
/// with a connect error.
fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}/hook")
}

fn series(name: &str, subscription: &str, outcome: &str) -> String {
    format!("{name}{{subscription=\"{subscription}\",outcome=\"{outcome}\"}}")
}

fn dead_letters(subscription: &str) -> String {
    format!("sinkhost_dead_letters_total{{subscription=\"{subscription}\"}}")
}

fn dead_letter<'a>(letters: &'a [StoredMessage], subscription: &str) -> &'a StoredMessage {
    letters
        .iter()
        .find(|l| l.subject == format!("dlq.{subscription}"))
        .unwrap_or_else(|| panic!("no dead letter from {subscription} in {letters:?}"))
}

/// An order event arrives as the destination's chat message, byte for byte,
/// with Content-Type, the message id as Idempotency-Key, the configured
/// Authorization and the message's W3C trace context; a second subscription
/// shows the plugin's own setting.
async fn formats_an_order_event(example: Example) {
    let nats = NatsServer::start();
    let chat = Receiver::ok().await;
    let narrow = Receiver::ok().await;
    let stream = unique("ex_fmt");
    let (all, some) = (unique("chat"), unique("narrow"));
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml(&stream, &["order.>"]),
            sub_yaml(
                &all,
                "order.>",
                &chat.url("/webhook"),
                &example.plugin_yaml("")
            ),
            sub_yaml(
                &some,
                "order.>",
                &narrow.url("/webhook"),
                &example.plugin_yaml(example.total_only_setting)
            )
        ),
    );
    let host = start_host(&config, &nats).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let trace = [("traceparent", traceparent), ("tracestate", tracestate)];
    let ack = publish(&nats.jetstream().await, "order.completed", ORDER, &trace).await;
    let id = format!("nats-msg-{}", ack.sequence);

    let got = chat.wait_for(1, WAIT).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/webhook");
    assert_eq!(request.body_text(), example.order_body.replace("{id}", &id));
    request.json(); // and it is JSON
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.idempotency_key(), Some(id.as_str()));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer secret-{all}").as_str())
    );
    assert_eq!(request.header("traceparent"), Some(traceparent));
    assert_eq!(request.header("tracestate"), Some(tracestate));

    let got = narrow.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].body_text(),
        example.total_only_body.replace("{id}", &id)
    );
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer secret-{some}").as_str())
    );

    wait_metric(
        &host,
        &series("sinkhost_deliveries_total", &all, "delivered"),
        1.0,
        WAIT,
    )
    .await;
    chat.assert_count_stays(1, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_teams_posts_an_adaptive_card_with_auth_and_idempotency_key() {
    formats_an_order_event(JS_TEAMS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_slack_posts_block_kit_with_auth_and_idempotency_key() {
    formats_an_order_event(PYTHON_SLACK).await;
}

/// The same classification in both languages: 503 with `Retry-After` is
/// retried after that delay (not the 100 ms backoff) and then delivered; 400
/// is dead-lettered at once; a destination the host cannot connect to is
/// retried until the last attempt.
async fn classifies_failures(example: Example) {
    let nats = NatsServer::start();
    let flaky = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(503).header("Retry-After", "1")
        } else {
            Reply::ok()
        }
    })
    .await;
    let refusing = Receiver::status(400).await;
    let stream = unique("ex_fail");
    let (retried, refused, down) = (unique("flaky"), unique("refused"), unique("down"));
    let fast = example.plugin_yaml("retries: 1\nbackoff: \"100ms\"");
    // The unreachable destination spends the message's own retries.
    let no_breaker = example.plugin_yaml("retries: 1\nbackoff: \"100ms\"\nbreaker: {failures: 0}");
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml(&stream, &["order.>"]),
            sub_yaml(&retried, "order.>", &flaky.url("/webhook"), &fast),
            sub_yaml(&refused, "order.>", &refusing.url("/webhook"), &fast),
            sub_yaml(&down, "order.>", &unreachable_url(), &no_breaker),
        ),
    );
    let host = start_host(&config, &nats).await;
    let js = nats.jetstream().await;
    let ack = publish(&js, "order.completed", ORDER, &[]).await;
    let id = format!("nats-msg-{}", ack.sequence);

    // 503 + Retry-After: 1 -> the same request again a second later, then delivered.
    let attempts = flaky.wait_for(2, WAIT).await;
    let gap = attempts[1].received_at - attempts[0].received_at;
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}: Retry-After: 1 was not honoured"
    );
    assert_eq!(attempts[0].body, attempts[1].body);
    assert_eq!(attempts[1].idempotency_key(), Some(id.as_str()));
    wait_metric(
        &host,
        &series("sinkhost_deliveries_total", &retried, "delivered"),
        1.0,
        WAIT,
    )
    .await;

    // 400 -> rejected on the first attempt; a connect error -> retried, then
    // dead-lettered after the last attempt.
    for sub in [&refused, &down] {
        wait_metric(&host, &dead_letters(sub), 1.0, WAIT).await;
    }
    let letters = dlq_messages(&js, &stream).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(refusing.count(), 1, "a 400 is never retried");
    let letter = dead_letter(&letters, &refused);
    assert_eq!(letter.payload_text(), ORDER);
    assert_eq!(letter.header("Sinkhost-Attempts"), Some("1"));
    let reason = letter.header("Sinkhost-Last-Error").unwrap_or_default();
    assert!(reason.contains("answered HTTP 400"), "{reason}");

    let letter = dead_letter(&letters, &down);
    assert_eq!(letter.header("Sinkhost-Attempts"), Some("2"));
    let reason = letter.header("Sinkhost-Last-Error").unwrap_or_default();
    assert!(reason.contains("gave up after 2 attempts"), "{reason}");
    assert_eq!(
        metric(&host, &series("sinkhost_deliveries_total", &down, "retry")).await,
        Some(2.0),
        "both attempts ended in a retry (the last one then dead-lettered), never a reject"
    );
    assert_eq!(
        metric(
            &host,
            &series("sinkhost_deliveries_total", &refused, "reject")
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &host,
            &series("sinkhost_deliveries_total", &retried, "retry")
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_teams_retries_503_and_connect_errors_and_dead_letters_400() {
    classifies_failures(JS_TEAMS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_slack_retries_503_and_connect_errors_and_dead_letters_400() {
    classifies_failures(PYTHON_SLACK).await;
}

/// A payload that is not JSON never traps: the Teams example rejects it with
/// the reason, the Slack example posts UTF-8 text as a plain message (escaped
/// for Slack's mrkdwn) and rejects bytes that are not text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_payloads_are_rejected_with_a_reason_or_sent_as_text() {
    let nats = NatsServer::start();
    let teams = Receiver::ok().await;
    let slack = Receiver::ok().await;
    let stream = unique("ex_text");
    let (js_sub, py_sub) = (unique("teams"), unique("slack"));
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml(&stream, &["order.>"]),
            sub_yaml(
                &js_sub,
                "order.>",
                &teams.url("/webhook"),
                &JS_TEAMS.plugin_yaml("")
            ),
            sub_yaml(
                &py_sub,
                "order.>",
                &slack.url("/webhook"),
                &PYTHON_SLACK.plugin_yaml("")
            ),
        ),
    );
    let host = start_host(&config, &nats).await;
    let js = nats.jetstream().await;
    let text = "order 42 shipped <by courier> & co";
    publish(&js, "order.shipped", text, &[]).await;
    publish(&js, "order.binary", &b"\xff\xfe\x00 not text"[..], &[]).await;

    let got = slack.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].body_text(),
        r#"{"text":"order.shipped: order 42 shipped &lt;by courier&gt; &amp; co"}"#
    );
    assert_eq!(got[0].header("content-type"), Some("application/json"));

    wait_metric(&host, &dead_letters(&js_sub), 2.0, WAIT).await;
    wait_metric(&host, &dead_letters(&py_sub), 1.0, WAIT).await;
    let letters = dlq_messages(&js, &stream).await;
    let reasons = |sub: &str| -> Vec<String> {
        letters
            .iter()
            .filter(|l| l.subject == format!("dlq.{sub}"))
            .map(|l| {
                format!(
                    "{}: {}",
                    l.header("Sinkhost-Original-Subject").unwrap_or_default(),
                    l.header("Sinkhost-Last-Error").unwrap_or_default()
                )
            })
            .collect()
    };
    let teams_reasons = reasons(&js_sub);
    assert_eq!(teams_reasons.len(), 2, "{teams_reasons:?}");
    assert!(
        teams_reasons
            .iter()
            .all(|r| r.contains("payload is not JSON")),
        "{teams_reasons:?}"
    );
    let slack_reasons = reasons(&py_sub);
    assert_eq!(slack_reasons.len(), 1, "{slack_reasons:?}");
    assert!(
        slack_reasons[0].starts_with("order.binary: ")
            && slack_reasons[0].contains("payload is neither JSON nor UTF-8 text"),
        "{slack_reasons:?}"
    );
    assert_eq!(teams.count(), 0, "nothing reached Teams");
    assert_eq!(slack.count(), 1, "only the text reached Slack");
    for sub in [&js_sub, &py_sub] {
        let traps = metric(&host, &series("sinkhost_deliveries_total", sub, "trap")).await;
        assert_eq!(traps.unwrap_or(0.0), 0.0, "{sub} trapped");
    }
}

/// Settings a plugin does not accept are its `init` error, which `sinkhost
/// check` reports (exit 2) with the subscription and the plugin's own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_examples_init_errors() {
    let cases = [
        (
            JS_TEAMS,
            "settings: {colour: red}",
            "js-teams: unknown setting `colour` (known: facts)",
        ),
        (
            PYTHON_SLACK,
            "settings: {fields: total}",
            "python-slack: `settings.fields` must be a list of payload field names",
        ),
    ];
    for (example, settings, expected) in cases {
        let config = ConfigDir::new().file(
            "10.yml",
            format!(
                "subscriptions:\n{}",
                sub_yaml(
                    "misconfigured",
                    "order.>",
                    "http://127.0.0.1:1/webhook",
                    &example.plugin_yaml(settings)
                )
            ),
        );
        let out = sinkhost_cli(
            &["check", "--config-dir", config.path().to_str().unwrap()],
            "nats://127.0.0.1:1",
            &[],
            COMPILE_WAIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let expected = format!(
            "subscription misconfigured (plugin {}): plugin init failed: {expected}",
            example.wasm()
        );
        assert!(
            out.stderr.contains(&expected),
            "{expected}\nnot in\n{out:?}"
        );
    }
}
