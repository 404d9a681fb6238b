//! A deterministic simulator of the mesh, shared by the simulator tests (`node/core/tests/sim.rs`)
//! and the election benchmark (`node/core/benches/election.rs`): N node cores
//! ([`rendermesh_core::Core`], the same code the real node runs) on a simulated network,
//! in virtual time, all randomness from one seeded RNG.
//!
//! The network delays, duplicates and reorders heartbeats and loses some in the seconds after
//! each disturbance; requests arrive after a delay, and fail when their peer is dead or on the
//! other side of a split (as a closed connection makes them fail). Nodes are killed (the
//! coordinator more often than not), or all at once (a power cut, with `blackouts`), and
//! restart with only what they had on disk: their blob store, and the job records and term
//! their core wrote (`Action::Persist`); the network splits in two and heals. Clients submit jobs to random nodes, retrying as the
//! command line does; a fake renderer (`FAKE_RENDERER`, never the product's) renders each
//! frame in a time that depends on the node, and names every output blob after the node and
//! the attempt that made it.
//!
//! After every step it checks the invariants (job records once per tick):
//! - a node's term never goes down, nor a job record's version, across restarts too;
//! - before a node carries out any action, its disk holds its term and each of its job
//!   records as its core holds them (nothing is acted on that a power cut could take back);
//! - once nothing has been disturbed for [`SETTLE_MS`], every connected set of live nodes has
//!   exactly one coordinator, and every other node of the set follows it in its term;
//! - once settled, no coordinator is low on disk while a node with room is live;
//! - every job record counts a task's result once, and only the result of the task's current
//!   assignment (the worker and attempt the record names);
//! - a node's engines are probed (`Action::ProbeEngines`) at most once a run, and never while
//!   it renders.
//!
//! - every job record carries the spec its client submitted (no forged record is stored);
//! - no node takes an order from the rogue insider, when there is one: it sends, as a node
//!   with the key that does not coordinate, heartbeats naming higher terms (up to u64::MAX)
//!   without claiming, job records with higher versions (outputs rewritten, the `.blend`
//!   swapped, frames 0..u32::MAX), `Assign`, `Cancel`, `Replicate`, `GiveBack` and reports of
//!   tasks it was never given, and it takes assignments and never renders them.
//!
//! At the end, once the network has healed and settled: every job a client was told was
//! accepted is done on the coordinator (no job is lost, whichever coordinator died), and
//! every frame of it is held on two nodes.
//!
//! A failing run names its seed and the command that replays it:
//! `SIM_SEED=<seed> cargo test -p rendermesh-core --test sim -- <test name> --exact`.
//! `SIM_SEEDS=N` runs N seeds per configuration instead of the default (a soak);
//! `SIM_RENDERS=1` prints every render the fake renderer starts (the speed scenarios' trace).

// Shared by two crates (the tests and the benchmark), each of which uses a part.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rendermesh_core::membership::ELECTION_GRACE_MS;
use rendermesh_core::node::HANDOVER_MS;
use rendermesh_core::{
    Action, Core, Millis, Policy, Profile, ReplyTo, Saved, StitchFailure, Ticket,
};
use rendermesh_protocol::{
    Assignment, BlobHash, Engine, FrameRange, Heartbeat, Job, JobId, JobSpec, JobState, NodeId,
    Outcome, Output, Request, Response, Role, Steer, TaskState, Term, TileGrid, Tiling, Version,
    limits,
};

/// The actor's tick.
const TICK_MS: Millis = 100;
/// How long after the last disturbance every connected set must have settled: the storm, a
/// timeout, a grace period and a few heartbeats.
pub const SETTLE_MS: Millis =
    STORM_MS + limits::PEER_TIMEOUT_MS + ELECTION_GRACE_MS + 2 * limits::HEARTBEAT_MS;
/// How long heartbeats may be lost after a disturbance.
const STORM_MS: Millis = 4_000;
/// Seeds run per configuration in CI.
pub const DEFAULT_SEEDS: u64 = 200;
/// After the last disturbance, how long every accepted job has to finish.
const FINISH_MS: Millis = 120_000;
/// The Blender version most nodes run; a few run [`OTHER_BLENDER`], and jobs pinned to this
/// one must never run there.
const BLENDER: &str = "Blender 3.4.1";
const OTHER_BLENDER: &str = "Blender 4.2.0";
/// Names the fake renderer in every output it makes.
const FAKE_RENDERER: &str = "fake renderer (simulator only)";

/// `SIM_TRACE=1`: print every change of coordinator, kill, restart, split and heal.
fn trace() -> bool {
    std::env::var_os("SIM_TRACE").is_some()
}

/// What a run simulates.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub nodes: usize,
    /// Virtual time simulated (disturbances stop [`SETTLE_MS`] before its end).
    pub duration: Millis,
    /// Nodes are killed (and restarted later).
    pub kills: bool,
    /// The network splits in two and heals.
    pub partitions: bool,
    /// Chance that one delivery of a heartbeat is lost, for [`STORM_MS`] after a disturbance.
    pub loss: f64,
    /// Chance that a delivery is duplicated.
    pub duplicate: f64,
    /// Largest delivery delay (deliveries are reordered within it).
    pub max_delay: Millis,
    /// Jobs the clients submit, in the first half of the run.
    pub jobs: usize,
    /// A rogue insider joins the mesh.
    pub rogue: bool,
    /// One node's renders always fail (a broken build): it must get at most
    /// [`limits::BLOCKLIST_AFTER`] tasks of each job.
    pub broken: bool,
    /// Some disturbances kill every node at once (a power cut); each comes back with what it
    /// wrote to disk.
    pub blackouts: bool,
    /// A restarted node may find up to two blobs of its store damaged (removed, and its core
    /// told): each blob at most once per run, so one whole copy is always left somewhere.
    pub damage: bool,
    /// One node's first render of each job hangs (a frozen driver) until it is cancelled, while
    /// its heartbeats go on naming the task.
    pub hangs: bool,
    /// One node slows down four times from its third render of each job on (a straggler: a
    /// machine someone started using, or one running hot): its measured pace turns out wrong
    /// at the end of the job, which backup tasks are for.
    pub straggler: bool,
    /// Nodes freeze (SIGSTOP, a suspended machine) for a few seconds and wake: meanwhile
    /// nothing reaches them, and they do nothing.
    pub freezes: bool,
    /// Jobs are kept [`RETENTION_MS`] once they end, then removed; their tombstones are
    /// forgotten [`TOMBSTONE_MS`] later.
    pub retention: bool,
    /// One node runs low on disk for a while: it must take no work meanwhile.
    pub low_disk: bool,
    /// One node renders wrong pixels (bad memory, a broken library): checks must catch it,
    /// and no frame it rendered may count at the end.
    pub liar: bool,
    /// Half the kills are polite (SIGTERM): the node leaves first ([`Core::leave`]), and its
    /// peers must drop it within [`LEFT_WITHIN_MS`] rather than wait for its silence.
    pub leaves: bool,
    /// Milliseconds the fake renderer takes per frame: each node's pace is drawn from this
    /// range once (a 250..1_000 range is a mesh of machines from 1x to 4x).
    pub frame_ms: (Millis, Millis),
    /// What a node pays once per job before its first frame: fetching the `.blend` and
    /// starting Blender.
    pub prepare_ms: Millis,
    /// How long the coordinator takes to copy a task's frames from its worker (at random
    /// within the range): large frames take seconds.
    pub copy_ms: (Millis, Millis),
    /// When not 0, every client submits one job of this many whole frames, for any Blender, at
    /// [`SPEED_SUBMIT_MS`] (the mesh has settled by then): the speed scenarios.
    pub frames: u32,
    /// With `frames`: when not 0, one more client submits one frame in tiles sized to the
    /// live nodes (`--tiles auto`) this long after [`SPEED_SUBMIT_MS`] (the first job's paces
    /// measured by then), a frame [`Config::tiled_weight`] times as long as the others; the
    /// fake renderer takes a tile's share of that frame's time ([`Sim::tiled_makespan`]).
    pub tiled_after: Millis,
    /// How many ordinary frames' time the tiled frame takes.
    pub tiled_weight: Millis,
    /// How long every accepted job has to finish after the last disturbance, when longer than
    /// the 120 s every scenario gets (jobs of long frames).
    pub finish_ms: Millis,
    /// With `frames`: when not 0, one more client submits a job of a quarter as many frames
    /// this long after [`SPEED_SUBMIT_MS`], and raises its priority to 90 (of 100) at once, on
    /// the node it submitted it to ([`Sim::urgent`]).
    pub urgent_after: Millis,
    /// With `frames`: when not (0, 0), the first job's submitter pauses it this long after
    /// [`SPEED_SUBMIT_MS`], and resumes it that long after.
    pub pause: (Millis, Millis),
    /// With `frames`: when not 0, once the first job is done its submitter asks for this frame
    /// again ([`Steer::Rerender`]), and the run goes on until the job is done again
    /// ([`Sim::rerendered`]).
    pub rerender: u32,
    /// Checks per worker per job ([`Policy::checks`]; the product's default is 1).
    pub checks: usize,
    /// Count the messages and bytes each node receives ([`Sim::traffic`]): the traffic bench.
    pub traffic: bool,
    /// Check every node's job records once a simulated second instead of every tick (the
    /// 1,000-node speed bench: checking 1,000 copies of a 20,000-frame record ten times a
    /// second would be most of its time). Everything else is checked as always.
    pub light: bool,
    /// Time what each core spends on the events and ticks it handles
    /// ([`Sim::coordinator_us_per_assign`]): the speed bench. Off, the clock is not read around
    /// every event (7 % of a 100-node scenario's run, measured with `perf`).
    pub timed: bool,
}

/// What one node received: heartbeats, requests and answers, each counted once per delivery
/// at its size on the wire (`codec::encode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
}

impl Config {
    /// A settled mesh of `nodes`, no disturbance, no job: what the speed scenarios and the
    /// benchmarks change.
    pub const fn calm(nodes: usize) -> Self {
        Self {
            nodes,
            duration: 0,
            kills: false,
            partitions: false,
            loss: 0.0,
            duplicate: 0.0,
            max_delay: 50,
            jobs: 0,
            rogue: false,
            broken: false,
            blackouts: false,
            damage: false,
            hangs: false,
            straggler: false,
            freezes: false,
            retention: false,
            low_disk: false,
            liar: false,
            leaves: false,
            frame_ms: (50, 400),
            prepare_ms: 0,
            copy_ms: (5, 100),
            frames: 0,
            tiled_after: 0,
            tiled_weight: 1,
            finish_ms: 0,
            urgent_after: 0,
            pause: (0, 0),
            rerender: 0,
            checks: 1,
            traffic: false,
            light: false,
            timed: false,
        }
    }
}

