//! How a node is set up; every field has a documented default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use rendermesh_protocol::Role;

use crate::Error;
use crate::core::Policy;
use crate::secret::MeshSecret;

/// The default local API address: loopback only.
pub const DEFAULT_API: &str = "127.0.0.1:7411";

/// The shortest API token accepted, in characters: long enough that it cannot be guessed
/// through the API within any useful time.
pub const MIN_API_TOKEN: usize = 16;

/// The TCP port `rendermesh node` listens on unless told otherwise.
pub const NODE_PORT: u16 = 4700;

/// What `rendermesh node` listens on by default: [`NODE_PORT`] on every interface, so that the
/// multiaddr it prints (and others join through) stays valid across restarts.
pub fn node_listen_defaults() -> Vec<Multiaddr> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{NODE_PORT}")
            .parse()
            .expect("valid multiaddr"),
    ]
}

/// A node's settings. `Debug` never shows the API token (the mesh secret shows its
/// fingerprint only).
#[derive(Clone)]
pub struct Config {
    /// Where the identity key and the blob store live. Default: `./rendermesh-data`.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on. Default: TCP on every interface, port chosen by the OS
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
    /// The largest file the API takes (`PUT /blobs` and the page's uploads), in bytes; at most
    /// [`limits::MAX_BLOB`](rendermesh_protocol::limits::MAX_BLOB), the default.
    pub max_upload: u64,
    /// The ffmpeg executable that makes a job's preview video (the API's `preview.mp4`; none
    /// when it does not run). Default: `ffmpeg` on the `PATH`.
    pub ffmpeg: PathBuf,
    /// The mesh secret: only nodes with the same one can connect. Default: none.
    pub secret: Option<MeshSecret>,
    /// The API's bearer token: when set, every API request (the page included) must carry
    /// `Authorization: Bearer <token>`, and the page's own address may carry `?token=<token>`.
    /// Required when `api` is not a loopback address ([`crate::Node::start`] refuses to start
    /// otherwise), so that an API reachable from other machines is never open. At least
    /// [`MIN_API_TOKEN`] visible ASCII characters ([`check_api_token`]). Default: none.
    pub api_token: Option<String>,
    /// Run Blender in a sandbox (bubblewrap: the system read-only, the task's directory the
    /// only writable path, no network). A node that cannot sandbox does not render. Default: on;
    /// off is `--no-sandbox`.
    pub sandbox: bool,
    /// Keep a spare Blender started ahead, with no file, for the next job (about 240 MB while
    /// the node waits; the next job's first frame then starts without Blender's start-up).
    /// Default: on; off is `--no-spare-blender`.
    pub spare_blender: bool,
    /// How this node runs the mesh's jobs while it coordinates (task timeouts, retention).
    pub policy: Policy,
    /// Bytes of disk kept free: below that, the node takes no work, and refuses uploads and
    /// fetches that would eat into them. Default: 2 GiB.
    pub min_free_disk: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("api", &self.api)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("name", &self.name)
            .field("threads", &self.threads)
            .field("role", &self.role)
            .field("blender", &self.blender)
            .field("ffmpeg", &self.ffmpeg)
            .field("max_upload", &self.max_upload)
            .field("secret", &self.secret)
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("sandbox", &self.sandbox)
            .field("spare_blender", &self.spare_blender)
            .field("policy", &self.policy)
            .field("min_free_disk", &self.min_free_disk)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("rendermesh-data"),
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")],
            api: Some(DEFAULT_API.parse().expect("valid socket address")),
            bootstrap: Vec::new(),
            mdns: true,
            name: host_name(),
            threads: None,
            role: Role::Worker,
            blender: PathBuf::from("blender"),
            ffmpeg: PathBuf::from("ffmpeg"),
            max_upload: rendermesh_protocol::limits::MAX_BLOB,
            secret: None,
            api_token: None,
            sandbox: true,
            spare_blender: true,
            policy: Policy::default(),
            min_free_disk: 2 << 30,
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

    /// Sets the API's bearer token (`None`: no token; the API must then be on loopback).
    pub fn with_api_token(mut self, token: Option<String>) -> Self {
        self.api_token = token;
        self
    }
}

/// Checks that `token` can serve as the API's bearer token: at least [`MIN_API_TOKEN`]
/// characters, every one visible ASCII (an HTTP header and a URL carry it unchanged, and no
/// stray space or newline hides in it). Returns what is wrong otherwise.
pub fn check_api_token(token: &str) -> Result<(), String> {
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "it holds {c:?}: a token is visible ASCII characters only, without spaces"
        ));
    }
    if token.len() < MIN_API_TOKEN {
        return Err(format!(
            "it is {} characters long: a token needs at least {MIN_API_TOKEN}",
            token.len()
        ));
    }
    Ok(())
}

/// Reads an API token from `file` (`--api-token FILE`): its text without surrounding
/// whitespace, checked by [`check_api_token`]. Errors name the file.
pub fn load_api_token(file: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        what: "cannot read the API token file",
        path: file.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    check_api_token(token).map_err(|reason| Error::BadApiToken {
        file: Some(file.to_path_buf()),
        reason,
    })?;
    Ok(token.to_owned())
}

/// The machine's host name, or `node` when it cannot be read.
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_api_token() {
        let config = Config::default().with_api_token(Some("0123456789abcdef-secret".into()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn api_tokens_are_read_trimmed_and_weak_ones_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("api.token");
        std::fs::write(&file, "  0123456789abcdef\n").expect("write");
        assert_eq!(load_api_token(&file).expect("a token"), "0123456789abcdef");

        std::fs::write(&file, "short\n").expect("write");
        let e = load_api_token(&file).expect_err("too short").to_string();
        assert!(e.contains("api.token") && e.contains("16"), "{e}");

        std::fs::write(&file, "0123456789 abcdef").expect("write");
        let e = load_api_token(&file).expect_err("a space").to_string();
        assert!(e.contains("api.token") && e.contains("' '"), "{e}");

        let missing = dir.path().join("nowhere.token");
        let e = load_api_token(&missing).expect_err("missing").to_string();
        assert!(e.contains("nowhere.token"), "{e}");
    }
}
