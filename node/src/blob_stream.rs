//! Blobs in bulk, on streams: a fetcher opens a stream ([`BLOB_PROTOCOL`]) to a holder, asks
//! for a range of a blob's chunks ([`BlobRange`]), and reads them back raw and in order after a
//! short answer ([`BlobRangeAnswer`]), verifying each chunk against its chaining value before
//! it is written. A range costs one round trip, and a chunk no framing, encoding or copy on the
//! way; the per-chunk requests (`Request::BlobChunk`) remain for peers that do not speak it.
//!
//! Served straight from the store by the network layer (never through the mesh actor), to
//! identified rendermesh peers only, a bounded number at once.

use std::collections::HashSet;
use std::io::{self, Read as _};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use rendermesh_protocol::{BLOB_PROTOCOL, BlobRange, BlobRangeAnswer, codec, limits};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use crate::store::{BlobStore, Incoming};

/// How long a peer may take to send its request, or its answer, once the stream is open.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a chunk may take to cross, on either side, before the stream is given up: a stalled
/// or frozen peer never holds a transfer (or a serving slot) for ever.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams being served, or waiting for a slot, at once; more are dropped unanswered.
const MAX_STREAMS: usize = 64;
/// Times a fetch opens its stream when the holder drops it before answering.
const OPEN_ATTEMPTS: u32 = 5;
/// Chunks a fetch reads ahead of the one it writes (16 MiB).
const CHUNKS_AHEAD: usize = 16;

/// The peers identified as rendermesh nodes, kept by the network actor.
#[derive(Clone, Debug, Default)]
pub struct Identified(Arc<RwLock<HashSet<PeerId>>>);

impl Identified {
    /// Whether `peer` announced rendermesh's protocol version.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(peer)
    }

    /// Counts `peer` as identified (`true`) or not.
    pub fn set(&self, peer: PeerId, identified: bool) {
        let mut peers = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if identified {
            peers.insert(peer);
        } else {
            peers.remove(&peer);
        }
    }
}

/// The blob stream protocol's name.
pub fn protocol() -> StreamProtocol {
    StreamProtocol::new(BLOB_PROTOCOL)
}

/// Why a range could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// The peer does not speak [`BLOB_PROTOCOL`] (an older node): ask it chunk by chunk.
    #[error("it does not serve blob streams")]
    Unsupported,
    /// The peer does not hold the blob.
    #[error("does not have it")]
    Lacks,
    /// Anything else: the peer lacks the blob, refused, stalled, or sent a chunk that failed
    /// verification.
    #[error("{0}")]
    Failed(String),
}

/// Serves the blob streams peers open (`incoming`) from `store` until `shutdown`. Each takes
/// one of `permits` (shared with the per-chunk requests) while it sends; a peer not in
/// `identified` is refused.
pub async fn serve(
    mut incoming: IncomingStreams,
    store: BlobStore,
    identified: Identified,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut streams = JoinSet::new();
    loop {
        // New streams first: libp2p-stream keeps one waiting, and drops any other that comes.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                if streams.len() >= MAX_STREAMS {
                    debug!(%peer, "too many blob streams at once: one dropped");
                    continue;
                }
                let (store, identified, permits) =
                    (store.clone(), identified.clone(), permits.clone());
                streams.spawn(
                    async move {
                        if let Err(e) = serve_one(peer, stream, store, identified, permits).await {
                            debug!("blob stream ended early: {e}");
                        }
                    }
                    .instrument(debug_span!("blob stream", %peer)),
                );
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}

async fn serve_one(
    peer: PeerId,
    mut stream: Stream,
    store: BlobStore,
    identified: Identified,
    permits: Arc<Semaphore>,
) -> io::Result<()> {
    let range: BlobRange = within(HEADER_TIMEOUT, read_header(&mut stream)).await?;
    let _permit = permits.acquire_owned().await.ok();
    let opened = if identified.contains(&peer) {
        store
            .open_range(&range.hash, range.first, range.count)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("this node serves identified rendermesh peers only".into())
    };
    let (file, len) = match opened {
        Ok(Some(opened)) => opened,
        Ok(None) => return send_header(&mut stream, &BlobRangeAnswer::NotFound).await,
        Err(reason) => {
            let reason = reason.chars().take(200).collect();
            return send_header(&mut stream, &BlobRangeAnswer::Refused(reason)).await;
        }
    };
    send_header(&mut stream, &BlobRangeAnswer::Sending { len }).await?;
    // The next chunk is read from disk while the last one crosses.
    let (tx, mut chunks) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut left = len;
        while left > 0 {
            let n = left.min(limits::BLOB_CHUNK);
            let mut chunk = vec![0u8; n as usize];
            let read = file.read_exact(&mut chunk).map(|()| chunk);
            let failed = read.is_err();
            // The receiver is gone once the stream failed.
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            left -= n;
        }
    });
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        within(CHUNK_TIMEOUT, async {
            stream.write_all(&chunk).await?;
            stream.flush().await
        })
        .await?;
        store.count_served(1, chunk.len() as u64);
    }
    stream.close().await
}

