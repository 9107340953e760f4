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

use super::results::{Fate, Replayed, Source, Summary};
use super::select::{find_subscription, main_stream, only_sink};
use crate::bus::deadletter;
use crate::config::{Config, Subscription};
use crate::delivery::classify::{call_limit, classify};
use crate::delivery::message::{for_plugin, malformed_reason};
use crate::delivery::retry::{self, Attempt, Attempts, Policy, Settled};
use crate::plugin::{self, Sink};

/// How long to wait for the next stored message before calling the stream silent.
const READ_WAIT: Duration = Duration::from_secs(10);

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Messages stored at most this long ago (`--since 2h`).
    Since(Duration),
    /// Messages from this stream sequence on (`--from-seq N`).
    Sequence(u64),
}

/// Why the requested range makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RangeError {
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
pub(crate) fn check_range(start: Start, to_seq: Option<u64>) -> Result<(), RangeError> {
    match (start, to_seq) {
        (Start::Sequence(from), Some(to)) if to < from => Err(RangeError::Backwards { from, to }),
        _ => Ok(()),
    }
}

/// Replays the stored messages of subscription `name` of `config` from
/// `start` up to `to_seq` (or the stream's last sequence as of now, whichever
/// comes first), calling `progress` after each. `stream` overrides the main
/// stream as in `dlq replay`.
pub(crate) async fn replay(
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
    let end = to_seq.map_or(last, |to| to.min(last));
    let mut summary = Summary::new(Source::Stream);
    summary.end = Some(end);
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
    let policy = Policy::of(sub);
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
        if sequence > end {
            break;
        }
        let input = for_plugin(&message, &info, 1, policy.max_attempts);
        // A malformed message is not handed to the plugin (as in `run`).
        let settled = match malformed_reason(&message) {
            Some(reason) => Settled::DeadLetter(reason, 0),
            None => {
                let mut attempts = InProcess {
                    sub,
                    sink: &sink,
                    input: input.clone(),
                };
                retry::in_place(policy, 1, &mut attempts).await
            }
        };
        let fate = match settled {
            Settled::Delivered(attempt) => Fate::Delivered { attempt },
            Settled::DeadLetter(reason, attempts) => {
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
            Settled::Left => unreachable!("in-process attempts never leave the loop"),
        };
        summary.count(&fate);
        progress(&Replayed {
            sequence,
            subject: input.subject,
            message_id: input.id,
            fate,
        });
        if sequence >= end || !more {
            break;
        }
    }
    Ok(summary)
}

/// Attempts made here, in this process: the policy's delays are slept.
struct InProcess<'a> {
    sub: &'a Subscription,
    sink: &'a Sink,
    input: plugin::Message,
}

impl Attempts for InProcess<'_> {
    async fn attempt(&mut self, attempt: u32) -> Option<Attempt> {
        self.input.attempt = attempt;
        let called =
            tokio::time::timeout(call_limit(self.sub), self.sink.deliver(&self.input)).await;
        Some(classify(self.sub, called).0)
    }

    async fn retry_after(&mut self, delay: Duration, _: &Attempt, _: u32) -> Option<()> {
        tokio::time::sleep(delay).await;
        Some(())
    }
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
}