/// When the speed scenarios' clients submit: the mesh has elected and settled.
pub const SPEED_SUBMIT_MS: Millis = 5_000;

/// How long an engines probe takes (a Blender run of its own).
const PROBE_MS: Millis = 1_000;

/// A node that left politely is no longer listed by the peers that heard it within this long
/// (the peer timeout is 2.5 s).
pub const LEFT_WITHIN_MS: Millis = 1_000;
/// How long a departing node waits for its coordinator to answer its leaving heartbeat, as
/// `rendermesh-node`'s mesh actor does (`TOLD_WAIT`).
pub const TOLD_WAIT_MS: Millis = 1_500;

/// The size of `message` on the wire.
fn wire_size<T: serde::Serialize>(message: &T) -> usize {
    rendermesh_protocol::codec::encode(message, usize::MAX).map_or(0, |bytes| bytes.len())
}

/// One simulated node.
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Its core.
    pub core: Core,
    /// Whether it runs.
    pub alive: bool,
    /// Counts its runs: what was meant for an earlier run is dropped.
    run: u32,
    /// Milliseconds the fake renderer takes per frame on this node.
    speed: Millis,
    /// Wall-clock time spent in its core (events, ticks), for benchmarks: not the simulator's
    /// own work on what the core asked for.
    pub busy: std::time::Duration,
    blender: &'static str,
    /// Its blob store (it survives restarts, as a disk does).
    blobs: BTreeSet<BlobHash>,
    /// What its core wrote to disk (`Action::Persist`): the highest term and its job records.
    disk_term: Term,
    disk_jobs: BTreeMap<JobId, Job>,
    disk_repairs: Vec<BlobHash>,
    /// The render under way.
    render: Option<Assignment>,
    /// The job and the time of its last render ended (rendered, not stopped).
    rendered: Option<(JobId, Millis)>,
    next_tick: Millis,
    /// The highest term its core has reported in this run.
    seen_term: Term,
    /// Every render it fails (a broken node).
    broken: bool,
    /// Its first render of each job hangs.
    hangs: bool,
    /// It renders four times slower from its third render of each job on.
    straggles: bool,
    /// Every render it makes has wrong pixels.
    liar: bool,
    /// Frozen until then: everything due to it waits until it wakes.
    frozen_until: Millis,
    /// When it last woke from a freeze.
    woke_at: Option<Millis>,
    /// Renders started, per job.
    renders: BTreeMap<JobId, usize>,
    /// Renders failed, per job (a broken node's).
    failed: BTreeMap<JobId, usize>,
    /// Its engines were probed in this run.
    probed: bool,
    /// When it is (or was) ready to render each job: its `.blend` fetched and its Blender
    /// started ([`Config::prepare_ms`] after it first had to). Lost with the process.
    ready: BTreeMap<JobId, Millis>,
    /// The version of each job record last checked, in this run.
    seen_versions: BTreeMap<JobId, Version>,
}

/// A client of the mesh: one job, submitted to a node and retried until a node accepts it.
struct Client {
    id: JobId,
    spec: JobSpec,
    /// When it next tries.
    next_try: Millis,
    /// The node it waits on, with that node's run, and until when.
    waiting: Option<(usize, u32, Millis)>,
    /// A node said the job was accepted.
    accepted: bool,
    /// The node that accepted it (its submitter, the one node that may steer it).
    origin: Option<usize>,
    /// What its submitter asks of it, and from when: each asked in turn until accepted.
    steers: Vec<(Millis, Steer)>,
    /// A steer asked and not answered yet.
    steering: bool,
}

/// Who waits for the answer to a request.
enum Waiter {
    /// Node `node` (in run `run`) sent it with `ticket` to `responder`.
    Node {
        node: usize,
        run: u32,
        ticket: Ticket,
        responder: usize,
    },
    /// Client `client` asked its node.
    Client { client: usize },
    /// Client `client` asked its job's origin to steer it.
    Steer { client: usize },
    /// The rogue sent it; it must be refused.
    Rogue { what: &'static str },
}

/// Something due at a moment.
#[derive(Debug)]
enum Event {
    Heartbeat {
        to: usize,
        from: usize,
        hb: Arc<Heartbeat>,
    },
    Request {
        to: usize,
        from: usize,
        key: u64,
        request: Box<Request>,
    },
    Answer {
        to: usize,
        run: u32,
        ticket: Ticket,
        answer: Result<Response, String>,
    },
    Fetched {
        to: usize,
        run: u32,
        ticket: Ticket,
        blobs: Vec<BlobHash>,
    },
    Stitched {
        to: usize,
        run: u32,
        ticket: Ticket,
        job: JobId,
        frame: u32,
        tiles: Vec<BlobHash>,
        copy_to: Option<NodeId>,
    },
    Rendered {
        to: usize,
        run: u32,
        assignment: Box<Assignment>,
    },
    Compared {
        to: usize,
        run: u32,
        ticket: Ticket,
        checked: BlobHash,
        check: BlobHash,
    },
    Cancelled {
        to: usize,
        run: u32,
        assignment: Box<Assignment>,
    },
    /// Its engines probe answered.
    Probed { to: usize, run: u32 },
}

impl Event {
    /// The node it is due to.
    fn target(&self) -> usize {
        match self {
            Event::Heartbeat { to, .. }
            | Event::Request { to, .. }
            | Event::Answer { to, .. }
            | Event::Fetched { to, .. }
            | Event::Stitched { to, .. }
            | Event::Rendered { to, .. }
            | Event::Compared { to, .. }
            | Event::Cancelled { to, .. }
            | Event::Probed { to, .. } => *to,
        }
    }
}

pub struct Sim {
    config: Config,
    seed: u64,
    rng: StdRng,
    /// Virtual time.
    pub now: Millis,
    /// Every node, dead or alive.
    pub nodes: Vec<Node>,
    index: BTreeMap<NodeId, usize>,
    /// Everything due, in time order (`.1` orders equal times).
    queue: BTreeMap<(Millis, u64), Event>,
    order: u64,
    /// Requests waiting for an answer, by the number their answer comes back with.
    waiting: BTreeMap<u64, Waiter>,
    next_key: u64,
    clients: Vec<Client>,
    /// Which side of a partition each node is on (all 0 when healed).
    side: Vec<u8>,
    /// When anything last changed the mesh (a kill, a restart, a split, a heal).
    disturbed: Millis,
    /// When the next disturbance is due.
    next_disturbance: Millis,
    /// Dead nodes and when they come back.
    restarts: Vec<(usize, Millis)>,
    /// Which node rendered each output blob, of which task and attempt.
    made_by: BTreeMap<BlobHash, (NodeId, JobId, u32, u32)>,
    /// Output blobs with wrong pixels: the liar's renders, and frames stitched from its tiles.
    wrong: BTreeSet<BlobHash>,
    /// Comparisons made, and how many found different pixels.
    pub compared: usize,
    pub differed: usize,
    /// Nodes leaving politely, with their run and since when: each dies once it has said so
    /// (a coordinator hands its term over first, for `HANDOVER_MS` at most).
    departing: Vec<(usize, u32, Millis)>,
    /// Polite leaves to look at: the node, and when its peers must have dropped it.
    leaves_due: Vec<(usize, Millis)>,
    /// Over those: live nodes that looked, and those that still listed the leaver.
    pub leave_observers: usize,
    pub leave_lingering: usize,
    /// Polite leaves that waited for the coordinator to answer the leaving heartbeat, and got
    /// its answer (as the node's process does, for [`TOLD_WAIT_MS`] at most).
    pub leaves_told: usize,
    /// Departing nodes that had to wait for their coordinator's answer, by run.
    waited_to_tell: BTreeSet<(usize, u32)>,
    /// Changes of coordinator seen.
    pub changes: usize,
    /// When a node first led.
    pub first_lead: Option<Millis>,
    /// Nodes killed while holding a task to render next (one task ahead).
    pub killed_holding_ahead: usize,
    /// Renders stopped while their task still ran, by the record their node held: the record
    /// had moved on from an assignment its worker had started (a task held ahead taken back
    /// after it started, or a task timed out or requeued), work thrown away.
    pub stopped_running: usize,
    /// Waits of a worker between the end of a render and the start of its next in the same
    /// job (its Blender ready), in milliseconds: the speed scenarios' idle time between tasks.
    pub between_tasks: Vec<Millis>,
    /// When each job's first render started.
    pub first_render: BTreeMap<JobId, Millis>,
    /// Tasks seen running with a backup, by (job, task, attempt): their worker and backup.
    backed: BTreeMap<(JobId, u32, u32), (NodeId, NodeId)>,
    /// Of those, the ones whose backup rendered them, and whose worker did.
    pub backups_won: usize,
    /// Engines probes asked (once per node run, only while idle).
    pub probes: usize,
    pub originals_won: usize,

