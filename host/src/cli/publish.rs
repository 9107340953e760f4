//! `sinkhost publish`: one message to JetStream (a development convenience).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::args::{NatsArgs, header_pairs};
use super::{init_logging, report};
use crate::run::NatsOptions;
use crate::tools::publish;

/// `sinkhost publish`'s arguments.
#[derive(Debug, Args)]
pub(super) struct PublishArgs {
    /// The subject, e.g. order.completed.
    subject: String,
    /// The payload; use --file for a file, or neither for an empty payload.
    payload: Option<String>,
    /// Read the payload from this file.
    #[arg(long, conflicts_with = "payload")]
    file: Option<PathBuf>,
    /// A header `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Sets Nats-Msg-Id (the stable message id destinations see).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    nats: NatsArgs,
}

pub(super) async fn publish(args: PublishArgs) -> ExitCode {
    init_logging(false);
    report(publish_and_print(args).await)
}

async fn publish_and_print(args: PublishArgs) -> anyhow::Result<()> {
    let body = match (args.payload, args.file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => {
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let headers = header_pairs(&args.headers)?;
    let js = async_nats::jetstream::new(NatsOptions::from(args.nats).connect().await?);
    let stored = publish::publish(&js, &args.subject, body, &headers, args.id.as_deref()).await?;
    println!(
        "published {} to stream {} at sequence {}",
        args.subject, stored.stream, stored.sequence
    );
    Ok(())
}
