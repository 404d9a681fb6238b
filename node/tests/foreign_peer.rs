//! Other libp2p software on the LAN (here: a bare swarm announcing the IPFS identify version)
//! is disconnected and never counted as a rendermesh peer; a stranger that never identifies but
//! publishes well-formed heartbeats on the heartbeat topic is never counted either.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, gossipsub, identify, noise, request_response, tcp, yamux};
use rendermesh_node::worker::{RenderFailure, Renderer};
use rendermesh_node::{Config, Node, Role};
use rendermesh_protocol::{
    Assignment, Gossip, HEARTBEAT_TOPIC, Heartbeat, Request, Response, Term, codec, limits,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Never asked to render: the test submits no job.
struct NoRenderer;

#[async_trait::async_trait]
impl Renderer for NoRenderer {
    async fn version(&self) -> Option<String> {
        None
    }

    async fn render(
        &self,
        _: rendermesh_node::render::BlendFile<'_>,
        _: &std::path::Path,
        _: &Assignment,
        _: mpsc::Sender<u32>,
        _: CancellationToken,
    ) -> Result<Vec<(u32, PathBuf)>, RenderFailure> {
        Err(RenderFailure::Failed("this node does not render".into()))
    }
}

#[derive(NetworkBehaviour)]
struct Foreign {
    identify: identify::Behaviour,
}

/// A rendermesh node on loopback, and its TCP address.
async fn start_node() -> (tempfile::TempDir, Node, Multiaddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start_with_renderer(
        Config {
            data_dir: dir.path().join("node"),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            api: None,
            bootstrap: Vec::new(),
            mdns: false,
            name: "mesh".into(),
            threads: None,
            role: Role::Worker,
            blender: PathBuf::from("unused"),
            secret: None,
            api_token: None,
            sandbox: false,
            ..Config::default()
        },
        Arc::new(NoRenderer),
    )
    .await
    .expect("node starts");
    let info = node.wait_listening().await.expect("listens");
    let addr: Multiaddr = info
        .addrs
        .iter()
        .find(|a| a.contains("/tcp/"))
        .expect("a tcp address")
        .parse()
        .expect("multiaddr");

    (dir, node, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_libp2p_peer_is_disconnected_and_never_listed() {
    let (_dir, node, addr) = start_node().await;

    let mut foreign = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Foreign {
            identify: identify::Behaviour::new(identify::Config::new(
                "/ipfs/0.1.0".into(),
                key.public(),
            )),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    foreign.dial(addr).expect("dial");

    // The foreign peer connects, identifies, and is cut off by the rendermesh node.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut connected = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "the foreign peer was never disconnected"
        );
        match tokio::time::timeout(remaining, foreign.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { .. }) => connected = true,
            Ok(SwarmEvent::ConnectionClosed { .. }) if connected => break,
            Ok(_) => {}
            Err(_) => panic!("the foreign peer was never disconnected"),
        }
    }
    let peers = node.handle().peers().await.expect("peers");
    assert_eq!(
        peers.peers.len(),
        1,
        "only the node itself: {:?}",
        peers.peers
    );
    node.shutdown().await;
}

#[derive(NetworkBehaviour)]
struct Asker {
    rpc: request_response::Behaviour<rendermesh_node::net::RpcCodec>,
}

/// Issue 11: blobs and job records are answered to identified rendermesh peers only. A peer
/// that speaks the request protocol but never identifies asks for a blob and a job record:
/// both are refused before any handler sees them (`Busy`, where a rendermesh peer would get
/// `NotFound` for these unknown ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_identifies_gets_no_blob_and_no_job_record() {
    let (_dir, node, addr) = start_node().await;
    let node_peer = match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(id)) => id,
        _ => panic!("no peer id in {addr}"),
    };
    let mut asker = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| Asker {
            rpc: request_response::Behaviour::new(
                [(
                    libp2p::StreamProtocol::new(rendermesh_protocol::RPC_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            ),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    asker.dial(addr.clone()).expect("dial");
    let requests = [
        Request::BlobInfo(rendermesh_protocol::BlobHash::of(b"a blob")),
        Request::GetJob(rendermesh_protocol::JobId([9; 16])),
    ];
    let mut answers = Vec::new();
    for request in requests {
        asker.behaviour_mut().rpc.send_request(&node_peer, request);
        let answer = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let SwarmEvent::Behaviour(AskerEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) = asker.select_next_some().await
                {
                    return response;
                }
            }
        })
        .await
        .expect("an answer within 20 s");
        answers.push(answer);
    }
    for answer in &answers {
        assert!(
            matches!(answer, Response::Busy(m) if m.contains("identified")),
            "{answers:?}"
        );
    }
    node.shutdown().await;
}

#[derive(NetworkBehaviour)]
struct Silent {
    gossipsub: gossipsub::Behaviour,
}

/// A heartbeat as a rendermesh worker would publish it, claiming a high term.
fn heartbeat(seq: u64) -> Vec<u8> {
    let hb = Heartbeat {
        seq,
        name: "stranger".into(),
        role: Role::Worker,
        cores: 64,
        memory: 1 << 40,
        blender: Some("Blender 3.4.1".into()),
        engines: Vec::new(),
        confinement: rendermesh_protocol::Confinement::Unsandboxed,
        load: 0.0,
        current: None,
        held: Vec::new(),
        term: Term(1_000),
        coordinator: None,
        claims: true,
        jobs: Vec::new(),
        addrs: Vec::new(),
        disk_free: None,
        low_disk: false,
        leaving: false,
        table: Default::default(),
        members: None,
    };
    codec::encode(&Gossip::Heartbeat(hb), limits::MAX_GOSSIP).expect("encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_identifies_is_never_listed_however_it_gossips() {
    let (_dir, node, addr) = start_node().await;
    let mut stranger = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Silent {
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_millis(200))
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .max_transmit_size(limits::MAX_GOSSIP)
                    .build()
                    .expect("gossipsub config"),
            )
            .expect("gossipsub"),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let topic = gossipsub::IdentTopic::new(HEARTBEAT_TOPIC);
    stranger
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .expect("subscribes");
    stranger.dial(addr).expect("dial");

    // It publishes a heartbeat every 100 ms for 4 s; at least 10 reach the node's side (the
    // node has subscribed to the topic, so gossipsub sends them to it).
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut publish = tokio::time::interval(Duration::from_millis(100));
    let (mut seq, mut sent) = (0, 0);
    while Instant::now() < deadline {
        tokio::select! {
            _ = publish.tick() => {
                seq += 1;
                if stranger.behaviour_mut().gossipsub.publish(topic.clone(), heartbeat(seq)).is_ok() {
                    sent += 1;
                }
            }
            _ = stranger.select_next_some() => {}
        }
    }
    assert!(
        sent >= 10,
        "only {sent} heartbeats went out: the test proves nothing"
    );
    let peers = node.handle().peers().await.expect("peers");
    assert_eq!(
        peers.peers.len(),
        1,
        "only the node itself: {:?}",
        peers.peers
    );
    assert!(
        peers.term < 1_000,
        "the stranger's term {} was believed",
        peers.term
    );
    node.shutdown().await;
}
