//! Membership and election across real processes: everyone agrees on one coordinator; a
//! SIGKILLed node leaves everyone's `peers` within 3 s; a killed coordinator is replaced within
//! 5 s by one everyone agrees on, in a higher term.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rendermesh_tests::{MeshNode, agreed_coordinator, cluster};

fn sees(node: &MeshNode, id: &str) -> Option<bool> {
    let peers = node.peers()?;
    Some(
        peers["peers"]
            .as_array()?
            .iter()
            .any(|p| p["id"].as_str() == Some(id)),
    )
}

fn term(node: &MeshNode) -> Option<u64> {
    node.peers()?["term"].as_u64()
}

#[test]
fn a_killed_worker_leaves_peers_within_3_s() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nodes = cluster(dir.path(), 3)?;
    let coordinator = agreed_coordinator(&nodes, 3).context("no coordinator")?;
    let victim = nodes
        .iter()
        .position(|n| n.id != coordinator)
        .context("no worker")?;
    let id = nodes[victim].id.clone();
    nodes[victim].kill();
    let killed = Instant::now();
    let survivors: Vec<&MeshNode> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    rendermesh_tests::wait_for(
        "the killed node to leave peers",
        Duration::from_secs(10),
        || {
            survivors
                .iter()
                .all(|n| sees(n, &id) == Some(false))
                .then_some(())
        },
    )?;
    let gone_after = killed.elapsed();
    assert!(
        gone_after <= Duration::from_secs(3),
        "the killed node stayed in peers for {gone_after:?}"
    );
    // The coordinator did not change.
    assert_eq!(
        agreed_coordinator(&nodes, 2).as_deref(),
        Some(coordinator.as_str())
    );
    Ok(())
}

#[test]
fn a_killed_coordinator_is_replaced_within_5_s_in_a_higher_term() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nodes = cluster(dir.path(), 4)?;
    let old = agreed_coordinator(&nodes, 4).context("no coordinator")?;
    let old_term = term(&nodes[0]).context("no term")?;
    let victim = nodes.iter().position(|n| n.id == old).context("not ours")?;
    nodes[victim].kill();
    let killed = Instant::now();
    let new = rendermesh_tests::wait_for("a new coordinator", Duration::from_secs(15), || {
        agreed_coordinator(&nodes, 3).filter(|c| *c != old)
    })?;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "the new coordinator took {took:?}"
    );
    // The rule: the smallest surviving peer id takes the next term.
    let mut ids: Vec<&str> = nodes
        .iter()
        .filter(|n| n.id != old)
        .map(|n| n.id.as_str())
        .collect();
    ids.sort();
    assert_eq!(new, ids[0]);
    for n in nodes.iter().filter(|n| n.id != old) {
        assert!(term(n).context("no term")? > old_term);
    }
    Ok(())
}

#[test]
fn nodes_join_through_the_bootstrap_node_which_keeps_its_id_and_address_across_restarts()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = rendermesh_tests::free_port();
    let mut boot = MeshNode::start_bootstrap(dir.path(), "boot", port)?;
    let id = boot.id.clone();
    let addr = boot.addrs.clone();
    let a = MeshNode::start(dir.path(), "a", Some(&boot))?;
    let b = MeshNode::start(dir.path(), "b", Some(&boot))?;
    // a and b find each other through the bootstrap node; it never coordinates.
    let nodes = [a, b];
    let coordinator =
        rendermesh_tests::wait_for("a and b to agree", Duration::from_secs(30), || {
            let c = agreed_coordinator(&nodes, 3)?;
            nodes
                .iter()
                .all(|n| sees(n, &id) == Some(true))
                .then_some(c)
        })?;
    assert_ne!(coordinator, id, "the bootstrap node coordinates");
    let view = nodes[0].peers().context("peers")?;
    let boot_view = view["peers"]
        .as_array()
        .context("peers")?
        .iter()
        .find(|p| p["id"] == id.as_str())
        .context("bootstrap listed")?
        .clone();
    assert_eq!(boot_view["role"], "Bootstrap");

    boot.kill();
    let again = MeshNode::start_bootstrap(dir.path(), "boot", port)?;
    assert_eq!(again.id, id, "the peer id changed across a restart");
    assert_eq!(
        again.addrs, addr,
        "the printed address changed across a restart"
    );
    Ok(())
}
