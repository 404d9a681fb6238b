//! The rendermesh protocol: identifiers, the job model, the election rule, every wire message
//! and the codec that puts them on the wire. No I/O lives here.
//!
//! # Message flow
//!
//! - The coordinator publishes its [`Heartbeat`] each second on gossipsub: its claim (the
//!   election's [`Term`]), the version of its membership record and a digest of its job table.
//!   Every other node sends its own heartbeat to the coordinator ([`Request::Alive`]), and
//!   pulls the membership record ([`Request::Members`]) when its version changes. While no
//!   coordinator is heard, every node publishes its heartbeat, and the election runs over them.
//! - A user submits to their own node, which sends [`Request::Submit`] to the coordinator.
//! - The coordinator splits the job ([`plan_chunks`]) and sends [`Request::Assign`] to idle
//!   workers; they fetch the `.blend` by [`BlobHash`] ([`Request::BlobInfo`],
//!   [`Request::BlobChunk`]), render, and answer with [`Request::Report`].
//! - Nodes whose copy of a job is older than the coordinator's (seen in its heartbeat, or in
//!   the list of versions [`Request::Digests`] when the table digests differ) pull it with
//!   [`Request::GetJob`]: the job table lives on every node, not in the coordinator's memory.

pub mod codec;
pub mod election;
pub mod files;
pub mod id;
pub mod job;
pub mod message;
pub mod render;

pub use election::{Claim, Decision, elect};
pub use files::Dependency;
pub use id::{BlobHash, JobId, NodeId, Term};
pub use job::{
    Check, DEFAULT_PRIORITY, FIRST_CHECK, Failure, FrameRange, Job, JobChanges, JobSpec, JobState,
    Judgement, Output, OutputFormat, Plan, Stale, Steer, Task, TaskState, TileGrid, Tiling,
    Verdict, Version, plan, plan_chunks,
};
pub use message::{
    Assignment, BlobRange, BlobRangeAnswer, Confinement, Gossip, Heartbeat, JobDigest, Member,
    Outcome, Report, Request, Response, Role, TableDigest, TaskRef, chunk_bits, read_chunk_bits,
};
pub use render::{Engine, PixelRect, Tile};

/// The request-response protocol carrying [`Request`] and [`Response`].
pub const RPC_PROTOCOL: &str = "/rendermesh/rpc/8";
/// The stream protocol carrying blob chunks in bulk ([`BlobRange`], [`BlobRangeAnswer`], then
/// the chunks raw).
pub const BLOB_PROTOCOL: &str = "/rendermesh/blob/1";
/// The Kademlia protocol name: rendermesh's own DHT, never mixed with IPFS's.
pub const KAD_PROTOCOL: &str = "/rendermesh/kad/1";
/// The identify protocol version: peers announcing anything else are not rendermesh nodes.
pub const IDENTIFY_VERSION: &str = "rendermesh/4";
/// The gossipsub topic for heartbeats.
pub const HEARTBEAT_TOPIC: &str = "rendermesh/heartbeat/4";

