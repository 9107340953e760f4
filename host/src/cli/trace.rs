//! `sinkhost trace`: where one message is, from the stream, the attempt
//! history and each subscription's consumer.

use std::process::ExitCode;

use clap::Args;

use super::args::{ConfigArgs, NatsArgs};
use super::{init_logging, report};
use crate::run::NatsOptions;
use crate::tools::trace::{self, Target};

/// `sinkhost trace`'s arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("message").required(true).args(["message_id", "seq"]))]
pub(super) struct TraceArgs {
    /// The message id: `nats-msg-<sequence>` or the producer's Nats-Msg-Id
    /// (found by reading the stream's headers: `--seq` is faster).
    message_id: Option<String>,
    /// The message's stream sequence instead of its id.
    #[arg(long)]
    seq: Option<u64>,
    /// Only this subscription.
    #[arg(long)]
    subscription: Option<String>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

pub(super) async fn trace(args: TraceArgs) -> ExitCode {
    init_logging(false);
    report(run(args).await)
}

async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let target = match (args.seq, args.message_id) {
        (Some(seq), _) => Target::Sequence(seq),
        (None, Some(id)) => Target::Id(id),
        (None, None) => unreachable!("clap requires one"),
    };
    let nats: NatsOptions = args.nats.into();
    let js = async_nats::jetstream::new(nats.connect().await?);
    let found = trace::trace(&js, &config, &target, args.subscription.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        println!("{}", trace::text(&found));
    }
    Ok(())
}
