//! The bus: stream and consumer setup, and each subscription's
//! fetch -> deliver -> ack/nak/term loop.
//!
//! A subscription gets one durable pull consumer, reconciled with the config on
//! every start. Its loop keeps at most `max_concurrency` deliveries in flight,
//! hands each message to the plugin, asks `retry` what the result means and
//! applies the answer. It sends in-progress acks while a call runs, so
//! JetStream never redelivers a message that is still being delivered.
//! `ordering: per-subject` (queues in `ordering`) and `rate_limit:` (the bucket
//! in `ratelimit`) only make a delivery wait before an attempt; `lease` keeps
//! the message acked-in-progress meanwhile.

pub(crate) mod deadletter;
mod lag;
mod lease;
mod ordering;
pub(crate) mod ratelimit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, ErrorCode, stream};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::bus::lease::{Lease, Shutdown};
use crate::bus::ordering::{SubjectQueues, Turn};
use crate::bus::ratelimit::TokenBucket;
use crate::config::{self, Storage, StreamConfig, Subscription};
use crate::delivery::retry::{Action, Attempt, Policy};
use crate::ops::{metrics, trace};
use crate::plugin::{self, Delivery, Outcome, Sink};

/// Why the bus could not set up a stream or consumer.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A NATS request failed.
    #[error("{what}: {message}")]
    Nats {
        /// What was being done.
        what: String,
        /// What NATS said.
        message: String,
    },
    /// The existing stream differs in a setting NATS cannot change.
    #[error(
        "stream {stream} exists with {field} {current}, config.d wants {wanted}; NATS cannot change {field} in place (delete or migrate the stream)"
    )]
    StreamImmutable {
        /// The stream.
        stream: String,
        /// The setting.
        field: &'static str,
        /// Its current value.
        current: String,
        /// The configured value.
        wanted: String,
    },
    /// No stream, or more than one, holds a subscription's subject.
    #[error("subscription {subscription}: {message}; add a `stream:` block to config.d")]
    NoStream {
        /// The subscription.
        subscription: String,
        /// What was found.
        message: String,
    },
    /// The server kept a consumer setting different from the config.
    #[error(
        "consumer {consumer}: {field} is {current} on the server but {wanted} in config.d; the server refused to update it"
    )]
    ConsumerDrift {
        /// The consumer.
        consumer: String,
        /// The setting.
        field: &'static str,
        /// The server's value.
        current: String,
        /// The configured value.
        wanted: String,
    },
}

fn nats_error(what: impl Into<String>) -> impl FnOnce(String) -> BusError {
    let what = what.into();
    move |message| BusError::Nats { what, message }
}

