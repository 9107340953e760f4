//! Hostile plugins (tests/plugins/hostile, `settings.mode`): each case asserts the
//! mechanism that contains the misbehaviour, and that another subscription on the
//! same host keeps delivering meanwhile. CPU loops, memory exhaustion and traps are
//! in tests/delivery.rs.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use common::{hostile_plugin, metric, stream_yaml, sub_yaml, wait_metric};
use support::{
    ConfigDir, Host, NatsServer, Receiver, Recorded, dlq_messages, publish, sinkhost_cli,
};

const WAIT: Duration = Duration::from_secs(30);

/// A hostile subscription's `extra` lines for `sub_yaml`.
fn hostile(settings: &str, extra: &str) -> String {
    format!(
        "plugin: \"{}\"\nsettings: {{{settings}}}\n{extra}",
        hostile_plugin()
    )
}

/// The `fine.>` subscription every case runs next to the hostile one(s).
fn fine(receiver: &Receiver) -> String {
    sub_yaml("fine", "fine.>", &receiver.url("/hook"), "")
}

/// Publishes `n` messages to `fine.<tag>.<i>` and waits until the healthy
/// receiver has all of them: the host still serves other subscriptions.
async fn assert_fine_flows(
    js: &async_nats::jetstream::Context,
    healthy: &Receiver,
    tag: &str,
    n: usize,
) {
    let before = healthy.count();
    for i in 0..n {
        publish(js, &format!("fine.{tag}.{i}"), "{}", &[]).await;
    }
    healthy.wait_for(before + n, WAIT).await;
}

/// The host's JSON log lines with `fields.subscription == subscription`.
fn lines_of(host: &Host, subscription: &str) -> Vec<serde_json::Value> {
    host.json_logs()
        .into_iter()
        .filter(|l| l["fields"]["subscription"] == subscription)
        .collect()
}

/// Waits until the one call of `subscription` was delivered or cut by the CPU
/// deadline (a flood usually fits the budget; a busy machine may cut it short,
/// which contains it as well); returns (delivered, cut).
async fn call_ended(host: &Host, subscription: &str) -> (f64, f64) {
    let series = |outcome: &str| {
        format!(
            "sinkhost_deliveries_total{{subscription=\"{subscription}\",outcome=\"{outcome}\"}}"
        )
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let delivered = metric(host, &series("delivered")).await.unwrap_or(0.0);
        let cut = metric(host, &series("deadline")).await.unwrap_or(0.0);
        if delivered + cut >= 1.0 || tokio::time::Instant::now() > deadline {
            return (delivered, cut);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The report the hostile plugin POSTed (its `Idempotency-Key` ends in `-report`).
async fn report(receiver: &Receiver) -> Recorded {
    let requests = receiver
        .wait_until(
            |reqs| {
                reqs.iter()
                    .any(|r| r.idempotency_key().is_some_and(|k| k.ends_with("-report")))
            },
            WAIT,
        )
        .await;
    requests
        .into_iter()
        .find(|r| r.idempotency_key().is_some_and(|k| k.ends_with("-report")))
        .expect("the report")
}

/// A 10 MiB reject reason is cut before it reaches a log line or a dead-letter
/// header; a retry delay of `u64::MAX` ms becomes the 1 h cap, not years.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_reject_reason_and_endless_retry_delay_are_capped() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("garbage_s", &["rej.>", "wait.>", "fine.>"]),
            sub_yaml(
                "rejecter",
                "rej.>",
                &pings.url("/rej"),
                &hostile("mode: huge-reject", "")
            ),
            sub_yaml(
                "patient",
                "wait.>",
                &pings.url("/wait"),
                &hostile("mode: retry-forever", "retries: 3")
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "rej.1", "{}", &[]).await;
    publish(&js, "wait.1", "{}", &[]).await;
    assert_fine_flows(&js, &healthy, "before", 3).await;

    // The reject: dead-lettered at once, with the reason cut.
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"rejecter\"}",
        1.0,
        WAIT,
    )
    .await;
    let letters = dlq_messages(&js, "garbage_s").await;
    let reason = letters
        .iter()
        .find(|l| l.subject == "dlq.rejecter")
        .and_then(|l| l.header("Sinkhost-Last-Error"))
        .expect("the rejecter's dead letter has a last error")
        .to_owned();
    assert!(reason.starts_with("rejected: xxxx"), "{reason:.100}");
    assert!(reason.len() <= 1024, "header is {} bytes", reason.len());
    let dead_lettered = host
        .wait_for_log_where(
            "the rejecter's dead-lettered line",
            |l| l.contains("\"dead-lettered\"") && l.contains("rejecter"),
            WAIT,
        )
        .await;
    assert!(
        dead_lettered.len() < 8 << 10,
        "the dead-lettered log line is {} bytes",
        dead_lettered.len()
    );

    // The endless delay: a retry after the 1 h cap, not after u64::MAX ms.
    let retry = host
        .wait_for_log_where(
            "the patient subscription's retry line",
            |l| l.contains("will retry") && l.contains("patient"),
            WAIT,
        )
        .await;
    let retry: serde_json::Value = serde_json::from_str(&retry).expect("a JSON log line");
    assert_eq!(retry["fields"]["retry_in_ms"], 3_600_000, "{retry}");
    assert_eq!(retry["fields"]["attempt"], 1, "{retry}");
    assert_eq!(
        metric(
            &host,
            "sinkhost_deliveries_total{subscription=\"patient\",outcome=\"retry\"}"
        )
        .await,
        Some(1.0)
    );
    assert!(
        !dlq_messages(&js, "garbage_s")
            .await
            .iter()
            .any(|l| l.subject == "dlq.patient"),
        "a retry is not a dead letter"
    );

    assert_fine_flows(&js, &healthy, "after", 3).await;
    let longest = host.logs().iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 8 << 10, "the longest log line is {longest} bytes");
}

