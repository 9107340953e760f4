//! The plugin runtime: wasmtime engine, compiled components, instance pools,
//! limits, and the host side of the WIT imports.
//!
//! Files: [`runtime`] (the engine, its pooling allocator and the compiled
//! components), `sink` (one subscription's pool of instances and a call),
//! `state` (what one instance's store holds), `host_http` and `host_log` (the
//! host side of the `http` and `log` imports), `guest_log` (the per-call log
//! budget, and the guest's stdout and stderr as log lines), `bindings` (the one `bindgen!`)
//! and [`compile_cache`] (serialized components on disk).
//!
//! One [`Runtime`] per process owns the engine (pooling allocator, epoch
//! interruption) and compiles each `.wasm` once. A [`Sink`] is one
//! subscription's view of a plugin: a pool of initialised instances reused
//! across messages. A trap or a blown deadline discards the instance that
//! caused it, never the host. This module does not decide what an outcome
//! means for the message (that is `retry`) and does not send HTTP itself
//! (that is `outbound`).

mod bindings;
pub mod compile_cache;
mod guest_log;
mod host_http;
mod host_log;
mod runtime;
mod sink;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use crate::outbound::Outbound;

pub use bindings::sinkhost::plugin::types::Message;
pub use runtime::Runtime;
pub use sink::Sink;

/// Limits that apply to every plugin instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU time (wasm execution, not waiting on `http` or for a thread) one
    /// call may use.
    pub cpu_per_call: Duration,
    /// Log lines one call may write; the rest are dropped and counted.
    pub log_lines_per_call: u32,
    /// Longest log line kept, in bytes; longer ones are truncated.
    pub log_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            cpu_per_call: Duration::from_secs(1),
            log_lines_per_call: 100,
            log_line_bytes: 4096,
        }
    }
}

/// What a plugin decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: ack.
    Delivered,
    /// Retry, after the plugin's delay or the subscription's schedule.
    Retry(Option<Duration>),
    /// Never deliverable: dead-letter now.
    Reject(String),
}

/// One finished call of `deliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What the plugin decided.
    pub outcome: Outcome,
    /// The last `http.send` result of the call, so a dead letter can say
    /// what the destination did and the breaker can tell it is down.
    pub last_http: Option<LastHttp>,
}

/// The last `http.send` result of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastHttp {
    /// As shown: `HTTP 503 from https://host:443/...`, `HTTP request timed out (...)`.
    pub text: String,
    /// The destination itself failed (see [`HttpError::destination_failed`](crate::outbound::HttpError::destination_failed)).
    pub destination_failed: bool,
    /// The response's status, when there was a response.
    pub status: Option<u16>,
    /// The start of the response body (at most [`EXCERPT_BYTES`], as it
    /// came), for the attempt history, which shows it through
    /// [`Sink::redact`] only when it keeps the attempt.
    pub excerpt: Vec<u8>,
}

/// Longest [`LastHttp::excerpt`], in bytes.
pub const EXCERPT_BYTES: usize = 256;

impl std::fmt::Display for LastHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a plugin could not be loaded or could not finish a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The `.wasm` could not be read or compiled, or does not implement the
    /// `sinkhost:plugin/sink-plugin` world.
    #[error("cannot load plugin {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plugin's `init` returned an error: a configuration error.
    #[error("plugin init failed: {0}")]
    Init(String),
    /// A new instance could not be created (e.g. the instance pool is full).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    /// The plugin trapped (panic, unreachable, out of memory, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin used more CPU time than one call may.
    #[error("plugin exceeded its CPU budget of {0:?}")]
    Deadline(Duration),
}

impl PluginError {
    /// A trap or a blown CPU deadline: the plugin's fault, counted as such.
    pub fn is_trap(&self) -> bool {
        matches!(self, PluginError::Trap(_) | PluginError::Deadline(_))
    }

    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Load { .. } => "load",
            PluginError::Init(_) => "init",
            PluginError::Instantiate(_) => "instantiate",
            PluginError::Trap(_) => "trap",
            PluginError::Deadline(_) => "deadline",
        }
    }
}

/// What a [`Sink`] needs to know about its subscription.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The subscription's name, for logs.
    pub subscription: String,
    /// The `.wasm` file.
    pub plugin: PathBuf,
    /// The JSON handed to `init`.
    pub init_json: String,
    /// Where the plugin's `http.send` goes.
    pub outbound: Outbound,
    /// Values that must never reach a log line, a reject reason or an init
    /// error: what [`Subscription::secrets`](crate::config::Subscription::secrets)
    /// lists. Text the plugin writes is searched for each of them.
    pub secrets: Vec<String>,
}
