//! LAN discovery by mDNS: three nodes in three network namespaces joined by veth pairs to one
//! bridge (a small LAN made by this test, reaching nothing else), started with mDNS on and no
//! bootstrap address, must find each other and agree on one coordinator.
//!
//! Needs root (CI runs as root) and `ip` from iproute2 (`scripts/install-deps` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rendermesh_tests::{bin, wait_for};
use serde_json::Value;

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A bridge and namespaces, removed on drop.
struct Lan {
    bridge: String,
    namespaces: Vec<String>,
    nodes: Vec<Child>,
}

impl Lan {
    fn new(n: usize) -> Result<Self> {
        let tag = std::process::id() % 100_000;
        let mut lan = Self {
            bridge: format!("rmbr{tag}"),
            namespaces: Vec::new(),
            nodes: Vec::new(),
        };
        ip(&["link", "add", "name", &lan.bridge, "type", "bridge"])?;
        ip(&[
            "link",
            "set",
            &lan.bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("rm{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            lan.namespaces.push(ns.clone());
            let inside = format!("rm{tag}i{i}");
            let outside = format!("rm{tag}o{i}");
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "master", &lan.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let addr = format!("10.213.{}.{}/24", tag % 250, i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inside])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    fn start_node(&mut self, i: usize, dir: &Path) -> Result<()> {
        let data = dir.join(format!("n{i}"));
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join(format!("n{i}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(bin())
            .arg("node")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "/ip4/0.0.0.0/tcp/0"])
            .args(["--api", "127.0.0.1:7411"])
            .args(["--name", &format!("lan-{i}")])
            .args(["--threads", "1"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.nodes.push(child);
        Ok(())
    }

    /// `rendermesh peers --json` run inside namespace `i`.
    fn peers(&self, i: usize) -> Option<Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(bin())
            .args(["peers", "--json", "--api", "127.0.0.1:7411"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
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

#[test]
fn nodes_on_one_lan_find_each_other_by_mdns_and_agree_on_a_coordinator() -> Result<()> {
    let euid = Command::new("id").arg("-u").output()?;
    assert_eq!(
        String::from_utf8_lossy(&euid.stdout).trim(),
        "0",
        "this test builds network namespaces and must run as root (CI does)"
    );
    let dir = tempfile::tempdir()?;
    let mut lan = Lan::new(3)?;
    for i in 0..3 {
        lan.start_node(i, dir.path())?;
    }
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
    .with_context(|| logs(dir.path(), 3))?;
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
