//! The command line: parse arguments and dispatch, one file per command
//! group (`run` + `check`, `dlq`, `plugin`, `publish`, `replay`, `status`,
//! `trace`),
//! the shared arguments in `args`. Each command calls the library and prints what it
//! returns; what a test would need lives in `run` or `tools`, not here. This
//! file sets up logging and maps results to exit codes.

mod args;
mod dlq;
mod plugin;
mod publish;
mod replay;
mod run;
mod status;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::ConfigArgs;

/// Exit code for an invalid configuration (`check`, and `run` before it starts).
pub const EXIT_CONFIG: u8 = 2;

/// sinkhost: forward NATS JetStream messages to destinations through wasm sink plugins.
#[derive(Debug, Parser)]
#[command(name = "sinkhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume every subscription in config.d until SIGTERM/SIGINT.
    Run(run::RunArgs),
    /// Validate config.d, load every plugin and run its init; exit 2 on error.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Inspect and replay the dead-letter stream.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Work on plugins without NATS.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Publish one message to JetStream (a development convenience).
    Publish(publish::PublishArgs),
    /// Deliver a subscription's messages stored in the stream through its
    /// plugin again; no other subscription sees them (exit 0 when all were
    /// delivered, 1 otherwise).
    Replay(replay::ReplayArgs),
    /// One line per subscription: destination state, backlog, unacked,
    /// redelivered, dead letters, last error (from JetStream and a running
    /// host's /healthz).
    Status(status::StatusArgs),
    /// Where one message is: when it was stored and, for each subscription
    /// taking it, delivered, dead-lettered, retrying, in flight or not yet
    /// reached, with every recorded attempt.
    Trace(trace::TraceArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    runtime.block_on(execute(cli))
}

async fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Check { config } => run::check(config).await,
        Command::Dlq { command } => dlq::dlq(command).await,
        Command::Plugin { command } => plugin::plugin(command).await,
        Command::Publish(args) => publish::publish(args).await,
        Command::Replay(args) => replay::replay(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Trace(args) => trace::trace(args).await,
    }
}

/// `error: <what>` on stderr, exit 2.
fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Exit 0, or the error's cause chain on stderr and exit 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    verdict(result.map(|()| true))
}

/// Exit 0 when the command did all it was asked (`Ok(true)`), 1 otherwise.
fn verdict(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stdout for `run` (what log shippers read); plain text on
/// stderr for the one-shot commands, whose stdout is their answer.
pub(crate) fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SINKHOST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if json {
            "info"
        } else {
            // What a plugin writes (`log`, stdout, stderr) shows at info:
            // `plugin test` and `check` are where its author reads it; so
            // does a first compile, which can take half a minute.
            "warn,sinkhost::plugin::guest_log=info,sinkhost::plugin::compiling=info"
        })
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            // The `delivery` span's fields (subscription, message_id,
            // trace_id) go on every line logged during a delivery.
            .with_current_span(true)
            .with_span_list(false)
            .init();
        // A panic in a task (the NATS client's, say) must reach the log that
        // operators read, not only stderr.
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            tracing::error!(panic = %panic, "a task panicked");
            print(panic);
        }));
    } else {
        use std::io::IsTerminal;
        builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}
