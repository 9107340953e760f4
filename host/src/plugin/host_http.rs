//! The host side of the `http` import: the plugin's request goes out through
//! the subscription's [`Outbound`](crate::outbound::Outbound); the time it
//! waits is not counted against the CPU deadline, and the result is what a
//! dead letter says of the destination.

use std::time::Instant;

use super::bindings::sinkhost::plugin::http;
use super::state::State;
use super::{EXCERPT_BYTES, LastHttp};
use crate::outbound;

impl http::Host for State {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let started = Instant::now();
        let request = outbound::Request {
            method: method_name(req.method),
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        let result = self.spec.outbound.send(request).await;
        self.waiting += started.elapsed();
        self.metrics
            .http_result(outbound::HttpError::result_label(&result));
        // Both name the destination as the subscription may show it.
        let text = match &result {
            Ok(response) => format!("HTTP {} from {}", response.status, response.from),
            Err(error) => format!("HTTP request {error}"),
        };
        let (status, excerpt) = match &result {
            Ok(response) => {
                let start = &response.body[..response.body.len().min(EXCERPT_BYTES)];
                (Some(response.status), start.to_vec())
            }
            Err(_) => (None, Vec::new()),
        };
        self.last_http = Some(LastHttp {
            text,
            destination_failed: outbound::HttpError::destination_failed(&result),
            status,
            excerpt,
        });
        match result {
            Ok(response) => Ok(http::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(outbound::HttpError::Timeout { .. }) => Err(http::HttpError::Timeout),
            Err(outbound::HttpError::Connect { target, detail }) => {
                Err(http::HttpError::Connect(format!("{target}: {detail}")))
            }
            Err(outbound::HttpError::Denied(m)) => Err(http::HttpError::Denied(m)),
            Err(outbound::HttpError::Other(m)) => Err(http::HttpError::Other(m)),
        }
    }
}

fn method_name(method: http::Method) -> String {
    match method {
        http::Method::Get => "GET".into(),
        http::Method::Head => "HEAD".into(),
        http::Method::Post => "POST".into(),
        http::Method::Put => "PUT".into(),
        http::Method::Patch => "PATCH".into(),
        http::Method::Delete => "DELETE".into(),
        http::Method::Options => "OPTIONS".into(),
        http::Method::Other(name) => name,
    }
}