/// Creates the stream when missing, or updates what NATS allows to change
/// (subjects, max_age); a difference in storage or retention is an error.
pub async fn ensure_stream(js: &jetstream::Context, cfg: &StreamConfig) -> Result<(), BusError> {
    let storage = storage_type(cfg.storage);
    let wanted = stream::Config {
        name: cfg.name.clone(),
        subjects: cfg.subjects.clone(),
        max_age: cfg.max_age,
        storage,
        retention: stream::RetentionPolicy::Limits,
        ..Default::default()
    };
    let mut existing = match js.get_stream(&cfg.name).await {
        Ok(existing) => existing,
        Err(e) if is_not_found(e.kind()) => {
            js.create_stream(wanted)
                .await
                .map_err(|e| nats_error(format!("creating stream {}", cfg.name))(e.to_string()))?;
            tracing::info!(stream = %cfg.name, "created stream");
            return Ok(());
        }
        Err(e) => {
            return Err(nats_error(format!("looking up stream {}", cfg.name))(
                e.to_string(),
            ));
        }
    };
    let current = existing
        .info()
        .await
        .map_err(|e| nats_error(format!("reading stream {}", cfg.name))(e.to_string()))?
        .config
        .clone();
    for (field, current_value, wanted_value) in [
        (
            "storage",
            format!("{:?}", current.storage),
            format!("{:?}", wanted.storage),
        ),
        (
            "retention",
            format!("{:?}", current.retention),
            format!("{:?}", wanted.retention),
        ),
    ] {
        if current_value != wanted_value {
            return Err(BusError::StreamImmutable {
                stream: cfg.name.clone(),
                field,
                current: current_value.to_lowercase(),
                wanted: wanted_value.to_lowercase(),
            });
        }
    }
    if current.subjects != wanted.subjects || current.max_age != wanted.max_age {
        let updated = stream::Config {
            subjects: wanted.subjects,
            max_age: wanted.max_age,
            ..current
        };
        js.update_stream(updated)
            .await
            .map_err(|e| nats_error(format!("updating stream {}", cfg.name))(e.to_string()))?;
        tracing::info!(stream = %cfg.name, "updated stream subjects/max_age to match config.d");
    }
    Ok(())
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The JetStream storage type for a configured storage.
pub fn storage_type(storage: Storage) -> stream::StorageType {
    match storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// Finds the one stream that holds `sub`'s subject, for config.d without a
/// `stream:` block (the seed's format). Dead-letter streams do not count.
pub async fn find_stream(js: &jetstream::Context, sub: &Subscription) -> Result<String, BusError> {
    #[derive(serde::Deserialize)]
    struct Names {
        streams: Option<Vec<String>>,
    }
    let request = serde_json::json!({ "subject": sub.subject });
    let response: jetstream::response::Response<Names> = js
        .request("STREAM.NAMES", &request)
        .await
        .map_err(|e| nats_error("listing streams")(e.to_string()))?;
    let names: Vec<String> = match response {
        jetstream::response::Response::Ok(names) => names.streams.unwrap_or_default(),
        jetstream::response::Response::Err { error } => {
            return Err(nats_error("listing streams")(error.to_string()));
        }
    }
    .into_iter()
    .filter(|name| !name.ends_with("_dlq"))
    .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(BusError::NoStream {
            subscription: sub.name.clone(),
            message: format!("no stream holds subject {:?}", sub.subject),
        }),
        many => Err(BusError::NoStream {
            subscription: sub.name.clone(),
            message: format!(
                "subject {:?} is in several streams ({})",
                sub.subject,
                many.join(", ")
            ),
        }),
    }
}

/// The consumer configuration a subscription asks for.
///
/// `max_deliver` is unlimited on purpose: the host counts attempts itself and
/// dead-letters at `retries + 1`. With a server-side limit, a message whose
/// last attempt was cut short by a crash (or whose dead-letter write failed)
/// would never be redelivered and so be dropped without a trace.
pub fn consumer_config(sub: &Subscription) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(sub.consumer.clone()),
        description: Some(format!("sinkhost subscription {}", sub.name)),
        filter_subject: sub.subject.clone(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: sub.ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(sub.max_concurrency).unwrap_or(i64::MAX),
        backoff: Vec::new(),
        ..Default::default()
    }
}

