//! Every message that crosses the network.
//!
//! Two channels carry them:
//! - gossipsub topic [`crate::HEARTBEAT_TOPIC`]: [`Gossip`] (heartbeats), signed by the sender;
//! - request-response protocol [`crate::RPC_PROTOCOL`]: one [`Request`] answered by one
//!   [`Response`], for blob chunks, job submission, assignments, reports and job replication.
//!
//! `docs/PROTOCOL.md` describes each message and the flows they make up.

use serde::{Deserialize, Serialize};

use crate::render::{Engine, Tile};

use crate::id::{BlobHash, JobId, NodeId, Term};
use crate::job::{FrameRange, Job, JobChanges, JobSpec, Output, Steer, Version};

/// What a node does in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Renders, and may coordinate.
    Worker,
    /// An always-on node others join through; renders nothing and never coordinates.
    Bootstrap,
}

/// The task a node is rendering right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The job.
    pub job: JobId,
    /// The task's index in the job.
    pub task: u32,
    /// The attempt being rendered (or reported).
    pub attempt: u32,
    /// The frames it covers.
    pub frames: FrameRange,
    /// The tile of the frame it renders; `None`: whole frames.
    pub tile: Option<Tile>,
    /// Frames written so far.
    pub frames_done: u32,
}

/// The version of one job that a node holds: lets every node pull newer job records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDigest {
    /// The job.
    pub id: JobId,
    /// The version held.
    pub version: Version,
}

/// What a node's job table holds, in 36 bytes: how many records, and a hash of every record's
/// id and version in id order ([`TableDigest::of`]). Two nodes with the same digest hold the
/// same versions of the same jobs; a node whose digest differs from its coordinator's pulls the
/// whole list of versions ([`Request::Digests`]) to find out which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableDigest {
    /// Records held.
    pub count: u32,
    /// blake3 of every `(id, version)`, in id order.
    pub hash: [u8; 32],
}

impl TableDigest {
    /// The digest of a table holding these versions, in id order.
    pub fn of<'a>(versions: impl IntoIterator<Item = (&'a JobId, Version)>) -> Self {
        let mut hasher = blake3::Hasher::new();
        let mut count = 0u32;
        for (id, version) in versions {
            count = count.saturating_add(1);
            hasher.update(&id.0);
            hasher.update(&version.term.0.to_le_bytes());
            hasher.update(&version.seq.to_le_bytes());
        }
        Self {
            count,
            hash: *hasher.finalize().as_bytes(),
        }
    }
}

/// What a node says of itself every second. The coordinator publishes its own on gossipsub,
/// for every node to hear; every other node sends its own to the coordinator
/// ([`Request::Alive`]), and publishes it only while it follows no coordinator (while the mesh
/// elects one). A node unheard for [`crate::limits::PEER_TIMEOUT_MS`] is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Raised by every heartbeat of this node's run (detects reordering and restarts).
    pub seq: u64,
    /// A person's name for the node (`--name`, or the host name).
    pub name: String,
    /// What it does.
    pub role: Role,
    /// Logical CPU cores.
    pub cores: u32,
    /// Total memory in bytes.
    pub memory: u64,
    /// `Blender 3.4.1`, or `None` when Blender is missing.
    pub blender: Option<String>,
    /// The render engines it runs headless (Cycles always; EEVEE and Workbench where Blender
    /// can open a GPU context, through surfaceless EGL on a machine without a display).
    #[serde(default)]
    pub engines: Vec<Engine>,
    /// How its renders are confined.
    pub confinement: Confinement,
    /// CPU load, 0.0..=1.0 averaged over all cores.
    pub load: f32,
    /// The task it is rendering (or else the oldest it still reports).
    pub current: Option<TaskRef>,
    /// The other tasks it holds: the assignment it renders next (a worker holds one task
    /// ahead, so that no round trip falls between two), then those it still reports. Only the
    /// first [`crate::limits::MAX_HELD`] count.
    #[serde(default)]
    pub held: Vec<TaskRef>,
    /// The term it coordinates in when it claims; else the highest term it has seen claimed.
    pub term: Term,
    /// The coordinator it follows (itself when it coordinates).
    pub coordinator: Option<NodeId>,
    /// True when it coordinates in `term`.
    pub claims: bool,
    /// The jobs it wrote or took most recently and their versions (highest version first, at
    /// most [`crate::limits::MAX_DIGESTS`]).
    pub jobs: Vec<JobDigest>,
    /// Its whole job table, as a digest: a node that holds a different table pulls the list.
    #[serde(default)]
    pub table: TableDigest,
    /// From the coordinator: the version of the membership record it publishes
    /// ([`Request::Members`]); a node holding another version pulls it. `None` from others.
    #[serde(default)]
    pub members: Option<Version>,
    /// Multiaddrs it listens on, with `/p2p/<id>`, for `peers` and joining.
    pub addrs: Vec<String>,
    /// Bytes free on the disk holding its store, when it can tell.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// It has less disk free than it keeps free (`--min-free-disk`), and so takes no work.
    #[serde(default)]
    pub low_disk: bool,
    /// It is leaving (stopped with SIGTERM or ctrl-c): its peers drop it at once, its running
    /// task goes back to the queue, and when it coordinated the next node takes over, without
    /// waiting for its silence.
    #[serde(default)]
    pub leaving: bool,
}

