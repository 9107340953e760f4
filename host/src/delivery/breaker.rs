//! The destination's circuit breaker of one subscription: a pure state
//! machine over "what did the destination do" ([`Seen`]), with the clock
//! passed in. It decides when deliveries may start ([`Breaker::admit`]),
//! whether a finished call spends one of its message's attempts, and when the
//! destination changes between up and down ([`Change`]).
//!
//! Closed (up): calls start while fewer than `limit` run; `limit` is
//! `max_concurrency`, except after an outage, when it starts at 1 and grows by
//! one per success (doubling per round trip). `failures` destination failures
//! in a row open it, and so does the last attempt of a message all of whose
//! attempts (at least two) were part of the run: a lone message during an
//! outage is held, not dead-lettered. Open (down): nothing starts but one probe, after
//! `probe_interval`, doubling to `max_probe_interval` (a longer `Retry-After`
//! wins); a call that reaches the destination closes it. A destination
//! failure seen while open, or the one that opens it, does not count as an
//! attempt of its message.
//!
//! `bus::destination` runs it for a subscription (waits, health, metrics,
//! events, and sharing the probe schedule between hosts).

use std::time::Duration;

use tokio::time::Instant;

use crate::config;
use crate::delivery::retry::MAX_DELAY;

/// What one finished call says about the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The destination answered (any outcome that is not a failure of its own).
    Up,
    /// A destination failure: an HTTP 5xx, 408 or 429, a timeout, a refused or
    /// broken connection, and the plugin asked to retry.
    Down {
        /// What happened, for `/healthz`, the log line and the event.
        reason: String,
        /// The destination's `Retry-After` (or the plugin's delay).
        retry_after: Option<Duration>,
    },
    /// Nothing about the destination (a trap, no HTTP call).
    Unknown,
}

/// Leave to start one call, from [`Breaker::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A delivery while the destination is up.
    Call,
    /// The one call that tests a destination known to be down.
    Probe,
}

/// The answer of [`Breaker::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Start the call; hand the pass back to [`Breaker::finish`] or [`Breaker::give_back`].
    Go(Pass),
    /// Wait for a change ([`Breaker::finish`] of another call), or until this
    /// instant, when a probe is due.
    Wait(Option<Instant>),
}

/// A change of the destination's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It went down, with this last error.
    Opened(String),
    /// It is back.
    Closed,
}

/// What [`Breaker::finish`] decided about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The call spends one of its message's attempts.
    pub counts: bool,
    /// The destination's state changed with it.
    pub change: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed {
        /// Destination failures in a row.
        run: u32,
    },
    Open {
        /// The wait before the next probe once this one fails.
        interval: Duration,
        next_probe: Instant,
        probing: bool,
    },
}

/// One subscription's breaker; see the module docs.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: config::Breaker,
    max_concurrency: usize,
    state: State,
    /// Calls started and not finished.
    active: usize,
    /// Calls that may run at once while closed.
    limit: usize,
}

impl Breaker {
    /// A closed breaker for a subscription with these settings.
    pub fn new(settings: config::Breaker, max_concurrency: usize) -> Self {
        Breaker {
            settings,
            max_concurrency,
            state: State::Closed { run: 0 },
            active: 0,
            limit: max_concurrency,
        }
    }

    /// True while the destination is known to be down.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// While open: the wait after the next probe, if it fails.
    pub fn interval(&self) -> Option<Duration> {
        match self.state {
            State::Open { interval, .. } => Some(interval),
            State::Closed { .. } => None,
        }
    }

    /// While open: when the next probe is due.
    pub fn next_probe(&self) -> Option<Instant> {
        match self.state {
            State::Open { next_probe, .. } => Some(next_probe),
            State::Closed { .. } => None,
        }
    }

    /// Calls that may run at once now (ramping up after an outage).
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// May a call start now?
    pub fn admit(&mut self, now: Instant) -> Admit {
        match &mut self.state {
            State::Closed { .. } if self.active < self.limit => {
                self.active += 1;
                Admit::Go(Pass::Call)
            }
            State::Closed { .. } => Admit::Wait(None),
            State::Open { probing: true, .. } => Admit::Wait(None),
            State::Open {
                next_probe,
                probing,
                ..
            } => {
                if now < *next_probe {
                    return Admit::Wait(Some(*next_probe));
                }
                *probing = true;
                self.active += 1;
                Admit::Go(Pass::Probe)
            }
        }
    }

    /// A pass that was not used (the delivery left before its call).
    pub fn give_back(&mut self, pass: Pass) {
        self.active = self.active.saturating_sub(1);
        if let (Pass::Probe, State::Open { probing, .. }) = (pass, &mut self.state) {
            *probing = false;
        }
    }

