//! `sinkhost plugin conformance`: the checks every sink plugin should pass,
//! run on any `.wasm` through the host's own plugin runtime, against a
//! destination on loopback that this module starts and that answers by path
//! (`/ok` 200, `/unavailable` 503, `/limited` 429 with `Retry-After: 7`, ...).
//! `tests/conformance.rs` runs the same checks on every plugin in the
//! repository.
//!
//! A check is *required* (the host's contract: PLUGINS.md) or *advice* (the
//! policy the templates follow, which a destination may have reasons to
//! differ from); only required checks decide [`Verdict::passed`]. Nothing
//! here prints: `cli` renders the table.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse as _;

use crate::config::PluginSearch;
use crate::config::redact::LogUrl;
use crate::outbound::{Allowlist, Outbound};
use crate::plugin::{Delivery, Limits, Message, Outcome, Runtime, Sink};
use crate::tools::tryout::TryOut;

/// The `traceparent` the checks' message carries.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The id of the checks' message.
const ID: &str = "conformance-msg-1";
/// The delay the `/limited` answer asks for.
const RETRY_AFTER_S: u64 = 7;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked, as the table shows it.
    pub name: &'static str,
    /// Part of the contract (else advice).
    pub required: bool,
    /// Whether the plugin did what the check expects.
    pub passed: bool,
    /// What the plugin did.
    pub detail: String,
}

/// Every check, in order.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The checks made; after a failure to load, only that one.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// True when every required check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed || !c.required)
    }
}

/// The message the checks deliver (its bytes; the id and trace context are
/// the checks' own).
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its subject.
    pub subject: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Default for Sample {
    /// An order event, as `plugin new`'s `order.json`.
    fn default() -> Self {
        Sample {
            subject: "order.completed".into(),
            payload: br#"{"order_id": 42, "total": "19.90", "customer": "Ada"}"#.to_vec(),
        }
    }
}

/// A request the loopback destination received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The loopback destination: answers by path, keeps what it received.
struct Destination {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Destination {
    async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let app = axum::Router::new().fallback(
            move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    let path = uri.path().to_owned();
                    log.lock().expect("received lock").push(Received {
                        path: path.clone(),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                            })
                            .collect(),
                        body: body.to_vec(),
                    });
                    let (status, headers, body) = answer(&path);
                    let mut response = (status, body).into_response();
                    for (name, value) in headers {
                        if let Ok(value) = value.parse() {
                            response.headers_mut().insert(name, value);
                        }
                    }
                    response
                }
            },
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Destination {
            addr,
            received,
            _server: server,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self, path: &str) -> Vec<Received> {
        let all = self.received.lock().expect("received lock");
        all.iter().filter(|r| r.path == path).cloned().collect()
    }
}

/// The answer for a path; only `/limited` asks for a delay.
fn answer(path: &str) -> (StatusCode, Vec<(&'static str, String)>, &'static str) {
    let (status, body) = match path {
        "/ok" => (StatusCode::OK, "ok"),
        "/unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance"),
        "/limited" => (StatusCode::TOO_MANY_REQUESTS, "slow down"),
        "/bad-request" => (StatusCode::BAD_REQUEST, "invalid payload"),
        "/request-timeout" => (StatusCode::REQUEST_TIMEOUT, "too slow"),
        _ => (StatusCode::NOT_FOUND, "no such path"),
    };
    let headers = match path {
        "/limited" => vec![("retry-after", RETRY_AFTER_S.to_string())],
        _ => Vec::new(),
    };
    (status, headers, body)
}

/// What a call came to, in words.
fn described(result: &Result<Delivery, String>) -> String {
    match result {
        Ok(Delivery { outcome, .. }) => match outcome {
            Outcome::Delivered => "delivered".to_owned(),
            Outcome::Retry(None) => "retry".to_owned(),
            Outcome::Retry(Some(delay)) => format!("retry in {}ms", delay.as_millis()),
            Outcome::Reject(reason) => format!("reject: {reason}"),
        },
        Err(error) => format!("error: {error}"),
    }
}

