//! What a plugin writes, as the host's log lines: the `log` import and the
//! guest's stdout and stderr go through one [`CallLog`] per instance, so an
//! uncaught JavaScript or Python exception (its type, message and the guest's
//! own stack), a Rust panic message, `console.log` and `print` are visible
//! where the plugin's `log` lines are: with the subscription and, during a
//! delivery, its message id (the delivery's span). Stdout lines are `info`,
//! stderr lines `warn`.
//!
//! One budget per call covers all three: at most `log_lines_per_call` lines,
//! each cut at `log_line_bytes` and with the subscription's secrets masked;
//! the lines past the budget are counted and reported in one line at the end
//! of the call. A partial line is held (up to the line cap) until its newline
//! or the end of the call, so a guest writing 250 MB without a newline costs
//! the host one capped line.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::{Limits, SinkSpec};
use crate::config::redact::{self, redact};

/// `text` capped at `max` bytes by [`redact::cap`], saying so when it was cut:
/// log lines here, `reject` reasons in `sink`.
pub(super) fn marked_cap(mut text: String, max: usize) -> String {
    if redact::cap(&mut text, max) {
        text.push_str("...[truncated]");
    }
    text
}

/// How important a line is, as the `log` import says it or as its stream implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn level(self) -> Level {
        match self {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A line of stdout or stderr not ended yet.
#[derive(Debug, Default)]
struct Partial {
    text: Vec<u8>,
    /// More arrived than the line cap: the rest of the line is dropped.
    cut: bool,
}

/// One instance's log budget for the current call; see the module docs.
#[derive(Debug)]
pub(super) struct CallLog {
    spec: Arc<SinkSpec>,
    limits: Limits,
    lines: u32,
    dropped: u32,
    partial: [Partial; 2],
}

impl CallLog {
    pub(super) fn new(spec: Arc<SinkSpec>, limits: Limits) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(CallLog {
            spec,
            limits,
            lines: 0,
            dropped: 0,
            partial: Default::default(),
        }))
    }

    /// The guest's stdout and stderr, writing into `log`.
    pub(super) fn outputs(log: &Arc<Mutex<Self>>) -> (GuestOutput, GuestOutput) {
        let output = |stream| GuestOutput {
            stream,
            log: Arc::clone(log),
        };
        (output(Stream::Stdout), output(Stream::Stderr))
    }

    /// A new call: a fresh budget.
    pub(super) fn begin(&mut self) {
        self.lines = 0;
        self.dropped = 0;
        self.partial = Default::default();
    }

    /// The call is over: what is left of a line is written, and what did
    /// not fit the budget is reported.
    pub(super) fn end(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.end_line(stream);
        }
        if self.dropped > 0 {
            tracing::warn!(
                subscription = %self.spec.subscription,
                dropped = self.dropped,
                "plugin log lines over the per-call limit were dropped"
            );
        }
    }

    /// One line from the `log` import, or a whole line of stdout or stderr.
    pub(super) fn line(&mut self, level: Level, message: &str, stream: Option<&str>) {
        if self.lines >= self.limits.log_lines_per_call {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        let message = marked_cap(
            redact(message, &self.spec.secrets),
            self.limits.log_line_bytes,
        );
        let subscription = self.spec.subscription.as_str();
        match level {
            Level::Trace => tracing::trace!(subscription, plugin = true, stream, "{message}"),
            Level::Debug => tracing::debug!(subscription, plugin = true, stream, "{message}"),
            Level::Info => tracing::info!(subscription, plugin = true, stream, "{message}"),
            Level::Warn => tracing::warn!(subscription, plugin = true, stream, "{message}"),
            Level::Error => tracing::error!(subscription, plugin = true, stream, "{message}"),
        }
    }

    /// Bytes the guest wrote to `stream`: each finished line is logged.
    fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            self.hold(stream, &bytes[..newline]);
            self.end_line(stream);
            bytes = &bytes[newline + 1..];
        }
        self.hold(stream, bytes);
    }

    fn hold(&mut self, stream: Stream, bytes: &[u8]) {
        // Kept up to a little more than the cap: a line that was cut is then
        // always longer than the cap, and `line` marks it as cut.
        let room = (self.limits.log_line_bytes + 4)
            .saturating_sub(self.partial[stream as usize].text.len());
        let partial = &mut self.partial[stream as usize];
        partial.cut |= bytes.len() > room;
        partial
            .text
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, stream: Stream) {
        let partial = std::mem::take(&mut self.partial[stream as usize]);
        if partial.text.is_empty() && !partial.cut {
            return;
        }
        if self.lines >= self.limits.log_lines_per_call {
            self.dropped += 1;
            return;
        }
        let mut text = String::from_utf8_lossy(&partial.text).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        self.line(stream.level(), &text, Some(stream.name()));
    }
}

