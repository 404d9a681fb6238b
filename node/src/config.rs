//! How a node is set up; every field has a documented default.

use std::net::SocketAddr;
use std::path::PathBuf;

use libp2p::Multiaddr;
use rendermesh_protocol::Role;

use crate::secret::MeshSecret;

/// The default local API address: loopback only.
pub const DEFAULT_API: &str = "127.0.0.1:7411";

/// The port `rendermesh node` listens on (TCP and QUIC) unless told otherwise.
pub const NODE_PORT: u16 = 4700;

/// What `rendermesh node` listens on by default: [`NODE_PORT`] on every interface, so that the
/// multiaddr it prints (and others join through) stays valid across restarts.
pub fn node_listen_defaults() -> Vec<Multiaddr> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{NODE_PORT}")
            .parse()
            .expect("valid multiaddr"),
        format!("/ip4/0.0.0.0/udp/{NODE_PORT}/quic-v1")
            .parse()
            .expect("valid multiaddr"),
    ]
}

/// A node's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the identity key and the blob store live. Default: `./rendermesh-data`.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on. Default: TCP and QUIC on every interface, ports chosen by the OS
    /// (an embedded node); `rendermesh node` uses [`node_listen_defaults`].
    pub listen: Vec<Multiaddr>,
    /// Where the HTTP API listens; `None` serves no API. Default: [`DEFAULT_API`].
    pub api: Option<SocketAddr>,
    /// Nodes to join through (full multiaddrs with `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN by mDNS. Default: on.
    pub mdns: bool,
    /// A person's name for the node. Default: the host name.
    pub name: String,
    /// Blender's `-t`: render threads; `None` lets Blender use every core.
    pub threads: Option<u32>,
    /// Worker (renders, may coordinate) or bootstrap (neither).
    pub role: Role,
    /// The Blender executable. Default: `blender` on the `PATH`.
    pub blender: PathBuf,
    /// The mesh secret: only nodes with the same one can connect; QUIC is off. Default: none.
    pub secret: Option<MeshSecret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("rendermesh-data"),
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            api: Some(DEFAULT_API.parse().expect("valid socket address")),
            bootstrap: Vec::new(),
            mdns: true,
            name: host_name(),
            threads: None,
            role: Role::Worker,
            blender: PathBuf::from("blender"),
            secret: None,
        }
    }
}

impl Config {
    /// Sets the data directory.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Sets the API address (`None`: no API).
    pub fn with_api(mut self, api: Option<SocketAddr>) -> Self {
        self.api = api;
        self
    }
}

/// The machine's host name, or `node` when it cannot be read.
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "node".to_owned())
}
