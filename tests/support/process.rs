//! `ChildProcess`: a spawned program whose stdout and stderr are captured line by line
//! and whose exit is observed, killed on Drop.
//!
//! Plain threads read the pipes and reap the child, so the capture keeps draining
//! (a Go program such as nats-server dies on a broken stderr pipe) no matter which
//! tokio runtime, if any, the test runs on. Signals go through `kill(1)` because the
//! workspace denies `unsafe` and std only offers SIGKILL. It does not know what the
//! program prints; `NatsServer` and `Host` interpret the lines.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::watched::Watched;

/// How long Drop waits for a killed child to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// What has been seen of a child so far.
#[derive(Default)]
pub struct ProcState {
    /// stdout and stderr lines, interleaved in arrival order.
    pub lines: Vec<String>,
    /// Set once the child has exited and both pipes are drained (or have had a short
    /// grace period to drain, should a grandchild hold them open).
    pub exit: Option<ExitStatus>,
}

/// A running (or exited) child process.
pub struct ChildProcess {
    name: String,
    pid: u32,
    state: Arc<Watched<ProcState>>,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout/stderr captured.
    /// `name` labels panic messages.
    pub fn spawn(name: &str, command: &mut Command) -> std::io::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let state = Arc::new(Watched::new(ProcState::default()));
        let open_pipes = Arc::new(Watched::new(2_usize));

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        spawn_reader(format!("{name}-stdout"), stdout, &state, &open_pipes);
        spawn_reader(format!("{name}-stderr"), stderr, &state, &open_pipes);

        let reaper_state = Arc::clone(&state);
        thread::Builder::new()
            .name(format!("{name}-reaper"))
            .spawn(move || {
                let status = child.wait().expect("waiting for a child process");
                // Let the readers pick up the last lines, so that a test that saw the
                // exit also sees everything printed before it.
                open_pipes.wait_blocking(Duration::from_secs(2), |open| (*open == 0).then_some(()));
                reaper_state.update(|state| state.exit = Some(status));
            })?;

        Ok(Self {
            name: name.to_owned(),
            pid,
            state,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All lines printed so far (stdout and stderr interleaved).
    pub fn lines(&self) -> Vec<String> {
        self.state.read(|state| state.lines.clone())
    }

    /// The exit status, if the child has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state.read(|state| state.exit)
    }

    pub fn state(&self) -> &Watched<ProcState> {
        &self.state
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`) unless the child has exited.
    pub fn signal(&self, signal: &str) {
        if let Err(err) = self.try_signal(signal) {
            panic!("running `kill -s {signal} {}`: {err}", self.pid);
        }
    }

    fn try_signal(&self, signal: &str) -> std::io::Result<()> {
        if self.exit_status().is_some() {
            return Ok(());
        }
        // The reaper may reap the child between the check and the kill; then kill(1)
        // fails with "no such process", which is what we wanted anyway, so its exit
        // code is ignored.
        Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(drop)
    }

    /// Blocks until the child has exited, or `None` after `timeout`.
    pub fn wait_exit_blocking(&self, timeout: Duration) -> Option<ExitStatus> {
        self.state.wait_blocking(timeout, |state| state.exit)
    }

    /// Waits until the child has exited, or `None` after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.state.wait(timeout, |state| state.exit).await
    }

    /// Sends SIGKILL and waits for the child to be reaped.
    pub fn kill_and_reap(&self) {
        self.signal("KILL");
        if self.wait_exit_blocking(REAP_TIMEOUT).is_none() {
            panic!("{} (pid {}) did not die after SIGKILL", self.name, self.pid);
        }
    }

    /// The last `n` lines, for panic messages.
    pub fn tail(&self, n: usize) -> String {
        self.state.read(|state| {
            let skip = state.lines.len().saturating_sub(n);
            state.lines[skip..].join("\n")
        })
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // No panics here: we may already be unwinding.
        if self.try_signal("KILL").is_ok() {
            let _ = self.wait_exit_blocking(REAP_TIMEOUT);
        }
    }
}

fn spawn_reader(
    thread_name: String,
    pipe: impl Read + Send + 'static,
    state: &Arc<Watched<ProcState>>,
    open_pipes: &Arc<Watched<usize>>,
) {
    let state = Arc::clone(state);
    let open_pipes = Arc::clone(open_pipes);
    thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let mut pipe = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match pipe.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']).to_owned();
                        state.update(|state| state.lines.push(text));
                    }
                }
            }
            open_pipes.update(|open| *open -= 1);
        })
        .expect("spawning a pipe reader thread");
}
