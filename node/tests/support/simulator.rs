//! A deterministic simulator of the mesh's membership and election, shared by the simulator
//! tests (`node/tests/sim.rs`) and the election benchmark (`node/benches/election.rs`): N membership cores
//! ([`rendermesh_node::core::membership`]) on a simulated gossip network, in virtual time, all
//! randomness from one seeded RNG. The network delays, duplicates and reorders heartbeats, and
//! loses some in the seconds after each disturbance; nodes are killed (the coordinator more
//! often than not) and restarted; the network splits in two and heals.
//!
//! After every step it checks the invariants:
//! - a node's term never goes down (within one run of the node);
//! - once nothing has been disturbed for [`SETTLE_MS`], every connected set of live nodes has
//!   exactly one coordinator, and every other node of the set follows it in its term.
//!
//! A failing run names its seed and the command that replays it:
//! `SIM_SEED=<seed> cargo test -p rendermesh-node --test sim -- <test name> --exact`.
//! `SIM_SEEDS=N` runs N seeds per configuration instead of the default (a soak).

// Shared by two crates (the tests and the benchmark), each of which uses a part.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rendermesh_node::core::Millis;
use rendermesh_node::core::membership::{Change, ELECTION_GRACE_MS, Membership};
use rendermesh_protocol::{Heartbeat, NodeId, Role, Term, limits};

/// The actor's tick.
const TICK_MS: Millis = 100;
/// After a change of coordinator, the next heartbeat goes out this soon (as the actor does).
const URGENT_MS: Millis = 200;
/// How long after the last disturbance every connected set must have settled: the storm, a
/// timeout, a grace period and a few heartbeats.
pub const SETTLE_MS: Millis =
    STORM_MS + limits::PEER_TIMEOUT_MS + ELECTION_GRACE_MS + 2 * limits::HEARTBEAT_MS;
/// `SIM_TRACE=1`: print every change of coordinator, kill and restart.
fn trace() -> bool {
    std::env::var_os("SIM_TRACE").is_some()
}

/// How long heartbeats may be lost after a disturbance.
const STORM_MS: Millis = 4_000;
/// Seeds run per configuration in CI.
pub const DEFAULT_SEEDS: u64 = 200;

/// What a run simulates.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub nodes: usize,
    /// Virtual time simulated.
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
}

/// One simulated node.
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Its membership core.
    pub core: Membership,
    /// Whether it runs.
    pub alive: bool,
    /// Its heartbeat counter (restarts at 0 with the node).
    seq: u64,
    next_tick: Millis,
    next_heartbeat: Millis,
    /// The highest term its core has reported in this run (terms never go down).
    seen_term: Term,
}

/// A heartbeat in flight: delivered at `.0` to node `.2`; `.1` orders equal times.
type Delivery = Reverse<(Millis, u64, usize, usize)>;

pub struct Sim {
    config: Config,
    seed: u64,
    rng: StdRng,
    /// Virtual time.
    pub now: Millis,
    /// Every node, dead or alive.
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Delivery>,
    /// The heartbeats in flight, by the index in `queue`'s entries.
    payloads: Vec<Option<Arc<Heartbeat>>>,
    /// Which side of a partition each node is on (all 0 when healed).
    side: Vec<u8>,
    /// When anything last changed the mesh (a kill, a restart, a split, a heal).
    disturbed: Millis,
    /// When the next disturbance is due.
    next_disturbance: Millis,
    /// Dead nodes and when they come back.
    restarts: Vec<(usize, Millis)>,
    order: u64,
    /// Changes of coordinator seen.
    pub changes: usize,
}

impl Sim {
    /// A mesh of `config.nodes` fresh nodes at time 0, all randomness from `seed`.
    pub fn new(config: Config, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = (0..config.nodes)
            .map(|i| {
                // Ids in a shuffled order, so the smallest id is not always node 0.
                let id = NodeId(format!("{:08x}-{i:04}", rng.random::<u32>()));
                Node {
                    core: Membership::new(id.clone(), Role::Worker, 0),
                    id,
                    alive: true,
                    seq: 0,
                    next_tick: rng.random_range(0..TICK_MS),
                    next_heartbeat: rng.random_range(0..limits::HEARTBEAT_MS),
                    seen_term: Term(0),
                }
            })
            .collect();
        let first = rng.random_range(4_000..8_000);
        Self {
            config,
            seed,
            rng,
            now: 0,
            nodes,
            queue: BinaryHeap::new(),
            payloads: Vec::new(),
            side: vec![0; config.nodes],
            disturbed: 0,
            next_disturbance: first,
            restarts: Vec::new(),
            order: 0,
            changes: 0,
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "{what}\nat {} ms, seed {}, {:?}\nreplay: SIM_SEED={} cargo test -p rendermesh-node --test sim -- {} --exact",
            self.now,
            self.seed,
            self.config,
            self.seed,
            std::thread::current().name().unwrap_or("<test>")
        );
    }

