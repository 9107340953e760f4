//! Orchestration: turn a validated config into running subscriptions, and
//! stop them cleanly.
//!
//! `run` is what `sinkhost run` calls and what tests drive: it takes a bound
//! listener and a shutdown future, so a test can start it on port 0 and stop
//! it. The order is fixed: every plugin is compiled and initialised before
//! NATS is touched, so a bad config never starts a consumer. The running
//! subscriptions belong to the `supervisor`; a reload goes through the same
//! validation as the start before the supervisor changes any of them.

pub(crate) mod reload;
pub(crate) mod supervisor;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigSource;
use crate::config::{Config, Subscription};
use crate::ops::metrics;
use crate::ops::server::{self, Health};
use crate::outbound::{Allowlist, Outbound};
use crate::plugin::{Limits, PluginError, Runtime, Sink, SinkSpec};
use reload::{Plan, ReloadError, Reloading, Watcher};
use supervisor::Supervisor;

/// How to reach NATS. Field names follow the `nats` CLI's flags and variables.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma separated (`NATS_URL`).
    pub url: String,
    /// A `.creds` file (`NATS_CREDS`).
    pub creds: Option<PathBuf>,
    /// User name (`NATS_USER`); without `password`, a token (as the `nats` CLI reads it).
    pub user: Option<String>,
    /// Password (`NATS_PASSWORD`).
    pub password: Option<String>,
    /// Token (`NATS_TOKEN`).
    pub token: Option<String>,
    /// An nkey seed file (`NATS_NKEY`).
    pub nkey: Option<PathBuf>,
    /// CA certificate to trust (`NATS_CA`).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (`NATS_CERT`), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client key (`NATS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// Reconnect attempts before the client gives up (`run` then builds a new
    /// one); 0 for no limit.
    pub max_reconnects: usize,
}

/// A NATS client and what tells that it is gone.
pub struct Connection {
    /// The client; it reconnects by itself while its connection task lives.
    pub client: async_nats::Client,
    /// Fires when the connection task has ended (it panicked, or gave up
    /// reconnecting): every request on `client` fails from then on.
    pub ended: CancellationToken,
}

impl NatsOptions {
    /// Connects once; the client then reconnects by itself, up to
    /// `max_reconnects` times in a row.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        Ok(self.connection().await?.client)
    }

    /// [`connect`](Self::connect), with the token that fires when the
    /// client's connection task ends.
    pub async fn connection(&self) -> anyhow::Result<Connection> {
        let ended = CancellationToken::new();
        // async-nats calls the event callback from a task that lives exactly
        // as long as the connection task (whose end, even by a panic, closes
        // the event channel); the callback, and this guard with it, is
        // dropped when that task ends.
        let alive = ended.clone().drop_guard();
        let mut options = async_nats::ConnectOptions::new()
            .name(concat!("sinkhost/", env!("CARGO_PKG_VERSION")))
            .max_reconnects(self.max_reconnects)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let _alive = &alive;
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            metrics::nats_connected(true);
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            metrics::nats_connected(false);
                            tracing::warn!("NATS disconnected; reconnecting");
                        }
                        async_nats::Event::ClientError(error) => {
                            tracing::warn!(error = %error, "NATS client error");
                        }
                        async_nats::Event::ServerError(error) => {
                            tracing::warn!(error = %error, "NATS server error");
                        }
                        other => tracing::info!(event = %other, "NATS event"),
                    }
                }
            });
        if let Some(creds) = &self.creds {
            options = options
                .credentials_file(creds)
                .await
                .with_context(|| format!("reading NATS credentials {}", creds.display()))?;
        }
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            // As the `nats` CLI reads it: a user without a password is a token.
            (Some(token), None) => options = options.token(token.clone()),
            (None, _) => {}
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(nkey) = &self.nkey {
            let seed = std::fs::read_to_string(nkey)
                .with_context(|| format!("reading NATS nkey seed {}", nkey.display()))?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        // async-nats parses a `&str` as one URL; `NATS_URL` may list several.
        let client = options
            .connect(server_list(&self.url))
            .await
            .map_err(|e| anyhow::anyhow!("connecting to NATS at {}: {}", self.url, refusal(&e)))?;
        metrics::nats_connected(true);
        Ok(Connection { client, ended })
    }

    /// Connects, retrying every second until it works; `None` if `stop`
    /// fires first.
    async fn connect_until(&self, stop: &CancellationToken) -> Option<Connection> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                connected = self.connection() => match connected {
                    Ok(connection) => return Some(connection),
                    Err(e) => {
                        metrics::nats_connected(false);
                        tracing::warn!(error = format!("{e:#}"), "NATS unavailable; retrying in 1s");
                        tokio::select! {
                            () = stop.cancelled() => return None,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }
}

/// What an operator reads when the connection fails: async-nats's text
/// (which already holds its cause, so no chain is added), or for a refused
/// credential which options to check.
fn refusal(error: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind;
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation => "authorization violation: the server refused the credentials (check --creds, --nkey, --user/--password or --token)".to_owned(),
        ConnectErrorKind::Tls => format!("{error} (check --tlsca, --tlscert and --tlskey)"),
        _ => error.to_string(),
    }
}

/// The servers in a comma-separated `NATS_URL` (as the `nats` CLI reads it),
/// each trimmed; empty entries are skipped.
fn server_list(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(str::to_owned)
        .collect()
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
    let instances: usize = config.subscriptions.iter().map(|s| s.max_concurrency).sum();
    let runtime = Runtime::new(limits, u32::try_from(instances + 16).unwrap_or(u32::MAX)).map_err(
        |error| PrepareError {
            subscription: None,
            error,
        },
    )?;
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
    let runtime = supervisor::runtime(&config).map_err(|error| PrepareError {
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
        reload::report(&result);
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

#[cfg(test)]
mod tests {
    use super::server_list;

    #[test]
    fn nats_url_may_list_several_servers() {
        assert_eq!(
            server_list("nats://a:4222, nats://b:4222,,nats://c:4222"),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert_eq!(
            server_list("nats://127.0.0.1:4222"),
            ["nats://127.0.0.1:4222"]
        );
    }
}