    /// Tasks handed out again (attempt 2 or more) seen.
    pub requeued: usize,
    /// Assignments delivered to workers, every attempt and backup included.
    pub assigns: usize,
    /// Wall-clock time spent carrying out what cores asked for (`perform`).
    carried: std::time::Duration,
    /// Renders that hung.
    pub hung: usize,
    /// Jobs some node has held done (not removed).
    done_seen: BTreeSet<JobId>,
    /// When each job was first seen done (to the tick).
    done_at: BTreeMap<JobId, Millis>,
    /// Each steer a coordinator accepted: the job, what, and when.
    pub steered: Vec<(JobId, Steer, Millis)>,
    /// Whether the first job's frame [`Config::rerender`] was asked for again.
    rerender_asked: bool,
    /// Jobs some node has held removed: their frames may be collected.
    removed_seen: BTreeSet<JobId>,
    /// The rogue insider's id, and when it next acts.
    rogue: Option<(NodeId, Millis)>,
    /// The rogue's requests refused.
    pub refused: usize,
    /// Blobs damaged on some node's disk so far.
    damaged: BTreeSet<BlobHash>,
    /// What each node received, when [`Config::traffic`] counts it (else all zero).
    pub traffic: Vec<Traffic>,
}

impl Sim {
    /// A mesh of `config.nodes` fresh nodes at time 0, all randomness from `seed`.
    pub fn new(config: Config, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes: Vec<Node> = (0..config.nodes)
            .map(|i| {
                // Ids in a shuffled order, so the smallest id is not always node 0.
                let id = NodeId::from_bytes(format!("{:08x}-{i:04}", rng.random::<u32>()))
                    .expect("a node id");
                let blender = if i % 5 == 4 { OTHER_BLENDER } else { BLENDER };
                Node {
                    core: new_core(&id, blender, 0, policy(config)),
                    id,
                    alive: true,
                    run: 0,
                    speed: rng.random_range(config.frame_ms.0..config.frame_ms.1),
                    busy: std::time::Duration::ZERO,
                    blender,
                    blobs: BTreeSet::new(),
                    disk_term: Term(0),
                    disk_jobs: BTreeMap::new(),
                    disk_repairs: Vec::new(),
                    render: None,
                    next_tick: rng.random_range(0..TICK_MS),
                    seen_term: Term(0),
                    seen_versions: BTreeMap::new(),
                    broken: config.broken && i == 1,
                    hangs: config.hangs && i == 2,
                    straggles: config.straggler && i == 4,
                    liar: config.liar && i == 3,
                    frozen_until: 0,
                    woke_at: None,
                    renders: BTreeMap::new(),
                    failed: BTreeMap::new(),
                    probed: false,
                    ready: BTreeMap::new(),
                    rendered: None,
                }
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut clients: Vec<Client> = (0..config.jobs)
            .map(|_| {
                let (at, spec) = if config.frames > 0 {
                    let frames = FrameRange::new(1, config.frames).expect("a valid range");
                    let spec = JobSpec::new("sim.blend", BlobHash::of(b"sim.blend"), 9, frames);
                    (SPEED_SUBMIT_MS, spec)
                } else {
                    let at = rng.random_range(2_000..(config.duration / 2).max(2_001));
                    (at, job_spec(&mut rng))
                };
                Client {
                    id: JobId(rng.random()),
                    spec,
                    next_try: at,
                    waiting: None,
                    accepted: false,
                    origin: None,
                    steers: Vec::new(),
                    steering: false,
                }
            })
            .collect();
        let (pause, resume) = config.pause;
        if config.frames > 0 && pause > 0 {
            clients[0].steers = vec![
                (SPEED_SUBMIT_MS + pause, Steer::Pause),
                (SPEED_SUBMIT_MS + pause + resume, Steer::Resume),
            ];
        }
        if config.frames > 0 && config.tiled_after > 0 {
            let mut spec = JobSpec::new(
                "tiled.blend",
                BlobHash::of(b"tiled.blend"),
                9,
                FrameRange::single(1),
            );
            spec.tiles = Some(Tiling::Auto);
            clients.push(Client {
                id: JobId(rng.random()),
                spec,
                next_try: SPEED_SUBMIT_MS + config.tiled_after,
                waiting: None,
                accepted: false,
                origin: None,
                steers: Vec::new(),
                steering: false,
            });
        }
        if config.frames > 0 && config.urgent_after > 0 {
            let frames = FrameRange::new(1, (config.frames / 4).max(1)).expect("a valid range");
            let at = SPEED_SUBMIT_MS + config.urgent_after;
            clients.push(Client {
                id: JobId(rng.random()),
                spec: JobSpec::new("urgent.blend", BlobHash::of(b"urgent.blend"), 9, frames),
                next_try: at,
                waiting: None,
                accepted: false,
                origin: None,
                steers: vec![(at, Steer::Priority(90))],
                steering: false,
            });
        }
        let first = rng.random_range(4_000..8_000);
        Self {
            config,
            seed,
            rng,
            now: 0,
            nodes,
            index,
            queue: BTreeMap::new(),
            order: 0,
            waiting: BTreeMap::new(),
            next_key: 0,
            clients,
            side: vec![0; config.nodes],
            disturbed: 0,
            next_disturbance: first,
            restarts: Vec::new(),
            made_by: BTreeMap::new(),
            wrong: BTreeSet::new(),
            compared: 0,
            differed: 0,
            departing: Vec::new(),
            leaves_due: Vec::new(),
            leave_observers: 0,
            leave_lingering: 0,
            leaves_told: 0,
            waited_to_tell: BTreeSet::new(),
            changes: 0,
            first_lead: None,
            killed_holding_ahead: 0,
            stopped_running: 0,
            between_tasks: Vec::new(),
            first_render: BTreeMap::new(),
            backed: BTreeMap::new(),
            backups_won: 0,
            probes: 0,
            originals_won: 0,
            requeued: 0,
            assigns: 0,
            carried: std::time::Duration::ZERO,
            hung: 0,
            done_seen: BTreeSet::new(),
            done_at: BTreeMap::new(),
            steered: Vec::new(),
            rerender_asked: false,
            removed_seen: BTreeSet::new(),
            rogue: config.rogue.then(|| {
                let id = NodeId::from_bytes(*b"rogue-insider").expect("a node id");
                (id, 3_000)
            }),
            refused: 0,
            damaged: BTreeSet::new(),
            traffic: vec![Traffic::default(); config.nodes],
        }
    }

    /// Counts one message of `bytes` (its encoding, when counted) delivered to node `to`.
    fn received(&mut self, to: usize, bytes: impl FnOnce() -> usize) {
        if self.config.traffic {
            let t = &mut self.traffic[to];
            t.messages += 1;
            t.bytes += bytes() as u64;
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "{what}\nat {} ms, seed {}, {:?}\nreplay: SIM_SEED={} cargo test -p rendermesh-core --test sim -- {} --exact",
            self.now,
            self.seed,
            self.config,
            self.seed,
            std::thread::current().name().unwrap_or("<test>")
        );
    }

    fn at(&mut self, at: Millis, event: Event) {
        self.order += 1;
        self.queue.insert((at, self.order), event);
    }

    fn delay(&mut self) -> Millis {
        self.rng.random_range(1..=self.config.max_delay)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].alive && self.nodes[b].alive && self.side[a] == self.side[b]
    }

    /// Sends `hb` from `from` to every live node on its side, each copy with its own fate.
    fn broadcast(&mut self, from: usize, hb: Heartbeat) {
        let size = if self.config.traffic {
            wire_size(&hb)
        } else {
            0
        };
        let hb = Arc::new(hb);
        for to in 0..self.nodes.len() {
            if to == from || self.side[to] != self.side[from] {
                continue;
            }
            // Loss comes with the storms (a disturbance and the seconds after it); a settled
            // network delays, duplicates and reorders, but delivers.
            let loss = if self.now.saturating_sub(self.disturbed) < STORM_MS {
                self.config.loss
            } else {
                0.0
            };
            let copies = if self.rng.random_bool(loss) {
                0
            } else if self.rng.random_bool(self.config.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                self.received(to, || size);
                let at = self.now + self.delay();
                self.at(
                    at,
                    Event::Heartbeat {
                        to,
                        from,
                        hb: hb.clone(),
                    },
                );
            }
        }
    }

    /// Carries out what node `i`'s core asked for. Its time is the simulator's, not the
    /// core's: it goes to `carried`, which `step` takes off the time of the event that led here.
    fn perform(&mut self, i: usize) {
        let started = self.config.timed.then(std::time::Instant::now);
        self.carry_out(i);
        if let Some(started) = started {
            self.carried += started.elapsed();
        }
    }

    fn carry_out(&mut self, i: usize) {
        let actions = self.nodes[i].core.take_actions();
        let run = self.nodes[i].run;
        let mut on_disk = false;
        for action in actions {
            if !on_disk && !matches!(action, Action::Persist(_)) {
                self.check_on_disk(i);
                on_disk = true;
            }
            match action {
                Action::Persist(persist) => {
                    let node = &mut self.nodes[i];
                    if let Some(term) = persist.term {
                        node.disk_term = term;
                    }
                    for job in persist.jobs {
                        node.disk_jobs.insert(job.id, job);
                    }
                    for id in persist.forget {
                        node.disk_jobs.remove(&id);
                    }
                    if let Some(repairs) = persist.repairs {
                        node.disk_repairs = repairs;
                    }
                }
                Action::Collect(blobs) => {
                    if !self.config.retention {
                        self.fail(format!(
                            "node {} collected blobs with no job removed",
                            self.nodes[i].id
                        ));
                    }
                    for blob in blobs {
                        self.nodes[i].blobs.remove(&blob);
                    }
                }
                Action::Publish(hb) => self.broadcast(i, hb),
                Action::Dial { .. } => {}
                Action::Send {
                    to,
                    request,
                    ticket,
                } => {
                    if let Request::Assign(a) = &request
                        && let Some(job) = self.nodes[i].core.table().get(&a.job)
                        && job.paused
                    {
                        self.fail(format!(
                            "node {} assigned task {} of job {}, which is paused",
                            self.nodes[i].id, a.task, a.job
                        ));
                    }
                    if self.rogue.as_ref().is_some_and(|(id, _)| *id == to) {
                        self.rogue_answers(i, run, ticket, request);
                        continue;
                    }
                    let Some(&j) = self.index.get(&to) else {
                        self.fail(format!(
                            "node {} sent a request to unknown {to}",
                            self.nodes[i].id
                        ));
                    };
                    self.next_key += 1;
                    let key = self.next_key;
                    self.waiting.insert(
                        key,
                        Waiter::Node {
                            node: i,
                            run,
                            ticket,
                            responder: j,
                        },
                    );
                    self.received(j, || wire_size(&request));
                    let at = self.now + self.delay();
                    self.at(
                        at,
                        Event::Request {
                            to: j,
                            from: i,
                            key,
                            request: Box::new(request),
                        },
                    );
                }
                Action::Reply { to, response } => self.answer(i, to, Ok(response)),
                Action::Fetch { blobs, ticket, .. } => {
                    let (low, high) = self.config.copy_ms;
                    let at = self.now + self.rng.random_range(low..high);
                    self.at(
                        at,
                        Event::Fetched {
                            to: i,
                            run,
                            ticket,
                            blobs,
                        },
                    );
                }
                Action::Compare {
                    checked,
                    check,
                    ticket,
                    ..
                } => {
                    let at = self.now + self.rng.random_range(20..200);
                    self.at(
                        at,
                        Event::Compared {
                            to: i,
                            run,
                            ticket,
                            checked,
                            check,
                        },
                    );
                }
                Action::Stitch {
                    job,
                    frame,
                    tiles,
                    copy_to,
                    ticket,
                    ..
                } => {
                    let at = self.now + self.rng.random_range(20..200);
                    let tiles = tiles.into_iter().map(|(_, blob)| blob).collect();
                    self.at(
                        at,
                        Event::Stitched {
                            to: i,
                            run,
                            ticket,
                            job,
                            frame,
                            tiles,
                            copy_to,
                        },
                    );
                }
                Action::Render { assignment, .. } => {
                    if self.nodes[i].core.worker().is_low_disk() {
                        self.fail(format!(
                            "node {} started a render while low on disk",
                            self.nodes[i].id
                        ));
                    }
                    if self.nodes[i].render.is_some() {
                        self.fail(format!("node {} started a second render", self.nodes[i].id));
                    }
                    if assignment
                        .spec
                        .blender_version
                        .as_deref()
                        .is_some_and(|v| v != self.nodes[i].blender)
                    {
                        self.fail(format!(
                            "node {} runs {} and was given a job for {:?}",
                            self.nodes[i].id,
                            self.nodes[i].blender,
                            assignment.spec.blender_version
                        ));
                    }
                    self.nodes[i].render = Some((*assignment).clone());
                    let started = {
                        let count = self.nodes[i].renders.entry(assignment.job).or_default();
                        *count += 1;
                        *count
                    };
                    // A render cancelled before it failed (its job ended, or it was a backup
                    // whose task its worker rendered first) does not count.
                    let failed = self.nodes[i].failed.get(&assignment.job).copied();
                    if failed.is_some_and(|n| n >= limits::BLOCKLIST_AFTER) {
                        self.fail(format!(
                            "broken node {} was given a task of job {} after failing {} of its tasks",
                            self.nodes[i].id,
                            assignment.job,
                            limits::BLOCKLIST_AFTER
                        ));
                    }
                    if self.nodes[i].hangs && started == 1 {
                        self.hung += 1;
                        continue;
                    }
                    let frames = Millis::from(assignment.frames.len());
                    let slower = if self.nodes[i].straggles && started > 2 {
                        4
                    } else {
                        1
                    };
                    let prepare = self.config.prepare_ms;
                    let now = self.now;
                    let ready = *self.nodes[i]
                        .ready
                        .entry(assignment.job)
                        .or_insert(now + prepare);
                    let mut work = frames * self.nodes[i].speed * slower;
                    if let Some(tile) = assignment.tile.filter(|_| self.config.tiled_after > 0) {
                        let tiles = Millis::from(tile.cols * tile.rows).max(1);
                        work = (work * self.config.tiled_weight).div_ceil(tiles);
                    }
                    let at = ready.max(now) + work + self.rng.random_range(0..50);
                    self.first_render.entry(assignment.job).or_insert(now);
                    if let Some((job, ended)) = self.nodes[i].rendered
                        && job == assignment.job
                        && ready <= ended
                    {
                        self.between_tasks.push(now - ended);
                    }
                    if std::env::var_os("SIM_RENDERS").is_some() {
                        eprintln!(
                            "{now:>6} render {} task {} frames {} on {} ({} ms/frame) until {at}",
                            assignment.job,
                            assignment.task,
                            assignment.frames,
                            i,
                            self.nodes[i].speed
                        );
                    }
                    self.at(
                        at,
                        Event::Rendered {
                            to: i,
                            run,
                            assignment,
                        },
                    );
                }
                Action::Prepare { job, .. } => {
                    let ready = self.now + self.config.prepare_ms;
                    self.nodes[i].ready.entry(job).or_insert(ready);
                }
                Action::ProbeEngines => {
                    // A probe is a Blender run of its own: it never competes with a render.
                    let node = &self.nodes[i];
                    if let Some(a) = &node.render {
                        self.fail(format!(
                            "{} probes its engines while rendering {a:?}",
                            node.id
                        ));
                    }
                    if node.probed {
                        self.fail(format!("{} probes its engines twice in a run", node.id));
                    }
                    let node = &mut self.nodes[i];
                    node.probed = true;
                    self.probes += 1;
                    let (at, run) = (self.now + PROBE_MS, node.run);
                    self.at(at, Event::Probed { to: i, run });
                }
                Action::CancelRender => {
                    if let Some(a) = self.nodes[i].render.take() {
                        let running = self.nodes[i].core.table().get(&a.job).is_some_and(|j| {
                            !j.state.is_terminal()
                                && j.task(a.task).is_some_and(|t| t.state != TaskState::Done)
                        });
                        if running {
                            self.stopped_running += 1;
                        }
                        let at = self.now + 1;
                        self.at(
                            at,
                            Event::Cancelled {
                                to: i,
                                run,
                                assignment: Box::new(a),
                            },
                        );
                    }
                }
            }
        }
    }

    /// Node `from` answers the request waiting under `key`.
    fn answer(&mut self, from: usize, key: u64, answer: Result<Response, String>) {
        match self.waiting.remove(&key) {
            Some(Waiter::Node {
                node, run, ticket, ..
            }) => {
                // An answer that cannot arrive is a failed request, some time later.
                let (at, answer) = if self.reachable(from, node) {
                    self.received(node, || match &answer {
                        Ok(response) => wire_size(response),
                        Err(message) => message.len(),
                    });
                    (self.now + self.delay(), answer)
                } else {
                    let at = self.now + self.rng.random_range(200..1_000);
                    (at, Err("connection closed".into()))
                };
                self.at(
                    at,
                    Event::Answer {
                        to: node,
                        run,
                        ticket,
                        answer,
                    },
                );
            }
            Some(Waiter::Client { client }) => self.client_answer(client, answer),
            Some(Waiter::Steer { client }) => {
                let c = &mut self.clients[client];
                c.steering = false;
                match answer {
                    Ok(Response::Accepted) => {
                        let (_, steer) = c.steers.remove(0);
                        self.steered.push((c.id, steer, self.now));
                    }
                    Ok(Response::Busy(_) | Response::NotCoordinator(_)) | Err(_) => {
                        if let Some(next) = c.steers.first_mut() {
                            next.0 = self.now + 250;
                        }
                    }
                    other => {
                        let id = c.id;
                        self.fail(format!("job {id}: unexpected answer to a steer: {other:?}"));
                    }
                }
            }
            Some(Waiter::Rogue { what }) => match answer {
                Ok(Response::Accepted) => self.fail(format!(
                    "node {} obeyed the rogue's {what}",
                    self.nodes[from].id
                )),
                _ => self.refused += 1,
            },
            None => {}
        }
    }

    fn client_answer(&mut self, c: usize, answer: Result<Response, String>) {
        let client = &mut self.clients[c];
        let asked = client.waiting.take().map(|(node, _, _)| node);
        match answer {
            Ok(Response::Job(job)) if job.id == client.id => {
                client.accepted = true;
                client.origin = asked;
                if trace() {
                    eprintln!(
                        "{:>6} job {} accepted in term {}",
                        self.now, job.id, job.version.term
                    );
                }
            }
            Ok(Response::Busy(_) | Response::NotCoordinator(_)) | Err(_) => {
                client.next_try = self.now + 250;
            }
            other => {
                let id = client.id;
                self.fail(format!(
                    "job {id}: unexpected answer to a submit: {other:?}"
                ));
            }
        }
    }

    /// Every request waiting on a node that `gone` says can no longer answer fails.
    fn fail_requests(&mut self, gone: impl Fn(usize, usize) -> bool) {
        let keys: Vec<u64> = self
            .waiting
            .iter()
            .filter_map(|(key, w)| match w {
                Waiter::Node {
                    node, responder, ..
                } if gone(*node, *responder) => Some(*key),
                _ => None,
            })
            .collect();
        for key in keys {
            if let Some(Waiter::Node {
                node, run, ticket, ..
            }) = self.waiting.remove(&key)
            {
                let at = self.now + self.rng.random_range(200..1_000);
                self.at(
                    at,
                    Event::Answer {
                        to: node,
                        run,
                        ticket,
                        answer: Err("connection closed".into()),
                    },
                );
            }
        }
    }

    fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.alive && node.core.worker().held().iter().any(|t| t.frames_done == 0) {
            self.killed_holding_ahead += 1;
        }
        node.alive = false;
        node.run += 1;
        node.render = None;
        node.rendered = None;
        node.ready.clear();
        node.probed = false;
        node.frozen_until = 0;
        if trace() {
            eprintln!("{:>6} {} killed", self.now, node.id);
        }
        self.fail_requests(|_, responder| responder == i);
        for client in &mut self.clients {
            if client.waiting.is_some_and(|(node, _, _)| node == i) {
                client.waiting = None;
                client.next_try = self.now + 250;
            }
        }
        self.disturbed = self.now;
    }

