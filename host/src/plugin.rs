//! The plugin runtime: wasmtime engine, compiled components, instance pools,
//! limits, and the host side of the WIT imports.
//!
//! One [`Runtime`] per process owns the engine (pooling allocator, epoch
//! interruption) and compiles each `.wasm` once. A [`Sink`] is one
//! subscription's view of a plugin: a pool of initialised instances reused
//! across messages. A trap or a blown deadline discards the instance that
//! caused it, never the host. This module does not decide what an outcome
//! means for the message (that is `retry`) and does not send HTTP itself
//! (that is `outbound`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::compile_cache::CompileCache;
use crate::outbound::{self, Outbound};
use crate::redact::redact;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink-plugin",
        imports: { "sinkhost:plugin/http.send": async },
        exports: { default: async },
    });
}

pub use bindings::sinkhost::plugin::types::Message;
use bindings::sinkhost::plugin::{http, log, types};
use bindings::{SinkPlugin, SinkPluginPre};

/// How often the engine's epoch advances; the granularity of the CPU deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Longest `reject` reason kept, in bytes: it goes into log lines and a
/// dead-letter header, so a plugin must not be able to make either huge.
const REASON_BYTES: usize = 4096;

/// Limits that apply to every plugin instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU time (wasm execution, not waiting on `http`) one call may use.
    pub cpu_per_call: Duration,
    /// Log lines one call may write; the rest are dropped and counted.
    pub log_lines_per_call: u32,
    /// Longest log line kept, in bytes; longer ones are truncated.
    pub log_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            cpu_per_call: Duration::from_secs(1),
            log_lines_per_call: 100,
            log_line_bytes: 4096,
        }
    }
}

/// What a plugin decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: ack.
    Delivered,
    /// Retry, after the plugin's delay or the subscription's schedule.
    Retry(Option<Duration>),
    /// Never deliverable: dead-letter now.
    Reject(String),
}

/// One finished call of `deliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What the plugin decided.
    pub outcome: Outcome,
    /// The last `http.send` result of the call (`HTTP 503 from
    /// https://host:443/...`, `HTTP request timed out (...)`), so a dead letter
    /// can say what the destination did.
    pub last_http: Option<String>,
}

/// Why a plugin could not be loaded or could not finish a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The `.wasm` could not be read or compiled, or does not implement the
    /// `sinkhost:plugin/sink-plugin` world.
    #[error("cannot load plugin {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plugin's `init` returned an error: a configuration error.
    #[error("plugin init failed: {0}")]
    Init(String),
    /// A new instance could not be created (e.g. the instance pool is full).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    /// The plugin trapped (panic, unreachable, out of memory, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin used more CPU time than one call may.
    #[error("plugin exceeded its CPU budget of {0:?}")]
    Deadline(Duration),
}

impl PluginError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Load { .. } => "load",
            PluginError::Init(_) => "init",
            PluginError::Instantiate(_) => "instantiate",
            PluginError::Trap(_) => "trap",
            PluginError::Deadline(_) => "deadline",
        }
    }
}

/// The process-wide engine and the components compiled so far.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    cache: CompileCache,
    compiled: Mutex<HashMap<PathBuf, SinkPluginPre<State>>>,
}