    /// Sends `hb` from `from` to every live node on its side, each copy with its own fate.
    fn broadcast(&mut self, from: usize, hb: Heartbeat) {
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
                let at = self.now + self.rng.random_range(1..=self.config.max_delay);
                self.order += 1;
                self.payloads.push(Some(hb.clone()));
                let index = self.payloads.len() - 1;
                self.queue.push(Reverse((at, self.order, to, index)));
            }
        }
    }

    fn heartbeat_of(&mut self, i: usize) -> Heartbeat {
        let node = &mut self.nodes[i];
        node.seq += 1;
        Heartbeat {
            seq: node.seq,
            name: node.id.0.clone(),
            role: Role::Worker,
            cores: 1,
            memory: 0,
            blender: Some("Blender 3.4.1".into()),
            engines: Vec::new(),
            load: 0.0,
            current: None,
            term: node.core.max_term(),
            coordinator: node.core.coordinator(),
            claims: node.core.leading().is_some(),
            jobs: Vec::new(),
            addrs: Vec::new(),
        }
    }

    /// Kills, restarts, splits or heals, as the configuration allows.
    fn disturb(&mut self) {
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|(_, at)| *at <= self.now)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            self.restarts.retain(|(j, _)| *j != i);
            let node = &mut self.nodes[i];
            if trace() {
                eprintln!("{:>6} {} restarted", self.now, node.id);
            }
            node.core = Membership::new(node.id.clone(), Role::Worker, self.now);
            node.alive = true;
            node.seq = 0;
            node.seen_term = Term(0);
            node.next_tick = self.now;
            node.next_heartbeat = self.now;
            self.disturbed = self.now;
        }
        if self.now < self.next_disturbance {
            return;
        }
        self.next_disturbance = self.now + self.rng.random_range(8_000..16_000);
        // Leave the last stretch quiet, so every run ends settled.
        if self.now + SETTLE_MS + 1_000 > self.config.duration {
            return;
        }
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        let split = self.side.iter().any(|&s| s != 0);
        let mut options = Vec::new();
        if self.config.kills && alive.len() > 1 {
            options.push("kill");
        }
        if self.config.partitions {
            options.push(if split { "heal" } else { "split" });
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
                self.nodes[victim].alive = false;
                if trace() {
                    eprintln!("{:>6} {} killed", self.now, self.nodes[victim].id);
                }
                let back = self.now + self.rng.random_range(2_000..6_000);
                self.restarts.push((victim, back));
            }
            "split" => {
                for s in self.side.iter_mut() {
                    *s = u8::from(self.rng.random_bool(0.5));
                }
            }
            _ => self.side.iter_mut().for_each(|s| *s = 0),
        }
        self.disturbed = self.now;
    }

    /// Runs the simulation to its end, checking the invariants after every step.
    pub fn run(mut self) -> Self {
        while self.now < self.config.duration {
            self.step();
        }
        self
    }

    /// Advances 10 ms: disturbances due, deliveries due, ticks and heartbeats due, then the
    /// invariants.
    pub fn step(&mut self) {
        self.disturb();
        // Deliveries due.
        while let Some(Reverse((at, _, to, index))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let Some(hb) = self.payloads[index].take() else {
                continue;
            };
            let from = NodeId(hb.name.clone());
            let node = &mut self.nodes[to];
            if node.alive {
                node.core.heard(from, hb, self.now);
            }
        }
        // Ticks and heartbeats.
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            if self.nodes[i].next_tick <= self.now {
                self.nodes[i].next_tick += TICK_MS;
                let now = self.now;
                let node = &mut self.nodes[i];
                node.core.expire(now);
                if let Some(change) = node.core.elect(now) {
                    if trace() {
                        eprintln!("{now:>6} {} {change:?}", node.id);
                    }
                    self.changes += 1;
                    if matches!(change, Change::Lead(_)) {
                        node.next_heartbeat = node.next_heartbeat.min(now + URGENT_MS);
                    }
                }
            }
            if self.nodes[i].next_heartbeat <= self.now {
                self.nodes[i].next_heartbeat = self.now + limits::HEARTBEAT_MS;
                let hb = self.heartbeat_of(i);
                self.broadcast(i, hb);
            }
        }
        self.check();
        self.now += 10;
    }

    /// Kills node `i` (it stays dead), as a disturbance.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.disturbed = self.now;
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
                    .following()
                    .is_some_and(|c| c.node == self.nodes[leader].id && Some(c.term) == term)
        });
        all.then_some(leader)
    }

    fn check(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.alive {
                continue;
            }
            let term = node.core.max_term();
            if term < node.seen_term {
                self.fail(format!(
                    "node {} saw its term go down from {} to {term}",
                    node.id, node.seen_term
                ));
            }
            self.nodes[i].seen_term = term;
        }
        // Agreement is checked once per tick (nothing it reads changes more often).
        if self.now.saturating_sub(self.disturbed) < SETTLE_MS || !self.now.is_multiple_of(TICK_MS)
        {
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
                    .map(|&i| self.nodes[i].id.0.clone())
                    .collect();
                self.fail(format!(
                    "{} coordinators among {} settled nodes on side {side}: {ids:?}",
                    leaders.len(),
                    members.len()
                ));
            }
            let leader = &self.nodes[leaders[0]];
            let term = leader.core.leading();
            for &i in &members {
                let node = &self.nodes[i];
                let follows = i == leaders[0]
                    || node
                        .core
                        .following()
                        .is_some_and(|c| c.node == leader.id && Some(c.term) == term);
                if !follows {
                    self.fail(format!(
                        "settled node {} follows {:?}, not {} in term {term:?}",
                        node.id,
                        node.core.following(),
                        leader.id
                    ));
                }
            }
        }
    }
}
