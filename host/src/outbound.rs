//! Outbound HTTP: the host side of the plugin's `http.send` import.
//!
//! Owns the shared client (hyper's keep-alive pool, rustls with Mozilla's
//! roots), the per-subscription allowlist and timeout, the bounded read of
//! response bodies, and the one place an outbound failure becomes text
//! ([`HttpError`]): that text names the destination as `scheme://host:port/...`
//! (see [`crate::config::redact`]), never by the URL itself, because for many
//! webhooks the URL is the credential. It knows nothing of wasm: `plugin`
//! converts the WIT records to and from these types.
//!
//! The subscription's webhook URL, where most requests go, is checked and
//! turned into a request target once ([`Outbound::with_webhook`]); any other
//! URL a plugin names is checked on each request.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

use crate::config::redact::{self, LogUrl};

/// Response bodies are cut off after this many bytes, so a destination that
/// answers with gigabytes cannot exhaust the host's memory.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The process-wide HTTP client: one pool of keep-alive connections (HTTP/1.1,
/// or HTTP/2 where TLS negotiates it) for every subscription.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sent when the plugin names no `user-agent`.
const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("sinkhost/", env!("CARGO_PKG_VERSION")));

/// One request a plugin asked the host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The HTTP method, upper case (`POST`).
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers in order, names lower case.
    pub headers: Vec<(String, String)>,
    /// At most [`BODY_LIMIT`] bytes of the body.
    pub body: Vec<u8>,
    /// Where it came from, as the subscription's `log_url` lets it be shown
    /// (`http://127.0.0.1:8091/...`).
    pub from: String,
}

/// Why no response came back; mirrors the WIT `http-error`. `target` is the
/// destination as the subscription's `log_url` lets it be shown
/// (`http://127.0.0.1:8091/...`), so every message built from this one says
/// where the request went without giving away the URL's path or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No complete response within the subscription's timeout.
    #[error("timed out ({target})")]
    Timeout {
        /// The destination, as it may be shown.
        target: String,
    },
    /// The connection failed or broke.
    #[error("connection failed ({target}): {detail}")]
    Connect {
        /// The destination, as it may be shown.
        target: String,
        /// The causes, without any URL.
        detail: String,
    },
    /// The host refused to send the request.
    #[error("denied: {0}")]
    Denied(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Timeout { .. } => "timeout",
            HttpError::Connect { .. } => "connect",
            HttpError::Denied(_) => "denied",
            HttpError::Other(_) => "other",
        }
    }

    /// The label of a request's result in metrics: the status class (`2xx`
    /// ...) or the kind of failure.
    pub fn result_label(result: &Result<Response, HttpError>) -> &'static str {
        match result {
            Ok(response) => match response.status / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                5 => "5xx",
                _ => "other",
            },
            Err(error) => error.kind(),
        }
    }

    /// True when `result` says the destination itself is failing (not this
    /// request): a 5xx, 408 or 429, a timeout, a refused or broken connection.
    pub fn destination_failed(result: &Result<Response, HttpError>) -> bool {
        match result {
            Ok(response) => matches!(response.status, 408 | 429 | 500..),
            Err(error) => matches!(error, HttpError::Timeout { .. } | HttpError::Connect { .. }),
        }
    }

    /// The exchange with `target` (already in its shown form) broke on the
    /// wire: `what` failed (`error sending request`), because of `error`.
    fn broken(target: &str, what: &str, error: &dyn std::error::Error) -> Self {
        HttpError::Connect {
            target: target.to_owned(),
            detail: describe(what, error),
        }
    }

    /// The plugin's request could not be put on the wire as asked.
    fn not_sent(target: &str, why: impl std::fmt::Display) -> Self {
        HttpError::Other(format!("request to {target} not sent: {why}"))
    }
}

/// The hosts a subscription may reach: `api.example.com` allows that host on
/// any port, `api.example.com:8443` on that port only. (`config` lists the
/// webhook's own host with its port.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<(String, Option<u16>)>,
}

