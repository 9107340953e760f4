//! Prepare: every subscription's plugin compiled and one instance
//! initialised, in the one plugin runtime whose size this file decides. It is
//! all of `sinkhost check` beyond loading config.d, what `run` does before it
//! touches NATS, and what a reload does for the subscriptions it changes; so
//! `check` builds the very pool `run` will.

use std::sync::Arc;

use crate::config::{Config, Subscription};
use crate::outbound::{Allowlist, Outbound};
use crate::plugin::{Limits, PluginError, Runtime, Sink, SinkSpec};

/// Plugin instances the process makes room for: what config.d needs at start
/// plus as much again (at least 1024, at most 4096 more), so a reload may add
/// subscriptions or replace all of them. The pool reserves address space, not
/// memory: about 8 GiB per instance (two 4 GiB memory slots), which is why the
/// headroom is capped.
pub fn instance_capacity(config: &Config) -> usize {
    let at_start = needed_instances(&config.subscriptions);
    at_start + at_start.clamp(1024, 4096) + 16
}

/// The process's plugin runtime, with room for [`instance_capacity`] instances.
pub fn runtime(config: &Config, limits: Limits) -> Result<Runtime, PluginError> {
    let capacity = instance_capacity(config);
    Runtime::new(limits, u32::try_from(capacity).unwrap_or(u32::MAX))
}

/// The most instances `subs` can hold at once: one per delivery in flight.
pub(super) fn needed_instances<'a>(subs: impl IntoIterator<Item = &'a Subscription>) -> usize {
    subs.into_iter().map(|s| s.max_concurrency).sum()
}

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
    let runtime = runtime(config, limits).map_err(|error| PrepareError {
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
        .with_log_url(sub.webhook.log_url);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::subscription;

    fn config(concurrency: &[usize]) -> Config {
        let base = subscription(serde_json::json!({}), &[]);
        Config {
            stream: None,
            subscriptions: concurrency
                .iter()
                .map(|&max_concurrency| Subscription {
                    max_concurrency,
                    ..base.clone()
                })
                .collect(),
        }
    }

    #[test]
    fn the_pool_holds_what_config_needs_plus_headroom_for_reloads() {
        assert_eq!(needed_instances(&config(&[50, 20]).subscriptions), 70);
        assert_eq!(instance_capacity(&config(&[50, 20])), 70 + 1024 + 16);
        assert_eq!(instance_capacity(&config(&[3000])), 3000 + 3000 + 16);
        assert_eq!(instance_capacity(&config(&[9000])), 9000 + 4096 + 16);
    }
}
