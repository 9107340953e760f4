//! The process-wide wasmtime engine: pooling allocator sized for the
//! instances the process may hold, epoch interruption for the CPU deadline,
//! the linker with WASI (deny-everything) and the host imports, and the
//! components compiled so far (through the compile cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{SinkPlugin, SinkPluginPre};
use super::compile_cache::CompileCache;
use super::sink::Sink;
use super::state::State;
use super::{Limits, PluginError, SinkSpec};

/// How often the engine's epoch advances; the granularity of the CPU deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        Ok(Sink::new(
            pre,
            self.engine.clone(),
            self.limits,
            Arc::new(spec),
        ))
    }
}
