//! The path of one message: read what it has spent ([`Record`]), wait for
//! its turn (ordering), a token (rate limit) and the destination's leave (held
//! there while the destination is down), call the plugin, and settle with
//! JetStream as `delivery` decides — ack, nak with delay (or, for an ordered
//! subscription, wait the delay here and try again), or write the dead letter
//! and terminate. A call that failed against a destination known down spends
//! nothing: the message waits for the destination again. A malformed message
//! is dead-lettered without a plugin call. The [`Lease`] keeps the message
//! acked-in-progress through every wait, and hands it back to the stream when
//! shutdown catches it before it started. Each attempt, once what came of it
//! is known (ack, retry, dead letter, a wait for the destination), goes to the
//! attempt history as one [`Entry`], never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::message::{AckKind, Info};
use async_nats::jetstream::{self};
use tokio::time::Instant;
use tracing::Instrument;

use super::Subscriber;
use super::attempts::Record;
use super::deadletter;
use super::destination::{Expired, rfc3339};
use super::history::{Entry, Then};
use super::lease::{Lease, Shutdown};
use super::ordering::Turn;
use super::ratelimit::TokenBucket;
use crate::delivery::classify::{call_limit, classify, seen};
use crate::delivery::message::{for_plugin, id_of, malformed_reason};
use crate::delivery::retry::{self, Attempt, Attempts, Policy, Settled};
use crate::ops::{metrics, trace};
use crate::plugin::Delivery;

/// Delivers one message and settles it with JetStream, in the `delivery`
/// span that puts its subscription, id and trace id on every log line.
///
/// With a `turn` (`ordering: per-subject`) the message first waits until the
/// previous message of its subject is done, and retries in place (a nak with
/// delay would let the next message of its subject overtake it). With a
/// `limiter` every attempt first takes a rate-limit token.
pub(super) async fn deliver(
    subscriber: Arc<Subscriber>,
    message: jetstream::Message,
    turn: Option<Turn>,
    limiter: Option<Arc<TokenBucket>>,
    shutdown: Shutdown,
) {
    let sub = &subscriber.sub;
    let info = match message.info() {
        Ok(info) => info,
        Err(e) => {
            tracing::error!(subscription = %sub.name, error = %e, "message without JetStream metadata; leaving it to redelivery");
            return;
        }
    };
    let one = One {
        id: id_of(message.headers.as_ref(), info.stream_sequence),
        subscriber: &subscriber,
        message: &message,
        info: &info,
        recorded: AtomicBool::new(false),
    };
    // Every field is known here: a span whose fields are recorded later
    // costs a second formatting of all of them.
    let span = trace::delivery_span(&sub.name, &one.id, message.headers.as_ref());
    deliver_in_span(one, turn, limiter, shutdown)
        .instrument(span)
        .await;
}

