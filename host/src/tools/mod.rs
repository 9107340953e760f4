//! The one-shot commands behind `cli`: replaying dead letters ([`replay`]) and
//! stored messages ([`stream_replay`]), running a plugin on one message
//! ([`tryout`]) and writing a new plugin project ([`scaffold`]). They build on
//! `run` (a subscription's plugin is prepared exactly as `run` prepares it)
//! and print nothing: `cli` renders what they return.

pub(crate) mod replay;
pub(crate) mod scaffold;
pub(crate) mod stream_replay;
pub(crate) mod tryout;
