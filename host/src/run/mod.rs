//! Orchestration: turn a validated config into running subscriptions, keep
//! them running, and stop them cleanly.
//!
//! [`run`] is what `sinkhost run` calls: it takes a bound listener and a
//! shutdown future, so it can be started on port 0 and stopped. The order is
//! fixed: every plugin is compiled and initialised ([`prepare`]) before NATS is
//! touched ([`nats`]), so a bad config never starts a consumer. The running
//! subscriptions belong to the [`supervisor`]; a reload, asked for by the
//! [`watcher`] or a signal, is planned by [`reload`] (pure) and goes through
//! the same validation as the start before the supervisor changes anything.
//! Files depend on each other one way: this one on all, `supervisor` on
//! `prepare` and `reload`, `reload` on `prepare`.

mod entry;
mod nats;
mod prepare;
pub(crate) mod reload;
pub(crate) mod supervisor;
pub(crate) mod watcher;

pub use nats::{Connection, NatsOptions};
pub use prepare::{PrepareError, prepare, prepare_in, sink_spec};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigSource;
use crate::config::{Config, ConfigError};
use crate::ops::metrics;
use crate::ops::server::{self, Health};
use crate::plugin::{Limits, Runtime};
use reload::Plan;
use supervisor::{ApplyError, Supervisor};
use watcher::{Reloading, Watcher};

/// Runs every subscription until `shutdown` resolves, then stops fetching,
/// lets in-flight deliveries finish (or naks them after a grace period) and
/// returns. Meanwhile reloads config.d when `reloading` asks (see
/// [`reload`]): a valid new config replaces only the subscriptions that
/// changed, an invalid one is logged and counted and changes nothing.
pub async fn run(
    config: Config,
    reloading: Reloading,
    nats: NatsOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let digests = reload::digests(&config).map_err(|e| *e)?;
    let runtime = Runtime::new(Limits::default()).map_err(|error| PrepareError {
        subscription: None,
        error,
    })?;
    let prepared = prepare_in(&runtime, &config.subscriptions).await?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            stop.cancel();
        }
    });

    let health = Arc::new(Health::default());
    health.set_subscriptions(Supervisor::starting_health(&config));
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(addr = %addr, "listening");
    let server = tokio::spawn(server::serve(listener, health.clone(), stop.clone()));

    let Some(Connection {
        mut client,
        mut ended,
    }) = nats.connect_until(&stop).await
    else {
        return Ok(());
    };
    health.set_nats(Some(client.clone()));
    let js = jetstream::new(client.clone());

    let mut supervisor = Supervisor::start(
        js,
        runtime,
        config,
        prepared,
        &digests,
        health.clone(),
        stop.clone(),
    )
    .await?;

    metrics::config_reloads_init();
    let Reloading {
        source,
        mut requests,
        watch,
    } = reloading;
    let mut watcher = Watcher::new(&source.dir, &supervisor.plugin_files());
    loop {
        let plugin_files = supervisor.plugin_files();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = ended.cancelled() => {
                // Defense in depth: async-nats reconnects by itself, so this
                // is a client that panicked or gave up. Nothing sent on it
                // arrives any more; start over with a new one.
                tracing::error!("the NATS client's connection task ended (a panic is logged above); stopping every subscription and connecting anew");
                health.set_nats(None);
                metrics::nats_connected(false);
                supervisor.suspend().await;
                let Some(connection) = nats.connect_until(&stop).await else {
                    break;
                };
                (client, ended) = (connection.client, connection.ended);
                metrics::nats_client_rebuilt();
                health.set_nats(Some(client.clone()));
                supervisor.resume(jetstream::new(client.clone())).await;
                tracing::info!("NATS client rebuilt; every subscription resumes");
                continue;
            }
            Some(()) = requests.next() => tracing::info!("reload requested"),
            () = watcher.settled(&plugin_files), if watch => tracing::info!("config.d changed; reloading"),
        }
        let result = reload_config(&mut supervisor, &source).await;
        report(&result);
        watcher.rebase(&supervisor.plugin_files());
    }

    supervisor.shutdown().await;
    // With NATS unreachable a flush waits for the reconnect; unacked messages
    // are redelivered after ack_wait anyway, so do not wait long.
    match tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => tracing::warn!(
            "could not flush acks to NATS; unacked messages will be redelivered after ack_wait"
        ),
    }
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}

/// One reload: config.d is validated in full the way `sinkhost check` does it
/// (load, then compile and `init` every subscription that changed) before
/// anything running is touched.
async fn reload_config(
    supervisor: &mut Supervisor,
    source: &ConfigSource,
) -> Result<Plan, ReloadError> {
    let config = source.load()?;
    let digests = reload::digests(&config)?;
    let plan = supervisor.plan(&config, &digests)?;
    let prepared = prepare_in(supervisor.runtime(), plan.starting(&config)).await?;
    supervisor.apply(config, &plan, prepared, &digests).await?;
    Ok(plan)
}

/// Why a reload was rejected. The running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// config.d does not validate (the message `sinkhost check` prints).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A changed subscription's plugin does not load or its `init` fails
    /// (the message `sinkhost check` prints).
    #[error(transparent)]
    Plugin(#[from] Box<PrepareError>),
    /// The change cannot be applied (stream setup).
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<PrepareError> for ReloadError {
    fn from(error: PrepareError) -> Self {
        ReloadError::Plugin(Box::new(error))
    }
}

/// Logs and counts the result of one reload.
fn report(result: &Result<Plan, ReloadError>) {
    match result {
        Ok(plan) => {
            crate::ops::metrics::config_reload("applied");
            tracing::info!(
                added = %plan.added.join(","),
                removed = %plan.removed.join(","),
                restarted = %plan.restarted.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(","),
                unchanged = %plan.unchanged.join(","),
                "config reloaded: {}",
                plan.summary()
            );
        }
        Err(error) => {
            crate::ops::metrics::config_reload("rejected");
            tracing::error!(
                error = %error,
                "config reload rejected; the running config is unchanged"
            );
        }
    }
}