async fn deliver_in_span(
    one: One<'_>,
    mut turn: Option<Turn>,
    limiter: Option<Arc<TokenBucket>>,
    shutdown: Shutdown,
) {
    let (subscriber, message, info) = (one.subscriber, one.message, one.info);
    let sub = &subscriber.sub;
    let policy = subscriber.policy();
    if let Some(reason) = malformed_reason(message) {
        // No plugin is handed a guess at bytes no client library would
        // produce. The dead letter keeps them as they arrived.
        subscriber.metrics.delivery("malformed", Duration::ZERO);
        let tried = Tried::without_call("malformed", &reason);
        if one.dead_letter(0, &reason).await {
            one.record(tried, Then::DeadLetter, None);
        } else {
            let delay = policy.delay_after(1);
            one.settle(AckKind::Nak(Some(delay))).await;
            one.record(tried, Then::Retry, Some(delay));
        }
        return;
    }
    let mut lease = Lease::new(message, &sub.name, sub.ack_wait, &shutdown);
    if let Some(turn) = &mut turn {
        // Waits on through `stop` (only `abort` ends it), so a message goes back
        // to the stream after the earlier ones of its subject, not before.
        if lease.run(turn.ready()).await.is_none() {
            one.return_unstarted().await;
            return;
        }
    }
    let (record, spent) = Record::read(
        subscriber.attempts.as_ref(),
        &sub.name,
        info.stream_sequence,
        info.delivered,
    )
    .await;
    let ordered = turn.is_some();
    let mut attempts = BusAttempts {
        one: &one,
        lease,
        limiter,
        ordered,
        policy,
        record,
        deadline: expiry(info.published, sub.dead_letter_after),
        spent,
        tried: None,
    };
    match retry::in_place(policy, spent.saturating_add(1), &mut attempts).await {
        Settled::Delivered(attempt) => {
            tracing::debug!(subscription = %sub.name, message_id = %one.id, attempt, "delivered");
            one.settle(AckKind::Ack).await;
            if let Some(tried) = attempts.tried.take() {
                one.record(tried, Then::Ack, None);
            }
            attempts.record.clear().await;
        }
        Settled::DeadLetter(reason, attempt) => {
            // A lost outcome spent the last attempt; else what the calls spent.
            let spent = if attempt > policy.max_attempts {
                policy.max_attempts
            } else {
                attempts.spent
            };
            let mut tried = attempts
                .tried
                .take()
                .unwrap_or_else(|| Tried::without_call("expired", &reason));
            tried.error = Some(reason.clone());
            while !one.dead_letter(spent, &reason).await {
                let delay = policy.delay_after(attempt);
                if !ordered {
                    one.settle(AckKind::Nak(Some(delay))).await;
                    tried.error = Some(format!("{reason}; the dead-letter write failed"));
                    one.record(tried, Then::Retry, Some(delay));
                    return;
                }
                // The next message of the subject waits until this one is
                // dead-lettered; try the write again here.
                let delay = delay.max(Duration::from_secs(1));
                if attempts
                    .lease
                    .wait(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    one.return_unstarted().await;
                    return;
                }
            }
            one.record(tried, Then::DeadLetter, None);
            attempts.record.clear().await;
        }
        Settled::Left => {}
    }
}

impl BusAttempts<'_> {
    /// A failure past the message's `dead_letter_after` dead-letters it.
    fn expire_if_due(&self, result: Attempt) -> Attempt {
        let retried = matches!(
            result,
            Attempt::Retry { .. } | Attempt::Failed(_) | Attempt::NotCalled(_)
        );
        if !retried || Instant::now() < self.deadline {
            return result;
        }
        Attempt::Expired(format!("{}; last: {}", self.too_old(), result.reason()))
    }

    fn too_old(&self) -> String {
        let after = self.one.subscriber.sub.dead_letter_after;
        format!(
            "not delivered within dead_letter_after ({}) of its publication",
            humantime::format_duration(after)
        )
    }
}

/// When a message published at `published` is past `after` (now, if the
/// clocks say it already is).
fn expiry(published: time::OffsetDateTime, after: Duration) -> Instant {
    let age = Duration::try_from(time::OffsetDateTime::now_utc() - published).unwrap_or_default();
    Instant::now() + after.saturating_sub(age)
}

/// The message being delivered, with what settling it needs.
struct One<'a> {
    subscriber: &'a Subscriber,
    message: &'a jetstream::Message,
    info: &'a Info<'a>,
    id: String,
    /// This delivery wrote to the attempt history.
    recorded: AtomicBool,
}

/// How `run` makes the attempts of one message (see [`retry::in_place`]).
struct BusAttempts<'a> {
    one: &'a One<'a>,
    lease: Lease<'a>,
    limiter: Option<Arc<TokenBucket>>,
    /// Retries wait here (`ordering: per-subject`) instead of going back to
    /// JetStream with a delay.
    ordered: bool,
    policy: Policy,
    /// What the message has spent, as the attempt records know it.
    record: Record<'a>,
    /// When the message is past its `dead_letter_after`.
    deadline: Instant,
    /// Attempts spent: what the dead letter says.
    spent: u32,
    /// The last counted attempt, for the history once what came of it is known.
    tried: Option<Tried>,
}

