//! `Host`: the real `sinkhost` binary running `sinkhost run` as a child process, with
//! its output captured, its HTTP surface reachable and its lifecycle (SIGTERM,
//! SIGKILL, exit code) under the test's control. Killed on Drop; if the test is
//! failing, its output is printed then.
//!
//! Also `sinkhost_cli` for the one-shot subcommands (`check`, `dlq list`, ...), and
//! [`Installed`] to run another copy of the binary (an unpacked release) the same way.
//! This module assumes only the documented operating surface: the `run` subcommand,
//! `--config-dir`, the environment variables, JSON log lines and `/healthz`.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::process::ChildProcess;

/// The binary under test.
pub const SINKHOST_BIN: &str = env!("CARGO_BIN_EXE_sinkhost");

/// How long `Host::start` waits for the "listening" log line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `make build` copies the built-in plugins: `plugins/` next to the binary
/// (`target/release/plugins` for a release build).
pub fn plugin_dir() -> PathBuf {
    Path::new(SINKHOST_BIN)
        .parent()
        .expect("the sinkhost binary has a parent directory")
        .join("plugins")
}

/// A sinkhost binary other than the one cargo built, such as an unpacked release,
/// run the way an operator runs it: from `cwd` and without `SINKHOST_PLUGIN_DIR`, so
/// it has to find its built-in plugins on its own.
#[derive(Clone, Debug)]
pub struct Installed {
    pub bin: PathBuf,
    pub cwd: PathBuf,
}

impl Installed {
    /// [`Host::start`] with this binary.
    pub async fn start(
        &self,
        config_dir: &Path,
        nats_url: &str,
        extra_env: &[(&str, &str)],
    ) -> Host {
        let host = Host::spawn_from(Some(self), config_dir, nats_url, &[], extra_env);
        host.wait_listening(LISTEN_TIMEOUT).await;
        host
    }

    /// [`sinkhost_cli`] with this binary.
    pub async fn cli(
        &self,
        args: &[&str],
        nats_url: &str,
        extra_env: &[(&str, &str)],
        timeout: Duration,
    ) -> CliOutput {
        run_cli(Some(self), args, nats_url, extra_env, timeout).await
    }
}

/// A running `sinkhost run`.
pub struct Host {
    process: ChildProcess,
    http: reqwest::Client,
}

impl Host {
    /// Starts `sinkhost run --config-dir <config_dir>` against `nats_url` and waits
    /// for its "listening" log line.
    ///
    /// The environment is inherited except for `SINKHOST_*` and `NATS_*`, and set:
    /// `NATS_URL=<nats_url>`, `SINKHOST_LISTEN=127.0.0.1:0`, `SINKHOST_PLUGIN_DIR`
    /// (see [`plugin_dir`]) and `RUST_LOG=info`; `extra_env` comes last and
    /// overrides any of them.
    pub async fn start(config_dir: &Path, nats_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let host = Self::spawn(config_dir, nats_url, extra_env);
        host.wait_listening(LISTEN_TIMEOUT).await;
        host
    }

    /// Like [`Host::start`] but returns at once, for tests of a host that is not
    /// expected to come up (or not yet).
    pub fn spawn(config_dir: &Path, nats_url: &str, extra_env: &[(&str, &str)]) -> Self {
        Self::spawn_from(None, config_dir, nats_url, &[], extra_env)
    }

    /// Like [`Host::start`], with more `sinkhost run` arguments (e.g. `["--token", "t"]`).
    pub async fn start_with_args(
        config_dir: &Path,
        nats_url: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let host = Self::spawn_with_args(config_dir, nats_url, extra_args, extra_env);
        host.wait_listening(LISTEN_TIMEOUT).await;
        host
    }

    /// Like [`Host::spawn`], with more `sinkhost run` arguments.
    pub fn spawn_with_args(
        config_dir: &Path,
        nats_url: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_from(None, config_dir, nats_url, extra_args, extra_env)
    }

