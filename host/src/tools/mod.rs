//! The one-shot commands behind `cli`: replaying dead letters ([`replay`]) and
//! stored messages ([`stream_replay`]) with one set of result types
//! ([`results`]), listing dead letters ([`dlq`]), publishing ([`publish`]),
//! running a plugin on one message ([`tryout`]), checking a plugin against
//! the host's contract ([`conformance`]), writing a new plugin project
//! ([`scaffold`]), and telling where things are: every subscription
//! ([`status`]) and one message ([`trace`]). They build on `run` (a subscription's plugin is
//! prepared exactly as `run` prepares it, see [`select`]) and print nothing:
//! `cli` prints what they return.

pub mod conformance;
pub(crate) mod dlq;
pub(crate) mod publish;
pub(crate) mod replay;
pub(crate) mod results;
pub(crate) mod scaffold;
pub(crate) mod select;
pub(crate) mod status;
pub(crate) mod stream_replay;
pub(crate) mod trace;
pub(crate) mod tryout;
