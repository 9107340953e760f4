//! `NatsServer`: a real `nats-server` with JetStream on a random port and a private
//! store directory, killed on Drop.
//!
//! The server can be stopped, killed and restarted on the same port and store, which
//! is what broker-outage tests need. Streams and messages are the tests' business
//! (see `jetstream.rs`); this module only runs the process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tempfile::TempDir;

use super::process::ChildProcess;
use super::workspace_root;

/// How long a server may take to report "Server is ready".
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM'd server may take to shut down before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const READY_LINE: &str = "Server is ready";
const LISTENING_PREFIX: &str = "Listening for client connections on ";

/// A `nats-server -js` on `127.0.0.1:<random port>` with its store in a temporary
/// directory. Dropping it kills the server and deletes the store.
pub struct NatsServer {
    bin: PathBuf,
    extra_args: Vec<String>,
    port: u16,
    // Declared before `store`, so the server is dead before its store is deleted.
    process: Mutex<Option<ChildProcess>>,
    /// Output of earlier runs of this server (before a stop or a restart).
    earlier_logs: Mutex<Vec<String>>,
    store: TempDir,
}

impl NatsServer {
    /// Starts a server on a random free port and waits until it is ready.
    ///
    /// Panics with an install hint if `nats-server` cannot be found.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`NatsServer::start`], with extra `nats-server` arguments (for example
    /// `["--auth", "s3cret"]`), which are kept for restarts.
    pub fn start_with_args(extra_args: &[&str]) -> Self {
        Self::start_inner(extra_args, None)
    }

