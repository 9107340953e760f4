//! The command line: parse arguments, set up logging, call the library, map
//! errors to exit codes. No logic lives here that a test would need.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::bus::deadletter;
use crate::config::ConfigSource;
use crate::config::redact::LogUrl;
use crate::config::{self, Config, PluginSearch};
use crate::plugin::{Delivery, Limits, Outcome};
use crate::run::reload::Reloading;
use crate::run::{self, NatsOptions};
use crate::tools::replay::{self, Fate};
use crate::tools::scaffold::{self, Lang};
use crate::tools::stream_replay::{self, Start};
use crate::tools::tryout::TryOut;

/// Exit code for an invalid configuration (`check`, and `run` before it starts).
pub const EXIT_CONFIG: u8 = 2;

/// sinkhost: forward NATS JetStream messages to destinations through wasm sink plugins.
#[derive(Debug, Parser)]
#[command(name = "sinkhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume every subscription in config.d until SIGTERM/SIGINT.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        nats: NatsArgs,
        /// Address for /healthz and /metrics.
        #[arg(long, env = "SINKHOST_LISTEN", default_value = "127.0.0.1:8090")]
        listen: String,
        /// Reload when config.d changes (`false`: only on SIGHUP).
        #[arg(long, env = "SINKHOST_WATCH_CONFIG", default_value_t = true, action = clap::ArgAction::Set)]
        watch_config: bool,
    },
    /// Validate config.d, load every plugin and run its init; exit 2 on error.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Inspect and replay the dead-letter stream.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Work on plugins without NATS.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Publish one message to JetStream (a development convenience).
    Publish {
        /// The subject, e.g. order.completed.
        subject: String,
        /// The payload; use --file for a file, or neither for an empty payload.
        payload: Option<String>,
        /// Read the payload from this file.
        #[arg(long, conflicts_with = "payload")]
        file: Option<PathBuf>,
        /// A header `Name: value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Sets Nats-Msg-Id (the stable message id destinations see).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Deliver a subscription's messages stored in the stream through its
    /// plugin again; no other subscription sees them (exit 0 when all were
    /// delivered, 1 otherwise).
    Replay(ReplayArgs),
}

