//! Stream and consumer setup: the main stream created or reconciled with
//! config.d, the seed format's stream found by subject, and each
//! subscription's durable pull consumer created or updated and then read back,
//! so a server that kept an old setting fails the start loudly. Comparisons are
//! typed ([`Drift`]); only messages format the values.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode, stream};

use crate::config::{Storage, StreamConfig, Subscription};

/// Where sinkhost's own streams (`<stream>_dlq`) and KV buckets live: on the
/// main stream's storage, with its replicas unless config.d says
/// `dead_letter_replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// File or memory.
    pub(crate) storage: stream::StorageType,
    /// Copies on a cluster.
    pub(crate) replicas: usize,
}

impl Placement {
    /// A single server's default: file storage, one copy.
    pub(crate) const SINGLE: Placement = Placement {
        storage: stream::StorageType::File,
        replicas: 1,
    };
}

/// The KV bucket `bucket` (one value per key, kept `max_age`; zero = for
/// ever): the existing one, else created (another host may create it at the
/// same time). `None`, logged, when NATS refuses: the callers work without it.
pub(crate) async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: std::time::Duration,
    placement: Placement,
) -> Option<jetstream::kv::Store> {
    let config = jetstream::kv::Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history: 1,
        max_age,
        storage: placement.storage,
        num_replicas: placement.replicas,
        ..Default::default()
    };
    if let Ok(store) = js.get_key_value(bucket).await {
        return Some(store);
    }
    let created = js.create_key_value(config).await;
    match created {
        Ok(store) => Some(store),
        Err(e) => match js.get_key_value(bucket).await {
            Ok(store) => Some(store),
            Err(_) => {
                tracing::warn!(bucket, error = %e, "cannot create the KV bucket; working without it");
                None
            }
        },
    }
}

/// One of sinkhost's own streams (dead letters, attempts): created as
/// `wanted` when missing; an existing one is brought to `wanted`'s replicas
/// and, with `with_age`, its `max_age`. The rest of an existing one's
/// config is the operator's. The error is NATS's, said once.
pub(crate) async fn ensure_own_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
    with_age: bool,
) -> Result<(), String> {
    let (replicas, max_age) = (wanted.num_replicas, wanted.max_age);
    let mut existing = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| e.to_string())?;
    let current = existing
        .info()
        .await
        .map_err(|e| e.to_string())?
        .config
        .clone();
    let age_differs = with_age && current.max_age != max_age;
    if current.num_replicas == replicas && !age_differs {
        return Ok(());
    }
    let (name, from) = (current.name.clone(), current.num_replicas);
    let max_age = if with_age { max_age } else { current.max_age };
    js.update_stream(stream::Config {
        num_replicas: replicas,
        max_age,
        ..current
    })
    .await
    .map_err(|e| format!("replicas {from} -> {replicas}, max_age {max_age:?}: {e}"))?;
    tracing::info!(stream = %name, replicas, max_age = ?max_age, "updated sinkhost's own stream");
    Ok(())
}

/// Why the bus could not set up a stream or consumer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BusError {
    /// A NATS request failed.
    #[error("{what}: {message}")]
    Nats {
        /// What was being done.
        what: String,
        /// What NATS said.
        message: String,
    },
    /// The existing stream differs in a setting NATS cannot change.
    #[error(
        "stream {stream} exists with {field} {current}, config.d wants {wanted}; NATS cannot change {field} in place (delete or migrate the stream)"
    )]
    StreamImmutable {
        /// The stream.
        stream: String,
        /// The setting.
        field: &'static str,
        /// Its current value.
        current: String,
        /// The configured value.
        wanted: String,
    },
    /// No stream, or more than one, holds a subscription's subject.
    #[error("subscription {subscription}: {message}; add a `stream:` block to config.d")]
    NoStream {
        /// The subscription.
        subscription: String,
        /// What was found.
        message: String,
    },
    /// The server kept a consumer setting different from the config.
    #[error(
        "consumer {consumer}: {field} is {current} on the server but {wanted} in config.d; the server refused to update it"
    )]
    ConsumerDrift {
        /// The consumer.
        consumer: String,
        /// The setting.
        field: &'static str,
        /// The server's value.
        current: String,
        /// The configured value.
        wanted: String,
    },
}

fn nats_error(what: impl Into<String>) -> impl FnOnce(String) -> BusError {
    let what = what.into();
    move |message| BusError::Nats { what, message }
}

