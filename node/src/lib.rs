//! A rendermesh node: the mesh's rules as a sans-IO core ([`core`]), and the I/O around them.
//!
//! [`Node::start`] ([`node`]) builds a node from a [`Config`]: the libp2p swarm ([`net`]), the
//! mesh actor that feeds the core and carries out its actions ([`mesh`]), its database of job
//! records ([`db`]), the content-addressed
//! blob store ([`store`]) and its fetcher ([`fetch`]), the mesh secret ([`secret`]), the Blender
//! runner ([`render`]) and worker ([`worker`]), and the local HTTP API ([`api`]). The
//! `rendermesh` binary (`node/cli`) is a thin layer over this library.

pub mod api;
pub mod bench;
pub mod bench_transfer;
pub mod blob_stream;
pub mod chart;
pub mod client;
pub mod compare;
pub mod config;
pub mod db;
pub mod error;
pub mod fetch;
pub mod mesh;
pub mod net;
pub mod node;
pub mod probe_cache;
pub mod render;
pub mod secret;
pub mod stitch;
pub mod store;
pub mod thumb;
pub mod worker;

pub use config::Config;
pub use error::Error;
pub use libp2p::Multiaddr;
pub use mesh::Handle;
pub use node::Node;
/// The mesh's rules, apart from every kind of I/O (the `rendermesh-core` crate).
pub use rendermesh_core as core;
pub use rendermesh_protocol::Role;
pub use secret::{JoinToken, MeshSecret};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it): job creation
/// times and ages. Rules that measure durations use [`core::Millis`] on a monotonic clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: `info` for rendermesh,
/// `warn` for everything else).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,rendermesh=info,rendermesh_node=info,rendermesh_bootstrap=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .compact()
        .try_init();
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