/// `http.send` to a host:port outside the allowlist answers `denied` inside the
/// plugin, and nothing reaches that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_that_is_not_allowed_is_denied_and_never_sent() {
    let nats = NatsServer::start();
    let allowed = Receiver::ok().await;
    let outsider = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let settings = format!(
        "mode: forbidden-http, target: \"{}\"",
        outsider.url("/exfiltrate")
    );
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("denied_s", &["snitch.>", "fine.>"]),
            sub_yaml(
                "snitch",
                "snitch.>",
                &allowed.url("/ping"),
                &hostile(&settings, "")
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "snitch.1", "{}", &[]).await;

    let report = report(&allowed).await.json();
    let result = report["result"].as_str().unwrap_or_default();
    assert!(result.starts_with("denied: "), "{report}");
    assert!(result.contains(&outsider.addr().to_string()), "{report}");
    wait_metric(
        &host,
        "sinkhost_http_requests_total{subscription=\"snitch\",result=\"denied\"}",
        1.0,
        WAIT,
    )
    .await;
    assert_fine_flows(&js, &healthy, "after", 3).await;
    outsider
        .assert_count_stays(0, Duration::from_millis(500))
        .await;
    assert_eq!(
        metric(
            &host,
            "sinkhost_http_requests_total{subscription=\"snitch\",result=\"denied\"}"
        )
        .await,
        Some(1.0)
    );
}

/// Files (a system one and one the test names) and the host's environment are
/// invisible to a plugin: it reports the failures, never the contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_environment_are_out_of_reach() {
    let nats = NatsServer::start();
    let allowed = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let secrets = ConfigDir::new();
    let file = secrets.write("secret.txt", "file-secret-4711");
    let settings = format!("mode: snoop, file: \"{}\"", file.display());
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("snoop_s", &["snoop.>", "fine.>"]),
            sub_yaml(
                "snoop",
                "snoop.>",
                &allowed.url("/ping"),
                &hostile(&settings, "")
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(
        config.path(),
        &nats.url(),
        &[("SECRET_IN_HOST_ENV", "env-secret-0815")],
    )
    .await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "snoop.1", "{}", &[]).await;

    let recorded = report(&allowed).await;
    let body = recorded.body_text();
    let report = recorded.json();
    for key in ["passwd", "file", "env"] {
        let seen = report[key].as_str().unwrap_or_default();
        assert!(seen.starts_with("error: "), "{key}: {report}");
    }
    assert_eq!(report["env_count"], 0, "{report}");
    for secret in ["env-secret-0815", "file-secret-4711", "root:"] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    assert_fine_flows(&js, &healthy, "after", 3).await;
}

