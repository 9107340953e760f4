//! The host side of the `log` import: plugin lines land in the host's log
//! with the subscription's name, secrets masked, each line capped, and at most
//! so many lines per call (the rest are counted and reported once).

use super::bindings::sinkhost::plugin::log;
use super::sink::marked_cap;
use super::state::State;
use crate::config::redact::redact;

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        if self.log_lines >= self.limits.log_lines_per_call {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = marked_cap(
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
