//! The sandbox at the node level (issue 11): a node that cannot run Blender in its sandbox
//! renders nothing and says so, at start and in `peers`; `--no-sandbox` renders unconfined and
//! says that too. (What the sandbox keeps a scene from doing is `node`'s
//! `render::tests::in_the_sandbox_a_scene_neither_writes_outside_its_output_nor_reads_the_nodes_files`;
//! that frames rendered in it equal `blender -b`'s is every multi-node test's pixel check.)

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{MeshNode, wait_for};
use serde_json::Value;

/// The answering node's own row of `peers`.
fn own_row(node: &MeshNode) -> Option<Value> {
    let view = node.peers()?;
    view["peers"]
        .as_array()?
        .iter()
        .find(|p| p["is_self"] == true)
        .cloned()
}

#[test]
fn a_node_that_cannot_sandbox_renders_nothing_and_says_so_unless_told_not_to() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A PATH with Blender on it and no bubblewrap.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let blender = ["/usr/bin/blender", "/usr/local/bin/blender"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("no blender in /usr/bin or /usr/local/bin")?;
    std::os::unix::fs::symlink(blender, bin.join("blender"))?;
    let env = [("PATH", bin.as_path())];

    let stuck = MeshNode::start_with_env(dir.path(), "stuck", None, &["--threads", "1"], &env)?;
    let row = wait_for("the node to probe Blender", Duration::from_secs(60), || {
        own_row(&stuck).filter(|r| r["confinement"] != "Unsandboxed")
    })
    .with_context(|| stuck.log_text())?;
    assert_eq!(row["confinement"], "CannotSandbox", "{row}");
    assert_eq!(row["blender"], Value::Null, "it must not render: {row}");
    let said = stuck.log_text();
    assert!(
        said.contains("not in its sandbox") && said.contains("--no-sandbox"),
        "{said}"
    );
    let printed = wait_for("the start message", Duration::from_secs(30), || {
        let log = stuck.log_text();
        log.contains("cannot run in a sandbox here").then_some(log)
    })
    .with_context(|| stuck.log_text())?;
    assert!(printed.contains("bubblewrap"), "{printed}");

    let open = MeshNode::start_with_env(
        dir.path(),
        "open",
        None,
        &["--threads", "1", "--no-sandbox"],
        &env,
    )?;
    let row = wait_for("the node to probe Blender", Duration::from_secs(60), || {
        own_row(&open).filter(|r| r["blender"].is_string())
    })
    .with_context(|| open.log_text())?;
    assert_eq!(row["confinement"], "Unsandboxed", "{row}");
    let warned = wait_for("the unconfined warning", Duration::from_secs(30), || {
        let log = open.log_text();
        log.contains("unconfined (--no-sandbox)").then_some(())
    });
    assert!(warned.is_ok(), "{}", open.log_text());
    Ok(())
}
