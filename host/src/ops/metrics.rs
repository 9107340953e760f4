//! Prometheus metrics: one process-wide registry, names `sinkhost_*`, each
//! labelled with the subscription.
//!
//! Modules record through the small functions here; `server` renders the text.
//! Nothing here decides anything: it only counts.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    nats_client_rebuilds: Counter,
    consumer_pending: Family<Sub, Gauge>,
    consumer_ack_pending: Family<Sub, Gauge>,
    consumer_redelivered: Family<Sub, Gauge>,
    plugin_traps: Family<Sub, Counter>,
    ordering_waiting: Family<Sub, Gauge>,
    rate_limit_waits: Family<Sub, Counter>,
    rate_limit_wait_seconds: Family<Sub, Counter<f64, AtomicU64>>,
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
    let nats_client_rebuilds = Counter::default();
    registry.register(
        "sinkhost_nats_client_rebuilds",
        "NATS clients built anew because the previous one's connection task ended",
        nats_client_rebuilds.clone(),
    );
    let consumer_pending = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_consumer_pending",
        "Messages in the stream the subscription's consumer has not delivered yet (JetStream num_pending)",
        consumer_pending.clone(),
    );
    let consumer_ack_pending = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_consumer_ack_pending",
        "Messages delivered and not yet acked, including those waiting for a retry (JetStream num_ack_pending)",
        consumer_ack_pending.clone(),
    );
    let consumer_redelivered = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_consumer_redelivered",
        "Unacked messages that were delivered more than once (JetStream num_redelivered)",
        consumer_redelivered.clone(),
    );
    let plugin_traps = Family::<Sub, Counter>::default();
    registry.register(
        "sinkhost_plugin_traps",
        "Plugin calls that trapped (panic, unreachable, out of memory) or ran out of CPU time",
        plugin_traps.clone(),
    );
    let ordering_waiting = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_ordering_waiting",
        "Messages waiting behind an earlier message of their subject (ordering: per-subject)",
        ordering_waiting.clone(),
    );
    let rate_limit_waits = Family::<Sub, Counter>::default();
    registry.register(
        "sinkhost_rate_limit_waits",
        "Delivery attempts that waited for the subscription's rate_limit",
        rate_limit_waits.clone(),
    );
    let rate_limit_wait_seconds = Family::<Sub, Counter<f64, AtomicU64>>::default();
    registry.register(
        "sinkhost_rate_limit_wait_seconds",
        "Time delivery attempts spent waiting for the subscription's rate_limit",
        rate_limit_wait_seconds.clone(),
    );
    let config_reloads = Family::<ReloadResult, Counter>::default();
    registry.register(
        "sinkhost_config_reloads",
        "Config reloads (SIGHUP or a change in config.d) by result: applied, rejected",
        config_reloads.clone(),
    );
    Metrics {
        registry,
        ordering_waiting,
        rate_limit_waits,
        rate_limit_wait_seconds,
        deliveries,
        dead_letters,
        duration,
        in_flight,
        http,
        consuming,
        nats_connected,
        nats_client_rebuilds,
        consumer_pending,
        consumer_ack_pending,
        consumer_redelivered,
        plugin_traps,
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

/// Decrements its gauge (`sinkhost_in_flight`, `sinkhost_ordering_waiting`) on drop.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a message waiting behind its subject until the guard drops.
pub(crate) fn ordering_waiting(subscription: &str) -> InFlight {
    let gauge = METRICS
        .ordering_waiting
        .get_or_create(&sub(subscription))
        .clone();
    gauge.inc();
    InFlight(gauge)
}

/// Counts one delivery attempt that waited `waited` for a rate-limit token.
pub(crate) fn rate_limit_wait(subscription: &str, waited: Duration) {
    METRICS
        .rate_limit_waits
        .get_or_create(&sub(subscription))
        .inc();
    METRICS
        .rate_limit_wait_seconds
        .get_or_create(&sub(subscription))
        .inc_by(waited.as_secs_f64());
}

/// Counts one outbound request under `result`: its status class (`2xx`...)
/// or why no response came (`timeout`, `connect`, `denied`, `other`).
pub(crate) fn http_result(subscription: &str, result: &str) {
    METRICS
        .http
        .get_or_create(&SubResult {
            subscription: subscription.to_owned(),
            result: result.to_owned(),
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

/// Records a subscription's consumer state as JetStream reported it.
pub(crate) fn consumer_state(
    subscription: &str,
    pending: u64,
    ack_pending: usize,
    redelivered: usize,
) {
    let label = sub(subscription);
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    METRICS
        .consumer_pending
        .get_or_create(&label)
        .set(gauge(pending));
    METRICS
        .consumer_ack_pending
        .get_or_create(&label)
        .set(gauge(ack_pending as u64));
    METRICS
        .consumer_redelivered
        .get_or_create(&label)
        .set(gauge(redelivered as u64));
}

/// Removes a stopped subscription's consumer state series.
pub(crate) fn forget_consumer_state(subscription: &str) {
    let label = sub(subscription);
    METRICS.consumer_pending.remove(&label);
    METRICS.consumer_ack_pending.remove(&label);
    METRICS.consumer_redelivered.remove(&label);
}

/// Counts one NATS client built to replace one whose connection task ended.
pub(crate) fn nats_client_rebuilt() {
    METRICS.nats_client_rebuilds.inc();
}

/// Counts one plugin call that trapped or ran out of CPU time.
pub(crate) fn plugin_trap(subscription: &str) {
    METRICS.plugin_traps.get_or_create(&sub(subscription)).inc();
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
