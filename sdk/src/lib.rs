//! Write [sinkhost](https://example.invalid/sinkhost) sink plugins in Rust.
//!
//! A sink plugin is a WebAssembly component that decides what a destination
//! receives for each JetStream message. The host owns consuming, retries,
//! dead letters and the HTTP client; the plugin implements [`Sink`]: build its
//! state once from the [`Config`] in [`Sink::init`], then turn each
//! [`Message`] into an [`Outcome`] in [`Sink::deliver`], usually by sending
//! one request with [`http::send`]. [`export_sink!`] wires the type to the
//! component's exports. Depend on this crate alone, not on `wit-bindgen`.
//!
//! # Getting the crate
//!
//! It is on no registry. A release tarball ships it in `share/sinkhost/`
//! (`sinkhost-sdk/`, the `sinkhost-trace-context/` crate it uses and the
//! `wit/` it is built from), and `sinkhost plugin new NAME` copies those three
//! into the new project's `vendor/`, so the project builds on its own (copy
//! them by hand for an existing project).
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-sink"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sinkhost-sdk = { path = "vendor/sinkhost-sdk" }
//!
//! [workspace]
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use sinkhost_sdk::serde::Deserialize;
//! use sinkhost_sdk::{Config, Message, Outcome, Sink, envelope, export_sink, http, info};
//!
//! /// `settings:` of the subscription; a misspelt key fails `sinkhost check`.
//! #[derive(Deserialize)]
//! #[serde(crate = "sinkhost_sdk::serde", deny_unknown_fields)]
//! struct Settings {
//!     #[serde(default)]
//!     dry_run: bool,
//! }
//!
//! struct MySink {
//!     url: String,
//!     dry_run: bool,
//! }
//!
//! impl Sink for MySink {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.settings()?;
//!         if config.webhook.url.is_empty() {
//!             return Err("webhook.url is required".into());
//!         }
//!         Ok(MySink { url: config.webhook.url, dry_run: settings.dry_run })
//!     }
//!
//!     fn deliver(&self, msg: &Message) -> Outcome {
//!         if self.dry_run {
//!             info!("dry run: would POST {} ({} bytes)", msg.id, msg.payload.len());
//!             return Outcome::Delivered;
//!         }
//!         let req = http::Request::post(&self.url)
//!             .header("Content-Type", "application/json")
//!             .header("Idempotency-Key", &msg.id)
//!             .trace_context(msg) // the producer's W3C traceparent/tracestate, if any
//!             .body(envelope(msg));
//!         // 2xx delivered; `denied` rejects; anything else retries, honouring Retry-After.
//!         Outcome::from_send(&http::send(&req))
//!     }
//! }
//!
//! export_sink!(MySink);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! `.wasm` in `target/wasm32-wasip2/release/` is the component to reference
//! from a subscription's `plugin:`.
//!
//! # What runs where
//!
//! The host calls `init` once per plugin instance, then `deliver` once per
//! message, never two at a time on one instance: `&self` state needs no locks
//! (use `Cell`/`RefCell` for anything mutable). A panic traps the instance;
//! the host counts it as a failed attempt and starts a fresh instance.
//! [`http::send`] and the [`log`] functions call into the host, so they only
//! work inside a component; everything else here is plain Rust and can be
//! unit-tested natively, with values from [`testing`].
#![deny(missing_docs)]

mod config;
mod envelope;
pub mod http;
pub mod log;
mod message;
pub mod sign;
pub mod testing;
mod time;
pub mod trace_context;

pub use config::{Config, Webhook};
pub use envelope::{envelope, envelope_with};
/// Re-exported for `#[derive(Deserialize)]` on settings types; add
/// `#[serde(crate = "sinkhost_sdk::serde")]` so your crate needs no serde
/// dependency of its own.
pub use serde;
/// Re-exported for building JSON bodies, e.g. extra fields for
/// [`envelope_with`].
pub use serde_json;

pub use __private::bindings::sinkhost::plugin::types::{Message, Outcome};

/// A sink plugin: constructed once per instance from its configuration, then
/// asked about one message at a time. Wire it up with [`export_sink!`].
pub trait Sink: Sized + 'static {
    /// Builds the instance's state from the subscription's configuration.
    /// An `Err` is a configuration error: `sinkhost check` prints it and the
    /// host does not start the subscription, so say what is wrong and where
    /// (e.g. `"webhook.url must be an http(s) URL"`).
    fn init(config: Config) -> Result<Self, String>;

    /// Delivers one message and says what became of it.
    fn deliver(&self, msg: &Message) -> Outcome;
}

