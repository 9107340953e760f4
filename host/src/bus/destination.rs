//! One subscription's destination state: its [`Breaker`] run against the
//! clock, with what an operator sees of it and what other hosts share.
//!
//! Deliveries ask [`Destination::admit`] before each plugin call and report
//! what the call showed with [`Destination::finish`]; while the destination is
//! down they wait in `admit` (holding their messages, acked in progress) and
//! one of them probes. A transition writes one log line, sets
//! `sinkhost_destination_up`, counts in `sinkhost_destination_transitions`,
//! updates what `/healthz` shows ([`DestinationHealth`]) and, by the host that made it,
//! publishes `sinkhost.events.<subscription>.destination_down` / `_up`.
//!
//! Hosts sharing a durable consumer share the probe schedule through the
//! `sinkhost_destinations` KV bucket (key: the subscription): a probe is made
//! only by the host that moved the key's `next_probe_ms` forward (a
//! compare-and-set), so the destination sees one probe per interval however
//! many hosts there are; a host holding messages reads the key every second
//! and resumes when another host's probe found the destination back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Subscription;
use crate::delivery::breaker::{Admit, Breaker, Change, Pass, Seen};
use crate::ops::metrics;
use crate::ops::server::DestinationHealth;

/// The bucket's name.
pub(crate) const BUCKET: &str = "sinkhost_destinations";

/// How often a host holding messages reads the shared state.
const POLL: Duration = Duration::from_secs(1);

/// The subject of an operational event about `subscription`'s destination.
pub(crate) fn event_subject(subscription: &str, event: &str) -> String {
    format!("sinkhost.events.{subscription}.{event}")
}

/// Creates the shared bucket if it is missing; `None` (logged) if it cannot
/// be had: each host then probes on its own.
pub(crate) async fn open(
    js: &jetstream::Context,
    placement: super::setup::Placement,
) -> Option<kv::Store> {
    let description = "sinkhost: destination state per subscription";
    super::setup::ensure_bucket(js, BUCKET, description, Duration::ZERO, placement).await
}

/// What the hosts share of `subscription`'s destination (for `sinkhost
/// status`): whether it is down, since when (Unix ms) and the last error;
/// `None` when no host recorded a transition.
pub(crate) async fn shared_state(
    js: &jetstream::Context,
    subscription: &str,
) -> Option<(bool, u64, String)> {
    let store = js.get_key_value(BUCKET).await.ok()?;
    let (_, state) = Shared::read(&store, subscription).await?;
    state.map(|s| (s.down, s.since_ms, s.last_error))
}

/// The key's value in the shared bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shared {
    down: bool,
    /// Unix ms of the last transition.
    since_ms: u64,
    #[serde(default)]
    last_error: String,
    /// Unix ms before which no host probes.
    #[serde(default)]
    next_probe_ms: u64,
    /// The wait the last probe was claimed with (it doubles from claim to claim).
    #[serde(default)]
    interval_ms: u64,
}

impl Shared {
    /// Reads `key`: its revision, and its state unless deleted or unreadable.
    /// `None` when the key does not exist or the read failed.
    async fn read(store: &kv::Store, key: &str) -> Option<(u64, Option<Shared>)> {
        let entry = store.entry(key).await.ok().flatten()?;
        let state = (entry.operation == kv::Operation::Put)
            .then(|| serde_json::from_slice::<Shared>(&entry.value).ok())
            .flatten();
        Some((entry.revision, state))
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("plain struct"))
    }
}

/// One subscription's destination; see the module docs.
pub(crate) struct Destination {
    subscription: String,
    stream: String,
    consumer: String,
    breaker: Mutex<Breaker>,
    /// The longest wait between probes.
    max_probe_interval: Duration,
    changed: Notify,
    health: Arc<DestinationHealth>,
    js: jetstream::Context,
    shared: Option<kv::Store>,
    /// When the shared key was last read by a waiting delivery.
    polled: Mutex<Option<Instant>>,
}

