//! What operators look at: `/healthz` and `/metrics` ([`server`]), the
//! metrics themselves ([`metrics`]) and the delivery span that puts a
//! message's ids on every log line ([`trace`]). Every layer records here;
//! this folder imports nothing of the host but `config`.

pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod trace;