    /// Kills each departing node that has said it is leaving (it exits then), and restarts it
    /// later.
    fn depart(&mut self) {
        let departing = std::mem::take(&mut self.departing);
        for (i, run, since) in departing {
            let node = &self.nodes[i];
            if !node.alive || node.run != run {
                continue;
            }
            if !node.core.has_left() {
                if self.now > since + HANDOVER_MS + 2 * TICK_MS {
                    self.fail(format!("node {} never finished leaving", node.id));
                }
                self.departing.push((i, run, since));
                continue;
            }
            // As the process does: it waits for its coordinator's answer, a while at most.
            let (told, heard) = (node.core.has_told(), node.core.was_heard_leaving());
            if !told {
                self.waited_to_tell.insert((i, run));
                if self.now < since + HANDOVER_MS + TOLD_WAIT_MS {
                    self.departing.push((i, run, since));
                    continue;
                }
            }
            if self.waited_to_tell.remove(&(i, run)) && heard {
                self.leaves_told += 1;
            }
            self.leaves_due.push((i, self.now + LEFT_WITHIN_MS));
            self.kill_node(i);
            let back = self.now + self.rng.random_range(2_000..6_000);
            self.restarts.push((i, back));
        }
    }

    /// Node `i` finds up to two blobs of its store damaged, as its scrub would after a power
    /// cut: they are removed and its core is told.
    fn damage(&mut self, i: usize) {
        let candidates: Vec<BlobHash> = self.nodes[i]
            .blobs
            .iter()
            .filter(|b| !self.damaged.contains(b))
            .copied()
            .collect();
        let mut lost = Vec::new();
        for _ in 0..2 {
            if candidates.is_empty() {
                break;
            }
            let blob = candidates[self.rng.random_range(0..candidates.len())];
            if self.damaged.insert(blob) {
                self.nodes[i].blobs.remove(&blob);
                lost.push(blob);
            }
        }
        if trace() {
            eprintln!(
                "{:>6} {} lost {} blob(s) to damage",
                self.now,
                self.nodes[i].id,
                lost.len()
            );
        }
        let now = self.now;
        self.nodes[i].core.damaged(lost, now);
    }

