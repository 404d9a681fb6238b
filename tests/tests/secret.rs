//! A mesh with a secret: only nodes started with the same secret file join it. A node without
//! a secret and a node with another one both fail to connect (and say so), nobody on either
//! side ever lists them, and the private mesh still renders over its pnet-wrapped connections.
//! A mesh is keyed by default, and the join token a node prints is all another machine needs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{
    Fixture, MeshNode, agreed_coordinator, assert_same_pixels, dump_logs, free_port, newest_job,
    wait_for, wait_render,
};
use serde_json::Value;

/// The peer ids `node` lists.
fn listed(node: &MeshNode) -> Result<Vec<String>> {
    let view = node.peers().context("peers")?;
    let mut ids: Vec<String> = view["peers"]
        .as_array()
        .context("peers")?
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// `rendermesh secret fingerprint FILE`'s fingerprint.
fn fingerprint(file: &Path) -> Result<String> {
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .args(["secret", "fingerprint"])
            .arg(file),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .trim()
        .rsplit(' ')
        .next()
        .context("no fingerprint printed")?
        .to_owned())
}

#[test]
fn only_nodes_with_the_mesh_secret_join_it_and_it_renders() -> Result<()> {
    let fx = Fixture::new((1, 4), 16, 25, &[])?;
    let root = fx.root.join("mesh");
    std::fs::create_dir_all(&root)?;
    // One secret made by `rendermesh secret new`, another a passphrase.
    let secret = root.join("mesh.key");
    let made = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .args(["secret", "new"])
            .arg(&secret),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let other = root.join("other.secret");
    std::fs::write(&other, "not the same mesh at all\n")?;
    let secret_arg = secret.display().to_string();
    let other_arg = other.display().to_string();
    let member = ["--threads", "1", "--secret-file", &secret_arg];

    let boot = MeshNode::start_bootstrap_with(
        &root,
        "boot",
        free_port(),
        &["--secret-file", &secret_arg],
    )?;
    let a = MeshNode::start_with(&root, "a", Some(&boot), &member)?;
    let b = MeshNode::start_with(&root, "b", Some(&boot), &member)?;
    let stranger = MeshNode::start_with(
        &root,
        "stranger",
        Some(&boot),
        &["--threads", "1", "--open"],
    )?;
    let wrong = MeshNode::start_with(
        &root,
        "wrong",
        Some(&boot),
        &["--threads", "1", "--secret-file", &other_arg],
    )?;
    let members = [boot, a, b];
    let outsiders = [stranger, wrong];

    wait_for(
        "the members to see each other",
        Duration::from_secs(30),
        || agreed_coordinator(&members, 3),
    )
    .with_context(|| dump_logs(&members))?;
    for node in &outsiders {
        wait_for(
            &format!("{} to fail to reach the bootstrap node", node.name),
            Duration::from_secs(60),
            || {
                node.log_text()
                    .contains("cannot reach the bootstrap node")
                    .then_some(())
            },
        )
        .with_context(|| dump_logs(&outsiders))?;
    }

    let mut member_ids: Vec<String> = members.iter().map(|n| n.id.clone()).collect();
    member_ids.sort();
    let expected = fingerprint(&secret)?;
    for node in &members {
        assert_eq!(listed(node)?, member_ids, "{} lists an outsider", node.name);
        let view = node.peers().context("peers")?;
        assert_eq!(view["secret"], expected.as_str(), "{}", node.name);
        let info = node.get("/api/v1/node").context("node info")?;
        assert_eq!(info["secret"], expected.as_str(), "{}", node.name);
    }
    for node in &outsiders {
        assert_eq!(listed(node)?, vec![node.id.clone()], "{} got in", node.name);
    }
    assert_eq!(
        outsiders[0].peers().context("peers")?["secret"],
        Value::Null
    );
    assert_ne!(fingerprint(&other)?, expected);

    // The private mesh renders: blobs and results travel over its pnet connections.
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = rendermesh_tests::start_small_render(&fx.blend, &out, members[1].api, &log)?;
    wait_render(&mut child, Duration::from_secs(300), &log, &members)?;
    for f in 1..=4 {
        assert_same_pixels(
            &out.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("frame {f}"))?;
    }
    let job = newest_job(&members[1]).context("no job")?;
    let mut workers: Vec<&str> = job["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter_map(|t| t["worker"].as_str())
        .collect();
    workers.sort();
    workers.dedup();
    assert_eq!(
        workers,
        {
            let mut ids = vec![members[1].id.as_str(), members[2].id.as_str()];
            ids.sort();
            ids
        },
        "both members should render"
    );
    Ok(())
}

/// `path`'s permission bits.
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode()
        & 0o777)
}

/// Issue 11: the first node on a machine creates the machine's key (owner-only) and prints a
/// join command; `--join <token>` on another machine is enough to join (no bootstrap address,
/// no file to copy); a machine with a key of its own that dials the first node directly never
/// connects; a mistyped token is refused, saying so.
#[test]
fn the_first_node_keys_the_mesh_and_its_join_token_is_all_another_machine_needs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let home = |m: &str| root.join(format!("machine-{m}"));
    let a = MeshNode::start_at_home(root, "a", None, &["--threads", "1"], &home("a"))?;
    let token = wait_for(
        "node a to print its join command",
        Duration::from_secs(30),
        || {
            let out = a.stdout_text();
            let line = out
                .lines()
                .find(|l| l.contains("rendermesh node --join "))?;
            line.split_whitespace().last().map(str::to_owned)
        },
    )
    .with_context(|| format!("{}\n{}", a.stdout_text(), a.log_text()))?;
    let key = home("a").join("mesh.key");
    assert_eq!(mode(&key)?, 0o600, "the machine key");
    assert_eq!(mode(&home("a"))?, 0o700, "the machine key's directory");
    assert_eq!(mode(&a.data_dir.join("identity.key"))?, 0o600);
    assert_eq!(mode(&a.data_dir)?, 0o700, "the data directory");

    let b = MeshNode::start_at_home(
        root,
        "b",
        None,
        &["--threads", "1", "--join", &token],
        &home("b"),
    )?;
    let members = [a, b];
    wait_for(
        "b to join a's mesh by its token",
        Duration::from_secs(30),
        || agreed_coordinator(&members, 2),
    )
    .with_context(|| dump_logs(&members))?;
    assert_eq!(
        fingerprint(&home("b").join("mesh.key"))?,
        fingerprint(&key)?,
        "b's machine keeps a's key"
    );
    assert_eq!(mode(&home("b").join("mesh.key"))?, 0o600);

    // A machine with a key of its own, dialing a's address directly.
    let c = MeshNode::start_at_home(
        root,
        "c",
        Some(&members[0]),
        &["--threads", "1"],
        &home("c"),
    )?;
    wait_for("c to fail to reach a", Duration::from_secs(60), || {
        c.log_text()
            .contains("cannot reach the bootstrap node")
            .then_some(())
    })
    .with_context(|| c.log_text())?;
    assert_eq!(listed(&c)?, vec![c.id.clone()], "c got in");
    let mut ids: Vec<String> = members.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    for node in &members {
        assert_eq!(listed(node)?, ids, "{} lists c", node.name);
    }

    // A mistyped token joins nothing and says why.
    let mut typo: Vec<char> = token.chars().collect();
    typo[12] = if typo[12] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .env("RENDERMESH_HOME", home("d"))
            .args(["node", "--join", &typo])
            .stdin(Stdio::null()),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mistyped"), "{err}");
    assert!(
        !home("d").join("mesh.key").exists(),
        "a bad token wrote a key"
    );
    Ok(())
}
