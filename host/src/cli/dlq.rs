//! `sinkhost dlq list|replay`: read the dead-letter stream, or hand a
//! subscription's dead letters to its plugin again.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use super::args::{ConfigArgs, NatsArgs};
use super::{init_logging, report, verdict};
use crate::bus::deadletter;
use crate::run::NatsOptions;
use crate::tools::results::{Source, table_header};
use crate::tools::{dlq, replay};

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
    /// List dead letters: subject, attempts, last error, time.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this subscription's dead letters.
        #[arg(long)]
        subscription: Option<String>,
        /// The main stream (default: the `stream:` of config.d).
        #[arg(long)]
        stream: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Deliver a subscription's dead letters through its plugin again and
    /// remove the delivered ones (exit 0 when all were delivered, 1 otherwise).
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The subscription whose dead letters to replay (only its plugin sees them).
        #[arg(long)]
        subscription: String,
        /// Only the dead letter with this message id; repeatable.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// The main stream (default: the `stream:` of config.d, else the one
        /// stream holding the subscription's subject).
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

pub(super) async fn dlq(command: DlqCommand) -> ExitCode {
    init_logging(false);
    match command {
        DlqCommand::List {
            config,
            subscription,
            stream,
            json,
            nats,
        } => report(list(config, subscription, stream, json, nats.into()).await),
        DlqCommand::Replay {
            config,
            subscription,
            ids,
            stream,
            nats,
        } => verdict(replay(config, subscription, stream, ids, nats.into()).await),
    }
}

async fn list(
    config: ConfigArgs,
    subscription: Option<String>,
    stream: Option<String>,
    json: bool,
    nats: NatsOptions,
) -> anyhow::Result<()> {
    let stream = match stream {
        Some(stream) => stream,
        None => config
            .source()
            .stream_name()?
            .context("config.d has no `stream:` block; name the stream with --stream")?,
    };
    let js = async_nats::jetstream::new(nats.connect().await?);
    let letters = deadletter::list(&js, &stream, subscription.as_deref()).await?;
    let text = if json {
        dlq::json_lines(&letters)?
    } else {
        dlq::table(&letters, &stream)
    };
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

/// Replays and prints one line per dead letter, then the summary; true when
/// every one was delivered.
async fn replay(
    config: ConfigArgs,
    subscription: String,
    stream: Option<String>,
    ids: Vec<String>,
    nats: NatsOptions,
) -> anyhow::Result<bool> {
    let config = config.load()?;
    let js = async_nats::jetstream::new(nats.connect().await?);
    println!("{}", table_header());
    let summary = replay::replay(&js, &config, &subscription, stream, &ids, |r| {
        println!("{}", r.line(Source::DeadLetters, &subscription));
    })
    .await?;
    for id in &summary.missing {
        println!("no dead letter of {subscription} has message id {id}");
    }
    println!("{summary}");
    Ok(summary.all_delivered())
}
