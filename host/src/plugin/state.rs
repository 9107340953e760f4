//! What one instance's store holds: WASI with nothing granted (no preopened
//! directories, no environment, no network, no stdin; stdout and stderr go to
//! the host's log through the [`CallLog`]), the memory
//! limit, and the per-call accounting the host imports and the CPU deadline
//! read: time spent waiting on `http`, and waiting to be polled again after
//! the engine yielded the thread ([`Yields`]), is not CPU time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::sinkhost::plugin::types;
use super::guest_log::CallLog;
use super::{Limits, SinkSpec};
use crate::ops::metrics::PerSubscription;

/// The data of one instance's store: WASI (deny-everything), limits, and what
/// the host imports need.
pub(super) struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) store_limits: StoreLimits,
    pub(super) spec: Arc<SinkSpec>,
    pub(super) call_started: Instant,
    pub(super) waiting: Duration,
    /// The call's log budget, shared with the guest's stdout and stderr.
    pub(super) log: Arc<Mutex<CallLog>>,
    pub(super) last_http: Option<super::LastHttp>,
    pub(super) metrics: PerSubscription,
    pub(super) yields: Arc<Yields>,
}

/// The call's yields to the async runtime (one per epoch tick of wasm, so a
/// long call leaves the thread to other deliveries): how long they waited to
/// be polled again, which a busy host makes long and which is not the
/// plugin's CPU; and whether the call has just come back from one.
#[derive(Debug, Default)]
pub(super) struct Yields {
    waited_nanos: AtomicU64,
    resumed: AtomicBool,
}

impl Yields {
    /// The future the engine awaits to yield: it gives the thread to other
    /// tasks once and records how long it took to come back.
    pub(super) fn yield_now(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let yields = Arc::clone(self);
        Box::pin(async move {
            let asked = Instant::now();
            tokio::task::yield_now().await;
            let waited = u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX);
            yields.waited_nanos.fetch_add(waited, Ordering::Relaxed);
            yields.resumed.store(true, Ordering::Relaxed);
        })
    }

    /// True once after each yield came back.
    pub(super) fn just_resumed(&self) -> bool {
        self.resumed.swap(false, Ordering::Relaxed)
    }

    fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    fn reset(&self) {
        self.waited_nanos.store(0, Ordering::Relaxed);
        self.resumed.store(false, Ordering::Relaxed);
    }
}

impl State {
    pub(super) fn new(spec: Arc<SinkSpec>, limits: Limits) -> Self {
        let log = CallLog::new(Arc::clone(&spec), limits);
        let (stdout, stderr) = CallLog::outputs(&log);
        State {
            // no preopened dirs, no env, no args, no network, no stdin
            wasi: WasiCtx::builder().stdout(stdout).stderr(stderr).build(),
            table: ResourceTable::new(),
            store_limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            call_started: Instant::now(),
            waiting: Duration::ZERO,
            log,
            last_http: None,
            metrics: PerSubscription::new(&spec.subscription),
            yields: Arc::default(),
            spec,
        }
    }

    pub(super) fn begin_call(&mut self) {
        self.call_started = Instant::now();
        self.waiting = Duration::ZERO;
        self.log.lock().expect("call log lock").begin();
        self.last_http = None;
        self.yields.reset();
    }

    pub(super) fn end_call(&mut self) {
        self.log.lock().expect("call log lock").end();
    }

    /// Time the current call spent running wasm, not waiting on the host
    /// or for the thread.
    pub(super) fn cpu_used(&self) -> Duration {
        self.call_started
            .elapsed()
            .saturating_sub(self.waiting)
            .saturating_sub(self.yields.waited())
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}