impl Runtime {
    /// Creates the engine with room for `max_instances` live plugin instances
    /// (the sum of the subscriptions' `max_concurrency`, plus slack).
    pub fn new(limits: Limits, max_instances: u32) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Load {
            path: PathBuf::from("<engine>"),
            message: format!("{e:#}"),
        };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(16))
            .total_memories(max_instances.saturating_mul(2))
            .total_tables(max_instances.saturating_mul(8))
            .total_stacks(max_instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(limits.memory_bytes);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_error)?;

        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("sinkhost-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch thread");

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        SinkPlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            cache: CompileCache::from_env(),
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Uses `cache` for compiled plugins instead of the one the environment
    /// names (`SINKHOST_CACHE_DIR`, see [`CompileCache`]).
    pub fn with_compile_cache(mut self, cache: CompileCache) -> Self {
        self.cache = cache;
        self
    }

    /// Compiles (once per path) and pre-instantiates the component at `path`.
    fn load(&self, path: &Path) -> Result<SinkPluginPre<State>, PluginError> {
        if let Some(pre) = self.compiled.lock().expect("compiled lock").get(path) {
            return Ok(pre.clone());
        }
        let load_error = |e: wasmtime::Error| PluginError::Load {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let wasm = std::fs::read(path).map_err(|e| PluginError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let component = self
            .cache
            .component(&self.engine, path, &wasm)
            .map_err(load_error)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(SinkPluginPre::new)
            .map_err(load_error)?;
        self.compiled
            .lock()
            .expect("compiled lock")
            .insert(path.to_owned(), pre.clone());
        Ok(pre)
    }

    /// Drops the compiled component of `path`, so the next [`Runtime::sink`]
    /// reads and compiles the file again (it changed on disk). Sinks made
    /// before keep the component they were made with.
    pub fn forget(&self, path: &Path) {
        self.compiled.lock().expect("compiled lock").remove(path);
    }

    /// Prepares the plugin at `path` for one subscription. Instances are made
    /// on demand; call [`Sink::check`] to initialise one now.
    pub fn sink(&self, spec: SinkSpec) -> Result<Sink, PluginError> {
        let pre = self.load(&spec.plugin)?;
        Ok(Sink {
            pre,
            engine: self.engine.clone(),
            limits: self.limits,
            spec: Arc::new(spec),
            idle: Mutex::new(Vec::new()),
        })
    }
}

/// What a [`Sink`] needs to know about its subscription.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The subscription's name, for logs.
    pub subscription: String,
    /// The `.wasm` file.
    pub plugin: PathBuf,
    /// The JSON handed to `init`.
    pub init_json: String,
    /// Where the plugin's `http.send` goes.
    pub outbound: Outbound,
    /// Values that must never reach a log line, a reject reason or an init
    /// error: what [`Subscription::secrets`](crate::config::Subscription::secrets)
    /// lists. Text the plugin writes is searched for each of them.
    pub secrets: Vec<String>,
}

/// One subscription's plugin: a pool of initialised instances.
pub struct Sink {
    pre: SinkPluginPre<State>,
    engine: Engine,
    limits: Limits,
    spec: Arc<SinkSpec>,
    idle: Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("subscription", &self.spec.subscription)
            .finish()
    }
}

impl Sink {
    /// Creates and initialises one instance, keeping it for the first message:
    /// a plugin whose `init` fails is caught before any consumer starts.
    pub async fn check(&self) -> Result<(), PluginError> {
        let instance = self.instantiate().await?;
        self.idle.lock().expect("idle lock").push(instance);
        Ok(())
    }

    /// Drops the idle instances, so the next deliveries start fresh ones.
    pub fn discard_idle(&self) {
        self.idle.lock().expect("idle lock").clear();
    }

    /// Runs the plugin's `deliver` on `msg` in a pooled instance. A trap or
    /// a blown deadline discards the instance.
    pub async fn deliver(&self, msg: &Message) -> Result<Delivery, PluginError> {
        let pooled = self.idle.lock().expect("idle lock").pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate().await?,
        };
        arm(&mut instance.store);
        let result = instance
            .bindings
            .sinkhost_plugin_sink()
            .call_deliver(&mut instance.store, msg)
            .await;
        instance.store.data_mut().end_call();
        match result {
            Ok(outcome) => {
                let last_http = instance.store.data_mut().last_http.take();
                self.idle.lock().expect("idle lock").push(instance);
                let outcome = match outcome {
                    types::Outcome::Delivered => Outcome::Delivered,
                    types::Outcome::Retry(ms) => Outcome::Retry(ms.map(Duration::from_millis)),
                    types::Outcome::Reject(reason) => {
                        Outcome::Reject(truncate(redact(&reason, &self.spec.secrets), REASON_BYTES))
                    }
                };
                Ok(Delivery { outcome, last_http })
            }
            Err(error) => Err(self.trap(error)),
        }
    }

    async fn instantiate(&self) -> Result<Instance, PluginError> {
        let state = State::new(self.spec.clone(), self.limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.store_limits);
        let cpu = self.limits.cpu_per_call;
        store.epoch_deadline_callback(move |ctx| {
            if ctx.data().cpu_used() >= cpu {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store);
        let bindings =
            self.pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| match self.trap(e) {
                    PluginError::Trap(message) => PluginError::Instantiate(message),
                    other => other,
                })?;
        let init = bindings
            .sinkhost_plugin_sink()
            .call_init(&mut store, &self.spec.init_json)
            .await
            .map_err(|e| self.trap(e))?;
        store.data_mut().end_call();
        // `sinkhost check` prints this and a rejected reload logs it; plugins
        // like to quote the config they refuse.
        init.map_err(|reason| PluginError::Init(redact(&reason, &self.spec.secrets)))?;
        Ok(Instance { store, bindings })
    }

    fn trap(&self, error: wasmtime::Error) -> PluginError {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Deadline(self.limits.cpu_per_call),
            _ => PluginError::Trap(redact(&format!("{error:#}"), &self.spec.secrets)),
        }
    }
}

