//! Other libp2p software on the LAN (here: a bare swarm announcing the IPFS identify version)
//! is disconnected and never counted as a rendermesh peer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, identify, noise, ping, tcp, yamux};
use rendermesh_node::worker::Renderer;
use rendermesh_node::{Config, Node, Role};
use rendermesh_protocol::Assignment;
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
    ) -> Result<Vec<(u32, PathBuf)>, String> {
        Err("this node does not render".into())
    }
}

#[derive(NetworkBehaviour)]
struct Foreign {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_libp2p_peer_is_disconnected_and_never_listed() {
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
            ping: ping::Behaviour::new(ping::Config::new()),
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
