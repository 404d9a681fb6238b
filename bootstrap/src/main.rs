//! `rendermesh-bootstrap`: an always-on node that other nodes join through.
//!
//! It runs the same swarm as every node (membership, Kademlia, gossip relay, blob serving) but
//! renders nothing and never coordinates. It listens on a fixed port by default and keeps its
//! identity key in `--data-dir`, so the multiaddr it prints stays valid across restarts.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rendermesh_node::core::Policy;
use rendermesh_node::secret::{choose, machine_key_path};
use rendermesh_node::{Config, JoinToken, Node};

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
    /// The mesh secret (see `rendermesh node --secret-file`) instead of this machine's key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["open", "join"])]
    secret_file: Option<PathBuf>,
    /// Join the mesh of the node that printed TOKEN (see `rendermesh node --join`).
    #[arg(long, value_name = "TOKEN", conflicts_with = "open")]
    join: Option<JoinToken>,
    /// Run an open mesh, without a key (see `rendermesh node --open`).
    #[arg(long)]
    open: bool,
    /// A file holding the API's bearer token (required when `--api` is not loopback).
    #[arg(long, value_name = "FILE")]
    api_token: Option<PathBuf>,
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
    let (secret, source) = choose(
        args.secret_file.as_deref(),
        args.open,
        args.join.as_ref(),
        &machine_key_path(&args.data_dir),
    )?;
    if let Some(notice) = source.notice(secret.as_ref()) {
        eprintln!("{notice}");
    }
    let mut bootstrap = parse(&args.bootstrap)?;
    bootstrap.extend(args.join.iter().flat_map(|t| t.addrs.clone()));
    let config = Config {
        data_dir: args.data_dir,
        listen: parse(&args.listen)?,
        api: Some(args.api),
        bootstrap,
        mdns: !args.no_mdns,
        name: args.name,
        threads: None,
        role: rendermesh_node::Role::Bootstrap,
        blender: PathBuf::from("blender"),
        secret,
        api_token: args
            .api_token
            .as_deref()
            .map(rendermesh_node::config::load_api_token)
            .transpose()?,
        // A bootstrap node never renders, nor coordinates.
        sandbox: false,
        policy: Policy::default(),
        ..Config::default()
    };
    let node = Node::start(config)
        .await
        .context("cannot start the bootstrap node")?;
    let info = node
        .wait_listening()
        .await
        .context("the bootstrap node did not start listening")?;
    println!("rendermesh-bootstrap {} ({})", info.id, info.name);
    let addrs: Vec<rendermesh_node::Multiaddr> =
        info.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    match secret.and_then(|s| JoinToken::new(s, &addrs)) {
        Some(token) => println!("join it with:\n  rendermesh node --join {token}"),
        None => {
            println!("join it with:");
            for addr in &info.addrs {
                println!("  rendermesh node --open --bootstrap {addr}");
            }
        }
    }
    rendermesh_node::shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

fn tracing_subscriber_init() {
    rendermesh_node::init_tracing();
}