impl Heartbeat {
    /// Checks every length a peer chose against its bound, so that a heartbeat one node sent
    /// the coordinator can be served to every node in its membership record.
    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::limits;
        let bad = |what: String| Err(crate::Error::BadHeartbeat(what));
        if self.name.len() > limits::MAX_NAME_LEN {
            return bad(format!(
                "a name of {} bytes (at most {})",
                self.name.len(),
                limits::MAX_NAME_LEN
            ));
        }
        if self
            .blender
            .as_ref()
            .is_some_and(|b| b.len() > limits::MAX_NAME_LEN)
        {
            return bad("a Blender version longer than a name".into());
        }
        if self.engines.len() > limits::MAX_ENGINES {
            return bad(format!("{} engines", self.engines.len()));
        }
        if self.held.len() > limits::MAX_HELD {
            return bad(format!(
                "{} tasks held (at most {})",
                self.held.len(),
                limits::MAX_HELD
            ));
        }
        if self.jobs.len() > limits::MAX_DIGESTS {
            return bad(format!(
                "{} job digests (at most {})",
                self.jobs.len(),
                limits::MAX_DIGESTS
            ));
        }
        if self.addrs.len() > limits::MAX_ADDRS
            || self.addrs.iter().any(|a| a.len() > limits::MAX_ADDR_LEN)
        {
            return bad(format!(
                "{} addresses (at most {}, each at most {} bytes)",
                self.addrs.len(),
                limits::MAX_ADDRS,
                limits::MAX_ADDR_LEN
            ));
        }
        if !self.load.is_finite() {
            return bad("a load that is not a number".into());
        }
        Ok(())
    }
}

/// One member of the mesh as the coordinator's membership record names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Its latest heartbeat the coordinator heard.
    pub heartbeat: Heartbeat,
}

/// How a node's Blender is confined (issue 11), shown by `peers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Confinement {
    /// It renders in a sandbox: the system read-only, the task's directory the only writable
    /// path, no network, no data directory, no home.
    Sandboxed,
    /// It renders unconfined: started with `--no-sandbox` (or it renders nothing at all).
    #[default]
    Unsandboxed,
    /// It cannot sandbox Blender here and so renders nothing (until started with
    /// `--no-sandbox`).
    CannotSandbox,
}

/// Messages published on gossipsub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Gossip {
    /// A node's periodic heartbeat.
    Heartbeat(Heartbeat),
}

/// A task handed to a worker by the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The coordinator's term; a worker refuses assignments from a lower term than it has seen.
    pub term: Term,
    /// The job.
    pub job: JobId,
    /// The task's index.
    pub task: u32,
    /// The attempt number; the report must quote it.
    pub attempt: u32,
    /// The version of the job's record once this assignment is written in it: a record older
    /// than that does not take the assignment away (it may reach the worker after it).
    pub version: Version,
    /// The frames to render.
    pub frames: FrameRange,
    /// Render only this tile of the frame (lossless, cropped); `None`: whole frames.
    pub tile: Option<Tile>,
    /// The job's settings.
    pub spec: JobSpec,
    /// The node that holds the `.blend` for sure (the job's origin).
    pub origin: NodeId,
}

