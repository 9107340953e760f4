//! The supervisor: one running entry per subscription, started, stopped and
//! replaced one at a time.
//!
//! An entry (`entry`) is a subscription's fetch loop with its own tokens and
//! tracker of in-flight deliveries, so one subscription can be drained and
//! replaced while the others keep delivering. Stopping an entry is what shutdown does to all of them: stop
//! fetching (the loop returns the messages it fetched but did not start), let
//! in-flight deliveries finish, nak what is still running after a grace.
//!
//! The supervisor applies a [`reload::Plan`] that `reload` worked out and
//! `run` validated; it does not decide what changed and does not deliver.
//! It owns the one plugin [`Runtime`] of the process.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::bus::deadletter::{self, DeadLetterError};
use crate::bus::destination::Destination;
use crate::bus::history::{self, Journal};
use crate::bus::{self, BusError, Placement, Subscriber};
use crate::config::{Config, History, StreamConfig, Subscription};
use crate::ops::metrics;
use crate::ops::server::{Health, Watched};
use crate::plugin::{Runtime, Sink};
use crate::run::entry::{Entry, grace};
use crate::run::prepare::Prepared;
use crate::run::reload::{self, Digest, Plan, Running};

/// How long shutdown waits for the attempt records still queued.
const HISTORY_FLUSH: Duration = Duration::from_secs(2);

/// Why a validated config cannot be applied. Nothing has been stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A stream could not be created, updated or found.
    #[error("{context}: {error}")]
    Stream {
        /// The config entry it was for (`file:line: stream NAME`).
        context: String,
        /// What NATS said.
        error: BusError,
    },
    /// The dead-letter stream could not be created.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
}

/// Everything the process runs.
pub struct Supervisor {
    js: jetstream::Context,
    runtime: Runtime,
    /// Parent of every entry's stop-fetching token: shutdown stops all at once.
    stop: CancellationToken,
    health: Arc<Health>,
    stream: Option<StreamConfig>,
    /// Where the dead-letter streams and KV buckets go ([`bus::ensure_stream`]).
    placement: Placement,
    /// What the attempts streams keep, and for how long (`None`: as long
    /// as the stream they record keeps its messages).
    history: (History, Option<Duration>),
    /// The streams whose dead-letter and attempts streams this client has
    /// made sure of.
    side_streams: BTreeSet<String>,
    /// This client's attempt-history task, once started.
    history_writer: Option<history::Writer>,
    /// The KV buckets, once this client has made sure of them.
    buckets: Option<Buckets>,
    /// In config order.
    entries: Vec<Entry>,
    /// What [`Supervisor::suspend`] stopped, for [`Supervisor::resume`].
    suspended: Vec<(Arc<Subscriber>, Digest)>,
}

impl Supervisor {
    /// Sets up streams and consumers for `prepared` (all of `config`, compiled
    /// with `runtime`) and starts consuming. A NATS error here fails the start.
    pub async fn start(
        js: jetstream::Context,
        runtime: Runtime,
        config: Config,
        prepared: Vec<Prepared>,
        digests: &HashMap<PathBuf, Digest>,
        health: Arc<Health>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut supervisor = Supervisor {
            js,
            runtime,
            stop,
            health,
            stream: None,
            placement: Placement::SINGLE,
            history: (History::default(), None),
            side_streams: BTreeSet::new(),
            history_writer: None,
            buckets: None,
            entries: Vec::new(),
            suspended: Vec::new(),
        };
        supervisor.ensure_stream(config.stream.as_ref()).await?;
        let subscribers = supervisor
            .subscribers(config.stream.as_ref(), prepared)
            .await?;
        // Every consumer is set up before any starts: one that fails fails
        // the start before a single message is taken.
        let mut consumers = Vec::new();
        for subscriber in &subscribers {
            let sub = &subscriber.sub;
            let consumer = bus::ensure_consumer(&supervisor.js, &subscriber.stream, sub)
                .await
                .map_err(|e| anyhow::anyhow!("{}: subscription {}: {e}", sub.origin, sub.name))?;
            consumers.push(consumer);
        }
        for (subscriber, consumer) in subscribers.into_iter().zip(consumers) {
            let digest = digests[&subscriber.sub.plugin.path];
            let entry = Entry::spawn(subscriber, digest, Some(consumer), &supervisor.stop);
            supervisor.entries.push(entry);
        }
        supervisor.stream = config.stream;
        supervisor.publish_health();
        Ok(supervisor)
    }

    /// Placeholder flags for `/healthz` before NATS is reached: every
    /// subscription of `config`, not consuming yet.
    pub fn starting_health(config: &Config) -> Vec<Watched> {
        config
            .subscriptions
            .iter()
            .map(|sub| {
                metrics::consuming(&sub.name, false);
                Watched::starting(&sub.name)
            })
            .collect()
    }

