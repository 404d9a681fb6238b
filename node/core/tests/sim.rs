//! The simulator's scenarios: many seeded runs of 10 and 100 node cores, with jobs submitted
//! and rendered by a fake renderer, through kills, restarts, partitions and heals
//! ([`simulator`] describes the network and the invariants it checks after every step and at
//! the end). A failing run prints its seed and the command that replays it; `SIM_SEEDS=N` runs
//! N seeds per scenario (a soak), `SIM_TRACE=1` prints every change.

#[path = "support/simulator.rs"]
mod simulator;

use rendermesh_protocol::{JobState, Steer};
use simulator::{Config, DEFAULT_SEEDS, SPEED_SUBMIT_MS, Sim};

/// The seeds to run: `SIM_SEED` alone, or `SIM_SEEDS` (default [`DEFAULT_SEEDS`]) of them.
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (0..n).collect()
}

/// What happened over a scenario's runs.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    /// Changes of coordinator.
    changes: usize,
    /// Tasks handed out again.
    requeued: usize,
    /// Renders that hung.
    hung: usize,
    /// Accepted jobs removed or forgotten by the end, once done.
    removed: usize,
    /// Checks compared, and how many found different pixels.
    compared: usize,
    differed: usize,
    /// Peers that looked, 1 s after a polite leave, and those still listing the leaver.
    leave_observers: usize,
    leave_lingering: usize,
    /// Polite leaves that waited for their coordinator's answer, and got it.
    leaves_told: usize,
    /// Nodes killed while holding a task to render next.
    killed_holding_ahead: usize,
    /// Renders stopped while their task still ran (work thrown away).
    stopped_running: usize,
    /// Tasks with a backup that their backup rendered, and that their worker did.
    backups_won: usize,
    originals_won: usize,
}

impl Totals {
    fn add(self, other: Self) -> Self {
        Self {
            changes: self.changes + other.changes,
            requeued: self.requeued + other.requeued,
            hung: self.hung + other.hung,
            removed: self.removed + other.removed,
            compared: self.compared + other.compared,
            differed: self.differed + other.differed,
            leave_observers: self.leave_observers + other.leave_observers,
            leave_lingering: self.leave_lingering + other.leave_lingering,
            leaves_told: self.leaves_told + other.leaves_told,
            killed_holding_ahead: self.killed_holding_ahead + other.killed_holding_ahead,
            stopped_running: self.stopped_running + other.stopped_running,
            backups_won: self.backups_won + other.backups_won,
            originals_won: self.originals_won + other.originals_won,
        }
    }
}

/// Runs every seed of [`seeds`] on `config`, spread over the machine's cores; returns what
/// happened, summed over the runs.
fn run_all(config: Config) -> Totals {
    let seeds = seeds();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The runs' threads bear the test's name, which a failure's replay command quotes.
    let name = std::thread::current().name().unwrap_or("sim").to_owned();
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, move || {
                        mine.into_iter()
                            .map(|seed| {
                                let sim = Sim::new(config, seed).run();
                                Totals {
                                    changes: sim.changes,
                                    requeued: sim.requeued,
                                    hung: sim.hung,
                                    removed: sim.removed(),
                                    compared: sim.compared,
                                    differed: sim.differed,
                                    leave_observers: sim.leave_observers,
                                    leave_lingering: sim.leave_lingering,
                                    leaves_told: sim.leaves_told,
                                    killed_holding_ahead: sim.killed_holding_ahead,
                                    stopped_running: sim.stopped_running,
                                    backups_won: sim.backups_won,
                                    originals_won: sim.originals_won,
                                }
                            })
                            .fold(Totals::default(), Totals::add)
                    })
                    .expect("a thread for the runs")
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|_| panic!("a run failed: its seed is above"))
            })
            .fold(Totals::default(), Totals::add)
    })
}

/// Over many seeds, a scenario changed coordinators and handed tasks out again: it tested
/// what it says it tests.
fn exercised(
    Totals {
        changes, requeued, ..
    }: Totals,
) {
    if seeds().len() >= 50 {
        assert!(
            changes > 0 && requeued > 0,
            "{changes} changes, {requeued} tasks requeued"
        );
    }
}

/// Ten nodes on a lossy network with kills and restarts: what most scenarios change one part
/// of.
const TEN: Config = Config {
    duration: 60_000,
    kills: true,
    loss: 0.05,
    duplicate: 0.05,
    max_delay: 80,
    jobs: 6,
    ..Config::calm(10)
};

