//! The built-in plugins end to end (`mailer-apikey`, `drupal-stripe`, and
//! `http-webhook`'s signing and `reject_status`): a real nats-server, real
//! receivers and the real `sinkhost` binary. Signatures are checked with the
//! receivers' own official libraries — stripe-python's
//! `Webhook.construct_event` and the `standardwebhooks` package, installed into
//! `.tools/venv` by `make setup` — never with our own HMAC code.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Recorded, Reply, StoredMessage, dlq_messages, publish,
    sinkhost_cli, workspace_root,
};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(30);

/// Stripe's secrets are opaque text after `whsec_`; the HMAC key is the whole string.
const STRIPE_SECRET: &str = "whsec_plugins-builtin-t3st";
/// A Standard Webhooks secret: `whsec_` + base64 of the key (the spec's example).
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `stripe.Webhook.construct_event(body, header, secret)` with the default
/// 300 s tolerance; prints the event's id and type, or exits 1 with the reason.
const STRIPE_VERIFY: &str = r#"
import sys, stripe
body = sys.stdin.buffer.read()
try:
    event = stripe.Webhook.construct_event(body, sys.argv[1], sys.argv[2])
except stripe.SignatureVerificationError as err:
    print("refused:", err)
    sys.exit(1)
print(event["id"], event["type"])
"#;

/// `standardwebhooks.Webhook(secret).verify(body, headers)`; prints the
/// verified payload as JSON, or exits 1 with the reason.
const STANDARD_VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook, WebhookVerificationError
body = sys.stdin.buffer.read()
try:
    payload = Webhook(sys.argv[1]).verify(body, json.loads(sys.argv[2]))
except WebhookVerificationError as err:
    print("refused:", err)
    sys.exit(1)
print(json.dumps(payload))
"#;