    /// Before node `i` acts on anything, its disk holds its term and every record as its core
    /// holds them: a power cut at any moment loses nothing it said or did.
    fn check_on_disk(&self, i: usize) {
        let node = &self.nodes[i];
        let term = node.core.membership().max_term();
        if node.disk_term < term {
            self.fail(format!(
                "node {} acted in term {term} with term {} on disk",
                node.id, node.disk_term
            ));
        }
        let repairs: Vec<BlobHash> = node.core.repairs().copied().collect();
        if node.disk_repairs != repairs {
            self.fail(format!(
                "node {} acted with blobs to repair {repairs:?}, and {:?} on disk",
                node.id, node.disk_repairs
            ));
        }
        for job in node.core.table().iter() {
            let disk = node.disk_jobs.get(&job.id).map(|j| j.version);
            if disk != Some(job.version) {
                self.fail(format!(
                    "node {} acted holding job {} in version {:?}, with {disk:?} on disk",
                    node.id, job.id, job.version
                ));
            }
        }
    }

    /// Kills, restarts, splits or heals, as the configuration allows.
    fn disturb(&mut self) {
        // A coordinator that runs low on disk steps down: the mesh elects again.
        if self.config.low_disk && (self.now == LOW_DISK.start || self.now == LOW_DISK.end) {
            self.disturbed = self.now;
        }
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|(_, at)| *at <= self.now)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            self.restarts.retain(|(j, _)| *j != i);
            let now = self.now;
            let node = &mut self.nodes[i];
            if trace() {
                eprintln!("{now:>6} {} restarted", node.id);
            }
            node.core = new_core(&node.id, node.blender, now, policy(self.config));
            node.core.restore(Saved {
                term: node.disk_term,
                jobs: node.disk_jobs.values().cloned().collect(),
                repairs: node.disk_repairs.clone(),
            });
            node.alive = true;
            // What it saw before it died was on disk first: its term and records go on from
            // there, never below.
            node.next_tick = now;
            self.disturbed = now;
            if self.config.damage && self.rng.random_bool(0.5) {
                self.damage(i);
            }
        }
        let quiet_from = self.config.duration.saturating_sub(SETTLE_MS + 1_000);
        if self.now >= quiet_from {
            // The last stretch is quiet and healed, so that every run ends settled.
            if self.side.iter().any(|&s| s != 0) {
                if trace() {
                    eprintln!("{:>6} healed for the end", self.now);
                }
                self.side.iter_mut().for_each(|s| *s = 0);
                self.disturbed = self.now;
            }
            return;
        }
        if self.now < self.next_disturbance {
            return;
        }
        self.next_disturbance = self.now + self.rng.random_range(8_000..16_000);
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        let split = self.side.iter().any(|&s| s != 0);
        let mut options = Vec::new();
        if self.config.kills && alive.len() > 1 {
            options.push("kill");
        }
        if self.config.blackouts && alive.len() > 1 {
            options.push("blackout");
        }
        if self.config.partitions {
            options.push(if split { "heal" } else { "split" });
        }
        if self.config.freezes && alive.len() > 1 {
            options.push("freeze");
        }
        if options.is_empty() {
            return;
        }
        match options[self.rng.random_range(0..options.len())] {
            "kill" => {
                // Usually the coordinator: the case that matters most.
                let leader = alive
                    .iter()
                    .copied()
                    .find(|&i| self.nodes[i].core.leading().is_some());
                let victim = match leader {
                    Some(l) if self.rng.random_bool(0.6) => l,
                    _ => alive[self.rng.random_range(0..alive.len())],
                };
                if self.config.leaves && self.rng.random_bool(0.5) {
                    if trace() {
                        eprintln!("{:>6} {} leaves", self.now, self.nodes[victim].id);
                    }
                    self.nodes[victim].core.leave(self.now);
                    self.perform(victim);
                    self.departing
                        .push((victim, self.nodes[victim].run, self.now));
                } else {
                    self.kill_node(victim);
                    let back = self.now + self.rng.random_range(2_000..6_000);
                    self.restarts.push((victim, back));
                }
            }
            "freeze" => {
                // Usually the coordinator, or else a worker in the middle of a task.
                let leader = alive
                    .iter()
                    .copied()
                    .find(|&i| self.nodes[i].core.leading().is_some());
                let victim = match leader {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => alive[self.rng.random_range(0..alive.len())],
                };
                let until = self.now + self.rng.random_range(3_000..10_000);
                if trace() {
                    eprintln!(
                        "{:>6} {} frozen until {until}",
                        self.now, self.nodes[victim].id
                    );
                }
                self.nodes[victim].frozen_until = until;
            }
            "blackout" => {
                if trace() {
                    eprintln!("{:>6} blackout: every node killed", self.now);
                }
                for victim in alive {
                    self.kill_node(victim);
                    let back = self.now + self.rng.random_range(1_000..6_000);
                    self.restarts.push((victim, back));
                }
            }
            "split" => {
                for s in self.side.iter_mut() {
                    *s = u8::from(self.rng.random_bool(0.5));
                }
                if trace() {
                    eprintln!("{:>6} split {:?}", self.now, self.side);
                }
                let side = self.side.clone();
                self.fail_requests(|a, b| side[a] != side[b]);
            }
            _ => {
                if trace() {
                    eprintln!("{:>6} healed", self.now);
                }
                self.side.iter_mut().for_each(|s| *s = 0);
            }
        }
        self.disturbed = self.now;
    }

    /// Node `i` has just changed whom it follows, and leads in `leading`: a node that woke from
    /// a freeze less than a peer timeout ago must not claim over a live coordinator it can
    /// reach (its peers' silence while it stood still says nothing of them).
    fn check_woken(&self, i: usize, leading: Option<Term>) {
        let (Some(term), Some(woke)) = (leading, self.nodes[i].woke_at) else {
            return;
        };
        if self.now > woke + limits::PEER_TIMEOUT_MS {
            return;
        }
        let live = (0..self.nodes.len()).find(|&j| {
            j != i
                && self.reachable(i, j)
                && self.nodes[j].frozen_until <= self.now
                && self.nodes[j].core.leading().is_some()
        });
        if let Some(j) = live {
            self.fail(format!(
                "node {} woke from a freeze at {woke} and claimed term {term} over the live \
                 coordinator {}",
                self.nodes[i].id, self.nodes[j].id
            ));
        }
    }

    /// Runs the simulation to its end, checking the invariants after every step; then lets
    /// the accepted jobs finish (up to [`FINISH_MS`]) and checks that none was lost.
    pub fn run(mut self) -> Self {
        while self.now < self.config.duration {
            self.step();
        }
        let deadline = self.now + FINISH_MS.max(self.config.finish_ms);
        while !self.finished() && self.now < deadline {
            self.step();
        }
        self.check_end();
        self
    }

    /// Handles one event due now.
    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Heartbeat { to, from, hb } => {
                if self.nodes[to].alive {
                    let from = self.nodes[from].id.clone();
                    self.nodes[to].core.heard(from, hb, now);
                    self.perform(to);
                }
            }
            Event::Request {
                to,
                from,
                key,
                request,
            } => {
                if !self.reachable(from, to) {
                    self.answer(to, key, Err("connection closed".into()));
                    return;
                }
                if let Request::Assign(a) = &*request {
                    self.assigns += 1;
                    if a.attempt > 1 {
                        self.requeued += 1;
                    }
                }
                let sender = self.nodes[from].id.clone();
                self.nodes[to]
                    .core
                    .request(sender, *request, ReplyTo::Outside(key), now);
                self.perform(to);
            }
            Event::Answer {
                to,
                run,
                ticket,
                answer,
            } => {
                if self.nodes[to].alive && self.nodes[to].run == run {
                    self.nodes[to].core.answered(ticket, answer, now);
                    self.perform(to);
                }
            }
            Event::Fetched {
                to,
                run,
                ticket,
                blobs,
            } => {
                if !self.nodes[to].alive || self.nodes[to].run != run {
                    return;
                }
                let result = self.copy(to, &blobs);
                self.nodes[to].core.fetched(ticket, result, now);
                self.perform(to);
            }
            Event::Stitched {
                to,
                run,
                ticket,
                job,
                frame,
                tiles,
                copy_to,
            } => {
                if !self.nodes[to].alive || self.nodes[to].run != run {
                    return;
                }
                let result = self.stitch(to, job, frame, &tiles, copy_to);
                self.nodes[to].core.stitched(ticket, result, now);
                self.perform(to);
            }
            Event::Rendered {
                to,
                run,
                assignment,
            } => {
                let node = &mut self.nodes[to];
                if !node.alive || node.run != run || node.render.as_ref() != Some(&assignment) {
                    return;
                }
                node.render = None;
                node.rendered = Some((assignment.job, now));
                if node.broken {
                    *node.failed.entry(assignment.job).or_default() += 1;
                    let failed = Outcome::Failed(format!(
                        "{FAKE_RENDERER}: this node's renders always fail"
                    ));
                    node.core.rendered(&assignment, Some(failed), now);
                    self.perform(to);
                    return;
                }
                let mut outputs = Vec::new();
                for frame in assignment.frames.iter() {
                    let name = format!(
                        "{FAKE_RENDERER}: job {} task {} frame {frame} {:?} by {} attempt {}",
                        assignment.job,
                        assignment.task,
                        assignment.tile,
                        node.id,
                        assignment.attempt
                    );
                    let blob = BlobHash::of(name.as_bytes());
                    // Each frame comes with its thumbnail, held as the frame is.
                    let thumb = BlobHash::of(format!("{name} thumbnail").as_bytes());
                    node.blobs.insert(blob);
                    node.blobs.insert(thumb);
                    if node.liar {
                        self.wrong.insert(blob);
                    }
                    node.core.progress(assignment.job, assignment.task);
                    self.made_by.insert(
                        blob,
                        (
                            node.id.clone(),
                            assignment.job,
                            assignment.task,
                            assignment.attempt,
                        ),
                    );
                    outputs.push(Output {
                        frame,
                        blob,
                        size: name.len() as u64,
                        thumb: Some(thumb),
                    });
                }
                let node = &mut self.nodes[to];
                node.core
                    .rendered(&assignment, Some(Outcome::Done(outputs)), now);
                self.perform(to);
            }
            Event::Compared {
                to,
                run,
                ticket,
                checked,
                check,
            } => {
                if !self.nodes[to].alive || self.nodes[to].run != run {
                    return;
                }
                // Both are renders of one frame (or tile): their pixels are the same unless
                // one of them is wrong.
                let result = self.copy(to, &[checked, check]).map(|()| {
                    self.compared += 1;
                    let same = self.wrong.contains(&checked) == self.wrong.contains(&check);
                    if !same {
                        self.differed += 1;
                    }
                    same
                });
                self.nodes[to].core.compared(ticket, result, now);
                self.perform(to);
            }
            Event::Cancelled {
                to,
                run,
                assignment,
            } => {
                if self.nodes[to].alive && self.nodes[to].run == run {
                    self.nodes[to].core.rendered(&assignment, None, now);
                    self.perform(to);
                }
            }
            Event::Probed { to, run } => {
                if self.nodes[to].alive && self.nodes[to].run == run {
                    self.nodes[to].core.set_engines(vec![Engine::Cycles]);
                    self.perform(to);
                }
            }
        }
    }

    /// Node `to` copies `blobs` from any node it reaches.
    fn copy(&mut self, to: usize, blobs: &[BlobHash]) -> Result<(), String> {
        for blob in blobs {
            if self.nodes[to].blobs.contains(blob) {
                continue;
            }
            let held = (0..self.nodes.len())
                .any(|j| j != to && self.reachable(to, j) && self.nodes[j].blobs.contains(blob));
            if !held {
                return Err(format!("no reachable node holds {}", blob.short()));
            }
            self.nodes[to].blobs.insert(*blob);
        }
        Ok(())
    }

    /// Node `to` stitches `frame` of `job` from `tiles` and copies it to `copy_to`.
    fn stitch(
        &mut self,
        to: usize,
        job: JobId,
        frame: u32,
        tiles: &[BlobHash],
        copy_to: Option<NodeId>,
    ) -> Result<Output, StitchFailure> {
        self.copy(to, tiles).map_err(StitchFailure::Retry)?;
        let wrong = tiles.iter().any(|t| self.wrong.contains(t));
        let name = format!("{FAKE_RENDERER}: job {job} frame {frame} stitched (wrong: {wrong})");
        let blob = BlobHash::of(name.as_bytes());
        let thumb = BlobHash::of(format!("{name} thumbnail").as_bytes());
        if wrong {
            self.wrong.insert(blob);
        }
        self.nodes[to].blobs.extend([blob, thumb]);
        if let Some(target) = copy_to {
            let j = self.index[&target];
            if !self.reachable(to, j) {
                return Err(StitchFailure::Retry(format!("{target} is out of reach")));
            }
            self.nodes[j].blobs.extend([blob, thumb]);
        }
        Ok(Output {
            frame,
            blob,
            size: name.len() as u64,
            thumb: Some(thumb),
        })
    }

    /// Clients due try (again) at a random live node.
    fn clients(&mut self) {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if client.accepted {
                self.steer(c);
                continue;
            }
            if let Some((node, run, until)) = client.waiting {
                // A node that died or never answered: try elsewhere.
                if self.nodes[node].run == run && self.now < until {
                    continue;
                }
                self.clients[c].waiting = None;
                self.clients[c].next_try = self.now;
            }
            if self.clients[c].next_try > self.now {
                continue;
            }
            let alive: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive)
                .collect();
            if alive.is_empty() {
                continue;
            }
            let i = alive[self.rng.random_range(0..alive.len())];
            self.next_key += 1;
            let key = self.next_key;
            self.waiting.insert(key, Waiter::Client { client: c });
            let client = &mut self.clients[c];
            client.waiting = Some((i, self.nodes[i].run, self.now + 5_000));
            let request = Request::Submit {
                id: client.id,
                spec: client.spec.clone(),
            };
            let me = self.nodes[i].id.clone();
            self.nodes[i]
                .core
                .request(me, request, ReplyTo::Outside(key), self.now);
            self.perform(i);
        }
    }

    /// Client `c`'s submitter asks the coordinator for its next steer, when due.
    fn steer(&mut self, c: usize) {
        let client = &self.clients[c];
        let (Some(origin), Some(&(at, steer))) = (client.origin, client.steers.first()) else {
            return;
        };
        if client.steering || at > self.now || !self.nodes[origin].alive {
            return;
        }
        self.next_key += 1;
        let key = self.next_key;
        self.waiting.insert(key, Waiter::Steer { client: c });
        self.clients[c].steering = true;
        let job = self.clients[c].id;
        let me = self.nodes[origin].id.clone();
        self.nodes[origin].core.request(
            me,
            Request::Steer { job, steer },
            ReplyTo::Outside(key),
            self.now,
        );
        self.perform(origin);
    }

    /// Notes, to the step (10 ms), when each client's job is first done on a live node: the
    /// speed scenarios' makespans (otherwise noted once per tick, up to 100 ms late).
    fn note_done(&mut self) {
        for c in &self.clients {
            if self.done_at.contains_key(&c.id) {
                continue;
            }
            let done = self.nodes.iter().any(|n| {
                n.alive
                    && n.core
                        .table()
                        .get(&c.id)
                        .is_some_and(|j| j.state == JobState::Done)
            });
            if done {
                self.done_at.insert(c.id, self.now);
            }
        }
        let first = self.clients.first().map(|c| c.id);
        if self.config.rerender > 0
            && let Some(first) = first
            && self.done_at.contains_key(&first)
            && !self.rerender_asked
        {
            self.rerender_asked = true;
            let frame = self.config.rerender;
            self.clients[0]
                .steers
                .push((self.now, Steer::Rerender(frame)));
        }
    }

    /// Advances 10 ms: disturbances due, events due, clients, ticks, then the invariants.
    pub fn step(&mut self) {
        self.disturb();
        self.depart();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let event = entry.remove();
            let until = self.nodes[event.target()].frozen_until;
            if until > self.now {
                // On waking, a process runs its overdue timers before it reads what waits in
                // its sockets: the tick comes first.
                let at = until + self.rng.random_range(1..100);
                self.at(at, event);
                continue;
            }
            let (target, carried) = (event.target(), self.carried);
            let started = self.config.timed.then(std::time::Instant::now);
            self.handle(event);
            if let Some(started) = started {
                let spent = started.elapsed().saturating_sub(self.carried - carried);
                self.nodes[target].busy += spent;
            }
        }
        self.clients();
        self.rogue_acts();
        if self.config.frames > 0 {
            self.note_done();
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive || self.nodes[i].next_tick > self.now {
                continue;
            }
            let until = self.nodes[i].frozen_until;
            if until > self.now {
                continue;
            }
            if until > 0 {
                self.nodes[i].frozen_until = 0;
                self.nodes[i].woke_at = Some(self.now);
                self.nodes[i].next_tick = self.now;
                self.disturbed = self.now;
            }
            self.nodes[i].next_tick += TICK_MS;
            let now = self.now;
            if self.config.low_disk && i == LOW_DISK_NODE {
                let low = LOW_DISK.contains(&now);
                let free = if low { 1 << 20 } else { 1 << 40 };
                self.nodes[i].core.set_disk(Some(free), low);
            }
            // A live node is connected to every live node on its side (a real node redials its
            // peers), so only a node alone on its side claims without its whole grace.
            let contacts = (0..self.nodes.len())
                .filter(|&j| j != i && self.reachable(i, j))
                .count();
            let node = &mut self.nodes[i];
            node.core.set_contacts(contacts);
            let before = (node.core.leading(), node.core.coordinator());
            let started = self.config.timed.then(std::time::Instant::now);
            node.core.tick(now, now, 0.0);
            if let Some(started) = started {
                node.busy += started.elapsed();
            }
            let after = (node.core.leading(), node.core.coordinator());
            if before != after {
                self.check_woken(i, after.0);
                if trace() {
                    eprintln!(
                        "{now:>6} {} leads {:?}, follows {:?}",
                        self.nodes[i].id, after.0, after.1
                    );
                }
                self.changes += 1;
                if after.0.is_some() && self.first_lead.is_none() {
                    self.first_lead = Some(now);
                }
            }
            self.perform(i);
        }
        self.check();
        self.now += 10;
    }

    /// The rogue answers node `i`'s request: it takes every assignment (and never renders
    /// it), and answers a pull with a forged record.
    fn rogue_answers(&mut self, i: usize, run: u32, ticket: Ticket, request: Request) {
        let answer = match request {
            Request::GetJob(id) => match self.nodes[i].core.table().get(&id) {
                Some(real) => {
                    let mut forged = real.clone();
                    forged.version.seq = forged.version.seq.saturating_add(1_000);
                    match self.rng.random_range(0..3) {
                        0 => forged.spec.blend = BlobHash::of(b"the rogue's own .blend"),
                        1 => {
                            forged.spec.frames = FrameRange {
                                start: 0,
                                end: u32::MAX,
                                step: 1,
                            }
                        }
                        _ => {
                            for task in &mut forged.tasks {
                                for output in &mut task.outputs {
                                    output.blob = BlobHash::of(b"the rogue's frame");
                                }
                            }
                        }
                    }
                    Response::Job(Box::new(forged))
                }
                None => Response::NotFound,
            },
            Request::Assign(_) => Response::Accepted,
            _ => Response::Rejected("the rogue ignores this".into()),
        };
        let at = self.now + self.delay();
        self.at(
            at,
            Event::Answer {
                to: i,
                run,
                ticket,
                answer: Ok(answer),
            },
        );
    }

    /// Now and then, the rogue sends one live node something only a coordinator or an
    /// assigned worker may send.
    fn rogue_acts(&mut self) {
        let Some((rogue, next)) = self.rogue.clone() else {
            return;
        };
        if self.now < next {
            return;
        }
        let next = self.now + self.rng.random_range(100..400);
        self.rogue = Some((rogue.clone(), next));
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        if alive.is_empty() {
            return;
        }
        let i = alive[self.rng.random_range(0..alive.len())];
        let now = self.now;
        let jobs: Vec<_> = self.nodes[i].core.table().iter().cloned().collect();
        let job = (!jobs.is_empty()).then(|| jobs[self.rng.random_range(0..jobs.len())].clone());
        let claim = self.nodes[i].core.membership().current();
        let request = match (self.rng.random_range(0..7), job) {
            (0 | 1, _) => {
                // A heartbeat naming a higher term, or u64::MAX, claiming nothing, and
                // advertising every record node i holds in a higher version.
                let term = if self.rng.random_bool(0.5) {
                    Term(u64::MAX)
                } else {
                    let base = claim.as_ref().map_or(0, |c| c.term.0);
                    Term(base.saturating_add(self.rng.random_range(1..5)))
                };
                let hb = Heartbeat {
                    seq: now,
                    name: "rogue".into(),
                    role: Role::Worker,
                    cores: 64,
                    memory: 1 << 40,
                    blender: Some(BLENDER.into()),
                    engines: vec![Engine::Cycles],
                    confinement: rendermesh_protocol::Confinement::Unsandboxed,
                    load: 0.0,
                    current: None,
                    held: Vec::new(),
                    term,
                    coordinator: None,
                    claims: false,
                    jobs: jobs
                        .iter()
                        .map(|j| rendermesh_protocol::JobDigest {
                            id: j.id,
                            version: Version {
                                term: j.version.term,
                                seq: j.version.seq.saturating_add(1_000),
                            },
                        })
                        .collect(),
                    addrs: Vec::new(),
                    disk_free: None,
                    low_disk: false,
                    leaving: false,
                    table: Default::default(),
                    members: None,
                };
                self.nodes[i].core.heard(rogue.clone(), Arc::new(hb), now);
                self.perform(i);
                return;
            }
            (2, Some(job)) if !job.tasks.is_empty() => {
                let task = &job.tasks[self.rng.random_range(0..job.tasks.len())];
                Request::Assign(Assignment {
                    term: claim.map_or(Term(u64::MAX), |c| c.term),
                    job: job.id,
                    task: task.index,
                    attempt: task.attempt.saturating_add(1),
                    version: Default::default(),
                    frames: task.frames,
                    tile: task.tile,
                    spec: job.spec.clone(),
                    origin: job.origin.clone(),
                })
            }
            (3, Some(job)) => Request::Cancel(job.id),
            (4, Some(job)) => Request::Replicate {
                job: job.id,
                blobs: vec![BlobHash::of(b"the rogue's frame")],
            },
            (5, Some(job)) if !job.tasks.is_empty() => {
                let task = &job.tasks[self.rng.random_range(0..job.tasks.len())];
                Request::GiveBack {
                    job: job.id,
                    task: task.index,
                    attempt: task.attempt,
                }
            }
            (_, Some(job)) if !job.tasks.is_empty() => {
                let task = &job.tasks[self.rng.random_range(0..job.tasks.len())];
                let outputs = task
                    .frames
                    .iter()
                    .map(|frame| Output {
                        frame,
                        blob: BlobHash::of(b"the rogue's frame"),
                        size: 17,
                        thumb: None,
                    })
                    .collect();
                Request::Report(rendermesh_protocol::Report {
                    job: job.id,
                    task: task.index,
                    attempt: task.attempt,
                    outcome: Outcome::Done(outputs),
                })
            }
            // No job yet, or one with no task cut yet.
            _ => return,
        };
        let what = match &request {
            Request::Assign(_) => "Assign",
            Request::Cancel(_) => "Cancel",
            Request::Replicate { .. } => "Replicate",
            Request::GiveBack { .. } => "GiveBack",
            _ => "Report",
        };
        self.next_key += 1;
        let key = self.next_key;
        self.waiting.insert(key, Waiter::Rogue { what });
        self.nodes[i]
            .core
            .request(rogue, request, ReplyTo::Outside(key), now);
        self.perform(i);
    }

    /// Kills node `i` (it stays dead), as a disturbance.
    pub fn kill(&mut self, i: usize) {
        self.kill_node(i);
    }

    /// The coordinator every live node agrees on, if they all do: it leads, and every other
    /// live node follows it in its term.
    pub fn agreed(&self) -> Option<usize> {
        let mut leaders = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].core.leading().is_some());
        let leader = leaders.next()?;
        if leaders.next().is_some() {
            return None;
        }
        let term = self.nodes[leader].core.leading();
        let all = self.nodes.iter().enumerate().all(|(i, node)| {
            !node.alive
                || i == leader
                || node
                    .core
                    .membership()
                    .following()
                    .is_some_and(|c| c.node == self.nodes[leader].id && Some(c.term) == term)
        });
        all.then_some(leader)
    }

    /// Whether a node coordinates and every node holds the same job table as it (by digest).
    pub fn tables_agree(&self) -> bool {
        let Some(c) = self.nodes.iter().find(|n| n.core.leading().is_some()) else {
            return false;
        };
        let digest = c.core.table().digest();
        self.nodes.iter().all(|n| n.core.table().digest() == digest)
    }

    /// Every client's job is accepted and done on the agreed coordinator.
    /// Whether the mesh agrees on a coordinator, no node has a repair left, and every client's
    /// job is done.
    pub fn finished(&self) -> bool {
        let Some(leader) = self.agreed() else {
            return false;
        };
        let table = self.nodes[leader].core.table();
        let repaired = self
            .nodes
            .iter()
            .all(|n| !n.alive || n.core.repairs().next().is_none());
        repaired
            && self.clients.iter().all(|c| {
                let done = self.done_seen.contains(&c.id);
                c.accepted
                    && c.steers.is_empty()
                    && match table.get(&c.id) {
                        Some(j) => j.state == JobState::Done && (!j.is_removed() || done),
                        None => self.config.retention && done,
                    }
            })
    }

    /// For the speed scenarios: the time from the first job's submission to the last job's
    /// end, and the ideal time: the frames divided by the sum of the nodes' paces (frames per
    /// millisecond), plus one start-up ([`Config::prepare_ms`]).
    pub fn makespan(&self) -> (Millis, Millis) {
        let first = SPEED_SUBMIT_MS;
        let last = self
            .clients
            .iter()
            .filter(|c| c.spec.tiles.is_none())
            // A run ends as soon as every job is done, maybe before the tick that notes it.
            .map(|c| self.done_at.get(&c.id).copied().unwrap_or(self.now))
            .max()
            .unwrap_or(first);
        let frames = self.whole_frames() as f64;
        let pace: f64 = self.nodes.iter().map(|n| 1.0 / n.speed as f64).sum();
        let ideal = (frames / pace).ceil() as Millis + self.config.prepare_ms;
        (last.saturating_sub(first), ideal)
    }

    /// The frames of the speed scenarios' jobs of whole frames (not the tiled one).
    fn whole_frames(&self) -> u64 {
        self.clients
            .iter()
            .filter(|c| c.spec.tiles.is_none())
            .map(|c| u64::from(c.spec.frames.len()))
            .sum()
    }

    /// The shortest makespan any schedule of whole frames could reach for the speed
    /// scenarios' jobs ([`Sim::makespan`]): every node starts after the one start-up the ideal
    /// counts, knows every pace in advance, pays nothing per task and nothing to count a frame,
    /// and renders whole frames. It is the earliest time by which the nodes, each rendering
    /// whole frames back to back, have rendered them all: above the ideal because a node's
    /// last frame rarely ends just then (about half a frame of each node's time is lost).
    pub fn whole_frame_bound(&self) -> Millis {
        let frames = self.whole_frames();
        let by = |t: Millis| -> u64 { self.nodes.iter().map(|n| t / n.speed.max(1)).sum() };
        let (mut low, mut high) = (0, frames.saturating_mul(self.config.frame_ms.1.max(1)));
        while low < high {
            let mid = low + (high - low) / 2;
            if by(mid) >= frames {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low + self.config.prepare_ms
    }

    /// With [`Config::rerender`]: the first job's state on the agreed coordinator, and, for each
    /// of its outputs, the frame and the attempt of the task that made it.
    pub fn rerendered(&self) -> Option<(JobState, Vec<(u32, u32)>)> {
        let leader = self.agreed()?;
        let job = self.nodes[leader]
            .core
            .table()
            .get(&self.clients.first()?.id)?;
        let made = job
            .outputs()
            .into_iter()
            .map(|o| (o.frame, self.made_by.get(&o.blob).map_or(0, |m| m.3)))
            .collect();
        Some((job.state, made))
    }

    /// The urgent job's ([`Config::urgent_after`]) makespan (from its submission to done), its
    /// ideal were it alone (its frames over the sum of the nodes' paces, plus one start-up),
    /// and whether it ended before the first job.
    pub fn urgent(&self) -> Option<(Millis, Millis, bool)> {
        let client = self
            .clients
            .iter()
            .find(|c| c.spec.name == "urgent.blend")?;
        let done = *self.done_at.get(&client.id)?;
        let first = self.done_at.get(&self.clients.first()?.id).copied();
        let pace: f64 = self.nodes.iter().map(|n| 1.0 / n.speed as f64).sum();
        let frames = f64::from(client.spec.frames.len());
        let ideal = (frames / pace).ceil() as Millis + self.config.prepare_ms;
        let submitted = SPEED_SUBMIT_MS + self.config.urgent_after;
        Some((
            done.saturating_sub(submitted),
            ideal,
            first.is_none_or(|f| done < f),
        ))
    }

    /// The tiled job's makespan (from its submission to done) and its ideal (its frame's work
    /// over the sum of the nodes' paces, plus one start-up), when the run had one
    /// ([`Config::tiled_after`]), and the number of tiles it was cut into.
    pub fn tiled_makespan(&self) -> Option<(Millis, Millis, usize)> {
        let client = self.clients.iter().find(|c| c.spec.tiles.is_some())?;
        let done = self.done_at.get(&client.id)?;
        let submitted = SPEED_SUBMIT_MS + self.config.tiled_after;
        let pace: f64 = self.nodes.iter().map(|n| 1.0 / n.speed as f64).sum();
        let ideal =
            (self.config.tiled_weight as f64 / pace).ceil() as Millis + self.config.prepare_ms;
        let leader = self.agreed()?;
        let tiles = self.nodes[leader].core.table().get(&client.id)?.tasks.len();
        Some((done.saturating_sub(submitted), ideal, tiles))
    }

    /// The wall-clock time the agreed coordinator's core spent per assignment delivered (every
    /// event and tick it handled, over every `Assign` delivered to a worker), in microseconds;
    /// measured only with [`Config::timed`].
    pub fn coordinator_us_per_assign(&self) -> Option<f64> {
        let leader = self.agreed()?;
        let busy = self.nodes[leader].busy.as_secs_f64() * 1e6;
        (self.assigns > 0).then(|| busy / self.assigns as f64)
    }

    /// The accepted jobs removed (or forgotten) on the agreed coordinator, once done.
    pub fn removed(&self) -> usize {
        let Some(leader) = self.agreed() else {
            return 0;
        };
        let table = self.nodes[leader].core.table();
        self.clients
            .iter()
            .filter(|c| {
                self.done_seen.contains(&c.id) && table.get(&c.id).is_none_or(|j| j.is_removed())
            })
            .count()
    }

    fn check_end(&self) {
        if self.config.rogue && self.refused == 0 {
            self.fail("the rogue never sent anything that had to be refused".into());
        }
        let Some(leader) = self.agreed() else {
            self.fail("the healed mesh agrees on no coordinator at the end".into());
        };
        let table = self.nodes[leader].core.table();
        for client in &self.clients {
            if !client.accepted {
                self.fail(format!("job {} was never accepted", client.id));
            }
            let done_before = self.done_seen.contains(&client.id);
            let job = match table.get(&client.id) {
                // Removed at the end of its retention, or forgotten since: done first.
                Some(job) if job.is_removed() && done_before => continue,
                None if self.config.retention && done_before => continue,
                Some(job) if job.is_removed() => {
                    self.fail(format!("job {} was removed before it was done", client.id))
                }
                Some(job) => job,
                None => self.fail(format!("job {} was accepted, then lost", client.id)),
            };
            if job.state != JobState::Done {
                let (queued, running, done) = job.counts();
                self.fail(format!(
                    "job {} is {:?} at the end ({queued} queued, {running} running, {done} done): {:?}",
                    job.id, job.state, job.message
                ));
            }
            // A removal a coordinator wrote just before it died may be lost with it (its
            // successor removes the job again when its own retention ends), while nodes that
            // saw it collected the frames.
            if self.removed_seen.contains(&job.id) {
                continue;
            }
            for output in job.outputs() {
                if self.wrong.contains(&output.blob) {
                    self.fail(format!(
                        "frame {} of job {} counts with wrong pixels ({} is suspect in {:?})",
                        output.frame, job.id, self.nodes[3].id, job.suspects
                    ));
                }
                // The frame and its thumbnail alike.
                for blob in output.blobs() {
                    let holders = self
                        .nodes
                        .iter()
                        .filter(|n| n.blobs.contains(&blob))
                        .count();
                    // A mesh of one holds one copy (its record lists the frame as held once).
                    if holders < 2.min(self.nodes.len()) {
                        self.fail(format!(
                            "frame {} of job {} (blob {blob}) is held on {holders} node(s)",
                            output.frame, job.id
                        ));
                    }
                }
            }
        }
    }

    fn check(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let term = self.nodes[i].core.membership().max_term();
            if term < self.nodes[i].seen_term {
                self.fail(format!(
                    "node {} saw its term go down from {} to {term}",
                    self.nodes[i].id, self.nodes[i].seen_term
                ));
            }
            self.nodes[i].seen_term = term;
        }
        // Job records and agreement are checked once per tick.
        if !self.now.is_multiple_of(TICK_MS) {
            return;
        }
        let now = self.now;
        let due: Vec<usize> = self
            .leaves_due
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(i, _)| *i)
            .collect();
        self.leaves_due.retain(|(_, at)| *at > now);
        for left in due {
            let id = &self.nodes[left].id;
            for node in self.nodes.iter().filter(|n| n.alive && n.id != *id) {
                self.leave_observers += 1;
                if node.core.membership().is_member(id) {
                    self.leave_lingering += 1;
                }
            }
        }
        let records = !self.config.light || now.is_multiple_of(1_000);
        for i in 0..self.nodes.len() {
            if self.nodes[i].alive {
                if records {
                    self.check_records(i);
                }
                for job in self.nodes[i].core.table().iter() {
                    if job.state == JobState::Done && !job.is_removed() {
                        self.done_seen.insert(job.id);
                        self.done_at.entry(job.id).or_insert(now);
                    }
                    if job.is_removed() {
                        self.removed_seen.insert(job.id);
                    }
                }
            }
        }
        if self.now.saturating_sub(self.disturbed) < SETTLE_MS {
            return;
        }
        for side in [0u8, 1] {
            let members: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive && self.side[i] == side)
                .collect();
            if members.is_empty() {
                continue;
            }
            let leaders: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| self.nodes[i].core.leading().is_some())
                .collect();
            if leaders.len() != 1 {
                let ids: Vec<String> = leaders
                    .iter()
                    .map(|&i| self.nodes[i].id.to_string())
                    .collect();
                self.fail(format!(
                    "{} coordinators among {} settled nodes on side {side}: {ids:?}",
                    leaders.len(),
                    members.len()
                ));
            }
            let leader = &self.nodes[leaders[0]];
            let term = leader.core.leading();
            let roomy = members
                .iter()
                .any(|&i| !self.nodes[i].core.worker().is_low_disk());
            if leader.core.worker().is_low_disk() && roomy {
                self.fail(format!(
                    "settled coordinator {} is low on disk while a node with room is live",
                    leader.id
                ));
            }
            for &i in &members {
                let node = &self.nodes[i];
                let follows = i == leaders[0]
                    || node
                        .core
                        .membership()
                        .following()
                        .is_some_and(|c| c.node == leader.id && Some(c.term) == term);
                if !follows {
                    self.fail(format!(
                        "settled node {} follows {:?}, not {} in term {term:?}",
                        node.id,
                        node.core.membership().following(),
                        leader.id
                    ));
                }
            }
        }
    }

    /// Checks every job record of node `i` that changed since it was last checked.
    fn check_records(&mut self, i: usize) {
        let mut changed = Vec::new();
        let mut backed = Vec::new();
        let node = &self.nodes[i];
        for job in node.core.table().iter() {
            let seen = node.seen_versions.get(&job.id).copied();
            if seen == Some(job.version) {
                continue;
            }
            if seen.is_some_and(|v| job.version < v) {
                self.fail(format!(
                    "node {}: the version of job {} went down from {seen:?} to {:?}",
                    node.id, job.id, job.version
                ));
            }
            changed.push((job.id, job.version));
            if let Some(client) = self.clients.iter().find(|c| c.id == job.id)
                && client.spec != job.spec
            {
                self.fail(format!(
                    "node {}: job {} holds a spec its client never submitted: {:?}",
                    node.id, job.id, job.spec
                ));
            }
            let mut frames = BTreeSet::new();
            for output in job.outputs() {
                if !frames.insert(output.frame) {
                    self.fail(format!(
                        "node {}: frame {} of job {} counts twice",
                        node.id, output.frame, job.id
                    ));
                }
            }
            if job.frames_done() > job.spec.frames.len() {
                self.fail(format!(
                    "node {}: job {} counts too many frames",
                    node.id, job.id
                ));
            }
            for task in &job.tasks {
                let key = (job.id, task.index, task.attempt);
                match (&task.worker, task.state) {
                    (Some(w), TaskState::Running) if task.backup.is_some() => {
                        backed.push((key, w.clone(), task.backup.clone()));
                    }
                    (Some(w), TaskState::Done) => backed.push((key, w.clone(), None)),
                    _ => {}
                }
            }
            for task in job.tasks.iter().filter(|t| t.state == TaskState::Done) {
                for output in &task.outputs {
                    let expected = task
                        .worker
                        .clone()
                        .map(|w| (w, job.id, task.index, task.attempt));
                    let made = self.made_by.get(&output.blob).cloned();
                    if made != expected {
                        self.fail(format!(
                            "node {}: job {} task {} counts a frame made by {made:?}, not by its \
                             current assignment {expected:?}",
                            node.id, job.id, task.index
                        ));
                    }
                }
            }
        }
        for (id, version) in changed {
            self.nodes[i].seen_versions.insert(id, version);
        }
        // A backup and its task's worker: which rendered the task, once it is done.
        for (key, worker, backup) in backed {
            match backup {
                Some(backup) => {
                    self.backed.entry(key).or_insert((worker, backup));
                }
                None => match self.backed.remove(&key) {
                    Some((_, b)) if worker == b => self.backups_won += 1,
                    Some((w, _)) if worker == w => self.originals_won += 1,
                    _ => {}
                },
            }
        }
    }
}

