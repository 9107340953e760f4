//! The operator's HTTP endpoints: `GET /healthz` and `GET /metrics`.
//!
//! Health is read, never decided, here: the bus flips each subscription's
//! `consuming` flag and NATS reports the connection state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

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
    /// Each running subscription's name and whether it is consuming; replaced
    /// when a reload adds or removes subscriptions.
    pub subscriptions: RwLock<Vec<(String, Arc<AtomicBool>)>>,
}

impl Health {
    /// Sets the NATS client whose connection state `/healthz` reports.
    pub fn set_nats(&self, client: Option<async_nats::Client>) {
        *self.nats.write().expect("health lock") = client;
    }

    /// Replaces the list of subscriptions `/healthz` reports on.
    pub fn set_subscriptions(&self, subscriptions: Vec<(String, Arc<AtomicBool>)>) {
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
            .map(|(name, consuming)| {
                let state = if consuming.load(Ordering::Relaxed) {
                    "consuming"
                } else {
                    "starting"
                };
                (name.clone(), state.into())
            })
            .collect();
        let healthy =
            nats == "connected" && subscriptions.iter().all(|(_, c)| c.load(Ordering::Relaxed));
        let status = if healthy { "ok" } else { "unavailable" };
        (
            healthy,
            serde_json::json!({ "status": status, "nats": nats, "subscriptions": states }),
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