/// Runs `script` with the venv's python, `stdin` as its standard input (the
/// body, byte for byte) and `args`; returns whether it exited 0, and its output.
async fn python(script: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let python = workspace_root().join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make setup` (it installs stripe and standardwebhooks from tests/requirements.txt)",
        python.display()
    );
    let mut child = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("running {}: {err}", python.display()));
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).await.expect("writing the body");
    drop(input);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("python did not finish")
        .expect("python's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

async fn stripe_verify(body: &[u8], signature: &str, secret: &str) -> (bool, String) {
    python(STRIPE_VERIFY, &[signature, secret], body).await
}

async fn standard_verify(body: &[u8], req: &Recorded, secret: &str) -> (bool, String) {
    let headers = serde_json::to_string(&req.headers).unwrap();
    python(STANDARD_VERIFY, &[secret, &headers], body).await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `t=` of a `Stripe-Signature` header.
fn stripe_t(req: &Recorded) -> u64 {
    let header = req.header("stripe-signature").unwrap_or_else(|| {
        panic!(
            "no Stripe-Signature in request #{}: {:?}",
            req.seq, req.headers
        )
    });
    header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("Stripe-Signature {header:?} has no t="))
}

/// The dead letter of the message with stream sequence `seq`.
fn letter(letters: &[StoredMessage], seq: u64) -> &StoredMessage {
    letters
        .iter()
        .find(|l| l.header("Sinkhost-Stream-Sequence") == Some(seq.to_string().as_str()))
        .unwrap_or_else(|| panic!("no dead letter for sequence {seq} among {letters:#?}"))
}

fn last_error(letter: &StoredMessage) -> &str {
    letter.header("Sinkhost-Last-Error").unwrap_or_default()
}

/// A config.d with one stream and `subs` (from [`sub_yaml`]).
fn config(stream: &str, subjects: &[&str], subs: &[String]) -> ConfigDir {
    ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml(stream, subjects),
            subs.concat()
        ),
    )
}

/// drupal-stripe POSTs the Stripe event byte for byte, signed so that
/// stripe-python accepts it, and signs again — with a later `t` — when it
/// retries after a 503 (whose Retry-After it honours over a 30 s backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drupal_stripe_events_arrive_as_published_and_verify_with_stripe_python() {
    let nats = NatsServer::start();
    let drupal = Receiver::start(|_, nth| {
        if nth == 1 {
            Reply::status(503).header("Retry-After", "1")
        } else {
            Reply::ok()
        }
    })
    .await;
    let settings = format!(
        "plugin: drupal-stripe\nsettings: {{signing_secret: \"{STRIPE_SECRET}\"}}\nbackoff: \"30s\""
    );
    let config = config(
        "drupal_s",
        &["stripe.>"],
        &[sub_yaml(
            "drupal",
            "stripe.drupal",
            &drupal.url("/stripe-webhook"),
            &settings,
        )],
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;

    // What a re-encoding would change: spacing, key order, a 2^64 integer,
    // escapes, non-ASCII text, the trailing newline.
    let event = "{\"id\": \"evt_3PlUgin\", \"object\": \"event\",\n  \"type\": \"payment_intent.succeeded\", \"data\": {\"object\": {\"amount\": 18446744073709551616, \"description\": \"Caf\u{e9} \\u00e9 \u{2014} \\\"q\\\"\", \"total\": 19.90}}}\n";
    let published_at = unix_now();
    let ack = publish(&nats.jetstream().await, "stripe.drupal", event, &[]).await;

    let attempts = drupal.wait_for(2, WAIT).await;
    let delivered = "sinkhost_deliveries_total{subscription=\"drupal\",outcome=\"delivered\"}";
    wait_metric(&host, delivered, 1.0, WAIT).await;
    let id = format!("nats-msg-{}", ack.sequence);
    for req in &attempts {
        assert_eq!(req.body, event.as_bytes(), "the payload, byte for byte");
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/stripe-webhook");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("authorization"), Some("Bearer secret-drupal"));
        assert_eq!(req.idempotency_key(), Some(id.as_str()));
        let signature = req.header("stripe-signature").unwrap();
        let (ok, out) = stripe_verify(&req.body, signature, STRIPE_SECRET).await;
        assert!(ok, "stripe-python refused request #{}: {out}", req.seq);
        assert_eq!(out, "evt_3PlUgin payment_intent.succeeded");
    }

    // Signed when sent: the retry, a second later, carries a later t.
    let (t1, t2) = (stripe_t(&attempts[0]), stripe_t(&attempts[1]));
    assert!(
        published_at <= t1 && t1 <= unix_now(),
        "t={t1} is not the time of sending"
    );
    assert!(t2 > t1, "the retry was not signed anew: t {t1} then {t2}");
    let gap = attempts[1].received_at - attempts[0].received_at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(10),
        "retried after {gap:?}: Retry-After: 1 should win over the 30 s backoff"
    );

    // The check could fail: a changed byte, or another secret, is refused.
    let signature = attempts[1].header("stripe-signature").unwrap();
    let tampered = event.replace("19.90", "19.91");
    let (ok, out) = stripe_verify(tampered.as_bytes(), signature, STRIPE_SECRET).await;
    assert!(!ok, "a tampered body verified: {out}");
    assert!(out.contains("No signatures found matching"), "{out}");
    let (ok, out) = stripe_verify(event.as_bytes(), signature, "whsec_another").await;
    assert!(!ok, "another secret verified: {out}");

    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"drupal\",outcome=\"retry\"}"
        )
        .await,
        Some(1.0)
    );
    drupal
        .assert_count_stays(2, Duration::from_millis(500))
        .await;
    assert!(
        !host.logs().join("\n").contains(STRIPE_SECRET),
        "the signing secret leaked into the log"
    );
}

/// A payload that is not a Stripe event never reaches Drupal, and a 4xx from
/// Drupal (other than 408/429) is not retried: each is dead-lettered after
/// one attempt, with a reason that says why. A good event still flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drupal_stripe_dead_letters_non_events_and_drupal_refusals_at_once() {
    let nats = NatsServer::start();
    let drupal = Receiver::start(|req, _| {
        if req.body_text().contains("evt_refused") {
            Reply::status(400).body("Invalid signature")
        } else {
            Reply::ok()
        }
    })
    .await;
    let settings =
        format!("plugin: drupal-stripe\nsettings: {{signing_secret: \"{STRIPE_SECRET}\"}}");
    let config = config(
        "drupal_rej_s",
        &["stripe.>"],
        &[sub_yaml(
            "drupal-rej",
            "stripe.drupal",
            &drupal.url("/stripe-webhook"),
            &settings,
        )],
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let no_id = publish(
        &js,
        "stripe.drupal",
        r#"{"order_id": 42, "type": "order.completed"}"#,
        &[],
    )
    .await;
    let not_json = publish(&js, "stripe.drupal", "charge.succeeded evt_1", &[]).await;
    let refused = publish(
        &js,
        "stripe.drupal",
        r#"{"id": "evt_refused", "type": "charge.refunded"}"#,
        &[],
    )
    .await;
    let good = r#"{"id": "evt_good", "type": "charge.succeeded"}"#;
    publish(&js, "stripe.drupal", good, &[]).await;

    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"drupal-rej\"}",
        3.0,
        WAIT,
    )
    .await;
    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"drupal-rej\",outcome=\"delivered\"}",
        1.0,
        WAIT,
    )
    .await;
    let bodies: Vec<String> = drupal.requests().iter().map(Recorded::body_text).collect();
    assert_eq!(
        bodies.len(),
        2,
        "only the two Stripe events were sent, once each: {bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("evt_refused")),
        "{bodies:?}"
    );
    assert!(bodies.contains(&good.to_owned()), "{bodies:?}");

    let letters = dlq_messages(&js, "drupal_rej_s").await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    for (seq, expected) in [
        (
            no_id.sequence,
            r#"rejected: payload is not a Stripe event (a JSON object with string "id" and "type"): no string "id""#,
        ),
        (
            not_json.sequence,
            r#"rejected: payload is not a Stripe event (a JSON object with string "id" and "type"): not JSON ("#,
        ),
        (
            refused.sequence,
            "rejected: Drupal answered HTTP 400: Invalid signature (a 4xx other than 408 or 429 is not retried",
        ),
    ] {
        let letter = letter(&letters, seq);
        assert!(
            last_error(letter).starts_with(expected),
            "sequence {seq}: {:?}\nexpected it to start with {expected:?}",
            last_error(letter)
        );
        assert_eq!(letter.header("Sinkhost-Attempts"), Some("1"), "{letter:?}");
        assert_eq!(letter.subject, "dlq.drupal-rej");
    }
    assert_eq!(
        letter(&letters, not_json.sequence).payload_text(),
        "charge.succeeded evt_1"
    );
}

/// mailer-apikey: the envelope plus `template` with X-API-Key; a 422 (a bad
/// template) is dead-lettered after one attempt with the mailer's reason; a 503
/// is retried (after its Retry-After) and then delivered; a subject outside
/// `mail.` is rejected without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailer_apikey_sends_templates_and_classifies_the_mailers_answers() {
    let nats = NatsServer::start();
    let mailer = Receiver::start(|req, nth| {
        let template = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v["template"].as_str().map(str::to_owned));
        match template.as_deref() {
            Some("brokn") => Reply::status(422).body("unknown template brokn"),
            Some("flaky") if nth == 1 => Reply::status(503).header("Retry-After", "1"),
            _ => Reply::ok(),
        }
    })
    .await;
    let plugin = "plugin: mailer-apikey\nsettings: {api_key: \"mailer-k3y\"}\nbackoff: \"30s\"";
    let config = config(
        "mailer_s",
        &["mail.>", "misc.>"],
        &[
            sub_yaml("mailer", "mail.>", &mailer.url("/mail-template"), plugin),
            // Misrouted: a mailer subscription on subjects that name no template.
            sub_yaml("misrouted", "misc.>", &mailer.url("/mail-template"), plugin),
        ],
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(
        &js,
        "mail.welcome",
        r#"{"to":"a@example.com"}"#,
        &[("Nats-Msg-Id", "welcome-1")],
    )
    .await;
    publish(&js, "mail.auth.reset", r#"{"to":"b@example.com"}"#, &[]).await;
    let brokn = publish(&js, "mail.brokn", "{}", &[("Nats-Msg-Id", "brokn-1")]).await;
    publish(&js, "mail.flaky", "{}", &[("Nats-Msg-Id", "flaky-1")]).await;
    let misc = publish(&js, "misc.thing", "{}", &[]).await;

    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"mailer\",outcome=\"delivered\"}",
        3.0,
        WAIT,
    )
    .await;
    for sub in ["mailer", "misrouted"] {
        let series = format!("sinkhost_dead_letters_total{{subscription=\"{sub}\"}}");
        wait_metric(&host, &series, 1.0, WAIT).await;
    }
    let requests = mailer.requests();
    let by_template = |template: &str| -> Vec<&Recorded> {
        requests
            .iter()
            .filter(|r| r.json()["template"] == template)
            .collect()
    };

    let welcome = by_template("welcome");
    assert_eq!(welcome.len(), 1);
    let body = welcome[0].json();
    assert_eq!(
        body,
        serde_json::json!({
            "subject": "mail.welcome",
            "data": {"to": "a@example.com"},
            "timestamp": body["timestamp"],
            "message_id": "welcome-1",
            "template": "welcome",
        })
    );
    let raw = welcome[0].body_text();
    assert!(
        raw.ends_with(r#","message_id":"welcome-1","template":"welcome"}"#),
        "{raw}"
    );
    assert_eq!(welcome[0].path, "/mail-template");
    assert_eq!(welcome[0].header("x-api-key"), Some("mailer-k3y"));
    assert_eq!(welcome[0].header("content-type"), Some("application/json"));
    assert_eq!(welcome[0].idempotency_key(), Some("welcome-1"));
    let reset = by_template("auth.reset");
    assert_eq!(
        reset.len(),
        1,
        "mail.auth.reset names the template auth.reset"
    );
    assert_eq!(reset[0].json()["subject"], "mail.auth.reset");

    // 422: one attempt, then the dead letter names the status and the mailer's reason.
    assert_eq!(by_template("brokn").len(), 1, "a 422 is never retried");
    let letters = dlq_messages(&js, "mailer_s").await;
    let brokn_letter = letter(&letters, brokn.sequence);
    assert_eq!(brokn_letter.subject, "dlq.mailer");
    assert_eq!(brokn_letter.header("Sinkhost-Attempts"), Some("1"));
    assert!(
        last_error(brokn_letter)
            .starts_with("rejected: the mailer answered HTTP 422: unknown template brokn"),
        "{}",
        last_error(brokn_letter)
    );

    // 503: retried after the mailer's Retry-After (not the 30 s backoff), then delivered.
    let flaky = by_template("flaky");
    assert_eq!(flaky.len(), 2, "503 once, then 200");
    let gap = flaky[1].received_at - flaky[0].received_at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(10),
        "retried after {gap:?}"
    );
    assert!(flaky.iter().all(|r| r.idempotency_key() == Some("flaky-1")));

    // Not under mail.: no request, and the reason says so.
    assert!(
        requests.iter().all(|r| r.json()["subject"] != "misc.thing"),
        "a misrouted subject reached the mailer"
    );
    let misc_letter = letter(&letters, misc.sequence);
    assert_eq!(misc_letter.subject, "dlq.misrouted");
    assert_eq!(misc_letter.header("Sinkhost-Attempts"), Some("1"));
    assert!(
        last_error(misc_letter).starts_with(r#"rejected: subject "misc.thing" is not under mail."#),
        "{}",
        last_error(misc_letter)
    );
    assert_eq!(requests.len(), 5, "welcome, auth.reset, brokn, flaky twice");
    assert!(
        !host.logs().join("\n").contains("mailer-k3y"),
        "the API key leaked into the log"
    );
}

/// http-webhook with `signing_secret` signs the Standard Webhooks way, which
/// the `standardwebhooks` library accepts (and refuses for a changed body);
/// a status in `reject_status` is dead-lettered after one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_webhook_signs_standard_webhooks_and_rejects_listed_statuses() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|req, _| {
        if req.idempotency_key() == Some("refuse-me") {
            Reply::status(422).body("order 7 is unknown")
        } else {
            Reply::ok()
        }
    })
    .await;
    let settings = format!(
        "settings: {{signing_secret: \"{STANDARD_SECRET}\", reject_status: [422]}}\nretries: 3"
    );
    let config = config(
        "signed_s",
        &["hook.>"],
        &[sub_yaml(
            "signed",
            "hook.>",
            &receiver.url("/hook"),
            &settings,
        )],
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    let payload = "{\"order_id\": 42, \"note\": \"Caf\u{e9} \u{2014} ok\"}";
    let ok = publish(&js, "hook.order", payload, &[]).await;
    let refused = publish(&js, "hook.order", "{}", &[("Nats-Msg-Id", "refuse-me")]).await;

    wait_metric(
        &host,
        "sinkhost_deliveries_total{subscription=\"signed\",outcome=\"delivered\"}",
        1.0,
        WAIT,
    )
    .await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"signed\"}",
        1.0,
        WAIT,
    )
    .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one POST each: 422 is in reject_status");

    let id = format!("nats-msg-{}", ok.sequence);
    let req = requests
        .iter()
        .find(|r| r.idempotency_key() == Some(id.as_str()))
        .expect("the signed order event");
    assert_eq!(req.header("webhook-id"), Some(id.as_str()));
    let timestamp: u64 = req.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(
        timestamp.abs_diff(unix_now()) < 60,
        "webhook-timestamp {timestamp} is not now"
    );
    assert!(
        req.header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,")),
        "{:?}",
        req.headers
    );
    assert_eq!(req.header("authorization"), Some("Bearer secret-signed"));
    let (verified, out) = standard_verify(&req.body, req, STANDARD_SECRET).await;
    assert!(verified, "standardwebhooks refused the request: {out}");
    let envelope: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(envelope["message_id"], id.as_str());
    assert_eq!(
        envelope["data"],
        serde_json::json!({"order_id": 42, "note": "Caf\u{e9} \u{2014} ok"})
    );

    // The check could fail: a changed body, or another key, is refused.
    let tampered = req.body_text().replace("42", "43");
    let (verified, out) = standard_verify(tampered.as_bytes(), req, STANDARD_SECRET).await;
    assert!(!verified, "a tampered body verified: {out}");
    assert!(out.contains("No matching signature found"), "{out}");
    let other = "whsec_c2lua2hvc3Qtb3RoZXIta2V5LTAwMDAwMDAw";
    let (verified, out) = standard_verify(&req.body, req, other).await;
    assert!(!verified, "another key verified: {out}");

    let letters = dlq_messages(&js, "signed_s").await;
    let letter = letter(&letters, refused.sequence);
    assert_eq!(letter.header("Sinkhost-Attempts"), Some("1"));
    assert_eq!(
        last_error(letter),
        "rejected: HTTP 422: order 7 is unknown (listed in settings.reject_status)"
    );
    assert!(
        !host.logs().join("\n").contains(STANDARD_SECRET),
        "the signing secret leaked into the log"
    );
}

/// A missing or malformed secret or key is a configuration error: `sinkhost
/// check` exits 2 naming the subscription and the problem, never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_missing_or_malformed_plugin_secrets() {
    let url = "http://127.0.0.1:9/x";
    for (plugin, settings, expected) in [
        (
            "mailer-apikey",
            "{}",
            "subscription bad (plugin mailer-apikey): plugin init failed: settings.api_key is required",
        ),
        (
            "drupal-stripe",
            "{signing_secret: \"sk_live_n0t-a-whsec\"}",
            "subscription bad (plugin drupal-stripe): plugin init failed: settings.signing_secret must be a Stripe webhook signing secret",
        ),
        (
            "http-webhook",
            "{signing_secret: \"whsec_n0t base64!\"}",
            "subscription bad (plugin http-webhook): plugin init failed: settings.signing_secret must be whsec_ followed by standard base64",
        ),
    ] {
        let config = config(
            "check_s",
            &["x.>"],
            &[sub_yaml(
                "bad",
                "x.>",
                url,
                &format!("plugin: {plugin}\nsettings: {settings}"),
            )],
        );
        let dir: PathBuf = config.path().to_owned();
        let out = sinkhost_cli(
            &["check", "--config-dir", dir.to_str().unwrap()],
            "nats://unused:1",
            &[],
            WAIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{plugin}: {out:?}");
        assert!(
            out.stderr.contains(expected),
            "{plugin} stderr:\n{}\nexpected {expected:?}",
            out.stderr
        );
        for secret in ["sk_live_n0t-a-whsec", "n0t base64!"] {
            assert!(!out.stderr.contains(secret), "{plugin}: {}", out.stderr);
        }
    }
}
