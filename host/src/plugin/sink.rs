//! One subscription's plugin: a pool of initialised instances reused across
//! messages, and one `deliver` call in one of them. A trap or a blown CPU
//! deadline discards the instance that caused it, never the host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::sinkhost::plugin::types;
use super::bindings::{SinkPlugin, SinkPluginPre};
use super::guest_log::marked_cap;
use super::state::State;
use super::{Delivery, Limits, Message, Outcome, PluginError, SinkSpec};
use crate::config::redact::redact;

/// Longest `reject` reason kept, in bytes: it goes into log lines and a
/// dead-letter header, so a plugin must not be able to make either huge.
const REASON_BYTES: usize = 4096;

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
    pub(super) fn new(
        pre: SinkPluginPre<State>,
        engine: Engine,
        limits: Limits,
        spec: Arc<SinkSpec>,
    ) -> Self {
        Sink {
            pre,
            engine,
            limits,
            spec,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Creates and initialises one instance, keeping it for the first message:
    /// a plugin whose `init` fails is caught before any consumer starts.
    pub async fn check(&self) -> Result<(), PluginError> {
        let instance = self.instantiate().await?;
        self.idle.lock().expect("idle lock").push(instance);
        Ok(())
    }

    /// `text` with this subscription's secrets masked, as everything the
    /// plugin or its destination says is shown.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.spec.secrets)
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
                        Outcome::Reject(marked_cap(self.redact(&reason), REASON_BYTES))
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
        // At each epoch tick: stop a call over its budget, else leave the
        // thread to other tasks. Right after coming back from a yield, run
        // one tick first: on a busy host the epoch has moved on meanwhile,
        // and yielding at once again would leave the call no time to run.
        store.epoch_deadline_callback(move |ctx| {
            let state = ctx.data();
            if state.cpu_used() >= cpu {
                Ok(UpdateDeadline::Interrupt)
            } else if state.yields.just_resumed() {
                Ok(UpdateDeadline::Continue(1))
            } else {
                Ok(UpdateDeadline::YieldCustom(1, state.yields.yield_now()))
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
        init.map_err(|reason| PluginError::Init(self.redact(&reason)))?;
        Ok(Instance { store, bindings })
    }

    fn trap(&self, error: wasmtime::Error) -> PluginError {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Deadline(self.limits.cpu_per_call),
            _ => PluginError::Trap(self.redact(&format!("{error:#}"))),
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