/// 100,000 log lines of 100 KiB in one call: the host writes the per-call limit
/// (100 lines, each cut to 4 KiB) and one warning counting the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_is_cut_to_the_per_call_limit() {
    const LIMIT: usize = 100;
    const LINE_BYTES: usize = 4096;
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("flood_s", &["flood.>", "fine.>"]),
            sub_yaml(
                "flood",
                "flood.>",
                &pings.url("/ping"),
                &hostile(
                    "mode: log-flood, lines: 100000, line_bytes: 102400",
                    "retries: 0"
                )
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "flood.1", "{}", &[]).await;

    let warning = host
        .wait_for_log_where(
            "the dropped-lines warning",
            |l| l.contains("were dropped") && l.contains("flood"),
            WAIT,
        )
        .await;
    let warning: serde_json::Value = serde_json::from_str(&warning).expect("a JSON log line");
    assert_fine_flows(&js, &healthy, "after", 3).await;

    let lines = lines_of(&host, "flood");
    let plugin_lines: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["plugin"] == true)
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(plugin_lines.len(), LIMIT);
    for line in &plugin_lines {
        assert!(
            line.len() <= LINE_BYTES + "...[truncated]".len(),
            "{}",
            line.len()
        );
        assert!(line.ends_with("...[truncated]"));
    }
    let warnings = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("were dropped"))
        })
        .count();
    assert_eq!(warnings, 1);
    let dropped = warning["fields"]["dropped"].as_u64().unwrap_or_default();
    assert!(dropped >= 1, "{warning}");
    let total: usize = host.logs().iter().map(|l| l.len() + 1).sum();
    assert!(total < 1 << 20, "the host printed {total} bytes");
    // The flood usually fits the 1 s CPU budget (the lines past the limit cost
    // only their copy); on a busy machine the deadline may cut it short, which
    // contains it as well. Either way the call ended and was counted once.
    let (delivered, cut) = call_ended(&host, "flood").await;
    assert_eq!(
        delivered + cut,
        1.0,
        "one call, delivered or cut by the deadline"
    );
    if delivered == 1.0 {
        assert_eq!(dropped, 100_000 - LIMIT as u64, "{warning}");
    }
}

/// What a guest writes to stdout and stderr lands in the host's log as the
/// plugin's lines, with its subscription and message id: `println!` at info,
/// `eprintln!` at warn, and a panic's message (on stderr) next to the trap it
/// caused, so an author sees why the plugin crashed, not only that it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stdout_stderr_and_panic_messages_reach_the_log() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}{}",
            stream_yaml("stdio_s", &["chatty.>", "crashy.>", "fine.>"]),
            sub_yaml(
                "chatty",
                "chatty.>",
                &pings.url("/ping"),
                &hostile("mode: stdio", "")
            ),
            sub_yaml(
                "crashy",
                "crashy.>",
                &pings.url("/ping"),
                &hostile("mode: trap", "retries: 0")
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "chatty.1", "{}", &[("Nats-Msg-Id", "talk-1")]).await;
    publish(&js, "crashy.1", "{}", &[("Nats-Msg-Id", "boom-1")]).await;
    wait_metric(
        &host,
        "sinkhost_dead_letters_total{subscription=\"crashy\"}",
        1.0,
        WAIT,
    )
    .await;
    host.wait_for_log("to stderr: talk-1", WAIT).await;
    assert_fine_flows(&js, &healthy, "after", 2).await;

    let plugin_line = |subscription: &str, text: &str| {
        lines_of(&host, subscription)
            .into_iter()
            .find(|l| {
                l["fields"]["plugin"] == true
                    && l["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(text))
            })
            .unwrap_or_else(|| panic!("no plugin line with {text:?}:\n{}", host.logs().join("\n")))
    };
    let out = plugin_line("chatty", "to stdout: talk-1");
    assert_eq!(out["level"], "INFO", "{out}");
    assert_eq!(out["fields"]["stream"], "stdout", "{out}");
    assert_eq!(out["span"]["message_id"], "talk-1", "{out}");
    assert_eq!(out["fields"]["message"], "to stdout: talk-1", "{out}");
    let err = plugin_line("chatty", "to stderr: talk-1");
    assert_eq!(err["level"], "WARN", "{err}");
    assert_eq!(err["fields"]["stream"], "stderr", "{err}");
    let panic = plugin_line("crashy", "hostile plugin: trapping on purpose");
    assert_eq!(panic["level"], "WARN", "{panic}");
    assert_eq!(panic["fields"]["stream"], "stderr", "{panic}");
    assert_eq!(panic["span"]["message_id"], "boom-1", "{panic}");
}

