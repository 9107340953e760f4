//! The scaling section (issue 12): how sinkhost's cost grows with the work.
//! Every case drains a pre-filled backlog through http-webhook to the
//! receiver, as row 1 does, and varies one thing: the payload size, the number
//! of subscriptions on one host (each with its own subject filter
//! `<prefix>.s<i>.>`, durable and webhook path `/s<i>`, the backlog spread
//! evenly over them), one destination of ten answering late, two hosts on
//! the same config.d (the same durables), or an attempt history of every
//! success (`history: all`, against the default `failures`). The rounds run the cases in turn so
//! background load falls on all of them alike.
//!
//! Owns the cases, their figures and their table; the processes, the receiver
//! and the stream helpers belong to `procs`, `receiver` and `scenario`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::procs::{self, Memory, Nats, Sinkhost};
use crate::receiver::Tally;
use crate::scenario::{self, Bench, PAYLOAD_BYTES, Subscription};
use crate::{median, mib};

/// Bytes one payload case publishes at most: bigger payloads get fewer
/// messages, so a round stays within seconds.
const PAYLOAD_BUDGET: usize = 128 << 20;
/// Larger payloads than row 1's.
const PAYLOADS: [usize; 2] = [16 << 10, 256 << 10];
/// Subscriptions of the slow-destination case; the first one is slow.
const SLOW_OF: usize = 10;
/// How long a drain may wait for its first arrival before the run fails.
const FIRST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a drain may go with nothing arriving and nothing dead-lettered
/// before the bench stops waiting and records what is missing (the stalled
/// fetch loops seen here resumed after about 30 s).
const QUIET: Duration = Duration::from_secs(60);

/// What the section runs.
pub struct Options {
    /// Messages of each case's backlog (fewer for large payloads).
    pub messages: u64,
    pub rounds: usize,
    /// The subscription counts, e.g. 1, 10, 100, 1000.
    pub subscriptions: Vec<usize>,
    /// How late the slow destination answers.
    pub slow_delay: Duration,
    /// Only the cases with these tags (`n1`, `c10`, `p16384`, `slow`, `two`,
    /// `history`).
    pub cases: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// One subscription, payloads of this many bytes.
    Payload(usize),
    /// This many subscriptions on one host.
    Subscriptions(usize),
    /// This many subscriptions sharing one subscription's `max_concurrency`
    /// (50 / n each): as many deliveries in flight as with one. Only for
    /// counts that divide it.
    Shared(usize),
    /// [`SLOW_OF`] subscriptions, the first one's destination slow.
    Slow,
    /// One subscription, two hosts on it.
    TwoHosts,
    /// One subscription with `history: all`: against the 1-subscription
    /// case (the default, `history: failures`, which records nothing of a
    /// drain without failures), what recording every success costs.
    FullHistory,
}

impl Case {
    fn subscriptions(self) -> usize {
        match self {
            Case::Subscriptions(n) | Case::Shared(n) => n,
            Case::Slow => SLOW_OF,
            Case::Payload(_) | Case::TwoHosts | Case::FullHistory => 1,
        }
    }

    fn max_concurrency(self) -> usize {
        match self {
            Case::Shared(n) => scenario::MAX_CONCURRENCY / n,
            _ => scenario::MAX_CONCURRENCY,
        }
    }

    fn payload(self) -> usize {
        match self {
            Case::Payload(bytes) => bytes,
            _ => PAYLOAD_BYTES,
        }
    }

    /// The backlog, a multiple of the subscriptions.
    fn messages(self, total: u64) -> u64 {
        let total = total.min((PAYLOAD_BUDGET / self.payload()) as u64);
        let subscriptions = self.subscriptions() as u64;
        (total / subscriptions).max(1) * subscriptions
    }

    /// A name for its stream and subjects.
    fn tag(self) -> String {
        match self {
            Case::Payload(bytes) => format!("p{bytes}"),
            Case::Subscriptions(n) => format!("n{n}"),
            Case::Shared(n) => format!("c{n}"),
            Case::Slow => "slow".into(),
            Case::TwoHosts => "two".into(),
            Case::FullHistory => "history".into(),
        }
    }

