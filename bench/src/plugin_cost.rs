//! What one delivery costs on the wasm path, in the host: take an instance
//! (pooled, or fresh with `init`), call `deliver`, with a dry-run `http` that
//! records instead of sending. No NATS, no network.

use std::path::Path;
use std::time::{Duration, Instant};

use sinkhost::outbound::{Allowlist, Outbound};
use sinkhost::plugin::compile_cache::CompileCache;
use sinkhost::plugin::{Limits, Message, Runtime, SinkSpec};

/// One plugin's figures.
#[derive(Debug)]
pub struct Cost {
    /// Microseconds per delivery on a reused instance.
    pub reused_us: f64,
    /// Microseconds per delivery on a fresh instance (instantiate + init + deliver).
    pub fresh_us: f64,
    /// Compile (or cache load) + pre-instantiate.
    pub load: Duration,
}

/// Measures the component at `path`, compiled through `cache`.
pub async fn measure_plugin(path: &Path, cache: &CompileCache) -> anyhow::Result<Cost> {
    let runtime = Runtime::new(Limits::default())?.with_compile_cache(cache.clone());
    let payload = br#"{"order_id":42,"total":"19.90","items":[{"sku":"T-1","qty":2},{"sku":"T-2","qty":1}],"customer":{"id":7,"email":"a@example.com"}}"#.repeat(2);
    let message = Message {
        subject: "order.completed".into(),
        payload: payload[..256].to_vec(),
        headers: vec![("Nats-Msg-Id".into(), "order-42".into())],
        id: "order-42".into(),
        published_ms: 1_776_758_990_000,
        attempt: 1,
        max_attempts: 4,
    };
    let started = Instant::now();
    let (outbound, recorder) = Outbound::dry_run(Allowlist::new(&["127.0.0.1:8091".into()]));
    let spec = SinkSpec {
        subscription: "bench".into(),
        plugin: path.to_owned(),
        init_json: r#"{"subscription":"bench","webhook":{"url":"http://127.0.0.1:8091/hook","headers":{"Authorization":"Bearer x"}},"settings":{}}"#.into(),
        outbound,
        secrets: Vec::new(),
    };
    let sink = runtime.sink(spec)?;
    let load = started.elapsed();
    let reused_us = per_call(|| async {
        sink.deliver(&message).await.expect("deliver");
    })
    .await;
    let fresh_us = per_call(|| async {
        sink.discard_idle();
        sink.deliver(&message).await.expect("deliver");
    })
    .await;
    recorder.take();
    Ok(Cost {
        reused_us,
        fresh_us,
        load,
    })
}

/// Median over 15 rounds of the mean per call, each round as many calls as
/// fit in ~100 ms, after 200 warm-up calls.
async fn per_call<F, Fut>(mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..200 {
        call().await;
    }
    let mut rounds = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(100) {
            call().await;
            n += 1;
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}