    /// The plugin runtime, to compile a reload's changed plugins.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The plugin files the running subscriptions were compiled from.
    pub fn plugin_files(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .map(|e| e.subscriber.sub.plugin.path.clone())
            .collect()
    }

    /// What changes if `config` (with its plugin files' `digests`) replaces the
    /// running config; refuses a plan the instance pool cannot hold. Forgets
    /// the compiled plugins the plan recompiles.
    pub fn plan(
        &self,
        config: &Config,
        digests: &HashMap<PathBuf, Digest>,
    ) -> Result<Plan, ApplyError> {
        let plan = reload::plan(
            self.entries.iter().map(|e| Running {
                sub: &e.subscriber.sub,
                digest: &e.digest,
                stream: &e.subscriber.stream,
            }),
            config,
            digests,
        );
        for path in &plan.recompile {
            self.runtime.forget(path);
        }
        Ok(plan)
    }

    /// Applies `plan`: sets up streams (a failure here changes nothing), then
    /// stops the removed and restarted subscriptions, waiting for their
    /// in-flight deliveries, then starts `prepared` (the added and restarted
    /// ones). Unchanged subscriptions are not touched.
    pub async fn apply(
        &mut self,
        config: Config,
        plan: &Plan,
        prepared: Vec<Prepared>,
        digests: &HashMap<PathBuf, Digest>,
    ) -> Result<(), ApplyError> {
        if config.stream != self.stream {
            self.ensure_stream(config.stream.as_ref()).await?;
            // A new `history` or `history_max_age` applies to the running
            // subscriptions' attempts streams too.
            let running: BTreeSet<String> = self
                .entries
                .iter()
                .map(|e| e.subscriber.stream.clone())
                .collect();
            for stream in running {
                self.ensure_side_streams(&stream).await?;
            }
        }
        let subscribers = self.subscribers(config.stream.as_ref(), prepared).await?;

        let stopping: BTreeSet<&str> = plan.stopping().collect();
        let (stop, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| stopping.contains(e.subscriber.sub.name.as_str()));
        self.entries = keep;
        futures::future::join_all(stop.into_iter().map(|entry| {
            let grace = grace(std::iter::once(&entry.subscriber.sub));
            entry.stop(grace, true)
        }))
        .await;

        for subscriber in subscribers {
            let digest = digests[&subscriber.sub.plugin.path];
            let entry = Entry::spawn(subscriber, digest, None, &self.stop);
            self.entries.push(entry);
        }
        self.entries.sort_by_key(|e| {
            config
                .subscriptions
                .iter()
                .position(|s| s.name == e.subscriber.sub.name)
        });
        self.stream = config.stream;
        self.publish_health();
        Ok(())
    }

    /// Stops every subscription: stop fetching, let in-flight deliveries
    /// finish for up to the longest `timeout` + 2 s (never past the shortest
    /// `ack_wait`), nak the rest; then write what the attempt history still
    /// has queued.
    pub async fn shutdown(self) {
        let grace = grace(self.entries.iter().map(|e| &e.subscriber.sub));
        self.stop.cancel();
        futures::future::join_all(self.entries.into_iter().map(|e| e.stop(grace, false))).await;
        drop(self.suspended);
        if let Some(writer) = self.history_writer {
            writer.flush(HISTORY_FLUSH).await;
        }
    }

    /// Stops every subscription at once, for a NATS client whose connection
    /// task has ended: nothing they would ack or nak arrives any more, so
    /// in-flight deliveries are abandoned at once (JetStream redelivers them
    /// after `ack_wait`).
    pub async fn suspend(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        self.suspended = entries
            .iter()
            .map(|e| (e.subscriber.clone(), e.digest))
            .collect();
        futures::future::join_all(entries.into_iter().map(|e| e.stop(Duration::ZERO, false))).await;
        self.publish_health();
    }

    /// Starts what [`suspend`](Self::suspend) stopped again on a new client:
    /// streams, dead-letter streams and consumers are set up anew (a failure
    /// is logged, and each consumer is retried until it works).
    pub async fn resume(&mut self, js: jetstream::Context) {
        self.js = js;
        self.side_streams.clear();
        self.history_writer = None;
        self.buckets = None;
        let stream = self.stream.clone();
        if let Err(e) = self.ensure_stream(stream.as_ref()).await {
            tracing::error!(error = %e, "cannot set up the stream after reconnecting; consumers retry");
        }
        self.ensure_buckets().await;
        for (old, digest) in std::mem::take(&mut self.suspended) {
            if let Err(e) = self.ensure_side_streams(&old.stream).await {
                tracing::error!(error = %e, "cannot set up the dead-letter stream after reconnecting");
            }
            let subscriber = self.subscriber(old.sub.clone(), old.stream.clone(), old.sink.clone());
            let entry = Entry::spawn(subscriber, digest, None, &self.stop);
            self.entries.push(entry);
        }
        self.publish_health();
    }

