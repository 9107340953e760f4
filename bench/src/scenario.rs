//! The measured runs: a sinkhost drain of a pre-filled stream, the two bounds
//! (a bare pull+ack loop, the receiver under a load generator), steady-rate
//! latency, and ready time. Each returns plain figures; `main` tabulates.
//! Also what `scaling` builds its runs from: a generated config.d of any
//! number of subscriptions, and publishing a backlog.

use std::fmt::Write as _;
use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;

use crate::procs::SinkhostBin;
use crate::receiver::Receiver;

/// Payload size of every published message, in bytes.
pub const PAYLOAD_BYTES: usize = 256;
/// The subscription's `max_concurrency` (the seed's value).
pub const MAX_CONCURRENCY: usize = 50;
const SUBJECTS: [&str; 3] = ["order.created", "ticket.sold", "payment.captured"];

/// What the bench shares between runs.
pub struct Bench {
    /// JetStream on the bench's nats-server.
    pub js: jetstream::Context,
    /// Its URL, for sinkhost.
    pub nats_url: String,
    /// The destination.
    pub receiver: Receiver,
    /// How to start sinkhost.
    pub sinkhost: SinkhostBin,
    /// For `/healthz` and the load generator.
    pub http: reqwest::Client,
    /// The clock payloads' `sent_us` counts from.
    pub epoch: Instant,
}

/// One drain round's figures.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// sinkhost: messages per second from the first to the last arrival.
    pub sinkhost: f64,
    /// sinkhost's peak resident set during the round, in bytes.
    pub peak_rss: u64,
    /// A bare async-nats pull+ack loop on the same stream, messages per second.
    pub broker: f64,
}

/// A JSON payload of exactly `size` bytes (more when `size` is too small for
/// the fields) carrying `seq` and the publish time.
fn payload(seq: u64, sent_us: u64, size: usize) -> bytes::Bytes {
    let head = format!(r#"{{"seq":{seq},"sent_us":{sent_us},"pad":""#);
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into()
}

/// One subscription of a generated config.d: http-webhook to `url`, with the
/// seed's settings but for `max_concurrency`.
pub struct Subscription {
    pub name: String,
    /// Its subject filter.
    pub subject: String,
    pub url: String,
    pub max_concurrency: usize,
}

/// A config.d holding the stream `stream` on `<prefix>.>` (with the extra
/// `stream_keys` lines) and `subscriptions`, each with its own durable
/// (`<name>-consumer`).
pub fn config_dir(
    stream: &str,
    prefix: &str,
    stream_keys: &str,
    subscriptions: &[Subscription],
) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sinkhost-bench-config-")
        .tempdir()?;
    let mut yaml = format!(
        "stream:\n  name: {stream}\n  subjects: [\"{prefix}.>\"]\n  max_age: 1h\n  storage: file\n{stream_keys}subscriptions:\n"
    );
    for Subscription {
        name,
        subject,
        url,
        max_concurrency,
    } in subscriptions
    {
        let _ = write!(
            yaml,
            "  - name: {name}\n    subject: \"{subject}\"\n    consumer: {name}-consumer\n\
             \x20   webhook:\n      url: \"{url}\"\n      headers:\n        Authorization: \"Bearer bench\"\n\
             \x20   timeout: \"15s\"\n    retries: 3\n    backoff: \"2s\"\n    max_concurrency: {max_concurrency}\n    ack_wait: \"120s\"\n"
        );
    }
    std::fs::write(dir.path().join("10-bench.yml"), yaml)?;
    Ok(dir)
}

impl Bench {
    /// Creates the stream `name` on `<prefix>.>`.
    pub async fn create_stream(&self, name: &str, prefix: &str) -> anyhow::Result<()> {
        self.js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![format!("{prefix}.>")],
                max_age: Duration::from_secs(3600),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {name}"))?;
        Ok(())
    }

