//! Outbound HTTP: the host side of the plugin's `http.send` import.
//!
//! Owns the shared reqwest client (keep-alive pool, rustls), the per-subscription
//! allowlist and timeout, and the bounded read of response bodies. It knows
//! nothing of wasm: `plugin` converts the WIT records to and from these types.

use std::time::Duration;

use url::Url;

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
}

/// Why no response came back; mirrors the WIT `http-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No complete response within the subscription's timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("connection failed: {0}")]
    Connect(String),
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
            HttpError::Timeout => "timeout",
            HttpError::Connect(_) => "connect",
            HttpError::Denied(_) => "denied",
            HttpError::Other(_) => "other",
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
pub struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Request>>>);

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
        }
    }

    /// An outbound that checks the allowlist but sends nothing: it records each
    /// request and answers `200` with an empty body.
    pub fn dry_run(allow: Allowlist) -> (Self, Recorder) {
        let recorder = Recorder::default();
        let outbound = Outbound {
            transport: Transport::DryRun(recorder.clone()),
            allow,
            timeout: Duration::ZERO,
        };
        (outbound, recorder)
    }

    /// Sends `req` if its host is allowed, within the timeout, reading at most
    /// [`BODY_LIMIT`] bytes of the response body.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let url = self.allow.check(&req.url)?;
        let client = match &self.transport {
            Transport::Network(client) => client,
            Transport::DryRun(recorder) => {
                recorder.0.lock().expect("recorder lock").push(req);
                return Ok(Response {
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                });
            }
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| HttpError::Other(format!("invalid method {:?}", req.method)))?;
        let mut builder = client.request(method, url).timeout(self.timeout);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let mut response = builder.send().await.map_err(classify)?;
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
            match response.chunk().await.map_err(classify)? {
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
        })
    }
}

fn classify(error: reqwest::Error) -> HttpError {
    if error.is_timeout() {
        HttpError::Timeout
    } else if error.is_builder() {
        HttpError::Other(error_chain(&error))
    } else {
        // connect, request and body errors all mean the exchange broke on the wire
        HttpError::Connect(error_chain(&error))
    }
}

/// reqwest's Display hides the cause ("error sending request"); the chain
/// says what an operator needs ("connection refused", "invalid peer certificate").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
