//! `sinkhost dlq list`: the dead letters of a stream as a table or JSON lines.

use std::fmt::Write as _;

use crate::bus::deadletter::DeadLetter;

/// The table `dlq list` prints: a header, one line per dead letter, a count.
pub(crate) fn table(letters: &[DeadLetter], stream: &str) -> String {
    let mut out = format!(
        "{:>6}  {:<20}  {:<24}  {:<24}  {:>8}  LAST ERROR\n",
        "SEQ", "TIME", "SUBSCRIPTION", "SUBJECT", "ATTEMPTS"
    );
    for l in letters {
        let _ = writeln!(
            out,
            "{:>6}  {:<20}  {:<24}  {:<24}  {:>8}  {}",
            l.dlq_sequence,
            l.time.get(..19).unwrap_or(&l.time),
            l.subscription,
            l.subject,
            l.attempts.map(|a| a.to_string()).unwrap_or_default(),
            l.last_error
        );
    }
    let _ = write!(
        out,
        "{} dead letter(s) in {}",
        letters.len(),
        crate::bus::deadletter::stream_name(stream)
    );
    out
}

/// One JSON object per dead letter, one per line.
pub(crate) fn json_lines(letters: &[DeadLetter]) -> serde_json::Result<String> {
    let lines: Vec<String> = letters
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}