/// Creates the durable consumer or updates it to match the config. The server
/// refuses changes it cannot make (e.g. deliver policy); the settings that
/// matter are then read back, so a consumer that kept an old value fails loudly.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
    sub: &Subscription,
) -> Result<PullConsumer, BusError> {
    let wanted = consumer_config(sub);
    let what = format!(
        "creating or updating consumer {} on stream {stream}",
        sub.consumer
    );
    let stream_handle = js
        .get_stream(stream)
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?;
    let mut consumer: PullConsumer = stream_handle
        .create_consumer(wanted.clone())
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?;
    let got = consumer
        .info()
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?
        .config
        .clone();
    let checks: [(&'static str, String, String); 5] = [
        (
            "filter_subject",
            got.filter_subject.clone(),
            wanted.filter_subject.clone(),
        ),
        (
            "ack_wait",
            format!("{:?}", got.ack_wait),
            format!("{:?}", wanted.ack_wait),
        ),
        (
            "max_deliver",
            got.max_deliver.to_string(),
            wanted.max_deliver.to_string(),
        ),
        (
            "max_ack_pending",
            got.max_ack_pending.to_string(),
            wanted.max_ack_pending.to_string(),
        ),
        (
            "backoff",
            format!("{:?}", got.backoff),
            format!("{:?}", wanted.backoff),
        ),
    ];
    for (field, current, wanted) in checks {
        if current != wanted {
            return Err(BusError::ConsumerDrift {
                consumer: sub.consumer.clone(),
                field,
                current,
                wanted,
            });
        }
    }
    Ok(consumer)
}

/// One subscription, ready to consume.
pub struct Subscriber {
    /// The validated config.
    pub sub: Subscription,
    /// The stream it reads.
    pub stream: String,
    /// Its plugin.
    pub sink: Arc<Sink>,
    /// JetStream, for dead letters.
    pub js: jetstream::Context,
    /// True while the fetch loop is receiving.
    pub consuming: Arc<AtomicBool>,
}

impl Subscriber {
    fn policy(&self) -> Policy {
        Policy {
            max_attempts: self.sub.max_attempts(),
            backoff: self.sub.backoff,
        }
    }

    fn set_consuming(&self, yes: bool) {
        self.consuming.store(yes, Ordering::Relaxed);
        metrics::consuming(&self.sub.name, yes);
    }
}

/// How long a consumer may go without a heartbeat before the loop reports it.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Fetches and delivers until `stop_fetching` fires. Deliveries run on
/// `in_flight`; each one naks its message if `abort` fires before it finishes.
pub async fn consume(
    subscriber: Arc<Subscriber>,
    mut consumer: PullConsumer,
    stop_fetching: CancellationToken,
    abort: CancellationToken,
    in_flight: TaskTracker,
) {
    let name = subscriber.sub.name.clone();
    let _lag = lag::watch(&name, consumer.clone(), stop_fetching.child_token());
    let permits = Arc::new(Semaphore::new(subscriber.sub.max_concurrency));
    let queues = (subscriber.sub.ordering == config::Ordering::PerSubject)
        .then(|| SubjectQueues::new(&name));
    let limiter = subscriber
        .sub
        .rate_limit
        .map(|limit| Arc::new(TokenBucket::new(&name, limit)));
    let shutdown = Shutdown {
        stop: stop_fetching.clone(),
        abort,
    };
    'fetching: while !stop_fetching.is_cancelled() {
        // Every await below races `stop_fetching`: with NATS down, a request
        // can wait for the reconnect, and shutdown must not wait with it.
        let messages = tokio::select! {
            () = stop_fetching.cancelled() => break,
            messages = consumer
                .stream()
                .max_messages_per_batch(subscriber.sub.max_concurrency)
                .heartbeat(HEARTBEAT)
                .messages() => messages,
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                subscriber.set_consuming(false);
                tracing::warn!(subscription = %name, error = %e, "cannot start fetching; retrying");
                if pause(&stop_fetching, Duration::from_secs(1)).await {
                    break;
                }
                let fresh = tokio::select! {
                    () = stop_fetching.cancelled() => break,
                    fresh = ensure_consumer(&subscriber.js, &subscriber.stream, &subscriber.sub) => fresh,
                };
                if let Ok(fresh) = fresh {
                    consumer = fresh;
                }
                continue;
            }
        };
        subscriber.set_consuming(true);
        tracing::info!(subscription = %name, consumer = %subscriber.sub.consumer, "consuming");
        loop {
            let permit = tokio::select! {
                () = stop_fetching.cancelled() => {
                    return_buffered(&name, &mut messages).await;
                    break 'fetching;
                }
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                () = stop_fetching.cancelled() => {
                    drop(permit);
                    return_buffered(&name, &mut messages).await;
                    break 'fetching;
                }
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    subscriber.set_consuming(true);
                    // In fetch order, which is stream order: that is what the queues keep.
                    let turn = queues.as_ref().map(|q| q.enqueue(&message.subject));
                    let task = deliver(
                        subscriber.clone(),
                        message,
                        turn,
                        limiter.clone(),
                        shutdown.clone(),
                    );
                    in_flight.spawn(async move {
                        task.await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    subscriber.set_consuming(false);
                    tracing::warn!(subscription = %name, error = %e, "fetch error");
                    use consumer::pull::MessagesErrorKind;
                    if !matches!(e.kind(), MessagesErrorKind::MissingHeartbeat) {
                        if pause(&stop_fetching, Duration::from_secs(1)).await {
                            break 'fetching;
                        }
                        continue 'fetching;
                    }
                }
                None => continue 'fetching,
            }
        }
    }
    subscriber.set_consuming(false);
    tracing::info!(subscription = %name, "stopped fetching");
}

