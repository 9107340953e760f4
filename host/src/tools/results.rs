//! What a replay reports: one [`Replayed`] per message as it goes and a
//! [`Summary`] at the end, the same types for `dlq replay` and `replay`
//! (from the stream), rendered here as the one table both print.

use std::fmt;

use crate::bus::deadletter;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Delivered on this attempt (1 = the first); a dead letter was then
    /// removed from the dead-letter stream.
    Delivered {
        /// The attempt that delivered it.
        attempt: u32,
    },
    /// A dead letter delivered, but removing it from the dead-letter stream
    /// failed: a later replay would deliver it again (the destination dedupes
    /// by message id).
    DeliveredButKept(String),
    /// A dead letter not delivered; it stays in the dead-letter stream.
    StillFailing(String),
    /// A stored message that still failed, written to the dead-letter stream
    /// with this reason.
    DeadLettered(String),
    /// A stored message that still failed, and the dead-letter write failed
    /// too; it stays in the main stream only (a later replay can pick it up).
    NotDeadLettered {
        /// Why delivery gave up.
        reason: String,
        /// Why the dead-letter write failed.
        error: String,
    },
    /// A malformed message (bytes no client library would produce): not
    /// handed to the plugin; a dead letter of one is kept as it is.
    Malformed(String),
}

impl Fate {
    fn delivered(&self) -> bool {
        matches!(self, Fate::Delivered { .. } | Fate::DeliveredButKept(_))
    }
}

/// Which replay a result belongs to: the words differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `sinkhost dlq replay`: dead letters of the subscription.
    DeadLetters,
    /// `sinkhost replay`: messages stored in the main stream.
    Stream,
}

/// One message, replayed.
#[derive(Debug, Clone)]
pub(crate) struct Replayed {
    /// Its sequence: in the dead-letter stream (`dlq replay`) or the main stream.
    pub(crate) sequence: u64,
    /// Its original subject.
    pub(crate) subject: String,
    /// The stable message id the plugin saw.
    pub(crate) message_id: String,
    /// What happened.
    pub(crate) fate: Fate,
}

/// The header of the one-line-per-message table both replays print.
pub(crate) fn table_header() -> String {
    format!(
        "{:>6}  {:<24}  {:<24}  RESULT",
        "SEQ", "SUBJECT", "MESSAGE ID"
    )
}

impl Replayed {
    /// Its line of the table, for `subscription`'s replay from `source`.
    pub(crate) fn line(&self, source: Source, subscription: &str) -> String {
        let result = match (&self.fate, source) {
            (Fate::Delivered { .. }, Source::DeadLetters) => {
                "delivered, removed from the dead-letter stream".to_owned()
            }
            (Fate::Delivered { attempt: 1 }, Source::Stream) => "delivered".to_owned(),
            (Fate::Delivered { attempt }, Source::Stream) => {
                format!("delivered on attempt {attempt}")
            }
            (Fate::DeliveredButKept(e), _) => {
                format!("delivered, but still in the dead-letter stream: {e}")
            }
            (Fate::StillFailing(reason), _) => format!("still failing: {reason}"),
            (Fate::DeadLettered(reason), _) => format!(
                "dead-lettered to {}: {reason}",
                deadletter::subject(subscription)
            ),
            (Fate::NotDeadLettered { reason, error }, _) => {
                format!("NOT delivered ({reason}) and NOT dead-lettered: {error}")
            }
            (Fate::Malformed(reason), _) => format!("kept: {reason}"),
        };
        format!(
            "{:>6}  {:<24}  {:<24}  {result}",
            self.sequence, self.subject, self.message_id
        )
    }
}

/// The counts a replay ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Which replay it was.
    pub(crate) source: Source,
    /// Messages handed to the plugin.
    pub(crate) replayed: usize,
    /// Of those, delivered.
    pub(crate) delivered: usize,
    /// Of those, not delivered and left where they were.
    pub(crate) still_failing: usize,
    /// Of those, written to the dead-letter stream.
    pub(crate) dead_lettered: usize,
    /// Of those, neither delivered nor dead-lettered.
    pub(crate) not_dead_lettered: usize,
    /// Malformed messages, not handed to the plugin.
    pub(crate) malformed: usize,
    /// Requested message ids that are not among the subscription's dead letters.
    pub(crate) missing: Vec<String>,
    /// The last stream sequence a stream replay goes to.
    pub(crate) end: Option<u64>,
}