/// The shortest task timeout of every simulated node: frames take 50 to 400 ms here.
pub const MIN_TASK_TIMEOUT_MS: Millis = 3_000;
/// The timeout of a task of a job with no frame timed yet: 12 frames of the slowest node.
pub const UNMEASURED_TASK_TIMEOUT_MS: Millis = 10_000;

/// A fresh core for node `id` running `blender`, started at `now`.
/// The node that runs low on disk in [`Config::low_disk`] runs, and when.
const LOW_DISK_NODE: usize = 3;
const LOW_DISK: std::ops::Range<Millis> = 10_000..40_000;

/// How long a finished job is kept in [`Config::retention`] runs.
pub const RETENTION_MS: u64 = 4_000;
/// How long a tombstone is kept in [`Config::retention`] runs: longer than any node stays
/// down here, as 7 days are longer than most machines stay away (a node away longer may bring
/// a removed job back, and its retention removes it again).
pub const TOMBSTONE_MS: u64 = 15_000;

/// Every simulated node's policy: short task timeouts, and short retention when `config`
/// asks for it.
fn policy(config: Config) -> Policy {
    let mut policy = Policy {
        min_task_timeout: MIN_TASK_TIMEOUT_MS,
        unmeasured_task_timeout: UNMEASURED_TASK_TIMEOUT_MS,
        checks: config.checks,
        ..Policy::default()
    };
    if config.retention {
        policy.keep_jobs_ms = RETENTION_MS;
        policy.keep_tombstones_ms = TOMBSTONE_MS;
    }
    policy
}