impl Allowlist {
    /// Builds the list from `host` / `host:port` entries.
    pub fn new(entries: &[String]) -> Self {
        let entries = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim().to_ascii_lowercase();
                entry
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host.to_owned(), Some(port.parse().ok()?))))
                    .unwrap_or((entry, None))
            })
            .collect();
        Allowlist { entries }
    }

    /// Checks `url` against the list; the error says why it may not be reached.
    pub fn check(&self, url: &str) -> Result<Url, HttpError> {
        let url = Url::parse(url).map_err(|e| HttpError::Denied(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Denied(format!(
                "scheme {:?} is not http(s)",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default();
        let allowed = self
            .entries
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        if allowed {
            Ok(url)
        } else {
            Err(HttpError::Denied(format!(
                "host {host}:{} is not allowed for this subscription (add it to settings.allow_hosts)",
                port.unwrap_or_default()
            )))
        }
    }
}

/// The outbound HTTP of one subscription: a handle on the shared client plus
/// that subscription's allowlist and timeout.
#[derive(Debug, Clone)]
pub struct Outbound {
    transport: Transport,
    allow: Allowlist,
    timeout: Duration,
    log_url: LogUrl,
    /// The subscription's webhook URL, checked once: most requests go there.
    webhook: Option<Arc<Target>>,
}

/// A URL the allowlist let through, as a request goes to it.
#[derive(Debug)]
struct Target {
    /// As the plugin wrote it.
    text: String,
    /// What goes on the wire: no user info, no fragment.
    uri: http::Uri,
    /// `Basic` credentials from the URL's user info, sent unless the plugin
    /// sets its own `authorization`.
    basic: Option<HeaderValue>,
    /// How errors and `from` name it.
    shown: String,
}

impl Target {
    fn new(text: &str, mut url: Url, log_url: LogUrl) -> Result<Self, HttpError> {
        let shown = redact::show_parsed(&url, log_url);
        let basic = basic_credentials(&url);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        let uri = url
            .as_str()
            .parse()
            .map_err(|e| HttpError::not_sent(&shown, format_args!("invalid URL: {e}")))?;
        Ok(Target {
            text: text.to_owned(),
            uri,
            basic,
            shown,
        })
    }
}

/// `user:password@` of `url` as an `Authorization: Basic` value
/// (percent-decoded, as a browser sends it).
fn basic_credentials(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or_default()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Where allowed requests go.
#[derive(Debug, Clone)]
enum Transport {
    /// Onto the network through the shared client.
    Network(Arc<HttpClient>),
    /// Nowhere: each request is recorded and answered from the recorder's
    /// script, `200` with an empty body once it is used up (`plugin test
    /// --dry-run` and `--respond`, and benchmarks of the plugin alone).
    DryRun(Recorder),
}

/// The requests a dry-run [`Outbound`] was asked to send, in order, and the
/// answers it gives them.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<std::sync::Mutex<Recorded>>);

#[derive(Debug, Default)]
struct Recorded {
    requests: Vec<(Request, Answer)>,
    script: std::collections::VecDeque<Answer>,
}

/// A dry-run answer: a status and headers, with an empty body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers in order; names are lower-cased when answered.
    pub headers: Vec<(String, String)>,
}

impl Recorder {
    /// Takes the requests recorded so far.
    pub fn take(&self) -> Vec<Request> {
        self.take_answered()
            .into_iter()
            .map(|(req, _)| req)
            .collect()
    }

    /// Takes the requests recorded so far, each with the answer it got.
    pub fn take_answered(&self) -> Vec<(Request, Answer)> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Answers the next requests with `answers`, one each, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().script.extend(answers);
    }

    /// How many scripted answers are left.
    pub fn unanswered(&self) -> usize {
        self.lock().script.len()
    }

    fn answer(&self, req: Request) -> Answer {
        let mut recorded = self.lock();
        let answer = recorded.script.pop_front().unwrap_or(Answer {
            status: 200,
            headers: Vec::new(),
        });
        recorded.requests.push((req, answer.clone()));
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().expect("recorder lock")
    }
}

impl Outbound {
    /// The process-wide client. One pool of keep-alive connections serves
    /// every subscription; redirects are not followed (a redirect could lead
    /// off the allowlist) and no proxy from the environment is used. Idle
    /// connections are not capped per host: there are never more than the
    /// deliveries once in flight (the sum of `max_concurrency`), and a cap
    /// below that closes and reopens connections on every request when many
    /// subscriptions share a destination.
    pub fn shared_client() -> Arc<HttpClient> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports rustls' default protocol versions")
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(tls);
        Arc::new(client)
    }

    /// A subscription's view of `client`.
    pub fn new(client: Arc<HttpClient>, allow: Allowlist, timeout: Duration) -> Self {
        Outbound {
            transport: Transport::Network(client),
            allow,
            timeout,
            log_url: LogUrl::Host,
            webhook: None,
        }
    }

    /// Shows destinations in errors as `log_url` allows (default
    /// [`LogUrl::Host`]: scheme, host and port only).
    pub fn with_log_url(mut self, log_url: LogUrl) -> Self {
        self.log_url = log_url;
        match self.webhook.take() {
            // Shown as the new policy says.
            Some(webhook) => self.with_webhook(&webhook.text),
            None => self,
        }
    }

    /// Checks `url` (the subscription's webhook URL, where most requests go)
    /// now instead of on every request to it. One that is not allowed is
    /// left to be refused per request.
    pub fn with_webhook(mut self, url: &str) -> Self {
        self.webhook = self.target(url).ok();
        self
    }

    /// `text` checked against the allowlist, as a request goes to it.
    fn target(&self, text: &str) -> Result<Arc<Target>, HttpError> {
        if let Some(known) = self.webhook.as_ref().filter(|k| k.text == text) {
            return Ok(known.clone());
        }
        let url = self.allow.check(text)?;
        Target::new(text, url, self.log_url).map(Arc::new)
    }

    /// An outbound that checks the allowlist but sends nothing: it records each
    /// request and answers it from [`Recorder::script`], else `200` with an
    /// empty body.
    pub fn dry_run(allow: Allowlist) -> (Self, Recorder) {
        let recorder = Recorder::default();
        let outbound = Outbound {
            transport: Transport::DryRun(recorder.clone()),
            allow,
            timeout: Duration::ZERO,
            log_url: LogUrl::Host,
            webhook: None,
        };
        (outbound, recorder)
    }

    /// Sends `req` if its host is allowed, within the timeout (the whole
    /// exchange, body included), reading at most [`BODY_LIMIT`] bytes of the
    /// response body.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let target = self.target(&req.url)?;
        let client = match &self.transport {
            Transport::Network(client) => client,
            Transport::DryRun(recorder) => {
                let answer = recorder.answer(req);
                return Ok(Response {
                    status: answer.status,
                    headers: answer
                        .headers
                        .into_iter()
                        .map(|(name, value)| (name.to_ascii_lowercase(), value))
                        .collect(),
                    body: Vec::new(),
                    from: target.shown.clone(),
                });
            }
        };
        let request = build(&target, req)?;
        match tokio::time::timeout(self.timeout, exchange(client, request, &target.shown)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                target: target.shown.clone(),
            }),
        }
    }
}