/// Leave to make one call; dropped unused, it is handed back.
pub(crate) struct Ticket<'a> {
    destination: &'a Destination,
    pass: Option<Pass>,
}

impl Ticket<'_> {
    /// True for the one call that tests a destination known down.
    pub(crate) fn is_probe(&self) -> bool {
        self.pass == Some(Pass::Probe)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.destination.lock().give_back(pass);
            self.destination.changed.notify_waiters();
        }
    }
}

/// A message held past its `dead_letter_after` while the destination was
/// down; the text says since when and the last error, for the dead letter.
pub(crate) struct Expired(pub(crate) String);

enum Claim {
    Go,
    Closed,
    Later(Instant),
}

impl Destination {
    /// The destination of `sub` (read from `stream` through `js`), up.
    pub(crate) fn new(
        sub: &Subscription,
        stream: &str,
        js: jetstream::Context,
        shared: Option<kv::Store>,
    ) -> Arc<Self> {
        metrics::destination_up(&sub.name, true, false);
        Arc::new(Destination {
            subscription: sub.name.clone(),
            stream: stream.to_owned(),
            consumer: sub.consumer.clone(),
            breaker: Mutex::new(Breaker::new(sub.breaker, sub.max_concurrency)),
            max_probe_interval: sub.breaker.max_probe_interval,
            changed: Notify::new(),
            health: Arc::default(),
            js,
            shared,
            polled: Mutex::new(None),
        })
    }

    /// What `/healthz` shows.
    pub(crate) fn health(&self) -> Arc<DestinationHealth> {
        self.health.clone()
    }

