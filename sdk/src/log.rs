//! Logging into the host's log, where each line carries the subscription's
//! name. Use the macros [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error);
//! they take `format!` arguments.
//!
//! Never log header values or settings that hold secrets: the host's log is
//! read by more people than the secrets' owners.

use crate::__private::bindings::sinkhost::plugin::log as wit;

pub use wit::Level;

/// Writes one line to the host's log at `level`.
///
/// Only callable inside a component: natively there is no host and this panics.
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

/// Logs at `trace` level: `trace!("got {} bytes", n)`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs at `debug` level: `debug!("got {} bytes", n)`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs at `info` level: `info!("sending to {}", host)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs at `warn` level: `warn!("HTTP {} from {}, retrying", status, host)`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs at `error` level: `error!("cannot build the request: {}", e)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}
