//! `sinkhost replay`: messages still stored in the main stream go through one
//! subscription's plugin again, from a sequence or a point in time.
//!
//! Like the dead-letter replay (`replay`), it never republishes (that would
//! reach every subscription whose subject matches) and never touches the
//! subscription's durable consumer: it reads the stream with an ephemeral
//! ordered consumer filtered on the subscription's subject and hands each
//! message to the subscription's [`Sink`]. It stops at `--to-seq` or at the
//! stream's last sequence as of the start, so it always ends.
//!
//! Each message gets the subscription's retry policy in-process: the same
//! [`Policy`] decisions as `run`, with the delays slept here instead of asked
//! of JetStream. A message that still fails is written to the dead-letter
//! stream exactly like a final failure in `run` (reason prefixed `replay: `).
//! This module prints nothing: the caller gets one [`Replayed`] per message
//! and a [`Summary`].

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::bus::deadletter;
use crate::config::{Config, Subscription};
use crate::delivery::retry::{Action, Attempt, Policy};
use crate::plugin::{self, Sink};
use crate::tools::replay::{find_subscription, main_stream, only_sink};

/// How long to wait for the next stored message before calling the stream silent.
const READ_WAIT: Duration = Duration::from_secs(10);

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Messages stored at most this long ago (`--since 2h`).
    Since(Duration),
    /// Messages from this stream sequence on (`--from-seq N`).
    Sequence(u64),
}

/// What became of one replayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The plugin delivered it, on this attempt.
    Delivered {
        /// The attempt that delivered it (1 = the first).
        attempt: u32,
    },
    /// It still failed and was written to the dead-letter stream with this reason.
    DeadLettered(String),
    /// It still failed and the dead-letter write failed too; the message stays
    /// in the main stream only (a later replay can pick it up).
    NotDeadLettered {
        /// Why delivery gave up.
        reason: String,
        /// Why the dead-letter write failed.
        error: String,
    },
}

/// One message, replayed.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Its sequence in the main stream.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// The stable message id the plugin saw.
    pub message_id: String,
    /// What happened.
    pub fate: Fate,
}

/// The counts a replay ends with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages handed to the plugin.
    pub replayed: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// Of those, written to the dead-letter stream.
    pub dead_lettered: usize,
    /// Of those, neither delivered nor dead-lettered.
    pub not_dead_lettered: usize,
    /// The last stream sequence the replay would go to.
    pub end: u64,
}

impl Summary {
    /// True when every replayed message was delivered.
    pub fn all_delivered(&self) -> bool {
        self.delivered == self.replayed
    }

    fn count(&mut self, fate: &Fate) {
        self.replayed += 1;
        match fate {
            Fate::Delivered { .. } => self.delivered += 1,
            Fate::DeadLettered(_) => self.dead_lettered += 1,
            Fate::NotDeadLettered { .. } => self.not_dead_lettered += 1,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replayed {}, delivered {}, dead-lettered {}",
            self.replayed, self.delivered, self.dead_lettered
        )?;
        if self.not_dead_lettered > 0 {
            write!(
                f,
                ", failed without a dead letter {}",
                self.not_dead_lettered
            )?;
        }
        Ok(())
    }
}

/// Why the requested range makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    /// `--to-seq` lies before `--from-seq`.
    #[error("--to-seq {to} is before --from-seq {from}")]
    Backwards {
        /// The first sequence.
        from: u64,
        /// The last sequence.
        to: u64,
    },
}

/// Checks a range before anything connects.
pub fn check_range(start: Start, to_seq: Option<u64>) -> Result<(), RangeError> {
    match (start, to_seq) {
        (Start::Sequence(from), Some(to)) if to < from => Err(RangeError::Backwards { from, to }),
        _ => Ok(()),
    }
}

