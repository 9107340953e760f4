//! sinkhost forwards NATS JetStream messages to destinations through
//! WebAssembly sink plugins.
//!
//! The folders are the layers, and data flows one way through them:
//! [`config`] is read once; `bus` fetches each message and hands it, through
//! the pure rules of `delivery`, to a [`plugin`], whose HTTP goes out through
//! [`outbound`]; `delivery` reads the result and `bus` acks, naks or
//! dead-letters. `run` sets it up and keeps it running (prepare, supervisor,
//! reload), `tools` are the one-shot commands (replays, plugin
//! test/new/conformance, publish), [`cli`] parses and dispatches, and `ops`
//! (health, metrics, traces) is used from every layer. Imports point down only:
//! cli -> tools -> run -> bus -> delivery -> plugin -> outbound -> config,
//! with ops beside them; `layers` (a unit test) keeps it so.

mod bus;
pub mod cli;
pub mod config;
mod delivery;
#[cfg(test)]
mod layers;
mod ops;
pub mod outbound;
pub mod plugin;
mod run;
mod tools;

/// The plugin checks of `sinkhost plugin conformance`, for tests/conformance.rs.
pub use tools::conformance;