/// Naks (without delay) the messages a pull already brought in but no
/// delivery has taken, so another host, or this one after a restart, gets them
/// now instead of after `ack_wait`.
async fn return_buffered(subscription: &str, messages: &mut consumer::pull::Stream) {
    let mut returned = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + Duration::from_millis(100)),
        messages.next(),
    )
    .await
    {
        if message.ack_with(AckKind::Nak(None)).await.is_ok() {
            returned += 1;
        }
    }
    if returned > 0 {
        tracing::info!(
            subscription,
            returned,
            "returned fetched but unstarted messages to the stream"
        );
    }
}

/// Sleeps for `how_long` unless `stop` fires first; true when it fired.
async fn pause(stop: &CancellationToken, how_long: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(how_long) => false,
    }
}

/// The stable id of a message: its `Nats-Msg-Id`, else its stream sequence.
pub fn message_id(headers: Option<&async_nats::HeaderMap>, stream_sequence: u64) -> String {
    headers
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|id| id.as_str().to_owned())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("nats-msg-{stream_sequence}"))
}

/// Delivers one message and settles it with JetStream, in the `delivery`
/// span that puts its subscription, id and trace id on every log line.
///
/// With a `turn` (`ordering: per-subject`) the message first waits until the
/// previous message of its subject is done, and retries in place (waiting out
/// the delay here instead of a nak with delay, which would let the next message
/// of its subject overtake it). With a `limiter` every attempt first takes a
/// rate-limit token. The lease keeps the message from being redelivered while
/// it waits.
async fn deliver(
    subscriber: Arc<Subscriber>,
    message: jetstream::Message,
    turn: Option<Turn>,
    limiter: Option<Arc<TokenBucket>>,
    shutdown: Shutdown,
) {
    let span = trace::delivery_span(&subscriber.sub.name, message.headers.as_ref());
    deliver_in_span(subscriber, message, turn, limiter, shutdown)
        .instrument(span)
        .await;
}

