//! What membership costs each node as the mesh grows, measured on the simulator
//! (`node/core/tests/support/simulator.rs`: the real node cores on a simulated network).
//!
//! `cargo bench -p rendermesh-core --bench traffic` prints, for meshes of 10, 100 and 1,000
//! settled nodes, with no job and with `TRAFFIC_JOBS` jobs kept (1,000 by default; each one
//! frame, submitted and done before the count starts): the messages and bytes each node
//! receives per second (heartbeats, requests and answers, each at its size on the wire), as
//! the mean over the nodes and for the coordinator, over 10 virtual seconds; and the
//! wall-clock time the simulation took. `TRAFFIC_NODES=100` runs one size only.

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::time::Instant;

use rendermesh_core::Millis;
use simulator::{Config, SPEED_SUBMIT_MS, Sim, Traffic};

/// The virtual time counted, once the mesh has settled and its jobs are done.
const COUNTED_MS: Millis = 10_000;

fn main() {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
    };
    let only = var("TRAFFIC_NODES");
    let kept = var("TRAFFIC_JOBS").unwrap_or(1_000);
    println!(
        "nodes | jobs kept | per node per second: messages, bytes (mean) | coordinator | wall"
    );
    for nodes in [10, 100, 1_000] {
        if only.is_some_and(|n| n != nodes) {
            continue;
        }
        for jobs in [0, kept] {
            let wall = Instant::now();
            let (mean, coordinator) = measure(nodes, jobs);
            println!(
                "{nodes:>5} | {jobs:>9} | {:>8.1} msg/s {:>10.0} B/s | {:>8.1} msg/s {:>10.0} B/s | {:.1} s",
                mean.0,
                mean.1,
                coordinator.0,
                coordinator.1,
                wall.elapsed().as_secs_f64()
            );
        }
    }
}

/// Settles a mesh of `nodes` with `jobs` one-frame jobs done, then counts what each node
/// receives over [`COUNTED_MS`]: per second, the mean over the nodes and the coordinator's.
fn measure(nodes: usize, jobs: usize) -> ((f64, f64), (f64, f64)) {
    let config = Config {
        duration: u64::MAX / 2,
        jobs,
        frames: 1,
        checks: 0,
        traffic: true,
        ..Config::calm(nodes)
    };
    let mut sim = Sim::new(config, 1);
    while sim.now < SPEED_SUBMIT_MS || !sim.finished() {
        sim.step();
    }
    // The last records reach every node (a minute at most), and then a few seconds more.
    let deadline = sim.now + 60_000;
    while sim.now < deadline && !sim.tables_agree() {
        sim.step();
    }
    let settled = sim.now + 3_000;
    while sim.now < settled {
        sim.step();
    }
    let before = sim.traffic.clone();
    let start = sim.now;
    while sim.now < start + COUNTED_MS {
        sim.step();
    }
    let secs = COUNTED_MS as f64 / 1_000.0;
    let rate = |after: &Traffic, before: &Traffic| {
        (
            (after.messages - before.messages) as f64 / secs,
            (after.bytes - before.bytes) as f64 / secs,
        )
    };
    let per_node: Vec<(f64, f64)> = sim
        .traffic
        .iter()
        .zip(&before)
        .map(|(after, before)| rate(after, before))
        .collect();
    let n = per_node.len() as f64;
    let mean = (
        per_node.iter().map(|r| r.0).sum::<f64>() / n,
        per_node.iter().map(|r| r.1).sum::<f64>() / n,
    );
    let coordinator = sim.agreed().map_or((0.0, 0.0), |i| per_node[i]);
    (mean, coordinator)
}
