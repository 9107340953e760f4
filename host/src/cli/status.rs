//! `sinkhost status`: one line per subscription, from JetStream and a
//! running host's `/healthz`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::args::{ConfigArgs, NatsArgs};
use super::{init_logging, report};
use crate::outbound::Outbound;
use crate::run::NatsOptions;
use crate::tools::status;

/// `sinkhost status`'s arguments.
#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A running host's listen address, for its live view; without an
    /// answer there, JetStream's view alone.
    #[arg(long, env = "SINKHOST_LISTEN", default_value = "127.0.0.1:8090")]
    host: String,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

pub(super) async fn status(args: StatusArgs) -> ExitCode {
    init_logging(false);
    report(run(args).await)
}

async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let nats: NatsOptions = args.nats.into();
    let js = async_nats::jetstream::new(nats.connect().await?);
    let healthz = healthz(&args.host).await;
    if healthz.is_none() {
        eprintln!(
            "no sinkhost answered on {}: JetStream's view only",
            args.host
        );
    }
    let all = status::status(&js, &config, healthz.as_ref()).await;
    if args.json {
        for line in &all {
            println!("{}", serde_json::to_string(line)?);
        }
    } else {
        println!("{}", status::table(&all));
    }
    Ok(())
}

/// `GET http://<host>/healthz`'s body (503 included: it says what is not
/// ready), within 2 s.
async fn healthz(host: &str) -> Option<serde_json::Value> {
    use http_body_util::BodyExt as _;
    let uri: http::Uri = format!("http://{host}/healthz").parse().ok()?;
    let client = Outbound::shared_client();
    let get = async {
        let response = client.get(uri).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), get)
        .await
        .ok()
        .flatten()
}
