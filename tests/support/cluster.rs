//! `NatsCluster`: three (or more) real `nats-server -js` processes on loopback,
//! routed into one JetStream cluster, each with its own store and server name.
//! Nodes are [`NatsServer`]s, so each can be stopped, killed and restarted on its
//! own; dropping the cluster kills them all.

use std::net::TcpListener;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::nats::NatsServer;

/// A JetStream cluster named `c` on 127.0.0.1.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` routed nodes (`n1`, `n2`, ...) and returns once each has
    /// logged that it is ready. The JetStream meta group may still be electing a
    /// leader then: [`NatsCluster::create_stream`] waits for it.
    pub fn start(size: usize) -> Self {
        // Route ports must be known before any node starts; the kernel picks free
        // ones, which stay free for the moment it takes to start the nodes.
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let name = format!("n{}", i + 1);
                let listen = format!("nats://127.0.0.1:{port}");
                NatsServer::start_with_args(&[
                    "--server_name",
                    &name,
                    "--cluster_name",
                    "c",
                    "--cluster",
                    &listen,
                    "--routes",
                    &routes,
                ])
            })
            .collect();
        Self { nodes }
    }

    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// The node whose `--server_name` is `name` (`n1`, `n2`, ...).
    pub fn node(&self, name: &str) -> &NatsServer {
        let index: usize = name
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no cluster node named {name:?}"));
        &self.nodes[index - 1]
    }

    /// Every node's client URL, comma separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A JetStream context on a client that knows every node (and so reconnects to
    /// a live one when its server goes away).
    pub async fn jetstream(&self) -> jetstream::Context {
        let urls = self.urls();
        let servers: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        let client = async_nats::ConnectOptions::new()
            .max_reconnects(None)
            .connect(servers)
            .await
            .unwrap_or_else(|err| panic!("connecting to {urls}: {err}"));
        jetstream::new(client)
    }

    /// Creates `config`, retrying until the cluster has a JetStream meta leader and
    /// enough peers for its replicas (or panics after `timeout`).
    pub async fn create_stream(
        &self,
        js: &jetstream::Context,
        config: stream::Config,
        timeout: Duration,
    ) -> stream::Stream {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match js.create_stream(config.clone()).await {
                Ok(stream) => return stream,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!(
                    "creating stream {} (replicas {}) within {timeout:?}: {err}",
                    config.name, config.num_replicas
                ),
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("finding a free port on 127.0.0.1")
}
