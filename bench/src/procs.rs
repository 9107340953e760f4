//! The processes the bench runs: its own `nats-server` (JetStream, random
//! port, private store) and `sinkhost run` on a config.d, each stopped on
//! Drop. Only the documented surface of sinkhost is used: `run`,
//! `--config-dir`, the environment and `/healthz`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A `nats-server -js` on 127.0.0.1 with its store in a temporary directory.
pub struct Nats {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts `bin` and waits for it to report its port and readiness.
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("sinkhost-bench-nats-")
            .tempdir()?;
        let mut child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "--store_dir"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} (set NATS_SERVER_BIN)", bin.display()))?;
        let (lines, seen) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut port = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = seen
                .recv_timeout(left)
                .context("nats-server did not become ready within 15 s")?;
            if let Some(at) = line.find("Listening for client connections on ") {
                port = line[at..]
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok());
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        let port = port.context("nats-server never logged its client port")?;
        Ok(Nats {
            child,
            port,
            _store: store,
        })
    }

    /// CPU time it has used so far (see [`cpu_of`]).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(self.child.id())
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the sinkhost binary and its plugins are, and how to run it.
#[derive(Debug, Clone)]
pub struct SinkhostBin {
    /// `target/release/sinkhost`.
    pub bin: PathBuf,
    /// `target/release/plugins`.
    pub plugin_dir: PathBuf,
    /// The compile cache every sinkhost the bench starts shares.
    pub cache_dir: PathBuf,
    /// Where each run's output goes (`sinkhost-<n>.log`).
    pub log_dir: PathBuf,
    /// Extra environment for every run.
    pub env: Vec<(String, String)>,
}

impl SinkhostBin {
    fn command(&self, args: &[&str], config_dir: &Path, nats_url: &str) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .arg("--config-dir")
            .arg(config_dir)
            .env("NATS_URL", nats_url)
            .env("SINKHOST_PLUGIN_DIR", &self.plugin_dir)
            .env("SINKHOST_CACHE_DIR", &self.cache_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// `sinkhost check`: validates config.d and fills the compile cache.
    pub fn check(&self, config_dir: &Path) -> anyhow::Result<()> {
        let status = self
            .command(&["check"], config_dir, "nats://unused:1")
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !status.success() {
            bail!(
                "sinkhost check --config-dir {} failed: {status}",
                config_dir.display()
            );
        }
        Ok(())
    }

    /// Starts `sinkhost run` with `/healthz` on a free loopback port.
    pub fn run(
        &self,
        config_dir: &Path,
        nats_url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Sinkhost> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        std::fs::create_dir_all(&self.log_dir)?;
        let log_path = self.log_dir.join(format!("sinkhost-{run}.log"));
        let log = std::fs::File::create(&log_path)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = self.command(&["run"], config_dir, nats_url);
        command
            .env("SINKHOST_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        Ok(Sinkhost {
            child,
            log: log_path,
            started,
            health: format!("http://127.0.0.1:{port}/healthz"),
        })
    }
}

/// A running `sinkhost run`, stopped with SIGTERM on Drop.
pub struct Sinkhost {
    child: Child,
    /// Its output.
    pub log: PathBuf,
    started: Instant,
    health: String,
}

impl Sinkhost {
    /// Polls `/healthz` until it answers 200 (NATS connected, every
    /// subscription consuming); returns the time since the process started.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<Duration> {
        let deadline = self.started + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(&self.health).send().await
                && response.status().is_success()
            {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sinkhost exited before it was ready: {status} (see {})",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("sinkhost not ready after 60 s (see {})", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The process's peak resident set so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        Ok(self.memory()?.peak_rss)
    }

    /// Its memory figures from `/proc/<pid>/status`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let bytes = |name: &str| -> anyhow::Result<u64> {
            let kb: u64 = status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/<pid>/status"))?;
            Ok(kb * 1024)
        };
        Ok(Memory {
            peak_rss: bytes("VmHWM")?,
            size: bytes("VmSize")?,
        })
    }

    /// CPU time it has used so far (see [`cpu_of`]).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(self.child.id())
    }

    /// What went wrong so far, from its log: WARN and ERROR lines and
    /// retried deliveries (logged at INFO), each as `message: why` (the
    /// line's `error` or `reason`).
    pub fn troubles(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| {
                matches!(line["level"].as_str(), Some("WARN" | "ERROR"))
                    || line["fields"]["message"] == "delivery failed; will retry"
            })
            .map(|line| {
                let fields = &line["fields"];
                let message = fields["message"].as_str().unwrap_or_default();
                match fields["error"].as_str().or(fields["reason"].as_str()) {
                    Some(why) => format!("{message}: {why}"),
                    None => message.to_owned(),
                }
            })
            .collect()
    }

    /// SIGTERM, then waits up to 20 s (SIGKILL after that).
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc/<pid>/status` says of a process's memory, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: the peak resident set.
    pub peak_rss: u64,
    /// `VmSize`: the address space mapped now.
    pub size: u64,
}

/// CPU time process `pid` (or `"self"`) has used so far, user + system, all
/// threads (`utime` + `stime` of `/proc/<pid>/stat`).
pub fn cpu_of(pid: impl std::fmt::Display) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |at: usize| -> anyhow::Result<u64> {
        fields
            .get(at)
            .and_then(|t| t.parse().ok())
            .context("short /proc/<pid>/stat")
    };
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat`'s CPU times (100 on
/// Linux unless told otherwise).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

impl Drop for Sinkhost {
    fn drop(&mut self) {
        self.stop();
    }
}
