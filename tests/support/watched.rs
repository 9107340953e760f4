//! `Watched<T>`: a value behind a mutex that both sync and async code can wait on.
//!
//! The fixtures are fed by plain threads (a child's pipes) and by tokio tasks (the HTTP
//! receiver), and waited on from async tests and from synchronous constructors. A
//! `Condvar` wakes blocking waiters and a `Notify` wakes async ones, so no wait here
//! is a sleep-and-poll loop. It owns no I/O and no timeouts' meaning: callers decide
//! what a timeout means and how to report it.

use std::pin::pin;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A value that can be changed from any thread and awaited until a condition holds.
pub struct Watched<T> {
    value: Mutex<T>,
    changed: Condvar,
    notify: Notify,
}

impl<T> Watched<T> {
    pub fn new(value: T) -> Self {
        Self {
            value: Mutex::new(value),
            changed: Condvar::new(),
            notify: Notify::new(),
        }
    }

    /// Locks the value, ignoring poisoning: a panicking test must still be able to
    /// read the logs and clean up in `Drop`.
    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the value and wakes every waiter.
    pub fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        let result = change(&mut self.lock());
        self.changed.notify_all();
        self.notify.notify_waiters();
        result
    }

    /// Reads the value.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.lock())
    }

    /// Blocks until `check` returns `Some`, or `None` once `timeout` has passed.
    pub fn wait_blocking<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&T) -> Option<R>,
    ) -> Option<R> {
        let deadline = Instant::now() + timeout;
        let mut value = self.lock();
        loop {
            if let Some(result) = check(&value) {
                return Some(result);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            value = self
                .changed
                .wait_timeout(value, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until `check` returns `Some`, or `None` once `timeout` has passed.
    pub async fn wait<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&T) -> Option<R>,
    ) -> Option<R> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and
            // the await still wakes us.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(result) = check(&self.lock()) {
                return Some(result);
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }
}