/// Replays the stored messages of subscription `name` of `config` from
/// `start` up to `to_seq` (or the stream's last sequence as of now, whichever
/// comes first), calling `progress` after each. `stream` overrides the main
/// stream as in `dlq replay`.
pub async fn replay(
    js: &jetstream::Context,
    config: &Config,
    name: &str,
    stream: Option<String>,
    start: Start,
    to_seq: Option<u64>,
    mut progress: impl FnMut(&Replayed),
) -> anyhow::Result<Summary> {
    // `--since` counts back from when the command was given, not from when
    // the plugin finished compiling.
    let now = time::OffsetDateTime::now_utc();
    check_range(start, to_seq)?;
    let sub = find_subscription(config, name)?;
    let stream = main_stream(js, config, sub, stream).await?;
    let sink = only_sink(config, sub).await?;

    let mut handle = js
        .get_stream(&stream)
        .await
        .with_context(|| format!("opening stream {stream}"))?;
    let last = handle
        .info()
        .await
        .with_context(|| format!("reading stream {stream}"))?
        .state
        .last_sequence;
    let mut summary = Summary {
        end: to_seq.map_or(last, |to| to.min(last)),
        ..Summary::default()
    };
    let deliver_policy = match start {
        Start::Sequence(start_sequence) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start_sequence.max(1),
        },
        Start::Since(ago) => consumer::DeliverPolicy::ByStartTime {
            start_time: now - ago,
        },
    };
    let mut reader = handle
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: sub.subject.clone(),
            deliver_policy,
            description: Some(format!("sinkhost replay of subscription {}", sub.name)),
            ..Default::default()
        })
        .await
        .with_context(|| format!("reading stream {stream}"))?;
    let pending = reader
        .info()
        .await
        .with_context(|| format!("reading stream {stream}"))?
        .num_pending;
    if pending == 0 {
        return Ok(summary);
    }
    let mut messages = reader
        .messages()
        .await
        .with_context(|| format!("reading stream {stream}"))?;
    let policy = Policy {
        max_attempts: sub.max_attempts(),
        backoff: sub.backoff,
    };
    loop {
        let message = match tokio::time::timeout(READ_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => anyhow::bail!("reading stream {stream}: {e}"),
            Ok(None) | Err(_) => anyhow::bail!(
                "stream {stream} sent no further message within {READ_WAIT:?} (replayed {} so far)",
                summary.replayed
            ),
        };
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("a message of stream {stream} without metadata: {e}"))?;
        let (sequence, more) = (info.stream_sequence, info.pending > 0);
        if sequence > summary.end {
            break;
        }
        let input = plugin::Message {
            subject: message.subject.to_string(),
            payload: message.payload.to_vec(),
            headers: crate::bus::flatten_headers(message.headers.as_ref()),
            id: crate::bus::message_id(message.headers.as_ref(), sequence),
            published_ms: u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(0),
            attempt: 1,
            max_attempts: policy.max_attempts,
        };
        // A malformed message is not handed to the plugin (as in `run`).
        let outcome = match &message.malformed {
            Some(malformed) => Err((format!("malformed message: {}", malformed.reason), 0)),
            None => deliver_with_retries(sub, &sink, policy, input.clone()).await,
        };
        let fate = match outcome {
            Ok(attempt) => Fate::Delivered { attempt },
            Err((reason, attempts)) => {
                let reason = format!("replay: {reason}");
                let origin = deadletter::Origin {
                    stream: &stream,
                    subscription: &sub.name,
                    subject: &input.subject,
                    sequence,
                    message_id: &input.id,
                    attempts,
                    malformed: message.malformed.as_deref(),
                };
                match deadletter::publish(
                    js,
                    &origin,
                    message.headers.as_ref(),
                    message.payload.clone(),
                    &reason,
                )
                .await
                {
                    Ok(()) => Fate::DeadLettered(reason),
                    Err(e) => Fate::NotDeadLettered {
                        reason,
                        error: e.to_string(),
                    },
                }
            }
        };
        summary.count(&fate);
        progress(&Replayed {
            sequence,
            subject: input.subject,
            message_id: input.id,
            fate,
        });
        if sequence >= summary.end || !more {
            break;
        }
    }
    Ok(summary)
}

/// Delivers one message, attempt after attempt, as `policy` decides; `Ok`
/// holds the attempt that delivered it, `Err` the dead-letter reason and the
/// attempts made.
async fn deliver_with_retries(
    sub: &Subscription,
    sink: &Sink,
    policy: Policy,
    mut message: plugin::Message,
) -> Result<u32, (String, u32)> {
    for attempt in 1.. {
        message.attempt = attempt;
        match policy.decide(attempt_once(sub, sink, &message).await, attempt) {
            Action::Ack => return Ok(attempt),
            Action::Nak(delay) => tokio::time::sleep(delay).await,
            Action::DeadLetter(reason) => return Err((reason, attempt)),
        }
    }
    unreachable!("the policy dead-letters by attempt max_attempts")
}

/// One call of the plugin, classified as `run` classifies it.
async fn attempt_once(sub: &Subscription, sink: &Sink, message: &plugin::Message) -> Attempt {
    let outcome = tokio::time::timeout(crate::bus::call_limit(sub), sink.deliver(message)).await;
    crate::bus::classify(sub, outcome).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backwards_range_is_refused() {
        assert_eq!(
            check_range(Start::Sequence(9), Some(3))
                .unwrap_err()
                .to_string(),
            "--to-seq 3 is before --from-seq 9"
        );
        assert!(check_range(Start::Sequence(3), Some(3)).is_ok());
        assert!(check_range(Start::Since(Duration::from_secs(60)), Some(1)).is_ok());
    }

    #[test]
    fn the_summary_counts_and_says_whether_all_were_delivered() {
        let mut summary = Summary::default();
        summary.count(&Fate::Delivered { attempt: 1 });
        summary.count(&Fate::DeadLettered("replay: rejected: 422".into()));
        assert_eq!(
            summary.to_string(),
            "replayed 2, delivered 1, dead-lettered 1"
        );
        assert!(!summary.all_delivered());
        summary.count(&Fate::NotDeadLettered {
            reason: "x".into(),
            error: "y".into(),
        });
        assert_eq!(
            summary.to_string(),
            "replayed 3, delivered 1, dead-lettered 1, failed without a dead letter 1"
        );
        assert!(Summary::default().all_delivered());
    }
}
