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
    /// The API would listen beyond this machine without a token: anyone who reaches it could
    /// submit and cancel jobs and read every frame.
    #[error(
        "the API address {addr} is not loopback: other machines could drive this node through it, \
         so pass --api-token FILE (a secret of at least {min} characters) or keep --api on 127.0.0.1",
        min = crate::config::MIN_API_TOKEN
    )]
    ApiWithoutToken {
        /// The API address asked for.
        addr: std::net::SocketAddr,
    },
    /// An API token cannot be used (too short, or holds characters a header cannot carry).
    #[error("bad API token{}: {reason}", .file.as_ref().map(|f| format!(" in `{}`", f.display())).unwrap_or_default())]
    BadApiToken {
        /// The file it was read from, if it came from one.
        file: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is invalid.
    #[error(transparent)]
    Protocol(#[from] rendermesh_protocol::Error),
    /// The network layer failed.
    #[error("network: {0}")]
    Network(String),
    /// The job database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Blender could not be run, or failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),

    /// A chart could not be built into a `.blend` (the cause quotes Blender).
    #[error("cannot build the chart: {0}")]
    ChartBuild(String),
}
