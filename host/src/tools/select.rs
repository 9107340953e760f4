//! The subscription a command works on: found by name, the main stream it
//! reads, and its plugin compiled and initialised alone, exactly as `run`
//! prepares it. Both replays start here.

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;

use crate::bus;
use crate::config::{Config, Subscription};
use crate::plugin::{Limits, Sink};
use crate::run;

/// The subscription `name` of `config`, or an error naming the ones it has.
pub(crate) fn find_subscription<'a>(
    config: &'a Config,
    name: &str,
) -> anyhow::Result<&'a Subscription> {
    config.subscription(name).with_context(|| {
        let names: Vec<&str> = config
            .subscriptions
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        format!(
            "config.d has no subscription {name:?} (it has {})",
            names.join(", ")
        )
    })
}

/// The main stream `sub` reads: `stream` when given, else the `stream:` of
/// config.d, else the one stream holding the subscription's subject.
pub(crate) async fn main_stream(
    js: &jetstream::Context,
    config: &Config,
    sub: &Subscription,
    stream: Option<String>,
) -> anyhow::Result<String> {
    Ok(
        match stream.or_else(|| config.stream.as_ref().map(|s| s.name.clone())) {
            Some(stream) => stream,
            None => bus::find_stream(js, sub).await?,
        },
    )
}

/// Compiles and initialises `sub`'s plugin alone, exactly as `run` does.
pub(crate) async fn only_sink(config: &Config, sub: &Subscription) -> anyhow::Result<Arc<Sink>> {
    let only_this = Config {
        stream: config.stream.clone(),
        subscriptions: vec![sub.clone()],
    };
    let prepared = run::prepare(&only_this, Limits::default()).await?;
    Ok(prepared
        .into_iter()
        .next()
        .context("prepare returned no subscription")?
        .sink)
}