    /// [`Host::start`] with the process's address space limited to `bytes`
    /// (`RLIMIT_AS`, what `ulimit -v` sets): a mapping past it fails, as
    /// reservations do under `vm.overcommit_memory=2`.
    pub async fn start_within(
        config_dir: &Path,
        nats_url: &str,
        bytes: u64,
        extra_env: &[(&str, &str)],
    ) -> Self {
        // `prlimit` sets the limit on itself and execs sinkhost: same pid.
        let inner = sinkhost_command(None, run_args(config_dir, &[]), nats_url, extra_env);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--as={bytes}"))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null());
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let host = Self::from_command(command);
        host.wait_listening(LISTEN_TIMEOUT).await;
        host
    }

    fn spawn_from(
        installed: Option<&Installed>,
        config_dir: &Path,
        nats_url: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let args = run_args(config_dir, extra_args);
        Self::from_command(sinkhost_command(installed, args, nats_url, extra_env))
    }

    fn from_command(mut command: Command) -> Self {
        let process = ChildProcess::spawn("sinkhost", &mut command).unwrap_or_else(|err| {
            panic!(
                "starting {}: {err}",
                command.get_program().to_string_lossy()
            )
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("building an HTTP client");
        Self { process, http }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for the JSON log line `{"fields":{"message":"listening","addr":...}}`
    /// and returns the address. Panics (with the output) after `timeout` or if the
    /// host exits first.
    pub async fn wait_listening(&self, timeout: Duration) -> SocketAddr {
        let found = self
            .process
            .state()
            .wait(timeout, |state| {
                if let Some(addr) = state.lines.iter().find_map(|line| listening_addr(line)) {
                    Some(Ok(addr))
                } else {
                    state.exit.map(Err)
                }
            })
            .await;
        match found {
            Some(Ok(addr)) => addr,
            Some(Err(status)) => panic!(
                "sinkhost exited ({status}) before logging \"listening\":\n{}",
                self.process.tail(100)
            ),
            None => panic!(
                "sinkhost did not log \"listening\" within {timeout:?}:\n{}",
                self.process.tail(100)
            ),
        }
    }

    /// The address the host's HTTP server listens on. Panics if it has not logged it
    /// yet (after [`Host::spawn`], await [`Host::wait_listening`] first).
    pub fn addr(&self) -> SocketAddr {
        self.process
            .lines()
            .iter()
            .find_map(|line| listening_addr(line))
            .unwrap_or_else(|| {
                panic!(
                    "sinkhost has not logged its listen address yet:\n{}",
                    self.process.tail(100)
                )
            })
    }

    /// Everything the host printed (stdout and stderr interleaved).
    pub fn logs(&self) -> Vec<String> {
        self.process.lines()
    }

    /// The output lines that are JSON objects, parsed.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Waits for an output line containing `needle` and returns it. Panics (with the
    /// output) after `timeout` or if the host exits without printing it.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_where(
            &format!("a line containing {needle:?}"),
            |line| line.contains(needle),
            timeout,
        )
        .await
    }

    /// Waits for an output line for which `matches` holds and returns it; `what`
    /// describes it in the panic message.
    pub async fn wait_for_log_where(
        &self,
        what: &str,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let found = self
            .process
            .state()
            .wait(timeout, |state| {
                if let Some(line) = state.lines.iter().find(|line| matches(line)) {
                    Some(Ok(line.clone()))
                } else {
                    state.exit.map(Err)
                }
            })
            .await;
        match found {
            Some(Ok(line)) => line,
            Some(Err(status)) => panic!(
                "sinkhost exited ({status}) without printing {what}:\n{}",
                self.process.tail(100)
            ),
            None => panic!(
                "sinkhost did not print {what} within {timeout:?}:\n{}",
                self.process.tail(100)
            ),
        }
    }

    /// `GET <path>` on the host's HTTP server: (status, body). Panics if the request
    /// fails at the transport level.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.addr());
        match self.try_get(&url).await {
            Ok(reply) => reply,
            Err(err) => panic!("GET {url}: {err}"),
        }
    }