    /// Another host holds the probe until `until`: wait for it instead.
    pub fn defer(&mut self, pass: Pass, until: Instant) {
        self.give_back(pass);
        if let State::Open { next_probe, .. } = &mut self.state {
            *next_probe = (*next_probe).max(until);
        }
    }

    /// Another host's probe found the destination back.
    pub fn close_elsewhere(&mut self) -> Option<Change> {
        self.is_open().then(|| self.close())
    }

    /// The call started with `pass`, attempt `attempt` of its message (the
    /// last one if `last`), finished and showed `seen`.
    pub fn finish(
        &mut self,
        pass: Pass,
        seen: Seen,
        attempt: u32,
        last: bool,
        now: Instant,
    ) -> Verdict {
        self.active = self.active.saturating_sub(1);
        let (counts, change) = match (&mut self.state, seen) {
            (State::Closed { run }, Seen::Up) => {
                *run = 0;
                self.limit = (self.limit + 1).min(self.max_concurrency);
                (true, None)
            }
            (State::Closed { .. }, Seen::Unknown) => (true, None),
            (
                State::Closed { run },
                Seen::Down {
                    reason,
                    retry_after,
                },
            ) => {
                *run += 1;
                let threshold = self.settings.failures;
                // One failure is no outage: the last-attempt rule needs two attempts.
                let trips = threshold > 0
                    && (*run >= threshold || (last && attempt >= 2 && *run >= attempt));
                if trips {
                    let interval = self.settings.probe_interval;
                    self.state = State::Open {
                        interval: doubled(interval, self.settings.max_probe_interval),
                        next_probe: now + wait(interval, retry_after),
                        probing: false,
                    };
                    (false, Some(Change::Opened(reason)))
                } else {
                    (true, None)
                }
            }
            (State::Open { .. }, Seen::Up) => (true, Some(self.close())),
            (
                State::Open {
                    interval,
                    next_probe,
                    probing,
                },
                Seen::Down { retry_after, .. },
            ) => {
                if pass == Pass::Probe {
                    *probing = false;
                    *next_probe = now + wait(*interval, retry_after);
                    *interval = doubled(*interval, self.settings.max_probe_interval);
                }
                (false, None)
            }
            (
                State::Open {
                    interval,
                    next_probe,
                    probing,
                },
                Seen::Unknown,
            ) => {
                // A probe that told nothing: the next one at the same interval.
                if pass == Pass::Probe {
                    *probing = false;
                    *next_probe = now + *interval;
                }
                (true, None)
            }
        };
        Verdict { counts, change }
    }

    fn close(&mut self) -> Change {
        self.state = State::Closed { run: 0 };
        self.limit = 1;
        Change::Closed
    }
}

/// The probe interval after `interval`: twice as long, at most `max`.
fn doubled(interval: Duration, max: Duration) -> Duration {
    (interval * 2).min(max)
}

