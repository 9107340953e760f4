//! Per-subject ordering (`ordering: per-subject`): a queue per subject, so a
//! message starts only after the previous message of its subject has finished.
//!
//! The fetch loop calls [`SubjectQueues::enqueue`] for each message in the order
//! JetStream hands them out (stream order), before spawning its delivery. That
//! gives the message a [`Turn`]: [`Turn::ready`] resolves once every earlier
//! message of the same subject has dropped its turn, which the delivery does
//! when it has acked, dead-lettered or returned its message. Subjects that have
//! nothing in flight cost nothing: a subject's entry is removed when its last
//! turn drops.
//!
//! This module owns only the queueing. Retrying in place (instead of a nak that
//! would let the next message overtake) and keeping waiting messages leased are
//! the bus's job (`bus::deliver`, `lease`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::ops::metrics;

/// The per-subject queues of one subscription.
pub(crate) struct SubjectQueues {
    subscription: String,
    /// For each subject with a message in the host: the id of its newest turn
    /// and the signal that fires when that turn drops.
    tails: Mutex<Tails>,
}

#[derive(Default)]
struct Tails {
    next_id: u64,
    by_subject: HashMap<String, (u64, oneshot::Receiver<()>)>,
}

/// A message's place in its subject's queue. Dropping it lets the next message
/// of the subject go.
pub(crate) struct Turn {
    queues: Arc<SubjectQueues>,
    subject: String,
    id: u64,
    /// Fires (closes) when the previous message of the subject is done.
    previous: Option<oneshot::Receiver<()>>,
    /// Counts this message in `sinkhost_ordering_waiting` while it waits.
    waiting: Option<metrics::InFlight>,
    /// Dropped with the turn, which wakes the next message.
    done: Option<oneshot::Sender<()>>,
}

impl SubjectQueues {
    /// Empty queues for `subscription` (which labels the waiting gauge).
    pub(crate) fn new(subscription: &str) -> Arc<Self> {
        Arc::new(SubjectQueues {
            subscription: subscription.to_owned(),
            tails: Mutex::new(Tails::default()),
        })
    }

    /// Puts a message of `subject` at the end of its subject's queue. Call in
    /// stream order.
    pub(crate) fn enqueue(self: &Arc<Self>, subject: &str) -> Turn {
        let (done, done_signal) = oneshot::channel();
        let mut tails = self.lock();
        let id = tails.next_id;
        tails.next_id += 1;
        let previous = tails
            .by_subject
            .insert(subject.to_owned(), (id, done_signal))
            .map(|(_, signal)| signal);
        let waiting = previous
            .is_some()
            .then(|| metrics::ordering_waiting(&self.subscription));
        Turn {
            queues: Arc::clone(self),
            subject: subject.to_owned(),
            id,
            previous,
            waiting,
            done: Some(done),
        }
    }

    /// Forgets `subject` if turn `id` is still its newest, so the map holds only
    /// subjects with a message in the host.
    fn release(&self, subject: &str, id: u64) {
        let mut tails = self.lock();
        if tails
            .by_subject
            .get(subject)
            .is_some_and(|(newest, _)| *newest == id)
        {
            tails.by_subject.remove(subject);
        }
    }

