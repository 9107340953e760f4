//! `sinkhost run` (consume until SIGTERM/SIGINT, reload on SIGHUP) and
//! `sinkhost check` (validate config.d and every plugin's `init`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::args::{ConfigArgs, NatsArgs};
use super::{config_error, init_logging, report};
use crate::plugin::Limits;
use crate::run::{self, watcher::Reloading};

/// `sinkhost run`'s arguments.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    nats: NatsArgs,
    /// Address for /healthz and /metrics.
    #[arg(long, env = "SINKHOST_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Reload when config.d changes (`false`: only on SIGHUP).
    #[arg(long, env = "SINKHOST_WATCH_CONFIG", default_value_t = true, action = clap::ArgAction::Set)]
    watch_config: bool,
}

pub(super) async fn run(args: RunArgs) -> ExitCode {
    init_logging(true);
    // Before anything else: SIGHUP's default action ends the process.
    let hangups = match reload_requests() {
        Ok(hangups) => hangups,
        Err(e) => return report(Err(e)),
    };
    let reloading = Reloading {
        source: args.config.source(),
        requests: hangups,
        watch: args.watch_config,
    };
    let config = match reloading.source.load() {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    let listen = args.listen;
    let result = async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        run::run(
            config,
            reloading,
            args.nats.into(),
            listener,
            shutdown_signal(),
        )
        .await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<run::PrepareError>().is_some() => config_error(&*e),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sinkhost stopped");
            ExitCode::FAILURE
        }
    }
}

pub(super) async fn check(config: ConfigArgs) -> ExitCode {
    init_logging(false);
    let config = match config.load() {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    match run::prepare(&config, Limits::default()).await {
        Ok(prepared) => {
            for p in &prepared {
                println!(
                    "ok  {:<28} {:<20} plugin {} ({})",
                    p.sub.name, p.sub.subject, p.sub.plugin.name, p.sub.origin
                );
            }
            println!("config.d is valid: {} subscription(s)", prepared.len());
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// SIGHUP, as a stream of reload requests.
fn reload_requests() -> anyhow::Result<futures::stream::BoxStream<'static, ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(Box::pin(futures::stream::poll_fn(move |cx| {
        hangup.poll_recv(cx)
    })))
}