fn new_core(id: &NodeId, blender: &str, now: Millis, policy: Policy) -> Core {
    let profile = Profile {
        name: id.to_string(),
        role: Role::Worker,
        cores: 1,
        memory: 0,
        confinement: rendermesh_protocol::Confinement::Unsandboxed,
    };
    Core::new(
        id.clone(),
        profile,
        Some(blender.to_owned()),
        vec![Engine::Cycles],
        now,
    )
    .with_policy(policy)
    .probing_engines()
}

/// A job as a user might submit it: a few frames in chunks, or one or two frames in tiles;
/// pinned to [`BLENDER`] or to any version.
fn job_spec(rng: &mut StdRng) -> JobSpec {
    let tiled = rng.random_bool(0.3);
    let frames = if tiled {
        FrameRange::new(1, rng.random_range(1..=2))
    } else {
        FrameRange::new(1, rng.random_range(1..=12))
    }
    .expect("a valid range");
    let tiles = tiled.then(|| {
        let grid = if rng.random_bool(0.5) { (2, 1) } else { (2, 2) };
        Tiling::Grid(TileGrid::new(grid.0, grid.1).expect("a valid grid"))
    });
    JobSpec {
        samples: Some(1),
        chunk: if rng.random_bool(0.5) {
            None
        } else {
            Some(rng.random_range(1..=3))
        },
        tiles,
        blender_version: rng.random_bool(0.7).then(|| BLENDER.to_owned()),
        ..JobSpec::new("sim.blend", BlobHash::of(b"sim.blend"), 9, frames)
    }
}