/// Creates the stream when missing, or updates what NATS allows to change
/// (subjects, max_age, replicas when config.d names them); a difference in
/// storage or retention is an error. Returns where sinkhost's own streams and
/// buckets go: the stream's storage and replicas as they now are, or
/// `dead_letter_replicas`.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &StreamConfig,
) -> Result<Placement, BusError> {
    let storage = storage_type(cfg.storage);
    let wanted = stream::Config {
        name: cfg.name.clone(),
        subjects: cfg.subjects.clone(),
        max_age: cfg.max_age,
        storage,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: cfg.replicas.unwrap_or(1),
        ..Default::default()
    };
    let placement = |replicas: usize| Placement {
        storage,
        replicas: cfg.dead_letter_replicas.unwrap_or(replicas),
    };
    let mut existing = match js.get_stream(&cfg.name).await {
        Ok(existing) => existing,
        Err(e) if is_not_found(e.kind()) => {
            let replicas = wanted.num_replicas;
            js.create_stream(wanted).await.map_err(|e| {
                nats_error(format!(
                    "creating stream {} (replicas {replicas})",
                    cfg.name
                ))(e.to_string())
            })?;
            tracing::info!(stream = %cfg.name, replicas, "created stream");
            return Ok(placement(replicas));
        }
        Err(e) => {
            return Err(nats_error(format!("looking up stream {}", cfg.name))(
                e.to_string(),
            ));
        }
    };
    let current = existing
        .info()
        .await
        .map_err(|e| nats_error(format!("reading stream {}", cfg.name))(e.to_string()))?
        .config
        .clone();
    let immutable = [
        drift("storage", &current.storage, &wanted.storage),
        drift("retention", &current.retention, &wanted.retention),
    ];
    if let Some(Drift {
        field,
        current,
        wanted,
    }) = immutable.into_iter().flatten().next()
    {
        return Err(BusError::StreamImmutable {
            stream: cfg.name.clone(),
            field,
            current: current.to_lowercase(),
            wanted: wanted.to_lowercase(),
        });
    }
    let replicas = cfg.replicas.unwrap_or(current.num_replicas);
    if current.subjects != wanted.subjects
        || current.max_age != wanted.max_age
        || current.num_replicas != replicas
    {
        let from = current.num_replicas;
        let updated = stream::Config {
            subjects: wanted.subjects,
            max_age: wanted.max_age,
            num_replicas: replicas,
            ..current
        };
        js.update_stream(updated).await.map_err(|e| {
            nats_error(format!(
                "updating stream {} (replicas {from} -> {replicas})",
                cfg.name
            ))(e.to_string())
        })?;
        tracing::info!(stream = %cfg.name, replicas, "updated stream subjects/max_age/replicas to match config.d");
    }
    Ok(placement(replicas))
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The JetStream storage type for a configured storage.
fn storage_type(storage: Storage) -> stream::StorageType {
    match storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// How long `stream` keeps a message (zero: forever).
pub(crate) async fn max_age(js: &jetstream::Context, stream: &str) -> Result<Duration, String> {
    let mut found = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("stream {stream}: {e}"))?;
    let info = found
        .info()
        .await
        .map_err(|e| format!("stream {stream}: {e}"))?;
    Ok(info.config.max_age)
}

/// Finds the one stream that holds `sub`'s subject, for config.d without a
/// `stream:` block (the seed's format). Dead-letter and attempts streams do not count.
pub(crate) async fn find_stream(
    js: &jetstream::Context,
    sub: &Subscription,
) -> Result<String, BusError> {
    #[derive(serde::Deserialize)]
    struct Names {
        streams: Option<Vec<String>>,
    }
    let request = serde_json::json!({ "subject": sub.subject });
    let response: jetstream::response::Response<Names> = js
        .request("STREAM.NAMES", &request)
        .await
        .map_err(|e| nats_error("listing streams")(e.to_string()))?;
    let names: Vec<String> = match response {
        jetstream::response::Response::Ok(names) => names.streams.unwrap_or_default(),
        jetstream::response::Response::Err { error } => {
            return Err(nats_error("listing streams")(error.to_string()));
        }
    }
    .into_iter()
    .filter(|name| !name.ends_with("_dlq") && !name.ends_with("_attempts"))
    .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(BusError::NoStream {
            subscription: sub.name.clone(),
            message: format!("no stream holds subject {:?}", sub.subject),
        }),
        many => Err(BusError::NoStream {
            subscription: sub.name.clone(),
            message: format!(
                "subject {:?} is in several streams ({})",
                sub.subject,
                many.join(", ")
            ),
        }),
    }
}

/// The consumer configuration a subscription asks for.
///
/// `max_deliver` is unlimited on purpose: the host counts attempts itself and
/// dead-letters at `retries + 1`. With a server-side limit, a message whose
/// last attempt was cut short by a crash (or whose dead-letter write failed)
/// would never be redelivered and so be dropped without a trace.
pub(crate) fn consumer_config(sub: &Subscription) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(sub.consumer.clone()),
        description: Some(format!("sinkhost subscription {}", sub.name)),
        filter_subject: sub.subject.clone(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: sub.ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(sub.max_concurrency).unwrap_or(i64::MAX),
        backoff: Vec::new(),
        ..Default::default()
    }
}

