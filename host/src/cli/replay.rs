//! `sinkhost replay`: a subscription's messages stored in the stream go
//! through its plugin again.

use std::process::ExitCode;

use clap::{ArgGroup, Args};

use super::args::{ConfigArgs, NatsArgs};
use super::{init_logging, verdict};
use crate::run::NatsOptions;
use crate::tools::results::{Source, table_header};
use crate::tools::select::find_subscription;
use crate::tools::stream_replay::{self, Start};

/// `sinkhost replay`'s arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").required(true).args(["since", "from_seq"])))]
pub(super) struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The subscription whose messages to replay (only its plugin sees them).
    #[arg(long)]
    subscription: String,
    /// Replay the messages stored at most this long ago, e.g. 2h or 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Replay from this stream sequence on.
    #[arg(long)]
    from_seq: Option<u64>,
    /// The last stream sequence to replay (default: the stream's last
    /// sequence when the replay starts).
    #[arg(long)]
    to_seq: Option<u64>,
    /// The main stream (default: the `stream:` of config.d, else the one
    /// stream holding the subscription's subject).
    #[arg(long)]
    stream: Option<String>,
    #[command(flatten)]
    nats: NatsArgs,
}

pub(super) async fn replay(args: ReplayArgs) -> ExitCode {
    init_logging(false);
    verdict(replay_and_print(args).await)
}

/// Replays stored messages and prints one line per message, then the
/// summary; true when every one was delivered.
async fn replay_and_print(args: ReplayArgs) -> anyhow::Result<bool> {
    let start = match (args.since, args.from_seq) {
        (Some(since), _) => Start::Since(since),
        (None, Some(from)) => Start::Sequence(from),
        (None, None) => anyhow::bail!("give --since or --from-seq"),
    };
    stream_replay::check_range(start, args.to_seq)?;
    let config = args.config.load()?;
    find_subscription(&config, &args.subscription)?;
    let js = async_nats::jetstream::new(NatsOptions::from(args.nats).connect().await?);
    println!("{}", table_header());
    let summary = stream_replay::replay(
        &js,
        &config,
        &args.subscription,
        args.stream,
        start,
        args.to_seq,
        |r| println!("{}", r.line(Source::Stream, &args.subscription)),
    )
    .await?;
    println!("{summary}");
    Ok(summary.all_delivered())
}
