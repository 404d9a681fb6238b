//! The mesh's rules as plain state machines, apart from every kind of I/O: each takes events
//! (a heartbeat heard, a tick) with the current time passed in as milliseconds, and returns
//! what happened for the caller to act on. No tokio, no clock, no randomness, no sockets: the
//! actor in [`crate::mesh`] feeds them the real network and clock, and the simulator in
//! `node/tests/sim.rs` feeds them a simulated network in virtual time.
//!
//! - [`membership`]: who is live, the coordinator election and the terms.

pub mod membership;

/// Milliseconds on a monotonic clock. Only differences matter: the actor counts from when it
/// started, the simulator from zero.
pub type Millis = u64;
