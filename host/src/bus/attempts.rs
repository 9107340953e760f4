//! Attempt records: how many of a message's attempts were spent, kept in the
//! `sinkhost_attempt_counts` KV bucket under `<subscription>.<stream sequence>`, so
//! a message returned to the stream unstarted (a reload, a shutdown, an
//! ordering turn, a rate-limit wait, a destination known down) never spends
//! one, however often it comes back. JetStream's delivery count cannot tell a
//! return from a failure; the record can.
//!
//! Written only off the fast path: after an attempt that failed and will be
//! retried, and before each attempt after the first, so a host that dies
//! during that call has spent it (a crash during a message's first call is
//! not counted: at most one call per message goes uncounted). A first
//! delivery reads nothing; a redelivery reads its record once. The record is
//! deleted when the message is acked or dead-lettered; the bucket's `max_age`
//! removes what a lost settle left behind. Without the bucket (it could not
//! be created, or a read fails) the delivery count is the attempt number, as
//! before records existed.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::config::MAX_DEAD_LETTER_AFTER;

/// The bucket's name.
pub(crate) const BUCKET: &str = "sinkhost_attempt_counts";

/// Creates the bucket if it is missing; `None` (logged) if it cannot be had.
pub(crate) async fn open(
    js: &jetstream::Context,
    placement: super::setup::Placement,
) -> Option<kv::Store> {
    // A record outlives the longest `dead_letter_after` by a day.
    let max_age = MAX_DEAD_LETTER_AFTER + Duration::from_secs(24 * 3600);
    let description = "sinkhost: attempts spent per message";
    super::setup::ensure_bucket(js, BUCKET, description, max_age, placement).await
}

/// One message's record, as far as this delivery knows it.
pub(crate) struct Record<'a> {
    store: Option<&'a kv::Store>,
    key: String,
    subscription: &'a str,
    /// What the bucket holds: `Some(0)` when there is no record; `None` when
    /// unknown (a read failed), so the next write is not skipped.
    written: Option<u32>,
}

impl<'a> Record<'a> {
    /// The record of message `sequence` of `subscription`, delivered
    /// `delivered` times, and the attempts it has spent so far.
    pub(crate) async fn read(
        store: Option<&'a kv::Store>,
        subscription: &'a str,
        sequence: u64,
        delivered: i64,
    ) -> (Self, u32) {
        let mut record = Record {
            store,
            key: format!("{subscription}.{sequence}"),
            subscription,
            written: Some(0),
        };
        let by_count = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
        if delivered <= 1 {
            return (record, 0);
        }
        let Some(store) = store else {
            return (record, by_count);
        };
        let spent = match store.get(record.key.as_str()).await {
            Ok(None) => 0,
            Ok(Some(value)) => match std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(spent) => spent,
                None => by_count,
            },
            Err(e) => {
                tracing::warn!(subscription, error = %e, "cannot read the attempt record; counting deliveries instead");
                record.written = None;
                by_count
            }
        };
        if record.written.is_some() {
            record.written = Some(spent);
        }
        (record, spent)
    }

    /// Records that `spent` attempts are spent.
    pub(crate) async fn set(&mut self, spent: u32) {
        let Some(store) = self.store else { return };
        if self.written == Some(spent) {
            return;
        }
        let written = if spent == 0 {
            store
                .delete(self.key.as_str())
                .await
                .map_err(|e| e.to_string())
        } else {
            let value = Bytes::from(spent.to_string());
            store
                .put(self.key.as_str(), value)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        match written {
            Ok(()) => self.written = Some(spent),
            Err(e) => {
                self.written = None;
                tracing::warn!(subscription = self.subscription, error = %e, "cannot write the attempt record");
            }
        }
    }

    /// The message is settled: forget its record.
    pub(crate) async fn clear(&mut self) {
        self.set(0).await;
    }
}
