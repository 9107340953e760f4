//! What one delivery costs on the wasm path, host side: take an instance
//! (pooled, or fresh with `init`), call `deliver`, with a no-op `http` that
//! records instead of sending. Prints one line per plugin and strategy.
//!
//! `make bench` runs it; `cargo bench -p sinkhost --bench plugin_cost -- <plugin.wasm>...`
//! measures other components.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sinkhost::outbound::{Allowlist, Outbound};
use sinkhost::plugin::{Limits, Message, Runtime, SinkSpec};

fn main() {
    let args: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    let plugins = if args.is_empty() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/plugins");
        vec![dir.join("http-webhook.wasm")]
    } else {
        args
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Runtime::new(Limits::default(), 64).expect("engine");
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
        println!("{:<28} {:<8} {:>14} {:>10}", "plugin", "instance", "per delivery", "samples");
        for path in plugins {
            let started = Instant::now();
            let (outbound, recorder) = Outbound::dry_run(Allowlist::new(&["127.0.0.1:8091".into()]));
            let spec = SinkSpec {
                subscription: "bench".into(),
                plugin: path.clone(),
                init_json: r#"{"subscription":"bench","webhook":{"url":"http://127.0.0.1:8091/hook","headers":{"Authorization":"Bearer x"}},"settings":{}}"#.into(),
                outbound,
                secrets: Vec::new(),
            };
            let sink = runtime.sink(spec).expect("load plugin");
            let compiled = started.elapsed();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();

            let reused = measure(|| async {
                sink.deliver(&message).await.expect("deliver");
            })
            .await;
            let fresh = measure(|| async {
                sink.discard_idle();
                sink.deliver(&message).await.expect("deliver");
            })
            .await;
            recorder.take();
            println!("{name:<28} {:<8} {:>11.1} us {:>10}", "reused", reused.0, reused.1);
            println!("{name:<28} {:<8} {:>11.1} us {:>10}", "fresh", fresh.0, fresh.1);
            println!("{name:<28} compile + pre-instantiate {:.1} ms", compiled.as_secs_f64() * 1e3);
        }
    });
}

/// Median of 15 rounds, each the mean over as many calls as fit in ~100 ms.
async fn measure<F, Fut>(mut call: F) -> (f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..200 {
        call().await;
    }
    let mut rounds = Vec::new();
    let mut samples = 0;
    for _ in 0..15 {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(100) {
            call().await;
            n += 1;
        }
        samples += n;
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    rounds.sort_by(f64::total_cmp);
    (rounds[rounds.len() / 2], samples)
}
