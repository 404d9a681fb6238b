//! LAN discovery by mDNS: three nodes in three network namespaces joined by veth pairs to one
//! bridge (a small LAN made by this test, reaching nothing else), started with mDNS on and no
//! bootstrap address, must find each other and agree on one coordinator.
//!
//! Needs root (CI runs as root) and `ip` from iproute2 (`scripts/install-deps` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{bin, require_root, wait_for};
use serde_json::Value;

/// The test's LAN and the nodes running on it (killed on drop, before the LAN is removed).
struct Lan {
    net: rendermesh_tests::Lan,
    nodes: Vec<Child>,
}

impl Lan {
    fn new(n: usize) -> Result<Self> {
        Ok(Self {
            net: rendermesh_tests::Lan::new(n)?,
            nodes: Vec::new(),
        })
    }

    fn start_node(&mut self, i: usize, dir: &Path) -> Result<()> {
        self.start_node_on(i, dir, &rendermesh_tests::machine_home())
    }

    /// Starts node `i` with its machine key directory at `home`: nodes sharing one hold one
    /// mesh key (machines that joined one mesh); a node with a home of its own has a key of
    /// its own.
    fn start_node_on(&mut self, i: usize, dir: &Path, home: &Path) -> Result<()> {
        let data = dir.join(format!("n{i}"));
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join(format!("n{i}.log")))?;
        let child = self
            .net
            .command(i, bin())
            .arg("node")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "/ip4/0.0.0.0/tcp/0"])
            .args(["--api", "127.0.0.1:7411"])
            .args(["--name", &format!("lan-{i}")])
            .args(["--threads", "1"])
            .env("RENDERMESH_HOME", home)
            .env("RUST_LOG", "info,rendermesh_node::net=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.nodes.push(child);
        Ok(())
    }

    /// Cuts namespace `i` off the LAN (its cable is pulled).
    fn cut(&self, i: usize) -> Result<()> {
        self.net.cut(i)
    }

    /// Plugs namespace `i` back in.
    fn heal(&self, i: usize) -> Result<()> {
        self.net.heal(i)
    }

    /// Each node's (coordinator, term, live peers) as it sees them.
    fn views(&self) -> Option<Vec<(String, u64, usize)>> {
        (0..self.nodes.len())
            .map(|i| {
                let v = self.peers(i)?;
                Some((
                    v["coordinator"].as_str()?.to_owned(),
                    v["term"].as_u64()?,
                    v["peers"].as_array()?.len(),
                ))
            })
            .collect()
    }

    /// `rendermesh peers --json` run inside namespace `i`; `None` if it fails.
    fn peers(&self, i: usize) -> Option<Value> {
        self.view(i).ok()
    }

    /// `rendermesh peers --json` run inside namespace `i`, or why it failed.
    fn view(&self, i: usize) -> Result<Value> {
        let out = rendermesh_tests::run_bounded(
            self.net
                .command(i, bin())
                .args(["peers", "--json", "--api", "127.0.0.1:7411"])
                .stdin(Stdio::null()),
            Duration::from_secs(10),
        )?;
        anyhow::ensure!(
            out.status.success(),
            "rendermesh peers in namespace {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("rendermesh peers --json printed no JSON")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn logs(dir: &Path, n: usize) -> String {
    (0..n)
        .map(|i| {
            let p: PathBuf = dir.join(format!("n{i}.log"));
            format!(
                "--- n{i} ---\n{}",
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Three machines holding one mesh key find each other by mDNS; a fourth on the same LAN
/// with a key of its own finds them too, but never connects: it lists nobody, and nobody
/// lists it (issue 11: the outsider comes in by mDNS).
#[test]
fn nodes_on_one_lan_find_each_other_by_mdns_and_agree_on_a_coordinator() -> Result<()> {
    require_root()?;
    let dir = tempfile::tempdir()?;
    let mut lan = Lan::new(4)?;
    for i in 0..3 {
        lan.start_node(i, dir.path())?;
    }
    let outsider_home = dir.path().join("outsider-home");
    lan.start_node_on(3, dir.path(), &outsider_home)?;
    let coordinator = wait_for(
        "mDNS discovery and one coordinator",
        Duration::from_secs(60),
        || {
            let mut agreed: Option<String> = None;
            for i in 0..3 {
                let v = lan.peers(i)?;
                if v["peers"].as_array()?.len() != 3 {
                    return None;
                }
                let c = v["coordinator"].as_str()?.to_owned();
                if agreed.get_or_insert(c.clone()) != &c {
                    return None;
                }
            }
            agreed
        },
    )
    .with_context(|| logs(dir.path(), 4))?;
    // The outsider found the mesh by mDNS and its handshakes were refused...
    let log = |i: usize| std::fs::read_to_string(dir.path().join(format!("n{i}.log")));
    wait_for(
        "the outsider to find the mesh by mDNS and be refused",
        Duration::from_secs(60),
        || {
            let found = log(3).ok()?.matches("found by mDNS").count() >= 3;
            let refused =
                (0..3).any(|i| log(i).is_ok_and(|l| l.contains("incoming connection failed")));
            (found && refused).then_some(())
        },
    )
    .with_context(|| logs(dir.path(), 4))?;
    // ...so it lists only itself, and the mesh still lists its three.
    // (One `peers` call may miss its 10 s bound on a loaded machine: ask again until 30 s
    // have passed, and report the last failure with the nodes' logs.)
    let mut last = None;
    let outsider = wait_for("the outsider's peers", Duration::from_secs(30), || {
        lan.view(3).map_err(|e| last = Some(e)).ok()
    })
    .with_context(|| format!("{last:?}\n{}", logs(dir.path(), 4)))?;
    assert_eq!(
        outsider["peers"].as_array().map(Vec::len),
        Some(1),
        "{outsider}"
    );
    for i in 0..3 {
        let v = lan.peers(i).context("peers")?;
        assert_eq!(v["peers"].as_array().map(Vec::len), Some(3), "{v}");
    }
    // Each node learned the others' LAN addresses, not loopback ones.
    let v = lan.peers(0).context("peers")?;
    for p in v["peers"].as_array().context("peers")? {
        let addrs: Vec<&str> = p["addrs"]
            .as_array()
            .context("addrs")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            addrs.iter().any(|a| a.starts_with("/ip4/10.213.")),
            "{addrs:?}"
        );
    }
    assert!(!coordinator.is_empty());
    Ok(())
}

#[test]
fn a_partition_elects_a_coordinator_per_side_and_healing_leaves_one_in_the_highest_term()
-> Result<()> {
    require_root()?;
    let dir = tempfile::tempdir()?;
    let mut lan = Lan::new(3)?;
    for i in 0..3 {
        lan.start_node(i, dir.path())?;
    }
    let (first, _, _) = wait_for(
        "one coordinator for all three",
        Duration::from_secs(60),
        || {
            let v = lan.views()?;
            (v.iter().all(|(c, _, n)| *n == 3 && *c == v[0].0)).then(|| v[0].clone())
        },
    )
    .with_context(|| logs(dir.path(), 3))?;

    // Cut off the node that does not coordinate... or the coordinator: cut node 2 either way,
    // then each side must have a coordinator of its own.
    lan.cut(2)?;
    let split = wait_for(
        "a coordinator on each side",
        Duration::from_secs(30),
        || {
            let v = lan.views()?;
            let alone = &v[2];
            let rest_agree = v[0].0 == v[1].0 && v[0].2 == 2 && v[1].2 == 2;
            (rest_agree && alone.2 == 1 && alone.0 != v[0].0).then_some(v)
        },
    )
    .with_context(|| logs(dir.path(), 3))?;
    eprintln!("before: {first}; split: {split:?}");

    lan.heal(2)?;
    let healed = wait_for("one coordinator again", Duration::from_secs(60), || {
        let v = lan.views()?;
        (v.iter()
            .all(|(c, t, n)| *n == 3 && *c == v[0].0 && *t == v[0].1))
        .then_some(v)
    })
    .with_context(|| logs(dir.path(), 3))?;
    // The winner is the side whose claim had the highest term.
    let highest = split.iter().map(|(_, t, _)| *t).max().context("terms")?;
    let winners: Vec<&String> = split
        .iter()
        .filter(|(_, t, _)| *t == highest)
        .map(|(c, _, _)| c)
        .collect();
    assert!(
        winners.contains(&&healed[0].0),
        "split {split:?}, healed {healed:?}"
    );
    assert!(healed[0].1 >= highest);
    Ok(())
}
