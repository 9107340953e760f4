//! `Receiver`: a real HTTP/1.1 server on `127.0.0.1:<random port>` standing in for a
//! webhook destination. It records every request and answers as the test programs it.
//!
//! Waiting for requests is notification-driven (no sleep loops). The receiver knows
//! nothing about envelopes or signatures; tests inspect the recorded bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use super::watched::Watched;

/// The header whose value `fail_first` and the `nth` argument of a behaviour count
/// requests by.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 0-based position among all requests this receiver got.
    pub seq: usize,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case header names; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
    /// When the request (with its whole body) arrived.
    pub received_at: Instant,
    /// The same moment on the wall clock, for comparing with timestamps in payloads.
    pub received_at_wall: SystemTime,
}

impl Recorded {
    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `Idempotency-Key` header.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header(IDEMPOTENCY_KEY)
    }

    /// The body as UTF-8 (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "request #{} {} {} has a non-JSON body ({err}): {}",
                self.seq,
                self.method,
                self.path,
                self.body_text()
            )
        })
    }

    /// A one-line description for panic messages.
    fn summary(&self) -> String {
        let mut body = self.body_text();
        if body.len() > 200 {
            let mut cut = 200;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        format!(
            "#{} {} {} key={:?} body={body}",
            self.seq,
            self.method,
            self.path,
            self.idempotency_key()
        )
    }
}

/// What the receiver answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering (the request is recorded on arrival).
    pub delay: Option<Duration>,
    /// Then wait until this gate opens.
    pub hold: Option<Gate>,
}

/// Holds the replies given [`Reply::hold`] until [`Gate::open`]: a destination
/// that keeps a request in flight for as long as the test needs.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Lets every held reply (and every later one) go.
    pub fn open(&self) {
        self.0.close();
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Reply {
    /// An empty reply with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: None,
            hold: None,
        }
    }

    /// An empty `200 OK`.
    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Answers only once `gate` is open.
    pub fn hold(mut self, gate: Gate) -> Self {
        self.hold = Some(gate);
        self
    }
}

/// Decides the reply to a request. The `usize` is the 1-based count of requests with
/// the same path and `Idempotency-Key` (or the same path, for requests without one)
/// including this one: 1 on the first delivery of a message, 2 on its retry, ...
pub type Behaviour = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    per_key: HashMap<(String, Option<String>), usize>,
}

struct Inner {
    log: Watched<Log>,
    behaviour: RwLock<Behaviour>,
}