    /// What its config.d's `stream:` adds.
    fn stream_keys(self) -> &'static str {
        match self {
            Case::FullHistory => "  history: all\n",
            _ => "",
        }
    }
}

/// One drain of one case.
#[derive(Debug)]
struct Figures {
    /// Messages per second over the paths waited for (all but the slow one),
    /// first to last arrival.
    rate: f64,
    /// The same for `/s1`..`/s9` when the case has ten subscriptions.
    nine: Option<f64>,
    /// CPU (user + system) from the first arrival to the end of the wait, per
    /// message that arrived in between: sinkhost (all hosts), nats-server, and this
    /// process (the receiver).
    cpu_us: Cpu<f64>,
    /// When the drain finished; with two hosts, the larger of each.
    drained: Memory,
    /// Resident set and address space when ready on the empty stream.
    idle: Memory,
    /// Start -> `/healthz` 200 on the empty stream.
    ready: Duration,
    /// Connections the receiver accepted during the drain.
    connections: u64,
    /// Messages of the paths waited for that were dead-lettered instead.
    dead: u64,
    /// Messages of those paths that neither arrived nor were dead-lettered
    /// when the bench stopped waiting.
    missing: u64,
    /// What the drain's hosts logged going wrong ([`Sinkhost::troubles`]).
    troubles: Vec<String>,
}

/// CPU of the three processes a drain keeps busy.
#[derive(Debug, Clone, Copy)]
struct Cpu<T> {
    sinkhost: T,
    nats: T,
    bench: T,
}

impl Cpu<Duration> {
    fn now(hosts: &[Sinkhost], nats: &Nats) -> anyhow::Result<Self> {
        Ok(Cpu {
            sinkhost: hosts.iter().map(Sinkhost::cpu).sum::<anyhow::Result<_>>()?,
            nats: nats.cpu()?,
            bench: procs::cpu_of("self")?,
        })
    }

    /// Microseconds per message of what was used since `before`.
    fn per_message(self, before: Self, messages: u64) -> Cpu<f64> {
        let us = |after: Duration, before: Duration| {
            after.saturating_sub(before).as_secs_f64() * 1e6 / messages.max(1) as f64
        };
        Cpu {
            sinkhost: us(self.sinkhost, before.sinkhost),
            nats: us(self.nats, before.nats),
            bench: us(self.bench, before.bench),
        }
    }
}

/// Runs every case `rounds` times and returns the section's report (header
/// and table).
pub async fn run(bench: &Bench, nats: &Nats, options: &Options) -> anyhow::Result<String> {
    let load_before = crate::loadavg();
    let started = Instant::now();
    // Fills the compile cache, so ready times are warm ones, as in row 5.
    let config = scenario::config_dir(
        "bench_check",
        "check",
        "",
        &[subscription(bench, "check", 0, 1)],
    )?;
    bench.sinkhost.check(config.path())?;
    let mut cases: Vec<Case> = options
        .subscriptions
        .iter()
        .map(|&n| Case::Subscriptions(n))
        .collect();
    cases.extend(
        options
            .subscriptions
            .iter()
            .filter(|&&n| n > 1 && scenario::MAX_CONCURRENCY.is_multiple_of(n))
            .map(|&n| Case::Shared(n)),
    );
    cases.extend(PAYLOADS.map(Case::Payload));
    cases.extend([Case::Slow, Case::TwoHosts, Case::FullHistory]);
    if let Some(only) = &options.cases {
        cases.retain(|c| only.contains(&c.tag()));
    }
    let mut runs: Vec<(Case, Vec<Figures>)> = cases.iter().map(|&c| (c, Vec::new())).collect();
    for round in 1..=options.rounds.max(1) {
        for (case, figures) in &mut runs {
            eprintln!(
                "scaling round {round}/{}: {case:?}, {} messages ...",
                options.rounds,
                case.messages(options.messages)
            );
            let f = drain(bench, nats, *case, round, options).await?;
            eprintln!(
                "  {:.0} msg/s{}, {:.1} us/msg (nats-server {:.1}, receiver {:.1}), peak RSS {:.1} MiB, VmSize {:.0} MiB, ready {:.0} ms, {} connections",
                f.rate,
                f.nine
                    .map(|r| format!(" (s1..s9 {r:.0})"))
                    .unwrap_or_default(),
                f.cpu_us.sinkhost,
                f.cpu_us.nats,
                f.cpu_us.bench,
                mib(f.drained.peak_rss),
                mib(f.drained.size),
                f.ready.as_secs_f64() * 1e3,
                f.connections
            );
            if f.dead + f.missing > 0 {
                eprintln!("  {} dead-lettered, {} missing", f.dead, f.missing);
            }
            for (trouble, times) in tally_troubles([&f]) {
                eprintln!("  logged {times}x: {trouble}");
            }
            figures.push(f);
        }
    }
    Ok(render(
        options,
        &runs,
        &load_before,
        &crate::loadavg(),
        started.elapsed(),
    ))
}

