//! `sinkhost trace`: where one message is. The message comes from the main
//! stream (when it was stored, its subject), its attempts from the attempt
//! history (`<stream>_attempts`, see [`history`]), and what the history cannot
//! hold from each subscription's consumer: a message past the consumer's
//! delivered sequence is not reached yet, one at or below the ack floor is
//! settled. Reads only; `cli` prints [`Trace`] as text or JSON.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;

use crate::bus::destination::rfc3339;
use crate::bus::history::{self, Entry, Then};
use crate::bus::{self};
use crate::config::{Config, History, Subscription, subject_matches};

/// Longest wait for the next message of a scan.
const READ_WAIT: Duration = Duration::from_secs(10);

/// The message to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A message id: `nats-msg-<sequence>`, or the producer's `Nats-Msg-Id`.
    Id(String),
    /// A stream sequence.
    Sequence(u64),
}

/// Where one message is.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Trace {
    /// The stream it was published to.
    pub(crate) stream: String,
    /// Its sequence there.
    pub(crate) sequence: u64,
    /// Its stable id, as plugins see it.
    pub(crate) message_id: String,
    /// Its subject, if the stream or a record still knows it.
    pub(crate) subject: Option<String>,
    /// When the stream stored it; `None` when the stream no longer holds it.
    pub(crate) stored: Option<String>,
    /// Each subscription whose subject takes it, in config order.
    pub(crate) subscriptions: Vec<Where>,
}

/// Where a message is for one subscription.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Where {
    /// The subscription.
    pub(crate) subscription: String,
    /// In one word.
    pub(crate) state: State,
    /// In words, with the time and counts that go with the state.
    pub(crate) summary: String,
    /// Every recorded attempt, oldest first.
    pub(crate) attempts: Vec<Entry>,
}

/// A message's state for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    /// Acked after a delivered attempt.
    Delivered,
    /// Written to the dead-letter stream.
    DeadLettered,
    /// Failed; another attempt follows.
    Retrying,
    /// Waiting for its destination, which is down.
    Held,
    /// Handed to sinkhost and not settled: being delivered, or back in the
    /// stream to be delivered again.
    InFlight,
    /// Settled (at or below the consumer's ack floor), with no record saying how.
    Settled,
    /// The consumer has not reached it.
    NotReached,
    /// The subscription's consumer does not exist (it never ran).
    NoConsumer,
}

/// Traces `target` through the subscriptions of `config` (only `only`, if
/// given).
pub(crate) async fn trace(
    js: &jetstream::Context,
    config: &Config,
    target: &Target,
    only: Option<&str>,
) -> anyhow::Result<Trace> {
    let subs: Vec<&Subscription> = config
        .subscriptions
        .iter()
        .filter(|s| only.is_none_or(|name| s.name == name))
        .collect();
    if let Some(name) = only.filter(|_| subs.is_empty()) {
        anyhow::bail!("no subscription {name} in config.d");
    }
    let stream_name = stream_of(js, config, &subs).await?;
    let stream = js
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("stream {stream_name}"))?;
    let sequence = match target {
        Target::Sequence(sequence) => *sequence,
        Target::Id(id) => find(js, &stream, &stream_name, id).await?,
    };
    let stored = match stream.get_raw_message(sequence).await {
        Ok(message) => Some(message),
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("stream {stream_name}: message {sequence}"));
        }
    };
    let records = records(js, &stream_name, only, sequence).await?;
    let subject = stored
        .as_ref()
        .map(|m| m.subject.to_string())
        .or_else(|| records.first().map(|r| r.subject.clone()));
    let message_id = stored
        .as_ref()
        .and_then(|m| m.headers.get("Nats-Msg-Id"))
        .map(|id| id.as_str().to_owned())
        .or_else(|| records.first().map(|r| r.message_id.clone()))
        .unwrap_or_else(|| format!("nats-msg-{sequence}"));
    if stored.is_none() && records.is_empty() {
        let last = stream.cached_info().state.last_sequence;
        anyhow::bail!(
            "stream {stream_name} holds no message {sequence} (its last is {last}) and no attempt of it is recorded"
        );
    }
    let kept = config
        .stream
        .as_ref()
        .map_or(History::default(), |s| s.history);
    let mut subscriptions = Vec::new();
    for sub in subs {
        let takes = subject
            .as_deref()
            .is_none_or(|s| subject_matches(&sub.subject, s));
        if !takes {
            continue;
        }
        let attempts: Vec<Entry> = records
            .iter()
            .filter(|r| r.subscription == sub.name)
            .cloned()
            .collect();
        let consumer = stream.consumer_info(&sub.consumer).await.ok();
        let progress = consumer.map(|c| Progress {
            delivered: c.delivered.stream_sequence,
            ack_floor: c.ack_floor.stream_sequence,
            pending: c.num_pending,
        });
        let (state, summary) = place(sequence, &attempts, progress, kept);
        subscriptions.push(Where {
            subscription: sub.name.clone(),
            state,
            summary,
            attempts,
        });
    }
    Ok(Trace {
        stream: stream_name,
        sequence,
        message_id,
        subject,
        stored: stored.map(|m| rfc3339(SystemTime::from(m.time))),
        subscriptions,
    })
}

