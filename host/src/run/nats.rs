//! How `run` and every connecting command reach NATS: the options (the `nats`
//! CLI's flags and variables), one connection, and the retry loop `run` uses at
//! start and after a client whose connection task ended.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics;

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
    pub(super) async fn connect_until(&self, stop: &CancellationToken) -> Option<Connection> {
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