    async fn try_get(&self, url: &str) -> reqwest::Result<(u16, String)> {
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// Waits until `GET /healthz` answers 200. Polls every 50 ms: health is an
    /// external condition with no event to wait on. Panics with the last answer and
    /// the output after `timeout` or if the host exits.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let url = format!("http://{}/healthz", self.wait_listening(timeout).await);
        loop {
            let last = match self.try_get(&url).await {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(err) => err.to_string(),
            };
            if let Some(status) = self.process.exit_status() {
                panic!(
                    "sinkhost exited ({status}) before it was healthy (last /healthz: {last}):\n{}",
                    self.process.tail(100)
                );
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "sinkhost not healthy within {timeout:?} (last /healthz: {last}):\n{}",
                    self.process.tail(100)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.process.signal("TERM");
    }

    /// Sends SIGHUP (reload config.d).
    pub fn sighup(&self) {
        self.process.signal("HUP");
    }

    /// Sends SIGKILL (a crash).
    pub fn kill9(&self) {
        self.process.signal("KILL");
    }

    /// Waits for the host to exit and returns its status. Panics (with the output)
    /// after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout).await.unwrap_or_else(|| {
            panic!(
                "sinkhost still running after {timeout:?}:\n{}",
                self.process.tail(100)
            )
        })
    }

    /// The exit status, if the host has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.process.exit_status()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- sinkhost (pid {}) output ----\n{}\n---- end of sinkhost output ----",
                self.process.pid(),
                self.process.tail(500)
            );
        }
        // ChildProcess kills it.
    }
}

/// The output of a one-shot `sinkhost` command.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sinkhost <args>` to completion (same environment as [`Host::start`]).
/// Panics if it runs longer than `timeout`.
pub async fn sinkhost_cli(
    args: &[&str],
    nats_url: &str,
    extra_env: &[(&str, &str)],
    timeout: Duration,
) -> CliOutput {
    run_cli(None, args, nats_url, extra_env, timeout).await
}

async fn run_cli(
    installed: Option<&Installed>,
    args: &[&str],
    nats_url: &str,
    extra_env: &[(&str, &str)],
    timeout: Duration,
) -> CliOutput {
    let command = sinkhost_command(installed, args, nats_url, extra_env);
    let program = command.get_program().to_string_lossy().into_owned();
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`sinkhost {}` did not finish within {timeout:?}",
                args.join(" ")
            )
        })
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `installed`'s binary in its `cwd`, or the one cargo built with
/// `SINKHOST_PLUGIN_DIR` = [`plugin_dir`].
/// `run --config-dir DIR` and `extra_args`.
fn run_args<'a>(config_dir: &'a Path, extra_args: &'a [&'a str]) -> Vec<&'a OsStr> {
    let mut args = vec![
        OsStr::new("run"),
        OsStr::new("--config-dir"),
        config_dir.as_os_str(),
    ];
    args.extend(extra_args.iter().map(OsStr::new));
    args
}

fn sinkhost_command<I, S>(
    installed: Option<&Installed>,
    args: I,
    nats_url: &str,
    extra_env: &[(&str, &str)],
) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(installed.map_or(Path::new(SINKHOST_BIN), |i| &i.bin));
    if let Some(installed) = installed {
        command.current_dir(&installed.cwd);
    }
    // A developer's own settings must not leak into the test.
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("SINKHOST_") || name_str.starts_with("NATS_") {
            command.env_remove(&name);
        }
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .env("NATS_URL", nats_url)
        .env("SINKHOST_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    if installed.is_none() {
        command.env("SINKHOST_PLUGIN_DIR", plugin_dir());
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command
}

/// The address in a `listening` log line. Accepts the message and `addr` either
/// under `fields` (tracing-subscriber's JSON layout) or at the top level.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let line: serde_json::Value = serde_json::from_str(line).ok()?;
    let field = |name: &str| {
        line.get("fields")
            .and_then(|fields| fields.get(name))
            .or_else(|| line.get(name))
            .and_then(serde_json::Value::as_str)
    };
    if field("message")? != "listening" {
        return None;
    }
    field("addr")?.parse().ok()
}
