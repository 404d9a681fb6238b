//! What the node's API tests share.

use std::net::SocketAddr;

use rendermesh_node::{Config, Node, Role};

/// A node named `name` on loopback (no mDNS, no secret, no Blender, no ffmpeg) serving its API; the
/// directory holds its data.
pub async fn start(name: &str) -> (tempfile::TempDir, Node, SocketAddr) {
    start_with(name, |_| {}).await
}

/// [`start`], with `config` changed first.
pub async fn start_with(
    name: &str,
    config: impl FnOnce(&mut Config),
) -> (tempfile::TempDir, Node, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Config {
        data_dir: dir.path().join("node"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        api: Some("127.0.0.1:0".parse().expect("addr")),
        mdns: false,
        name: name.into(),
        role: Role::Worker,
        blender: dir.path().join("no-blender-here"),
        ffmpeg: dir.path().join("no-ffmpeg-here"),
        sandbox: false,
        ..Config::default()
    };
    config(&mut settings);
    let node = Node::start(settings).await.expect("node starts");
    let api = node.api_addr().expect("the node serves its API");
    (dir, node, api)
}
