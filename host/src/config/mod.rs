//! config.d: reads the `*.yml` / `*.yaml` files of a directory, expands `${VAR}`
//! from the environment, and validates them into the [`Config`] the rest of the
//! host runs on.
//!
//! Owns the file format (the reference documentation is in `config/raw.rs`), the
//! expansion syntax (`config/expand.rs`) and every check that can be made without
//! NATS or wasmtime: names, subjects, URLs, durations, uniqueness, and that each
//! plugin file exists. It does not connect to NATS and does not compile or run
//! plugins; `sinkhost check` does both on top of [`load`].
//!
//! Every error names the file (the directory as given joined with the file name),
//! the line when one is known, and the dotted key path:
//!
//! ```text
//! config.d/20-mailer.yml:9: subscriptions[0].backoff: invalid duration "2x" (expected e.g. "2s", "500ms", "1h30m")
//! ```
//!
//! [`load`] stops at the first error, in file order.

//!
//! The files: [`model`] (what the rest of the host sees), [`load`] (files ->
//! model, and what spans files), `document` (one document -> model), [`checks`] (the rules for names, subjects,
//! URLs and durations), [`secrets`] (what of a subscription must never be
//! printed), [`redact`] (how text is kept safe), [`search`] (where plugin names
//! resolve), [`source`] (config.d as `run` reloads it), [`error`]; `raw` is
//! the file format, `expand` the `${VAR}` syntax and `lines` finds keys' lines.

mod checks;
mod document;
mod error;
mod expand;
mod lines;
mod load;
mod model;
mod rate_limit;
mod raw;
pub mod redact;
mod search;
mod secrets;
mod source;

pub use error::ConfigError;
pub use load::{load, load_text, stream_name};
pub use model::{
    Breaker, Config, DEFAULT_PLUGIN, History, MAX_DEAD_LETTER_AFTER, Ordering, Origin, PluginRef,
    Storage, StreamConfig, Subscription, Webhook,
};

/// Whether a message on `subject` (no wildcards) is one `filter` takes.
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    checks::subjects_collide(filter, subject)
}
pub use rate_limit::RateLimit;
pub use redact::LogUrl;
pub use search::PluginSearch;
pub use source::ConfigSource;

#[cfg(test)]
pub(crate) mod testing {
    //! A validated subscription for unit tests elsewhere in the host.
    use super::*;

    /// One subscription of the seed's shape (`max_concurrency: 1`), with
    /// `settings` and webhook `headers`.
    pub(crate) fn subscription(
        settings: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Subscription {
        Subscription {
            name: "s".into(),
            subject: "a.>".into(),
            consumer: "c".into(),
            plugin: PluginRef {
                name: DEFAULT_PLUGIN.into(),
                path: "/p/http-webhook.wasm".into(),
            },
            webhook: Webhook {
                url: "https://user:hunter22@Hooks.Example.com:8443/x?y=1".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                log_url: LogUrl::Host,
            },
            settings,
            timeout: model::DEFAULT_TIMEOUT,
            retries: 3,
            backoff: model::DEFAULT_BACKOFF,
            max_concurrency: 1,
            ack_wait: model::DEFAULT_ACK_WAIT,
            ordering: Ordering::None,
            rate_limit: None,
            breaker: Breaker::default(),
            dead_letter_after: model::DEFAULT_DEAD_LETTER_AFTER,
            expanded: Vec::new(),
            origin: Origin {
                file: "config.d/x.yml".into(),
                line: Some(2),
            },
        }
    }
}