#[test]
fn ten_nodes_with_kills_and_restarts_agree_on_one_coordinator_and_lose_no_job() {
    let totals = run_all(TEN);
    exercised(totals);
    // Issue 13: workers hold one task ahead; some die holding one, and nothing is lost.
    if seeds().len() >= 50 {
        assert!(totals.killed_holding_ahead > 0, "{totals:?}");
    }
    // Every worker's renders are checked, and honest renders always agree.
    assert!(totals.compared > 0, "nothing was checked: {totals:?}");
    assert_eq!(totals.differed, 0, "{totals:?}");
}

#[test]
fn ten_nodes_split_and_healed_agree_per_side_then_on_one_and_lose_no_job() {
    let totals = run_all(Config {
        kills: false,
        partitions: true,
        ..TEN
    });
    exercised(totals);
}

#[test]
fn a_hundred_nodes_with_kills_and_splits_agree_on_one_coordinator_and_lose_no_job() {
    let totals = run_all(Config {
        nodes: 100,
        duration: 25_000,
        partitions: true,
        loss: 0.02,
        duplicate: 0.02,
        max_delay: 50,
        jobs: 8,
        ..TEN
    });
    exercised(totals);
}

/// Issue 11: a node holding the mesh's key, but not its coordinator, sends what only a
/// coordinator or an assigned worker may (heartbeats naming higher and absurd terms without
/// claiming, forged job records with higher versions, `Assign`, `Cancel`, `Replicate`, reports
/// of tasks it was never given) and takes assignments it never renders. Every job still
/// finishes, no record it forged is stored, and no node obeys it.
#[test]
fn ten_nodes_with_a_rogue_insider_and_kills_obey_only_their_coordinator_and_lose_no_job() {
    let totals = run_all(Config { rogue: true, ..TEN });
    exercised(totals);
}

/// Issue 12: one node's renders always fail (a broken build). It is blocklisted for a job once
/// it has failed 3 of its tasks, and every job still finishes on the others.
#[test]
fn ten_nodes_with_a_broken_one_blocklist_it_and_finish_every_job() {
    let totals = run_all(Config {
        kills: false,
        broken: true,
        ..TEN
    });
    exercised(totals);
}

/// Issue 12: power cuts. Besides single kills, every node is killed at once now and then, and
/// each comes back with only what it wrote to disk: its job records and the highest term it
/// saw, and its blobs, some of which it finds damaged and removes. No node acts on a record
/// before it is on disk, terms and versions never go down across restarts, every accepted job
/// still finishes, and every frame is on two nodes again at the end.
#[test]
fn ten_nodes_through_power_cuts_carry_on_every_job_from_their_disks() {
    let totals = run_all(Config {
        blackouts: true,
        damage: true,
        ..TEN
    });
    exercised(totals);
}

/// Issue 12: a hung Blender (a frozen driver) held its task for good, since its worker's
/// heartbeat still named it. One node's first render of each job now hangs: the task is taken
/// back once it runs past its timeout (5x the job's median frame time, at least
/// [`simulator::MIN_TASK_TIMEOUT_MS`]), the worker stops the render, and every job finishes.
#[test]
fn ten_nodes_with_one_that_hangs_take_its_tasks_back_and_finish_every_job() {
    let totals = run_all(Config { hangs: true, ..TEN });
    assert!(totals.hung > 0, "no render hung: {totals:?}");
    exercised(totals);
}

/// Issue 12: a node woken from SIGSTOP took every peer for gone, claimed at once, and deposed
/// the live coordinator with its stale table. Nodes (the coordinator half the time) now freeze
/// for 3 to 10 s: nothing reaches them meanwhile, and they do nothing. A woken node never
/// claims over a live coordinator, its late results do not count, and every job finishes.
#[test]
fn ten_nodes_that_freeze_and_wake_never_depose_a_live_coordinator_and_finish_every_job() {
    let totals = run_all(Config {
        freezes: true,
        ..TEN
    });
    exercised(totals);
}