/// A panic in `init` fails the start (exit 2) and its message is in the log:
/// the author reads what went wrong, not only "trapped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_init_is_shown() {
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}",
            stream_yaml("initp_s", &["initp.>"]),
            sub_yaml(
                "initp",
                "initp.>",
                &pings.url("/ping"),
                &hostile("mode: init-panic", "")
            ),
        ),
    );
    let host = Host::spawn(config.path(), &nats.url(), &[]);
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(2), "{}", host.logs().join("\n"));
    let logs = host.logs().join("\n");
    assert!(
        logs.contains("hostile plugin: panicking in init on purpose"),
        "the panic message is not in the log:\n{logs}"
    );
}

/// `plugin test` shows what the plugin printed, without `SINKHOST_LOG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_shows_the_guests_output() {
    let out = plugin_test("hostile", r#"{"mode": "stdio"}"#, &["--id", "shown-1"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_shown(&out, &["to stdout: shown-1", "to stderr: shown-1"]);
}

/// 250 MB written to stdout in one call: the per-call line budget holds (100
/// lines, each capped, one "dropped" line), the host's own output stays small,
/// and the other subscription keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_mb_stdout_flood_stays_bounded() {
    const LIMIT: usize = 100;
    let nats = NatsServer::start();
    let pings = Receiver::ok().await;
    let healthy = Receiver::ok().await;
    let config = ConfigDir::new().file(
        "10.yml",
        format!(
            "{}subscriptions:\n{}{}",
            stream_yaml("spill_s", &["spill.>", "fine.>"]),
            sub_yaml(
                "spill",
                "spill.>",
                &pings.url("/ping"),
                &hostile("mode: stdout-flood", "retries: 0")
            ),
            fine(&healthy)
        ),
    );
    let host = Host::start(config.path(), &nats.url(), &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    publish(&js, "spill.1", "{}", &[]).await;
    // Delivered, or cut by the CPU deadline on a busy machine: either way the
    // call ended, and its output was bounded.
    let (delivered, cut) = call_ended(&host, "spill").await;
    assert_eq!(
        delivered + cut,
        1.0,
        "one call, delivered or cut by the deadline"
    );
    host.wait_for_log_where(
        "the dropped-lines warning",
        |l| l.contains("were dropped") && l.contains("spill"),
        WAIT,
    )
    .await;
    assert_fine_flows(&js, &healthy, "after", 3).await;
    let lines = lines_of(&host, "spill");
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["stream"] == "stdout")
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(stdout.len(), LIMIT, "the per-call line budget");
    assert!(
        stdout
            .iter()
            .all(|l| l.len() <= 4096 + "...[truncated]".len())
    );
    let total: usize = host.logs().iter().map(|l| l.len() + 1).sum();
    assert!(total < 1 << 20, "the host printed {total} bytes");
}

