//! How fast the mesh agrees on a coordinator, measured on the simulator
//! (`node/tests/support/simulator.rs`: the real membership cores on a simulated gossip network
//! with deliveries delayed up to 50 ms), and how fast the job model hands out tasks.
//!
//! `cargo bench -p rendermesh-node --bench election` prints, for 100 and 1,000 nodes: the
//! virtual time to the first agreed coordinator and, after that coordinator is killed, to the
//! next one, each with the wall-clock time the simulation took; then how many task
//! assignments per second of CPU the coordinator's job model makes.

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::time::Instant;

use rendermesh_protocol::{
    BlobHash, Engine, FrameRange, Job, JobId, JobSpec, NodeId, OutputFormat, Term, plan,
};
use simulator::{Config, Sim};

fn main() {
    println!("nodes | first coordinator (virtual, wall) | after killing it (virtual, wall)");
    for nodes in [100, 1_000] {
        let config = Config {
            nodes,
            duration: u64::MAX / 2,
            kills: false,
            partitions: false,
            loss: 0.0,
            duplicate: 0.0,
            max_delay: 50,
        };
        let mut sim = Sim::new(config, 1);
        let wall = Instant::now();
        while sim.agreed().is_none() {
            sim.step();
        }
        let (first, first_wall) = (sim.now, wall.elapsed());
        let Some(leader) = sim.agreed() else {
            unreachable!("just agreed")
        };
        sim.kill(leader);
        let (killed, wall) = (sim.now, Instant::now());
        while sim.agreed().is_none() {
            sim.step();
        }
        println!(
            "{nodes:>5} | {:>6} ms, {:>7.2} s | {:>6} ms, {:>7.2} s",
            first,
            first_wall.as_secs_f64(),
            sim.now - killed,
            wall.elapsed().as_secs_f64()
        );
    }

    // The coordinator's hand-out: the next task for a worker and its assignment, over the
    // largest job, 20 workers taking turns.
    let spec = JobSpec {
        name: "bench.blend".into(),
        blend: BlobHash::of(b"bench"),
        blend_size: 5,
        frames: FrameRange::new(1, 20_000).expect("a valid range"),
        samples: None,
        resolution_percent: None,
        format: OutputFormat::Png,
        chunk: Some(1),
        tiles: None,
        blender_version: None,
        blend_path: None,
        deps: Vec::new(),
        missing: Vec::new(),
        engine: Engine::Cycles,
        keep_file_format: false,
    };
    let workers: Vec<NodeId> = (0..20).map(|i| NodeId(format!("worker-{i:02}"))).collect();
    let plan = plan(&spec, workers.len());
    let mut job = Job::new(JobId([1; 16]), spec, workers[0].clone(), plan, Term(1), 0);
    let started = Instant::now();
    let mut assigned = 0u32;
    for worker in workers.iter().cycle() {
        let Some(index) = job.next_task_for(worker) else {
            break;
        };
        if job.assign(index, worker.clone(), Term(1)).is_ok() {
            assigned += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "job model: {assigned} assignments in {secs:.3} s: {:.0} per second of CPU",
        f64::from(assigned) / secs
    );
}