    /// Waits until a call may start. While the destination is down this is
    /// where a message is held; it gives up at `deadline` (the message's
    /// `dead_letter_after`) only while the destination is down.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Ticket<'_>, Expired> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (admit, open) = {
                let mut breaker = self.lock();
                (breaker.admit(now), breaker.is_open())
            };
            let probe_at = match admit {
                Admit::Go(pass) => {
                    let ticket = Ticket {
                        destination: self,
                        pass: Some(pass),
                    };
                    if pass == Pass::Call {
                        return Ok(ticket);
                    }
                    match self.claim_probe().await {
                        Claim::Go => return Ok(ticket),
                        Claim::Closed => {
                            drop(ticket);
                            self.close_elsewhere();
                        }
                        Claim::Later(until) => {
                            let mut ticket = ticket;
                            if let Some(pass) = ticket.pass.take() {
                                self.lock().defer(pass, until);
                            }
                        }
                    }
                    continue;
                }
                Admit::Wait(at) => at,
            };
            if open && now >= deadline {
                return Err(self.expired());
            }
            let poll = (open && self.shared.is_some()).then(|| now + POLL);
            let until_deadline = open.then_some(deadline);
            let wake = [probe_at, poll, until_deadline].into_iter().flatten().min();
            tokio::select! {
                () = &mut notified => {}
                () = sleep_until(wake) => {
                    if poll.is_some() {
                        self.poll_shared().await;
                    }
                }
            }
        }
    }

    /// The call made with `ticket`, attempt `attempt` of its message (its
    /// last if `last`), showed `seen`: true if it spends that attempt.
    pub(crate) fn finish(
        &self,
        mut ticket: Ticket<'_>,
        seen: Seen,
        attempt: u32,
        last: bool,
    ) -> bool {
        let Some(pass) = ticket.pass.take() else {
            return true;
        };
        if let (Seen::Down { reason, .. }, Some((since, _))) = (&seen, self.health.down()) {
            self.health.set_down(since, reason.clone());
        }
        let (verdict, next_probe) = {
            let mut breaker = self.lock();
            let verdict = breaker.finish(pass, seen, attempt, last, Instant::now());
            (verdict, breaker.next_probe())
        };
        if let (Pass::Probe, None, Some(at), Some(store)) =
            (pass, &verdict.change, next_probe, &self.shared)
        {
            // A failed probe: the others wait as long as this host does (a
            // `Retry-After` may ask for longer than the schedule).
            tokio::spawn(postpone(store.clone(), self.subscription.clone(), at));
        }
        if let Some(change) = verdict.change {
            self.changed_to(change, true);
        }
        if !verdict.counts {
            metrics::attempt_not_counted(&self.subscription);
        }
        self.changed.notify_waiters();
        verdict.counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().expect("breaker lock")
    }

    fn expired(&self) -> Expired {
        let (since, last) = self
            .health
            .down()
            .unwrap_or((SystemTime::now(), String::new()));
        let since = rfc3339(since);
        Expired(format!(
            "the destination is down since {since}; last: {last}"
        ))
    }

    /// The key says up, and it changed to up after this host saw the
    /// destination go down.
    fn closed_elsewhere(&self, state: &Shared) -> bool {
        let since = self.health.down().map_or(0, |(since, _)| unix_ms(since));
        !state.down && state.since_ms > since
    }

    fn close_elsewhere(&self) {
        let change = self.lock().close_elsewhere();
        if let Some(change) = change {
            self.changed_to(change, false);
        }
        self.changed.notify_waiters();
    }

    /// One transition: log, metrics, view; and when this host made it
    /// (`ours`), the shared key and the event.
    fn changed_to(&self, change: Change, ours: bool) {
        let name = &self.subscription;
        let now = SystemTime::now();
        let (down, last_error) = match change {
            Change::Opened(reason) => {
                self.health.set_down(now, reason.clone());
                tracing::warn!(
                    subscription = %name, last_error = %reason,
                    "destination down: holding deliveries (no attempts spent) and probing"
                );
                (true, reason)
            }
            Change::Closed => {
                let was = self.health.down();
                self.health.set_up();
                let for_ms = was
                    .and_then(|(since, _)| now.duration_since(since).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                tracing::info!(
                    subscription = %name, down_for_ms = for_ms, by_this_host = ours,
                    "destination up again: resuming deliveries"
                );
                (false, String::new())
            }
        };
        metrics::destination_up(name, !down, true);
        if ours {
            let announce = Announce {
                subscription: name.clone(),
                stream: self.stream.clone(),
                consumer: self.consumer.clone(),
                js: self.js.clone(),
                shared: self.shared.clone(),
                down,
                last_error,
                at: now,
                next_probe: self.lock().next_probe(),
            };
            tokio::spawn(announce.run());
        }
    }

    /// Takes the shared probe slot: only the host that moves `next_probe_ms`
    /// forward probes.
    async fn claim_probe(&self) -> Claim {
        let Some(store) = &self.shared else {
            return Claim::Go;
        };
        for _ in 0..2 {
            let Some((revision, Some(mut state))) = Shared::read(store, &self.subscription).await
            else {
                return Claim::Go;
            };
            if !state.down {
                // Closed by another host after this one went down; else the
                // key is stale (or this host's own write is still on its way).
                return if self.closed_elsewhere(&state) {
                    Claim::Closed
                } else {
                    Claim::Go
                };
            }
            let now_ms = unix_ms(SystemTime::now());
            if state.next_probe_ms > now_ms {
                return Claim::Later(
                    Instant::now() + Duration::from_millis(state.next_probe_ms - now_ms),
                );
            }
            // The schedule is the key's: it doubles from claim to claim,
            // whichever host claims.
            let local = self.lock().interval().unwrap_or(POLL).as_millis() as u64;
            let doubled = state.interval_ms.saturating_mul(2);
            let interval = local
                .max(doubled)
                .min(self.max_probe_interval.as_millis() as u64);
            state.next_probe_ms = now_ms + interval;
            state.interval_ms = interval;
            if store
                .update(self.subscription.as_str(), state.encode(), revision)
                .await
                .is_ok()
            {
                return Claim::Go;
            }
        }
        Claim::Later(Instant::now() + POLL)
    }

    /// Reads the shared key (at most once per [`POLL`] for all waiting
    /// deliveries): resumes if another host found the destination back.
    async fn poll_shared(&self) {
        let Some(store) = &self.shared else { return };
        {
            let mut polled = self.polled.lock().expect("poll lock");
            let now = Instant::now();
            if polled.is_some_and(|at| now < at + POLL) {
                return;
            }
            *polled = Some(now);
        }
        if let Some((_, Some(state))) = Shared::read(store, &self.subscription).await
            && self.closed_elsewhere(&state)
        {
            self.close_elsewhere();
        }
    }
}