/// Issue 12: nothing was ever deleted. Jobs are now kept a while once they end (4 s here, 30
/// days by default), then removed for everyone; their tombstones are forgotten later still (6 s
/// here, 7 days by default) and deleted from every disk. Through kills and restarts, no job is
/// removed before it is done, none is lost, and removed jobs do end up removed.
#[test]
fn ten_nodes_remove_finished_jobs_after_their_retention_and_lose_none_before() {
    let totals = run_all(Config {
        retention: true,
        ..TEN
    });
    assert!(totals.removed > 0, "no job was removed: {totals:?}");
    exercised(totals);
}

/// Issue 12: no code checked free space. One node runs low on disk from 10 s to 40 s: it takes
/// no work meanwhile (none of its renders starts while it is low), then takes work again, and
/// every job finishes.
#[test]
fn ten_nodes_with_one_low_on_disk_give_it_no_work_and_finish_every_job() {
    let totals = run_all(Config {
        low_disk: true,
        ..TEN
    });
    exercised(totals);
}

/// Issue 12: a node rendering wrong pixels (bad memory, a different library) was believed. One
/// node's renders all come out wrong: a check of its first task in each job (one frame rendered
/// again elsewhere) differs, a third node decides, and it becomes suspect; all it rendered is
/// rendered again. Through kills and restarts, every job finishes and no frame with wrong
/// pixels counts.
#[test]
fn ten_nodes_with_one_rendering_wrong_pixels_catch_it_and_count_none_of_its_frames() {
    let totals = run_all(Config { liar: true, ..TEN });
    assert!(totals.differed > 0, "no check caught the liar: {totals:?}");
    exercised(totals);
}

/// Issue 12: a node stopped politely (SIGTERM, ctrl-c) was seen as dead: its task and, for a
/// coordinator, the election waited out the 2.5 s peer timeout. Half the kills are now polite:
/// the node says it is leaving first. Its peers drop it within a second (all but those whose
/// copy of its last heartbeat was lost in the storm), and every job still finishes.
#[test]
fn ten_nodes_that_leave_politely_are_dropped_at_once_and_lose_no_job() {
    let totals = run_all(Config {
        leaves: true,
        ..TEN
    });
    exercised(totals);
    assert!(totals.leave_observers > 0, "nobody left: {totals:?}");
    // A follower leaving tells its coordinator directly, and waits for its answer.
    assert!(totals.leaves_told > 0, "no leave was answered: {totals:?}");
    assert!(
        totals.leave_lingering * 5 <= totals.leave_observers,
        "peers kept a node that left: {totals:?}"
    );
}

/// Issue 13: speed. Ten nodes whose paces range from 1x to 4x (250 to 1,000 ms a frame), each
/// paying 1 s to prepare the job, render 200 frames: tasks are cut as the job goes (the frames
/// left shared so that every node, from when it is free, ends its share together, at its
/// measured pace; tasks shrinking towards the end), each worker holds one task ahead (from the
/// moment it is handed one while idle), and a task held ahead goes to an idle node that would
/// end it sooner. The job ends within 10 % of the ideal (the frames over the sum of the paces,
/// plus one start-up) over 20 seeds, with checks off (they render more frames than the job
/// has); `cargo bench --bench speed` reports the figures for 2 to 1,000 nodes. (Before the
/// shares by end time and the eager task ahead, the worst of these runs took 1.124.)
#[test]
fn ten_nodes_from_1x_to_4x_end_a_job_near_the_ideal_time() {
    let mut worst: f64 = 0.0;
    let mut stopped = 0;
    for seed in 0..20 {
        let sim = Sim::new(ten_speed_nodes(), seed).run();
        stopped += sim.stopped_running;
        let (makespan, ideal) = sim.makespan();
        // No schedule of whole frames beats the bound, and the bound never beats the ideal.
        let bound = sim.whole_frame_bound();
        assert!(
            ideal <= bound && bound <= makespan,
            "seed {seed}: ideal {ideal} ms, whole-frame bound {bound} ms, makespan {makespan} ms"
        );
        worst = worst.max(makespan as f64 / ideal as f64);
    }
    // A task held ahead is taken back only while its holder has not started it.
    assert_eq!(stopped, 0, "renders stopped while their task still ran");
    assert!(
        worst <= 1.10,
        "the worst run took {worst:.3} times the ideal"
    );
}

