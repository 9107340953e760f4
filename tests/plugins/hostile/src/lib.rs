//! A plugin that misbehaves on purpose, chosen by `settings.mode`. The tests
//! use it to prove the host contains each kind of failure. Before misbehaving
//! in `deliver` it POSTs the message id to `webhook.url`, so a test can count
//! the attempts that reached the plugin.
//!
//! ```yaml
//! settings:
//!   mode: trap          # see the modes below
//!   target: "http://127.0.0.1:9/x"   # forbidden-http: where it tries to send
//!   file: /tmp/secret                # snoop: a file it tries to read
//!   lines: 100000                    # log-flood: how many lines in one call
//!   line_bytes: 102400               # log-flood: how long each line is
//!   note: "${SOME_VAR}"              # echo, init-echo: any value, quoted back
//! ```
//!
//! | mode | what it does in `deliver` |
//! |---|---|
//! | `trap` | panics |
//! | `loop` | spins forever |
//! | `alloc` | allocates until memory runs out |
//! | `init-error` | (in `init`) refuses to start |
//! | `init-echo` | (in `init`) refuses to start, quoting its whole config |
//! | `echo` | logs its whole config (url, headers, settings) and rejects quoting it |
//! | `three-calls` | three HTTP calls, then delivered |
//! | `huge-reject` | rejects with a 10 MiB reason |
//! | `retry-forever` | asks for a retry after `u64::MAX` ms |
//! | `forbidden-http` | sends to `target` (not allowed), POSTs `{"result": ...}` to `webhook.url` |
//! | `snoop` | reads `/etc/passwd`, `file` and `$SECRET_IN_HOST_ENV`, POSTs what it saw to `webhook.url` |
//! | `log-flood` | logs `lines` lines of `line_bytes` bytes in one call, then delivered |
//! | anything else | delivered |

use sinkhost_sdk::serde::Deserialize;
use sinkhost_sdk::{Config, Message, Outcome, Sink, export_sink, http, log, serde_json};

#[derive(Deserialize)]
#[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
struct Settings {
    mode: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    lines: Option<u32>,
    #[serde(default)]
    line_bytes: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)] // only ever quoted back through `echo`
    note: Option<String>,
}

struct Hostile {
    url: String,
    settings: Settings,
    /// The config as `echo` quotes it.
    echo: String,
}

/// What an attempt to read something from outside the sandbox gave.
fn seen<E: std::fmt::Display>(result: Result<String, E>) -> String {
    match result {
        Ok(value) => format!("read: {value}"),
        Err(error) => format!("error: {error}"),
    }
}

impl Hostile {
    fn report(&self, msg: &Message, report: serde_json::Value) {
        let request = http::Request::post(&self.url)
            .header("Idempotency-Key", format!("{}-report", msg.id))
            .header("Content-Type", "application/json")
            .body(report.to_string().into_bytes());
        let _ = http::send(&request);
    }
}

impl Sink for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        // What a careless plugin puts in its messages: everything it was given.
        let echo = serde_json::json!({
            "url": config.webhook.url,
            "headers": config.webhook.headers,
            "settings": config.settings::<serde_json::Value>()?,
        })
        .to_string();
        match settings.mode.as_str() {
            "init-error" => return Err("settings.mode is init-error: refusing to start".into()),
            "init-echo" => return Err(format!("refusing to start with {echo}")),
            "init-panic" => panic!("hostile plugin: panicking in init on purpose"),
            _ => {}
        }
        Ok(Hostile {
            url: config.webhook.url,
            settings,
            echo,
        })
    }

    fn deliver(&self, msg: &Message) -> Outcome {
        let ping = http::Request::post(&self.url)
            .header("Idempotency-Key", &msg.id)
            .body(format!("attempt {}", msg.attempt).into_bytes());
        let _ = http::send(&ping);
        match self.settings.mode.as_str() {
            "trap" => panic!("hostile plugin: trapping on purpose"),
            "loop" => loop {
                std::hint::black_box(msg.attempt);
            },
            "three-calls" => {
                // a slow plugin, not a hostile one: its calls add up past ack_wait
                let _ = http::send(&ping);
                let _ = http::send(&ping);
                Outcome::Delivered
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            "huge-reject" => Outcome::Reject("x".repeat(10 << 20)),
            "retry-forever" => Outcome::Retry(Some(u64::MAX)),
            "echo" => {
                log::log(log::Level::Warn, &format!("my config is {}", self.echo));
                Outcome::Reject(format!("rejecting; my config is {}", self.echo))
            }
            "forbidden-http" => {
                let target = self.settings.target.clone().unwrap_or_default();
                let result = match http::send(&http::Request::post(target).body(msg.id.clone())) {
                    Ok(response) => format!("sent: HTTP {}", response.status),
                    Err(http::HttpError::Denied(reason)) => format!("denied: {reason}"),
                    Err(other) => format!("failed: {other:?}"),
                };
                self.report(msg, serde_json::json!({ "result": result }));
                Outcome::Delivered
            }
            "snoop" => {
                let file = self.settings.file.clone().unwrap_or_default();
                self.report(
                    msg,
                    serde_json::json!({
                        "passwd": seen(std::fs::read_to_string("/etc/passwd")),
                        "file": seen(std::fs::read_to_string(&file)),
                        "env": seen(std::env::var("SECRET_IN_HOST_ENV")),
                        "env_count": std::env::vars().count(),
                    }),
                );
                Outcome::Delivered
            }
            "stdio" => {
                println!("to stdout: {}", msg.id);
                eprintln!("to stderr: {}", msg.id);
                Outcome::Delivered
            }
            "stdout-flood" => {
                // 250 MB of 1,000-byte lines, and a last line with no newline.
                use std::io::Write as _;
                let mut chunk = [b'o'; 64 << 10];
                for line in chunk.chunks_mut(1000) {
                    *line.last_mut().expect("1,000 bytes") = b'\n';
                }
                let mut stdout = std::io::stdout();
                for _ in 0..(250 << 20) / chunk.len() {
                    let _ = stdout.write_all(&chunk);
                }
                let _ = stdout.write_all(&[b'p'; 100 << 10]);
                Outcome::Delivered
            }
            "log-flood" => {
                let line = "L".repeat(self.settings.line_bytes.unwrap_or(100 << 10));
                for _ in 0..self.settings.lines.unwrap_or(100_000) {
                    log::log(log::Level::Info, &line);
                }
                Outcome::Delivered
            }
            _ => Outcome::Delivered,
        }
    }
}

export_sink!(Hostile);