/// The guest's stdout or stderr: see the module docs. Never blocks, never
/// fails: what does not fit the budget is dropped and counted.
#[derive(Debug, Clone)]
pub(super) struct GuestOutput {
    stream: Stream,
    log: Arc<Mutex<CallLog>>,
}

impl GuestOutput {
    fn take(&self, bytes: &[u8]) {
        self.log
            .lock()
            .expect("call log lock")
            .write(self.stream, bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outbound::{Allowlist, Outbound};

    fn call_log() -> Arc<Mutex<CallLog>> {
        let spec = SinkSpec {
            subscription: "s".into(),
            plugin: "/p/x.wasm".into(),
            init_json: "{}".into(),
            outbound: Outbound::new(
                Outbound::shared_client(),
                Allowlist::new(&[]),
                Duration::from_secs(1),
            ),
            secrets: vec!["hunter2".into()],
        };
        CallLog::new(Arc::new(spec), Limits::default())
    }

    #[test]
    fn a_cut_says_so() {
        assert_eq!(marked_cap("short".into(), 10), "short");
        assert_eq!(marked_cap("abcdef".into(), 3), "abc...[truncated]");
        assert_eq!(marked_cap("éé".into(), 3), "é...[truncated]");
    }

    #[test]
    fn lines_end_at_newlines_or_at_the_end_of_the_call() {
        let log = call_log();
        let (mut stdout, mut stderr) = CallLog::outputs(&log);
        OutputStream::write(&mut stdout, Bytes::from_static(b"one\ntw")).unwrap();
        OutputStream::write(&mut stderr, Bytes::from_static(b"err\r\n")).unwrap();
        OutputStream::write(&mut stdout, Bytes::from_static(b"o\nthree")).unwrap();
        assert_eq!(log.lock().unwrap().lines, 3, "one, err, two");
        log.lock().unwrap().end();
        assert_eq!(
            log.lock().unwrap().lines,
            4,
            "three, at the end of the call"
        );
    }

    #[test]
    fn a_line_without_end_is_held_up_to_the_cap() {
        let log = call_log();
        let (mut stdout, _) = CallLog::outputs(&log);
        for _ in 0..100 {
            OutputStream::write(&mut stdout, Bytes::from(vec![b'x'; 1 << 20])).unwrap();
        }
        let held = log.lock().unwrap().partial[0].text.len();
        assert!(held <= 4096 + 4, "{held} bytes held");
        assert!(log.lock().unwrap().partial[0].cut);
    }

    #[test]
    fn the_budget_is_shared_and_the_rest_counted() {
        let log = call_log();
        let (mut stdout, _) = CallLog::outputs(&log);
        for _ in 0..60 {
            log.lock().unwrap().line(Level::Info, "from log", None);
        }
        OutputStream::write(&mut stdout, Bytes::from("p\n".repeat(60))).unwrap();
        let log = log.lock().unwrap();
        assert_eq!((log.lines, log.dropped), (100, 20));
    }
}
