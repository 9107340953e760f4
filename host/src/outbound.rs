//! Outbound HTTP: the host side of the plugin's `http.send` import.
//!
//! Owns the shared reqwest client (keep-alive pool, rustls), the per-subscription
//! allowlist and timeout, the bounded read of response bodies, and the one
//! place an outbound failure becomes text ([`HttpError`]): that text names the
//! destination as `scheme://host:port/...` (see [`crate::config::redact`]), never by
//! the URL reqwest would print, because for many webhooks the URL is the
//! credential. It knows nothing of wasm: `plugin` converts the WIT records to
//! and from these types.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::config::redact::{self, LogUrl};

/// Response bodies are cut off after this many bytes, so a destination that
/// answers with gigabytes cannot exhaust the host's memory.
pub const BODY_LIMIT: usize = 1024 * 1024;

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

    /// Turns a reqwest failure of a request to `target` (already in its shown
    /// form) into the typed error.
    fn from_reqwest(error: &reqwest::Error, target: &str) -> Self {
        let target = target.to_owned();
        if error.is_timeout() {
            HttpError::Timeout { target }
        } else if error.is_builder() {
            HttpError::Other(format!("request to {target} not sent: {}", describe(error)))
        } else {
            // connect, request and body errors all mean the exchange broke on the wire
            HttpError::Connect {
                target,
                detail: describe(error),
            }
        }
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
    webhook: Option<Arc<Checked>>,
}

/// A URL the allowlist let through, and how errors show it.
#[derive(Debug)]
struct Checked {
    text: String,
    url: Url,
    shown: String,
}

/// Where allowed requests go.
#[derive(Debug, Clone)]
enum Transport {
    /// Onto the network through the shared client.
    Network(reqwest::Client),
    /// Nowhere: each request is recorded and answered `200` with an empty
    /// body (`plugin test --dry-run`, and benchmarks of the plugin alone).
    DryRun(Recorder),
}

/// The requests a dry-run [`Outbound`] was asked to send, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<std::sync::Mutex<Vec<Request>>>);

impl Recorder {
    /// Takes the requests recorded so far.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }
}

impl Outbound {
    /// The process-wide client. One pool of keep-alive connections serves
    /// every subscription; redirects are not followed (a redirect could lead
    /// off the allowlist) and no proxy from the environment is used.
    pub fn shared_client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sinkhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's static configuration is valid")
    }

    /// A subscription's view of `client`.
    pub fn new(client: reqwest::Client, allow: Allowlist, timeout: Duration) -> Self {
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
        self.webhook = self.allow.check(url).ok().map(|parsed| {
            Arc::new(Checked {
                text: url.to_owned(),
                shown: redact::show_parsed(&parsed, self.log_url),
                url: parsed,
            })
        });
        self
    }

    /// `text` checked against the allowlist, and how errors name it.
    fn checked(&self, text: &str) -> Result<(Url, String), HttpError> {
        if let Some(known) = self.webhook.as_deref().filter(|k| k.text == text) {
            return Ok((known.url.clone(), known.shown.clone()));
        }
        let url = self.allow.check(text)?;
        let shown = redact::show_parsed(&url, self.log_url);
        Ok((url, shown))
    }

    /// An outbound that checks the allowlist but sends nothing: it records each
    /// request and answers `200` with an empty body.
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

    /// Sends `req` if its host is allowed, within the timeout, reading at most
    /// [`BODY_LIMIT`] bytes of the response body.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let (url, target) = self.checked(&req.url)?;
        let client = match &self.transport {
            Transport::Network(client) => client,
            Transport::DryRun(recorder) => {
                recorder.0.lock().expect("recorder lock").push(req);
                return Ok(Response {
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                    from: target,
                });
            }
        };
        let failed = |error: reqwest::Error| HttpError::from_reqwest(&error, &target);
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| HttpError::Other(format!("invalid method {:?}", req.method)))?;
        let mut builder = client.request(method, url).timeout(self.timeout);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
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
            match response.chunk().await.map_err(failed)? {
                Some(chunk) => {
                    let room = BODY_LIMIT - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                None => break,
            }
        }
        Ok(Response {
            status,
            headers,
            body,
            from: target,
        })
    }
}

/// The text of a reqwest error and its causes, without a URL. reqwest's own
/// message ends in `for url (<the whole URL>)`, and its Display hides the
/// cause that an operator needs ("connection refused", "invalid peer
/// certificate"); here every reqwest error in the chain is named by its kind
/// and every other cause by its own text.
fn describe(error: &reqwest::Error) -> String {
    let mut parts = vec![reqwest_kind(error)];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(match cause.downcast_ref::<reqwest::Error>() {
            Some(inner) => reqwest_kind(inner),
            None => cause.to_string(),
        });
        source = cause.source();
    }
    parts.join(": ")
}

/// What reqwest's Display says before `for url (...)`.
fn reqwest_kind(error: &reqwest::Error) -> String {
    if let Some(status) = error.status() {
        return format!("HTTP status {status}");
    }
    let kind = if error.is_builder() {
        "builder error"
    } else if error.is_redirect() {
        "error following redirect"
    } else if error.is_request() {
        "error sending request"
    } else if error.is_body() {
        "request or response body error"
    } else if error.is_decode() {
        "error decoding response body"
    } else if error.is_upgrade() {
        "error upgrading connection"
    } else {
        "HTTP client error"
    };
    kind.to_owned()
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
                "request to http://127.0.0.1:{port}/... not sent: builder error"
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
