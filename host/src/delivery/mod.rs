//! Delivery rules: pure functions shared by `bus` (the consumer) and both
//! replays in `tools`. What a JetStream message becomes for the plugin and its
//! stable id ([`message`]), what a plugin call's result means ([`classify`]),
//! and when to retry, how long to wait and when to give up ([`retry`]), and
//! when the destination counts as down ([`breaker`]). No I/O and no clock
//! here (the breaker is handed the time): callers wait, ack and dead-letter.

pub(crate) mod breaker;
pub(crate) mod classify;
pub(crate) mod message;
pub(crate) mod retry;