/// Fetches chunks `first..first + count` of `incoming`'s blob from `peer` on one stream, each
/// verified before it is written. The next chunk crosses while the last one is verified and
/// written.
pub async fn fetch_range(
    control: &mut Control,
    peer: PeerId,
    incoming: &Incoming,
    first: u64,
    count: u64,
) -> Result<(), RangeError> {
    let failed = |e: io::Error| RangeError::Failed(e.to_string());
    let end = first
        .checked_add(count)
        .filter(|&end| end <= incoming.chunk_count())
        .ok_or_else(|| RangeError::Failed(format!("chunks {first}+{count} are not in the blob")))?;
    let expected: u64 = (first..end).map(|i| incoming.chunk_len(i)).sum();
    let range = BlobRange {
        hash: incoming.hash(),
        first,
        count,
    };
    // libp2p-stream hands the holder one new stream at a time and drops any that arrive while
    // one waits to be taken ("connection is closed" here, before any answer): open it again.
    let mut attempt = 1;
    let (mut stream, answer) = loop {
        let mut stream = match control.open_stream(peer, protocol()).await {
            Ok(stream) => stream,
            Err(OpenStreamError::UnsupportedProtocol(_)) => return Err(RangeError::Unsupported),
            Err(e) => return Err(RangeError::Failed(e.to_string())),
        };
        let asked = async {
            send_header(&mut stream, &range).await?;
            within(HEADER_TIMEOUT, read_header::<BlobRangeAnswer>(&mut stream)).await
        };
        match asked.await {
            Ok(answer) => break (stream, answer),
            Err(e) if attempt < OPEN_ATTEMPTS && e.kind() != io::ErrorKind::TimedOut => {
                debug!(%peer, attempt, "blob stream dropped before its answer ({e}): again");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(failed(e)),
        }
    };
    match answer {
        BlobRangeAnswer::Sending { len } if len == expected => {}
        BlobRangeAnswer::Sending { len } => {
            return Err(RangeError::Failed(format!(
                "it would send {len} bytes for chunks that hold {expected}"
            )));
        }
        BlobRangeAnswer::NotFound => return Err(RangeError::Lacks),
        BlobRangeAnswer::Refused(reason) => {
            return Err(RangeError::Failed(format!(
                "refused: {}",
                rendermesh_protocol::printable(&reason)
            )));
        }
    }
    // Chunks cross the network while those before them are verified and written (the disk
    // flushing now and then): up to `CHUNKS_AHEAD` wait between the two, and their buffers
    // come back for the next ones.
    let (arrived, mut to_write) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(CHUNKS_AHEAD);
    let (spares, mut spare) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_AHEAD + 1);
    let lens: Vec<usize> = (first..end)
        .map(|i| incoming.chunk_len(i) as usize)
        .collect();
    let read = async move {
        for (index, len) in (first..end).zip(lens) {
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(len, 0);
            within(CHUNK_TIMEOUT, stream.read_exact(&mut buf)).await?;
            if arrived.send((index, buf)).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
        }
        Ok::<(), io::Error>(())
    };
    let write = async {
        while let Some((index, data)) = to_write.recv().await {
            let buf = incoming.write_owned_chunk(index, data).await?;
            let _ = spares.try_send(buf);
        }
        Ok::<(), crate::store::StoreError>(())
    };
    let (read, written) = tokio::join!(read, write);
    written.map_err(|e| RangeError::Failed(e.to_string()))?;
    read.map_err(failed)
}

/// Reads one length-prefixed header of at most [`limits::MAX_BLOB_STREAM_HEADER`] bytes.
async fn read_header<T: serde::de::DeserializeOwned>(stream: &mut Stream) -> io::Result<T> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let len = codec::check_frame_len(prefix, limits::MAX_BLOB_STREAM_HEADER).map_err(invalid)?;
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    codec::decode(&bytes, limits::MAX_BLOB_STREAM_HEADER).map_err(invalid)
}

/// Writes one length-prefixed header, and flushes it.
async fn send_header<T: serde::Serialize>(stream: &mut Stream, msg: &T) -> io::Result<()> {
    let bytes = codec::encode(msg, limits::MAX_BLOB_STREAM_HEADER).map_err(invalid)?;
    stream.write_all(&codec::frame_prefix(bytes.len())).await?;
    stream.write_all(&bytes).await?;
    stream.flush().await
}

fn invalid(e: rendermesh_protocol::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// `work`, or a timeout error once `limit` has passed.
async fn within<T>(limit: Duration, work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer stalled"))?
}