/// Creates the durable consumer or updates it to match the config. The server
/// refuses changes it cannot make (e.g. deliver policy); the settings that
/// matter are then read back, so a consumer that kept an old value fails loudly.
pub(crate) async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
    sub: &Subscription,
) -> Result<PullConsumer, BusError> {
    let wanted = consumer_config(sub);
    let what = format!(
        "creating or updating consumer {} on stream {stream}",
        sub.consumer
    );
    let stream_handle = js
        .get_stream(stream)
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?;
    let mut consumer: PullConsumer = stream_handle
        .create_consumer(wanted.clone())
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?;
    let got = consumer
        .info()
        .await
        .map_err(|e| nats_error(what.clone())(e.to_string()))?
        .config
        .clone();
    if let Some(Drift {
        field,
        current,
        wanted,
    }) = consumer_drift(&got, &wanted)
    {
        return Err(BusError::ConsumerDrift {
            consumer: sub.consumer.clone(),
            field,
            current,
            wanted,
        });
    }
    Ok(consumer)
}

/// A setting the server holds differently from config.d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drift {
    /// The setting, as JetStream names it.
    pub field: &'static str,
    /// The server's value.
    pub current: String,
    /// The configured value.
    pub wanted: String,
}

/// `Some` when `current` differs from `wanted`.
fn drift<T: PartialEq + fmt::Debug>(field: &'static str, current: &T, wanted: &T) -> Option<Drift> {
    (current != wanted).then(|| Drift {
        field,
        current: format!("{current:?}"),
        wanted: format!("{wanted:?}"),
    })
}

/// The first consumer setting that matters on which the server's consumer
/// (`got`) differs from what the subscription asked for.
fn consumer_drift(got: &consumer::Config, wanted: &consumer::pull::Config) -> Option<Drift> {
    [
        drift(
            "filter_subject",
            &got.filter_subject,
            &wanted.filter_subject,
        ),
        drift("ack_wait", &got.ack_wait, &wanted.ack_wait),
        drift("max_deliver", &got.max_deliver, &wanted.max_deliver),
        drift(
            "max_ack_pending",
            &got.max_ack_pending,
            &wanted.max_ack_pending,
        ),
        drift("backoff", &got.backoff, &wanted.backoff),
    ]
    .into_iter()
    .flatten()
    .next()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::testing::subscription;

    #[test]
    fn a_subscription_asks_for_explicit_acks_and_unlimited_deliveries() {
        let sub = subscription(serde_json::json!({}), &[]);
        let config = consumer_config(&sub);
        assert_eq!(config.durable_name.as_deref(), Some("c"));
        assert_eq!(config.filter_subject, "a.>");
        assert_eq!(config.ack_policy, AckPolicy::Explicit);
        assert_eq!(config.deliver_policy, DeliverPolicy::All);
        assert_eq!(config.ack_wait, Duration::from_secs(120));
        assert_eq!(config.max_deliver, -1, "the host counts attempts itself");
        assert_eq!(config.max_ack_pending, 1, "max_concurrency");
        assert!(config.backoff.is_empty(), "BackOff would replace AckWait");
    }

    #[test]
    fn the_first_differing_consumer_setting_is_named() {
        let sub = subscription(serde_json::json!({}), &[]);
        let wanted = consumer_config(&sub);
        let mut got = consumer::Config {
            filter_subject: wanted.filter_subject.clone(),
            ack_wait: wanted.ack_wait,
            max_deliver: wanted.max_deliver,
            max_ack_pending: wanted.max_ack_pending,
            ..Default::default()
        };
        assert_eq!(consumer_drift(&got, &wanted), None);
        got.max_ack_pending = 20;
        got.backoff = vec![Duration::from_secs(2)];
        assert_eq!(
            consumer_drift(&got, &wanted),
            Some(Drift {
                field: "max_ack_pending",
                current: "20".into(),
                wanted: "1".into()
            })
        );
        got.max_ack_pending = 1;
        assert_eq!(
            consumer_drift(&got, &wanted).map(|d| (d.field, d.current)),
            Some(("backoff", "[2s]".into()))
        );
    }

    #[test]
    fn storage_and_retention_differences_are_typed() {
        assert_eq!(
            drift(
                "storage",
                &stream::StorageType::Memory,
                &stream::StorageType::File
            )
            .map(|d| (d.current.to_lowercase(), d.wanted.to_lowercase())),
            Some(("memory".into(), "file".into()))
        );
        assert_eq!(
            drift(
                "storage",
                &stream::StorageType::File,
                &stream::StorageType::File
            ),
            None
        );
    }
}