/// `text` as it may be printed: every control character (escape sequences above all) replaced
/// by `?`, and at most [`limits::MAX_PRINTED_NAME`] characters. Names come from peers.
pub fn printable(text: &str) -> String {
    text.chars()
        .take(limits::MAX_PRINTED_NAME)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Every bound the protocol relies on.
pub mod limits {
    /// Characters of a peer-supplied name that are ever printed.
    pub const MAX_PRINTED_NAME: usize = 64;

    /// Largest request or response on the wire.
    pub const MAX_MESSAGE: usize = 4 << 20;
    /// Largest gossip message.
    pub const MAX_GOSSIP: usize = 64 << 10;
    /// Largest [`crate::BlobRange`] or [`crate::BlobRangeAnswer`] on the wire.
    pub const MAX_BLOB_STREAM_HEADER: usize = 1 << 10;
    /// Blob chunk size: 1 MiB, a power of two times blake3's 1 KiB chunk, so each is a subtree.
    pub const BLOB_CHUNK: u64 = 1 << 20;
    /// Largest blob a node accepts (64 GiB).
    pub const MAX_BLOB: u64 = 64 << 30;
    /// Largest frame number Blender accepts.
    pub const MAX_FRAME_NUMBER: u32 = 1_048_574;
    /// Most frames in one job (keeps a job record well under [`MAX_MESSAGE`]).
    pub const MAX_JOB_FRAMES: u32 = 20_000;
    /// Most tasks in a tiled job (frames times tiles per frame).
    pub const MAX_TILED_TASKS: u32 = 10_000;
    /// Most tiles along either side of a frame.
    pub const MAX_TILE_SIDE: u32 = 64;
    /// Most samples a job may ask for.
    pub const MAX_SAMPLES: u32 = 1 << 16;
    /// Longest job name, in bytes.
    pub const MAX_NAME_LEN: usize = 255;
    /// Most external files (textures, libraries, caches, ...) one job ships.
    pub const MAX_DEPENDENCIES: usize = 4096;
    /// Longest path of a job's `.blend` or of one of its files, in bytes (Linux's `PATH_MAX`
    /// is 4096; paths this long are rare and make every job record larger).
    pub const MAX_PATH_LEN: usize = 1024;
    /// Most bytes all of a job's file paths may take together.
    pub const MAX_DEPENDENCY_TEXT: usize = 1 << 20;
    /// A node that failed this many tasks of one job gets no more of that job.
    pub const BLOCKLIST_AFTER: usize = 3;
    /// A task that timed out this many times (on any nodes) fails its job.
    pub const MAX_TIMEOUTS: usize = 3;
    /// Most failures kept per task.
    pub const MAX_FAILURES_KEPT: usize = 8;
    /// Bytes of a failure's message (or a failed job's) kept in a job record.
    pub const MAX_FAILURE_TEXT: usize = 4096;
    /// Bytes of all the failure messages of one job record together: a job whose tasks keep
    /// failing with long tracebacks keeps the first ones whole and the later ones cut, so its
    /// record still fits one message ([`MAX_MESSAGE`]).
    pub const MAX_JOB_FAILURE_TEXT: usize = 256 << 10;
    /// Frame times kept in a job record (the latest ones), to time its tasks out by.
    pub const MAX_FRAME_TIMES: usize = 64;
    /// Most checks in one job record, tie-breaks included (a job checks at most this many of
    /// its workers).
    pub const MAX_CHECKS: usize = 256;
    /// The highest priority a job may have ([`crate::job::Steer::Priority`]; 0 is the lowest).
    pub const MAX_PRIORITY: u8 = 100;
    /// How wide a frame's thumbnail is, at most, in pixels ([`crate::job::Output::thumb`]).
    pub const THUMB_WIDTH: u32 = 192;
    /// Most job digests in a heartbeat (the rest of the table goes by its digest).
    pub const MAX_DIGESTS: usize = 16;
    /// Most nodes in a membership record.
    pub const MAX_MEMBERS: usize = 4096;
    /// Most job digests in an answer to `Digests` (a node holds at most this many records
    /// that others pull).
    pub const MAX_TABLE: usize = 65_536;
    /// Most render engines a heartbeat names.
    pub const MAX_ENGINES: usize = 8;
    /// Most addresses a heartbeat names.
    pub const MAX_ADDRS: usize = 16;
    /// Longest address a heartbeat names, in bytes.
    pub const MAX_ADDR_LEN: usize = 256;
    /// The tasks a heartbeat names besides its current one that count (`Heartbeat::held`).
    pub const MAX_HELD: usize = 4;
    /// Heartbeat period.
    pub const HEARTBEAT_MS: u64 = 1000;
    /// A peer unheard for this long is gone: two and a half missed heartbeats, so that a node
    /// killed at any moment has left every `peers` view within 3 s.
    pub const PEER_TIMEOUT_MS: u64 = 2500;
}

/// Everything that can be wrong with a message, an id or a value a person typed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message is larger than allowed.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A message does not decode.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What the decoder said.
        reason: String,
    },
    /// A message does not encode.
    #[error("cannot encode message: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
    /// An id in text form is wrong.
    #[error("bad {kind} `{text}`: expected {expected}")]
    BadId {
        /// Which id.
        kind: &'static str,
        /// The text given.
        text: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A frame range is wrong.
    #[error("bad frame range `{text}`: {reason}")]
    BadFrames {
        /// The text given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A tile grid is wrong.
    #[error("bad tile grid `{text}`: {reason}")]
    BadTiles {
        /// The text given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// An output format is unknown.
    #[error("unknown output format `{0}`: expected png, jpg, bmp or exr")]
    BadFormat(String),
    /// A job setting is out of range.
    #[error("bad {field}: {reason}")]
    BadSpec {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A heartbeat from a peer breaks a bound.
    #[error("bad heartbeat: {0}")]
    BadHeartbeat(String),
    /// A job record from a peer is not one a coordinator writes.
    #[error("bad record of job {job}: {reason}")]
    BadRecord {
        /// The job.
        job: crate::JobId,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_names_carry_no_control_characters_and_stay_short() {
        assert_eq!(printable("lab-1"), "lab-1");
        assert_eq!(printable("\x1b[2Jevil\r\n"), "?[2Jevil??");
        assert_eq!(printable(&"x".repeat(1000)).len(), limits::MAX_PRINTED_NAME);
    }
}
