//! What the local API takes and returns as JSON, shared by the server ([`crate::api`]) and its
//! client ([`crate::client`]) (besides `rendermesh_protocol::Job` and `JobSpec`, which serialize
//! their ids as hex text in JSON).

use rendermesh_protocol::{BlobHash, Engine, JobId, Role, TaskRef};
use serde::{Deserialize, Serialize};

use crate::store::Stats;

/// One live node as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its peer id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Worker or bootstrap.
    pub role: Role,
    /// Its multiaddrs (with `/p2p/<id>`).
    pub addrs: Vec<String>,
    /// Logical cores.
    pub cores: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// CPU load 0..=1.
    pub load: f32,
    /// Its Blender version.
    pub blender: Option<String>,
    /// The engines it renders with headless.
    #[serde(default)]
    pub engines: Vec<Engine>,
    /// How its renders are confined (a sandbox, none, or none possible: then it renders
    /// nothing).
    #[serde(default)]
    pub confinement: rendermesh_protocol::Confinement,
    /// What it is rendering.
    pub current: Option<TaskRef>,
    /// True when it is the coordinator.
    pub coordinator: bool,
    /// True for the node answering.
    pub is_self: bool,
    /// Milliseconds since its last heartbeat was heard (0 for self).
    pub last_seen_ms: u64,
    /// Bytes free on the disk holding its store, when it can tell.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// It has less disk free than it keeps free (`--min-free-disk`), and takes no work.
    #[serde(default)]
    pub low_disk: bool,
    /// The kept jobs in which a check found its pixels wrong (it is suspect, and gets no more
    /// of them), by id.
    #[serde(default)]
    pub suspect_in: Vec<String>,
}

/// The live membership view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeersView {
    /// The answering node's id.
    pub me: String,
    /// The current coordinator term.
    pub term: u64,
    /// The coordinator's peer id, if one is known.
    pub coordinator: Option<String>,
    /// Every live node, the answering one included.
    pub peers: Vec<PeerView>,
    /// The fingerprint of the mesh secret, when the mesh has one.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The answering node itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its peer id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Worker or bootstrap.
    pub role: Role,
    /// Its multiaddrs (with `/p2p/<id>`), by which others can join it.
    pub addrs: Vec<String>,
    /// Its Blender version, if Blender runs here.
    pub blender: Option<String>,
    /// How its renders are confined.
    #[serde(default)]
    pub confinement: rendermesh_protocol::Confinement,
    /// The current term.
    pub term: u64,
    /// The coordinator's peer id, if one is known.
    pub coordinator: Option<String>,
    /// Blob store counters.
    pub store: Stats,
    /// The fingerprint of the mesh secret, when the mesh has one.
    #[serde(default)]
    pub secret: Option<String>,
    /// The ffmpeg version this node makes preview videos with (`GET
    /// /jobs/{id}/preview.mp4`); `None` when it has no ffmpeg.
    #[serde(default)]
    pub ffmpeg: Option<String>,
}

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// The answer to `POST /jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The new job's id.
    pub id: JobId,
}

/// The answer to `PUT /blobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// The blob's content hash: its name in the mesh.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, with its causes joined by `: `.
    pub error: String,
}