/// One attempt, until the history is told what came of it.
struct Tried {
    /// 0: no call was made.
    attempt: u32,
    started: SystemTime,
    took: Duration,
    outcome: &'static str,
    http_status: Option<u16>,
    error: Option<String>,
    /// The start of the last response's body, as it came.
    response: Vec<u8>,
}

impl Tried {
    /// A message settled without a plugin call.
    fn without_call(outcome: &'static str, why: &str) -> Self {
        Tried {
            attempt: 0,
            started: SystemTime::now(),
            took: Duration::ZERO,
            outcome,
            http_status: None,
            error: Some(why.to_owned()),
            response: Vec::new(),
        }
    }
}

impl Attempts for BusAttempts<'_> {
    async fn attempt(&mut self, attempt: u32) -> Option<Attempt> {
        let one = self.one;
        let sub = &one.subscriber.sub;
        let metrics = &one.subscriber.metrics;
        if let Some(lost) = self.policy.lost(attempt) {
            metrics.delivery("lost", Duration::ZERO);
            self.tried = Some(Tried::without_call("lost", lost.reason()));
            return Some(lost);
        }
        // Until a call spends the attempt: a call that fails against a
        // destination known down leaves the message waiting here.
        loop {
            let token = async {
                if let Some(limiter) = &self.limiter {
                    limiter.acquire().await;
                }
            };
            if self.lease.wait(token).await.is_none() {
                one.return_unstarted().await;
                return None;
            }
            let destination = &one.subscriber.destination;
            let ticket = match self.lease.wait(destination.admit(self.deadline)).await {
                None => {
                    one.return_unstarted().await;
                    return None;
                }
                Some(Err(Expired(down))) => {
                    return Some(Attempt::Expired(format!("{}: {down}", self.too_old())));
                }
                Some(Ok(ticket)) => ticket,
            };
            if !ticket.is_probe() && attempt > 1 {
                // Spent before the call: a host that dies in it has spent it.
                self.record.set(attempt).await;
            }
            let started = Instant::now();
            let at = SystemTime::now();
            let _in_flight = metrics.in_flight();
            let input = for_plugin(one.message, one.info, attempt, self.policy.max_attempts);
            let call = tokio::time::timeout(call_limit(sub), one.subscriber.sink.deliver(&input));
            let Some(mut called) = self.lease.run(call).await else {
                one.settle(AckKind::Nak(None)).await;
                metrics.delivery("aborted", started.elapsed());
                let tried = Tried {
                    attempt,
                    started: at,
                    took: started.elapsed(),
                    outcome: "aborted",
                    http_status: None,
                    error: Some("shutdown abandoned the call".into()),
                    response: Vec::new(),
                };
                one.record(tried, Then::Returned, None);
                tracing::info!(subscription = %sub.name, message_id = %one.id, "shutdown: delivery abandoned, message returned to the stream");
                return None;
            };
            if matches!(&called, Ok(Err(error)) if error.is_trap()) {
                metrics::plugin_trap(&sub.name);
            }
            let last = attempt >= self.policy.max_attempts;
            let counts = destination.finish(ticket, seen(&called), attempt, last);
            let (http_status, response) = match &mut called {
                Ok(Ok(Delivery {
                    last_http: Some(http),
                    ..
                })) => (http.status, std::mem::take(&mut http.excerpt)),
                _ => (None, Vec::new()),
            };
            let (result, label) = classify(sub, called);
            let took = started.elapsed();
            metrics.delivery(label, took);
            let tried = Tried {
                attempt,
                started: at,
                took,
                outcome: label,
                http_status,
                error: (!matches!(result, Attempt::Delivered)).then(|| result.reason().to_owned()),
                response,
            };
            // Spent only by a call the plugin made and the breaker counts.
            if counts && !matches!(result, Attempt::NotCalled(_)) {
                self.spent = attempt;
            } else {
                self.record.set(attempt - 1).await;
            }
            if counts {
                self.tried = Some(tried);
                return Some(self.expire_if_due(result));
            }
            one.record(tried, Then::Wait, None);
        }
    }

    async fn retry_after(&mut self, delay: Duration, failed: &Attempt, attempt: u32) -> Option<()> {
        let one = self.one;
        if !matches!(failed, Attempt::NotCalled(_)) {
            self.record.set(attempt).await;
        }
        if let Some(tried) = self.tried.take() {
            one.record(tried, Then::Retry, Some(delay));
        }
        tracing::info!(
            subscription = %one.subscriber.sub.name, message_id = %one.id, subject = %one.message.subject,
            attempt, max_attempts = self.policy.max_attempts, retry_in_ms = delay.as_millis() as u64,
            in_place = self.ordered, reason = %failed.reason(), "delivery failed; will retry"
        );
        if !self.ordered {
            one.settle(AckKind::Nak(Some(delay))).await;
            return None;
        }
        if self.lease.wait(tokio::time::sleep(delay)).await.is_none() {
            one.return_unstarted().await;
            return None;
        }
        Some(())
    }
}