/// The CPU budget counts the plugin's own running time, not the time a call
/// waits for the thread after the engine yielded it (every 10 ms of wasm, so
/// other deliveries run meanwhile). One thread, shared with a task that holds
/// it for 100 ms each time it runs: a plugin spinning forever under a 300 ms
/// budget is stopped by its deadline only after it ran about 300 ms itself,
/// about one 10 ms tick between the other task's turns, so that task gets
/// about 30 turns. If waits counted, the budget would be gone after three.
#[test]
fn the_cpu_budget_does_not_count_waits_for_a_busy_thread() {
    use sinkhost::outbound::{Allowlist, Outbound};
    use sinkhost::plugin::{Limits, Message, PluginError, Runtime, SinkSpec};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    one_thread.block_on(async {
        let budget = Duration::from_millis(300);
        let runtime = Runtime::new(Limits {
            cpu_per_call: budget,
            ..Limits::default()
        })
        .unwrap();
        let sink = runtime
            .sink(SinkSpec {
                subscription: "spin".into(),
                plugin: hostile_plugin().into(),
                init_json: serde_json::json!({
                    "subscription": "spin",
                    "webhook": {"url": "http://127.0.0.1:9/hook", "headers": {}},
                    "settings": {"mode": "loop"},
                })
                .to_string(),
                outbound: Outbound::dry_run(Allowlist::new(&[])).0,
                secrets: Vec::new(),
            })
            .unwrap();
        let turns = Arc::new(AtomicU32::new(0));
        let busy = tokio::spawn({
            let turns = turns.clone();
            async move {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    turns.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        let message = Message {
            subject: "spin.1".into(),
            payload: b"{}".to_vec(),
            headers: Vec::new(),
            id: "spin-1".into(),
            published_ms: 0,
            attempt: 1,
            max_attempts: 1,
        };
        let started = std::time::Instant::now();
        let result = sink.deliver(&message).await;
        busy.abort();
        let turns = turns.load(Ordering::Relaxed);
        eprintln!(
            "spinner stopped after {:?} of wall time, the busy task had {turns} turns",
            started.elapsed()
        );
        assert!(
            matches!(result, Err(PluginError::Deadline(_))),
            "{result:?}"
        );
        assert!(
            turns > 10,
            "{turns} turns: time waiting for the thread was counted as CPU"
        );
    });
}

/// `sinkhost plugin test` of a test plugin (`target/release/test-plugins/NAME.wasm`)
/// with `settings` and `extra` arguments, as a dry run.
async fn plugin_test(name: &str, settings: &str, extra: &[&str]) -> support::CliOutput {
    let wasm = support::workspace_root().join(format!("target/release/test-plugins/{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `make examples`",
        wasm.display()
    );
    let mut args = vec![
        "plugin",
        "test",
        wasm.to_str().expect("a UTF-8 path"),
        "--subject",
        "order.completed",
        "--payload",
        r#"{"order_id": 42}"#,
        "--settings",
        settings,
        "--dry-run",
    ];
    args.extend(extra);
    sinkhost_cli(
        &args,
        "nats://unused:1",
        &[],
        // A first compile of a JS or Python plugin takes up to half a minute.
        Duration::from_secs(120),
    )
    .await
}

fn assert_shown(out: &support::CliOutput, lines: &[&str]) {
    for line in lines {
        assert!(
            out.stderr.contains(line),
            "{line:?} not shown:\n{}",
            out.stderr
        );
    }
}

/// An uncaught JavaScript exception shows its message and the guest's own
/// stack (file:line of the plugin's source) next to the trap, and
/// `console.log` / `console.error` reach the log. In `init`, componentize-js
/// 0.23 cannot turn a thrown `Error` into the init error (its bindings'
/// `instanceof Error` fails for an object of the plugin's realm): what shows
/// is its own complaint and the stack through `init`; a thrown string is the
/// init error, message and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_exceptions_show_their_message_and_stack() {
    let out = plugin_test("js-throws", r#"{"throw_in": "deliver"}"#, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_shown(
        &out,
        &[
            "js-throws: stdout line",
            "js-throws: stderr line",
            "js-throws: boom in deliver",
            "explode@plugin.js:",
            "deliver@plugin.js:",
        ],
    );
    assert!(
        out.stdout.contains("outcome: error: plugin trapped"),
        "{}",
        out.stdout
    );

    let out = plugin_test("js-throws", r#"{"throw_in": "init"}"#, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_shown(&out, &["expected a string, received [object]", "$init@"]);

    let out = plugin_test("js-throws", r#"{"throw_in": "init-string"}"#, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_shown(
        &out,
        &["plugin init failed: js-throws: bad settings in init"],
    );
}

/// An uncaught Python exception shows its type, message and traceback (file
/// and line of each frame) in `init` and in `deliver`, and `print` to stdout
/// and stderr reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exceptions_show_their_message_and_traceback() {
    let out = plugin_test("py-throws", r#"{"throw_in": "deliver"}"#, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_shown(
        &out,
        &[
            "py-throws: stdout line",
            "py-throws: stderr line",
            "Traceback (most recent call last):",
            "in deliver",
            "in explode",
            "RuntimeError: py-throws: boom in deliver",
        ],
    );
    assert!(
        out.stdout.contains("outcome: error: plugin trapped"),
        "{}",
        out.stdout
    );

    let out = plugin_test("py-throws", r#"{"throw_in": "init"}"#, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_shown(
        &out,
        &[
            "Traceback (most recent call last):",
            "in init",
            "RuntimeError: py-throws: boom in init",
        ],
    );
}