/// The plugin's request as hyper sends it, with the defaults a plugin did not
/// set: `user-agent`, `accept: */*`, and the URL's own credentials.
fn build(target: &Target, req: Request) -> Result<http::Request<Full<Bytes>>, HttpError> {
    let method = http::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| HttpError::Other(format!("invalid method {:?}", req.method)))?;
    let mut request = http::Request::new(Full::new(Bytes::from(req.body)));
    *request.method_mut() = method;
    *request.uri_mut() = target.uri.clone();
    let headers = request.headers_mut();
    headers.reserve(req.headers.len() + 2);
    for (name, value) in req.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HttpError::not_sent(&target.shown, format_args!("invalid header name {name:?}"))
        })?;
        // The value is never shown: it is often the credential.
        let value = HeaderValue::try_from(value).map_err(|_| {
            HttpError::not_sent(
                &target.shown,
                format_args!("invalid value of header {name}"),
            )
        })?;
        headers.append(name, value);
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, USER_AGENT);
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    if let Some(basic) = &target.basic
        && !headers.contains_key(header::AUTHORIZATION)
    {
        headers.insert(header::AUTHORIZATION, basic.clone());
    }
    Ok(request)
}

/// One request and its response, the body read up to [`BODY_LIMIT`] (the
/// rest is not read: the connection is closed instead of reused).
async fn exchange(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
    target: &str,
) -> Result<Response, HttpError> {
    let response = client
        .request(request)
        .await
        .map_err(|e| HttpError::broken(target, "error sending request", &e))?;
    let (parts, mut incoming) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        let Some(frame) = incoming.frame().await else {
            break;
        };
        let frame =
            frame.map_err(|e| HttpError::broken(target, "request or response body error", &e))?;
        if let Ok(chunk) = frame.into_data() {
            let room = BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    Ok(Response {
        status: parts.status.as_u16(),
        headers,
        body,
        from: target.to_owned(),
    })
}

/// `what` failed, then `error` and each of its causes by their own text
/// (`error sending request: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`). No part of it holds the URL: hyper's
/// errors never name it.
fn describe(what: &str, error: &dyn std::error::Error) -> String {
    let mut parts = vec![what.to_owned(), error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_with_port_is_allowed_on_that_port_only() {
        let allow = Allowlist::new(&["hooks.example:8091".into()]);
        assert!(allow.check("http://hooks.example:8091/other").is_ok());
        assert!(allow.check("http://HOOKS.example:8091/").is_ok());
        assert!(matches!(
            allow.check("http://hooks.example:22/"),
            Err(HttpError::Denied(_))
        ));
        assert!(matches!(
            allow.check("http://evil.example:8091/"),
            Err(HttpError::Denied(_))
        ));
    }

    #[test]
    fn extra_hosts_allow_any_or_one_port() {
        let allow = Allowlist::new(&[
            "a.example:443".into(),
            "b.example".into(),
            "c.example:8443".into(),
        ]);
        assert!(allow.check("https://a.example:443/").is_ok());
        assert!(allow.check("http://b.example:1234/").is_ok());
        assert!(allow.check("https://c.example:8443/").is_ok());
        assert!(allow.check("https://c.example/").is_err());
    }

    #[tokio::test]
    async fn dry_run_records_allowed_requests_and_denies_the_rest() {
        let (outbound, recorder) = Outbound::dry_run(Allowlist::new(&["a.example:80".into()]));
        let request = |url: &str| Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("X-A".into(), "1".into())],
            body: b"{}".to_vec(),
        };
        let response = outbound
            .send(request("http://a.example/hook"))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        let denied = outbound.send(request("http://b.example/hook")).await;
        assert!(matches!(denied, Err(HttpError::Denied(_))));
        assert_eq!(recorder.take(), [request("http://a.example/hook")]);
    }

    #[tokio::test]
    async fn dry_run_answers_from_its_script_then_200() {
        let (outbound, recorder) = Outbound::dry_run(Allowlist::new(&["a.example:80".into()]));
        recorder.script([
            Answer {
                status: 429,
                headers: vec![("Retry-After".into(), "3".into())],
            },
            Answer {
                status: 503,
                headers: Vec::new(),
            },
        ]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = outbound.send(post("http://a.example/hook")).await.unwrap();
            seen.push((response.status, response.headers));
        }
        assert_eq!(
            seen,
            [
                (429, vec![("retry-after".to_owned(), "3".to_owned())]),
                (503, Vec::new()),
                (200, Vec::new()),
            ]
        );
        assert_eq!((recorder.unanswered(), recorder.take().len()), (0, 3));
    }

    #[tokio::test]
    async fn the_webhook_checked_once_answers_as_a_request_checked_each_time() {
        let allow = Allowlist::new(&["a.example:80".into()]);
        let (plain, _) = Outbound::dry_run(allow.clone());
        let (checked, recorder) = Outbound::dry_run(allow);
        let checked = checked
            .with_webhook("http://a.example/hook?k=SECRET")
            .with_log_url(LogUrl::Full);
        let plain = plain.with_log_url(LogUrl::Full);
        for url in [
            "http://a.example/hook?k=SECRET",
            "http://a.example/other",
            "http://b.example/hook",
        ] {
            let (once, each) = (checked.send(post(url)).await, plain.send(post(url)).await);
            match (once, each) {
                (Ok(once), Ok(each)) => assert_eq!(once.from, each.from, "{url}"),
                (Err(once), Err(each)) => assert_eq!(once.to_string(), each.to_string()),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(recorder.take().len(), 2);
        // A webhook the allowlist refuses is refused on each request.
        let (refused, _) = Outbound::dry_run(Allowlist::new(&[]));
        let refused = refused.with_webhook("http://a.example/hook");
        let denied = refused.send(post("http://a.example/hook")).await;
        assert!(matches!(denied, Err(HttpError::Denied(_))), "{denied:?}");
    }

    const SECRETS: [&str; 5] = ["alice", "S3cretPW", "PATHSECRET", "QTOKEN", "FRAGSECRET"];

    fn post(url: &str) -> Request {
        Request {
            method: "POST".into(),
            url: url.into(),
            headers: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    /// A URL with a secret in each part, on a port of 127.0.0.1.
    fn secret_url(port: u16) -> String {
        format!("http://alice:S3cretPW@127.0.0.1:{port}/hook/PATHSECRET?token=QTOKEN#FRAGSECRET")
    }

    fn outbound(port: u16, timeout: Duration) -> Outbound {
        let allow = Allowlist::new(&[format!("127.0.0.1:{port}")]);
        Outbound::new(Outbound::shared_client(), allow, timeout)
    }

    /// A port nothing listens on: bound, then released.
    fn refused_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn assert_no_secret(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {text:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_names_host_port_and_cause_but_no_url_part() {
        let port = refused_port();
        let error = outbound(port, Duration::from_secs(5))
            .send(post(&secret_url(port)))
            .await
            .unwrap_err();
        assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");
        let text = error.to_string();
        assert_no_secret(&text);
        assert!(
            text.starts_with(&format!(
                "connection failed (http://127.0.0.1:{port}/...): error sending request"
            )),
            "{text}"
        );
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
        assert!(!text.contains("for url"), "{text}");
    }

    #[tokio::test]
    async fn log_url_full_shows_the_path_and_query_but_not_the_password() {
        let port = refused_port();
        let error = outbound(port, Duration::from_secs(5))
            .with_log_url(LogUrl::Full)
            .send(post(&secret_url(port)))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "(http://alice:***@127.0.0.1:{port}/hook/PATHSECRET?token=QTOKEN#FRAGSECRET)"
            )),
            "{text}"
        );
        assert!(!text.contains("S3cretPW"), "{text}");
    }

    /// Answers one request `204` and hands back its head as it arrived.
    async fn one_request_head() -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let head = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        (port, head)
    }

    #[tokio::test]
    async fn a_url_with_user_info_sends_basic_credentials_and_a_bare_target() {
        let (port, head) = one_request_head().await;
        let url = format!("http://al%20ice:S3cret@127.0.0.1:{port}/hook?q=1#frag");
        let response = outbound(port, Duration::from_secs(5))
            .with_webhook(&url)
            .send(post(&url))
            .await
            .unwrap();
        assert_eq!(response.status, 204);
        let head = head.await.unwrap().to_lowercase();
        assert!(head.starts_with("post /hook?q=1 http/1.1\r\n"), "{head}");
        // base64("al ice:S3cret")
        assert!(
            head.contains("\r\nauthorization: basic ywwgawnlolmzy3jlda=="),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nuser-agent: sinkhost/"), "{head}");
        assert!(head.contains("\r\ncontent-length: 2\r\n"), "{head}");
    }

    #[tokio::test]
    async fn the_plugins_own_authorization_and_user_agent_win() {
        let (port, head) = one_request_head().await;
        let mut request = post(&format!("http://u:p@127.0.0.1:{port}/"));
        request.headers = vec![
            ("Authorization".into(), "Bearer mine".into()),
            ("User-Agent".into(), "plugin/1".into()),
        ];
        outbound(port, Duration::from_secs(5))
            .send(request)
            .await
            .unwrap();
        let head = head.await.unwrap().to_lowercase();
        assert!(
            head.contains("\r\nauthorization: bearer mine\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nuser-agent: plugin/1\r\n"), "{head}");
        assert_eq!(head.matches("authorization:").count(), 1, "{head}");
        assert_eq!(head.matches("user-agent:").count(), 1, "{head}");
    }

    #[tokio::test]
    async fn a_timeout_names_host_and_port() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let error = outbound(port, Duration::from_millis(200))
            .send(post(&secret_url(port)))
            .await
            .unwrap_err();
        silent.abort();
        assert_eq!(
            error,
            HttpError::Timeout {
                target: format!("http://127.0.0.1:{port}/...")
            }
        );
        assert_eq!(
            error.to_string(),
            format!("timed out (http://127.0.0.1:{port}/...)")
        );
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_names_the_target_only() {
        let port = refused_port();
        let mut request = post(&secret_url(port));
        request
            .headers
            .push(("X-Bad".into(), "line\nbreak\u{7f}".into()));
        request.headers.push(("Bad Name".into(), "v".into()));
        let error = outbound(port, Duration::from_secs(5))
            .send(request)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, HttpError::Other(_)), "{error:?}");
        assert_no_secret(&text);
        assert!(
            text.starts_with(&format!(
                "request to http://127.0.0.1:{port}/... not sent: invalid value of header x-bad"
            )),
            "{text}"
        );
    }

    #[test]
    fn non_http_schemes_are_denied() {
        let allow = Allowlist::new(&["a.example".into()]);
        let err = allow.check("file:///etc/passwd").unwrap_err();
        assert!(
            matches!(err, HttpError::Denied(ref m) if m.contains("not http")),
            "{err}"
        );
    }
}
