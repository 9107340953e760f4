//! The config.d file format, exactly as written: these serde types mirror the
//! YAML, and their doc comments are the reference documentation of every key.
//!
//! Nothing here is checked beyond YAML types; the parent module turns a
//! [`RawFile`] into the types the rest of the host sees. Unknown keys are errors
//! (`deny_unknown_fields`), so a typo never silently falls back to a default.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{History, LogUrl, Ordering, Storage};

/// One `config.d/*.yml` file. Both keys are optional; a file may hold either or both.
///
/// ```yaml
/// stream: {...}          # at most once across config.d
/// subscriptions: [...]
/// ```
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `stream:` and/or `subscriptions:`"
)]
pub(crate) struct RawFile {
    /// ```yaml
    /// stream:
    ///   name: hns_ticketing_events
    ///   subjects: [ticket.>, order.>, mail.>, stripe.>]
    ///   max_age: 72h
    ///   storage: file
    /// ```
    /// The JetStream stream the host creates or updates. At most one `stream:`
    /// across all of config.d. Optional: without it the stream must already exist
    /// (the seed's format).
    pub(crate) stream: Option<RawStream>,

    /// ```yaml
    /// subscriptions:
    ///   - name: stripe-drupal
    ///     ...
    /// ```
    /// A list; subscriptions of all files add up. `subscriptions:` with nothing
    /// after it is an empty list.
    pub(crate) subscriptions: Option<Vec<RawSubscription>>,
}

/// The `stream:` block.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a stream mapping (name, subjects, max_age, storage, replicas, dead_letter_replicas, history, history_max_age)"
)]
pub(crate) struct RawStream {
    /// `name: hns_ticketing_events` — required. No whitespace, `.`, `*`, `>`, `/`
    /// or `\`. The dead-letter stream is named `<name>_dlq`.
    pub(crate) name: String,

    /// `subjects: [ticket.>, order.>]` — required, at least one. Valid NATS
    /// subjects; `*` and `>` wildcards allowed. Every subscription's `subject`
    /// must fall (at least partly) inside one of them.
    pub(crate) subjects: Vec<String>,

    /// `max_age: 72h` — optional, default `0` (keep messages forever, within the
    /// stream's other limits). How long JetStream keeps a message for replay.
    pub(crate) max_age: Option<String>,

    /// `storage: file` — optional, `file` (default, survives a server restart) or
    /// `memory`.
    pub(crate) storage: Option<Storage>,

    /// `replicas: 3` — optional, 1 to 5: copies of each message on a NATS
    /// cluster. Applied on create and reconciled; unset, an existing stream
    /// keeps its own (created with 1).
    pub(crate) replicas: Option<usize>,

    /// `dead_letter_replicas: 3` — optional, 1 to 5: the replicas of
    /// `<name>_dlq` and of sinkhost's KV buckets; default: the stream's.
    pub(crate) dead_letter_replicas: Option<usize>,

    /// `history: all` — optional: which delivery attempts `<name>_attempts`
    /// keeps for `sinkhost trace`. `failures` (default): every attempt of a
    /// message not delivered at its first try, and every dead letter; `all`:
    /// first-try successes too (one more stored message per message: about
    /// 15% of the drain rate on a small machine); `off`: none (no stream is
    /// created).
    pub(crate) history: Option<History>,

    /// `history_max_age: 24h` — optional: how long `<name>_attempts` keeps a
    /// record; default the stream's `max_age`.
    pub(crate) history_max_age: Option<String>,
}

/// One entry of `subscriptions:`. The seed's format (no `plugin:`, no `settings:`)
/// is a valid subscription.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a subscription mapping (name, subject, consumer, webhook, ...)"
)]
pub(crate) struct RawSubscription {
    /// `name: stripe-drupal` — required, unique across config.d, letters, digits,
    /// `-` and `_` only. Labels metrics and logs; dead letters go to
    /// `dlq.<name>`.
    pub(crate) name: String,

    /// `subject: "stripe.drupal"` — required NATS subject filter; `*` matches one
    /// token, a final `>` matches one or more (`">"` = everything in the stream).
    pub(crate) subject: String,

    /// `consumer: stripe-drupal-consumer` — required, unique: the durable
    /// JetStream consumer's name. No whitespace, `.`, `*`, `>`, `/` or `\`.
    /// Several sinkhost processes with the same consumer share its messages.
    pub(crate) consumer: String,

    /// `plugin: drupal-stripe` — optional, default `http-webhook`. A built-in name
    /// (no `/`, no `.wasm`: found as `<name>.wasm` in `SINKHOST_PLUGIN_DIR`, then
    /// in `plugins/` next to the sinkhost binary) or a path to a `.wasm` component,
    /// relative to this file's directory: `plugin: ./plugins/my-sink.wasm`.
    pub(crate) plugin: Option<String>,

    /// ```yaml
    /// webhook:
    ///   url: "${DRUPAL_STRIPE_WEBHOOK_URL}"
    ///   headers:
    ///     Authorization: "Bearer ${DRUPAL_WEBHOOK_SECRET}"
    /// ```
    /// Required. Handed to the plugin, which decides what to send; the host only
    /// lets the plugin reach `url`'s host (plus `settings.allow_hosts`).
    pub(crate) webhook: RawWebhook,