async fn deliver_in_span(
    subscriber: Arc<Subscriber>,
    message: jetstream::Message,
    mut turn: Option<Turn>,
    limiter: Option<Arc<TokenBucket>>,
    shutdown: Shutdown,
) {
    let sub = &subscriber.sub;
    let (sequence, mut attempt, published) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u32::try_from(info.delivered).unwrap_or(u32::MAX),
            info.published,
        ),
        Err(e) => {
            tracing::error!(subscription = %sub.name, error = %e, "message without JetStream metadata; leaving it to redelivery");
            return;
        }
    };
    let id = message_id(message.headers.as_ref(), sequence);
    tracing::Span::current().record("message_id", id.as_str());
    let policy = subscriber.policy();
    if let Some(malformed) = &message.malformed {
        // Bytes no client library would produce: no plugin is handed a
        // guess at them. The dead letter keeps them as they arrived.
        let reason = format!("malformed message: {}", malformed.reason);
        metrics::delivery(&sub.name, "malformed", Duration::ZERO);
        if !dead_letter(&subscriber, &message, sequence, &id, 0, &reason).await {
            settle(
                &subscriber,
                &message,
                AckKind::Nak(Some(policy.delay_after(1))),
            )
            .await;
        }
        return;
    }
    let mut lease = Lease::new(&message, &sub.name, sub.ack_wait, &shutdown);
    if let Some(turn) = &mut turn {
        // Waits on through `stop` (only `abort` ends it), so a message goes back
        // to the stream after the earlier ones of its subject, not before.
        if lease.run(turn.ready()).await.is_none() {
            return_unstarted(&subscriber, &message, &id).await;
            return;
        }
    }
    loop {
        let token = async {
            if let Some(limiter) = &limiter {
                limiter.acquire().await;
            }
        };
        if lease.wait(token).await.is_none() {
            return_unstarted(&subscriber, &message, &id).await;
            return;
        }
        let started = Instant::now();
        let Some((result, label)) =
            attempt_once(&subscriber, &message, &id, published, attempt, &mut lease).await
        else {
            settle(&subscriber, &message, AckKind::Nak(None)).await;
            metrics::delivery(&sub.name, "aborted", started.elapsed());
            tracing::info!(subscription = %sub.name, message_id = %id, "shutdown: delivery abandoned, message returned to the stream");
            return;
        };
        metrics::delivery(&sub.name, label, started.elapsed());

        match policy.decide(result.clone(), attempt) {
            Action::Ack => {
                tracing::debug!(subscription = %sub.name, message_id = %id, attempt, "delivered");
                settle(&subscriber, &message, AckKind::Ack).await;
                return;
            }
            Action::Nak(delay) => {
                tracing::info!(
                    subscription = %sub.name, message_id = %id, subject = %message.subject,
                    attempt, max_attempts = policy.max_attempts, retry_in_ms = delay.as_millis() as u64,
                    in_place = turn.is_some(), reason = %describe(&result), "delivery failed; will retry"
                );
                if turn.is_none() {
                    settle(&subscriber, &message, AckKind::Nak(Some(delay))).await;
                    return;
                }
                if lease.wait(tokio::time::sleep(delay)).await.is_none() {
                    return_unstarted(&subscriber, &message, &id).await;
                    return;
                }
                attempt += 1;
            }
            Action::DeadLetter(reason) => {
                while !dead_letter(&subscriber, &message, sequence, &id, attempt, &reason).await {
                    let delay = policy.delay_after(attempt);
                    if turn.is_none() {
                        settle(&subscriber, &message, AckKind::Nak(Some(delay))).await;
                        return;
                    }
                    // The next message of the subject waits until this one is
                    // dead-lettered; try the write again here.
                    let delay = delay.max(Duration::from_secs(1));
                    if lease.wait(tokio::time::sleep(delay)).await.is_none() {
                        return_unstarted(&subscriber, &message, &id).await;
                        return;
                    }
                }
                return;
            }
        }
    }
}

