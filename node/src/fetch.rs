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
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;
use rendermesh_protocol::{BlobHash, NodeId, Request, Response, limits};
use tracing::{Instrument, debug, info_span};

use crate::Error;
use crate::blob_stream::{self, RangeError};
use crate::core::Millis;
use crate::core::swarm::{self, Said, Source, Swarm, hash_u64};
use crate::net::{self, NetHandle};
use crate::store::{BlobInfo, BlobStore, Incoming, chunk_count};

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
/// How often a fetch in pieces asks its sources again what they hold.
const ASK_AGAIN: Duration = Duration::from_millis(swarm::ASK_AGAIN);
/// How long a source may take to say what it holds before it is asked again next time.
const ASK_TIMEOUT: Duration = Duration::from_millis(swarm::ASK_TIMEOUT);
/// Peers a fetch takes pieces from, at most: the origin, then other connected nodes.
const MAX_SOURCES: usize = 16;

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
        let sources = self.sources(&hints).await?;
        let unavailable = |reason: String| Error::BlobUnavailable { hash, reason };
        if sources.is_empty() {
            return Err(unavailable("no peer is connected".into()));
        }
        let info = match size {
            Some(size) if size <= limits::BLOB_CHUNK => BlobInfo {
                size,
                chunks: Vec::new(),
            },
            _ => self.ask_info(hash, &sources).await.map_err(unavailable)?,
        };
        self.store.check_room(info.size)?;
        let deadline = fetch_deadline(info.size);
        let fetched = async {
            if chunk_count(info.size) > 1 {
                self.fetch_swarm(hash, &info, sources).await
            } else {
                self.fetch_one_chunk(hash, &info, &sources).await
            }
        };
        match tokio::time::timeout(deadline, fetched).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!(
                "took longer than {} s, the most a fetch of this size may take",
                deadline.as_secs()
            ))),
        }
    }

    /// Who may hold a blob: the peers `hints` names (its origin), then the other connected
    /// rendermesh peers, at most [`MAX_SOURCES`] in all, never this node.
    async fn sources(&self, hints: &[NodeId]) -> Result<Vec<(PeerId, bool)>, Error> {
        let local = self.net.local_peer_id();
        let mut sources: Vec<(PeerId, bool)> = Vec::new();
        let origins = hints
            .iter()
            .filter_map(crate::net::peer_id)
            .map(|p| (p, true));
        let others = self.net.connected().await.map_err(|_| Error::Shutdown)?;
        for (peer, origin) in origins.chain(others.into_iter().map(|p| (p, false))) {
            if peer != local && !sources.iter().any(|(p, _)| *p == peer) {
                sources.push((peer, origin));
            }
        }
        sources.truncate(MAX_SOURCES);
        Ok(sources)
    }

    /// A blob's size and chunk values, from the first source that says (the origin first).
    async fn ask_info(
        &self,
        hash: BlobHash,
        sources: &[(PeerId, bool)],
    ) -> Result<BlobInfo, String> {
        first_to_answer(sources, |peer| async move {
            match self.net.request(peer, Request::BlobInfo(hash)).await {
                Ok(Response::BlobInfo { size, chunks }) => Ok(BlobInfo { size, chunks }),
                Ok(Response::NotFound) => Err(Failure::Lacks),
                Ok(other) => Err(Failure::Other(format!("unexpected answer {other:?}"))),
                Err(e) => Err(Failure::Other(e.to_string())),
            }
        })
        .await
    }

    /// A blob of one chunk, checked whole against its hash: one request to the first source
    /// that has it.
    async fn fetch_one_chunk(
        &self,
        hash: BlobHash,
        info: &BlobInfo,
        sources: &[(PeerId, bool)],
    ) -> Result<PathBuf, String> {
        let incoming = self.store.incoming(hash, info).map_err(|e| e.to_string())?;
        first_to_answer(sources, |peer| {
            self.fetch_by_requests(peer, &incoming, 0..1)
        })
        .await?;
        incoming.finish().await.map_err(|e| e.to_string())
    }

    /// A blob of several chunks, in pieces from every source that holds them, the origin last
    /// ([`Swarm`]): several pieces in flight, each on a blob stream of its own, written into
    /// one file as they verify; what has arrived is served to other nodes meanwhile.
    async fn fetch_swarm(
        &self,
        hash: BlobHash,
        info: &BlobInfo,
        sources: Vec<(PeerId, bool)>,
    ) -> Result<PathBuf, String> {
        let incoming = self.store.incoming(hash, info).map_err(|e| e.to_string())?;
        let local = self.net.local_peer_id();
        let seed = hash_u64(&[&local.to_bytes(), &hash.0]);
        let me = net::node_id(&local).ok_or("this node's peer id is not a node id")?;
        let sources = sources
            .into_iter()
            .filter_map(|(peer, origin)| Some((net::node_id(&peer)?, origin)))
            .collect();
        let mut swarm = Swarm::new(me, incoming.chunk_count(), sources, seed);
        // The swarm's clock: milliseconds since the fetch began.
        let began = Instant::now();
        let now = || began.elapsed().as_millis() as Millis;
        let mut pieces = futures::stream::FuturesUnordered::new();
        let mut asking = Some(Box::pin(self.ask_held(hash, swarm.sources())));
        let mut next_ask = tokio::time::Instant::now() + ASK_AGAIN;
        let mut last = String::from("no peer holds it");
        // Answers heard since the fetch stood still with a piece nowhere.
        let mut heard_while_stuck = 0;
        // Nothing is asked before the sources have said what they hold, and which of them fetch
        // the blob too (else every node would take its first runs from the origin).
        let mut heard = false;
        while !swarm.done() {
            while let Some(ask) = heard.then(|| swarm.pick(now())).flatten() {
                let range = swarm.chunks_of(ask.pieces.clone());
                let Some(peer) = net::peer_id(&swarm.sources()[ask.source].peer) else {
                    swarm.failed(&ask, true, now(), |_| false);
                    continue;
                };
                incoming.expect(range.start, range.end - range.start, true);
                let incoming = &incoming;
                pieces.push(
                    async move { (ask, peer, self.fetch_piece(peer, incoming, range).await) },
                );
            }
            if heard_while_stuck >= 2 && pieces.is_empty() {
                return Err(last);
            }
            tokio::select! {
                Some((ask, peer, result)) = pieces.next() => match result {
                    Ok(()) => swarm.arrived(&ask),
                    Err(failure) => {
                        let range = swarm.chunks_of(ask.pieces.clone());
                        incoming.expect(range.start, range.end - range.start, false);
                        let lacked = matches!(failure, Failure::Lacks);
                        last = match failure {
                            Failure::Lacks => format!("{peer}: does not have it"),
                            Failure::Other(reason) => format!("{peer}: {reason}"),
                        };
                        debug!(?ask, "pieces failed: {last}");
                        let held = |chunks: std::ops::Range<u64>| chunks.into_iter().all(|i| incoming.holds(i));
                        swarm.failed(&ask, lacked, now(), held);
                    }
                },
                answers = async { asking.as_mut().expect("asking").await }, if asking.is_some() => {
                    asking = None;
                    heard = true;
                    let at = now();
                    for (source, holding) in answers {
                        swarm.heard(source, holding, at);
                    }
                    heard_while_stuck = if swarm.stuck() { heard_while_stuck + 1 } else { 0 };
                }
                _ = tokio::time::sleep_until(next_ask), if asking.is_none() => {
                    asking = Some(Box::pin(self.ask_held(hash, swarm.sources())));
                    next_ask = tokio::time::Instant::now() + ASK_AGAIN;
                }
            }
        }
        drop(pieces);
        incoming.finish().await.map_err(|e| e.to_string())
    }

    /// What each of `sources` holds of `hash`, by index: `None` for one that has none of it
    /// (or cannot say).
    fn ask_held(
        &self,
        hash: BlobHash,
        sources: &[Source],
    ) -> impl Future<Output = Vec<(usize, Option<Said>)>> + use<> {
        let net = self.net.clone();
        let peers: Vec<(usize, PeerId, bool)> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, net::peer_id(&s.peer)?, s.origin)))
            .collect();
        async move {
            let asks = peers.into_iter().map(|(i, peer, origin)| {
                let net = net.clone();
                async move {
                    let answer = tokio::time::timeout(
                        ASK_TIMEOUT,
                        net.request(peer, Request::BlobHave(hash)),
                    )
                    .await;
                    match answer {
                        Ok(Ok(Response::BlobHave {
                            chunks,
                            held,
                            coming,
                        })) => {
                            let held = rendermesh_protocol::read_chunk_bits(chunks, &held);
                            let coming = rendermesh_protocol::read_chunk_bits(chunks, &coming);
                            Some((i, held.zip(coming)))
                        }
                        Ok(Ok(Response::NotFound)) => Some((i, None)),
                        // An origin that cannot say (an older node) is taken to hold it all;
                        // any other source, to hold nothing. One that did not answer in time
                        // is asked again next time.
                        Ok(Ok(_)) | Ok(Err(_)) => (!origin).then_some((i, None)),
                        Err(_) => None,
                    }
                }
            });
            futures::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
                .collect()
        }
    }

    /// Chunks `range` of `incoming`'s blob from `peer`: on one blob stream, or chunk by chunk
    /// from a peer that does not serve them.
    async fn fetch_piece(
        &self,
        peer: PeerId,
        incoming: &Incoming,
        range: std::ops::Range<u64>,
    ) -> Result<(), Failure> {
        let mut streams = self.net.streams();
        let count = range.end - range.start;
        match blob_stream::fetch_range(&mut streams, peer, incoming, range.start, count).await {
            Ok(()) => Ok(()),
            Err(RangeError::Unsupported) => {
                debug!(%peer, "no blob streams there: fetching chunk by chunk");
                self.fetch_by_requests(peer, incoming, range).await
            }
            Err(RangeError::Lacks) => Err(Failure::Lacks),
            Err(RangeError::Failed(reason)) => Err(Failure::Other(reason)),
        }
    }

    /// Chunks `range` of `incoming`'s blob from `peer`, a request each, a few in flight.
    async fn fetch_by_requests(
        &self,
        peer: PeerId,
        incoming: &Incoming,
        range: std::ops::Range<u64>,
    ) -> Result<(), Failure> {
        let hash = incoming.hash();
        let net = self.net.clone();
        let mut chunks = futures::stream::iter(range)
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
                Ok(Response::NotFound) => return Err(Failure::Lacks),
                Ok(other) => return Err(Failure::Other(format!("unexpected answer {other:?}"))),
                Err(e) => return Err(Failure::Other(e.to_string())),
            }
        }
        Ok(())
    }
}

/// The first answer to `ask` from `sources`, in order; a source whose answer broke off (its
/// connection reset under load, say), not one that lacks the blob, is asked once more after the
/// others and [`RETRY_AFTER`]. The error names the last source's failure.
async fn first_to_answer<T, F, Fut>(sources: &[(PeerId, bool)], ask: F) -> Result<T, String>
where
    F: Fn(PeerId) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut last = String::from("no peer is connected");
    let mut peers: Vec<PeerId> = sources.iter().map(|(p, _)| *p).collect();
    for round in 0..2 {
        if round > 0 && !peers.is_empty() {
            tokio::time::sleep(RETRY_AFTER).await;
        }
        let mut again = Vec::new();
        for peer in std::mem::take(&mut peers) {
            match ask(peer).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Lacks) => last = format!("{peer}: does not have it"),
                Err(Failure::Other(reason)) => {
                    debug!(%peer, round, "asked in vain: {reason}");
                    last = format!("{peer}: {reason}");
                    again.push(peer);
                }
            }
        }
        peers = again;
    }
    Err(last)
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
