//! How close the mesh's scheduling comes to the ideal, measured on the simulator
//! (`node/core/tests/support/simulator.rs`: the real node cores, a simulated network with deliveries
//! delayed up to 50 ms, and a fake renderer whose nodes each take a fixed time per frame).
//!
//! `cargo bench -p rendermesh-core --bench speed` prints, for meshes of 2 to 1,000 nodes
//! whose paces are drawn from 1x to 4x (250 to 1,000 ms a frame) and that pay 1 s to prepare
//! each job (fetch the `.blend`, start Blender): the makespan of one job submitted once the mesh
//! has settled, the ideal (the frames divided by the sum of the nodes' paces, plus one
//! start-up) and their ratio, over a few seeds; the wall-clock time the coordinator's core spent
//! per assignment (every event and tick it handled, over every task handed out; the seeds'
//! mean); the bound whole frames put on any schedule against the same ideal (every pace known
//! in advance, nothing paid per task: `Sim::whole_frame_bound`; the seeds' mean);
//! what each node received a second over the run, the mean over the nodes (heartbeats,
//! requests and answers at their size on the wire; not counted at 1,000 nodes, where encoding
//! every message would double the run); and the wall-clock time the simulation took.
//! `SPEED_NODES=100` runs one size only, `SPEED_NODES=2,10,100` those sizes.
//! `SPEED_FRAME_MS=2500,10000` draws the paces from another range (frames of seconds to minutes
//! are what Cycles renders in practice; the default's short frames make every fixed latency of
//! the mesh count the most).

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::time::Instant;

use simulator::{Config, SPEED_SUBMIT_MS, Sim};

fn main() {
    let only: Option<Vec<usize>> = std::env::var("SPEED_NODES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let frame_ms = std::env::var("SPEED_FRAME_MS")
        .ok()
        .and_then(|s| {
            let (low, high) = s.split_once(',')?;
            Some((low.trim().parse().ok()?, high.trim().parse().ok()?))
        })
        .unwrap_or((250, 1_000));
    println!("paces from {} to {} ms a frame", frame_ms.0, frame_ms.1);
    for checks in [0, 1] {
        println!(
            "\nchecks per worker per job: {checks}{}",
            if checks == 0 {
                " (--no-verify)"
            } else {
                " (the default)"
            }
        );
        table(only.as_deref(), checks, frame_ms);
    }
}

/// One line per mesh size.
fn table(only: Option<&[usize]>, checks: usize, frame_ms: (u64, u64)) {
    println!(
        "nodes | frames | makespan / ideal (per seed)            | worst | whole frames | coordinator per assignment | received per node | wall"
    );
    for (nodes, frames, seeds) in [
        (2, 24, 5),
        (2, 48, 5),
        (10, 200, 5),
        (100, 2_000, 3),
        (1_000, 20_000, 1),
    ] {
        if only.is_some_and(|sizes| !sizes.contains(&nodes)) {
            continue;
        }
        let wall = Instant::now();
        let mut per_assign = Vec::new();
        let mut received = Vec::new();
        let mut bounds = Vec::new();
        let ratios: Vec<f64> = (0..seeds)
            .map(|seed| {
                let config = Config {
                    duration: SPEED_SUBMIT_MS + 1,
                    jobs: 1,
                    frames,
                    frame_ms,
                    // Time enough for the slowest mesh to render every frame a few times over.
                    finish_ms: u64::from(frames) * frame_ms.1 * 4 / nodes as u64,
                    prepare_ms: 1_000,
                    checks,
                    light: nodes >= 1_000,
                    traffic: nodes < 1_000,
                    timed: true,
                    ..Config::calm(nodes)
                };
                let sim = Sim::new(config, seed).run();
                per_assign.extend(sim.coordinator_us_per_assign());
                let bytes: u64 = sim.traffic.iter().map(|t| t.bytes).sum();
                if bytes > 0 {
                    let secs = sim.now as f64 / 1_000.0;
                    received.push(bytes as f64 / sim.traffic.len() as f64 / secs);
                }
                let (makespan, ideal) = sim.makespan();
                bounds.push(sim.whole_frame_bound() as f64 / ideal as f64);
                makespan as f64 / ideal as f64
            })
            .collect();
        let bound = bounds.iter().sum::<f64>() / bounds.len().max(1) as f64;
        let worst = ratios.iter().copied().fold(0.0, f64::max);
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        let per_assign = per_assign.iter().sum::<f64>() / per_assign.len().max(1) as f64;
        let received = if received.is_empty() {
            "-".to_string()
        } else {
            let mean = received.iter().sum::<f64>() / received.len() as f64;
            format!("{:.1} kB/s", mean / 1_000.0)
        };
        println!(
            "{nodes:>5} | {frames:>6} | {:<40} | {worst:.3} | {bound:>12.3} | {per_assign:>19.0} µs | {received:>17} | {:.1} s",
            shown.join(" "),
            wall.elapsed().as_secs_f64()
        );
    }
}
