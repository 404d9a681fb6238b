//! `rendermesh bench --transfer MIB`: the same bytes moved between two endpoints on loopback
//! three ways, in one run, so their ratios mean something on a noisy machine:
//!
//! - (a) a plain TCP copy;
//! - (b) a bare stream on the mesh's own transport (TCP, `pnet` under a mesh key, Noise,
//!   Yamux): two network actors as nodes run them, one pushing the bytes to the other;
//! - (c) a blob fetch between the same two actors' stores, as a node fetches a `.blend`
//!   ([`Fetcher`]: the blob's chunk values, then its chunks, each verified and written to disk,
//!   then the whole file checked).
//!
//! (b) and (c) run twice: under a mesh key (every mesh but an `--open` one) and without. (d),
//! the same bytes written to a file in the scratch directory and flushed, is the disk's part
//! of (c): here both ends, the disk's writes and the hashing share one machine's cores.
//! (c) against (b) is what the blob protocol costs over its transport; (b) against (a) what the
//! transport costs over TCP.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::fetch::Fetcher;
use crate::net::{self, NetConfig, NetHandle};
use crate::secret::MeshSecret;
use crate::store::BlobStore;

/// The protocol of (b): bytes pushed until the stream closes. Only the bench listens on it.
const PUSH_PROTOCOL: &str = "/rendermesh/bench-push/1";
/// Bytes per write, on every path.
const PIECE: usize = 1 << 20;

/// The times, for `bytes` bytes each.
#[derive(Clone, Debug)]
pub struct TransferResult {
    /// Bytes moved each way.
    pub bytes: u64,
    /// (a) plain TCP.
    pub tcp: Duration,
    /// (d) written to a file and flushed.
    pub disk: Duration,
    /// (b) and (c) under a mesh key.
    pub keyed: MeshTimes,
    /// (b) and (c) in an open mesh.
    pub open: MeshTimes,
}

/// (b) and (c) on one kind of mesh.
#[derive(Clone, Copy, Debug)]
pub struct MeshTimes {
    /// (b) a bare stream on the mesh's transport.
    pub stream: Duration,
    /// (c) a blob fetch.
    pub fetch: Duration,
}

impl TransferResult {
    /// `d`'s throughput in MiB/s.
    pub fn mib_per_s(&self, d: Duration) -> f64 {
        self.bytes as f64 / f64::from(1u32 << 20) / d.as_secs_f64().max(1e-9)
    }
}

/// Moves `mib` MiB each way (see the module docs), with scratch files under `work_dir`.
pub async fn run(mib: u64, work_dir: &Path) -> Result<TransferResult, Error> {
    let data = bench_bytes(mib, b"rendermesh transfer bench")?;
    let bytes = data.len() as u64;
    let tcp = tcp_copy(&data).await?;
    let disk = write_and_flush(&data, work_dir).await?;
    let mut times = Vec::new();
    for keyed in [true, false] {
        let shutdown = CancellationToken::new();
        let dir = work_dir.join(if keyed { "keyed" } else { "open" });
        let result = over_the_mesh(&data, keyed, &dir, &shutdown).await;
        shutdown.cancel();
        times.push(result?);
    }
    Ok(TransferResult {
        bytes,
        tcp,
        disk,
        keyed: times[0],
        open: times[1],
    })
}

/// `mib` MiB that do not compress or repeat: blake3's output stream for `seed`.
fn bench_bytes(mib: u64, seed: &[u8]) -> Result<Vec<u8>, Error> {
    let bytes = mib
        .checked_mul(1 << 20)
        .filter(|&b| b > 0 && b <= rendermesh_protocol::limits::MAX_BLOB)
        .ok_or_else(|| Error::Rejected(format!("cannot move {mib} MiB")))?;
    let mut data = vec![0u8; bytes as usize];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut data);
    Ok(data)
}