/// `sinkhost replay`'s arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").required(true).args(["since", "from_seq"])))]
struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The subscription whose messages to replay (only its plugin sees them).
    #[arg(long)]
    subscription: String,
    /// Replay the messages stored at most this long ago, e.g. 2h or 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Replay from this stream sequence on.
    #[arg(long)]
    from_seq: Option<u64>,
    /// The last stream sequence to replay (default: the stream's last
    /// sequence when the replay starts).
    #[arg(long)]
    to_seq: Option<u64>,
    /// The main stream (default: the `stream:` of config.d, else the one
    /// stream holding the subscription's subject).
    #[arg(long)]
    stream: Option<String>,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters: subject, attempts, last error, time.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this subscription's dead letters.
        #[arg(long)]
        subscription: Option<String>,
        /// The main stream (default: the `stream:` of config.d).
        #[arg(long)]
        stream: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Deliver a subscription's dead letters through its plugin again and
    /// remove the delivered ones (exit 0 when all were delivered, 1 otherwise).
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The subscription whose dead letters to replay (only its plugin sees them).
        #[arg(long)]
        subscription: String,
        /// Only the dead letter with this message id; repeatable.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// The main stream (default: the `stream:` of config.d, else the one
        /// stream holding the subscription's subject).
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run one plugin on one message and print its outcome (exit 0 delivered,
    /// 1 retry/reject/trap, 2 the plugin failed to load or init).
    Test(PluginTestArgs),
    /// Write a new plugin project that builds and passes `plugin test` as is.
    New {
        /// The plugin's name (lower case, digits, '-').
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The sinkhost-sdk crate (Rust only; default: this source tree's `sdk/`).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// `sinkhost plugin test`'s arguments.
#[derive(Debug, Args)]
struct PluginTestArgs {
    /// A built-in name (`http-webhook`) or a path to a `.wasm`.
    plugin: String,
    /// The message's subject.
    #[arg(long)]
    subject: String,
    /// A file holding the payload; `-` reads stdin.
    #[arg(long)]
    payload: PathBuf,
    /// The plugin's `settings`: JSON text, or a JSON/YAML file.
    #[arg(long)]
    settings: Option<String>,
    /// `webhook.url`.
    #[arg(long, default_value = "http://127.0.0.1:8091/hook")]
    url: String,
    /// A `webhook.headers` entry `Name: value`; repeatable.
    #[arg(long = "webhook-header")]
    webhook_headers: Vec<String>,
    /// A NATS header on the message `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The message id the plugin sees.
    #[arg(long, default_value = "plugin-test-1")]
    id: String,
    /// Print the requests the plugin would make instead of sending them.
    #[arg(long)]
    dry_run: bool,
    /// Per-request timeout when sending for real.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// `webhook.log_url`: `host` prints the URL as `scheme://host:port/...`,
    /// `full` prints it whole (for a URL that holds no secret).
    #[arg(long, default_value = "host")]
    log_url: LogUrl,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The folder of *.yml files.
    #[arg(long, default_value = "config.d")]
    config_dir: PathBuf,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, config::ConfigError> {
        config::load(
            &self.config_dir,
            &|name| std::env::var(name).ok(),
            &PluginSearch::from_env(),
        )
    }
}

#[derive(Debug, Args)]
struct NatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(
        short = 's',
        long = "server",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
    /// NATS credentials file.
    #[arg(long, env = "NATS_CREDS")]
    creds: Option<PathBuf>,
    /// NATS user name; without --password it is a token, as in the `nats` CLI.
    #[arg(long, env = "NATS_USER", hide_env_values = true)]
    user: Option<String>,
    /// NATS password (needs --user).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, requires = "user")]
    password: Option<String>,
    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// NATS nkey seed file.
    #[arg(long, env = "NATS_NKEY")]
    nkey: Option<PathBuf>,
    /// CA certificate for TLS.
    #[arg(long = "tlsca", env = "NATS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate for TLS.
    #[arg(long = "tlscert", env = "NATS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key for TLS.
    #[arg(long = "tlskey", env = "NATS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Reconnect attempts (about 4 s apart after the first few) before the
    /// NATS client is replaced by a new one.
    #[arg(
        long,
        env = "SINKHOST_NATS_RECONNECTS",
        default_value_t = 60,
        hide = true
    )]
    nats_reconnects: usize,
}

impl From<NatsArgs> for NatsOptions {
    fn from(a: NatsArgs) -> Self {
        NatsOptions {
            url: a.url,
            creds: a.creds,
            user: a.user,
            password: a.password,
            token: a.token,
            nkey: a.nkey,
            tls_ca: a.tls_ca,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            max_reconnects: a.nats_reconnects,
        }
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    runtime.block_on(execute(cli))
}

async fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run {
            config: config_args,
            nats,
            listen,
            watch_config,
        } => {
            init_logging(true);
            // Before anything else: SIGHUP's default action ends the process.
            let hangups = match reload_requests() {
                Ok(hangups) => hangups,
                Err(e) => return report(Err(e)),
            };
            let reloading = Reloading {
                source: ConfigSource {
                    dir: config_args.config_dir.clone(),
                    plugins: PluginSearch::from_env(),
                },
                requests: hangups,
                watch: watch_config,
            };
            let config = match reloading.source.load() {
                Ok(config) => config,
                Err(e) => return config_error(&e),
            };
            let result = async {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                run::run(config, reloading, nats.into(), listener, shutdown_signal()).await
            }
            .await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.downcast_ref::<run::PrepareError>().is_some() => config_error(&*e),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "sinkhost stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => {
            init_logging(false);
            let config = match config.load() {
                Ok(config) => config,
                Err(e) => return config_error(&e),
            };
            match run::prepare(&config, Limits::default()).await {
                Ok(prepared) => {
                    for p in &prepared {
                        println!(
                            "ok  {:<28} {:<20} plugin {} ({})",
                            p.sub.name, p.sub.subject, p.sub.plugin.name, p.sub.origin
                        );
                    }
                    println!("config.d is valid: {} subscription(s)", prepared.len());
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e),
            }
        }
        Command::Dlq {
            command:
                DlqCommand::List {
                    config,
                    subscription,
                    stream,
                    json,
                    nats,
                },
        } => {
            init_logging(false);
            report(dlq_list(config, subscription, stream, json, nats.into()).await)
        }
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    config,
                    subscription,
                    ids,
                    stream,
                    nats,
                },
        } => {
            init_logging(false);
            match dlq_replay(config, subscription, stream, ids, nats.into()).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => report(Err(e)),
            }
        }
        Command::Plugin {
            command: PluginCommand::Test(args),
        } => {
            init_logging(false);
            plugin_test(args).await
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    dir,
                    sdk,
                },
        } => {
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk);
            match scaffold::create(&name, lang, &dir, &sdk) {
                Ok(files) => {
                    for file in files {
                        println!("created {}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e),
            }
        }
        Command::Publish {
            subject,
            payload,
            file,
            headers,
            id,
            nats,
        } => {
            init_logging(false);
            report(publish(subject, payload, file, headers, id, nats.into()).await)
        }
        Command::Replay(args) => {
            init_logging(false);
            match stream_replay_command(args).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => report(Err(e)),
            }
        }
    }
}