    /// ```yaml
    /// settings:
    ///   signing_secret: "${STRIPE_SIGNING_SECRET}"
    ///   reject_status: [400, 404, 422]
    ///   allow_hosts: [hooks.example.com]
    /// ```
    /// Optional mapping, default `{}`: plugin-specific, handed to the plugin as
    /// JSON. The host reads one key itself: `allow_hosts`, further hosts the
    /// plugin may call (`host` = any port, `host:port` = that port only). Strings
    /// and numbers under keys containing `secret`, `key`, `token` or `password`,
    /// and every value that came from `${VAR}`, are redacted from what the
    /// plugin logs or reports.
    pub(crate) settings: Option<serde_json::Value>,

    /// `timeout: "15s"` — optional, default `15s`, greater than 0. Deadline of one
    /// HTTP call the plugin makes. Durations: `500ms`, `15s`, `2m`, `1h30m`, `72h`.
    pub(crate) timeout: Option<String>,

    /// `retries: 3` — optional, default 3. Attempts after the first: a message is
    /// tried at most `retries + 1` times, then dead-lettered.
    pub(crate) retries: Option<u32>,

    /// `backoff: "2s"` — optional, default `2s`. Delay before retry n is
    /// `backoff * 2^(n-1)` (2s, 4s, 8s, ...) unless the plugin asks for another
    /// (e.g. from `Retry-After`).
    pub(crate) backoff: Option<String>,

    /// `max_concurrency: 50` — optional, default 50, at least 1. Deliveries in
    /// flight at once for this subscription (the consumer's `MaxAckPending`).
    pub(crate) max_concurrency: Option<usize>,

    /// `ack_wait: "120s"` — optional, default `120s`, must exceed `timeout`. How
    /// long JetStream waits for an ack before redelivering.
    pub(crate) ack_wait: Option<String>,

    /// `ordering: per-subject` — optional, `none` (default: messages run in
    /// parallel, a retry may let later ones overtake) or `per-subject`: a message
    /// starts only after every earlier message of its exact subject was delivered
    /// or dead-lettered; different subjects still run in parallel up to
    /// `max_concurrency`. Retries of an ordered message wait in the host (holding
    /// back its subject) instead of going back to the stream.
    pub(crate) ordering: Option<Ordering>,

    /// `rate_limit: "200/s"` — optional, default unlimited. At most this many
    /// delivery attempts start per second (`/s`), minute (`/m`) or hour (`/h`);
    /// the count is a whole number of at least 1. Bursts up to one second's worth
    /// (at least 1) after an idle spell. Retries take a slot like first attempts.
    pub(crate) rate_limit: Option<String>,

    /// ```yaml
    /// breaker:
    ///   failures: 5
    ///   probe_interval: 1s
    ///   max_probe_interval: 60s
    /// ```
    /// Optional, every key optional. The destination's circuit breaker: after
    /// `failures` consecutive destination failures (an HTTP 5xx, 408 or 429, a
    /// timeout, a refused or broken connection) the subscription stops starting
    /// deliveries and holds what it fetched, spending no attempts; one message
    /// probes the destination after `probe_interval`, then at doubling intervals
    /// up to `max_probe_interval` (a longer `Retry-After` wins). The first
    /// success resumes delivery, ramping back up to `max_concurrency`.
    pub(crate) breaker: Option<RawBreaker>,

    /// `dead_letter_after: 24h` — optional, default `24h` (or half the stream's
    /// `max_age` if that is shorter), at most `168h`. A message not delivered
    /// this long after it was published is dead-lettered at its next failure,
    /// or while it is held during an outage, whatever attempts it has left.
    /// Must be shorter than the stream's `max_age`, which would drop it.
    pub(crate) dead_letter_after: Option<String>,
}

/// The `breaker:` block of a subscription.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a breaker mapping (failures, probe_interval, max_probe_interval)"
)]
pub(crate) struct RawBreaker {
    /// `failures: 5` — optional, default 5. Consecutive destination failures
    /// that open the breaker; `0` turns it off (each message then spends its
    /// own retries, as in the seed). A message's last attempt also opens it
    /// when every attempt of that message was part of the run of failures.
    pub(crate) failures: Option<u32>,

    /// `probe_interval: 1s` — optional, default `1s`, greater than 0. The wait
    /// before the first probe; it doubles after each failed probe.
    pub(crate) probe_interval: Option<String>,

    /// `max_probe_interval: 60s` — optional, default `60s`, at least
    /// `probe_interval`. The longest wait between probes.
    pub(crate) max_probe_interval: Option<String>,
}

/// The `webhook:` block of a subscription.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a webhook mapping (url, headers, log_url)"
)]
pub(crate) struct RawWebhook {
    /// `url: "https://shop.example.com/stripe-webhook"` — required, an absolute
    /// `http://` or `https://` URL.
    pub(crate) url: String,

    /// ```yaml
    /// headers:
    ///   Authorization: "Bearer ${TOKEN}"
    ///   X-API-Key: "${MAILER_API_KEY}"
    /// ```
    /// Optional, header name -> value. Values are treated as secrets (never logged).
    pub(crate) headers: Option<BTreeMap<String, String>>,

    /// `log_url: full` — optional, `host` (default) or `full`. What of `url` the
    /// host may print in logs, dead letters (`Sinkhost-Last-Error`), `dlq list`
    /// and `check`: by default only `scheme://host:port/...`, because for many
    /// destinations (Slack, Discord, Teams, `?api_key=`) the URL itself is the
    /// credential. `full` is for a URL that holds no secret: its path, query
    /// and fragment are shown (a password in it never is).
    pub(crate) log_url: Option<LogUrl>,
}