/// The one stream the subscriptions read.
async fn stream_of(
    js: &jetstream::Context,
    config: &Config,
    subs: &[&Subscription],
) -> anyhow::Result<String> {
    if let Some(stream) = &config.stream {
        return Ok(stream.name.clone());
    }
    let mut names = Vec::new();
    for sub in subs {
        let name = bus::find_stream(js, sub)
            .await
            .with_context(|| format!("subscription {}", sub.name))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("config.d has no subscription"),
        several => anyhow::bail!(
            "the subscriptions read several streams ({}): name one with --subscription",
            several.join(", ")
        ),
    }
}

/// The sequence of the message whose id is `id`: `nats-msg-<sequence>`, else
/// the message whose `Nats-Msg-Id` it is (a scan of the stream's headers),
/// else one whose attempts name it (a scan of the history).
async fn find(
    js: &jetstream::Context,
    stream: &stream::Stream,
    name: &str,
    id: &str,
) -> anyhow::Result<u64> {
    if let Some(sequence) = id.strip_prefix("nats-msg-").and_then(|s| s.parse().ok()) {
        return Ok(sequence);
    }
    let mut found = None;
    scan(stream, name, "", true, |message, sequence| {
        let ours = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .is_some_and(|v| v.as_str() == id);
        if ours {
            found = Some(sequence);
        }
        !ours
    })
    .await?;
    if let Some(sequence) = found {
        return Ok(sequence);
    }
    let attempts_name = history::stream_name(name);
    if let Ok(attempts) = js.get_stream(&attempts_name).await {
        scan(&attempts, &attempts_name, "", false, |message, _| {
            let entry: Option<Entry> = serde_json::from_slice(&message.payload).ok();
            found = entry
                .filter(|e| e.message_id == id)
                .map(|e| e.stream_sequence);
            found.is_none()
        })
        .await?;
    }
    found.with_context(|| {
        format!("no message of stream {name} has the id {id:?} (and no attempt of one is recorded)")
    })
}

/// The recorded attempts of message `sequence` (of `only`, if given), oldest first.
async fn records(
    js: &jetstream::Context,
    stream: &str,
    only: Option<&str>,
    sequence: u64,
) -> anyhow::Result<Vec<Entry>> {
    let name = history::stream_name(stream);
    let Ok(attempts) = js.get_stream(&name).await else {
        return Ok(Vec::new());
    };
    let filter = history::subject(stream, only.unwrap_or("*"), &sequence.to_string());
    let mut all = Vec::new();
    scan(&attempts, &name, &filter, false, |message, _| {
        if let Ok(entry) = serde_json::from_slice(&message.payload) {
            all.push(entry);
        }
        true
    })
    .await?;
    Ok(all)
}