/// What a transition made by this host tells the others: the shared key
/// (compare-and-set, so of several hosts going down together one announces)
/// and the event.
struct Announce {
    subscription: String,
    stream: String,
    consumer: String,
    js: jetstream::Context,
    shared: Option<kv::Store>,
    down: bool,
    last_error: String,
    at: SystemTime,
    next_probe: Option<Instant>,
}

impl Announce {
    async fn run(self) {
        if !self.write_shared().await {
            return;
        }
        let event = if self.down {
            "destination_down"
        } else {
            "destination_up"
        };
        let backlog = self.backlog().await;
        let body = serde_json::json!({
            "event": event,
            "subscription": self.subscription,
            "time": rfc3339(self.at),
            "last_error": self.last_error,
            "backlog": backlog,
        });
        let subject = event_subject(&self.subscription, event);
        let payload = Bytes::from(body.to_string());
        if let Err(e) = self.js.client().publish(subject.clone(), payload).await {
            tracing::warn!(subscription = %self.subscription, subject, error = %e, "cannot publish the destination event");
        }
    }

    /// Writes the new state unless the key already says it; false if another
    /// host got there first (it announces).
    async fn write_shared(&self) -> bool {
        let Some(store) = &self.shared else {
            return true;
        };
        let key = self.subscription.as_str();
        let read = Shared::read(store, key).await;
        if let Some((_, Some(current))) = &read
            && current.down == self.down
        {
            return false;
        }
        let now = SystemTime::now();
        let wait = self.next_probe.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let state = Shared {
            down: self.down,
            since_ms: unix_ms(self.at),
            last_error: self.last_error.clone(),
            next_probe_ms: unix_ms(now) + wait.as_millis() as u64,
            interval_ms: wait.as_millis() as u64,
        };
        let written = match read {
            Some((revision, _)) => store.update(key, state.encode(), revision).await.is_ok(),
            None => store.create(key, state.encode()).await.is_ok(),
        };
        if !written {
            tracing::debug!(subscription = %self.subscription, "another host changed the destination state first");
        }
        written
    }

    /// The consumer's backlog: messages not delivered yet and delivered but not acked.
    async fn backlog(&self) -> serde_json::Value {
        let info = async {
            let stream = self.js.get_stream(&self.stream).await.ok()?;
            stream.consumer_info(&self.consumer).await.ok()
        };
        match tokio::time::timeout(Duration::from_secs(2), info).await {
            Ok(Some(info)) => serde_json::json!({
                "pending": info.num_pending,
                "ack_pending": info.num_ack_pending,
            }),
            _ => serde_json::Value::Null,
        }
    }
}

/// Moves the shared key's next probe to `at` unless it is already later.
async fn postpone(store: kv::Store, key: String, at: Instant) {
    let Some((revision, Some(mut state))) = Shared::read(&store, &key).await else {
        return;
    };
    let at_ms = unix_ms(SystemTime::now())
        + at.saturating_duration_since(Instant::now()).as_millis() as u64;
    if !state.down || state.next_probe_ms >= at_ms {
        return;
    }
    state.next_probe_ms = at_ms;
    // A lost race means another host changed the key since: it knows better.
    let _ = store.update(key.as_str(), state.encode(), revision).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-12-01T17:04:05.123Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
