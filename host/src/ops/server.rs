//! The operator's HTTP endpoints: `GET /healthz` and `GET /metrics`.
//!
//! Health is read, never decided, here: the bus flips each subscription's
//! `consuming` flag and writes its destination's state, and NATS reports the
//! connection state. A destination that is down is reported, but does not make
//! the process unhealthy: restarting sinkhost would not bring it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics;

/// What `/healthz` reports on.
#[derive(Debug, Default)]
pub struct Health {
    /// The NATS client while there is one (none before the first connect,
    /// and while a client whose connection task ended is replaced).
    nats: RwLock<Option<async_nats::Client>>,
    /// Each running subscription; replaced when a reload adds or removes
    /// subscriptions.
    pub subscriptions: RwLock<Vec<Watched>>,
}

/// One subscription as `/healthz` sees it.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Its name.
    pub name: String,
    /// True while its fetch loop is receiving.
    pub consuming: Arc<AtomicBool>,
    /// Its destination's state.
    pub destination: Arc<DestinationHealth>,
}

impl Watched {
    /// A subscription not consuming yet, its destination not known down.
    pub fn starting(name: &str) -> Self {
        Watched {
            name: name.to_owned(),
            consuming: Arc::new(AtomicBool::new(false)),
            destination: Arc::default(),
        }
    }
}

/// A destination's state as the bus last wrote it: `None` while up, else
/// since when it is down and the last failure seen.
#[derive(Debug, Default)]
pub struct DestinationHealth(RwLock<Option<(SystemTime, String)>>);

impl DestinationHealth {
    /// Down since `since`; `last_error` the latest failure.
    pub fn set_down(&self, since: SystemTime, last_error: String) {
        *self.0.write().expect("health lock") = Some((since, last_error));
    }

    /// Up (again).
    pub fn set_up(&self) {
        *self.0.write().expect("health lock") = None;
    }

    /// `None` while up, else since when it is down and the last failure.
    pub fn down(&self) -> Option<(SystemTime, String)> {
        self.0.read().expect("health lock").clone()
    }

    fn report(&self) -> serde_json::Value {
        match self.down() {
            None => serde_json::json!({ "state": "up" }),
            Some((since, last_error)) => serde_json::json!({
                "state": "down",
                "since": humantime::format_rfc3339_millis(since).to_string(),
                "last_error": last_error,
            }),
        }
    }
}

impl Health {
    /// Sets the NATS client whose connection state `/healthz` reports.
    pub fn set_nats(&self, client: Option<async_nats::Client>) {
        *self.nats.write().expect("health lock") = client;
    }

    /// Replaces the list of subscriptions `/healthz` reports on.
    pub fn set_subscriptions(&self, subscriptions: Vec<Watched>) {
        *self.subscriptions.write().expect("health lock") = subscriptions;
    }

    fn report(&self) -> (bool, serde_json::Value) {
        let subscriptions = self.subscriptions.read().expect("health lock");
        let state = self
            .nats
            .read()
            .expect("health lock")
            .as_ref()
            .map(async_nats::Client::connection_state);
        let nats = match state {
            Some(async_nats::connection::State::Connected) => "connected",
            Some(_) => "disconnected",
            None => "connecting",
        };
        let states: serde_json::Map<String, serde_json::Value> = subscriptions
            .iter()
            .map(|w| {
                let state = if w.consuming.load(Ordering::Relaxed) {
                    "consuming"
                } else {
                    "starting"
                };
                (w.name.clone(), state.into())
            })
            .collect();
        let destinations: serde_json::Map<String, serde_json::Value> = subscriptions
            .iter()
            .map(|w| (w.name.clone(), w.destination.report()))
            .collect();
        let healthy = nats == "connected"
            && subscriptions
                .iter()
                .all(|w| w.consuming.load(Ordering::Relaxed));
        let status = if healthy { "ok" } else { "unavailable" };
        (
            healthy,
            serde_json::json!({
                "status": status, "nats": nats,
                "subscriptions": states, "destinations": destinations,
            }),
        )
    }
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let (healthy, body) = health.report();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(),
    )
}

/// Serves the endpoints on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(health);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
