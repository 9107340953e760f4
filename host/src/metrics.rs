//! Prometheus metrics: one process-wide registry, names `sinkhost_*`, each
//! labelled with the subscription.
//!
//! Modules record through the small functions here; `server` renders the text.
//! Nothing here decides anything: it only counts.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outbound::{HttpError, Response};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Sub {
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubOutcome {
    subscription: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubResult {
    subscription: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadResult {
    result: String,
}

struct Metrics {
    registry: Registry,
    deliveries: Family<SubOutcome, Counter>,
    dead_letters: Family<Sub, Counter>,
    duration: Family<Sub, Histogram>,
    in_flight: Family<Sub, Gauge>,
    http: Family<SubResult, Counter>,
    consuming: Family<Sub, Gauge>,
    nats_connected: Gauge,
    config_reloads: Family<ReloadResult, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let deliveries = Family::<SubOutcome, Counter>::default();
    registry.register(
        "sinkhost_deliveries",
        "Delivery attempts by outcome (delivered, retry, reject, trap, deadline, error)",
        deliveries.clone(),
    );
    let dead_letters = Family::<Sub, Counter>::default();
    registry.register(
        "sinkhost_dead_letters",
        "Messages written to the dead-letter stream",
        dead_letters.clone(),
    );
    let duration = Family::<Sub, Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0005, 2.5, 14))
    });
    registry.register(
        "sinkhost_delivery_duration_seconds",
        "Time from taking a message to its outcome, per attempt",
        duration.clone(),
    );
    let in_flight = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_in_flight",
        "Deliveries in progress",
        in_flight.clone(),
    );
    let http = Family::<SubResult, Counter>::default();
    registry.register(
        "sinkhost_http_requests",
        "Outbound HTTP requests by status class or error kind",
        http.clone(),
    );
    let consuming = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_subscription_consuming",
        "1 while the subscription's consumer is fetching",
        consuming.clone(),
    );
    let nats_connected = Gauge::default();
    registry.register(
        "sinkhost_nats_connected",
        "1 while connected to NATS",
        nats_connected.clone(),
    );
    let config_reloads = Family::<ReloadResult, Counter>::default();
    registry.register(
        "sinkhost_config_reloads",
        "Config reloads (SIGHUP or a change in config.d) by result: applied, rejected",
        config_reloads.clone(),
    );
    Metrics {
        registry,
        deliveries,
        dead_letters,
        duration,
        in_flight,
        http,
        consuming,
        nats_connected,
        config_reloads,
    }
});

fn sub(subscription: &str) -> Sub {
    Sub {
        subscription: subscription.to_owned(),
    }
}

/// Counts one attempt's outcome and its duration.
pub(crate) fn delivery(subscription: &str, outcome: &str, took: Duration) {
    METRICS
        .deliveries
        .get_or_create(&SubOutcome {
            subscription: subscription.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
    METRICS
        .duration
        .get_or_create(&sub(subscription))
        .observe(took.as_secs_f64());
}

/// Counts one message written to the dead-letter stream.
pub(crate) fn dead_letter(subscription: &str) {
    METRICS.dead_letters.get_or_create(&sub(subscription)).inc();
}

/// Tracks a delivery in progress until the guard drops.
pub(crate) fn in_flight(subscription: &str) -> InFlight {
    let gauge = METRICS.in_flight.get_or_create(&sub(subscription)).clone();
    gauge.inc();
    InFlight(gauge)
}

/// Decrements `sinkhost_in_flight` on drop.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts one outbound request by status class or error kind.
pub(crate) fn http_result(subscription: &str, result: &Result<Response, HttpError>) {
    let result = match result {
        Ok(response) => format!("{}xx", response.status / 100),
        Err(error) => error.kind().to_owned(),
    };
    METRICS
        .http
        .get_or_create(&SubResult {
            subscription: subscription.to_owned(),
            result,
        })
        .inc();
}

/// Records whether a subscription is consuming.
pub(crate) fn consuming(subscription: &str, yes: bool) {
    METRICS
        .consuming
        .get_or_create(&sub(subscription))
        .set(i64::from(yes));
}

/// Records whether the NATS connection is up.
pub(crate) fn nats_connected(yes: bool) {
    METRICS.nats_connected.set(i64::from(yes));
}

/// Counts one config reload by `result` (`applied` or `rejected`).
pub(crate) fn config_reload(result: &str) {
    METRICS
        .config_reloads
        .get_or_create(&ReloadResult {
            result: result.to_owned(),
        })
        .inc();
}

/// Shows both reload results (at 0) before the first reload.
pub(crate) fn config_reloads_init() {
    for result in ["applied", "rejected"] {
        let _ = METRICS.config_reloads.get_or_create(&ReloadResult {
            result: result.to_owned(),
        });
    }
}

/// The Prometheus text exposition of every metric.
pub(crate) fn render() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String cannot fail");
    text
}