/// Exports a [`Sink`] implementation as the component's `sink` interface.
/// Invoke it once, at the top level of the plugin crate: `export_sink!(MySink);`.
#[macro_export]
macro_rules! export_sink {
    ($sink:ty) => {
        // The generated glue is FFI (`export_name` functions, a link section),
        // which the `unsafe_code` lint counts as unsafe.
        #[allow(unsafe_code)]
        const _: () = {
            type __SinkhostShim = $crate::__private::Shim<$sink>;
            $crate::__private::bindings::export!(
                __SinkhostShim with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Not public API: what [`export_sink!`] expands to. Changes without notice.
#[doc(hidden)]
pub mod __private {
    use std::cell::OnceCell;
    use std::marker::PhantomData;

    use crate::{Config, Message, Outcome, Sink};

    /// The `wit-bindgen` bindings of the world `sink-plugin`.
    #[allow(missing_docs, unsafe_code)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sink-plugin",
            pub_export_macro: true,
            default_bindings_module: "::sinkhost_sdk::__private::bindings",
            // Our own types for these two: a builder with a Debug that hides
            // header values, and an error whose Display reads as a sentence.
            with: {
                "sinkhost:plugin/http@0.1.0/request": crate::http::Request,
                "sinkhost:plugin/http@0.1.0/http-error": crate::http::HttpError,
            },
            additional_derives: [PartialEq, Eq],
        });
    }

    use bindings::exports::sinkhost::plugin::sink::Guest;

    /// The type-erased instance: one component has one sink type.
    trait Deliver {
        fn deliver(&self, msg: &Message) -> Outcome;
    }

    impl<T: Sink> Deliver for T {
        fn deliver(&self, msg: &Message) -> Outcome {
            Sink::deliver(self, msg)
        }
    }

    thread_local! {
        // Components are single-threaded; thread_local avoids a Sync bound on T.
        static INSTANCE: OnceCell<Box<dyn Deliver>> = const { OnceCell::new() };
    }

    /// Implements the generated `Guest` trait for any [`Sink`].
    pub struct Shim<T>(PhantomData<T>);

    impl<T: Sink> Guest for Shim<T> {
        fn init(config: String) -> Result<(), String> {
            if INSTANCE.with(|slot| slot.get().is_some()) {
                return Err("init called twice on one plugin instance".into());
            }
            let sink = T::init(Config::from_json(&config)?)?;
            INSTANCE
                .with(|slot| slot.set(Box::new(sink)))
                .map_err(|_| "init called twice on one plugin instance".to_string())
        }

        fn deliver(msg: Message) -> Outcome {
            INSTANCE.with(|slot| match slot.get() {
                Some(sink) => sink.deliver(&msg),
                None => Outcome::Reject(
                    "plugin not initialised: the host called deliver before a successful init"
                        .into(),
                ),
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        struct Echo(String);

        impl Sink for Echo {
            fn init(config: Config) -> Result<Self, String> {
                if config.subscription == "bad" {
                    return Err("bad subscription".into());
                }
                Ok(Echo(config.subscription))
            }
            fn deliver(&self, msg: &Message) -> Outcome {
                Outcome::Reject(format!("{} got {}", self.0, msg.id))
            }
        }

        fn msg() -> Message {
            Message {
                id: "m1".into(),
                ..crate::testing::message("s", "")
            }
        }

        // Each test runs on its own thread, so each sees a fresh INSTANCE.
        #[test]
        fn deliver_before_init_rejects_instead_of_panicking() {
            let Outcome::Reject(reason) = Shim::<Echo>::deliver(msg()) else {
                panic!("expected a reject");
            };
            assert!(reason.contains("before a successful init"), "{reason}");
        }

        #[test]
        fn init_then_deliver_reaches_the_sink() {
            Shim::<Echo>::init(r#"{"subscription": "orders"}"#.into()).unwrap();
            assert_eq!(
                Shim::<Echo>::deliver(msg()),
                Outcome::Reject("orders got m1".into())
            );
            let err = Shim::<Echo>::init(r#"{"subscription": "orders"}"#.into()).unwrap_err();
            assert_eq!(err, "init called twice on one plugin instance");
        }

        #[test]
        fn failed_init_reports_and_leaves_the_slot_empty() {
            assert_eq!(
                Shim::<Echo>::init(r#"{"subscription": "bad"}"#.into()),
                Err("bad subscription".into())
            );
            let err = Shim::<Echo>::init("not json".into()).unwrap_err();
            assert!(err.starts_with("invalid plugin configuration: "), "{err}");
            Shim::<Echo>::init(r#"{"subscription": "good"}"#.into()).unwrap();
        }
    }
}
