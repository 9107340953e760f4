//! The process-wide wasmtime engine: instances allocated as they are needed
//! with memories reserved by what they use, epoch interruption for the CPU
//! deadline, the linker with WASI (deny-everything) and the host imports, and
//! the components compiled so far (through the compile cache).
//!
//! Address space is what limits a host with many subscriptions, not memory:
//! wasmtime's defaults reserve 4 GiB + 32 MiB guard per linear memory, and
//! a pooling allocator reserves that for every slot up front (~8 GiB per
//! instance, 122 TB for 200 subscriptions of `max_concurrency: 50`). Here a
//! memory reserves its initial size plus [`GROWTH`] (moving if it outgrows
//! that, never past [`Limits::memory_bytes`]), so an idle subscription's one
//! instance costs ~20 MiB of address space and a sink's pool grows with its
//! concurrency in use. Instances are reused by [`Sink`], so allocating them
//! on demand costs nothing per delivery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy};

use super::bindings::{SinkPlugin, SinkPluginPre};
use super::compile_cache::CompileCache;
use super::sink::Sink;
use super::state::State;
use super::{Limits, PluginError, SinkSpec};

/// How often the engine's epoch advances; the granularity of the CPU deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Address space a linear memory reserves beyond its current size, to grow
/// into without moving. Growing past it moves the memory (a copy): 16 MiB
/// keeps a plugin that grows to the 128 MiB cap 1 MiB at a time at 8 moves,
/// far inside its CPU budget (4 MiB made it 32 and ran out of the budget
/// first), and an idle subscription's one instance at ~20 MiB of address
/// space, of which only what the plugin touched is memory.
const GROWTH: u64 = 16 << 20;

/// Unmapped bytes after a linear memory: lets one bounds check cover nearby
/// offsets.
const GUARD: u64 = 64 << 10;

/// The process-wide engine and the components compiled so far.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    cache: CompileCache,
    compiled: Mutex<HashMap<PathBuf, SinkPluginPre<State>>>,
}

impl Runtime {
    /// Creates the engine. Instances are allocated as sinks need them, each
    /// limited by `limits`.
    pub fn new(limits: Limits) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Load {
            path: PathBuf::from("<engine>"),
            message: format!("{e:#}"),
        };
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::OnDemand)
            .memory_reservation(0)
            .memory_reservation_for_growth(GROWTH)
            .memory_guard_size(GUARD)
            .guard_before_linear_memory(false);
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
        Ok(Sink::new(
            pre,
            self.engine.clone(),
            self.limits,
            Arc::new(spec),
        ))
    }
}