impl One<'_> {
    /// Writes the message to the dead-letter stream and terminates it; false
    /// (the message stays unsettled) if the write failed.
    async fn dead_letter(&self, attempts: u32, reason: &str) -> bool {
        let subscriber = self.subscriber;
        let sub = &subscriber.sub;
        let sequence = self.info.stream_sequence;
        let origin = deadletter::Origin {
            stream: &subscriber.stream,
            subscription: &sub.name,
            subject: &self.message.subject,
            sequence,
            message_id: &self.id,
            attempts,
            malformed: self.message.malformed.as_deref(),
        };
        let written = deadletter::publish(
            &subscriber.js,
            &origin,
            self.message.headers.as_ref(),
            self.message.payload.clone(),
            reason,
        )
        .await;
        match written {
            Ok(()) => {
                metrics::dead_letter(&sub.name);
                tracing::warn!(
                    subscription = %sub.name, message_id = %self.id, subject = %self.message.subject,
                    stream_sequence = sequence, attempt = attempts, reason = %reason,
                    dead_letter_subject = %deadletter::subject(&sub.name), "dead-lettered"
                );
                self.settle(AckKind::Term).await;
                true
            }
            Err(e) => {
                tracing::error!(subscription = %sub.name, message_id = %self.id, error = %e, "dead-letter write failed; the message stays in the stream");
                false
            }
        }
    }

    /// Hands what came of `tried` to the attempt history, if it keeps it.
    fn record(&self, tried: Tried, then: Then, retry_in: Option<Duration>) {
        let history = &self.subscriber.history;
        if !history.keeps(tried.attempt, then, self.recorded.load(Ordering::Relaxed)) {
            return;
        }
        self.recorded.store(true, Ordering::Relaxed);
        history.record(Entry {
            subscription: self.subscriber.sub.name.clone(),
            message_id: self.id.clone(),
            stream_sequence: self.info.stream_sequence,
            subject: self.message.subject.to_string(),
            attempt: tried.attempt,
            max_attempts: self.subscriber.policy().max_attempts,
            started: rfc3339(tried.started),
            duration_ms: u64::try_from(tried.took.as_millis()).unwrap_or(u64::MAX),
            outcome: tried.outcome.to_owned(),
            then,
            retry_in_ms: retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            http_status: tried.http_status,
            error: tried.error,
            response: match tried.response.as_slice() {
                [] => String::new(),
                body => self.subscriber.sink.redact(&String::from_utf8_lossy(body)),
            },
        });
    }

    /// Naks (without delay) a message that shutdown caught before it started.
    async fn return_unstarted(&self) {
        self.settle(AckKind::Nak(None)).await;
        tracing::info!(subscription = %self.subscriber.sub.name, message_id = %self.id, "shutdown: message not started, returned to the stream");
    }

    async fn settle(&self, kind: AckKind) {
        if let Err(e) = self.message.ack_with(kind).await {
            // The server redelivers after ack_wait; the destination dedupes by id.
            tracing::warn!(subscription = %self.subscriber.sub.name, error = %e, "ack failed");
        }
    }
}
