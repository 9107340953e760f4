//! `sinkhost plugin test|new`: work on a plugin without NATS.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::args::{header_pairs, parse_settings};
use super::{config_error, init_logging};
use crate::config::PluginSearch;
use crate::config::redact::LogUrl;
use crate::plugin::{Delivery, Outcome};
use crate::tools::scaffold::{self, Lang};
use crate::tools::tryout::TryOut;

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// Run one plugin on one message and print its outcome (exit 0 delivered,
    /// 1 retry/reject/trap, 2 the plugin failed to load or init).
    Test(PluginTestArgs),
    /// Write a new plugin project that builds and passes `plugin test` as is.
    New {
        /// The plugin's name (lower case, digits, '-').
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The sinkhost-sdk crate (Rust only; default: this source tree's `sdk/`).
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
    /// A file holding the payload; `-` reads stdin.
    #[arg(long)]
    payload: PathBuf,
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
    /// Print the requests the plugin would make instead of sending them.
    #[arg(long)]
    dry_run: bool,
    /// Per-request timeout when sending for real.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// `webhook.log_url`: `host` prints the URL as `scheme://host:port/...`,
    /// `full` prints it whole (for a URL that holds no secret).
    #[arg(long, default_value = "host")]
    log_url: LogUrl,
}

pub(super) async fn plugin(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::Test(args) => {
            init_logging(false);
            test(args).await
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk);
            match scaffold::create(&name, lang, &dir, &sdk) {
                Ok(files) => {
                    for file in files {
                        println!("created {}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e),
            }
        }
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
    for request in &report.requests {
        println!("{request}\n");
    }
    let (line, code) = match report.result {
        Ok(Delivery { outcome, last_http }) => {
            let after = last_http
                .map(|h| format!(" (last {h})"))
                .unwrap_or_default();
            match outcome {
                Outcome::Delivered => (format!("delivered{after}"), ExitCode::SUCCESS),
                Outcome::Retry(delay) => {
                    let when = delay
                        .map(|d| format!(" in {}ms", d.as_millis()))
                        .unwrap_or_default();
                    (format!("retry{when}{after}"), ExitCode::FAILURE)
                }
                Outcome::Reject(reason) => (format!("reject: {reason}{after}"), ExitCode::FAILURE),
            }
        }
        Err(e) => (format!("error: {e}"), ExitCode::FAILURE),
    };
    println!("outcome: {line}");
    code
}

fn tryout_from(args: PluginTestArgs) -> anyhow::Result<TryOut> {
    let payload = if args.payload.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading stdin")?;
        bytes
    } else {
        std::fs::read(&args.payload)
            .with_context(|| format!("reading {}", args.payload.display()))?
    };
    Ok(TryOut {
        plugin: args.plugin,
        plugins: PluginSearch::from_env(),
        url: args.url,
        webhook_headers: header_pairs(&args.webhook_headers)?.into_iter().collect(),
        settings: parse_settings(args.settings.as_deref())?,
        subject: args.subject,
        payload,
        headers: header_pairs(&args.headers)?,
        id: args.id,
        dry_run: args.dry_run,
        timeout: args.timeout,
        log_url: args.log_url,
    })
}