/// One case, one round: a fresh stream and config.d; sinkhost started once on
/// the empty stream (ready time, idle memory; this creates the durables);
/// the backlog published; sinkhost started again (twice for two hosts) and
/// timed until every message on the fast paths arrived.
async fn drain(
    bench: &Bench,
    nats: &Nats,
    case: Case,
    round: usize,
    options: &Options,
) -> anyhow::Result<Figures> {
    let prefix = format!("scale{round}{}", case.tag());
    let stream = format!("bench_{prefix}");
    let n = case.subscriptions();
    let subscriptions: Vec<Subscription> = (0..n)
        .map(|i| subscription(bench, &prefix, i, case.max_concurrency()))
        .collect();
    let config = scenario::config_dir(&stream, &prefix, case.stream_keys(), &subscriptions)?;
    bench.create_stream(&stream, &prefix).await?;

    let (ready, idle) = {
        let mut host = start(bench, config.path())?;
        let ready = host
            .wait_ready(&bench.http)
            .await
            .with_context(|| format!("{case:?} (see {})", host.log.display()))?;
        (ready, host.memory()?)
    };

    let messages = case.messages(options.messages);
    bench
        .publish(messages, case.payload(), |seq| {
            format!("{prefix}.s{}.m", seq % n as u64)
        })
        .await?;
    bench.receiver.reset();
    let slow = (case == Case::Slow).then_some("/s0");
    bench
        .receiver
        .slow(slow.map(|path| (path, options.slow_delay)));
    let hosts = (0..if case == Case::TwoHosts { 2 } else { 1 })
        .map(|_| start(bench, config.path()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let logs = || {
        hosts
            .iter()
            .map(|h| h.log.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };

    bench
        .receiver
        .wait_for(1, FIRST_TIMEOUT)
        .await
        .with_context(|| format!("{case:?}: nothing arrived (see {})", logs()))?;
    let (count_before, cpu_before) = (bench.receiver.count(), Cpu::now(&hosts, nats)?);
    let fast: Vec<String> = subscriptions
        .iter()
        .map(|s| format!("/{}", s.name))
        .filter(|path| Some(path.as_str()) != slow)
        .collect();
    let expected = messages / n as u64 * fast.len() as u64;
    let (tally, dead) = wait_drained(bench, &stream, &fast, expected).await;
    let (count_after, cpu_after) = (bench.receiver.count(), Cpu::now(&hosts, nats)?);
    let connections = bench.receiver.connections();
    let troubles = hosts.iter().flat_map(Sinkhost::troubles).collect();
    let mut drained = Memory::default();
    for host in &hosts {
        let m = host.memory()?;
        drained.peak_rss = drained.peak_rss.max(m.peak_rss);
        drained.size = drained.size.max(m.size);
    }
    let nine = (n == SLOW_OF).then(|| {
        let tally = bench.receiver.tally(&fast[fast.len() - (SLOW_OF - 1)..]);
        scenario::rate(tally.count, tally.span)
    });
    drop(hosts);
    bench.receiver.slow(None);
    bench.remove_stream(&stream).await;
    Ok(Figures {
        rate: scenario::rate(tally.count, tally.span),
        nine,
        cpu_us: cpu_after.per_message(cpu_before, count_after.saturating_sub(count_before)),
        drained,
        idle,
        ready,
        connections,
        dead,
        missing: expected.saturating_sub(tally.count + dead),
        troubles,
    })
}

/// Waits until `expected` messages arrived on `paths` or went to the
/// dead-letter stream, or until nothing moved for [`QUIET`]; what arrived and
/// how many were dead-lettered. The dead-letter stream is asked only when
/// arrivals pause, so the wait adds no load while messages flow.
async fn wait_drained(
    bench: &Bench,
    stream: &str,
    paths: &[String],
    expected: u64,
) -> (Tally, u64) {
    let (mut arrived, mut dead) = (0, 0);
    let (mut moved, mut asked) = (Instant::now(), Instant::now());
    loop {
        let tally = bench.receiver.tally(paths);
        if tally.count != arrived {
            (arrived, moved) = (tally.count, Instant::now());
        }
        if arrived >= expected {
            return (tally, dead);
        }
        if moved.elapsed() > Duration::from_secs(1) && asked.elapsed() > Duration::from_secs(1) {
            let now = dead_letters(bench, stream).await;
            if now != dead {
                (dead, moved) = (now, Instant::now());
            }
            asked = Instant::now();
            if arrived + dead >= expected || moved.elapsed() > QUIET {
                return (tally, dead);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Messages in `<stream>_dlq`, sinkhost's dead-letter stream (0 if it has none).
async fn dead_letters(bench: &Bench, stream: &str) -> u64 {
    match bench.js.get_stream(format!("{stream}_dlq")).await {
        Ok(mut dlq) => dlq.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Subscription `i`: `s<i>` on `<prefix>.s<i>.>` to `/s<i>`.
fn subscription(bench: &Bench, prefix: &str, i: usize, max_concurrency: usize) -> Subscription {
    Subscription {
        name: format!("s{i}"),
        subject: format!("{prefix}.s{i}.>"),
        url: format!("{}/s{i}", bench.receiver.base),
        max_concurrency,
    }
}

fn start(bench: &Bench, config_dir: &std::path::Path) -> anyhow::Result<Sinkhost> {
    bench.sinkhost.run(config_dir, &bench.nats_url, &[])
}

fn render(
    options: &Options,
    runs: &[(Case, Vec<Figures>)],
    load_before: &str,
    load_after: &str,
    took: Duration,
) -> String {
    let median_of = |case: Case, f: &dyn Fn(&Figures) -> f64| -> Option<f64> {
        let (_, figures) = runs.iter().find(|(c, _)| *c == case)?;
        Some(median(figures.iter().map(f).collect()))
    };
    let one = |f: &dyn Fn(&Figures) -> f64| median_of(Case::Subscriptions(1), f).unwrap_or(0.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  \nRun: {} rounds, the cases in turn; backlog {} messages of {PAYLOAD_BYTES} B \
         (larger payloads: at most {} MiB) spread evenly over the subscriptions; http-webhook, \
         max_concurrency {} unless said; the section took {:.0} s.\n",
        crate::machine(load_before, load_after),
        options.rounds.max(1),
        options.messages,
        PAYLOAD_BUDGET >> 20,
        scenario::MAX_CONCURRENCY,
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| case | msg/s (spread) | ratio | CPU us/msg: sinkhost / nats-server / receiver | RSS ready / peak | VmSize | ready | connections | how |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (case, figures) in runs {
        let m = |f: &dyn Fn(&Figures) -> f64| median(figures.iter().map(f).collect());
        let (lo, hi) = figures
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), f| {
                (lo.min(f.rate), hi.max(f.rate))
            });
        let n = case.subscriptions();
        let each = case.messages(options.messages) / n as u64;
        let rate = m(&|f| f.rate);
        let against_one = format!("{:.2}x 1 subscription", rate / one(&|f| f.rate));
        let (label, ratio, how) = match case {
            Case::Subscriptions(1) => (
                "1 subscription, 256 B".into(),
                String::new(),
                format!("{each} messages"),
            ),
            Case::Subscriptions(_) | Case::Shared(_) => {
                let grown = |f: &dyn Fn(&Figures) -> f64| (m(f) - one(f)) / (n - 1) as f64;
                (
                    if let Case::Shared(_) = case {
                        format!(
                            "{n} subscriptions, max_concurrency {} each",
                            case.max_concurrency()
                        )
                    } else {
                        format!("{n} subscriptions")
                    },
                    against_one,
                    format!(
                        "{each} messages each; per added subscription: RSS ready {:+.0} KiB, peak {:+.0} KiB, VmSize {:+.1} MiB",
                        grown(&|f| f.idle.peak_rss as f64) / 1024.0,
                        grown(&|f| f.drained.peak_rss as f64) / 1024.0,
                        grown(&|f| f.drained.size as f64) / (1024.0 * 1024.0),
                    ),
                )
            }
            Case::Payload(bytes) => (
                format!("1 subscription, {} KiB", bytes >> 10),
                format!("{:.0} MB/s", rate * *bytes as f64 / 1e6),
                format!("{each} messages"),
            ),
            Case::Slow => {
                let all_fast = median_of(Case::Subscriptions(SLOW_OF), &|f| f.nine.unwrap_or(0.0))
                    .unwrap_or(0.0);
                (
                    format!(
                        "{SLOW_OF} subscriptions, /s0 answers after {:?}",
                        options.slow_delay
                    ),
                    format!("{:.2}x all fast", rate / all_fast),
                    format!(
                        "{each} messages each; msg/s of /s1../s9, against theirs in the {SLOW_OF}-subscription row ({all_fast:.0} msg/s)"
                    ),
                )
            }
            Case::FullHistory => {
                let cost = |f: &dyn Fn(&Figures) -> f64| m(f) - one(f);
                (
                    "1 subscription, history: all".into(),
                    format!("{:.2}x history: failures", rate / one(&|f| f.rate)),
                    format!(
                        "{each} messages; recording every success as well costs sinkhost {:+.1} us/msg, nats-server {:+.1} us/msg",
                        cost(&|f| f.cpu_us.sinkhost),
                        cost(&|f| f.cpu_us.nats)
                    ),
                )
            }
            Case::TwoHosts => (
                "2 hosts, 1 subscription".into(),
                format!("{:.2}x 1 host", rate / one(&|f| f.rate)),
                format!(
                    "{each} messages; the same config.d and durable; CPU of both, memory of the larger"
                ),
            ),
        };
        let mut how = how;
        let lost: Vec<String> = figures
            .iter()
            .filter(|f| f.dead + f.missing > 0)
            .map(|f| format!("{} dead-lettered, {} missing", f.dead, f.missing))
            .collect();
        if !lost.is_empty() {
            let _ = write!(
                how,
                "; **not all delivered** in {} of {} runs ({})",
                lost.len(),
                figures.len(),
                lost.join("; ")
            );
        }
        let troubles = tally_troubles(figures);
        if !troubles.is_empty() {
            let listed: Vec<String> = troubles
                .iter()
                .map(|(trouble, times)| format!("{times}x {trouble}"))
                .collect();
            let _ = write!(how, "; logged over the runs: {}", listed.join("; "));
        }
        let _ = writeln!(
            out,
            "| {label} | {rate:.0} ({lo:.0}–{hi:.0}) | {ratio} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} MiB | {:.1} GiB | {:.0} ms | {:.0} | {how} |",
            m(&|f| f.cpu_us.sinkhost),
            m(&|f| f.cpu_us.nats),
            m(&|f| f.cpu_us.bench),
            mib(m(&|f| f.idle.peak_rss as f64) as u64),
            mib(m(&|f| f.drained.peak_rss as f64) as u64),
            mib(m(&|f| f.drained.size as f64) as u64) / 1024.0,
            m(&|f| f.ready.as_secs_f64() * 1e3),
            m(&|f| f.connections as f64),
        );
    }
    out
}

/// The distinct troubles the runs logged, most frequent first, with how often.
fn tally_troubles<'a>(figures: impl IntoIterator<Item = &'a Figures>) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for trouble in figures.into_iter().flat_map(|f| &f.troubles) {
        *counts.entry(trouble).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> =
        counts.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}