/// How a task ended on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every frame was written and stored as a blob on the worker.
    Done(Vec<Output>),
    /// Blender failed; the message quotes it.
    Failed(String),
}

/// A worker's report on an assignment, sent to whoever coordinates when it is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The job.
    pub job: JobId,
    /// The task's index.
    pub task: u32,
    /// The attempt the worker was given.
    pub attempt: u32,
    /// What happened.
    pub outcome: Outcome,
}

/// A request sent over [`crate::RPC_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Asks for a blob's size and chunk chaining values (to verify chunks as they arrive).
    BlobInfo(BlobHash),
    /// Asks for chunk `index` ([`crate::limits::BLOB_CHUNK`] bytes) of a blob.
    BlobChunk {
        /// The blob.
        hash: BlobHash,
        /// The chunk's index.
        index: u64,
    },
    /// Submits a job to the coordinator (idempotent: the id is the submitter's).
    Submit {
        /// The new job's id.
        id: JobId,
        /// What to render.
        spec: JobSpec,
    },
    /// Asks the coordinator to cancel a job.
    Cancel(JobId),
    /// Coordinator to worker: render this.
    Assign(Assignment),
    /// Worker to coordinator: this is how it went.
    Report(Report),
    /// Asks any node for its copy of a job.
    GetJob(JobId),
    /// Coordinator to another node: fetch these frames of `job` from me and keep them (the
    /// coordinator rendered or stitched them itself, and a frame counts only once it is on two
    /// nodes). Taken only from the coordinator, for a job the receiver knows, and at most as
    /// many blobs as the job has frames.
    Replicate {
        /// The job the frames belong to.
        job: JobId,
        /// The frames' blobs.
        blobs: Vec<BlobHash>,
    },
    /// Asks the coordinator to remove a job for everyone (cancelling it first if it runs):
    /// its record becomes a tombstone, and its blobs may be collected.
    Remove(JobId),
    /// Any node to the coordinator, every second: this node is alive, and this is its state
    /// (what it renders and holds, its disk, its newest job versions). Answered `Accepted`.
    Alive(Heartbeat),
    /// Asks the coordinator for its membership record ([`Response::Members`]).
    Members,
    /// Asks a node for the version of every job record it holds ([`Response::Digests`]).
    Digests,
    /// Coordinator to worker: give back this task, held to render next, unless it has started
    /// (an idle node would end it sooner). `Accepted`: the worker dropped it and will not start
    /// it; anything else: it stays with the worker.
    GiveBack {
        /// The job.
        job: JobId,
        /// The task's index.
        task: u32,
        /// The attempt the worker holds.
        attempt: u32,
    },
    /// Asks which chunks of a blob a node holds, whole or still arriving ([`Response::BlobHave`]),
    /// so a fetcher takes each range from a peer that has it, and the blob's origin last.
    BlobHave(BlobHash),
    /// Asks any node for what changed in its copy of a job since version `since`, the asker's
    /// ([`Response::JobChanges`]); answered with the whole record ([`Response::Job`]) when the
    /// node cannot tell.
    GetJobSince {
        /// The job.
        id: JobId,
        /// The version the asker holds.
        since: Version,
    },
    /// Asks the coordinator to pause, resume or reprioritise a job: only the node the job was
    /// submitted on may, as for [`Request::Cancel`].
    Steer {
        /// The job.
        job: JobId,
        /// What to change.
        steer: Steer,
    },
}

/// What a fetcher asks for on a blob stream ([`crate::BLOB_PROTOCOL`]): chunks `first` to
/// `first + count - 1` of a blob, sent back raw and in order after a [`BlobRangeAnswer`], so a
/// range costs one round trip and no framing or copy per chunk. At most
/// [`crate::limits::MAX_BLOB_STREAM_HEADER`] bytes on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRange {
    /// The blob.
    pub hash: BlobHash,
    /// The first chunk.
    pub first: u64,
    /// How many chunks.
    pub count: u64,
}

/// The answer that opens a blob stream, before any chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRangeAnswer {
    /// The chunks follow, raw, in order: `len` bytes in all (every chunk
    /// [`crate::limits::BLOB_CHUNK`] bytes but the blob's last).
    Sending {
        /// The bytes that follow.
        len: u64,
    },
    /// The blob is not held here.
    NotFound,
    /// Refused, with the reason (a range outside the blob, too many streams at once).
    Refused(String),
}

