//! sinkhost forwards NATS JetStream messages to destinations through
//! WebAssembly sink plugins.
//!
//! Data flows one way: [`config`] -> `bus` -> [`plugin`] -> `outbound` ->
//! `retry` -> `bus` ack. [`app::run`] wires them together; `cli` is the
//! binary's front door.

pub mod app;
mod bus;
pub mod cli;
pub mod config;
pub mod deadletter;
mod metrics;
pub mod outbound;
pub mod plugin;
pub mod reload;
pub mod replay;
pub mod retry;
pub mod scaffold;
mod server;
mod supervisor;
pub mod tryout;
