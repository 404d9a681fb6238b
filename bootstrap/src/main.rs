//! `rendermesh-bootstrap`: an always-on node that other nodes join through.
//!
//! It runs the same swarm as every node (membership, Kademlia, gossip relay, blob serving) but
//! renders nothing and never coordinates. It listens on a fixed port by default and keeps its
//! identity key in `--data-dir`, so the multiaddr it prints stays valid across restarts.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rendermesh_node::{Config, Node};

/// An always-on rendermesh node that others join through; it renders nothing.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the identity key lives.
    #[arg(long, default_value = "rendermesh-bootstrap-data")]
    data_dir: PathBuf,
    /// Multiaddrs to listen on (repeatable).
    #[arg(long = "listen", default_values_t = [
        "/ip4/0.0.0.0/tcp/4701".to_string(),
        "/ip4/0.0.0.0/udp/4701/quic-v1".to_string(),
    ])]
    listen: Vec<String>,
    /// Other bootstrap nodes to join (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Serve the local API here (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7412")]
    api: SocketAddr,
    /// Do not discover LAN peers by mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// A name for `rendermesh peers`.
    #[arg(long, default_value = "bootstrap")]
    name: String,
    /// The mesh secret (see `rendermesh node --secret-file`); with one, QUIC is off.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let args = Args::parse();
    let parse = |list: &[String]| -> anyhow::Result<Vec<rendermesh_node::Multiaddr>> {
        list.iter()
            .map(|a| a.parse().with_context(|| format!("bad multiaddr `{a}`")))
            .collect()
    };
    let config = Config {
        data_dir: args.data_dir,
        listen: parse(&args.listen)?,
        api: Some(args.api),
        bootstrap: parse(&args.bootstrap)?,
        mdns: !args.no_mdns,
        name: args.name,
        threads: None,
        role: rendermesh_node::Role::Bootstrap,
        blender: PathBuf::from("blender"),
        secret: args
            .secret_file
            .as_deref()
            .map(rendermesh_node::MeshSecret::load)
            .transpose()?,
    };
    let node = Node::start(config)
        .await
        .context("cannot start the bootstrap node")?;
    let info = node
        .wait_listening()
        .await
        .context("the bootstrap node did not start listening")?;
    println!("rendermesh-bootstrap {} ({})", info.id, info.name);
    println!("join it with:");
    for addr in &info.addrs {
        println!("  rendermesh node --bootstrap {addr}");
    }
    rendermesh_node::shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

fn tracing_subscriber_init() {
    rendermesh_node::init_tracing();
}
