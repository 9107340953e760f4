//! Prepare: every subscription's plugin compiled and one instance
//! initialised. It is all of `sinkhost check` beyond loading config.d, what
//! `run` does before it touches NATS, and what a reload does for the
//! subscriptions it changes; so `check` builds the very runtime `run` will.

use std::sync::Arc;

use crate::config::{Config, Subscription};
use crate::outbound::{Allowlist, Outbound};
use crate::plugin::{Limits, PluginError, Runtime, Sink, SinkSpec};

/// A subscription with its plugin compiled and one instance initialised.
pub struct Prepared {
    /// The validated config.
    pub sub: Subscription,
    /// Its plugin.
    pub sink: Arc<Sink>,
}

/// Compiles every plugin and runs its `init` with the subscription's config.
/// This is all of `sinkhost check` beyond loading config.d.
pub async fn prepare(config: &Config, limits: Limits) -> Result<Vec<Prepared>, PrepareError> {
    let runtime = Runtime::new(limits).map_err(|error| PrepareError {
        subscription: None,
        error,
    })?;
    prepare_in(&runtime, &config.subscriptions).await
}

/// [`prepare`] with a given runtime, for some of config.d's subscriptions
/// (`run` prepares only what a reload changed).
pub async fn prepare_in<'a>(
    runtime: &Runtime,
    subs: impl IntoIterator<Item = &'a Subscription>,
) -> Result<Vec<Prepared>, PrepareError> {
    let client = Outbound::shared_client();
    let mut prepared = Vec::new();
    for sub in subs {
        let failed = |error| PrepareError {
            subscription: Some(sub.clone()),
            error,
        };
        let outbound = Outbound::new(
            client.clone(),
            Allowlist::new(&sub.allowed_hosts()),
            sub.timeout,
        )
        .with_log_url(sub.webhook.log_url)
        .with_webhook(&sub.webhook.url);
        let spec = sink_spec(sub, outbound);
        let sink = runtime.sink(spec).map_err(failed)?;
        sink.check().await.map_err(failed)?;
        prepared.push(Prepared {
            sub: sub.clone(),
            sink: Arc::new(sink),
        });
    }
    Ok(prepared)
}

/// What a subscription's plugin needs to know, with `outbound` as its `http`.
pub fn sink_spec(sub: &Subscription, outbound: Outbound) -> SinkSpec {
    SinkSpec {
        subscription: sub.name.clone(),
        plugin: sub.plugin.path.clone(),
        init_json: sub.plugin_init_json(),
        outbound,
        secrets: sub.secrets(),
    }
}

/// A plugin that failed to load or initialise, with the subscription it serves.
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", describe(subscription.as_ref()))]
pub struct PrepareError {
    /// The subscription, when the failure is specific to one.
    pub subscription: Option<Subscription>,
    /// What failed.
    pub error: PluginError,
}

fn describe(sub: Option<&Subscription>) -> String {
    sub.map(|s| {
        format!(
            "{}: subscription {} (plugin {}): ",
            s.origin, s.name, s.plugin.name
        )
    })
    .unwrap_or_default()
}