/// The bits of [`Response::BlobHave`] for `held` (one per chunk, in order).
pub fn chunk_bits(held: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; held.len().div_ceil(8)];
    for (i, _) in held.iter().enumerate().filter(|(_, h)| **h) {
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}

/// Reads the bits of [`Response::BlobHave`] for a blob of `chunks` chunks: one flag per chunk,
/// or `None` when `held` is not `chunks.div_ceil(8)` bytes long, or `chunks` is more than a
/// blob may have.
pub fn read_chunk_bits(chunks: u64, held: &[u8]) -> Option<Vec<bool>> {
    let most = crate::limits::MAX_BLOB
        .div_ceil(crate::limits::BLOB_CHUNK)
        .max(1);
    if chunks > most || held.len() as u64 != chunks.div_ceil(8) {
        return None;
    }
    Some(
        (0..chunks as usize)
            .map(|i| held[i / 8] & (1 << (i % 8)) != 0)
            .collect(),
    )
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `BlobInfo`.
    BlobInfo {
        /// The blob's size in bytes.
        size: u64,
        /// The blake3 chaining value of each [`crate::limits::BLOB_CHUNK`]-byte chunk, in
        /// order; empty when the blob fits in one chunk (then the root hash checks it).
        chunks: Vec<[u8; 32]>,
    },
    /// Answer to `BlobChunk`.
    BlobChunk(Vec<u8>),
    /// The blob or job is not held here.
    NotFound,
    /// A submission, cancel, assignment or report was applied.
    Accepted,
    /// Refused, with the reason (a stale term, a busy worker, a bad spec, ...).
    Rejected(String),
    /// Not now: the same request may succeed later (the sender is not yet known as a member,
    /// the node is busy). The reason says why.
    Busy(String),
    /// Sent to a node that does not coordinate: the coordinator it follows, if any.
    NotCoordinator(Option<NodeId>),
    /// Answer to `GetJob`.
    Job(Box<Job>),
    /// Answer to `Members`: the coordinator's membership record (never the coordinator
    /// itself, which every node hears), at most [`crate::limits::MAX_MEMBERS`] nodes.
    Members {
        /// Its version: raised by every change of a member that counts (one joined or left,
        /// its role, its term, its disk, its addresses), in the coordinator's term.
        version: Version,
        /// The live nodes, in id order.
        members: Vec<Member>,
    },
    /// Answer to `Digests`: the version of every job record held, in id order.
    Digests(Vec<JobDigest>),
    /// Answer to `BlobHave`, for a blob of `chunks` chunks: one bit per chunk (chunk `i` is bit
    /// `i % 8` of byte `i / 8`, [`chunk_bits`]) set for each chunk held and verified, and one set
    /// for each chunk asked of a peer and on its way. `NotFound` when the blob is neither held
    /// nor arriving.
    BlobHave {
        /// How many chunks the blob has.
        chunks: u64,
        /// The chunks held, `chunks.div_ceil(8)` bytes.
        held: Vec<u8>,
        /// The chunks on their way, `chunks.div_ceil(8)` bytes.
        coming: Vec<u8>,
    },
    /// Answer to `GetJobSince`: what changed since the asker's version.
    JobChanges(Box<JobChanges>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_bits_read_back_and_a_wrong_length_is_refused() {
        let held = [
            true, false, false, true, true, false, true, false, false, true,
        ];
        let bits = chunk_bits(&held);
        assert_eq!(bits, vec![0b0101_1001, 0b10]);
        assert_eq!(read_chunk_bits(10, &bits).as_deref(), Some(&held[..]));
        assert_eq!(read_chunk_bits(0, &[]).as_deref(), Some(&[][..]));
        // One byte short, one byte over, and more chunks than the largest blob has.
        assert_eq!(read_chunk_bits(10, &bits[..1]), None);
        assert_eq!(read_chunk_bits(8, &bits), None);
        let most = crate::limits::MAX_BLOB / crate::limits::BLOB_CHUNK;
        assert!(read_chunk_bits(most, &vec![0; most.div_ceil(8) as usize]).is_some());
        assert_eq!(
            read_chunk_bits(most + 8, &vec![0; (most + 8).div_ceil(8) as usize]),
            None
        );
    }
}