struct Instance {
    store: Store<State>,
    bindings: SinkPlugin,
}

/// Starts a call's accounting: CPU budget, log budget, deadline.
fn arm(store: &mut Store<State>) {
    store.set_epoch_deadline(1);
    store.data_mut().begin_call();
}

/// The data of one instance's store: WASI (deny-everything), limits, and what
/// the host imports need.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    store_limits: StoreLimits,
    spec: Arc<SinkSpec>,
    limits: Limits,
    call_started: Instant,
    waiting: Duration,
    log_lines: u32,
    log_dropped: u32,
    last_http: Option<String>,
}

impl State {
    fn new(spec: Arc<SinkSpec>, limits: Limits) -> Self {
        State {
            // no preopened dirs, no env, no args, no network, stdio to nowhere
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            store_limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            spec,
            limits,
            call_started: Instant::now(),
            waiting: Duration::ZERO,
            log_lines: 0,
            log_dropped: 0,
            last_http: None,
        }
    }

    fn begin_call(&mut self) {
        self.call_started = Instant::now();
        self.waiting = Duration::ZERO;
        self.log_lines = 0;
        self.log_dropped = 0;
        self.last_http = None;
    }

    fn end_call(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(
                subscription = %self.spec.subscription,
                dropped = self.log_dropped,
                "plugin log lines over the per-call limit were dropped"
            );
        }
    }

    /// Time the current call spent running wasm, not waiting on the host.
    fn cpu_used(&self) -> Duration {
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

impl http::Host for State {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        let started = Instant::now();
        let request = outbound::Request {
            method: method_name(req.method),
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        let result = self.spec.outbound.send(request).await;
        self.waiting += started.elapsed();
        crate::metrics::http_result(&self.spec.subscription, &result);
        // Both name the destination as the subscription may show it.
        self.last_http = Some(match &result {
            Ok(response) => format!("HTTP {} from {}", response.status, response.from),
            Err(error) => format!("HTTP request {error}"),
        });
        match result {
            Ok(response) => Ok(http::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(outbound::HttpError::Timeout { .. }) => Err(http::HttpError::Timeout),
            Err(outbound::HttpError::Connect { target, detail }) => {
                Err(http::HttpError::Connect(format!("{target}: {detail}")))
            }
            Err(outbound::HttpError::Denied(m)) => Err(http::HttpError::Denied(m)),
            Err(outbound::HttpError::Other(m)) => Err(http::HttpError::Other(m)),
        }
    }
}

fn method_name(method: http::Method) -> String {
    match method {
        http::Method::Get => "GET".into(),
        http::Method::Head => "HEAD".into(),
        http::Method::Post => "POST".into(),
        http::Method::Put => "PUT".into(),
        http::Method::Patch => "PATCH".into(),
        http::Method::Delete => "DELETE".into(),
        http::Method::Options => "OPTIONS".into(),
        http::Method::Other(name) => name,
    }
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        if self.log_lines >= self.limits.log_lines_per_call {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = truncate(
            redact(&message, &self.spec.secrets),
            self.limits.log_line_bytes,
        );
        let subscription = self.spec.subscription.as_str();
        match level {
            log::Level::Trace => tracing::trace!(subscription, plugin = true, "{message}"),
            log::Level::Debug => tracing::debug!(subscription, plugin = true, "{message}"),
            log::Level::Info => tracing::info!(subscription, plugin = true, "{message}"),
            log::Level::Warn => tracing::warn!(subscription, plugin = true, "{message}"),
            log::Level::Error => tracing::error!(subscription, plugin = true, "{message}"),
        }
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...[truncated]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(truncate("short".into(), 10), "short");
        assert_eq!(truncate("abcdef".into(), 3), "abc...[truncated]");
        assert_eq!(truncate("éé".into(), 3), "é...[truncated]");
    }
}