/// `Name: value` arguments as pairs.
fn header_pairs(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|arg| {
            let (name, value) = arg
                .split_once(':')
                .with_context(|| format!("header {arg:?} is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// `--settings`: JSON text, or a JSON or YAML file; absent means `{}`.
fn parse_settings(arg: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let Some(arg) = arg else {
        return Ok(serde_json::json!({}));
    };
    if arg.trim_start().starts_with('{') {
        return serde_json::from_str(arg).context("--settings is not valid JSON");
    }
    let text =
        std::fs::read_to_string(arg).with_context(|| format!("reading settings file {arg}"))?;
    serde_yaml::from_str(&text).with_context(|| format!("{arg} is not valid JSON or YAML"))
}

async fn plugin_test(args: PluginTestArgs) -> ExitCode {
    let tryout = match tryout_from(args) {
        Ok(tryout) => tryout,
        Err(e) => return config_error(&format!("{e:#}")),
    };
    let report = match tryout.run().await {
        Ok(report) => report,
        Err(e) => return config_error(&e),
    };
    for request in &report.requests {
        println!("{request}\n");
    }
    let (line, code) = match report.result {
        Ok(Delivery { outcome, last_http }) => {
            let after = last_http
                .map(|h| format!(" (last {h})"))
                .unwrap_or_default();
            match outcome {
                Outcome::Delivered => (format!("delivered{after}"), ExitCode::SUCCESS),
                Outcome::Retry(delay) => {
                    let when = delay
                        .map(|d| format!(" in {}ms", d.as_millis()))
                        .unwrap_or_default();
                    (format!("retry{when}{after}"), ExitCode::FAILURE)
                }
                Outcome::Reject(reason) => (format!("reject: {reason}{after}"), ExitCode::FAILURE),
            }
        }
        Err(e) => (format!("error: {e}"), ExitCode::FAILURE),
    };
    println!("outcome: {line}");
    code
}

fn tryout_from(args: PluginTestArgs) -> anyhow::Result<TryOut> {
    let plugin = PluginSearch::from_env()
        .resolve(&args.plugin, Path::new("."))
        .map_err(|tried| {
            let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            anyhow::anyhow!(
                "plugin {:?} not found (looked at {})",
                args.plugin,
                tried.join(", ")
            )
        })?;
    let payload = if args.payload.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading stdin")?;
        bytes
    } else {
        std::fs::read(&args.payload)
            .with_context(|| format!("reading {}", args.payload.display()))?
    };
    Ok(TryOut {
        plugin,
        plugin_name: args.plugin,
        url: args.url,
        webhook_headers: header_pairs(&args.webhook_headers)?.into_iter().collect(),
        settings: parse_settings(args.settings.as_deref())?,
        subject: args.subject,
        payload,
        headers: header_pairs(&args.headers)?,
        id: args.id,
        dry_run: args.dry_run,
        timeout: args.timeout,
        log_url: args.log_url,
    })
}

fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CONFIG)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stdout for `run` (what log shippers read); plain text on
/// stderr for the one-shot commands, whose stdout is their answer.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SINKHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if json { "info" } else { "warn" }));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            // The `delivery` span's fields (subscription, message_id,
            // trace_id) go on every line logged during a delivery.
            .with_current_span(true)
            .with_span_list(false)
            .init();
        // A panic in a task (the NATS client's, say) must reach the log that
        // operators read, not only stderr.
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            tracing::error!(panic = %panic, "a task panicked");
            print(panic);
        }));
    } else {
        use std::io::IsTerminal;
        builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// SIGHUP, as a stream of reload requests.
fn reload_requests() -> anyhow::Result<futures::stream::BoxStream<'static, ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(Box::pin(futures::stream::poll_fn(move |cx| {
        hangup.poll_recv(cx)
    })))
}

