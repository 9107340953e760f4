//! End-to-end test fixtures, shared by the integration tests in `tests/`
//! (`#[path = "support/mod.rs"] mod support;`).
//!
//! Everything here runs real things: a `nats-server` with JetStream
//! ([`NatsServer`]), HTTP destinations that record what they receive ([`Receiver`]),
//! the `sinkhost` binary itself ([`Host`], [`sinkhost_cli`]), plus a temporary
//! `config.d` ([`ConfigDir`]) and JetStream helpers ([`publish`], [`read_stream`],
//! [`dlq_messages`]). Each fixture uses a random port and temporary directories and
//! cleans up on Drop; [`unique`] names keep parallel tests apart. Waits are driven
//! by notifications, except where the condition lives in another process and can
//! only be polled (`/healthz`, a stream's contents), and every wait panics with
//! what it did see.

// Each test binary compiles this module and uses only part of it, so unused items
// and unused re-exports are expected.
#![allow(dead_code, unused_imports)]

mod cluster;
mod config;
mod host;
mod jetstream;
mod nats;
mod process;
mod proxy;
mod receiver;
mod watched;

use std::path::{Path, PathBuf};

pub use cluster::NatsCluster;
pub use config::{ConfigDir, unique};
pub use host::{CliOutput, Host, Installed, SINKHOST_BIN, plugin_dir, sinkhost_cli};
pub use jetstream::{
    StoredMessage, dlq_messages, dlq_stream_name, ensure_stream, ids, publish, publish_all,
    read_stream, wait_for_stream_messages,
};
pub use nats::{NatsServer, nats_server_bin};
pub use proxy::NatsProxy;
pub use receiver::{
    Behaviour, Gate, IDEMPOTENCY_KEY, Receiver, Recorded, Reply, last_first_arrival,
};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}
