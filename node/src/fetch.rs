//! Fetching blobs from peers, chunk by verified chunk.

use std::path::PathBuf;

use rendermesh_protocol::{BlobHash, NodeId};

use crate::Error;

/// Fetches blobs from the mesh into the local store.
#[derive(Clone, Debug)]
pub struct Fetcher {}

impl Fetcher {
    /// The local path of `hash`, fetched from `hints` first, then from any connected peer.
    pub async fn fetch(&self, hash: BlobHash, hints: Vec<NodeId>) -> Result<PathBuf, Error> {
        let _ = hints;
        Err(Error::BlobUnavailable {
            hash,
            reason: "not yet wired".into(),
        })
    }
}
