//! How fast the mesh agrees on a coordinator, measured on the simulator
//! (`node/core/tests/support/simulator.rs`: the real membership cores on a simulated gossip network
//! with deliveries delayed up to 50 ms), and how fast the job model hands out tasks.
//!
//! `cargo bench -p rendermesh-core --bench election` prints, for 100 and 1,000 nodes: the
//! virtual time to the first agreed coordinator and, after that coordinator is killed, to the
//! next one, each with the wall-clock time the simulation took; then how many task
//! assignments per second of CPU the coordinator core makes.

#[path = "../tests/support/simulator.rs"]
mod simulator;

use std::time::Instant;

use rendermesh_core::coordinator::{Coordinator, Policy, Seat, View};
use rendermesh_core::table::JobTable;
use rendermesh_core::{Action, Outbox, ReplyTo};
use rendermesh_protocol::{
    BlobHash, Engine, FrameRange, JobId, JobSpec, NodeId, Outcome, Output, Report, Request,
    Response, Term,
};
use simulator::{Config, Sim};

fn main() {
    println!("nodes | first coordinator (virtual, wall) | after killing it (virtual, wall)");
    for nodes in [100, 1_000] {
        let config = Config {
            duration: u64::MAX / 2,
            ..Config::calm(nodes)
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

    // The coordinator core's hand-out: 20 workers render one job of single-frame tasks; each
    // round the coordinator assigns a task to every idle worker, each worker accepts and
    // reports, and the coordinator takes each report once its frame is held.
    for frames in [2_000, 20_000] {
        let (assigned, secs) = hand_out(frames);
        println!(
            "coordinator core, job of {frames} one-frame tasks, 20 workers: {assigned} \
             assignments in {secs:.2} s of CPU: {:.0} per second",
            f64::from(assigned) / secs
        );
    }
}

/// Runs one job of `frames` one-frame tasks through a coordinator and 20 workers; returns the
/// assignments made and the seconds they took.
fn hand_out(frames: u32) -> (u32, f64) {
    let spec = JobSpec {
        chunk: Some(1),
        ..JobSpec::new(
            "bench.blend",
            BlobHash::of(b"bench"),
            5,
            FrameRange::new(1, frames).expect("a valid range"),
        )
    };
    let me = NodeId::from_bytes(*b"coordinator").expect("a node id");
    let workers: Vec<NodeId> = (0..20)
        .map(|i| NodeId::from_bytes(format!("worker-{i:02}")).expect("a node id"))
        .collect();
    let mut table = JobTable::default();
    let mut out = Outbox::new(me.clone());
    let mut coordinator = Coordinator::new(me.clone(), Term(1), Policy::default(), &table, 0);
    let view = |now| View {
        now,
        wall_ms: 0,
        workers: workers
            .iter()
            .map(|id| Seat {
                id,
                blender: Some("Blender 3.4.1"),
                engines: &[Engine::Cycles],
                current: None,
                held: Vec::new(),
                last_seen: now,
                low_disk: false,
            })
            .collect(),
        peers: workers.iter().collect(),
        full: Vec::new(),
    };
    let id = JobId([1; 16]);
    coordinator.submit(
        &mut table,
        &view(0),
        id,
        spec,
        workers[0].clone(),
        ReplyTo::Outside(0),
        &mut out,
    );
    let started = Instant::now();
    let mut assigned = 0;
    let mut now = 0;
    while table.get(&id).is_some_and(|j| !j.state.is_terminal()) {
        now += 100;
        coordinator.tick(&mut table, &view(now), &mut out);
        for action in out.take_actions() {
            let Action::Send {
                to,
                request: Request::Assign(a),
                ticket,
            } = action
            else {
                continue;
            };
            assigned += 1;
            coordinator.answered(&mut table, ticket, Ok(Response::Accepted), now, &mut out);
            let blob = BlobHash::of(&a.task.to_le_bytes());
            let report = Report {
                job: a.job,
                task: a.task,
                attempt: a.attempt,
                outcome: Outcome::Done(vec![Output {
                    frame: a.frames.start,
                    blob,
                    size: 4,
                    thumb: None,
                }]),
            };
            coordinator.report(&mut table, &view(now), to, report, None, &mut out);
            for fetch in out.take_actions() {
                if let Action::Fetch { ticket, .. } = fetch {
                    coordinator.fetched(&mut table, ticket, Ok(()), now, &mut out);
                }
            }
        }
    }
    (assigned, started.elapsed().as_secs_f64())
}
