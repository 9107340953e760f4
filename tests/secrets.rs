//! Secrets in webhook URLs and `${VAR}` values never leave the host (issue 10).
//!
//! Each destination here has a secret in one part of its URL (user info, path,
//! query, fragment) or in a value expanded from the environment, and fails in
//! one way (connection refused, timeout, an HTTP status, a reject that quotes
//! the request). Every output an operator or a NATS reader sees is checked for
//! every secret, and for what still has to be there to act on: the host, the
//! port and the kind of failure. Outputs: the JSON log, the dead letter's
//! `Sinkhost-Last-Error`, `sinkhost dlq list` (table and `--json`), `/healthz`,
//! `/metrics`, `sinkhost check` (a plugin whose `init` quotes its config, a
//! malformed URL), reload messages and `sinkhost plugin test`. The opt-out,
//! `webhook.log_url: full`, shows its URL whole.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{hostile_plugin, metric, stream_yaml, sub_yaml};
use support::{
    CliOutput, ConfigDir, Host, NatsServer, Receiver, Reply, dlq_stream_name, publish,
    sinkhost_cli, wait_for_stream_messages,
};

const WAIT: Duration = Duration::from_secs(30);

const USER: &str = "alice-user";
const PASSWORD: &str = "S3cretPW-userinfo";
const PATH: &str = "PathSecret-T0B0X";
const QUERY: &str = "QuerySecret-tok";
const FRAGMENT: &str = "FragmentSecret-f";
/// Put in `settings.note`, a key that does not look secret: only its coming
/// from `${SECRETS_TEST_NOTE}` makes it one.
const NOTE: &str = "NoteSecret-from-env";
/// `settings.api_key` of the mailer, from `${SECRETS_TEST_API_KEY}`.
const API_KEY: &str = "ApiKeySecret-from-env";

/// The environment of every host and command here.
const ENV: [(&str, &str); 2] = [
    ("SECRETS_TEST_NOTE", NOTE),
    ("SECRETS_TEST_API_KEY", API_KEY),
];

/// A port on 127.0.0.1 where nothing listens: bound, then released.
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A URL with a secret in every part a URL has.
fn secret_url(port: u16) -> String {
    format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}/services/{PATH}?token={QUERY}#{FRAGMENT}")
}