async fn dlq_list(
    config: ConfigArgs,
    subscription: Option<String>,
    stream: Option<String>,
    json: bool,
    nats: NatsOptions,
) -> anyhow::Result<()> {
    let stream = match stream {
        Some(stream) => stream,
        None => config
            .load()?
            .stream
            .map(|s| s.name)
            .context("config.d has no `stream:` block; name the stream with --stream")?,
    };
    let client = nats.connect().await?;
    let js = async_nats::jetstream::new(client);
    let letters = deadletter::list(&js, &stream, subscription.as_deref()).await?;
    if json {
        for letter in &letters {
            println!("{}", serde_json::to_string(letter)?);
        }
    } else {
        println!(
            "{:>6}  {:<20}  {:<24}  {:<24}  {:>8}  LAST ERROR",
            "SEQ", "TIME", "SUBSCRIPTION", "SUBJECT", "ATTEMPTS"
        );
        for l in &letters {
            println!(
                "{:>6}  {:<20}  {:<24}  {:<24}  {:>8}  {}",
                l.dlq_sequence,
                l.time.get(..19).unwrap_or(&l.time),
                l.subscription,
                l.subject,
                l.attempts.map(|a| a.to_string()).unwrap_or_default(),
                l.last_error
            );
        }
        println!(
            "{} dead letter(s) in {}",
            letters.len(),
            deadletter::stream_name(&stream)
        );
    }
    Ok(())
}

/// Replays and prints one line per dead letter, then the summary; true when
/// every one was delivered.
async fn dlq_replay(
    config: ConfigArgs,
    subscription: String,
    stream: Option<String>,
    ids: Vec<String>,
    nats: NatsOptions,
) -> anyhow::Result<bool> {
    let config = config.load()?;
    let js = async_nats::jetstream::new(nats.connect().await?);
    println!("{}", replay::progress_header());
    let summary = replay::replay(&js, &config, &subscription, stream, &ids, |r| {
        let l = &r.letter;
        let fate = match &r.fate {
            Fate::Delivered => "delivered, removed from the dead-letter stream".to_owned(),
            Fate::DeliveredButKept(e) => {
                format!("delivered, but still in the dead-letter stream: {e}")
            }
            Fate::StillFailing(reason) => format!("still failing: {reason}"),
            Fate::Malformed(reason) => format!("kept: {reason}"),
        };
        println!(
            "{}",
            replay::progress_line(l.dlq_sequence, &l.subject, &l.message_id, &fate)
        );
    })
    .await?;
    for id in &summary.missing {
        println!("no dead letter of {subscription} has message id {id}");
    }
    println!("{summary}");
    Ok(summary.all_delivered())
}

/// Replays stored messages and prints one line per message, then the
/// summary; true when every one was delivered.
async fn stream_replay_command(args: ReplayArgs) -> anyhow::Result<bool> {
    let start = match (args.since, args.from_seq) {
        (Some(since), _) => Start::Since(since),
        (None, Some(from)) => Start::Sequence(from),
        (None, None) => anyhow::bail!("give --since or --from-seq"),
    };
    stream_replay::check_range(start, args.to_seq)?;
    let config = args.config.load()?;
    replay::find_subscription(&config, &args.subscription)?;
    let js = async_nats::jetstream::new(NatsOptions::from(args.nats).connect().await?);
    println!("{}", replay::progress_header());
    let summary = stream_replay::replay(
        &js,
        &config,
        &args.subscription,
        args.stream,
        start,
        args.to_seq,
        |r| {
            let fate = match &r.fate {
                stream_replay::Fate::Delivered { attempt: 1 } => "delivered".to_owned(),
                stream_replay::Fate::Delivered { attempt } => {
                    format!("delivered on attempt {attempt}")
                }
                stream_replay::Fate::DeadLettered(reason) => {
                    format!(
                        "dead-lettered to {}: {reason}",
                        deadletter::subject(&args.subscription)
                    )
                }
                stream_replay::Fate::NotDeadLettered { reason, error } => {
                    format!("NOT delivered ({reason}) and NOT dead-lettered: {error}")
                }
            };
            println!(
                "{}",
                replay::progress_line(r.sequence, &r.subject, &r.message_id, &fate)
            );
        },
    )
    .await?;
    println!("{summary} (up to stream sequence {})", summary.end);
    Ok(summary.all_delivered())
}

async fn publish(
    subject: String,
    payload: Option<String>,
    file: Option<PathBuf>,
    headers: Vec<String>,
    id: Option<String>,
    nats: NatsOptions,
) -> anyhow::Result<()> {
    let body = match (payload, file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => {
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in header_pairs(&headers)? {
        map.append(name, value);
    }
    if let Some(id) = id {
        map.insert("Nats-Msg-Id", id.as_str());
    }
    let client = nats.connect().await?;
    let js = async_nats::jetstream::new(client);
    let ack = js
        .publish_with_headers(subject.clone(), map, body.into())
        .await
        .context("publishing")?
        .await
        .context("waiting for the JetStream ack (does a stream hold this subject?)")?;
    println!(
        "published {subject} to stream {} at sequence {}",
        ack.stream, ack.sequence
    );
    Ok(())
}
