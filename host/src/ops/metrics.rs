//! Prometheus metrics: one process-wide registry, names `sinkhost_*`, each
//! labelled with the subscription.
//!
//! Modules record through the small functions here; `server` renders the text.
//! What every delivery records goes through [`PerSubscription`], whose series
//! are looked up once per subscription instead of by label on each message.
//! Nothing here decides anything: it only counts.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, OnceLock};
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
struct SubTo {
    subscription: String,
    to: String,
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
    destination_up: Family<Sub, Gauge>,
    destination_transitions: Family<SubTo, Counter>,
    attempts_not_counted: Family<Sub, Counter>,
    attempt_history_dropped: Family<Sub, Counter>,
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
    let destination_up = Family::<Sub, Gauge>::default();
    registry.register(
        "sinkhost_destination_up",
        "0 while the subscription's destination is known to be down (its breaker is open), else 1",
        destination_up.clone(),
    );
    let destination_transitions = Family::<SubTo, Counter>::default();
    registry.register(
        "sinkhost_destination_transitions",
        "Changes of the destination's state seen by this host, by the state changed to (down, up)",
        destination_transitions.clone(),
    );
    let attempts_not_counted = Family::<Sub, Counter>::default();
    registry.register(
        "sinkhost_attempts_not_counted",
        "Plugin calls that failed against a destination known to be down (probes included): no attempt spent",
        attempts_not_counted.clone(),
    );
    let attempt_history_dropped = Family::<Sub, Counter>::default();
    registry.register(
        "sinkhost_attempt_history_dropped",
        "Attempt records not written to <stream>_attempts (queue full, or JetStream did not acknowledge); deliveries go on",
        attempt_history_dropped.clone(),
    );
    Metrics {
        registry,
        attempt_history_dropped,
        destination_up,
        destination_transitions,
        attempts_not_counted,
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

/// The `outcome` labels a delivery is counted under (see
/// `delivery::classify`); another label still counts, through a lookup.
const OUTCOMES: &[&str] = &[
    "delivered",
    "retry",
    "reject",
    "trap",
    "deadline",
    "load",
    "init",
    "instantiate",
    "call_limit",
    "lost",
    "aborted",
    "malformed",
];

/// The `result` labels of an outbound request (`HttpError::result_label`).
const HTTP_RESULTS: &[&str] = &[
    "1xx", "2xx", "3xx", "4xx", "5xx", "other", "timeout", "connect", "denied",
];

/// One subscription's per-delivery series, looked up once: recording through
/// it neither hashes labels nor allocates. Its duration, in-flight and
/// consuming series are shown from the start; an outcome or HTTP result when
/// it first happens.
#[derive(Clone, Debug)]
pub(crate) struct PerSubscription(Arc<Series>);

#[derive(Debug)]
struct Series {
    subscription: String,
    duration: Histogram,
    in_flight: Gauge,
    consuming: Gauge,
    /// Indexed like [`OUTCOMES`] / [`HTTP_RESULTS`], made on first use.
    outcomes: Box<[OnceLock<Counter>]>,
    http: Box<[OnceLock<Counter>]>,
}

impl PerSubscription {
    pub(crate) fn new(subscription: &str) -> Self {
        let label = sub(subscription);
        let made = |n: usize| (0..n).map(|_| OnceLock::new()).collect();
        // Shown at 0 from the start, so a rate over it is defined.
        drop(METRICS.attempt_history_dropped.get_or_create(&label));
        PerSubscription(Arc::new(Series {
            subscription: subscription.to_owned(),
            duration: METRICS.duration.get_or_create(&label).clone(),
            in_flight: METRICS.in_flight.get_or_create(&label).clone(),
            consuming: METRICS.consuming.get_or_create(&label).clone(),
            outcomes: made(OUTCOMES.len()),
            http: made(HTTP_RESULTS.len()),
        }))
    }

    /// Counts one attempt's outcome and its duration.
    pub(crate) fn delivery(&self, outcome: &str, took: Duration) {
        let series = &self.0;
        let counter = |outcome: &str| {
            METRICS
                .deliveries
                .get_or_create(&SubOutcome {
                    subscription: series.subscription.clone(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        cached(&series.outcomes, OUTCOMES, outcome, counter);
        series.duration.observe(took.as_secs_f64());
    }

    /// Counts one outbound request under `result`: its status class (`2xx`...)
    /// or why no response came (`timeout`, `connect`, `denied`, `other`).
    pub(crate) fn http_result(&self, result: &str) {
        let series = &self.0;
        let counter = |result: &str| {
            METRICS
                .http
                .get_or_create(&SubResult {
                    subscription: series.subscription.clone(),
                    result: result.to_owned(),
                })
                .clone()
        };
        cached(&series.http, HTTP_RESULTS, result, counter);
    }

    /// Tracks a delivery in progress until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight {
        let gauge = self.0.in_flight.clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records whether the subscription is consuming.
    pub(crate) fn consuming(&self, yes: bool) {
        self.0.consuming.set(i64::from(yes));
    }
}

/// Increments the counter of `label`: the one in `made` at its place in
/// `known`, made by `make` the first time; one of no known label is looked up.
fn cached(made: &[OnceLock<Counter>], known: &[&str], label: &str, make: impl Fn(&str) -> Counter) {
    match known.iter().position(|k| *k == label) {
        Some(i) => made[i].get_or_init(|| make(label)).inc(),
        None => make(label).inc(),
    };
}

/// Records whether a subscription is consuming (before it has a
/// [`PerSubscription`]).
pub(crate) fn consuming(subscription: &str, yes: bool) {
    METRICS
        .consuming
        .get_or_create(&sub(subscription))
        .set(i64::from(yes));
}

/// Records the destination's state; `changed`: it is a transition.
pub(crate) fn destination_up(subscription: &str, up: bool, changed: bool) {
    METRICS
        .destination_up
        .get_or_create(&sub(subscription))
        .set(i64::from(up));
    if changed {
        let to = SubTo {
            subscription: subscription.to_owned(),
            to: if up { "up" } else { "down" }.to_owned(),
        };
        METRICS.destination_transitions.get_or_create(&to).inc();
    }
}

/// Counts a call that spent no attempt: it failed against a destination known down.
pub(crate) fn attempt_not_counted(subscription: &str) {
    METRICS
        .attempts_not_counted
        .get_or_create(&sub(subscription))
        .inc();
}

/// Counts one attempt record the history could not write.
pub(crate) fn attempt_history_dropped(subscription: &str) {
    METRICS
        .attempt_history_dropped
        .get_or_create(&sub(subscription))
        .inc();
}

/// Counts one message written to the dead-letter stream.
pub(crate) fn dead_letter(subscription: &str) {
    METRICS.dead_letters.get_or_create(&sub(subscription)).inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series))
    }

    #[test]
    fn handles_count_into_the_same_series_as_a_lookup_and_unknown_labels_still_count() {
        let one = PerSubscription::new("metrics_unit");
        let again = PerSubscription::new("metrics_unit");
        one.delivery("delivered", Duration::from_millis(1));
        again.delivery("delivered", Duration::from_millis(1));
        one.delivery("not-a-known-outcome", Duration::ZERO);
        one.http_result("2xx");
        let flight = one.in_flight();
        let text = render();
        let delivered =
            r#"sinkhost_deliveries_total{subscription="metrics_unit",outcome="delivered"}"#;
        assert_eq!(line(&text, delivered), Some(&*format!("{delivered} 2")));
        let unknown = r#"sinkhost_deliveries_total{subscription="metrics_unit",outcome="not-a-known-outcome"}"#;
        assert_eq!(line(&text, unknown), Some(&*format!("{unknown} 1")));
        let http = r#"sinkhost_http_requests_total{subscription="metrics_unit",result="2xx"}"#;
        assert_eq!(line(&text, http), Some(&*format!("{http} 1")));
        let count = r#"sinkhost_delivery_duration_seconds_count{subscription="metrics_unit"}"#;
        assert_eq!(line(&text, count), Some(&*format!("{count} 3")));
        let gauge = r#"sinkhost_in_flight{subscription="metrics_unit"}"#;
        assert_eq!(line(&text, gauge), Some(&*format!("{gauge} 1")));
        drop(flight);
        assert_eq!(line(&render(), gauge), Some(&*format!("{gauge} 0")));
        // Not recorded yet: not shown.
        assert_eq!(
            line(
                &text,
                r#"sinkhost_deliveries_total{subscription="metrics_unit",outcome="retry"}"#
            ),
            None
        );
    }
}