/// A recording HTTP server; stops on Drop.
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering with `behaviour` (see [`Behaviour`]).
    pub async fn start(
        behaviour: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver to 127.0.0.1:0");
        let addr = listener.local_addr().expect("the receiver's address");
        let inner = Arc::new(Inner {
            log: Watched::new(Log::default()),
            behaviour: RwLock::new(Arc::new(behaviour)),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the receiver's HTTP server failed");
        });
        Self {
            addr,
            inner,
            server,
        }
    }

    /// Answers every request with an empty 200.
    pub async fn ok() -> Self {
        Self::start(|_, _| Reply::ok()).await
    }

    /// Answers every request with an empty `status`.
    pub async fn status(status: u16) -> Self {
        Self::start(move |_, _| Reply::status(status)).await
    }

    /// Answers the first `n` requests of each `Idempotency-Key` with `status`, later
    /// ones with 200.
    pub async fn fail_first(n: usize, status: u16) -> Self {
        Self::start(move |_, nth| {
            if nth <= n {
                Reply::status(status)
            } else {
                Reply::ok()
            }
        })
        .await
    }

    /// Answers every request with 200 after `delay`.
    pub async fn slow(delay: Duration) -> Self {
        Self::start(move |_, _| Reply::ok().delay(delay)).await
    }

    /// Replaces the behaviour for the requests that arrive from now on.
    pub fn set_behaviour(
        &self,
        behaviour: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) {
        *self
            .inner
            .behaviour
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(behaviour);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.read(|log| log.requests.clone())
    }

    /// How many requests have arrived.
    pub fn count(&self) -> usize {
        self.inner.log.read(|log| log.requests.len())
    }

    /// Waits until at least `n` requests have arrived and returns all of them.
    /// Panics after `timeout`, listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait_until_described(
            &format!("{n} request(s)"),
            |requests| requests.len() >= n,
            timeout,
        )
        .await
    }

    /// Waits until `done` holds for the requests so far and returns them.
    /// Panics after `timeout`, listing what did arrive.
    pub async fn wait_until(
        &self,
        done: impl FnMut(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> Vec<Recorded> {
        self.wait_until_described("the condition", done, timeout)
            .await
    }

    /// Waits for `quiet` and panics if the number of requests changes from `n` (or
    /// is not `n` to begin with): for asserting that nothing more arrives, such as
    /// a duplicate POST. This one does wait the whole time, by design.
    pub async fn assert_count_stays(&self, n: usize, quiet: Duration) {
        let changed = self
            .inner
            .log
            .wait(quiet, |log| (log.requests.len() != n).then_some(()))
            .await;
        if changed.is_some() {
            panic!(
                "expected exactly {n} request(s) for {quiet:?}, got {}:\n{}",
                self.count(),
                describe(&self.requests())
            );
        }
    }

    async fn wait_until_described(
        &self,
        what: &str,
        mut done: impl FnMut(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let found = self
            .inner
            .log
            .wait(timeout, |log| {
                done(&log.requests).then(|| log.requests.clone())
            })
            .await;
        found.unwrap_or_else(|| {
            let requests = self.requests();
            panic!(
                "receiver {}: timed out after {timeout:?} waiting for {what}; {} request(s) arrived:\n{}",
                self.addr,
                requests.len(),
                describe(&requests)
            )
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Dropping the server future also tells its connections to close.
        self.server.abort();
    }
}

fn describe(requests: &[Recorded]) -> String {
    if requests.is_empty() {
        return "  (none)".to_owned();
    }
    let mut out = String::new();
    for request in requests {
        let _ = writeln!(out, "  {}", request.summary());
    }
    out
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorded_headers = BTreeMap::<String, String>::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded_headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let received_at = Instant::now();
    let received_at_wall = SystemTime::now();

    let (recorded, nth) = inner.log.update(|log| {
        let recorded = Recorded {
            seq: log.requests.len(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: recorded_headers,
            body,
            received_at,
            received_at_wall,
        };
        let key = (
            recorded.path.clone(),
            recorded.idempotency_key().map(str::to_owned),
        );
        let nth = log.per_key.entry(key).or_default();
        *nth += 1;
        let nth = *nth;
        log.requests.push(recorded.clone());
        (recorded, nth)
    });

    let behaviour = Arc::clone(
        &inner
            .behaviour
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let reply = behaviour(&recorded, nth);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(gate) = &reply.hold {
        // Fails (and so returns) once the gate is closed, i.e. open.
        let _ = gate.0.acquire().await;
    }
    into_response(reply)
}

fn into_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status)
        .unwrap_or_else(|err| panic!("receiver reply status {}: {err}", reply.status));
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        let name = HeaderName::try_from(name.as_str())
            .unwrap_or_else(|err| panic!("receiver reply header name {name:?}: {err}"));
        let value = HeaderValue::try_from(value.as_str())
            .unwrap_or_else(|err| panic!("receiver reply header value {value:?}: {err}"));
        headers.append(name, value);
    }
    (status, headers, reply.body).into_response()
}

/// When the last of the distinct `Idempotency-Key`s among `requests` first
/// arrived: when a backlog had drained.
pub fn last_first_arrival(requests: &[Recorded]) -> Instant {
    let mut seen = std::collections::BTreeSet::new();
    requests
        .iter()
        .filter(|r| r.idempotency_key().is_some_and(|key| seen.insert(key)))
        .map(|r| r.received_at)
        .max()
        .expect("no request arrived")
}
