//! Replaying dead letters: each one goes through its subscription's plugin
//! again, and the ones the plugin now delivers leave the dead-letter stream.
//!
//! A replay never republishes to the original subject, which would reach every
//! subscription whose subject matches; it hands the stored payload and headers
//! to the one subscription's [`Sink`], compiled and initialised by
//! [`run::prepare`] exactly as `run` does. Each dead letter gets one attempt
//! (no backoff, no retries): what still fails stays where it is, for a later
//! replay. This module prints nothing; the caller gets one [`Replayed`] per
//! dead letter as it goes, and a [`Summary`].

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;

use crate::bus::deadletter::{self, DeadLetter, Stored};
use crate::config::{Config, Subscription};
use crate::plugin::{self, Delivery, Limits, Outcome, Sink};
use crate::{bus, run};

/// What became of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered and removed from the dead-letter stream.
    Delivered,
    /// Delivered, but removing it from the dead-letter stream failed: a later
    /// replay would deliver it again (the destination dedupes by message id).
    DeliveredButKept(String),
    /// Not delivered; it stays in the dead-letter stream.
    StillFailing(String),
    /// A malformed message (bytes no client library would produce): not
    /// handed to the plugin, kept with its raw bytes for the producer's owner.
    Malformed(String),
}

/// One dead letter, replayed.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The dead letter as `dlq list` shows it.
    pub letter: DeadLetter,
    /// What happened.
    pub fate: Fate,
}

/// The counts a replay ends with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Dead letters handed to the plugin.
    pub replayed: usize,
    /// Of those, delivered (removed from the stream or not).
    pub delivered: usize,
    /// Of those, not delivered.
    pub still_failing: usize,
    /// Dead letters of malformed messages, kept and not replayed.
    pub malformed: usize,
    /// Requested message ids that are not among the subscription's dead letters.
    pub missing: Vec<String>,
}

impl Summary {
    fn count(&mut self, fate: &Fate) {
        match fate {
            Fate::Delivered | Fate::DeliveredButKept(_) => self.delivered += 1,
            Fate::StillFailing(_) => self.still_failing += 1,
            Fate::Malformed(_) => {
                self.malformed += 1;
                return;
            }
        }
        self.replayed += 1;
    }

    /// True when every requested dead letter was delivered.
    pub fn all_delivered(&self) -> bool {
        self.still_failing == 0 && self.malformed == 0 && self.missing.is_empty()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replayed {}, delivered {}, still failing {}",
            self.replayed, self.delivered, self.still_failing
        )?;
        if self.malformed > 0 {
            write!(f, ", malformed (kept) {}", self.malformed)?;
        }
        Ok(())
    }
}

/// Replays the dead letters of subscription `name` of `config` (only those
/// whose message id is in `ids`, unless `ids` is empty), calling `progress`
/// after each. `stream` overrides the main stream the dead letters belong to;
/// without it, the `stream:` of config.d, else the one stream holding the
/// subscription's subject.
pub async fn replay(
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
    let sink = &sink;

    let mut letters = deadletter::read(js, &stream, Some(name)).await?;
    let mut summary = Summary::default();
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
            match deliver(sub, sink, &stored).await {
                Ok(()) => match deadletter::remove(js, &stream, stored.letter.dlq_sequence).await {
                    Ok(()) => Fate::Delivered,
                    Err(e) => Fate::DeliveredButKept(e.to_string()),
                },
                Err(reason) => Fate::StillFailing(reason),
            }
        };
        summary.count(&fate);
        progress(&Replayed {
            letter: stored.letter,
            fate,
        });
    }
    Ok(summary)
}

/// The subscription `name` of `config`, or an error naming the ones it has.
pub(crate) fn find_subscription<'a>(
    config: &'a Config,
    name: &str,
) -> anyhow::Result<&'a Subscription> {
    config.subscription(name).with_context(|| {
        let names: Vec<&str> = config
            .subscriptions
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        format!(
            "config.d has no subscription {name:?} (it has {})",
            names.join(", ")
        )
    })
}

/// The main stream `sub` reads: `stream` when given, else the `stream:` of
/// config.d, else the one stream holding the subscription's subject.
pub(crate) async fn main_stream(
    js: &jetstream::Context,
    config: &Config,
    sub: &Subscription,
    stream: Option<String>,
) -> anyhow::Result<String> {
    Ok(
        match stream.or_else(|| config.stream.as_ref().map(|s| s.name.clone())) {
            Some(stream) => stream,
            None => bus::find_stream(js, sub).await?,
        },
    )
}

/// Compiles and initialises `sub`'s plugin alone, exactly as `run` does.
pub(crate) async fn only_sink(config: &Config, sub: &Subscription) -> anyhow::Result<Arc<Sink>> {
    let only_this = Config {
        stream: config.stream.clone(),
        subscriptions: vec![sub.clone()],
    };
    let prepared = run::prepare(&only_this, Limits::default()).await?;
    Ok(prepared
        .into_iter()
        .next()
        .context("prepare returned no subscription")?
        .sink)
}

/// The header of the one-line-per-message table both replays print.
pub fn progress_header() -> String {
    format!(
        "{:>6}  {:<24}  {:<24}  RESULT",
        "SEQ", "SUBJECT", "MESSAGE ID"
    )
}

/// One line of that table: a sequence, the original subject, the message id
/// and what became of the message.
pub fn progress_line(sequence: u64, subject: &str, message_id: &str, result: &str) -> String {
    format!("{sequence:>6}  {subject:<24}  {message_id:<24}  {result}")
}

/// One attempt at delivering a dead letter; `Err` says why it failed.
async fn deliver(sub: &Subscription, sink: &Sink, stored: &Stored) -> Result<(), String> {
    let letter = &stored.letter;
    let id = if letter.message_id.is_empty() {
        format!("nats-msg-{}", letter.stream_sequence.unwrap_or_default())
    } else {
        letter.message_id.clone()
    };
    let message = plugin::Message {
        subject: letter.subject.clone(),
        payload: stored.payload.to_vec(),
        headers: stored.headers.clone(),
        id,
        // The original store time is not kept in the dead letter.
        published_ms: stored.dead_lettered_ms,
        attempt: 1,
        max_attempts: 1,
    };
    let limit = crate::bus::call_limit(sub);
    let delivery = tokio::time::timeout(limit, sink.deliver(&message))
        .await
        .map_err(|_| format!("delivery still running after {limit:?}"))?
        .map_err(|e| e.to_string())?;
    let Delivery { outcome, last_http } = delivery;
    let after = last_http.map(|h| format!(" after {h}")).unwrap_or_default();
    match outcome {
        Outcome::Delivered => Ok(()),
        Outcome::Retry(_) => Err(format!("plugin asked to retry{after}")),
        Outcome::Reject(reason) => Err(format!("rejected: {reason}{after}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_and_says_whether_all_were_delivered() {
        let mut summary = Summary {
            replayed: 3,
            delivered: 2,
            still_failing: 1,
            malformed: 0,
            missing: Vec::new(),
        };
        assert_eq!(
            summary.to_string(),
            "replayed 3, delivered 2, still failing 1"
        );
        assert!(!summary.all_delivered());
        summary.still_failing = 0;
        assert!(summary.all_delivered());
        summary.missing.push("m9".into());
        assert!(
            !summary.all_delivered(),
            "an id that was not found is a failure"
        );
    }
}