    /// Creates or reconciles config.d's stream, and learns from it where
    /// sinkhost's own streams and buckets go (without a `stream:` block: a
    /// single copy on file) and what the attempts streams keep.
    async fn ensure_stream(&mut self, stream: Option<&StreamConfig>) -> Result<(), ApplyError> {
        let history = match stream {
            Some(s) => (s.history, Some(s.history_max_age.unwrap_or(s.max_age))),
            None => (History::default(), None),
        };
        if history != self.history {
            // The attempts streams are made sure of again, with the new age.
            self.side_streams.clear();
            self.history = history;
        }
        if let Some(writer) = &self.history_writer {
            writer.keep(history.0);
        }
        self.placement = match stream {
            Some(stream) => bus::ensure_stream(&self.js, stream)
                .await
                .map_err(|error| ApplyError::Stream {
                    context: format!("{}: stream {}", stream.origin, stream.name),
                    error,
                })?,
            None => Placement::SINGLE,
        };
        Ok(())
    }

    /// Finds each subscription's stream and makes sure its dead-letter stream
    /// exists.
    async fn subscribers(
        &mut self,
        stream: Option<&StreamConfig>,
        prepared: Vec<Prepared>,
    ) -> Result<Vec<Arc<Subscriber>>, ApplyError> {
        self.ensure_buckets().await;
        let mut subscribers = Vec::new();
        for Prepared { sub, sink } in prepared {
            let name =
                match stream {
                    Some(stream) => stream.name.clone(),
                    None => bus::find_stream(&self.js, &sub).await.map_err(|error| {
                        ApplyError::Stream {
                            context: format!("{}: subscription {}", sub.origin, sub.name),
                            error,
                        }
                    })?,
                };
            self.ensure_side_streams(&name).await?;
            subscribers.push(self.subscriber(sub, name, sink));
        }
        Ok(subscribers)
    }

    /// Creates `<stream>_dlq` and `<stream>_attempts` if this client has
    /// not made sure of them yet. Without its attempts stream the host runs
    /// on; the records it cannot write are counted.
    async fn ensure_side_streams(&mut self, stream: &str) -> Result<(), DeadLetterError> {
        if self.side_streams.contains(stream) {
            return Ok(());
        }
        deadletter::ensure_stream(&self.js, stream, self.placement).await?;
        let (kept, max_age) = self.history;
        if kept != History::Off {
            let made = async {
                let age = match max_age {
                    Some(age) => age,
                    None => bus::max_age(&self.js, stream).await?,
                };
                history::ensure_stream(&self.js, stream, self.placement, age).await
            }
            .await;
            if let Err(e) = made {
                tracing::warn!(error = %e, "no attempt history: its records are dropped and counted");
            }
        }
        self.side_streams.insert(stream.to_owned());
        Ok(())
    }

    /// Creates the attempt records' and destination states' buckets if this
    /// client has not made sure of them yet (without them the host runs on,
    /// as it did before they existed).
    async fn ensure_buckets(&mut self) {
        if self.buckets.is_none() {
            self.buckets = Some(Buckets {
                attempts: bus::attempts::open(&self.js, self.placement).await,
                destinations: bus::destination::open(&self.js, self.placement).await,
            });
        }
    }

    /// A subscription on this supervisor's client, not consuming yet.
    fn subscriber(
        &mut self,
        sub: Subscription,
        stream: String,
        sink: Arc<Sink>,
    ) -> Arc<Subscriber> {
        let (js, kept) = (&self.js, self.history.0);
        let writer = self
            .history_writer
            .get_or_insert_with(|| history::Writer::start(js.clone(), kept));
        let history = Journal::new(writer, &stream, &sub.name);
        let buckets = self.buckets.as_ref();
        let destinations = buckets.and_then(|b| b.destinations.clone());
        Arc::new(Subscriber {
            destination: Destination::new(&sub, &stream, self.js.clone(), destinations),
            attempts: buckets.and_then(|b| b.attempts.clone()),
            history,
            stream,
            sink,
            js: self.js.clone(),
            consuming: Arc::new(AtomicBool::new(false)),
            metrics: metrics::PerSubscription::new(&sub.name),
            sub,
        })
    }

    fn publish_health(&self) {
        self.health.set_subscriptions(
            self.entries
                .iter()
                .map(|e| Watched {
                    name: e.subscriber.sub.name.clone(),
                    consuming: e.subscriber.consuming.clone(),
                    destination: e.subscriber.destination.health(),
                })
                .collect(),
        );
    }
}

/// The KV buckets of a client: `None` where one could not be had.
struct Buckets {
    attempts: Option<jetstream::kv::Store>,
    destinations: Option<jetstream::kv::Store>,
}
