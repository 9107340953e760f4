//! The destination: a plain HTTP receiver on loopback (axum, keep-alive) that
//! answers 200 to everything and records, per run, how many requests arrived,
//! the first and last arrival (in all and per path), and for bodies that carry
//! `"sent_us":<n>` the publish-to-arrival latency, and the connections it
//! accepted. One path can be made slow: its requests are answered only after
//! a delay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::serve::ListenerExt as _;

/// What arrived since the last [`Receiver::reset`].
#[derive(Debug)]
pub struct Arrivals {
    /// Requests.
    pub count: u64,
    /// Between the first and the last arrival.
    pub span: Duration,
    /// Publish-to-arrival latencies in microseconds, in arrival order.
    pub latencies_us: Vec<u64>,
}

/// The requests to some paths since the last [`Receiver::reset`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Requests.
    pub count: u64,
    /// Between the first and the last of them.
    pub span: Duration,
}

/// A running receiver.
pub struct Receiver {
    state: Arc<Counters>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

struct Counters {
    /// The bench's clock: payloads carry `sent_us` since this instant.
    epoch: Instant,
    count: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// Nanoseconds since `epoch`, plus one (0 = none yet).
    first: AtomicU64,
    last: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Per path: requests, first and last arrival (as `first`/`last`).
    paths: Mutex<HashMap<String, (u64, u64, u64)>>,
    /// The path answered late, and how late.
    slow: Mutex<Option<(String, Duration)>>,
}

impl Receiver {
    /// Binds a free loopback port and serves on the current runtime.
    pub async fn start(epoch: Instant) -> anyhow::Result<Self> {
        let state = Arc::new(Counters {
            epoch,
            count: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            first: AtomicU64::new(0),
            last: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::new()),
            paths: Mutex::new(HashMap::new()),
            slow: Mutex::new(None),
        });
        let app = axum::Router::new()
            .fallback(arrive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let accepted = state.clone();
        let listener = listener.tap_io(move |_| {
            accepted.connections.fetch_add(1, Ordering::Relaxed);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { state, base })
    }

    /// Forgets everything recorded so far.
    pub fn reset(&self) {
        self.state.count.store(0, Ordering::SeqCst);
        self.state.connections.store(0, Ordering::SeqCst);
        self.state.first.store(0, Ordering::SeqCst);
        self.state.last.store(0, Ordering::SeqCst);
        self.state.latencies_us.lock().expect("lock").clear();
        self.state.paths.lock().expect("lock").clear();
    }

    /// Answers requests to `path` only after `delay` (`None`: none slow).
    pub fn slow(&self, path: Option<(&str, Duration)>) {
        *self.state.slow.lock().expect("lock") = path.map(|(p, d)| (p.to_owned(), d));
    }

    /// Requests so far.
    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests arrived (polling; the figures come from the
    /// arrival timestamps, not from this wait), or fails after `timeout`.
    pub async fn wait_for(&self, n: u64, timeout: Duration) -> anyhow::Result<Arrivals> {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {n} requests arrived within {timeout:?}",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = self.state.first.load(Ordering::SeqCst);
        let last = self.state.last.load(Ordering::SeqCst);
        Ok(Arrivals {
            count: self.count(),
            span: Duration::from_nanos(last.saturating_sub(first)),
            latencies_us: self.state.latencies_us.lock().expect("lock").clone(),
        })
    }

    /// The requests to `paths` so far.
    pub fn tally(&self, paths: &[String]) -> Tally {
        let seen = self.state.paths.lock().expect("lock");
        let (count, first, last) = paths
            .iter()
            .filter_map(|p| seen.get(p))
            .fold((0, u64::MAX, 0), |(n, f, l), &(count, first, last)| {
                (n + count, f.min(first), l.max(last))
            });
        Tally {
            count,
            span: Duration::from_nanos(last.saturating_sub(first)),
        }
    }
}

async fn arrive(State(state): State<Arc<Counters>>, uri: Uri, body: Bytes) -> &'static str {
    let now = state.epoch.elapsed();
    let at = now.as_nanos() as u64 + 1;
    let _ = state
        .first
        .compare_exchange(0, at, Ordering::SeqCst, Ordering::SeqCst);
    state.last.fetch_max(at, Ordering::SeqCst);
    if let Some(sent) = sent_us(&body) {
        let latency = (now.as_micros() as u64).saturating_sub(sent);
        state.latencies_us.lock().expect("lock").push(latency);
    }
    {
        let mut paths = state.paths.lock().expect("lock");
        let (count, first, last) = paths.entry(uri.path().to_owned()).or_insert((0, at, at));
        *count += 1;
        *first = (*first).min(at);
        *last = (*last).max(at);
    }
    state.count.fetch_add(1, Ordering::SeqCst);
    let delay = match &*state.slow.lock().expect("lock") {
        Some((path, delay)) if path == uri.path() => Some(*delay),
        _ => None,
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    ""
}

/// The `"sent_us":<digits>` a latency payload carries.
fn sent_us(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: &[u8] = &body[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sent_us_is_read_from_an_envelope() {
        let body = br#"{"data":{"pad":"x","sent_us":12345,"seq":1},"subject":"a"}"#;
        assert_eq!(super::sent_us(body), Some(12345));
        assert_eq!(super::sent_us(b"{}"), None);
    }
}
