//! Replaying dead letters: each one goes through its subscription's plugin
//! again, and the ones the plugin now delivers leave the dead-letter stream.
//!
//! A replay never republishes to the original subject, which would reach every
//! subscription whose subject matches; it hands the stored payload and headers
//! to the one subscription's [`Sink`], prepared by [`select::only_sink`]
//! exactly as `run` does. Each dead letter gets one attempt (no backoff, no
//! retries): what still fails stays where it is, for a later replay. A dead
//! letter of a malformed message is kept and not handed to the plugin. This
//! module prints nothing; the caller gets one [`Replayed`] per dead letter as
//! it goes, and a [`Summary`].

use async_nats::jetstream;

use super::results::{Fate, Replayed, Source, Summary};
use super::select::{find_subscription, main_stream, only_sink};
use crate::bus::deadletter::{self, Stored};
use crate::config::{Config, Subscription};
use crate::delivery::classify::{call_limit, classify};
use crate::delivery::message::message_id;
use crate::delivery::retry::Attempt;
use crate::plugin::{self, Sink};

/// Replays the dead letters of subscription `name` of `config` (only those
/// whose message id is in `ids`, unless `ids` is empty), calling `progress`
/// after each. `stream` overrides the main stream the dead letters belong to;
/// without it, the `stream:` of config.d, else the one stream holding the
/// subscription's subject.
pub(crate) async fn replay(
    js: &jetstream::Context,
    config: &Config,
    name: &str,
    stream: Option<String>,
    ids: &[String],
    mut progress: impl FnMut(&Replayed),
) -> anyhow::Result<Summary> {
    let sub = find_subscription(config, name)?;
    let stream = main_stream(js, config, sub, stream).await?;
    let sink = only_sink(config, sub).await?;

    let mut letters = deadletter::read(js, &stream, Some(name)).await?;
    let mut summary = Summary::new(Source::DeadLetters);
    if !ids.is_empty() {
        letters.retain(|stored| ids.contains(&stored.letter.message_id));
        summary.missing = ids
            .iter()
            .filter(|id| !letters.iter().any(|s| &s.letter.message_id == *id))
            .cloned()
            .collect();
    }
    for stored in letters {
        let fate = if stored.letter.is_malformed() {
            Fate::Malformed(format!(
                "not replayed: {}; its raw subject and headers are in {} and {}",
                stored.letter.last_error,
                deadletter::RAW_SUBJECT,
                deadletter::RAW_HEADERS
            ))
        } else {
            match deliver(sub, &sink, &stored).await {
                Ok(()) => match deadletter::remove(js, &stream, stored.letter.dlq_sequence).await {
                    Ok(()) => Fate::Delivered { attempt: 1 },
                    Err(e) => Fate::DeliveredButKept(e.to_string()),
                },
                Err(reason) => Fate::StillFailing(reason),
            }
        };
        summary.count(&fate);
        let letter = stored.letter;
        progress(&Replayed {
            sequence: letter.dlq_sequence,
            subject: letter.subject,
            message_id: letter.message_id,
            fate,
        });
    }
    Ok(summary)
}

/// One attempt at delivering a dead letter, read as `run` reads a call;
/// `Err` says why it failed.
async fn deliver(sub: &Subscription, sink: &Sink, stored: &Stored) -> Result<(), String> {
    let letter = &stored.letter;
    let message = plugin::Message {
        subject: letter.subject.clone(),
        payload: stored.payload.to_vec(),
        headers: stored.headers.clone(),
        id: message_id(
            Some(&letter.message_id),
            letter.stream_sequence.unwrap_or_default(),
        ),
        // The original store time is not kept in the dead letter.
        published_ms: stored.dead_lettered_ms,
        attempt: 1,
        max_attempts: 1,
    };
    let called = tokio::time::timeout(call_limit(sub), sink.deliver(&message)).await;
    match classify(sub, called).0 {
        Attempt::Delivered => Ok(()),
        Attempt::Reject(reason) => Err(format!("rejected: {reason}")),
        failed => Err(failed.reason().to_owned()),
    }
}