/// Issue 13, at the frame times Cycles renders: ten nodes of 2.5 to 10 s a frame (1x to 4x)
/// render 200 frames. The latencies that weigh on 0.25-1 s frames (each task's cost, the
/// deliveries, the last copy) weigh a tenth as much: every run over 10 seeds ends within 4 % of
/// the ideal (1.017-1.032; the goal at 100 nodes is 5 %, which `SPEED_FRAME_MS=2500,10000
/// cargo bench --bench speed` reports), and within 3 % of the bound whole frames put on any
/// schedule. (With no backup tasks and the last frames handed to slow nodes too, the worst
/// run took 1.048.)
#[test]
fn ten_nodes_of_cycles_length_frames_end_within_four_percent_of_the_ideal() {
    let frame_ms = (2_500, 10_000);
    let mut ratios = Vec::new();
    for seed in 0..10 {
        let config = Config {
            frame_ms,
            finish_ms: 200 * frame_ms.1 * 4 / 10,
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let (makespan, ideal) = sim.makespan();
        let bound = sim.whole_frame_bound();
        assert!(
            makespan * 100 <= bound * 103,
            "seed {seed}: makespan {makespan} ms against a whole-frame bound of {bound} ms"
        );
        ratios.push(makespan as f64 / ideal as f64);
    }
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    assert!(
        worst <= 1.04,
        "the worst run took {worst:.3} times the ideal: {ratios:.3?}"
    );
}

/// Issue 13: thirty nodes of 250 to 1,000 ms a frame render 600 frames, in tasks of one to a
/// few frames, often shorter than the second between two of a worker's heartbeats. A worker
/// starts the task it holds next the moment its current one ends; once that one is reported,
/// the coordinator hands it another ahead at once, not after a heartbeat says it renders the
/// next (a word naming that task as held next, unstarted, is out of date by then). Over 20
/// seeds, at most 2 % of the renders start 50 ms or more after the worker's previous one ended
/// (when such a worker waited for its next heartbeat: 294 of 3,785, 7.8 %; now 43 of 3,719),
/// and the job ends within 9 % of the ideal (worst 1.076 before, 1.068 now).
#[test]
fn thirty_nodes_keep_a_task_ahead_between_their_heartbeats() {
    let (mut ratios, mut waits) = (Vec::new(), Vec::new());
    for seed in 0..20 {
        let config = Config {
            frames: 600,
            ..Config {
                nodes: 30,
                ..ten_speed_nodes()
            }
        };
        let sim = Sim::new(config, seed).run();
        let (makespan, ideal) = sim.makespan();
        ratios.push(makespan as f64 / ideal as f64);
        waits.extend(sim.between_tasks);
    }
    let waited = waits.iter().filter(|w| **w >= 50).count();
    assert!(
        waited * 50 <= waits.len(),
        "{waited} of {} renders started 50 ms or more after the one before",
        waits.len()
    );
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    assert!(
        worst <= 1.09,
        "the worst run took {worst:.3} times the ideal: {ratios:.3?}"
    );
}

/// Issue 13: followers pulled a running job's whole record at every version they heard of: at
/// 100 nodes and 2,000 frames, 142 kB a second per node, most of what a node received. A
/// follower now asks for what changed since the version it holds (`GetJobSince`), and the
/// coordinator, remembering the versions it served, answers with the changed tasks alone.
/// Thirty nodes render 600 frames: each receives at most 8 kB a second on average over the run
/// (4.7 kB; 39 kB with whole records), and every node's records come to agree with the
/// coordinator's, changes applied (and the simulator's invariants hold meanwhile).
#[test]
fn thirty_nodes_pull_what_changed_in_a_running_job_not_the_whole_record() {
    let config = Config {
        frames: 600,
        traffic: true,
        ..Config {
            nodes: 30,
            ..ten_speed_nodes()
        }
    };
    let mut sim = Sim::new(config, 1).run();
    let secs = sim.now as f64 / 1_000.0;
    let bytes: u64 = sim.traffic.iter().map(|t| t.bytes).sum();
    let per_node = bytes as f64 / sim.traffic.len() as f64 / secs;
    // Every node comes to hold the coordinator's records, changes applied.
    let deadline = sim.now + 10_000;
    while !sim.tables_agree() && sim.now < deadline {
        sim.step();
    }
    assert!(
        sim.tables_agree(),
        "the records still differ 10 s after the job"
    );
    assert!(
        per_node <= 8_000.0,
        "each node received {per_node:.0} bytes a second"
    );
}

/// Issue 13: tiles by speed. Ten nodes of 250 to 1,000 ms a frame render a 200-frame job
/// (which measures their paces), then one frame forty times as long in tiles sized to the live
/// nodes (`--tiles auto`). The grid weighs each node by its measured speed (30 to 36 tiles
/// here), so the fast nodes take more tiles; and the tail rule holds for tiles as for frames (a
/// slow node gets none of the last tiles when the others would end them all sooner). Over 10
/// seeds the frame ends within 1.27 of the ideal (its work over the sum of the paces, plus one
/// start-up) on average, and 1.35 at worst: mean 1.240, worst 1.331. (Two tiles per node
/// whatever its speed: mean 1.306, worst 1.368; sized by speed but without the tail rule for
/// tiles: mean 1.291, worst 1.371.) What is left is the tiles' fixed costs (the fake renderer
/// adds 0-50 ms to each) and the last tiles; more tiles would cost a real Blender more per tile.
#[test]
fn ten_nodes_from_1x_to_4x_render_one_frame_in_tiles_sized_by_speed() {
    let mut ratios = Vec::new();
    for seed in 0..10 {
        let config = Config {
            tiled_after: 20_000,
            tiled_weight: 40,
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let (makespan, ideal, tiles) = sim.tiled_makespan().expect("the tiled job ended");
        ratios.push((makespan as f64 / ideal as f64, tiles));
    }
    let worst = ratios.iter().map(|r| r.0).fold(0.0, f64::max);
    let mean = ratios.iter().map(|r| r.0).sum::<f64>() / ratios.len() as f64;
    assert!(
        mean <= 1.27 && worst <= 1.35,
        "the runs took {mean:.3} times the ideal on average, {worst:.3} at worst: {ratios:.3?}"
    );
}

/// Issue 13: a queued task (a tile, a planned chunk, one requeued, a check) goes to no worker
/// whose share of what is left is nothing, unless no worker with a share may take it. Without
/// that "unless", a 3-node job stalled in CI: its last check could go only to a node with no
/// share (a check is never rendered by the node it checks). Three nodes of 1x to 4x, checks
/// on, render 24 frames and then one frame six times as long in tiles; over 20 seeds every job
/// and every check ends (the simulator fails a run that leaves one unfinished).
#[test]
fn three_nodes_with_checks_end_every_tile_and_check_of_their_jobs() {
    for seed in 0..20 {
        let config = Config {
            nodes: 3,
            frames: 24,
            checks: 1,
            tiled_after: 4_000,
            tiled_weight: 6,
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let (_, _, tiles) = sim.tiled_makespan().expect("the tiled job ended");
        assert!(tiles >= 3, "seed {seed}: {tiles} tiles for 3 nodes");
    }
}

/// Issue 14: steering. Ten nodes of 1x to 4x render a 200-frame job; 3 s in, a 50-frame job is
/// submitted and raised at once to priority 90: the coordinator hands out its tasks first, so
/// it ends before the first job in each of 10 seeds (at the same priority it would wait for the
/// first job's frames to be all handed out). It takes 2.6 to 3.1 times its ideal alone (its
/// frames over the sum of the paces, plus one start-up): each node first ends the tasks of the
/// first job it holds, the one it renders and the one it holds next. And the first job paused
/// 2 s in for 3 s: the simulator fails any assignment of a paused job, and every job ends.
#[test]
fn ten_nodes_hand_out_a_raised_job_first_and_nothing_of_a_paused_one() {
    for seed in 0..10 {
        let config = Config {
            urgent_after: 3_000,
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let (makespan, ideal, first) = sim.urgent().expect("the urgent job ended");
        assert!(
            first,
            "seed {seed}: the urgent job ended after the first ({makespan} ms, ideal {ideal})"
        );
        let config = Config {
            pause: (2_000, 3_000),
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let steers: Vec<Steer> = sim.steered.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(steers, [Steer::Pause, Steer::Resume], "seed {seed}");
    }
}

/// Issue 14: re-rendering a frame. Ten nodes of 1x to 4x render a 200-frame job (checks on);
/// once it is done, its submitter asks for frame 100 again: the job runs again, and ends with
/// frame 100 made by a second attempt of its task, every frame held twice and the simulator's
/// invariants kept, in each of 10 seeds.
#[test]
fn ten_nodes_render_a_frame_of_a_done_job_again_when_its_submitter_asks() {
    for seed in 0..10 {
        let config = Config {
            rerender: 100,
            checks: 1,
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let steers: Vec<Steer> = sim.steered.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(steers, [Steer::Rerender(100)], "seed {seed}");
        let (state, made) = sim.rerendered().expect("the job's record");
        assert_eq!(state, JobState::Done, "seed {seed}");
        assert_eq!(made.len(), 200, "seed {seed}");
        let hundred = made.iter().find(|(frame, _)| *frame == 100);
        assert!(
            hundred.is_some_and(|(_, attempt)| *attempt >= 2),
            "seed {seed}: frame 100 made by {hundred:?}"
        );
    }
}

/// Issue 13: a job submitted to the coordinator waited for its next tick (up to 100 ms) before
/// its first tasks went out. Now they go out as it is accepted: over 20 seeds, the first render
/// starts within 60 ms of the submission (worst 50 ms, mean 35; when the first tasks waited
/// for a tick: worst 130, mean 78). The simulator delivers each message in up to 50 ms.
#[test]
fn a_submitted_job_starts_rendering_without_waiting_for_a_tick() {
    let mut delays = Vec::new();
    for seed in 0..20 {
        let sim = Sim::new(ten_speed_nodes(), seed).run();
        let first = sim.first_render.values().min().copied().expect("a render");
        delays.push(first - SPEED_SUBMIT_MS);
    }
    let worst = delays.iter().max().copied().unwrap_or(0);
    assert!(
        worst <= 60,
        "a first render started {worst} ms after submission: {delays:?}"
    );
}

/// The speed scenarios' mesh: ten nodes of 250 to 1,000 ms a frame, each paying 1 s to
/// prepare, one job of 200 frames, checks off.
fn ten_speed_nodes() -> Config {
    Config {
        duration: SPEED_SUBMIT_MS + 1,
        jobs: 1,
        frames: 200,
        frame_ms: (250, 1_000),
        prepare_ms: 1_000,
        checks: 0,
        ..Config::calm(10)
    }
}

/// Issue 13: the same ten nodes, where the coordinator takes 1 to 2 s to copy each task's
/// frames (large frames): a worker that has reported its task is free for the next while the
/// copy runs, so the job still ends within 30 % of the ideal over 20 seeds. (When a worker
/// counted as busy until its frames were copied, the worst run took 1.641 and the mean 1.456;
/// now 1.237 and 1.196.)
#[test]
fn ten_nodes_whose_frames_take_seconds_to_copy_keep_rendering_meanwhile() {
    let mut worst: f64 = 0.0;
    for seed in 0..20 {
        let config = Config {
            copy_ms: (1_000, 2_000),
            ..ten_speed_nodes()
        };
        let sim = Sim::new(config, seed).run();
        let (makespan, ideal) = sim.makespan();
        worst = worst.max(makespan as f64 / ideal as f64);
    }
    assert!(
        worst <= 1.30,
        "the worst run took {worst:.3} times the ideal"
    );
}

/// Issue 13: at the end of a job, idle nodes back up the tasks expected to end last when they
/// would end them sooner (MapReduce's backup tasks); one node straggles (it slows down four
/// times once its pace is measured). Over many runs, some backups render their task first and
/// some originals do; either way the first result counts, the other is refused, and every
/// invariant holds (no frame counts twice or from another assignment).
#[test]
fn ten_nodes_from_1x_to_4x_back_up_the_last_tasks_and_count_the_first_result() {
    let totals = run_all(Config {
        duration: SPEED_SUBMIT_MS + 1,
        jobs: 1,
        frames: 40,
        frame_ms: (250, 1_000),
        prepare_ms: 1_000,
        straggler: true,
        ..Config::calm(10)
    });
    if seeds().len() >= 50 {
        assert!(
            totals.backups_won > 0 && totals.originals_won > 0,
            "{totals:?}"
        );
    }
}

/// Issue 13: a node that hears nobody and has no contact claims once its probes are over
/// (half a second), not after the whole election grace, and renders its job alone.
#[test]
fn a_node_alone_claims_at_once_and_renders_its_job() {
    let config = Config {
        duration: SPEED_SUBMIT_MS + 1,
        jobs: 1,
        frames: 6,
        ..Config::calm(1)
    };
    let sim = Sim::new(config, 1).run();
    let first = sim.first_lead.expect("it leads");
    assert!(first <= 700, "it claimed at {first} ms");
    // Idle until the job comes, it had its engines probed then, once (never while rendering:
    // every run checks that).
    assert_eq!(sim.probes, 1);
}

/// Issue 13: what a node handles per second does not grow with the mesh. Only the coordinator
/// gossips its heartbeat; every other node sends its own to the coordinator and learns the mesh
/// from the coordinator's membership record, and the job table by digest. Settled meshes of 10
/// and 100 nodes with jobs done: every node knows every other and holds the coordinator's
/// table, and over 10 virtual seconds each follower receives a few messages a second at either
/// size (it received one heartbeat per peer per second before), the coordinator one per node.
#[test]
fn a_settled_mesh_costs_each_follower_a_few_messages_a_second_at_any_size() {
    let mut per_follower = Vec::new();
    for nodes in [10, 100] {
        let config = Config {
            duration: u64::MAX / 2,
            jobs: 40,
            frames: 1,
            checks: 0,
            traffic: true,
            ..Config::calm(nodes)
        };
        let mut sim = Sim::new(config, 1);
        while sim.now < SPEED_SUBMIT_MS || !sim.finished() {
            sim.step();
        }
        let deadline = sim.now + 60_000;
        let agree = |sim: &Sim| {
            sim.tables_agree()
                && sim
                    .nodes
                    .iter()
                    .all(|n| n.core.membership().members().count() == nodes - 1)
        };
        while sim.now < deadline && !agree(&sim) {
            sim.step();
        }
        assert!(
            agree(&sim),
            "{nodes} nodes never agreed on the table and the members"
        );
        let before = sim.traffic.clone();
        let start = sim.now;
        while sim.now < start + 10_000 {
            sim.step();
        }
        let coordinator = (0..nodes)
            .find(|&i| sim.nodes[i].core.leading().is_some())
            .expect("a coordinator");
        let received = |i: usize| (sim.traffic[i].messages - before[i].messages) as f64 / 10.0;
        let followers: Vec<f64> = (0..nodes)
            .filter(|&i| i != coordinator)
            .map(received)
            .collect();
        let worst = followers.iter().copied().fold(0.0, f64::max);
        let mean = followers.iter().sum::<f64>() / followers.len() as f64;
        assert!(
            worst <= 5.0,
            "{nodes} nodes: a follower received {worst} messages a second"
        );
        assert!(
            received(coordinator) <= 2.0 * nodes as f64,
            "{nodes} nodes: the coordinator received {} a second",
            received(coordinator)
        );
        per_follower.push(mean);
    }
    assert!(
        per_follower[1] <= 2.0 * per_follower[0],
        "per follower: {per_follower:?} messages a second at 10 and 100 nodes"
    );
}

/// Issue 13: a coordinator killed right after the first election, before its followers hold
/// its membership record (they stopped gossiping as they started following it), is replaced by
/// the smallest surviving id, within 5 s, over many seeds: no follower forgets a live peer
/// that went quiet because it follows the coordinator too.
#[test]
fn a_coordinator_killed_just_after_the_first_election_is_replaced_by_the_smallest_survivor() {
    let mut wrong = Vec::new();
    let seeds: Vec<u64> = if std::env::var("SIM_SEED").is_ok() {
        seeds()
    } else {
        (0..200).collect()
    };
    for seed in seeds {
        let mut sim = Sim::new(Config::calm(4), seed);
        let deadline = 10_000;
        let old = loop {
            assert!(sim.now < deadline, "seed {seed}: no first coordinator");
            sim.step();
            if let Some(c) = sim.agreed() {
                break c;
            }
        };
        sim.kill(old);
        let killed = sim.now;
        let new = loop {
            assert!(
                sim.now < killed + 5_000,
                "seed {seed}: no new coordinator within 5 s"
            );
            sim.step();
            if let Some(c) = sim.agreed().filter(|&c| c != old) {
                break c;
            }
        };
        let smallest = (0..4)
            .filter(|&i| i != old)
            .min_by(|&a, &b| sim.nodes[a].id.cmp(&sim.nodes[b].id))
            .expect("survivors");
        if new != smallest {
            wrong.push(seed);
        }
    }
    assert!(
        wrong.is_empty(),
        "seeds whose new coordinator was not the smallest survivor: {wrong:?}"
    );
}
