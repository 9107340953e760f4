//! `sinkhost status`: every subscription of config.d at a glance — its
//! destination's state, the consumer's backlog, unacked and redelivered
//! messages, dead letters and the last error. From JetStream (consumer info,
//! the dead-letter stream, the destination state the hosts share) and, when
//! a host answers, its `/healthz` (its live view of the destinations and
//! whether each subscription is consuming). Reads only; `cli` prints.

use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream;

use crate::bus::{self, deadletter, destination};
use crate::config::{Config, Subscription};

/// One subscription's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Status {
    /// Its name.
    pub(crate) subscription: String,
    /// The stream it consumes, when it could be found.
    pub(crate) stream: Option<String>,
    /// `up` or `down`: the running host's view, else what the hosts last
    /// shared (`up` when no outage was ever recorded).
    pub(crate) destination: &'static str,
    /// Since when it is down (RFC 3339).
    pub(crate) down_since: Option<String>,
    /// What the running host says of it (`consuming`, `starting`, `not
    /// running`); `None` without a host.
    pub(crate) host: Option<String>,
    /// Messages not delivered to sinkhost yet (JetStream `num_pending`).
    pub(crate) pending: Option<u64>,
    /// Delivered to sinkhost, not acked yet (`num_ack_pending`).
    pub(crate) ack_pending: Option<u64>,
    /// Of those, delivered more than once (`num_redelivered`).
    pub(crate) redelivered: Option<u64>,
    /// Messages in the dead-letter stream from this subscription.
    pub(crate) dead_letters: Option<u64>,
    /// The destination's last error while down, else the last dead letter's,
    /// else why something above could not be read.
    pub(crate) last_error: String,
}

/// The state of every subscription of `config`, in config order; `healthz`
/// is a running host's `/healthz` body.
pub(crate) async fn status(
    js: &jetstream::Context,
    config: &Config,
    healthz: Option<&serde_json::Value>,
) -> Vec<Status> {
    let mut all = Vec::new();
    for sub in &config.subscriptions {
        let stream_name = match &config.stream {
            Some(stream) => Ok(stream.name.clone()),
            None => bus::find_stream(js, sub).await.map_err(|e| e.to_string()),
        };
        all.push(match stream_name {
            Ok(stream) => one(js, sub, stream, healthz).await,
            Err(error) => Status {
                subscription: sub.name.clone(),
                stream: None,
                destination: "up",
                down_since: None,
                host: host_view(sub, healthz),
                pending: None,
                ack_pending: None,
                redelivered: None,
                dead_letters: None,
                last_error: error,
            },
        });
    }
    all
}

async fn one(
    js: &jetstream::Context,
    sub: &Subscription,
    stream: String,
    healthz: Option<&serde_json::Value>,
) -> Status {
    let consumer = async {
        let stream = js.get_stream(&stream).await.map_err(|e| e.to_string())?;
        stream
            .consumer_info(&sub.consumer)
            .await
            .map_err(|e| e.to_string())
    };
    let (consumer, unread) = match consumer.await {
        Ok(info) => (Some(info), None),
        Err(e) => (None, Some(format!("consumer {}: {e}", sub.consumer))),
    };
    let dead = deadletter::summary(js, &stream, &sub.name).await;
    let (destination, down_since, down_error) = destination_view(js, sub, healthz).await;
    let last_error = down_error
        .or_else(|| dead.as_ref().and_then(|(_, e)| e.clone()))
        .or(unread)
        .unwrap_or_default();
    Status {
        subscription: sub.name.clone(),
        stream: Some(stream),
        destination,
        down_since,
        host: host_view(sub, healthz),
        pending: consumer.as_ref().map(|c| c.num_pending),
        ack_pending: consumer.as_ref().map(|c| c.num_ack_pending as u64),
        redelivered: consumer.as_ref().map(|c| c.num_redelivered as u64),
        dead_letters: dead.map(|(count, _)| count),
        last_error,
    }
}

/// `up` or `down`, since when, and the last error while down: the host's
/// view when it serves this subscription, else the shared state.
async fn destination_view(
    js: &jetstream::Context,
    sub: &Subscription,
    healthz: Option<&serde_json::Value>,
) -> (&'static str, Option<String>, Option<String>) {
    let reported = healthz.map(|h| &h["destinations"][&sub.name]);
    if let Some(state) = reported.filter(|s| s.is_object()) {
        if state["state"] == "down" {
            let text = |key: &str| state[key].as_str().map(str::to_owned);
            return ("down", text("since"), text("last_error"));
        }
        return ("up", None, None);
    }
    match destination::shared_state(js, &sub.name).await {
        Some((true, since_ms, last_error)) => {
            let since = UNIX_EPOCH + Duration::from_millis(since_ms);
            ("down", Some(destination::rfc3339(since)), Some(last_error))
        }
        _ => ("up", None, None),
    }
}

fn host_view(sub: &Subscription, healthz: Option<&serde_json::Value>) -> Option<String> {
    let healthz = healthz?;
    Some(
        healthz["subscriptions"][&sub.name]
            .as_str()
            .unwrap_or("not running")
            .to_owned(),
    )
}

/// The table `sinkhost status` prints.
pub(crate) fn table(all: &[Status]) -> String {
    use std::fmt::Write as _;
    let number = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
    let mut out = format!(
        "{:<24}  {:<11}  {:>8}  {:>8}  {:>11}  {:>6}  {:<11}  LAST ERROR\n",
        "SUBSCRIPTION", "DESTINATION", "BACKLOG", "UNACKED", "REDELIVERED", "DEAD", "HOST"
    );
    for s in all {
        let line = format!(
            "{:<24}  {:<11}  {:>8}  {:>8}  {:>11}  {:>6}  {:<11}  {}{}",
            s.subscription,
            s.destination,
            number(s.pending),
            number(s.ack_pending),
            number(s.redelivered),
            number(s.dead_letters),
            s.host.as_deref().unwrap_or("-"),
            s.down_since
                .as_ref()
                .map(|since| format!("down since {since}: "))
                .unwrap_or_default(),
            s.last_error
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.pop();
    out
}
