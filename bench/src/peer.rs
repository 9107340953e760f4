//! Row 6: sinkhost side by side with the program it replaces. Runs
//! `../shared/peer/compare.sh` (the seed's Go consumer, rebuilt from its
//! description, and sinkhost draining the same backlog alternately, with the
//! same nats-server and Go receiver) and reads its figures: the drain ratio
//! and each consumer's CPU per message.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// What `compare.sh` printed, per consumer, one entry per round.
#[derive(Debug, Default)]
pub struct Comparison {
    pub go_rates: Vec<f64>,
    pub sinkhost_rates: Vec<f64>,
    pub go_cpu_us: Vec<f64>,
    pub sinkhost_cpu_us: Vec<f64>,
    /// The script's own median of the per-round ratios.
    pub ratio: f64,
}

/// Runs `script messages rounds` with `sinkhost`, the Go peer built into
/// `peer_bin` (compare.sh builds it there when missing).
pub fn compare(
    script: &Path,
    sinkhost: &Path,
    peer_bin: &Path,
    messages: u64,
    rounds: usize,
) -> anyhow::Result<Comparison> {
    let output = Command::new("bash")
        .arg(script)
        .arg(messages.to_string())
        .arg(rounds.to_string())
        .env("SINKHOST", sinkhost)
        .env("PEER_BIN", peer_bin)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({}):\n{stdout}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&stdout).with_context(|| format!("reading the output of {}:\n{stdout}", script.display()))
}

/// Reads `go round 1: rate=16233 msg/s ... cpu_us_per_msg=58.0` lines and
/// `ratio sinkhost/go = 0.66`.
fn parse(text: &str) -> anyhow::Result<Comparison> {
    let field = |line: &str, name: &str| -> Option<f64> {
        let at = line.find(name)? + name.len();
        line[at..].split_whitespace().next()?.parse().ok()
    };
    let mut found = Comparison::default();
    for line in text.lines() {
        let (rates, cpu) = if line.starts_with("go round ") {
            (&mut found.go_rates, &mut found.go_cpu_us)
        } else if line.starts_with("sinkhost round ") {
            (&mut found.sinkhost_rates, &mut found.sinkhost_cpu_us)
        } else {
            if let Some(ratio) = line.strip_prefix("ratio sinkhost/go = ") {
                found.ratio = ratio.trim().parse()?;
            }
            continue;
        };
        rates.push(field(line, "rate=").context("a round without rate=")?);
        cpu.push(field(line, "cpu_us_per_msg=").context("a round without cpu_us_per_msg=")?);
    }
    anyhow::ensure!(
        !found.go_rates.is_empty() && found.go_rates.len() == found.sinkhost_rates.len(),
        "no complete rounds"
    );
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rounds_and_the_ratio() {
        let text = "\
go round 1: rate=16233 msg/s distinct=20000 dups=0 peak_rss_kb=14516 cpu_us_per_msg=58.0
sinkhost round 1: rate=10342 msg/s distinct=20000 dups=0 peak_rss_kb=29384 cpu_us_per_msg=111.5
median go=16233 msg/s sinkhost=10342 msg/s
ratio sinkhost/go = 0.64
";
        let found = parse(text).unwrap();
        assert_eq!(found.go_rates, [16233.0]);
        assert_eq!(found.sinkhost_rates, [10342.0]);
        assert_eq!(found.go_cpu_us, [58.0]);
        assert_eq!(found.sinkhost_cpu_us, [111.5]);
        assert_eq!(found.ratio, 0.64);
        assert!(parse("median go=1 msg/s").is_err());
    }
}