    /// Like [`NatsServer::start`], with a configuration file holding `config` (for
    /// example an `authorization { ... }` or `tls { ... }` block). JetStream, the
    /// address, the port and the store still come from the command line.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_inner(&[], Some(config))
    }

    fn start_inner(extra_args: &[&str], config: Option<&str>) -> Self {
        let bin = nats_server_bin();
        let store = tempfile::Builder::new()
            .prefix("sinkhost-nats-")
            .tempdir()
            .expect("creating a store directory for nats-server");
        let mut extra_args: Vec<String> = extra_args.iter().map(|&arg| arg.to_owned()).collect();
        if let Some(config) = config {
            let file = store.path().join("nats-server.conf");
            std::fs::write(&file, config)
                .unwrap_or_else(|err| panic!("writing {}: {err}", file.display()));
            extra_args.extend(["-c".to_owned(), file.display().to_string()]);
        }
        let (process, port) = spawn(&bin, store.path(), None, &extra_args);
        Self {
            bin,
            extra_args,
            port,
            process: Mutex::new(Some(process)),
            earlier_logs: Mutex::new(Vec::new()),
            store,
        }
    }

    /// `nats://127.0.0.1:<port>`; the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `--store_dir` (JetStream keeps its files under `jetstream/` in it).
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Whether the server process is currently running.
    pub fn is_running(&self) -> bool {
        self.process()
            .as_ref()
            .is_some_and(|process| process.exit_status().is_none())
    }

    /// Everything the server has logged, across restarts.
    pub fn logs(&self) -> Vec<String> {
        let mut logs = lock(&self.earlier_logs).clone();
        if let Some(process) = self.process().as_ref() {
            logs.extend(process.lines());
        }
        logs
    }

    /// Shuts the server down gracefully (SIGTERM, SIGKILL after 10 s) and waits for it
    /// to exit. Does nothing if it is not running.
    pub fn stop(&self) {
        self.retire(|process| {
            process.signal("TERM");
            if process.wait_exit_blocking(STOP_TIMEOUT).is_none() {
                process.kill_and_reap();
            }
        });
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed) and waits for it
    /// to die. Does nothing if it is not running.
    pub fn kill(&self) {
        self.retire(ChildProcess::kill_and_reap);
    }

    /// Stops the server if it is running, then starts it again on the same port with
    /// the same store, and waits until it is ready.
    pub fn restart(&self) {
        self.stop();
        let (process, _) = spawn(
            &self.bin,
            self.store.path(),
            Some(self.port),
            &self.extra_args,
        );
        *self.process() = Some(process);
    }

    /// Publishes each `(subject, header block, payload)` with a raw `HPUB` on a
    /// plain socket, bytes as given: what a client library would refuse to
    /// send (a subject or header that is not UTF-8, a lone CR...) arrives as
    /// is. An empty header block is sent with a header length of 0. Panics if
    /// the server answers `-ERR` or does not answer the closing `PING`.
    pub async fn publish_raw(&self, frames: &[(&[u8], &[u8], &[u8])]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut wire =
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n".to_vec();
        for (subject, headers, payload) in frames {
            wire.extend_from_slice(b"HPUB ");
            wire.extend_from_slice(subject);
            let lengths = format!(" {} {}\r\n", headers.len(), headers.len() + payload.len());
            wire.extend_from_slice(lengths.as_bytes());
            wire.extend_from_slice(headers);
            wire.extend_from_slice(payload);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"PING\r\n");
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connecting to nats-server");
        socket.write_all(&wire).await.expect("writing HPUB");
        let mut seen = Vec::new();
        let mut buf = [0_u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("PONG") {
            let n = tokio::time::timeout(START_TIMEOUT, socket.read(&mut buf))
                .await
                .expect("nats-server answers the PING")
                .expect("reading from nats-server");
            assert!(
                n > 0,
                "nats-server closed: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        let seen = String::from_utf8_lossy(&seen);
        assert!(!seen.contains("-ERR"), "nats-server refused: {seen}");
    }

    /// A new client connection to this server.
    pub async fn client(&self) -> async_nats::Client {
        let url = self.url();
        async_nats::connect(&url)
            .await
            .unwrap_or_else(|err| panic!("connecting to {url}: {err}"))
    }

    /// A JetStream context on a new client connection.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    fn process(&self) -> MutexGuard<'_, Option<ChildProcess>> {
        lock(&self.process)
    }

    /// Ends the current process with `end` and keeps its output.
    fn retire(&self, end: impl FnOnce(&ChildProcess)) {
        let mut slot = self.process();
        if let Some(process) = slot.take() {
            end(&process);
            lock(&self.earlier_logs).extend(process.lines());
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let skip = logs.len().saturating_sub(30);
            eprintln!(
                "---- nats-server (port {}) last log lines ----\n{}\n---- end of nats-server log ----",
                self.port,
                logs[skip..].join("\n")
            );
        }
        // `process` is dropped (killed) before `store` is deleted.
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns `nats-server` and waits until it is ready; returns it with its client port.
/// `port: None` lets the server pick a free port.
fn spawn(
    bin: &Path,
    store_dir: &Path,
    port: Option<u16>,
    extra_args: &[String],
) -> (ChildProcess, u16) {
    let port_arg = port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
    let mut command = Command::new(bin);
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "--store_dir"])
        .arg(store_dir)
        .args(extra_args);
    let process = ChildProcess::spawn("nats-server", &mut command)
        .unwrap_or_else(|err| panic!("starting {}: {err}", bin.display()));

    let ready = process.state().wait_blocking(START_TIMEOUT, |state| {
        if state.lines.iter().any(|line| line.contains(READY_LINE)) {
            Some(Ok(()))
        } else {
            state.exit.map(Err)
        }
    });
    match ready {
        Some(Ok(())) => {}
        Some(Err(status)) => panic!(
            "nats-server exited ({status}) before it was ready:\n{}",
            process.tail(50)
        ),
        None => panic!(
            "nats-server did not log {READY_LINE:?} within {START_TIMEOUT:?}:\n{}",
            process.tail(50)
        ),
    }

    let port = process
        .lines()
        .iter()
        .find_map(|line| {
            let addr = &line[line.find(LISTENING_PREFIX)? + LISTENING_PREFIX.len()..];
            addr.trim().rsplit(':').next()?.parse::<u16>().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "nats-server is ready but never logged {LISTENING_PREFIX:?}<addr>:\n{}",
                process.tail(50)
            )
        });
    (process, port)
}

/// Finds `nats-server`: `$NATS_SERVER_BIN`, then the copy `make setup` installs in
/// `.tools/venv/bin`, then `$PATH`. Panics with an install hint when there is none.
pub fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "NATS_SERVER_BIN={} does not exist",
            bin.display()
        );
        return bin;
    }
    let local = workspace_root().join(".tools/venv/bin/nats-server");
    if local.is_file() {
        return local;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found (looked at $NATS_SERVER_BIN, {}, $PATH). \
                 Run `make setup` to install it into .tools/venv, or point \
                 NATS_SERVER_BIN at a nats-server binary.",
                local.display()
            )
        })
}
