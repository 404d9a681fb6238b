//! The node library's errors.

use std::path::PathBuf;

use rendermesh_protocol::{BlobHash, JobId};

/// Everything a node operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node is shutting down or its actor is gone.
    #[error("the node has shut down")]
    Shutdown,
    /// A file or directory could not be read or written.
    #[error("{what} `{path}`")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No peer could supply a blob.
    #[error("blob {hash} is not available from any reachable node: {reason}")]
    BlobUnavailable {
        /// The blob.
        hash: BlobHash,
        /// The last failure.
        reason: String,
    },
    /// A job id is unknown.
    #[error("no job {0}")]
    UnknownJob(JobId),
    /// No coordinator is known yet.
    #[error("no coordinator is reachable yet: {0}")]
    NoCoordinator(String),
    /// The coordinator refused the request.
    #[error("refused by the coordinator: {0}")]
    Rejected(String),
    /// A value is invalid.
    #[error(transparent)]
    Protocol(#[from] rendermesh_protocol::Error),
    /// The network layer failed.
    #[error("network: {0}")]
    Network(String),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Blender could not be run, or failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
}