/// Reads `stream`'s messages on `filter` in order, calling `each` with each
/// and its sequence until it returns false or none is left.
async fn scan(
    stream: &stream::Stream,
    name: &str,
    filter: &str,
    headers_only: bool,
    mut each: impl FnMut(&jetstream::Message, u64) -> bool,
) -> anyhow::Result<()> {
    let failed = || format!("reading stream {name}");
    let mut reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            headers_only,
            description: Some("sinkhost trace".into()),
            ..Default::default()
        })
        .await
        .with_context(failed)?;
    if reader.info().await.with_context(failed)?.num_pending == 0 {
        return Ok(());
    }
    let mut messages = reader.messages().await.with_context(failed)?;
    loop {
        let message = match tokio::time::timeout(READ_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(e).with_context(failed),
            Ok(None) | Err(_) => anyhow::bail!("stream {name} sent nothing for {READ_WAIT:?}"),
        };
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("{}: {e}", failed()))?;
        let (sequence, more) = (info.stream_sequence, info.pending > 0);
        if !each(&message, sequence) || !more {
            return Ok(());
        }
    }
}

/// How far a consumer is, in stream sequences.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The last message it delivered.
    delivered: u64,
    /// Every message up to this one is settled.
    ack_floor: u64,
    /// Messages it has not delivered yet.
    pending: u64,
}

/// Where message `sequence` is for a subscription with these `attempts` and
/// this consumer, in one word and in words.
fn place(
    sequence: u64,
    attempts: &[Entry],
    consumer: Option<Progress>,
    kept: History,
) -> (State, String) {
    let last = attempts.last();
    match last.map(|e| e.then) {
        Some(Then::Ack) => {
            let e = last.expect("a last attempt");
            let tries = plural(u64::from(e.attempt), "attempt");
            return (
                State::Delivered,
                format!("delivered at {} after {tries}", ended(e)),
            );
        }
        Some(Then::DeadLetter) => {
            let e = last.expect("a last attempt");
            let why = e.error.as_deref().unwrap_or("no reason recorded");
            return (
                State::DeadLettered,
                format!("dead-lettered at {}: {why}", ended(e)),
            );
        }
        _ => {}
    }
    let Some(consumer) = consumer else {
        return (
            State::NoConsumer,
            "its consumer does not exist: the subscription has not run".into(),
        );
    };
    let delivered = consumer.delivered;
    if sequence > delivered {
        return (
            State::NotReached,
            format!(
                "not yet reached: the consumer is behind by {} (it last delivered #{delivered})",
                plural(consumer.pending, "message"),
            ),
        );
    }
    if sequence <= consumer.ack_floor {
        let how = match (last, kept) {
            (None, History::Failures) => {
                return (
                    State::Delivered,
                    "delivered at its first attempt (history: failures keeps no first-try success)"
                        .into(),
                );
            }
            (None, _) => "no attempt of it is recorded",
            (Some(_), _) => "its last record is not the end",
        };
        return (
            State::Settled,
            format!(
                "settled (at or below the consumer's ack floor #{}); {how}",
                consumer.ack_floor
            ),
        );
    }
    match last {
        Some(e) if e.then == Then::Retry => {
            let due = ended_at(e) + Duration::from_millis(e.retry_in_ms.unwrap_or(0));
            let why = e.error.as_deref().unwrap_or("failed");
            (
                State::Retrying,
                format!(
                    "retrying: attempt {} of {} due at {}; attempt {} failed: {why}",
                    e.attempt + 1,
                    e.max_attempts,
                    rfc3339(due),
                    e.attempt
                ),
            )
        }
        Some(e) if e.then == Then::Wait => (
            State::Held,
            format!(
                "held: its destination is down (a call at {} failed, not counted)",
                e.started
            ),
        ),
        Some(e) => (
            State::InFlight,
            format!("in flight: back in the stream after a shutdown at {}", ended(e)),
        ),
        None if kept == History::Failures => (
            State::InFlight,
            "in flight, or delivered at its first attempt (history: failures keeps no first-try success)"
                .into(),
        ),
        None => (
            State::InFlight,
            "in flight: handed to sinkhost, its first attempt not finished".into(),
        ),
    }
}

