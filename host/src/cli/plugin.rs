//! `sinkhost plugin test|conformance|new`: work on a plugin without NATS.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::args::{header_pairs, parse_answer, parse_settings, read_payload};
use super::{config_error, init_logging};
use crate::config::PluginSearch;
use crate::config::redact::LogUrl;
use crate::delivery::retry::Action;
use crate::outbound::Answer;
use crate::plugin::{Delivery, Outcome, PluginError};
use crate::tools::conformance::{self, Sample};
use crate::tools::scaffold::{self, Lang};
use crate::tools::tryout::{Tried, TryOut};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Run one plugin on one message and print its outcome and what the host
    /// would do next (exit 0 delivered, 1 retry/reject/trap, 2 the plugin
    /// failed to load or init).
    Test(PluginTestArgs),
    /// Run the checks every plugin should pass (delivered on 2xx, retried on
    /// 5xx, Retry-After honoured, ...) against a destination on loopback and
    /// print a table (exit 0 when every required check passed, else 1).
    Conformance {
        /// A path to a `.wasm`.
        plugin: PathBuf,
        /// The plugin's `settings`: JSON text, or a JSON/YAML file.
        #[arg(long)]
        settings: Option<String>,
        /// The subject of the message the checks deliver.
        #[arg(long, default_value = "order.completed")]
        subject: String,
        /// Its payload: a file, `-` for stdin, or JSON text (default: an
        /// order event).
        #[arg(long)]
        payload: Option<String>,
    },
    /// Write a new plugin project that builds and passes `plugin conformance`
    /// as is.
    New {
        /// The plugin's name (lower case, digits, '-').
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Where the Rust SDK is: a release's `share/sinkhost` folder (its
        /// `sinkhost-sdk/` is copied into the project), or a source tree's
        /// `sdk/` (depended on by path). Default: `../share/sinkhost` beside
        /// this binary, else the source tree it was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// `sinkhost plugin test`'s arguments.
#[derive(Debug, Args)]
pub(super) struct PluginTestArgs {
    /// A built-in name (`http-webhook`) or a path to a `.wasm`.
    plugin: String,
    /// The message's subject.
    #[arg(long)]
    subject: String,
    /// The payload: a file, `-` for stdin, or JSON text.
    #[arg(long)]
    payload: String,
    /// The plugin's `settings`: JSON text, or a JSON/YAML file.
    #[arg(long)]
    settings: Option<String>,
    /// `webhook.url`.
    #[arg(long, default_value = "http://127.0.0.1:8091/hook")]
    url: String,
    /// A `webhook.headers` entry `Name: value`; repeatable.
    #[arg(long = "webhook-header")]
    webhook_headers: Vec<String>,
    /// A NATS header on the message `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The message id the plugin sees.
    #[arg(long, default_value = "plugin-test-1")]
    id: String,
    /// Print the requests the plugin would make instead of sending them
    /// (each is answered 200).
    #[arg(long)]
    dry_run: bool,
    /// Answer the next request `STATUS[:Header=value...]` instead of sending
    /// it (implies --dry-run); repeatable, one per request in order, e.g.
    /// `--respond 429:Retry-After=3 --respond 200`. While answers are left,
    /// a retried message is delivered again as the next attempt.
    #[arg(long, value_parser = parse_answer)]
    respond: Vec<Answer>,
    /// The attempt number the plugin sees first.
    #[arg(long, default_value_t = 1)]
    attempt: u32,
    /// Attempts in all before the message is dead-lettered (`retries + 1`;
    /// default config's, 4).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Per-request timeout when sending for real.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// `webhook.log_url`: `host` prints the URL as `scheme://host:port/...`,
    /// `full` prints it whole (for a URL that holds no secret).
    #[arg(long, default_value = "host")]
    log_url: LogUrl,
}

pub(super) async fn plugin(command: PluginCommand) -> ExitCode {
    init_logging(false);
    match command {
        PluginCommand::Test(args) => test(args).await,
        PluginCommand::Conformance {
            plugin,
            settings,
            subject,
            payload,
        } => {
            let parsed = parse_settings(settings.as_deref()).and_then(|settings| {
                let mut sample = Sample {
                    subject,
                    ..Sample::default()
                };
                if let Some(payload) = payload {
                    sample.payload = read_payload(&payload)?;
                }
                Ok((settings, sample))
            });
            match parsed {
                Ok((settings, sample)) => conformance(&plugin, settings, &sample).await,
                Err(e) => config_error(&format!("{e:#}")),
            }
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => match scaffold::create(&name, lang, &dir, sdk.as_deref()) {
            Ok(project) => {
                for file in &project.files {
                    println!("created {}", file.display());
                }
                println!("\nnext:\n{}", project.next_steps());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
    }
}

async fn test(args: PluginTestArgs) -> ExitCode {
    let tryout = match tryout_from(args) {
        Ok(tryout) => tryout,
        Err(e) => return config_error(&format!("{e:#}")),
    };
    let report = match tryout.run().await {
        Ok(report) => report,
        Err(e) => return config_error(&e),
    };
    for (n, tried) in report.attempts.iter().enumerate() {
        if n > 0 {
            println!();
        }
        println!("attempt {} of {}", tried.attempt, tried.max_attempts);
        for request in &tried.requests {
            println!("{request}\n");
        }
        println!("outcome: {}", outcome_line(&tried.result));
        println!("host: {}", action_line(&tried.action, tried));
    }
    if report.delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The plugin's outcome as `plugin test` prints it.
fn outcome_line(result: &Result<Delivery, PluginError>) -> String {
    match result {
        Ok(Delivery { outcome, last_http }) => {
            let after = last_http
                .as_ref()
                .map(|h| format!(" (last {h})"))
                .unwrap_or_default();
            match outcome {
                Outcome::Delivered => format!("delivered{after}"),
                Outcome::Retry(delay) => {
                    let when = delay
                        .map(|d| format!(" in {}ms", d.as_millis()))
                        .unwrap_or_default();
                    format!("retry{when}{after}")
                }
                Outcome::Reject(reason) => format!("reject: {reason}{after}"),
            }
        }
        Err(e) => format!("error: {e}"),
    }
}

/// What the host would do after `tried`, in words.
fn action_line(action: &Action, tried: &Tried) -> String {
    let next = tried.attempt + 1;
    let max = tried.max_attempts;
    let wait = |d: &std::time::Duration| humantime::format_duration(*d).to_string();
    match action {
        Action::Ack => "ack (the message is done)".to_owned(),
        Action::Nak(delay) => format!("nak; attempt {next} of {max} in {}", wait(delay)),
        Action::Again(delay) => format!(
            "nak; attempt {} again in {} (the plugin was not called)",
            tried.attempt,
            wait(delay)
        ),
        Action::DeadLetter(reason) => format!("dead-letter: {reason}"),
    }
}

async fn conformance(
    plugin: &std::path::Path,
    settings: serde_json::Value,
    sample: &Sample,
) -> ExitCode {
    let verdict = conformance::check(plugin, settings, sample).await;
    let width = verdict
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    println!("{:width$}  result  detail", "check");
    for check in &verdict.checks {
        let result = match (check.passed, check.required) {
            (true, _) => "ok",
            (false, true) => "FAIL",
            (false, false) => "advice",
        };
        println!("{:width$}  {result:6}  {}", check.name, check.detail);
    }
    let failed = verdict
        .checks
        .iter()
        .filter(|c| c.required && !c.passed)
        .count();
    let advice = verdict
        .checks
        .iter()
        .filter(|c| !c.required && !c.passed)
        .count();
    println!(
        "\n{}: {} checks, {failed} failed, {advice} advice (not required)",
        if verdict.passed() { "passed" } else { "FAILED" },
        verdict.checks.len()
    );
    if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn tryout_from(args: PluginTestArgs) -> anyhow::Result<TryOut> {
    Ok(TryOut {
        plugin: args.plugin,
        plugins: PluginSearch::from_env(),
        url: args.url,
        webhook_headers: header_pairs(&args.webhook_headers)?.into_iter().collect(),
        settings: parse_settings(args.settings.as_deref())?,
        subject: args.subject,
        payload: read_payload(&args.payload)?,
        headers: header_pairs(&args.headers)?,
        id: args.id,
        dry_run: args.dry_run,
        respond: args.respond,
        attempt: args.attempt,
        max_attempts: args.max_attempts,
        timeout: args.timeout,
        log_url: args.log_url,
    })
}
