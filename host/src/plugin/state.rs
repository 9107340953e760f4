//! What one instance's store holds: WASI with nothing granted (no preopened
//! directories, no environment, no network, stdio to nowhere), the memory
//! limit, and the per-call accounting the host imports and the CPU deadline
//! read (time spent waiting on `http` is not CPU time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::sinkhost::plugin::types;
use super::{Limits, SinkSpec};
use crate::ops::metrics::PerSubscription;

/// The data of one instance's store: WASI (deny-everything), limits, and what
/// the host imports need.
pub(super) struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) store_limits: StoreLimits,
    pub(super) spec: Arc<SinkSpec>,
    pub(super) limits: Limits,
    pub(super) call_started: Instant,
    pub(super) waiting: Duration,
    pub(super) log_lines: u32,
    pub(super) log_dropped: u32,
    pub(super) last_http: Option<String>,
    pub(super) metrics: PerSubscription,
}

impl State {
    pub(super) fn new(spec: Arc<SinkSpec>, limits: Limits) -> Self {
        State {
            // no preopened dirs, no env, no args, no network, stdio to nowhere
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            store_limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            limits,
            call_started: Instant::now(),
            waiting: Duration::ZERO,
            log_lines: 0,
            log_dropped: 0,
            last_http: None,
            metrics: PerSubscription::new(&spec.subscription),
            spec,
        }
    }

    pub(super) fn begin_call(&mut self) {
        self.call_started = Instant::now();
        self.waiting = Duration::ZERO;
        self.log_lines = 0;
        self.log_dropped = 0;
        self.last_http = None;
    }

    pub(super) fn end_call(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(
                subscription = %self.spec.subscription,
                dropped = self.log_dropped,
                "plugin log lines over the per-call limit were dropped"
            );
        }
    }

    /// Time the current call spent running wasm, not waiting on the host.
    pub(super) fn cpu_used(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.waiting)
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
