//! The host side of the `log` import: plugin lines land in the host's log
//! through the instance's [`CallLog`](super::guest_log::CallLog), with the
//! subscription's name, secrets masked, each line capped, and at most so many
//! lines per call, stdout and stderr included (the rest are counted and
//! reported once).

use super::bindings::sinkhost::plugin::log;
use super::guest_log::Level;
use super::state::State;

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log
            .lock()
            .expect("call log lock")
            .line(level, &message, None);
    }
}