fn outcome(result: &Result<Delivery, String>) -> Option<&Outcome> {
    result.as_ref().ok().map(|d| &d.outcome)
}

/// Runs every check on the plugin at `plugin` with `settings` (its
/// subscription's `settings:` block; `{}` for none), delivering `sample`.
pub async fn check(plugin: &Path, settings: serde_json::Value, sample: &Sample) -> Verdict {
    let mut checks = Vec::new();
    let mut push = |name, required, passed, detail: String| {
        checks.push(Check {
            name,
            required,
            passed,
            detail,
        });
    };
    let setup = async {
        let destination = Destination::start().await.map_err(|e| e.to_string())?;
        let runtime = Runtime::new(Limits::default()).map_err(|e| e.to_string())?;
        Ok::<_, String>((destination, runtime))
    };
    let (destination, runtime) = match setup.await {
        Ok(ready) => ready,
        Err(error) => {
            push("loads and initialises", true, false, error);
            return Verdict { checks };
        }
    };
    let trial = Trial {
        plugin,
        settings: &settings,
        runtime: &runtime,
        sample,
    };

    // It loads, and `init` takes the given settings.
    if let Err(error) = trial.init(&destination.url("/ok"), None, &settings).await {
        push("loads and initialises", true, false, error);
        return Verdict { checks };
    }
    push("loads and initialises", true, true, String::new());

    // Settings it does not know: an init error `sinkhost check` reports.
    let mut unknown = settings.clone();
    if let Some(map) = unknown.as_object_mut() {
        map.insert("conformance_no_such_setting".into(), true.into());
    }
    let result = trial.init(&destination.url("/ok"), None, &unknown).await;
    push(
        "an unknown setting is an init error",
        true,
        result
            .as_ref()
            .is_err_and(|e| e.starts_with("plugin init failed")),
        match result {
            Err(error) => error,
            Ok(_) => "init accepted it".to_owned(),
        },
    );

    let on = async |path: &str| trial.call(&destination.url(path), None, None).await;
    // 2xx: delivered, with the message's id and trace context.
    let result = on("/ok").await;
    push(
        "2xx is delivered",
        true,
        outcome(&result) == Some(&Outcome::Delivered),
        described(&result),
    );
    let sent = destination.received("/ok");
    let last = sent.last();
    let id_sent = last.is_some_and(|r| {
        r.headers.iter().any(|(_, v)| v.contains(ID))
            || String::from_utf8_lossy(&r.body).contains(ID)
    });
    push(
        "the message id is sent",
        true,
        id_sent,
        match last {
            None => "no request arrived".to_owned(),
            Some(_) if id_sent => "in the request".to_owned(),
            Some(_) => format!("{ID:?} is in no header and not in the body"),
        },
    );
    let traceparent = last.and_then(|r| {
        r.headers
            .iter()
            .find(|(n, _)| n == "traceparent")
            .map(|(_, v)| v.clone())
    });
    push(
        "traceparent is forwarded",
        true,
        traceparent.as_deref() == Some(TRACEPARENT),
        match traceparent {
            Some(value) => format!("traceparent: {value}"),
            None => "no traceparent header".to_owned(),
        },
    );

    let result = on("/unavailable").await;
    push(
        "5xx is retried",
        true,
        matches!(outcome(&result), Some(Outcome::Retry(_))),
        described(&result),
    );
    let result = on("/limited").await;
    push(
        "429 Retry-After: 7 is honoured",
        true,
        outcome(&result) == Some(&Outcome::Retry(Some(Duration::from_secs(RETRY_AFTER_S)))),
        described(&result),
    );

    // No response at all: a refused connection retries; a host the
    // subscription may not reach rejects (retrying cannot help).
    let refused = refused_url();
    let result = trial.call(&refused, None, None).await;
    push(
        "a refused connection is retried",
        true,
        matches!(outcome(&result), Some(Outcome::Retry(_))),
        described(&result),
    );
    let result = trial
        .call(&destination.url("/ok"), Some(Allowlist::new(&[])), None)
        .await;
    push(
        "a denied host is rejected",
        true,
        matches!(outcome(&result), Some(Outcome::Reject(_))),
        described(&result),
    );

    // Bytes that are neither JSON nor UTF-8: any outcome but a trap.
    let result = trial
        .call(
            &destination.url("/ok"),
            None,
            Some(&[0xff, 0xfe, 0x00, b'{']),
        )
        .await;
    push(
        "a non-JSON, non-UTF-8 payload does not trap",
        true,
        result.is_ok(),
        described(&result),
    );

    // The policy the templates follow.
    let result = on("/bad-request").await;
    push(
        "400 is rejected",
        false,
        matches!(outcome(&result), Some(Outcome::Reject(_))),
        described(&result),
    );
    let result = on("/request-timeout").await;
    push(
        "408 is retried",
        false,
        matches!(outcome(&result), Some(Outcome::Retry(_))),
        described(&result),
    );
    Verdict { checks }
}