    /// How many subjects have a message in the host.
    #[cfg(test)]
    fn subjects(&self) -> usize {
        self.lock().by_subject.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tails> {
        self.tails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Turn {
    /// Whether an earlier message of the subject is still in the host.
    #[cfg(test)]
    fn must_wait(&self) -> bool {
        self.previous.is_some()
    }

    /// Resolves once the previous message of the subject is done. Cancel-safe:
    /// awaiting it again after a cancelled await keeps waiting for the same message.
    pub(crate) async fn ready(&mut self) {
        if let Some(previous) = &mut self.previous {
            // Err (sender dropped) is the signal: the previous turn is gone.
            let _ = previous.await;
            self.previous = None;
            self.waiting = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let done = self.done.take();
        let pending = self.previous.take().and_then(|mut previous| {
            matches!(
                previous.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            )
            .then_some(previous)
        });
        match (pending, tokio::runtime::Handle::try_current()) {
            // Dropped before its own turn came (its delivery was abandoned at
            // shutdown): later messages of the subject, queued now or later,
            // must still wait for the earlier ones, so this turn ends only then.
            (Some(previous), Ok(runtime)) => {
                let queues = Arc::clone(&self.queues);
                let subject = std::mem::take(&mut self.subject);
                let id = self.id;
                runtime.spawn(async move {
                    let _ = previous.await;
                    queues.release(&subject, id);
                    drop(done);
                });
            }
            _ => {
                self.queues.release(&self.subject, self.id);
                // Wakes the next turn, if any.
                drop(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    fn is_ready(turn: &mut Turn) -> bool {
        turn.ready().now_or_never().is_some()
    }

    #[tokio::test]
    async fn the_first_message_of_a_subject_goes_at_once() {
        let queues = SubjectQueues::new("t");
        let mut a = queues.enqueue("order.1");
        let mut b = queues.enqueue("order.2");
        assert!(!a.must_wait() && !b.must_wait());
        assert!(is_ready(&mut a) && is_ready(&mut b));
    }

    #[tokio::test]
    async fn a_message_waits_for_the_previous_one_of_its_subject() {
        let queues = SubjectQueues::new("t");
        let first = queues.enqueue("order.1");
        let mut second = queues.enqueue("order.1");
        let mut third = queues.enqueue("order.1");
        let mut other = queues.enqueue("order.2");
        assert!(second.must_wait() && third.must_wait());
        assert!(is_ready(&mut other), "other subjects run in parallel");
        assert!(!is_ready(&mut second));
        assert!(!is_ready(&mut third));
        drop(first);
        assert!(is_ready(&mut second));
        assert!(
            !is_ready(&mut third),
            "the third waits for the second, not the first"
        );
        drop(second);
        assert!(is_ready(&mut third));
    }

    #[tokio::test]
    async fn finishing_out_of_order_releases_in_order() {
        let queues = SubjectQueues::new("t");
        let first = queues.enqueue("s");
        let second = queues.enqueue("s");
        let mut third = queues.enqueue("s");
        // A waiting message abandoned at shutdown drops its turn before its
        // predecessor is done; the third must still wait for the first.
        drop(second);
        tokio::task::yield_now().await;
        assert!(!is_ready(&mut third));
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), third.ready())
            .await
            .expect("the third goes once the first is done");
    }

    #[tokio::test]
    async fn an_abandoned_last_turn_still_holds_back_later_messages() {
        let queues = SubjectQueues::new("t");
        let first = queues.enqueue("s");
        let second = queues.enqueue("s");
        drop(second);
        tokio::task::yield_now().await;
        let mut third = queues.enqueue("s");
        assert!(third.must_wait(), "the first is still in the host");
        assert!(!is_ready(&mut third));
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), third.ready())
            .await
            .expect("the third goes once the first is done");
        drop(third);
        tokio::task::yield_now().await;
        assert_eq!(queues.subjects(), 0);
    }

    #[tokio::test]
    async fn subjects_leave_the_map_when_their_last_turn_drops() {
        let queues = SubjectQueues::new("t");
        let a1 = queues.enqueue("a");
        let a2 = queues.enqueue("a");
        let b = queues.enqueue("b");
        assert_eq!(queues.subjects(), 2);
        drop(a1);
        assert_eq!(queues.subjects(), 2, "a2 is still queued");
        drop(b);
        drop(a2);
        assert_eq!(queues.subjects(), 0);
        let mut again = queues.enqueue("a");
        assert!(!again.must_wait() && is_ready(&mut again));
    }

    #[tokio::test]
    async fn waiters_wake_in_order_across_tasks() {
        let queues = SubjectQueues::new("t");
        let (log, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for n in 0..20u32 {
            let mut turn = queues.enqueue(if n.is_multiple_of(2) { "even" } else { "odd" });
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                turn.ready().await;
                // Finish the early ones slowest, so any overtaking would show.
                tokio::time::sleep(Duration::from_millis(u64::from(20 - n))).await;
                log.send(n).unwrap();
            }));
        }
        drop(log);
        for task in tasks {
            task.await.unwrap();
        }
        let mut seen = Vec::new();
        while let Some(n) = order.recv().await {
            seen.push(n);
        }
        let evens: Vec<u32> = seen.iter().copied().filter(|n| n % 2 == 0).collect();
        let odds: Vec<u32> = seen.iter().copied().filter(|n| n % 2 == 1).collect();
        assert_eq!(evens, (0..20).step_by(2).collect::<Vec<_>>());
        assert_eq!(odds, (1..20).step_by(2).collect::<Vec<_>>());
        assert_eq!(queues.subjects(), 0);
    }
}
