//! A rendermesh node: everything that does I/O.
//!
//! [`Node::start`] builds a node from a [`Config`]: the libp2p swarm ([`net`]), the mesh actor
//! that owns membership, the election, the replicated job table, the coordinator and the worker
//! ([`mesh`]), the content-addressed blob store ([`store`]), the Blender runner ([`render`]) and
//! the local HTTP API ([`api`]). The `rendermesh` binary ([`cli`]) is a thin layer over this.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod fetch;
pub mod mesh;
pub mod net;
pub mod render;
pub mod store;
pub mod view;

pub use config::Config;
pub use error::Error;
pub use mesh::{Handle, Node};