/// (a): `data` through a loopback TCP connection, until the reader has it all.
async fn tcp_copy(data: &[u8]) -> Result<Duration, Error> {
    let io = |e: std::io::Error| Error::Network(format!("TCP copy: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let len = data.len();
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; PIECE];
        let mut got = 0;
        while got < len {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<usize, std::io::Error>(got)
    });
    let start = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    for piece in data.chunks(PIECE) {
        socket.write_all(piece).await.map_err(io)?;
    }
    socket.shutdown().await.map_err(io)?;
    let got = reader
        .await
        .map_err(|e| Error::Network(e.to_string()))?
        .map_err(io)?;
    let took = start.elapsed();
    check_len(got as u64, len as u64)?;
    Ok(took)
}

/// `fetchers` nodes fetching one blob from its origin at once.
#[derive(Clone, Debug)]
pub struct SwarmResult {
    /// The blob's size.
    pub bytes: u64,
    /// How many nodes fetched it.
    pub fetchers: usize,
    /// From the fetches' start until the last one ended.
    pub took: Duration,
    /// What the origin uploaded, in bytes.
    pub origin_served: u64,
}

impl SwarmResult {
    /// What the origin uploaded, in copies of the blob.
    pub fn origin_copies(&self) -> f64 {
        self.origin_served as f64 / self.bytes.max(1) as f64
    }
}

/// A keyed mesh of one origin holding a blob of `mib` MiB and `fetchers` nodes that all fetch
/// it at once, with scratch files under `work_dir`: how long until every one holds it, and what
/// the origin uploaded.
pub async fn swarm(mib: u64, fetchers: usize, work_dir: &Path) -> Result<SwarmResult, Error> {
    let data = bench_bytes(mib, b"rendermesh swarm bench")?;
    let bytes = data.len() as u64;
    let shutdown = CancellationToken::new();
    let result = swarm_on(&data, fetchers, &work_dir.join("swarm"), &shutdown).await;
    shutdown.cancel();
    let (took, origin_served) = result?;
    Ok(SwarmResult {
        bytes,
        fetchers,
        took,
        origin_served,
    })
}

async fn swarm_on(
    data: &[u8],
    fetchers: usize,
    dir: &Path,
    shutdown: &CancellationToken,
) -> Result<(Duration, u64), Error> {
    let secret = Some(MeshSecret::generate());
    let (origin, origin_store) = actor("origin", dir, secret, Vec::new(), shutdown)?;
    let addr = listening(&origin).await?;
    // Each dials the origin and those before it, as nodes that found each other would.
    let (mut nodes, mut addrs) = (Vec::new(), vec![addr]);
    for i in 0..fetchers {
        let node = actor(
            &format!("fetcher-{i}"),
            dir,
            secret,
            addrs.clone(),
            shutdown,
        )?;
        addrs.push(listening(&node.0).await?);
        nodes.push(node);
    }
    // As in a settled mesh: every node in touch with every other.
    for (node, _) in &nodes {
        wait_connected(node, origin.local_peer_id()).await?;
        wait_connected(&origin, node.local_peer_id()).await?;
        for (other, _) in &nodes {
            if other.local_peer_id() != node.local_peer_id() {
                wait_connected(node, other.local_peer_id()).await?;
            }
        }
    }
    let hash = origin_store.put_bytes(data).await?;
    let hint = net::node_id(&origin.local_peer_id())
        .ok_or_else(|| Error::Network("a bad peer id".into()))?;
    let start = Instant::now();
    let fetches = nodes.iter().map(|(node, store)| {
        let fetcher = Fetcher::new(node.clone(), store.clone());
        let hints = vec![hint.clone()];
        async move { fetcher.fetch(hash, hints).await }
    });
    for fetched in futures::future::join_all(fetches).await {
        fetched?;
    }
    Ok((start.elapsed(), origin_store.stats().bytes_served))
}

