//! The fetch loop of one subscription: pull batches of about
//! `max_concurrency`, start a delivery per message while a permit is free, and
//! at stop return what was fetched but not started. A failing pull is retried
//! (the consumer re-created if need be) without ending the loop.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::message::AckKind;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Subscriber;
use super::deliver::deliver;
use super::lag;
use super::lease::Shutdown;
use super::ordering::SubjectQueues;
use super::ratelimit::TokenBucket;
use super::setup::ensure_consumer;
use crate::config;

/// How long a consumer may go without a heartbeat before the loop reports it.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Fetches and delivers until `stop_fetching` fires. Deliveries run on
/// `in_flight`; each one naks its message if `abort` fires before it finishes.
pub(crate) async fn consume(
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
                    return_buffered(&name, messages).await;
                    break 'fetching;
                }
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                () = stop_fetching.cancelled() => {
                    drop(permit);
                    return_buffered(&name, messages).await;
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
/// delivery has taken, so another host, or this one after a restart or a
/// reload, gets them now instead of after `ack_wait`. Each goes back once: they
/// are collected first and returned only after the pull's inbox is
/// unsubscribed, so the server cannot hand them straight back to this loop's
/// pull request (it skips a request nobody listens to).
async fn return_buffered(subscription: &str, mut messages: consumer::pull::Stream) {
    let mut buffered = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + Duration::from_millis(100)),
        messages.next(),
    )
    .await
    {
        buffered.push(message);
    }
    // Unsubscribes, on the connection the naks follow it on.
    drop(messages);
    let mut returned = 0;
    for message in buffered {
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