/// Runs attempt number `attempt` of `message` through the plugin; `None` if
/// shutdown abandoned it.
async fn attempt_once(
    subscriber: &Subscriber,
    message: &jetstream::Message,
    id: &str,
    published: time::OffsetDateTime,
    attempt: u32,
    lease: &mut Lease<'_>,
) -> Option<(Attempt, &'static str)> {
    let sub = &subscriber.sub;
    let max_attempts = sub.max_attempts();
    let _in_flight = metrics::in_flight(&sub.name);
    if attempt > max_attempts {
        // Only reachable when the outcome of the last attempt never reached
        // the server (host killed, dead-letter write failed): give up now.
        let lost = format!(
            "attempt {attempt} of {max_attempts}: the last attempt's outcome was lost (host stopped or dead-letter write failed)"
        );
        return Some((Attempt::Failed(lost), "lost"));
    }
    let input = plugin::Message {
        subject: message.subject.to_string(),
        payload: message.payload.to_vec(),
        headers: flatten_headers(message.headers.as_ref()),
        id: id.to_owned(),
        published_ms: u64::try_from(published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
        attempt,
        max_attempts,
    };
    let call = tokio::time::timeout(call_limit(sub), subscriber.sink.deliver(&input));
    let outcome = lease.run(call).await?;
    Some(classify(sub, outcome))
}

/// What one plugin call, bounded by [`call_limit`], means to the retry
/// policy, with the `outcome` label it is counted under in metrics.
pub(crate) fn classify(
    sub: &Subscription,
    outcome: Result<Result<Delivery, plugin::PluginError>, tokio::time::error::Elapsed>,
) -> (Attempt, &'static str) {
    match outcome {
        Ok(Ok(Delivery {
            outcome: Outcome::Delivered,
            ..
        })) => (Attempt::Delivered, "delivered"),
        Ok(Ok(Delivery {
            outcome: Outcome::Retry(delay),
            last_http,
        })) => {
            let reason = match last_http {
                Some(http) => format!("plugin asked to retry after {http}"),
                None => "plugin asked to retry".to_owned(),
            };
            (Attempt::Retry { delay, reason }, "retry")
        }
        Ok(Ok(Delivery {
            outcome: Outcome::Reject(reason),
            ..
        })) => (Attempt::Reject(reason), "reject"),
        Ok(Err(error)) => {
            if matches!(
                error,
                plugin::PluginError::Trap(_) | plugin::PluginError::Deadline(_)
            ) {
                metrics::plugin_trap(&sub.name);
            }
            (Attempt::Failed(error.to_string()), error.kind())
        }
        Err(_) => {
            let slow = format!("delivery still running after {:?}", call_limit(sub));
            (Attempt::Failed(slow), "call_limit")
        }
    }
}

/// Writes `message` to the dead-letter stream and terminates it; false (the
/// message stays unsettled) if the write failed.
async fn dead_letter(
    subscriber: &Subscriber,
    message: &jetstream::Message,
    sequence: u64,
    id: &str,
    attempt: u32,
    reason: &str,
) -> bool {
    let sub = &subscriber.sub;
    let origin = deadletter::Origin {
        stream: &subscriber.stream,
        subscription: &sub.name,
        subject: &message.subject,
        sequence,
        message_id: id,
        attempts: attempt.min(sub.max_attempts()),
        malformed: message.malformed.as_deref(),
    };
    match deadletter::publish(
        &subscriber.js,
        &origin,
        message.headers.as_ref(),
        message.payload.clone(),
        reason,
    )
    .await
    {
        Ok(()) => {
            metrics::dead_letter(&sub.name);
            tracing::warn!(
                subscription = %sub.name, message_id = %id, subject = %message.subject,
                stream_sequence = sequence, attempt, reason = %reason,
                dead_letter_subject = %deadletter::subject(&sub.name), "dead-lettered"
            );
            settle(subscriber, message, AckKind::Term).await;
            true
        }
        Err(e) => {
            tracing::error!(subscription = %sub.name, message_id = %id, error = %e, "dead-letter write failed; the message stays in the stream");
            false
        }
    }
}

/// Naks (without delay) a message that shutdown caught before it started.
async fn return_unstarted(subscriber: &Subscriber, message: &jetstream::Message, id: &str) {
    settle(subscriber, message, AckKind::Nak(None)).await;
    tracing::info!(subscription = %subscriber.sub.name, message_id = %id, "shutdown: message not started, returned to the stream");
}

/// The longest one `deliver` call may take: room for a few HTTP calls of
/// `timeout` each, and at least `ack_wait`. In-progress acks keep JetStream
/// from redelivering the message meanwhile.
pub(crate) fn call_limit(sub: &Subscription) -> Duration {
    sub.ack_wait.max(sub.timeout * 4)
}

async fn settle(subscriber: &Subscriber, message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        // The server redelivers after ack_wait; the destination dedupes by id.
        tracing::warn!(subscription = %subscriber.sub.name, error = %e, "ack failed");
    }
}

pub(crate) fn flatten_headers(headers: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .flat_map(async_nats::HeaderMap::iter)
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_owned()))
        })
        .collect()
}

fn describe(result: &Attempt) -> &str {
    match result {
        Attempt::Delivered => "delivered",
        Attempt::Retry { reason, .. } => reason,
        Attempt::Reject(reason) | Attempt::Failed(reason) => reason,
    }
}