fn ended_at(e: &Entry) -> SystemTime {
    let started = humantime::parse_rfc3339(&e.started).unwrap_or(SystemTime::UNIX_EPOCH);
    started + Duration::from_millis(e.duration_ms)
}

fn ended(e: &Entry) -> String {
    rfc3339(ended_at(e))
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The text `sinkhost trace` prints.
pub(crate) fn text(trace: &Trace) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "message {} (stream {} #{}), subject {}, {}\n",
        trace.message_id,
        trace.stream,
        trace.sequence,
        trace.subject.as_deref().unwrap_or("unknown"),
        match &trace.stored {
            Some(at) => format!("stored at {at}"),
            None => "no longer in the stream".into(),
        }
    );
    if trace.subscriptions.is_empty() {
        out.push_str("  no subscription of config.d takes its subject\n");
    }
    for w in &trace.subscriptions {
        let _ = writeln!(out, "  {}: {}", w.subscription, w.summary);
        for e in &w.attempts {
            let number = match e.attempt {
                0 => "no call".to_owned(),
                n => format!("attempt {n}/{}", e.max_attempts),
            };
            let status = e
                .http_status
                .map(|s| format!(" HTTP {s}"))
                .unwrap_or_default();
            let then = match (e.then, e.retry_in_ms) {
                (Then::Retry, Some(ms)) => format!(
                    "retry in {}",
                    humantime::format_duration(Duration::from_millis(ms))
                ),
                (then, _) => serde_json::to_value(then)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                "    {number}  {}  {} ms  {}{status}  -> {then}",
                e.started, e.duration_ms, e.outcome
            );
            if let Some(error) = &e.error {
                let _ = writeln!(out, "      {error}");
            }
            if !e.response.is_empty() {
                let _ = writeln!(out, "      response: {}", e.response.escape_debug());
            }
        }
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempt: u32, then: Then) -> Entry {
        Entry {
            subscription: "orders".into(),
            message_id: "nats-msg-7".into(),
            stream_sequence: 7,
            subject: "order.created".into(),
            attempt,
            max_attempts: 4,
            started: "2026-12-02T10:00:00.000Z".into(),
            duration_ms: 250,
            outcome: "retry".into(),
            then,
            retry_in_ms: (then == Then::Retry).then_some(2000),
            http_status: Some(503),
            error: Some("plugin asked to retry after HTTP 503".into()),
            response: String::new(),
        }
    }

    fn consumer(delivered: u64, ack_floor: u64) -> Option<Progress> {
        Some(Progress {
            delivered,
            ack_floor,
            pending: 12,
        })
    }

    #[test]
    fn the_last_record_decides_before_the_consumer() {
        let c = consumer(10, 3);
        let (state, summary) = place(
            7,
            &[entry(1, Then::Retry), entry(2, Then::Ack)],
            c,
            History::All,
        );
        assert_eq!(state, State::Delivered);
        assert_eq!(
            summary,
            "delivered at 2026-12-02T10:00:00.250Z after 2 attempts"
        );
        let (state, summary) = place(7, &[entry(1, Then::Retry)], c, History::All);
        assert_eq!(state, State::Retrying);
        assert_eq!(
            summary,
            "retrying: attempt 2 of 4 due at 2026-12-02T10:00:02.250Z; attempt 1 failed: plugin asked to retry after HTTP 503"
        );
    }

    #[test]
    fn without_records_the_consumer_says_where() {
        let (state, summary) = place(15, &[], consumer(10, 3), History::All);
        assert_eq!(state, State::NotReached);
        assert_eq!(
            summary,
            "not yet reached: the consumer is behind by 12 messages (it last delivered #10)"
        );
        let (state, _) = place(2, &[], consumer(10, 3), History::Failures);
        assert_eq!(state, State::Delivered);
        let (state, _) = place(2, &[], consumer(10, 3), History::All);
        assert_eq!(state, State::Settled);
        let (state, _) = place(5, &[], consumer(10, 3), History::All);
        assert_eq!(state, State::InFlight);
        let (state, _) = place(5, &[], None, History::All);
        assert_eq!(state, State::NoConsumer);
    }
}
