//! Fetching blobs from peers, chunk by verified chunk.
//!
//! A fetch asks a peer for the blob's size and chunk chaining values ([`Request::BlobInfo`];
//! skipped for a blob of one chunk whose size is known, which its hash checks whole),
//! checks those against the hash (the store refuses values that do not merge to it), then
//! pulls the chunks, verifying each before it is written: on one blob stream
//! ([`crate::blob_stream`]) when there are several, else (or from a peer without blob streams)
//! by requests ([`Request::BlobChunk`]) a few at a time. Peers named as hints are tried first, then every connected rendermesh peer. A blob
//! already in the store, and whole ([`BlobStore::ensure`]), is never fetched again (a damaged
//! copy is), and concurrent fetches of one blob on one node
//! wait for each other rather than transfer it twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::PeerId;
use rendermesh_protocol::{BlobHash, NodeId, Request, Response, limits};
use tracing::{Instrument, debug, info_span};

use crate::Error;
use crate::blob_stream::{self, RangeError};
use crate::net::NetHandle;
use crate::store::{BlobInfo, BlobStore};

/// Chunk requests in flight per fetch.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The slowest transfer from one holder a fetch waits out, in bytes per second, before it
/// tries the next holder (a holder that answers each request just within the request
/// timeout, or a frozen one, would hold a fetch for ever).
const MIN_FETCH_RATE: u64 = 1 << 20;
/// The time every fetch from one holder may take, besides [`MIN_FETCH_RATE`].
const FETCH_FLOOR: Duration = Duration::from_secs(30);

/// How long a fetch waits before asking again the holders whose transfers broke off.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why a fetch from one holder failed.
enum Failure {
    /// It does not have the blob: not worth asking again.
    Lacks,
    /// Anything else (a broken transfer, a timeout, a bad chunk).
    Other(String),
}

/// How long a fetch of a blob of `size` bytes from one holder may take in all:
/// [`FETCH_FLOOR`] plus the size at [`MIN_FETCH_RATE`] (from 30 s for a frame to about 18 h
/// for the largest blob allowed).
pub fn fetch_deadline(size: u64) -> Duration {
    FETCH_FLOOR.saturating_add(Duration::from_secs(size / MIN_FETCH_RATE))
}

/// Fetches blobs from the mesh into the local store.
#[derive(Clone, Debug)]
pub struct Fetcher {
    net: NetHandle,
    store: BlobStore,
    /// One lock per blob being fetched, so a blob crosses the network once per node.
    in_flight: Arc<Mutex<HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Fetcher {
    /// A fetcher over `net` into `store`.
    pub fn new(net: NetHandle, store: BlobStore) -> Self {
        Self {
            net,
            store,
            in_flight: Arc::default(),
        }
    }

    /// The local path of `hash`, fetched from `hints` first, then from any connected peer.
    pub async fn fetch(&self, hash: BlobHash, hints: Vec<NodeId>) -> Result<PathBuf, Error> {
        self.fetch_sized(hash, None, hints).await
    }

    /// [`Fetcher::fetch`] of a blob whose size is known (from a job spec): a blob of one chunk
    /// or less then costs one round trip, not two, since its hash checks it whole (the chunk
    /// values `BlobInfo` would bring are only needed for larger blobs). A size that is wrong
    /// makes the fetch fail; nothing unverified is stored.
    pub async fn fetch_sized(
        &self,
        hash: BlobHash,
        size: Option<u64>,
        hints: Vec<NodeId>,
    ) -> Result<PathBuf, Error> {
        if self.store.ensure(&hash).await? {
            return Ok(self.store.path(&hash));
        }
        let lock = {
            // A panic while holding the map leaves it consistent (entries are only added
            // and removed whole): go on with it.
            let mut map = self
                .in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(hash).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            if self.store.has(&hash) {
                Ok(self.store.path(&hash))
            } else {
                // Checked just above: what is here now landed meanwhile, or is damaged.
                self.fetch_uncontended(hash, size, hints)
                    .instrument(info_span!("fetch", blob = %hash.short()))
                    .await
            }
        };
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(&hash);
        }
        result
    }

    /// Fetches every blob of `hashes` that is not here yet, each from `hints` first.
    pub async fn fetch_all(&self, hashes: Vec<BlobHash>, hints: Vec<NodeId>) -> Result<(), Error> {
        for hash in hashes {
            self.fetch(hash, hints.clone()).await?;
        }
        Ok(())
    }