/// How the checks call the plugin: one fresh instance per call, set up as
/// `plugin test` sets one up.
struct Trial<'a> {
    plugin: &'a Path,
    settings: &'a serde_json::Value,
    runtime: &'a Runtime,
    sample: &'a Sample,
}

impl Trial<'_> {
    /// A plugin instance sending to `url` and initialised with `settings`,
    /// with the message to give it; `Err` when it did not load or `init`
    /// failed. `allow` replaces the subscription's allowlist.
    async fn init(
        &self,
        url: &str,
        allow: Option<Allowlist>,
        settings: &serde_json::Value,
    ) -> Result<(Sink, Message), String> {
        let tryout = TryOut {
            plugin: self.plugin.display().to_string(),
            plugins: PluginSearch { dirs: Vec::new() },
            url: url.to_owned(),
            webhook_headers: BTreeMap::from([(
                "Authorization".to_owned(),
                "Bearer conformance-token-7f3a".to_owned(),
            )]),
            settings: settings.clone(),
            subject: self.sample.subject.clone(),
            payload: self.sample.payload.clone(),
            headers: vec![
                ("Nats-Msg-Id".into(), ID.into()),
                ("traceparent".into(), TRACEPARENT.into()),
            ],
            id: ID.into(),
            dry_run: false,
            respond: Vec::new(),
            attempt: 1,
            max_attempts: None,
            timeout: Duration::from_secs(5),
            log_url: LogUrl::Host,
        };
        let sub = tryout.subscription().map_err(|e| e.to_string())?;
        let allow = allow.unwrap_or_else(|| Allowlist::new(&sub.allowed_hosts()));
        let outbound = Outbound::new(Outbound::shared_client(), allow, sub.timeout);
        let sink = tryout
            .sink(self.runtime, &sub, outbound)
            .await
            .map_err(|e| e.to_string())?;
        Ok((sink, tryout.message(1, sub.max_attempts())))
    }

    /// One `deliver` of the sample (or of `payload`) through a fresh
    /// instance, or why it did not happen or failed (a trap, ...).
    async fn call(
        &self,
        url: &str,
        allow: Option<Allowlist>,
        payload: Option<&[u8]>,
    ) -> Result<Delivery, String> {
        let (sink, mut message) = self.init(url, allow, self.settings).await?;
        if let Some(payload) = payload {
            message.payload = payload.to_vec();
        }
        sink.deliver(&message).await.map_err(|e| e.to_string())
    }
}

/// A loopback URL whose port was free a moment ago: connecting is refused.
fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(9, |a| a.port());
    format!("http://127.0.0.1:{port}/hook")
}
