//! sinkhost forwards NATS JetStream messages to destinations through
//! WebAssembly sink plugins.
//!
//! Data flows one way: [`config`] -> `bus` -> [`plugin`] -> `outbound` ->
//! `retry` -> `bus` ack. [`app::run`] wires them together; `cli` is the
//! binary's front door. [`redact`] (how a webhook URL is shown, what counts as
//! a secret) sits under all of them.

pub mod app;
mod bus;
pub mod cli;
pub mod compile_cache;
pub mod config;
pub mod deadletter;
mod lag;
mod lease;
mod metrics;
mod ordering;
pub mod outbound;
pub mod plugin;
mod ratelimit;
pub mod redact;
pub mod reload;
pub mod replay;
pub mod retry;
pub mod scaffold;
mod server;
pub mod stream_replay;
mod supervisor;
mod trace;
pub mod tryout;
