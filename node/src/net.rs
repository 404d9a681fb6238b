//! The network actor: owns the libp2p `Swarm`, keeps rendermesh peers connected, serves blob
//! chunks from the store, and passes every other message to the mesh actor.
//!
//! Transport: TCP (Noise, Yamux; wrapped in `pnet` when the mesh has a key). No QUIC: pnet
//! cannot wrap it, so a keyed mesh never used it, and one transport is one path to secure and
//! measure. Behaviours: connection limits, identify (only peers
//! announcing [`IDENTIFY_VERSION`] count; others are disconnected), mDNS (optional),
//! Kademlia under rendermesh's own protocol name (server mode), gossipsub for heartbeats and
//! request-response ([`RPC_PROTOCOL`]) with a length-prefixed bincode codec for everything else.
//!
//! The actor keeps every rendermesh peer it learns of connected (LAN meshes are small): peers
//! come from mDNS, Kademlia, bootstrap addresses and the addresses in heartbeats.
//!
//! Inbound blob requests are served here straight from the [`BlobStore`] (bounded by a
//! semaphore), so a busy mesh actor never delays a transfer; every other inbound request goes
//! to the mesh actor as a [`NetEvent::Request`] with a reply channel.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::{ConnectedPoint, Transport, upgrade};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, mdns,
    noise, tcp, yamux,
};
use rendermesh_protocol::{
    Gossip, HEARTBEAT_TOPIC, IDENTIFY_VERSION, KAD_PROTOCOL, NodeId, RPC_PROTOCOL, Request,
    Response, codec, limits,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::blob_stream::{self, Identified};
use crate::secret::MeshSecret;
use crate::store::BlobStore;

/// How long a request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Blob chunks served at once.
const MAX_CONCURRENT_SERVES: usize = 16;
/// How long a TCP connection may take to become an authenticated, multiplexed one.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Failed dials after which a peer found by mDNS is no longer redialled (until mDNS finds it
/// again).
const MAX_LAN_REDIALS: u32 = 6;
/// How often bootstrap and LAN peers we are not connected to are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(5);
/// How often Kademlia looks for more peers while this node is in touch with no rendermesh
/// node but bootstrap nodes (it is joining, or cut off).
const KAD_BOOTSTRAP_EVERY: Duration = Duration::from_secs(30);
/// How often once it is in touch with one: the coordinator's membership record names every
/// member and its addresses, so the lookups only find what the record missed (two groups that
/// joined through different bootstrap nodes, say). Each lookup asks up to 20 peers, and every
/// node answering every other's cost an idle 40-node mesh half of each node's CPU at 30 s
/// (`scripts/idle-cpu`, docs/BENCHMARKS.md).
const KAD_BOOTSTRAP_SETTLED: Duration = Duration::from_secs(300);

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The network actor is gone.
    #[error("the network actor has shut down")]
    Shutdown,
    /// A request to a peer failed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The swarm could not be built or could not listen.
    #[error("cannot start the network: {0}")]
    Setup(String),
    /// The identity key could not be read or written.
    #[error("identity key `{path}`: {reason}")]
    Identity {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What the network tells the mesh actor.
#[derive(Debug)]
pub enum NetEvent {
    /// A heartbeat (or other gossip) from a rendermesh peer; `from` is its signed source.
    Gossip {
        /// The original publisher.
        from: PeerId,
        /// The message.
        msg: Gossip,
    },
    /// A request to answer; drop `reply` to refuse it.
    Request {
        /// The requesting peer (authenticated by Noise/TLS).
        from: PeerId,
        /// The request.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
}

enum NetCommand {
    Request {
        peer: PeerId,
        request: Box<Request>,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    Publish(Vec<u8>),
    Dial(PeerId, Vec<Multiaddr>),
    Addresses(oneshot::Sender<Vec<Multiaddr>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// A cloneable handle on the network actor.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<NetCommand>,
    local: PeerId,
    /// Kept current by the actor: see [`NetHandle::contacts`].
    contacts: Arc<AtomicUsize>,
    /// Opens streams to peers (blobs in bulk).
    streams: libp2p_stream::Control,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NetCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetCommand")
    }
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Sends `request` to `peer` and waits for its response.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(NetCommand::Request {
                peer,
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    /// Publishes a gossip message (a lone node has nobody to publish to; that is no error).
    pub async fn publish(&self, msg: &Gossip) -> Result<(), NetError> {
        let bytes = codec::encode(msg, limits::MAX_GOSSIP)
            .map_err(|e| NetError::Setup(format!("heartbeat does not encode: {e}")))?;
        self.tx
            .send(NetCommand::Publish(bytes))
            .await
            .map_err(|_| NetError::Shutdown)
    }

    /// Connects to `peer` at `addrs` unless already connected.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        self.tx
            .send(NetCommand::Dial(peer, addrs))
            .await
            .map_err(|_| NetError::Shutdown)
    }

    /// The addresses this node listens on, each ending in `/p2p/<id>`.
    pub async fn addresses(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(NetCommand::Addresses(tx))
            .await
            .map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)
    }

    /// How many other machines this node is in touch with now: peers connected, bootstrap
    /// nodes not connected whose dial has not failed, and LAN neighbours found by mDNS and not
    /// connected whose dials have not failed. Zero: the node is alone.
    pub fn contacts(&self) -> usize {
        self.contacts.load(Ordering::Relaxed)
    }

    /// Opens streams to peers, for [`crate::blob_stream`] (and the transfer bench).
    pub fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    /// The rendermesh peers connected now.
    pub async fn connected(&self) -> Result<Vec<PeerId>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(NetCommand::Connected(tx))
            .await
            .map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)
    }
}

/// The network's settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Nodes to join through (with `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover LAN peers by mDNS.
    pub mdns: bool,
    /// The mesh secret: with one, every connection is wrapped in `pnet`.
    pub secret: Option<MeshSecret>,
}

/// The node a peer is: its peer id's bytes, unchanged. `None` only for a peer id longer than
/// [`NodeId::MAX_LEN`], which libp2p does not make.
pub fn node_id(peer: &PeerId) -> Option<NodeId> {
    NodeId::from_bytes(peer.to_bytes()).ok()
}

/// The peer a node is; `None` when its bytes are not a peer id.
pub fn peer_id(node: &NodeId) -> Option<PeerId> {
    PeerId::from_bytes(node.as_bytes()).ok()
}

/// Whether a multiaddr runs over QUIC, which rendermesh does not speak.
pub fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

/// Loads the node's identity key from `dir/identity.key`, creating it on first start, so the
/// peer id (and so every printed multiaddr) survives restarts.
pub fn load_identity(dir: &Path) -> Result<Keypair, NetError> {
    let path = dir.join("identity.key");
    let bad = |reason: String| NetError::Identity {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            bad(format!(
                "not a valid key ({e}); move it away to get a new id"
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| bad(e.to_string()))?;
            crate::secret::create_private_dir(dir).map_err(|e| bad(e.to_string()))?;
            // Created owner-only (never briefly readable by others), then renamed into place.
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            crate::secret::write_private(&tmp, &bytes).map_err(|e| bad(e.to_string()))?;
            std::fs::rename(&tmp, &path).map_err(|e| bad(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The request-response codec: a 4-byte big-endian length, then a bincode message, both
/// bounded by [`limits::MAX_MESSAGE`] before anything is allocated.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcCodec;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = codec::check_frame_len(prefix, limits::MAX_MESSAGE)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    io.write_all(&codec::frame_prefix(bytes.len())).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: rendermesh_protocol::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io).await?;
        codec::decode(&bytes, limits::MAX_MESSAGE).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io).await?;
        codec::decode(&bytes, limits::MAX_MESSAGE).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        let bytes = codec::encode(&req, limits::MAX_MESSAGE).map_err(invalid)?;
        write_frame(io, &bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        let bytes = codec::encode(&res, limits::MAX_MESSAGE).map_err(invalid)?;
        write_frame(io, &bytes).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::Behaviour<RpcCodec>,
    stream: libp2p_stream::Behaviour,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn build_swarm(key: &Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let mdns_on = config.mdns;
    let tcp_config = || tcp::Config::default().nodelay(true);
    let builder = libp2p::SwarmBuilder::with_existing_identity(key.clone()).with_tokio();
    let swarm = match config.secret {
        Some(secret) => builder
            .with_other_transport(|key| -> Result<_, BoxError> {
                let psk = secret.key();
                Ok(tcp::tokio::Transport::new(tcp_config())
                    .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                    .upgrade(upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .timeout(HANDSHAKE_TIMEOUT))
            })
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| behaviour(key, mdns_on))
            .map_err(|e| setup(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        None => builder
            .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| behaviour(key, mdns_on))
            .map_err(|e| setup(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}

fn swarm_config(config: libp2p::swarm::Config) -> libp2p::swarm::Config {
    config.with_idle_connection_timeout(Duration::from_secs(300))
}

fn behaviour(key: &Keypair, mdns_on: bool) -> Result<Behaviour, BoxError> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(256))
            .with_max_pending_incoming(Some(64))
            .with_max_established_per_peer(Some(4)),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_VERSION.to_owned(), key.public())
            .with_agent_version(format!("rendermesh/{}", env!("CARGO_PKG_VERSION"))),
    );
    let mdns = if mdns_on {
        let cfg = mdns::Config {
            query_interval: Duration::from_secs(5),
            ..Default::default()
        };
        Some(mdns::tokio::Behaviour::new(cfg, peer_id)?)
    } else {
        None
    };
    let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_cfg.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
    kad.set_mode(Some(kad::Mode::Server));
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        // gossipsub's own default (its mesh upkeep and lazy gossip run this often, on every
        // node: at 500 ms they cost an idle 40-node mesh measurably more, scripts/idle-cpu).
        .heartbeat_interval(Duration::from_secs(1))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(limits::MAX_GOSSIP)
        .mesh_n(6)
        .mesh_n_low(2)
        .mesh_n_high(12)
        .mesh_outbound_min(1)
        // No lazy gossip (IHAVE to peers outside the mesh at every gossipsub heartbeat): only
        // the coordinator publishes, once a second, and it sends to every peer it is connected
        // to (flood publishing); a lost heartbeat is replaced by the next one. Lazy gossip (and
        // libp2p's ping, which nothing here listened to) cost each idle node of 40 about as
        // much again as the rest of its work, and grew with the mesh (scripts/idle-cpu).
        .gossip_lazy(0)
        .gossip_factor(0.0)
        .build()?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_cfg,
    )?;
    let rpc = request_response::Behaviour::with_codec(
        RpcCodec,
        [(StreamProtocol::new(RPC_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(64),
    );
    Ok(Behaviour {
        limits,
        identify,
        mdns: Toggle::from(mdns),
        kad,
        gossipsub,
        rpc,
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// The peer id at the end of a multiaddr, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Starts the network actor. Returns its handle and the receiver of its events.
pub fn start(
    key: &Keypair,
    config: NetConfig,
    store: BlobStore,
    shutdown: CancellationToken,
) -> Result<
    (
        NetHandle,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NetError,
> {
    let mut swarm = build_swarm(key, &config)?;
    let topic = gossipsub::IdentTopic::new(HEARTBEAT_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let mut listening = 0;
    for addr in &config.listen {
        if is_quic(addr) {
            warn!(%addr, "not listening on QUIC: rendermesh runs over TCP only");
            continue;
        }
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Setup(format!("cannot listen on {addr}: {e}")))?;
        listening += 1;
    }
    if listening == 0 && !config.listen.is_empty() {
        return Err(NetError::Setup(
            "every listen address is QUIC, and rendermesh runs over TCP only: add a /tcp/ address"
                .into(),
        ));
    }
    let local = *swarm.local_peer_id();
    let mut bootstrap = Vec::new();
    for addr in &config.bootstrap {
        let Some(peer) = peer_of(addr) else {
            return Err(NetError::Setup(format!(
                "bootstrap address {addr} has no /p2p/<peer id> at its end"
            )));
        };
        if is_quic(addr) {
            return Err(NetError::Setup(format!(
                "bootstrap address {addr} is QUIC, and rendermesh runs over TCP only: use the node's /tcp/ address"
            )));
        }
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        bootstrap.push((peer, addr.clone()));
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(1024);
    let serving = Arc::new(Semaphore::new(MAX_CONCURRENT_SERVES));
    let identified = Identified::default();
    let mut streams = swarm.behaviour().stream.new_control();
    let incoming = streams
        .accept(blob_stream::protocol())
        .map_err(|e| NetError::Setup(e.to_string()))?;
    tokio::spawn(blob_stream::serve(
        incoming,
        store.clone(),
        identified.clone(),
        serving.clone(),
        shutdown.clone(),
    ));
    // Dials of the bootstrap nodes are under way from the start.
    let contacts = Arc::new(AtomicUsize::new(bootstrap.len()));
    let actor = NetActor {
        contacts: contacts.clone(),
        swarm,
        topic,
        commands: cmd_rx,
        events: event_tx,
        store,
        pending: HashMap::new(),
        replies: FuturesUnordered::new(),
        serving,
        rendermesh_peers: HashSet::new(),
        identified,
        listen_addrs: Vec::new(),
        bootstrap,
        unreachable: HashSet::new(),
        private: config.secret.is_some(),
        lan_peers: HashMap::new(),
    };
    let task = tokio::spawn(actor.run(shutdown));
    let handle = NetHandle {
        tx: cmd_tx,
        local,
        contacts,
        streams,
    };
    Ok((handle, event_rx, task))
}

/// A peer found by mDNS.
#[derive(Debug, Default)]
struct LanPeer {
    addrs: Vec<Multiaddr>,
    /// Failed dials since it was found or last connected.
    failures: u32,
}

type ReplyFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (ResponseChannel<Response>, Option<Response>)> + Send>,
>;

struct NetActor {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    commands: mpsc::Receiver<NetCommand>,
    events: mpsc::Sender<NetEvent>,
    store: BlobStore,
    /// Outbound requests waiting for their response.
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    /// Inbound requests whose answer is being computed elsewhere.
    replies: FuturesUnordered<ReplyFuture>,
    /// Bounds concurrent blob serving.
    serving: Arc<Semaphore>,
    /// Peers whose identify announced rendermesh's protocol version.
    rendermesh_peers: HashSet<PeerId>,
    /// The same, for the blob streams' server.
    identified: Identified,
    /// Our own listen addresses (without `/p2p`).
    listen_addrs: Vec<Multiaddr>,
    /// Bootstrap peers, redialled when disconnected.
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Peers found by mDNS (and not expired): redialled while not connected, so one failed
    /// first dial does not keep a LAN neighbour out until mDNS forgets and finds it again.
    lan_peers: HashMap<PeerId, LanPeer>,
    /// Bootstrap peers whose last dial failed (warned about once per failing streak).
    unreachable: HashSet<PeerId>,
    /// Whether this node has a mesh secret (for the hint when a dial fails).
    private: bool,
    /// Shared with the handles: [`NetHandle::contacts`].
    contacts: Arc<AtomicUsize>,
}

impl NetActor {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut kad_tick = tokio::time::interval(KAD_BOOTSTRAP_EVERY);
        let mut last_lookup = tokio::time::Instant::now();
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Cancel-safe: mpsc::Receiver::recv.
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                // Cancel-safe: FuturesUnordered::next keeps unfinished futures.
                Some((channel, response)) = self.replies.next(), if !self.replies.is_empty() => {
                    if let Some(response) = response {
                        let _ = self.swarm.behaviour_mut().rpc.send_response(channel, response);
                    }
                }
                // Cancel-safe: Swarm::select_next_some.
                event = self.swarm.select_next_some() => {
                    self.on_swarm_event(event);
                    self.count_contacts();
                }
                _ = kad_tick.tick() => {
                    if self.in_touch() && last_lookup.elapsed() < KAD_BOOTSTRAP_SETTLED {
                        continue;
                    }
                    last_lookup = tokio::time::Instant::now();
                    // Fails harmlessly (NoKnownPeers) while the routing table is empty.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                _ = redial.tick() => self.redial(),
            }
        }
        debug!("network actor stopped");
    }

    /// Whether this node is connected to a rendermesh node that is not one of its bootstrap
    /// nodes: it has found the mesh.
    fn in_touch(&self) -> bool {
        self.rendermesh_peers
            .iter()
            .any(|p| self.bootstrap.iter().all(|(b, _)| b != p) && self.swarm.is_connected(p))
    }

    /// Counts the machines this node is in touch with ([`NetHandle::contacts`]).
    fn count_contacts(&self) {
        let connected = |peer: &PeerId| self.swarm.is_connected(peer);
        let dialling_bootstrap = self
            .bootstrap
            .iter()
            .filter(|(p, _)| !connected(p) && !self.unreachable.contains(p))
            .count();
        let dialling_lan = self
            .lan_peers
            .iter()
            .filter(|(p, lan)| !connected(p) && lan.failures == 0)
            .count();
        let n = self.swarm.connected_peers().count() + dialling_bootstrap + dialling_lan;
        self.contacts.store(n, Ordering::Relaxed);
    }

    /// Dials the bootstrap peers and the LAN peers we are not connected to.
    fn redial(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            self.dial_if_new(peer, vec![addr]);
        }
        let lan: Vec<(PeerId, Vec<Multiaddr>)> = self
            .lan_peers
            .iter()
            .filter(|(_, p)| p.failures < MAX_LAN_REDIALS)
            .map(|(id, p)| (*id, p.addrs.clone()))
            .collect();
        for (peer, addrs) in lan {
            self.dial_if_new(peer, addrs);
        }
    }

    fn on_command(&mut self, cmd: NetCommand) {
        match cmd {
            NetCommand::Request {
                peer,
                request,
                reply,
            } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: "a node cannot send a request to itself".into(),
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, *request);
                self.pending.insert(id, reply);
            }
            NetCommand::Publish(bytes) => {
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                {
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(gossipsub::PublishError::Duplicate) => {}
                    Err(e) => debug!("heartbeat not published: {e}"),
                }
            }
            NetCommand::Dial(peer, addrs) => {
                for addr in &addrs {
                    self.swarm.add_peer_address(peer, addr.clone());
                }
                self.dial_if_new(peer, addrs);
            }
            NetCommand::Addresses(reply) => {
                let local = *self.swarm.local_peer_id();
                let addrs = self
                    .listen_addrs
                    .iter()
                    .map(|a| a.clone().with(Protocol::P2p(local)))
                    .collect();
                let _ = reply.send(addrs);
            }
            NetCommand::Connected(reply) => {
                let peers = self
                    .swarm
                    .connected_peers()
                    .filter(|p| self.rendermesh_peers.contains(p))
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if self.unreachable.remove(&peer_id) {
                    info!(peer = %peer_id, "reached the bootstrap node");
                }
                if let Some(lan) = self.lan_peers.get_mut(&peer_id) {
                    lan.failures = 0;
                }
                if let ConnectedPoint::Dialer { address, .. } = endpoint {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } if num_established > 0 => {
                debug!(peer = %peer_id, ?cause, left = num_established, "one connection closed");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(peer = %peer_id, "disconnected");
                self.rendermesh_peers.remove(&peer_id);
                self.identified.set(peer_id, false);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if let Some(lan) = self.lan_peers.get_mut(&peer) {
                    lan.failures += 1;
                }
                let is_bootstrap = self.bootstrap.iter().any(|(p, _)| *p == peer);
                if is_bootstrap && self.unreachable.insert(peer) {
                    let hint = if self.private {
                        "is it in this mesh, with the same mesh secret?"
                    } else {
                        "if its mesh has a secret, start this node with the same --secret-file"
                    };
                    warn!(%peer, "cannot reach the bootstrap node ({hint}): {error}");
                } else {
                    debug!(%peer, "dial failed: {error}");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // With a secret, this is where strangers end: their handshake fails.
                debug!(from = %send_back_addr, "incoming connection failed: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn dial_if_new(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, "dial: {e}");
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != IDENTIFY_VERSION {
                    debug!(peer = %peer_id, version = %info.protocol_version, "not a rendermesh node; disconnecting");
                    self.rendermesh_peers.remove(&peer_id);
                    self.identified.set(peer_id, false);
                    self.lan_peers.remove(&peer_id);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if self.rendermesh_peers.insert(peer_id) {
                    debug!(peer = %peer_id, "rendermesh peer identified");
                    self.identified.set(peer_id, true);
                }
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    debug!(%peer, "found by mDNS");
                    let lan = self.lan_peers.entry(peer).or_default();
                    for addr in &addrs {
                        if !lan.addrs.contains(addr) {
                            lan.addrs.push(addr.clone());
                        }
                    }
                    lan.failures = 0;
                    self.dial_if_new(peer, addrs);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, addr) in gone {
                    if let Some(lan) = self.lan_peers.get_mut(&peer) {
                        lan.addrs.retain(|a| *a != addr);
                        if lan.addrs.is_empty() {
                            self.lan_peers.remove(&peer);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                self.dial_if_new(peer, addresses.into_vec());
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                // Only rendermesh peers may relay; the signed source is the publisher.
                if !self.rendermesh_peers.contains(&propagation_source) {
                    return;
                }
                let Some(from) = message.source else { return };
                match codec::decode::<Gossip>(&message.data, limits::MAX_GOSSIP) {
                    Ok(msg) => {
                        if self
                            .events
                            .try_send(NetEvent::Gossip { from, msg })
                            .is_err()
                        {
                            debug!("mesh actor busy; heartbeat dropped");
                        }
                    }
                    Err(e) => warn!(peer = %from, "bad gossip message: {e}"),
                }
            }
            BehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            _ => {}
        }
    }

    fn on_rpc_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        if !self.rendermesh_peers.contains(&peer) {
            // Blobs, job records and everything else go to identified rendermesh peers only;
            // a peer whose identify is still in flight retries on `Busy`.
            debug!(%peer, "request from a peer not identified as rendermesh: refused");
            let _ = self.swarm.behaviour_mut().rpc.send_response(
                channel,
                Response::Busy("this node answers identified rendermesh peers only".into()),
            );
            return;
        }
        match request {
            Request::BlobInfo(hash) => {
                let store = self.store.clone();
                let permits = self.serving.clone();
                self.replies.push(Box::pin(async move {
                    let _permit = permits.acquire_owned().await.ok();
                    let response = match store.info(&hash).await {
                        Ok(Some(info)) => Response::BlobInfo {
                            size: info.size,
                            chunks: info.chunks,
                        },
                        Ok(None) => Response::NotFound,
                        Err(e) => Response::Rejected(e.to_string()),
                    };
                    (channel, Some(response))
                }));
            }
            Request::BlobHave(hash) => {
                let store = self.store.clone();
                self.replies.push(Box::pin(async move {
                    let response = match store.held(&hash).await {
                        Ok(Some(holding)) => Response::BlobHave {
                            chunks: holding.held.len() as u64,
                            held: rendermesh_protocol::chunk_bits(&holding.held),
                            coming: rendermesh_protocol::chunk_bits(&holding.coming),
                        },
                        Ok(None) => Response::NotFound,
                        Err(e) => Response::Rejected(e.to_string()),
                    };
                    (channel, Some(response))
                }));
            }
            Request::BlobChunk { hash, index } => {
                let store = self.store.clone();
                let permits = self.serving.clone();
                self.replies.push(Box::pin(async move {
                    let _permit = permits.acquire_owned().await.ok();
                    let response = match store.read_chunk(&hash, index).await {
                        Ok(Some(data)) => Response::BlobChunk(data),
                        Ok(None) => Response::NotFound,
                        Err(e) => Response::Rejected(e.to_string()),
                    };
                    (channel, Some(response))
                }));
            }
            request => {
                let (reply, rx) = oneshot::channel();
                let event = NetEvent::Request {
                    from: peer,
                    request,
                    reply,
                };
                if self.events.try_send(event).is_err() {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, Response::Busy("node is busy".into()));
                    return;
                }
                self.replies
                    .push(Box::pin(async move { (channel, rx.await.ok()) }));
            }
        }
    }
}