    /// Deletes `stream`, its attempts stream and its dead-letter stream: each
    /// claims `dlq.>`, so only one stream with a dead-letter stream can exist
    /// on a server.
    pub async fn remove_stream(&self, stream: &str) {
        for name in [
            stream.to_owned(),
            format!("{stream}_dlq"),
            format!("{stream}_attempts"),
        ] {
            let _ = self.js.delete_stream(&name).await;
        }
    }

    /// A config.d with one http-webhook subscription on `<prefix>.>`.
    fn config_dir(&self, stream: &str, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
        config_dir(
            stream,
            prefix,
            "",
            &[Subscription {
                name: prefix.into(),
                subject: format!("{prefix}.>"),
                url: format!("{}/hook", self.receiver.base),
                max_concurrency: MAX_CONCURRENCY,
            }],
        )
    }

    /// Publishes `n` messages round-robin over three subjects and waits for
    /// every JetStream ack.
    async fn fill(&self, prefix: &str, n: u64) -> anyhow::Result<()> {
        self.publish(n, PAYLOAD_BYTES, |seq| {
            format!("{prefix}.{}", SUBJECTS[(seq % 3) as usize])
        })
        .await
    }

    /// Publishes `n` messages of `size` bytes, message `seq` on
    /// `subject(seq)`, and waits for every JetStream ack.
    pub async fn publish(
        &self,
        n: u64,
        size: usize,
        subject: impl Fn(u64) -> String,
    ) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(1024);
        for seq in 0..n {
            let sent = self.epoch.elapsed().as_micros() as u64;
            acks.push(
                self.js
                    .publish(subject(seq), payload(seq, sent, size))
                    .await?,
            );
            if acks.len() == 1024 {
                futures::future::try_join_all(acks.drain(..).map(IntoFuture::into_future)).await?;
            }
        }
        futures::future::try_join_all(acks.into_iter().map(IntoFuture::into_future)).await?;
        Ok(())
    }

    /// Round `round`: fill a fresh stream with `n` messages, let sinkhost
    /// drain it to the receiver, then drain it again with a bare pull+ack loop.
    pub async fn drain(&self, round: usize, n: u64) -> anyhow::Result<Drain> {
        let prefix = format!("drain{round}");
        let stream = format!("bench_{prefix}");
        self.create_stream(&stream, &prefix).await?;
        self.fill(&prefix, n).await?;
        let config = self.config_dir(&stream, &prefix)?;
        self.receiver.reset();
        let mut host = self.sinkhost.run(config.path(), &self.nats_url, &[])?;
        let arrivals = self
            .receiver
            .wait_for(n, Duration::from_secs(300))
            .await
            .with_context(|| format!("sinkhost drain (see {})", host.log.display()))?;
        let peak_rss = host.peak_rss()?;
        host.stop();
        let sinkhost = rate(arrivals.count, arrivals.span);
        let broker = self.pull_ack(&stream, n).await?;
        self.remove_stream(&stream).await;
        Ok(Drain {
            sinkhost,
            peak_rss,
            broker,
        })
    }

    /// The broker bound: a durable pull consumer with sinkhost's settings
    /// (explicit ack, `max_ack_pending` = batch = [`MAX_CONCURRENCY`]) whose
    /// loop only acks, without waiting for the server's confirmation.
    async fn pull_ack(&self, stream: &str, n: u64) -> anyhow::Result<f64> {
        let consumer: consumer::PullConsumer = self
            .js
            .get_stream(stream)
            .await?
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("{stream}-pull-ack")),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: MAX_CONCURRENCY as i64,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(MAX_CONCURRENCY)
            .messages()
            .await?;
        let mut first = None;
        let mut got = 0;
        while got < n {
            let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .context("pull+ack loop stalled")?
                .context("pull+ack stream ended")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            first.get_or_insert_with(Instant::now);
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
        }
        let span = first.map(|f| f.elapsed()).unwrap_or_default();
        Ok(rate(got, span))
    }

    /// The destination bound: [`MAX_CONCURRENCY`] keep-alive workers POST `n`
    /// envelope-sized bodies to the receiver as fast as it answers.
    pub async fn load_generator(&self, n: u64) -> anyhow::Result<f64> {
        self.receiver.reset();
        let body = format!(
            r#"{{"subject":"order.created","data":{},"timestamp":"2026-11-29T12:00:00Z","message_id":"nats-msg-1"}}"#,
            String::from_utf8_lossy(&payload(0, 0, PAYLOAD_BYTES))
        );
        let next = Arc::new(AtomicU64::new(0));
        let url = format!("{}/hook", self.receiver.base);
        let workers: Vec<_> = (0..MAX_CONCURRENCY)
            .map(|_| {
                let (http, next, url, body) =
                    (self.http.clone(), next.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let response = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await?;
                        response.bytes().await?;
                    }
                    Ok::<_, reqwest::Error>(())
                })
            })
            .collect();
        for worker in futures::future::join_all(workers).await {
            worker??;
        }
        let arrivals = self.receiver.wait_for(n, Duration::from_secs(60)).await?;
        Ok(rate(arrivals.count, arrivals.span))
    }

    /// Publish-to-arrival latency through sinkhost at a steady `per_second`
    /// for `duration`; the first tenth is warm-up and not counted.
    pub async fn latency(&self, per_second: u64, duration: Duration) -> anyhow::Result<Vec<u64>> {
        let prefix = "latency";
        let stream = "bench_latency";
        self.create_stream(stream, prefix).await?;
        let config = self.config_dir(stream, prefix)?;
        let mut host = self.sinkhost.run(config.path(), &self.nats_url, &[])?;
        host.wait_ready(&self.http).await?;
        self.receiver.reset();
        let n = per_second * duration.as_secs();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // Acks are awaited as they come, on another task: async-nats stops
        // publishing while too many are outstanding.
        let (acks, pending) = tokio::sync::mpsc::unbounded_channel::<PublishAckFuture>();
        let settled = tokio::spawn(async move {
            let mut pending = pending;
            while let Some(ack) = pending.recv().await {
                ack.await?;
            }
            Ok::<_, async_nats::jetstream::context::PublishError>(())
        });
        for seq in 0..n {
            tick.tick().await;
            let subject = format!("{prefix}.{}", SUBJECTS[(seq % 3) as usize]);
            let sent = self.epoch.elapsed().as_micros() as u64;
            let _ = acks.send(
                self.js
                    .publish(subject, payload(seq, sent, PAYLOAD_BYTES))
                    .await?,
            );
        }
        drop(acks);
        settled.await??;
        let arrivals = self.receiver.wait_for(n, Duration::from_secs(60)).await?;
        host.stop();
        self.remove_stream(stream).await;
        let mut latencies = arrivals.latencies_us;
        latencies.drain(..latencies.len() / 10);
        Ok(latencies)
    }

    /// Time from starting `sinkhost run` on `config_dir` to a 200 on
    /// `/healthz`.
    pub async fn ready(&self, config_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Duration> {
        let mut host = self.sinkhost.run(config_dir, &self.nats_url, env)?;
        let ready = host.wait_ready(&self.http).await;
        host.stop();
        ready
    }
}

/// Messages per second over `span` (first to last arrival: `n - 1` intervals).
pub fn rate(n: u64, span: Duration) -> f64 {
    n.saturating_sub(1) as f64 / span.as_secs_f64().max(1e-9)
}

/// The `p`-th percentile (0..=100) of sorted `values`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_json_of_the_size_asked_for() {
        for (seq, sent, size) in [(0, 0, 256), (19_999, 123_456_789, 256), (7, 8, 256 << 10)] {
            let p = super::payload(seq, sent, size);
            assert_eq!(p.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(v["sent_us"], sent);
        }
    }
}