    async fn fetch_uncontended(
        &self,
        hash: BlobHash,
        size: Option<u64>,
        hints: Vec<NodeId>,
    ) -> Result<PathBuf, Error> {
        let local = self.net.local_peer_id();
        let mut peers: Vec<PeerId> = hints.iter().filter_map(crate::net::peer_id).collect();
        for p in self.net.connected().await.map_err(|_| Error::Shutdown)? {
            if !peers.contains(&p) {
                peers.push(p);
            }
        }
        peers.retain(|p| *p != local);
        let mut last = String::from("no peer is connected");
        // A holder whose transfer broke off (its connection reset under load, say) is asked
        // once more, after the others; one that lacks the blob is not.
        for round in 0..2 {
            if round > 0 {
                if peers.is_empty() {
                    break;
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
            let mut again = Vec::new();
            for peer in std::mem::take(&mut peers) {
                match self.fetch_from(peer, hash, size).await {
                    Ok(path) => return Ok(path),
                    Err(Failure::Lacks) => {
                        debug!(%peer, "fetch failed: does not have it");
                        last = format!("{peer}: does not have it");
                    }
                    Err(Failure::Other(reason)) => {
                        debug!(%peer, round, "fetch failed: {reason}");
                        last = format!("{peer}: {reason}");
                        again.push(peer);
                    }
                }
            }
            peers = again;
        }
        Err(Error::BlobUnavailable { hash, reason: last })
    }

    async fn fetch_from(
        &self,
        peer: PeerId,
        hash: BlobHash,
        size: Option<u64>,
    ) -> Result<PathBuf, Failure> {
        let info = match size {
            Some(size) if size <= limits::BLOB_CHUNK => BlobInfo {
                size,
                chunks: Vec::new(),
            },
            _ => match self.net.request(peer, Request::BlobInfo(hash)).await {
                Ok(Response::BlobInfo { size, chunks }) => BlobInfo { size, chunks },
                Ok(Response::NotFound) => return Err(Failure::Lacks),
                Ok(other) => return Err(Failure::Other(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(Failure::Other(e.to_string())),
            },
        };
        self.store
            .check_room(info.size)
            .map_err(|e| Failure::Other(e.to_string()))?;
        let deadline = fetch_deadline(info.size);
        match tokio::time::timeout(deadline, self.fetch_chunks(peer, hash, info)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Other(format!(
                "took longer than {} s, the most a fetch of this size may take",
                deadline.as_secs()
            ))),
        }
    }

    /// Pulls every chunk of `hash` from `peer` into the store, on one blob stream, or chunk by
    /// chunk from a peer that does not serve them (dropped half-way, the partial file goes).
    async fn fetch_chunks(
        &self,
        peer: PeerId,
        hash: BlobHash,
        info: BlobInfo,
    ) -> Result<PathBuf, Failure> {
        let mut incoming = self
            .store
            .incoming(hash, &info)
            .map_err(|e| Failure::Other(e.to_string()))?;
        let count = incoming.chunk_count();
        // A blob of one chunk (a frame) costs one request either way; a stream would add the
        // negotiation of its protocol.
        if count > 1 {
            let mut streams = self.net.streams();
            match blob_stream::fetch_range(&mut streams, peer, &mut incoming, 0, count).await {
                Ok(()) => {
                    return incoming
                        .finish()
                        .await
                        .map_err(|e| Failure::Other(e.to_string()));
                }
                Err(RangeError::Unsupported) => {
                    debug!(%peer, "no blob streams there: fetching chunk by chunk");
                }
                Err(RangeError::Lacks) => return Err(Failure::Lacks),
                Err(RangeError::Failed(reason)) => return Err(Failure::Other(reason)),
            }
        }
        let net = self.net.clone();
        let mut chunks = futures::stream::iter(0..count)
            .map(|index| {
                let net = net.clone();
                async move {
                    let r = net.request(peer, Request::BlobChunk { hash, index }).await;
                    (index, r)
                }
            })
            .buffered(CHUNKS_IN_FLIGHT);
        while let Some((index, response)) = chunks.next().await {
            match response {
                Ok(Response::BlobChunk(data)) => incoming
                    .write_chunk(index, &data)
                    .await
                    .map_err(|e| Failure::Other(e.to_string()))?,
                Ok(Response::NotFound) => {
                    return Err(Failure::Other(format!("lost chunk {index}")));
                }
                Ok(other) => return Err(Failure::Other(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(Failure::Other(e.to_string())),
            }
        }
        incoming
            .finish()
            .await
            .map_err(|e| Failure::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_gets_its_floor_plus_a_second_per_mebibyte_and_never_overflows() {
        assert_eq!(fetch_deadline(0), FETCH_FLOOR);
        assert_eq!(
            fetch_deadline(100 << 20),
            FETCH_FLOOR + Duration::from_secs(100)
        );
        let largest = fetch_deadline(limits::MAX_BLOB);
        assert_eq!(largest, FETCH_FLOOR + Duration::from_secs(64 << 10));
        assert!(fetch_deadline(u64::MAX) > largest);
    }
}