/// The wait before a probe: the interval, or the destination's longer
/// `Retry-After` (capped like every delay the host takes from outside).
fn wait(interval: Duration, retry_after: Option<Duration>) -> Duration {
    interval.max(retry_after.unwrap_or_default().min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn breaker(max_concurrency: usize) -> Breaker {
        Breaker::new(config::Breaker::default(), max_concurrency)
    }

    fn down() -> Seen {
        Seen::Down {
            reason: "HTTP 503".into(),
            retry_after: None,
        }
    }

    /// Runs one call to its end: admit, then finish with `seen`.
    fn call(b: &mut Breaker, seen: Seen, now: Instant) -> Verdict {
        let Admit::Go(pass) = b.admit(now) else {
            panic!("not admitted: {b:?}")
        };
        b.finish(pass, seen, 1, false, now)
    }

    #[test]
    fn a_run_of_failures_opens_it_and_the_one_that_opens_does_not_count() {
        let now = Instant::now();
        let mut b = breaker(50);
        for _ in 0..4 {
            assert_eq!(
                call(&mut b, down(), now),
                Verdict {
                    counts: true,
                    change: None
                }
            );
        }
        assert_eq!(
            call(&mut b, down(), now),
            Verdict {
                counts: false,
                change: Some(Change::Opened("HTTP 503".into()))
            }
        );
        assert!(b.is_open());
        assert_eq!(b.admit(now), Admit::Wait(Some(now + SECOND)));
    }

    #[test]
    fn successes_and_unknowns_between_failures_keep_it_closed() {
        let now = Instant::now();
        let mut b = breaker(50);
        for _ in 0..100 {
            for _ in 0..4 {
                call(&mut b, down(), now);
            }
            call(&mut b, Seen::Unknown, now);
            assert!(!b.is_open(), "an unknown neither opens nor resets");
            call(&mut b, Seen::Up, now);
        }
        assert!(!b.is_open());
    }

    #[test]
    fn a_lone_message_opens_it_on_its_last_attempt() {
        let now = Instant::now();
        let mut b = breaker(1);
        for attempt in 1..=3 {
            let Admit::Go(pass) = b.admit(now) else {
                panic!()
            };
            assert!(b.finish(pass, down(), attempt, false, now).counts);
        }
        let Admit::Go(pass) = b.admit(now) else {
            panic!()
        };
        let verdict = b.finish(pass, down(), 4, true, now);
        assert!(!verdict.counts && b.is_open(), "held, not dead-lettered");
    }

    #[test]
    fn a_poison_message_among_successes_does_not_open_it() {
        let now = Instant::now();
        let mut b = breaker(1);
        for attempt in 1..=4 {
            call(&mut b, Seen::Up, now);
            let Admit::Go(pass) = b.admit(now) else {
                panic!()
            };
            assert!(b.finish(pass, down(), attempt, attempt == 4, now).counts);
        }
        assert!(!b.is_open());
    }

    #[test]
    fn probes_back_off_to_the_cap_and_honour_retry_after() {
        let mut now = Instant::now();
        let mut b = breaker(50);
        for _ in 0..5 {
            call(&mut b, down(), now);
        }
        let mut waits = Vec::new();
        for _ in 0..8 {
            let Admit::Wait(Some(at)) = b.admit(now) else {
                panic!()
            };
            waits.push((at - now).as_secs());
            now = at;
            assert_eq!(b.admit(now), Admit::Go(Pass::Probe));
            assert_eq!(b.admit(now), Admit::Wait(None), "one probe at a time");
            assert!(!b.finish(Pass::Probe, down(), 1, false, now).counts);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let Admit::Go(pass) = b.admit(now + Duration::from_secs(60)) else {
            panic!()
        };
        let asked = Seen::Down {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(300)),
        };
        b.finish(pass, asked, 1, false, now);
        assert_eq!(
            b.admit(now),
            Admit::Wait(Some(now + Duration::from_secs(300)))
        );
    }

    #[test]
    fn a_successful_probe_closes_it_and_ramps_back_up() {
        let now = Instant::now();
        let mut b = breaker(8);
        for _ in 0..5 {
            call(&mut b, down(), now);
        }
        let later = now + SECOND;
        assert_eq!(b.admit(later), Admit::Go(Pass::Probe));
        assert_eq!(
            b.finish(Pass::Probe, Seen::Up, 1, false, later),
            Verdict {
                counts: true,
                change: Some(Change::Closed)
            }
        );
        let mut limits = Vec::new();
        for _ in 0..8 {
            limits.push(b.limit());
            call(&mut b, Seen::Up, later);
        }
        assert_eq!(limits, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b.admit(later), Admit::Go(Pass::Call));
        assert_eq!(b.admit(later), Admit::Go(Pass::Call));
    }

    #[test]
    fn calls_that_were_running_when_it_opened_do_not_count() {
        let now = Instant::now();
        let mut b = breaker(50);
        let running: Vec<Pass> = (0..10)
            .map(|_| match b.admit(now) {
                Admit::Go(pass) => pass,
                other => panic!("{other:?}"),
            })
            .collect();
        let counted: Vec<bool> = running
            .into_iter()
            .map(|pass| b.finish(pass, down(), 1, false, now).counts)
            .collect();
        assert_eq!(
            counted,
            [
                true, true, true, true, false, false, false, false, false, false
            ]
        );
    }

    #[test]
    fn off_never_opens() {
        let now = Instant::now();
        let settings = config::Breaker {
            failures: 0,
            ..config::Breaker::default()
        };
        let mut b = Breaker::new(settings, 1);
        for attempt in 1..=100 {
            let Admit::Go(pass) = b.admit(now) else {
                panic!()
            };
            assert!(b.finish(pass, down(), attempt, true, now).counts);
        }
    }

    #[test]
    fn a_probe_held_elsewhere_defers_and_a_close_elsewhere_closes() {
        let now = Instant::now();
        let mut b = breaker(50);
        for _ in 0..5 {
            call(&mut b, down(), now);
        }
        let due = now + SECOND;
        assert_eq!(b.admit(due), Admit::Go(Pass::Probe));
        b.defer(Pass::Probe, due + Duration::from_secs(5));
        assert_eq!(
            b.admit(due),
            Admit::Wait(Some(due + Duration::from_secs(5)))
        );
        assert_eq!(b.close_elsewhere(), Some(Change::Closed));
        assert_eq!(b.close_elsewhere(), None);
        assert_eq!(b.admit(due), Admit::Go(Pass::Call));
    }
}