/// (d): `data` written to a file under `dir` and flushed to the disk.
async fn write_and_flush(data: &[u8], dir: &Path) -> Result<Duration, Error> {
    let io = |e: std::io::Error| Error::Network(format!("disk write: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let path = dir.join("disk-bench");
    let start = Instant::now();
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    for piece in data.chunks(PIECE) {
        file.write_all(piece).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    let took = start.elapsed();
    drop(file);
    tokio::fs::remove_file(&path).await.map_err(io)?;
    Ok(took)
}

/// (b) and (c), on two network actors on loopback.
async fn over_the_mesh(
    data: &[u8],
    keyed: bool,
    work_dir: &Path,
    shutdown: &CancellationToken,
) -> Result<MeshTimes, Error> {
    let secret = keyed.then(MeshSecret::generate);
    let (a, a_store) = actor("a", work_dir, secret, Vec::new(), shutdown)?;
    let a_addr = listening(&a).await?;
    let (b, b_store) = actor("b", work_dir, secret, vec![a_addr], shutdown)?;
    let a_peer = a.local_peer_id();
    wait_connected(&b, a_peer).await?;
    wait_connected(&a, b.local_peer_id()).await?;

    // (b): b pushes the bytes to a on a bare stream; a counts them.
    let mut incoming = a
        .streams()
        .accept(StreamProtocol::new(PUSH_PROTOCOL))
        .map_err(|e| Error::Network(e.to_string()))?;
    let len = data.len() as u64;
    let reader = tokio::spawn(async move {
        let (_, mut stream) = incoming
            .next()
            .await
            .ok_or_else(|| std::io::Error::other("no stream came"))?;
        let mut buf = vec![0u8; PIECE];
        let mut got = 0u64;
        while got < len {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok::<u64, std::io::Error>(got)
    });
    let io = |e: std::io::Error| Error::Network(format!("stream push: {e}"));
    let start = Instant::now();
    let mut stream = b
        .streams()
        .open_stream(a_peer, StreamProtocol::new(PUSH_PROTOCOL))
        .await
        .map_err(|e| Error::Network(format!("stream push: {e}")))?;
    for piece in data.chunks(PIECE) {
        stream.write_all(piece).await.map_err(io)?;
    }
    stream.close().await.map_err(io)?;
    let got = reader
        .await
        .map_err(|e| Error::Network(e.to_string()))?
        .map_err(io)?;
    let pushed = start.elapsed();
    check_len(got, len)?;

    // (c): b fetches the same bytes from a's store.
    let hash = a_store.put_bytes(data).await?;
    let a_node = net::node_id(&a_peer).ok_or_else(|| Error::Network("a bad peer id".into()))?;
    let fetcher = Fetcher::new(b.clone(), b_store.clone());
    let start = Instant::now();
    fetcher.fetch(hash, vec![a_node]).await?;
    let fetched = start.elapsed();
    check_len(b_store.stats().bytes_received, len)?;
    Ok(MeshTimes {
        stream: pushed,
        fetch: fetched,
    })
}

/// A network actor named `name` with a store of its own, joining `bootstrap`.
fn actor(
    name: &str,
    work_dir: &Path,
    secret: Option<MeshSecret>,
    bootstrap: Vec<Multiaddr>,
    shutdown: &CancellationToken,
) -> Result<(NetHandle, BlobStore), Error> {
    let dir = work_dir.join(name);
    let store = BlobStore::open(&dir.join("blobs"))?;
    let key = libp2p::identity::Keypair::generate_ed25519();
    let config = NetConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .map_err(|e| Error::Network(format!("{e}")))?,
        ],
        bootstrap,
        mdns: false,
        secret,
    };
    let (handle, mut events, _task) = net::start(&key, config, store.clone(), shutdown.clone())
        .map_err(|e| Error::Network(e.to_string()))?;
    // Nobody answers requests here but the actor itself (blobs): drain the rest.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok((handle, store))
}

/// The first address `handle` listens on, once it does.
async fn listening(handle: &NetHandle) -> Result<Multiaddr, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let addrs = handle
            .addresses()
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        if let Some(addr) = addrs.into_iter().next() {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            return Err(Error::Network("the bench node never listened".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `handle` is connected to `peer` and has identified it as a rendermesh node.
async fn wait_connected(handle: &NetHandle, peer: PeerId) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connected = handle
            .connected()
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        if connected.contains(&peer) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Network("the bench nodes never connected".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_len(got: u64, want: u64) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Network(format!("moved {got} bytes of {want}")))
    }
}