impl Summary {
    /// Nothing counted yet.
    pub(crate) fn new(source: Source) -> Self {
        Summary {
            source,
            replayed: 0,
            delivered: 0,
            still_failing: 0,
            dead_lettered: 0,
            not_dead_lettered: 0,
            malformed: 0,
            missing: Vec::new(),
            end: None,
        }
    }

    /// Counts one message.
    pub(crate) fn count(&mut self, fate: &Fate) {
        match fate {
            Fate::Malformed(_) => {
                self.malformed += 1;
                return;
            }
            fate if fate.delivered() => self.delivered += 1,
            Fate::StillFailing(_) => self.still_failing += 1,
            Fate::DeadLettered(_) => self.dead_lettered += 1,
            _ => self.not_dead_lettered += 1,
        }
        self.replayed += 1;
    }

    /// True when every requested message was delivered.
    pub(crate) fn all_delivered(&self) -> bool {
        self.delivered == self.replayed && self.malformed == 0 && self.missing.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replayed {}, delivered {}",
            self.replayed, self.delivered
        )?;
        match self.source {
            Source::DeadLetters => write!(f, ", still failing {}", self.still_failing)?,
            Source::Stream => write!(f, ", dead-lettered {}", self.dead_lettered)?,
        }
        if self.not_dead_lettered > 0 {
            write!(
                f,
                ", failed without a dead letter {}",
                self.not_dead_lettered
            )?;
        }
        if self.malformed > 0 {
            write!(f, ", malformed (kept) {}", self.malformed)?;
        }
        if let Some(end) = self.end {
            write!(f, " (up to stream sequence {end})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_replay_counts_and_says_whether_all_were_delivered() {
        let mut summary = Summary::new(Source::DeadLetters);
        summary.count(&Fate::Delivered { attempt: 1 });
        summary.count(&Fate::DeliveredButKept("no delete".into()));
        summary.count(&Fate::StillFailing("HTTP 500".into()));
        assert_eq!(
            summary.to_string(),
            "replayed 3, delivered 2, still failing 1"
        );
        assert!(!summary.all_delivered());
        let mut only_delivered = Summary::new(Source::DeadLetters);
        only_delivered.count(&Fate::Delivered { attempt: 1 });
        assert!(only_delivered.all_delivered());
        only_delivered.missing.push("m9".into());
        assert!(
            !only_delivered.all_delivered(),
            "an id that was not found is a failure"
        );
        let mut malformed = Summary::new(Source::DeadLetters);
        malformed.count(&Fate::Malformed("x".into()));
        assert_eq!(
            malformed.to_string(),
            "replayed 0, delivered 0, still failing 0, malformed (kept) 1"
        );
        assert!(!malformed.all_delivered());
    }

    #[test]
    fn a_stream_replay_counts_dead_letters_and_names_its_end() {
        let mut summary = Summary::new(Source::Stream);
        summary.end = Some(9);
        summary.count(&Fate::Delivered { attempt: 2 });
        summary.count(&Fate::DeadLettered("replay: rejected: 422".into()));
        assert_eq!(
            summary.to_string(),
            "replayed 2, delivered 1, dead-lettered 1 (up to stream sequence 9)"
        );
        summary.count(&Fate::NotDeadLettered {
            reason: "x".into(),
            error: "y".into(),
        });
        assert_eq!(
            summary.to_string(),
            "replayed 3, delivered 1, dead-lettered 1, failed without a dead letter 1 (up to stream sequence 9)"
        );
        assert!(Summary::new(Source::Stream).all_delivered());
    }

    #[test]
    fn each_fate_has_its_line() {
        let replayed = |fate| Replayed {
            sequence: 4,
            subject: "order.completed".into(),
            message_id: "nats-msg-12".into(),
            fate,
        };
        let stream = Source::Stream;
        assert_eq!(
            replayed(Fate::Delivered { attempt: 1 }).line(Source::DeadLetters, "backend"),
            "     4  order.completed           nats-msg-12               delivered, removed from the dead-letter stream"
        );
        assert!(
            replayed(Fate::Delivered { attempt: 3 })
                .line(stream, "backend")
                .ends_with("  delivered on attempt 3")
        );
        assert!(
            replayed(Fate::DeadLettered("replay: HTTP 500".into()))
                .line(stream, "backend")
                .ends_with("  dead-lettered to dlq.backend: replay: HTTP 500")
        );
        assert!(table_header().starts_with("   SEQ  SUBJECT"));
    }
}