/// Panics if `text` (one of the outputs, named by `what`) holds any secret:
/// the URL parts, the `${VAR}` values, and the `Bearer secret-<name>` header
/// values `sub_yaml` configures for `subscriptions`.
fn assert_clean(what: &str, text: &str, subscriptions: &[&str]) {
    let bearers: Vec<String> = subscriptions
        .iter()
        .map(|s| format!("secret-{s}"))
        .collect();
    let fixed = [USER, PASSWORD, PATH, QUERY, FRAGMENT, NOTE, API_KEY];
    for secret in fixed
        .iter()
        .copied()
        .chain(bearers.iter().map(String::as_str))
    {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

/// Panics unless `text` holds every one of `needles`.
fn assert_says(what: &str, text: &str, needles: &[String]) {
    for needle in needles {
        assert!(
            text.contains(needle.as_str()),
            "{what} does not say {needle:?}:\n{text}"
        );
    }
}

/// One failing destination of [`outputs_name_the_destination_but_none_of_its_secrets`].
struct Case {
    name: &'static str,
    /// The subscription entry (under `subscriptions:`).
    yaml: String,
    /// What its dead letter's reason must say.
    says: Vec<String>,
}

fn refused_case(name: &'static str, url: String, port: u16) -> Case {
    Case {
        name,
        yaml: sub_yaml(name, &format!("sec.{name}"), &url, "retries: 0"),
        says: vec![
            format!(
                "gave up after 1 attempts; last: plugin asked to retry after HTTP request connection failed (http://127.0.0.1:{port}/...)"
            ),
            "Connection refused".into(),
        ],
    }
}

/// The JSON log's `dead-lettered` line of each subscription: name -> reason.
fn dead_lettered_reasons(host: &Host) -> BTreeMap<String, String> {
    host.json_logs()
        .into_iter()
        .filter(|line| line["fields"]["message"] == "dead-lettered")
        .map(|line| {
            let fields = &line["fields"];
            let name = fields["subscription"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                name,
                fields["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Refused, timed out, answered with a status, rejected quoting the request,
/// and a plugin that logs and rejects with its whole config: the JSON log, the
/// dead letters, `dlq list`, `/healthz` and `/metrics` name host, port and
/// failure, and show none of the secrets; `log_url: full` shows its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_name_the_destination_but_none_of_its_secrets() {
    let nats = NatsServer::start();
    let refused = refused_port();
    let silent = Receiver::start(|_, _| Reply::ok().delay(Duration::from_secs(3600))).await;
    let unavailable = Receiver::start(|r, _| {
        // A destination that quotes the request back, as many error pages do.
        let query = r.query.clone().unwrap_or_default();
        Reply::status(503).body(format!("nothing at {}?{query}", r.path))
    })
    .await;
    let not_found = Receiver::start(|r, _| {
        let query = r.query.clone().unwrap_or_default();
        Reply::status(404).body(format!("no route for {}?{query}", r.path))
    })
    .await;
    let ok = Receiver::ok().await;
    let mailer = Receiver::start(|r, _| {
        let key = r.header("x-api-key").unwrap_or_default();
        Reply::status(422).body(format!("invalid api key {key}"))
    })
    .await;
    let port = |receiver: &Receiver| receiver.addr().port();

    let cases = vec![
        refused_case(
            "userinfo",
            format!("http://{USER}:{PASSWORD}@127.0.0.1:{refused}/hook"),
            refused,
        ),
        refused_case(
            "path",
            format!("http://127.0.0.1:{refused}/services/T0/B0/{PATH}"),
            refused,
        ),
        refused_case(
            "fragment",
            format!("http://127.0.0.1:{refused}/hook#{FRAGMENT}"),
            refused,
        ),
        Case {
            name: "timeout",
            yaml: sub_yaml(
                "timeout",
                "sec.timeout",
                &silent.url(&format!("/hook?token={QUERY}")),
                "retries: 0\ntimeout: \"300ms\"",
            ),
            says: vec![format!(
                "plugin asked to retry after HTTP request timed out (http://127.0.0.1:{}/...)",
                port(&silent)
            )],
        },
        Case {
            name: "status",
            yaml: sub_yaml(
                "status",
                "sec.status",
                &unavailable.url(&format!("/hook/{PATH}?sig={QUERY}")),
                "retries: 0",
            ),
            says: vec![format!(
                "plugin asked to retry after HTTP 503 from http://127.0.0.1:{}/...",
                port(&unavailable)
            )],
        },
        Case {
            name: "reject",
            yaml: sub_yaml(
                "reject",
                "sec.reject",
                &not_found.url(&format!("/hook/{PATH}?api_key={QUERY}")),
                "retries: 0\nsettings: {reject_status: [404]}",
            ),
            says: vec![
                "rejected: HTTP 404: no route for [redacted] (listed in settings.reject_status)"
                    .into(),
            ],
        },
        Case {
            name: "echo",
            yaml: sub_yaml(
                "echo",
                "sec.echo",
                &ok.url(&format!("/hook/{PATH}?k={QUERY}")),
                &format!(
                    "retries: 0\nplugin: \"{}\"\nsettings: {{mode: echo, note: \"${{SECRETS_TEST_NOTE}}\"}}",
                    hostile_plugin()
                ),
            ),
            says: vec![
                "rejected: rejecting; my config is".into(),
                format!("\"url\":\"http://127.0.0.1:{}[redacted]\"", port(&ok)),
                "\"note\":\"[redacted]\"".into(),
            ],
        },
        Case {
            name: "mailer",
            yaml: sub_yaml(
                "mailer",
                "mail.sec",
                &mailer.url("/mail-template"),
                "retries: 0\nplugin: mailer-apikey\nsettings: {api_key: \"${SECRETS_TEST_API_KEY}\"}",
            ),
            says: vec!["rejected: the mailer answered HTTP 422: invalid api key [redacted]".into()],
        },
        Case {
            name: "full",
            yaml: {
                let url = format!("http://127.0.0.1:{refused}/visible-path?visible=yes");
                let yaml = sub_yaml("full", "sec.full", &url, "retries: 0");
                yaml.replace("      headers:\n", "      log_url: full\n      headers:\n")
            },
            says: vec![format!(
                "HTTP request connection failed (http://127.0.0.1:{refused}/visible-path?visible=yes): error sending request"
            )],
        },
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("secrets_s", &["sec.>", "mail.>"]),
            cases.iter().map(|c| c.yaml.as_str()).collect::<String>()
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &ENV).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for case in &cases {
        let subject = if case.name == "mailer" {
            "mail.sec".to_owned()
        } else {
            format!("sec.{}", case.name)
        };
        publish(&js, &subject, "{\"n\": 1}", &[("Nats-Msg-Id", case.name)]).await;
    }
    let letters =
        wait_for_stream_messages(&js, &dlq_stream_name("secrets_s"), cases.len(), WAIT).await;

    // Dead letters: Sinkhost-Last-Error.
    let last_errors: BTreeMap<String, String> = letters
        .iter()
        .map(|letter| {
            let sub = letter.header("Sinkhost-Subscription").unwrap_or_default();
            let reason = letter.header("Sinkhost-Last-Error").unwrap_or_default();
            (sub.to_owned(), reason.to_owned())
        })
        .collect();
    // The JSON log: each dead-lettered line, then every line.
    for case in &cases {
        let name = format!("\"subscription\":\"{}\"", case.name);
        host.wait_for_log_where(
            &format!("the dead-lettered line of {}", case.name),
            |line| line.contains("\"message\":\"dead-lettered\"") && line.contains(&name),
            WAIT,
        )
        .await;
    }
    let logged = dead_lettered_reasons(&host);
    for case in &cases {
        for (what, reasons) in [("Sinkhost-Last-Error", &last_errors), ("the log", &logged)] {
            let reason = reasons
                .get(case.name)
                .unwrap_or_else(|| panic!("no {what} for {}: {reasons:?}", case.name));
            let what = format!("{what} of {}", case.name);
            assert_clean(&what, reason, &names);
            assert_says(&what, reason, &case.says);
        }
    }
    // The plugins' own lines (the SDK's warning, the echo plugin's log) too.
    let plugin_lines: Vec<String> = host
        .json_logs()
        .into_iter()
        .filter(|line| line["fields"]["plugin"] == true)
        .map(|line| line.to_string())
        .collect();
    let echo_line = plugin_lines
        .iter()
        .find(|line| line.contains("my config is"))
        .expect("the echo plugin's log line");
    assert!(echo_line.contains("[redacted]"), "{echo_line}");
    assert_clean("the JSON log", &host.logs().join("\n"), &names);

    // `dlq list`, as a table and as JSON.
    let dir = config.path().to_str().expect("a UTF-8 path");
    let table = sinkhost_cli(
        &["dlq", "list", "--config-dir", dir],
        &nats.url(),
        &ENV,
        WAIT,
    )
    .await;
    assert!(table.status.success(), "{table:?}");
    assert_clean(
        "dlq list",
        &format!("{}{}", table.stdout, table.stderr),
        &names,
    );
    let row = |name: &str| {
        table
            .stdout
            .lines()
            .find(|line| line.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", table.stdout))
            .to_owned()
    };
    assert_says("dlq list", &row("userinfo"), &cases[0].says);
    assert_says("dlq list", &row("timeout"), &cases[3].says);
    let json = sinkhost_cli(
        &["dlq", "list", "--config-dir", dir, "--json"],
        &nats.url(),
        &ENV,
        WAIT,
    )
    .await;
    assert!(json.status.success(), "{json:?}");
    assert_clean("dlq list --json", &json.stdout, &names);
    for line in json.stdout.lines() {
        let letter: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let name = letter["subscription"].as_str().unwrap_or_default();
        let case = cases.iter().find(|c| c.name == name).expect("a known case");
        let last_error = letter["last_error"].as_str().unwrap_or_default();
        assert_says(
            &format!("dlq list --json of {name}"),
            last_error,
            &case.says,
        );
    }

    // /healthz and /metrics: names and kinds only.
    let (_, health) = host.http_get("/healthz").await;
    assert_clean("/healthz", &health, &names);
    assert_says("/healthz", &health, &["\"userinfo\":\"consuming\"".into()]);
    let (_, metrics) = host.http_get("/metrics").await;
    assert_clean("/metrics", &metrics, &names);
    for (name, result) in [
        ("userinfo", "connect"),
        ("timeout", "timeout"),
        ("status", "5xx"),
    ] {
        let series =
            format!("sinkhost_http_requests_total{{subscription=\"{name}\",result=\"{result}\"}}");
        assert_eq!(metric(&host, &series).await, Some(1.0), "{series}");
    }
}

async fn check(config: &ConfigDir, env: &[(&str, &str)]) -> CliOutput {
    let dir = config.path().to_str().expect("a UTF-8 path");
    sinkhost_cli(
        &["check", "--config-dir", dir],
        "nats://unused:1",
        env,
        WAIT,
    )
    .await
}

/// `sinkhost check` and a rejected reload print the same message: a plugin
/// whose `init` quotes its whole config, and a malformed URL from `${VAR}`,
/// keep the secrets out and still name the file, the subscription, the host,
/// the port and what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_reload_messages_keep_the_secrets_out() {
    let nats = NatsServer::start();
    let ok = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("check_s", &["chk.>"]),
            sub_yaml(
                "good",
                "chk.good",
                &ok.url(&format!("/hook?token={QUERY}")),
                ""
            ),
        ),
    );
    let names = ["good", "loud"];
    let valid = check(&config, &ENV).await;
    assert!(valid.status.success(), "{valid:?}");
    assert_clean(
        "check",
        &format!("{}{}", valid.stdout, valid.stderr),
        &names,
    );

    let host = Host::start(config.path(), &nats.url(), &ENV).await;
    host.wait_healthy(WAIT).await;

    // A plugin that refuses to start, quoting everything it was given.
    let port = refused_port();
    let loud = sub_yaml(
        "loud",
        "chk.loud",
        &secret_url(port),
        &format!(
            "plugin: \"{}\"\nsettings: {{mode: init-echo, note: \"${{SECRETS_TEST_NOTE}}\"}}",
            hostile_plugin()
        ),
    );
    config.write("20-loud.yml", format!("subscriptions:\n{loud}"));
    let refused = check(&config, &ENV).await;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let says = [
        "20-loud.yml:2: subscription loud (plugin ".to_owned(),
        "plugin init failed: refusing to start with".into(),
        format!("@127.0.0.1:{port}[redacted]"),
        "\"note\":\"[redacted]\"".into(),
    ];
    assert_clean("check", &refused.stderr, &names);
    assert_says("check", &refused.stderr, &says);
    // The watcher notices the new file and rejects the reload the same way.
    let rejected = host.wait_for_log("config reload rejected", WAIT).await;
    let rejected: serde_json::Value = serde_json::from_str(&rejected).expect("a JSON line");
    let rejected = rejected["fields"]["error"].as_str().unwrap_or_default();
    assert_clean("the rejected reload", rejected, &names);
    assert_says("the rejected reload", rejected, &says);

    // A URL that does not parse, from the environment, with a secret in its query.
    let bad = sub_yaml("loud", "chk.loud", "${SECRETS_TEST_BAD_URL}", "");
    config.write("20-loud.yml", format!("subscriptions:\n{bad}"));
    let bad_url = format!("127.0.0.1:{port}/services/{PATH}?token={QUERY}");
    let env = [ENV[0], ENV[1], ("SECRETS_TEST_BAD_URL", bad_url.as_str())];
    let malformed = check(&config, &env).await;
    assert_eq!(malformed.status.code(), Some(2), "{malformed:?}");
    assert_clean("check", &malformed.stderr, &names);
    assert_says(
        "check",
        &malformed.stderr,
        &[format!(
            "20-loud.yml:6: subscriptions[0].webhook.url: invalid URL \"127.0.0.1:{port}/...\": relative URL without a base"
        )],
    );

    // Fixed: the applied reload names subscriptions, nothing of their config.
    let fixed = sub_yaml("loud", "chk.loud", &ok.url(&format!("/other/{PATH}")), "");
    config.write("20-loud.yml", format!("subscriptions:\n{fixed}"));
    let applied = host.wait_for_log("config reloaded", WAIT).await;
    assert_says("the applied reload", &applied, &["added: loud".into()]);
    assert_clean("the JSON log", &host.logs().join("\n"), &names);
}

/// `sinkhost plugin test`, sending for real to a refused port and as a dry
/// run: the outcome and the printed request name the destination by scheme,
/// host and port; `--log-url full` prints the URL but not its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_output_names_the_destination_but_none_of_its_secrets() {
    let port = refused_port();
    let config = ConfigDir::new().file("p.json", "{\"n\": 1}");
    let payload = config.path().join("p.json");
    let payload = payload.to_str().expect("a UTF-8 path");
    let url = secret_url(port);
    let names = ["cli"];

    let sent = plugin_test(payload, &url, &[]).await;
    assert_eq!(sent.status.code(), Some(1), "{sent:?}");
    let output = format!("{}{}", sent.stdout, sent.stderr);
    assert_clean("plugin test", &output, &names);
    assert_says(
        "plugin test",
        &sent.stdout,
        &[
            format!(
                "outcome: retry (last HTTP request connection failed (http://127.0.0.1:{port}/...): error sending request"
            ),
            "Connection refused".into(),
        ],
    );
    // The SDK's warning, through the host's log.
    assert_says(
        "plugin test",
        &sent.stderr,
        &[format!(
            "connection failed: http://127.0.0.1:{port}/...: error sending request"
        )],
    );

    let dry = plugin_test(payload, &url, &["--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{dry:?}");
    assert_clean(
        "plugin test --dry-run",
        &format!("{}{}", dry.stdout, dry.stderr),
        &names,
    );
    assert_says(
        "plugin test --dry-run",
        &dry.stdout,
        &[
            format!("POST http://127.0.0.1:{port}/...\n"),
            format!("outcome: delivered (last HTTP 200 from http://127.0.0.1:{port}/...)"),
        ],
    );

    let full = plugin_test(payload, &url, &["--dry-run", "--log-url", "full"]).await;
    assert_eq!(full.status.code(), Some(0), "{full:?}");
    assert_says(
        "plugin test --log-url full",
        &full.stdout,
        &[format!(
            "POST http://{USER}:***@127.0.0.1:{port}/services/{PATH}?token={QUERY}#{FRAGMENT}\n"
        )],
    );
    assert!(!full.stdout.contains(PASSWORD), "{}", full.stdout);
}

/// `sinkhost plugin test http-webhook` on `payload`, to `url` with a Bearer
/// header, plus `extra` arguments.
async fn plugin_test(payload: &str, url: &str, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "plugin",
        "test",
        "http-webhook",
        "--subject",
        "a.b",
        "--payload",
        payload,
        "--url",
        url,
        "--webhook-header",
        "Authorization: Bearer secret-cli",
        "--timeout",
        "5s",
    ];
    args.extend(extra);
    sinkhost_cli(&args, "nats://unused:1", &ENV, WAIT).await
}
