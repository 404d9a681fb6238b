//! One node's core: it owns the membership, the job table, the coordinator (while this node
//! coordinates) and the worker side, routes each event to the part it concerns, and sends the
//! heartbeat. Requests this node sends itself (a coordinator assigning a task to itself, a
//! worker reporting to itself) are answered inside, before the actions are handed out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rendermesh_protocol::{
    Assignment, BlobHash, Heartbeat, JobId, NodeId, Outcome, Output, Request, Response, Role,
    limits,
};
use tracing::{debug, info, warn};

use super::coordinator::{Coordinator, Policy, Seat, View};
use super::membership::{Change, Membership};
use super::table::JobTable;
use super::worker::Worker;
use super::{Action, Millis, Outbox, Persist, ReplyTo, Saved, StitchFailure, Ticket};

/// Shortest gap between two heartbeats (a job change sends one early).
pub const MIN_HEARTBEAT_GAP_MS: Millis = 200;
/// Heartbeats a follower sends its coordinator without an answer before it stops sending.
pub const MAX_ALIVE_IN_FLIGHT: usize = 3;
/// How long a node waits before it tries again to fetch a blob it found damaged.
pub const REPAIR_RETRY_MS: Millis = 5_000;
/// Fetches of a damaged blob that no job this node knows of uses, before it is let go (this
/// node's copy of the table may lag behind the coordinator's, so it is tried all the same).
pub const REPAIR_TRIES_UNUSED: u32 = 12;

/// How often the blobs of a removed job are handed out to be collected again, while its
/// tombstone is kept.
pub const COLLECT_AGAIN_MS: Millis = 30 * 60 * 1000;

/// A gap between two events longer than this means the node itself stood still
/// ([`Core::advance`]).
pub const STALL_MS: Millis = limits::PEER_TIMEOUT_MS / 2;
/// A coordinator that leaves waits at most this long for its peers to hold its latest job
/// records before it says it is leaving (they pull them within a heartbeat or two).
pub const HANDOVER_MS: Millis = 3_000;

/// What a node says of itself in every heartbeat, besides the mesh state.
#[derive(Clone, Debug)]
pub struct Profile {
    /// A name for people.
    pub name: String,
    /// Worker or bootstrap.
    pub role: Role,
    /// Logical cores.
    pub cores: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// How its renders are confined.
    pub confinement: rendermesh_protocol::Confinement,
}

/// One node's mesh state and rules.
#[derive(Debug)]
pub struct Core {
    me: NodeId,
    profile: Profile,
    /// How it runs jobs while it coordinates.
    policy: Policy,
    membership: Membership,
    table: JobTable,
    /// `Some` while this node coordinates.
    coordinator: Option<Coordinator>,
    worker: Worker,
    /// Peers' requests to hold blobs: each fetch's ticket and where its answer goes.
    copies: BTreeMap<Ticket, ReplyTo>,
    /// Requests for the coordinator from this node's own users, passed on to it.
    forwarded: BTreeMap<Ticket, ReplyTo>,
    /// Blobs found damaged on this node's disk and removed, to fetch again: when each is next
    /// tried, and the fetches that failed so far.
    repairs: BTreeMap<BlobHash, (Millis, u32)>,
    /// The fetches of those under way.
    repairing: BTreeMap<Ticket, BlobHash>,
    out: Outbox,
    /// This node's multiaddrs (with `/p2p`).
    addrs: Vec<String>,
    seq: u64,
    last_heartbeat: Option<Millis>,
    /// A job changed: send a heartbeat soon.
    urgent: bool,
    /// The time of the latest event.
    now: Millis,
    /// Wall-clock milliseconds at the latest tick.
    wall_ms: u64,
    /// CPU load 0..=1 at the latest tick.
    load: f32,
    /// The highest term handed out to be written to disk.
    saved_term: rendermesh_protocol::Term,
    /// The damaged blobs handed out to be written to disk.
    saved_repairs: Vec<BlobHash>,
    /// Removed jobs whose blobs were handed out to be collected, and when.
    collected: BTreeMap<JobId, Millis>,
    /// Bytes free on the disk holding its store, when known.
    disk_free: Option<u64>,
    /// This node is leaving the mesh ([`Core::leave`]): its last heartbeat is sent.
    leaving: bool,
    /// A coordinator leaving: it writes nothing more, and waits until then at most for its
    /// peers to hold its latest records.
    handover_until: Option<Millis>,
    /// The membership record's version the last heartbeat named.
    published_members: Option<rendermesh_protocol::Version>,
    /// Heartbeats sent to a coordinator and not answered yet, and to whom.
    alive: BTreeMap<Ticket, NodeId>,
    /// The leaving heartbeat sent to the coordinator this node followed, until it answers
    /// ([`Core::has_told`]).
    told: Option<Ticket>,
    /// Whether that coordinator accepted it ([`Core::was_heard_leaving`]).
    heard_leaving: bool,
    /// The pull of the coordinator's membership record under way.
    members_pull: Option<(Ticket, NodeId)>,
    /// While it coordinates: the peers whose whole list of versions it has asked for in its
    /// term (once each, when their table differs: the jobs its predecessor accepted).
    surveyed: BTreeSet<NodeId>,
}

impl Core {
    /// Node `me`, started at `now`, that renders with `blender` (`None`: it does not render).
    pub fn new(
        me: NodeId,
        profile: Profile,
        blender: Option<String>,
        engines: Vec<rendermesh_protocol::Engine>,
        now: Millis,
    ) -> Self {
        let blender = if profile.role == Role::Worker {
            blender
        } else {
            None
        };
        Self {
            membership: Membership::new(me.clone(), profile.role, now),
            out: Outbox::new(me.clone()),
            me,
            profile,
            policy: Policy::default(),
            table: JobTable::default(),
            coordinator: None,
            worker: Worker::new(blender, engines),
            copies: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            repairs: BTreeMap::new(),
            repairing: BTreeMap::new(),
            addrs: Vec::new(),
            seq: 0,
            last_heartbeat: None,
            urgent: false,
            now,
            wall_ms: 0,
            load: 0.0,
            saved_term: rendermesh_protocol::Term(0),
            saved_repairs: Vec::new(),
            collected: BTreeMap::new(),
            disk_free: None,
            leaving: false,
            handover_until: None,
            published_members: None,
            alive: BTreeMap::new(),
            told: None,
            heard_leaving: false,
            members_pull: None,
            surveyed: BTreeSet::new(),
        }
    }

    /// Runs jobs by `policy` while it coordinates (default: [`Policy::default`]).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The engines it was given are only those it surely renders with: the others are to be
    /// probed ([`Action::ProbeEngines`]) once the node is idle.
    pub fn probing_engines(mut self) -> Self {
        self.worker.probe_engines();
        self
    }

    /// Takes back what this node kept on disk ([`Saved`]), before any event: its job records
    /// (each one checked) and the highest term it had seen, or the highest term its records
    /// were written in if that is higher. A node that coordinates again after a restart so
    /// claims a term above every record it holds, and its writes supersede them everywhere.
    pub fn restore(&mut self, saved: Saved) {
        let term = saved
            .jobs
            .iter()
            .map(|j| j.version.term)
            .fold(saved.term, rendermesh_protocol::Term::max);
        let jobs = saved.jobs.len();
        let kept = self.table.restore(saved.jobs);
        self.membership.observe_term(term);
        self.saved_term = term;
        // Blobs found damaged before the restart are fetched again from the first tick.
        for blob in &saved.repairs {
            self.repairs.insert(*blob, (self.now, 0));
        }
        self.saved_repairs = saved.repairs;
        self.saved_repairs.sort();
        info!(jobs = kept, refused = jobs - kept, term = %term, "job table restored from disk");
    }

    // ---- views ---------------------------------------------------------------------------

    /// This node.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// What it says of itself.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Live peers, terms and the election.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The job table.
    pub fn table(&self) -> &JobTable {
        &self.table
    }

    /// The worker side.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The coordinator in this node's view: itself, the one it follows, or nobody.
    pub fn coordinator(&self) -> Option<NodeId> {
        self.membership.coordinator()
    }

    /// `Some(term)` while this node coordinates.
    pub fn leading(&self) -> Option<rendermesh_protocol::Term> {
        self.coordinator.as_ref().map(Coordinator::term)
    }

    /// Its multiaddrs.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The heartbeat this node would send now.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            seq: self.seq,
            name: self.profile.name.clone(),
            role: self.profile.role,
            cores: self.profile.cores,
            memory: self.profile.memory,
            blender: self.worker.blender().map(str::to_owned),
            engines: self.worker.engines().to_vec(),
            confinement: self.profile.confinement,
            load: self.load,
            // A leaving node hands its task back.
            current: self.worker.current().filter(|_| !self.leaving),
            held: if self.leaving {
                Vec::new()
            } else {
                self.worker.held()
            },
            term: self.leading().unwrap_or(self.membership.max_term()),
            coordinator: self.coordinator(),
            claims: self.coordinator.is_some(),
            jobs: self.table.digests(),
            table: self.table.digest(),
            members: self.membership.record_version(),
            addrs: self.addrs.clone(),
            disk_free: self.disk_free,
            low_disk: self.worker.is_low_disk(),
            leaving: self.leaving,
        }
    }

    /// The actions queued so far, for the caller to carry out.
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.out.take_actions()
    }

    // ---- events --------------------------------------------------------------------------

    /// The disk holding this node's store has `free` bytes free (when known); `low`: less
    /// than the node keeps free, so it takes no work until it has room again (peers see why in
    /// its heartbeat).
    pub fn set_disk(&mut self, free: Option<u64>, low: bool) {
        if low != self.worker.is_low_disk() {
            if low {
                warn!(free = ?free, "low on disk: this node takes no work until it has room");
            } else {
                info!(free = ?free, "room on disk again: this node takes work");
            }
            self.urgent = true;
        }
        self.disk_free = free;
        self.worker.set_low_disk(low.then_some(free.unwrap_or(0)));
        self.membership.set_low_disk(low);
    }

    /// How many other machines this node is in touch with (open connections, dials of
    /// bootstrap nodes under way): a node with none that has heard nobody is alone, and
    /// claims without waiting out its election grace.
    pub fn set_contacts(&mut self, contacts: usize) {
        self.membership.set_contacts(contacts);
    }

    /// This node leaves the mesh (SIGTERM, ctrl-c), at `now`: it stops rendering and takes no
    /// more work, then sends a heartbeat saying it is leaving, so that its peers drop it,
    /// requeue its task and elect a new coordinator without waiting for its silence
    /// ([`Core::has_left`] says when). A coordinator hands its term over first: it writes
    /// nothing more (writes are answered `Busy`), and waits until every peer holds its latest
    /// job records, for [`HANDOVER_MS`] at most, so that its successor carries on from them.
    pub fn leave(&mut self, now: Millis) {
        self.advance(now);
        if self.leaving || self.handover_until.is_some() {
            return;
        }
        info!("leaving the mesh");
        self.worker.leave(&mut self.out);
        if self.coordinator.is_some() && self.membership.members().next().is_some() {
            info!(
                "handing the coordinator's term over: waiting for the peers to hold every record"
            );
            self.handover_until = Some(now + HANDOVER_MS);
            self.urgent = true;
            self.settle();
        } else {
            self.say_leaving(now);
        }
    }

    /// Whether this node has sent its leaving heartbeat.
    pub fn has_left(&self) -> bool {
        self.leaving
    }

    /// Whether this node has left and the coordinator it followed has answered its leaving
    /// heartbeat (or it followed none, or coordinated itself): no answer is left to wait for.
    pub fn has_told(&self) -> bool {
        self.leaving && self.told.is_none()
    }

    /// Whether the coordinator this node followed accepted its leaving heartbeat: it requeues
    /// this node's task, and its membership record tells the rest. Otherwise (this node
    /// coordinated, followed nobody, or was not answered) only the gossip tells the mesh.
    pub fn was_heard_leaving(&self) -> bool {
        self.heard_leaving
    }

    /// Stops coordinating and sends the heartbeat that says this node is leaving: gossiped to
    /// every peer, and sent to the coordinator this node follows, whose answer
    /// [`Core::has_told`] waits for (the coordinator is who must hear it: it requeues this
    /// node's task, and its membership record tells the rest).
    fn say_leaving(&mut self, now: Millis) {
        let coordinator = self
            .membership
            .following()
            .map(|c| c.node.clone())
            .filter(|c| *c != self.me);
        self.leaving = true;
        self.handover_until = None;
        self.membership.leave();
        if let Some(c) = self.coordinator.take() {
            c.retire(None, &mut self.out);
        }
        self.seq += 1;
        self.last_heartbeat = Some(now);
        let hb = self.heartbeat();
        if let Some(to) = coordinator {
            self.told = Some(self.out.send(to, Request::Alive(hb.clone())));
        }
        self.out.push(Action::Publish(hb));
        self.settle();
    }

    /// Whether every live peer's heartbeat says it holds this node's whole table, or
    /// advertises this node's latest version of each job it advertises itself.
    fn peers_hold_my_records(&self) -> bool {
        let mine = self.table.digests();
        let table = self.table.digest();
        self.membership.members().all(|(_, m)| {
            m.hb.table == table
                || mine.iter().all(|d| {
                    m.hb.jobs
                        .iter()
                        .any(|theirs| theirs.id == d.id && theirs.version >= d.version)
                })
        })
    }

    /// This node's addresses changed.
    pub fn set_addrs(&mut self, addrs: Vec<String>) {
        self.addrs = addrs;
    }

    /// The engines probe answered.
    pub fn set_engines(&mut self, engines: Vec<rendermesh_protocol::Engine>) {
        info!(engines = ?engines, "render engines probed");
        self.worker.set_engines(engines);
    }

    /// A heartbeat from `from`, heard at `now`. Job records it advertises in a newer version
    /// than this node's copy are pulled from it when it may have written them: a follower
    /// pulls from the coordinator it follows only; a coordinator pulls from any peer only jobs
    /// it holds no record of (one its predecessor accepted before this node heard of it), in an
    /// earlier term than its own. It never takes a peer's newer version of a record it holds:
    /// as a follower it pulled its predecessor's writes every heartbeat, so at most the last
    /// second's progress is redone, and no peer can rewrite a job.
    pub fn heard(&mut self, from: NodeId, hb: Arc<Heartbeat>, now: Millis) {
        self.advance(now);
        self.hear(from, hb, now);
        self.settle();
    }

    /// A heartbeat, gossiped or sent to this node as coordinator ([`Request::Alive`]).
    fn hear(&mut self, from: NodeId, hb: Arc<Heartbeat>, now: Millis) {
        if from == self.me {
            return;
        }
        if hb.leaving {
            if self.membership.left(&from, now) {
                info!(peer = %from.short(), "peer left the mesh");
                if let Some(c) = &mut self.coordinator {
                    c.node_gone(&mut self.table, &from);
                }
            }
            return;
        }
        let mut follows = false;
        match (&self.coordinator, self.membership.current()) {
            (Some(c), _) => {
                let term = c.term();
                self.table
                    .pull(&from, &hb.jobs, Some(term), true, &mut self.out);
                // Once per peer in its term, when their tables differ: the whole list, for
                // the jobs its predecessor accepted that it never heard of.
                if !self.surveyed.contains(&from)
                    && hb.table != self.table.digest()
                    && self.surveyed.insert(from.clone())
                {
                    self.table.list(&from, Some(term), true, &mut self.out);
                }
            }
            (None, Some(claim)) if claim.node == from => {
                follows = true;
                self.table
                    .catch_up(&from, &hb.jobs, hb.table, None, false, now, &mut self.out);
                let held = self.membership.held_record();
                let stale = held.is_none_or(|(who, v)| *who != from || *v != hb.members);
                // One pull at a time, but one to a coordinator since replaced (frozen, say)
                // does not hold up its successor's.
                let pulling = self
                    .members_pull
                    .as_ref()
                    .is_some_and(|(_, to)| *to == from);
                if stale && hb.members.is_some() && !pulling {
                    let ticket = self.out.send(from.clone(), Request::Members);
                    self.members_pull = Some((ticket, from.clone()));
                }
            }
            _ => {}
        }
        let addrs = hb.addrs.clone();
        let name = hb.name.clone();
        if let Some(c) = &mut self.coordinator {
            c.advertised(&hb.jobs, &self.table, &mut self.out);
        }
        if self.membership.heard(from.clone(), hb, now) {
            info!(peer = %from.short(), name = %rendermesh_protocol::printable(&name), "peer joined");
            self.out.push(Action::Dial {
                peer: from.clone(),
                addrs,
            });
        }
        if follows {
            self.membership.vouch(&from, now);
        }
    }

    /// The coordinator's membership record arrived.
    fn record_arrived(&mut self, from: &NodeId, answer: Result<Response, String>) {
        let Ok(Response::Members { version, members }) = answer else {
            return;
        };
        if members.len() > limits::MAX_MEMBERS {
            warn!(peer = %from.short(), members = members.len(), "a membership record too large: not kept");
            return;
        }
        let mut valid = Vec::with_capacity(members.len());
        for m in members {
            match m.heartbeat.validate() {
                Ok(()) => valid.push(m),
                Err(e) => warn!(peer = %m.id.short(), "a member's heartbeat not kept: {e}"),
            }
        }
        let (joined, gone) = self.membership.apply_record(from, version, valid, self.now);
        for (peer, addrs) in joined {
            info!(peer = %peer.short(), "peer joined (named by the coordinator)");
            self.out.push(Action::Dial { peer, addrs });
        }
        for peer in gone {
            info!(peer = %peer.short(), "peer gone (the coordinator no longer names it)");
        }
    }

    /// A request from `from` (this node itself for its own users' requests); the answer goes
    /// to `reply`.
    pub fn request(&mut self, from: NodeId, request: Request, reply: ReplyTo, now: Millis) {
        self.advance(now);
        self.handle_request(from, request, reply);
        self.settle();
    }

    /// The answer to the request sent with `ticket`.
    pub fn answered(&mut self, ticket: Ticket, answer: Result<Response, String>, now: Millis) {
        self.advance(now);
        self.handle_answer(ticket, answer);
        self.settle();
    }

    /// Blobs this node found damaged on its disk (truncated or corrupt after a power cut, or a
    /// disk error) and removed. Each is fetched again, from the nodes the job records name
    /// first, until it is back (the mesh keeps its copies), every [`REPAIR_RETRY_MS`]; one that
    /// no job this node knows of uses is let go after [`REPAIR_TRIES_UNUSED`] failed fetches.
    /// The list is kept on disk until each is back.
    pub fn damaged(&mut self, blobs: Vec<BlobHash>, now: Millis) {
        self.advance(now);
        for blob in blobs {
            warn!(blob = %blob.short(), "a blob was damaged on disk: removed, fetching it again");
            self.repairs.entry(blob).or_insert((now, 0));
        }
        self.repair();
        self.settle();
    }

    /// Hands out the blobs of each removed job that no kept job uses, to be deleted from the
    /// store: when it is first seen removed, and again every [`COLLECT_AGAIN_MS`] while its
    /// tombstone is kept (the store spares blobs stored recently). A blob no record names is
    /// left alone: this node's table may not hold every job yet.
    fn collect(&mut self) {
        let (table, now) = (&self.table, self.now);
        self.collected
            .retain(|id, at| table.contains(id) && now.saturating_sub(*at) < COLLECT_AGAIN_MS);
        let removed: Vec<JobId> = table
            .iter()
            .filter(|j| j.is_removed() && !self.collected.contains_key(&j.id))
            .map(|j| j.id)
            .collect();
        if removed.is_empty() {
            return;
        }
        let kept = table.referenced();
        let mut blobs = std::collections::BTreeSet::new();
        for id in removed {
            if let Some(job) = table.get(&id) {
                blobs.extend(job.all_blobs().filter(|b| !kept.contains(b)));
            }
            self.collected.insert(id, now);
        }
        if !blobs.is_empty() {
            self.out.push(Action::Collect(blobs.into_iter().collect()));
        }
    }

    /// Fetches again each damaged blob that is due.
    fn repair(&mut self) {
        let due: Vec<BlobHash> = self
            .repairs
            .iter()
            .filter(|(blob, (at, _))| {
                *at <= self.now && !self.repairing.values().any(|b| b == *blob)
            })
            .map(|(blob, _)| *blob)
            .collect();
        for blob in due {
            let hints = self.table.holders(&blob).unwrap_or_default();
            let hints = hints.into_iter().filter(|n| *n != self.me).collect();
            let ticket = self.out.fetch(vec![blob], hints);
            self.repairing.insert(ticket, blob);
        }
    }

    /// Blobs found damaged and not fetched again yet.
    pub fn repairs(&self) -> impl Iterator<Item = &BlobHash> {
        self.repairs.keys()
    }

    /// The result of the fetch with `ticket`.
    pub fn fetched(&mut self, ticket: Ticket, result: Result<(), String>, now: Millis) {
        self.advance(now);
        if let Some(blob) = self.repairing.remove(&ticket) {
            match result {
                Ok(()) => {
                    info!(blob = %blob.short(), "a damaged blob was fetched again");
                    self.repairs.remove(&blob);
                }
                Err(e) => {
                    let tries = self.repairs.get(&blob).map_or(0, |r| r.1) + 1;
                    if tries >= REPAIR_TRIES_UNUSED && self.table.holders(&blob).is_none() {
                        warn!(blob = %blob.short(), "a damaged blob no job uses could not be \
                              fetched again: let go ({e})");
                        self.repairs.remove(&blob);
                    } else {
                        debug!(blob = %blob.short(), "a damaged blob could not be fetched yet: {e}");
                        self.repairs.insert(blob, (now + REPAIR_RETRY_MS, tries));
                    }
                }
            }
        } else if let Some(reply) = self.copies.remove(&ticket) {
            let answer = match result {
                Ok(()) => Response::Accepted,
                Err(e) => Response::Rejected(e),
            };
            self.out.reply(reply, answer);
        } else if let Some(c) = &mut self.coordinator {
            c.fetched(&mut self.table, ticket, result, now, &mut self.out);
        }
        self.settle();
    }

    /// The stitched frame (or why not) of the stitch with `ticket`.
    pub fn stitched(&mut self, ticket: Ticket, result: Result<Output, StitchFailure>, now: Millis) {
        self.advance(now);
        if let Some(c) = &mut self.coordinator {
            c.stitched(&mut self.table, ticket, result, now);
        }
        self.settle();
    }

    /// The answer of the comparison with `ticket`: whether both renders hold the same pixels,
    /// or why they could not be compared.
    pub fn compared(&mut self, ticket: Ticket, result: Result<bool, String>, now: Millis) {
        self.advance(now);
        if let Some(c) = &mut self.coordinator {
            c.compared(&mut self.table, ticket, result, now);
        }
        self.settle();
    }

    /// A frame of the task under way is rendered.
    pub fn progress(&mut self, job: JobId, task: u32) {
        self.worker.progress(job, task);
    }

    /// The render of `assignment` ended (`None`: cancelled).
    pub fn rendered(&mut self, assignment: &Assignment, outcome: Option<Outcome>, now: Millis) {
        self.advance(now);
        self.worker.rendered(assignment, outcome);
        let coordinator = self.coordinator();
        self.worker
            .send_reports(coordinator.as_ref(), &mut self.out);
        // The task held next starts at once, unless the record took it back meanwhile.
        self.worker
            .stop_revoked(&self.me, &self.table, &mut self.out);
        self.worker.start_next(&mut self.out);
        self.settle();
    }

    /// Takes the time of an event. A gap of more than [`STALL_MS`] since the previous event
    /// (ticks come every 100 ms) means this node itself stood still: its process was stopped,
    /// its machine suspended or its VM paused. Its peers' silence over that gap says nothing
    /// of them, so each counts as heard now; otherwise a node waking from a freeze would take
    /// every peer for gone, claim, and depose a live coordinator with a stale table.
    fn advance(&mut self, now: Millis) {
        let gap = now.saturating_sub(self.now);
        if gap > STALL_MS && self.membership.members().next().is_some() {
            warn!(
                stalled_ms = gap,
                "this node stood still; its peers count as heard now"
            );
            self.membership.woke(now);
        }
        self.now = self.now.max(now);
    }

    /// The periodic work, at `now` (and `wall_ms` on the wall clock, with the CPU at `load`):
    /// expire silent peers, elect, coordinate, re-send reports, and
    /// send the heartbeat when it is due.
    pub fn tick(&mut self, now: Millis, wall_ms: u64, load: f32) {
        self.advance(now);
        self.wall_ms = wall_ms;
        self.load = load;

        for id in self.membership.expire(now) {
            info!(peer = %id.short(), "peer gone");
            if let Some(c) = &mut self.coordinator {
                c.node_gone(&mut self.table, &id);
            }
        }

        match self.membership.elect(now) {
            Some(Change::Lead(term)) => {
                if let Some(old) = self.coordinator.take() {
                    old.retire(None, &mut self.out);
                }
                self.surveyed.clear();
                self.coordinator = Some(Coordinator::new(
                    self.me.clone(),
                    term,
                    self.policy,
                    &self.table,
                    now,
                ));
                self.urgent = true;
            }
            Some(Change::Follow {
                claim,
                stepped_down,
            }) => {
                if stepped_down {
                    info!(coordinator = %claim.node.short(), term = %claim.term, "stepping down");
                }
                info!(coordinator = %claim.node.short(), term = %claim.term, "following");
                if let Some(old) = self.coordinator.take() {
                    old.retire(Some(claim.node.clone()), &mut self.out);
                }
                self.worker.coordinator_changed();
            }
            Some(Change::Nobody { stepped_down }) => {
                if stepped_down {
                    info!("stepping down: no coordinator in view");
                }
                if let Some(old) = self.coordinator.take() {
                    old.retire(None, &mut self.out);
                }
            }
            None => {}
        }

        if let Some(until) = self.handover_until {
            let done = self.coordinator.is_none() || self.peers_hold_my_records();
            if done || now >= until {
                if !done {
                    warn!("the peers do not all hold the latest job records: leaving anyway");
                }
                self.say_leaving(now);
            }
        }

        // A coordinator handing its term over writes nothing more.
        if let Some(c) = self
            .coordinator
            .as_mut()
            .filter(|_| self.handover_until.is_none())
        {
            let view = view(
                &self.me,
                &self.profile,
                &self.membership,
                &self.worker,
                now,
                wall_ms,
            );
            c.tick(&mut self.table, &view, &mut self.out);
        }

        self.worker
            .stop_revoked(&self.me, &self.table, &mut self.out);
        self.worker
            .prepare_next(&self.me, &self.table, &mut self.out);
        self.worker.probe_when_idle(now, &mut self.out);
        let forgotten = self
            .table
            .forget_tombstones(wall_ms, self.policy.keep_tombstones_ms);
        if forgotten > 0 {
            info!(jobs = forgotten, "removed jobs forgotten");
        }
        self.collect();
        self.repair();
        self.table.drain_all(&mut self.out);
        let coordinator = self.coordinator();
        self.worker
            .send_reports(coordinator.as_ref(), &mut self.out);
        self.settle();

        // A coordinator whose membership changed says so soon: its followers pull the record
        // when its heartbeat names the new version, so a node that died leaves their `peers`
        // about when it leaves the coordinator's.
        let members = self.membership.record_version();
        if members.is_some() && members != self.published_members {
            self.urgent = true;
        }
        let due = match self.last_heartbeat {
            None => true,
            Some(t) => {
                let gap = now.saturating_sub(t);
                gap >= limits::HEARTBEAT_MS || (self.urgent && gap >= MIN_HEARTBEAT_GAP_MS)
            }
        };
        if due {
            self.seq += 1;
            self.urgent = false;
            self.last_heartbeat = Some(now);
            let hb = self.heartbeat();
            self.published_members = hb.members;
            match self.membership.following() {
                // A follower tells its coordinator alone (a few unanswered at most: a
                // coordinator that answers none has its silence taken for what it is).
                Some(claim) if !self.membership.publishes() => {
                    // Only those to this coordinator count: a new coordinator hears this node
                    // at once, whatever its frozen predecessor left unanswered.
                    let to = claim.node.clone();
                    let unanswered = self.alive.values().filter(|c| **c == to).count();
                    if unanswered < MAX_ALIVE_IN_FLIGHT {
                        let ticket = self.out.send(to.clone(), Request::Alive(hb));
                        self.alive.insert(ticket, to);
                    }
                }
                _ => self.out.push(Action::Publish(hb)),
            }
        }
    }

    // ---- routing -------------------------------------------------------------------------

    fn not_coordinator(&self) -> Response {
        Response::NotCoordinator(self.membership.following().map(|c| c.node.clone()))
    }

    fn handle_request(&mut self, from: NodeId, request: Request, reply: ReplyTo) {
        let writes = matches!(
            request,
            Request::Submit { .. }
                | Request::Cancel(_)
                | Request::Remove(_)
                | Request::Report(_)
                | Request::Steer { .. }
        );
        if writes && self.coordinator.is_some() && self.handover_until.is_some() {
            let busy = Response::Busy("the coordinator is leaving; retry in a moment".into());
            self.out.reply(reply, busy);
            return;
        }
        let answer = match request {
            Request::Submit { .. }
            | Request::Cancel(_)
            | Request::Remove(_)
            | Request::Steer { .. }
                if self.coordinator.is_none() =>
            {
                self.forward(from, request, reply);
                return;
            }
            Request::Submit { id, spec } => {
                let view = view(
                    &self.me,
                    &self.profile,
                    &self.membership,
                    &self.worker,
                    self.now,
                    self.wall_ms,
                );
                if let Some(c) = &mut self.coordinator {
                    c.submit(&mut self.table, &view, id, spec, from, reply, &mut self.out);
                    c.hand_out_now(&mut self.table, &view, &mut self.out);
                }
                return;
            }
            Request::Cancel(id) => match &mut self.coordinator {
                Some(c) => c.cancel(&mut self.table, id, &from),
                None => return,
            },
            Request::Remove(id) => match &mut self.coordinator {
                Some(c) => c.remove(&mut self.table, id, &from, self.wall_ms),
                None => return,
            },
            Request::Steer { job, steer } => match &mut self.coordinator {
                Some(c) => c.steer(&mut self.table, job, steer, &from),
                None => return,
            },
            Request::Report(report) => {
                let view = view(
                    &self.me,
                    &self.profile,
                    &self.membership,
                    &self.worker,
                    self.now,
                    self.wall_ms,
                );
                match &mut self.coordinator {
                    Some(c) => {
                        c.report(
                            &mut self.table,
                            &view,
                            from,
                            report,
                            Some(reply),
                            &mut self.out,
                        );
                        return;
                    }
                    None => self.not_coordinator(),
                }
            }
            Request::Assign(a) => {
                // The term that counts is the followed coordinator's claim: a term heard from
                // anyone else never makes this node refuse it.
                match self.membership.current() {
                    Some(claim) if claim.node != from => Response::Rejected(format!(
                        "{from} is not the coordinator this node follows"
                    )),
                    None => Response::Rejected(format!(
                        "{from} is not the coordinator this node follows"
                    )),
                    Some(claim) if a.term < claim.term => Response::Rejected(format!(
                        "stale term {} (this node follows {from} in term {})",
                        a.term, claim.term
                    )),
                    Some(_) => {
                        self.membership.observe_term(a.term);
                        self.worker.assign(a, from, &mut self.out)
                    }
                }
            }
            Request::GiveBack { job, task, attempt } => {
                if self.membership.current().is_none_or(|c| c.node != from) {
                    Response::Rejected(format!("{from} is not the coordinator this node follows"))
                } else {
                    self.worker.give_back(job, task, attempt)
                }
            }
            Request::Replicate { job, blobs } => {
                let frames = self.table.get(&job).map(|j| j.spec.frames.len());
                if self.membership.current().is_none_or(|c| c.node != from) {
                    Response::Rejected(format!("{from} is not the coordinator this node follows"))
                } else if frames.is_none() {
                    // The record may be on its way: the coordinator asks again.
                    Response::Busy(format!("job {job} is not known here yet"))
                } else if frames.is_some_and(|f| blobs.len() > 2 * f as usize) {
                    Response::Rejected(format!(
                        "{} blobs is more than job {job} has frames and thumbnails",
                        blobs.len()
                    ))
                } else {
                    let ticket = self.out.fetch(blobs, vec![from]);
                    self.copies.insert(ticket, reply);
                    return;
                }
            }
            Request::Alive(hb) => {
                if self.coordinator.is_none() {
                    self.not_coordinator()
                } else if let Err(e) = hb.validate() {
                    Response::Rejected(e.to_string())
                } else {
                    let now = self.now;
                    self.hear(from, Arc::new(hb), now);
                    Response::Accepted
                }
            }
            Request::Members => match self.membership.record_version() {
                Some(version) if self.coordinator.is_some() => Response::Members {
                    version,
                    members: self.membership.record(),
                },
                _ => self.not_coordinator(),
            },
            Request::Digests => Response::Digests(self.table.versions()),
            Request::GetJob(id) => self.table.answer_pull(id, None),
            Request::GetJobSince { id, since } => self.table.answer_pull(id, Some(since)),
            Request::BlobInfo(_) | Request::BlobChunk { .. } | Request::BlobHave(_) => {
                Response::Rejected("blob requests are served by the network layer".into())
            }
        };
        self.out.reply(reply, answer);
    }

    /// A request for the coordinator that reached a node that does not coordinate: from this
    /// node's own users it is passed on to the coordinator (a submitted job's record comes back
    /// and is kept here, its first replica); from a peer it is refused.
    fn forward(&mut self, from: NodeId, request: Request, reply: ReplyTo) {
        match self.membership.following() {
            Some(claim) if from == self.me => {
                let ticket = self.out.send(claim.node.clone(), request);
                self.forwarded.insert(ticket, reply);
            }
            Some(_) => {
                let answer = self.not_coordinator();
                self.out.reply(reply, answer);
            }
            None => self.out.reply(
                reply,
                Response::Busy("no coordinator has been elected yet".into()),
            ),
        }
    }

    fn handle_answer(&mut self, ticket: Ticket, answer: Result<Response, String>) {
        if self.told.take_if(|t| *t == ticket).is_some() {
            self.heard_leaving = matches!(answer, Ok(Response::Accepted));
            return;
        }
        if self.alive.remove(&ticket).is_some()
            || self.table.pulled(ticket, &answer, self.now, &mut self.out)
            || self.worker.answered(ticket, &answer)
        {
            return;
        }
        if let Some((_, from)) = self.members_pull.take_if(|(t, _)| *t == ticket) {
            self.record_arrived(&from, answer);
            return;
        }
        if let Some(reply) = self.forwarded.remove(&ticket) {
            let answer = match answer {
                Ok(Response::Job(job)) => {
                    self.table.offer((*job).clone());
                    Response::Job(job)
                }
                Ok(other) => other,
                Err(e) => Response::Busy(e),
            };
            self.out.reply(reply, answer);
            return;
        }
        if let Some(c) = &mut self.coordinator {
            c.answered(&mut self.table, ticket, answer, self.now, &mut self.out);
        }
    }

    /// Handles the requests this node sent itself, and their answers, until none is left.
    fn settle(&mut self) {
        loop {
            let requests = std::mem::take(&mut self.out.to_self);
            let answers = std::mem::take(&mut self.out.inside);
            if requests.is_empty() && answers.is_empty() {
                break;
            }
            for (ticket, request) in requests {
                let me = self.me.clone();
                self.handle_request(me, request, ReplyTo::Inside(ticket));
            }
            for (ticket, answer) in answers {
                self.handle_answer(ticket, Ok(answer));
            }
        }
        if self
            .coordinator
            .as_mut()
            .is_some_and(Coordinator::take_changed)
        {
            self.urgent = true;
        }
        self.persist();
    }

    /// Hands out, ahead of every action queued so far, what changed in the job table and the
    /// term since the last time: nothing is acted on before it is on disk.
    fn persist(&mut self) {
        let term = self.membership.max_term();
        let repairs: Vec<BlobHash> = self.repairs.keys().copied().collect();
        let persist = Persist {
            term: (term > self.saved_term).then_some(term),
            jobs: self.table.unsaved(),
            repairs: (repairs != self.saved_repairs).then(|| repairs.clone()),
            forget: self.table.unsaved_forgotten(),
        };
        self.saved_term = self.saved_term.max(term);
        self.saved_repairs = repairs;
        if !persist.is_empty() {
            self.out.persist(persist);
        }
    }
}

/// The mesh as a coordinator sees it: the live nodes that render (this one included when it
/// renders) and the live peers.
fn view<'a>(
    me: &'a NodeId,
    profile: &Profile,
    membership: &'a Membership,
    worker: &'a Worker,
    now: Millis,
    wall_ms: u64,
) -> View<'a> {
    let mut workers: Vec<Seat<'a>> = membership
        .members()
        .filter(|(_, m)| m.hb.role == Role::Worker && m.hb.blender.is_some())
        .map(|(id, m)| Seat {
            id,
            blender: m.hb.blender.as_deref(),
            engines: &m.hb.engines,
            current: m.hb.current.clone(),
            held: m.hb.held.iter().take(limits::MAX_HELD).cloned().collect(),
            last_seen: m.last_seen,
            low_disk: m.hb.low_disk,
        })
        .collect();
    if profile.role == Role::Worker && worker.blender().is_some() {
        workers.push(Seat {
            id: me,
            blender: worker.blender(),
            engines: worker.engines(),
            current: worker.current(),
            held: worker.held(),
            last_seen: now,
            low_disk: worker.is_low_disk(),
        });
    }
    workers.sort_by(|a, b| a.id.cmp(b.id));
    View {
        now,
        wall_ms,
        workers,
        peers: membership.members().map(|(id, _)| id).collect(),
        full: membership
            .members()
            .filter(|(_, m)| m.hb.low_disk)
            .map(|(id, _)| id)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{BlobHash, Engine, FrameRange, Job, JobId, JobSpec, JobState, Term};

    use super::super::membership::ELECTION_GRACE_MS;
    use super::*;

    const BLENDER: &str = "Blender 3.4.1";

    fn n(name: &str) -> NodeId {
        NodeId::from_bytes(name.as_bytes()).expect("a node id")
    }

    fn core(name: &str) -> Core {
        let profile = Profile {
            name: name.into(),
            role: Role::Worker,
            cores: 2,
            memory: 0,
            confinement: rendermesh_protocol::Confinement::Unsandboxed,
        };
        Core::new(
            n(name),
            profile,
            Some(BLENDER.into()),
            vec![Engine::Cycles],
            0,
        )
    }

    fn spec() -> JobSpec {
        JobSpec {
            blender_version: Some(BLENDER.into()),
            chunk: Some(1),
            ..JobSpec::new(
                "shot.blend",
                BlobHash::of(b"shot"),
                4,
                FrameRange::single(1),
            )
        }
    }

    /// Task 0 of job 4 (one frame, submitted on `a`), assigned in `term`.
    fn assignment(term: u64) -> Assignment {
        Assignment {
            term: Term(term),
            job: JobId([4; 16]),
            task: 0,
            attempt: 1,
            version: Default::default(),
            frames: FrameRange::single(1),
            tile: None,
            spec: spec(),
            origin: n("a"),
        }
    }

    /// A heartbeat of `name` in term `term`, claiming to coordinate or not.
    fn heartbeat(name: &str, term: u64, claims: bool) -> Arc<Heartbeat> {
        let mut c = core(name);
        c.seq = 1;
        let mut hb = c.heartbeat();
        hb.term = Term(term);
        hb.claims = claims;
        Arc::new(hb)
    }

    /// Node "a" alone, leading in term 1 since `start` (returned), asked by its own user to
    /// render job 1 at `start + 10`.
    fn alone_with_a_job() -> (Core, Millis) {
        let mut c = core("a");
        let start = ELECTION_GRACE_MS + 100;
        c.tick(start, 0, 0.0);
        assert_eq!(c.leading(), Some(Term(1)));
        c.take_actions();
        let submit = Request::Submit {
            id: JobId([1; 16]),
            spec: spec(),
        };
        c.request(n("a"), submit, ReplyTo::Outside(1), start + 10);
        (c, start)
    }

    #[test]
    fn a_node_alone_renders_a_job_by_assigning_and_reporting_to_itself() {
        let (mut c, start) = alone_with_a_job();
        let id = JobId([1; 16]);
        c.tick(start + 100, 0, 0.0);
        let actions = c.take_actions();
        // Accepted (alone, one copy of the record is all there can be), assigned to itself
        // without a request on the network.
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Reply {
                to: 1,
                response: Response::Job(_)
            }
        )));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Send { .. })),
            "{actions:?}"
        );
        let Some(Action::Render { assignment, .. }) = actions
            .into_iter()
            .find(|a| matches!(a, Action::Render { .. }))
        else {
            panic!("no render started");
        };
        let output = Output {
            frame: 1,
            blob: BlobHash::of(b"frame 1"),
            size: 7,
            thumb: None,
        };
        c.rendered(&assignment, Some(Outcome::Done(vec![output])), start + 500);
        let job = c.table().get(&id).expect("the job");
        assert_eq!(job.state, JobState::Done);
        // Nobody else holds the frame yet: the record says so until a peer takes a copy.
        assert_eq!(job.held_once, vec![(BlobHash::of(b"frame 1"), n("a"))]);
        assert_eq!(c.worker().current(), None, "the report was taken");
    }

    /// Issue 13: a job submitted on the coordinator waited for its next tick (up to 100 ms)
    /// before any task went out; it is handed out as it is accepted.
    #[test]
    fn a_job_submitted_on_the_coordinator_is_handed_out_before_the_next_tick() {
        let (mut c, _) = alone_with_a_job();
        let actions = c.take_actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Render { .. })),
            "{actions:?}"
        );
        // Written to disk before it renders.
        let render = actions
            .iter()
            .position(|a| matches!(a, Action::Render { .. }));
        let persist = actions.iter().position(|a| matches!(a, Action::Persist(_)));
        assert!(persist.is_some() && persist < render, "{actions:?}");
    }

    /// Issue 12: every write reaches the disk before anything is done about it, and only what
    /// changed is written again.
    #[test]
    fn a_coordinator_writes_a_job_and_its_term_to_disk_before_it_answers_or_renders() {
        let mut c = core("a");
        let start = ELECTION_GRACE_MS + 100;
        c.tick(start, 0, 0.0);
        let actions = c.take_actions();
        assert!(
            matches!(&actions[0], Action::Persist(p) if p.term == Some(Term(1)) && p.jobs.is_empty()),
            "the term it leads in is on disk before its first claim: {actions:?}"
        );
        let id = JobId([1; 16]);
        c.request(
            n("a"),
            Request::Submit { id, spec: spec() },
            ReplyTo::Outside(1),
            start + 10,
        );
        c.tick(start + 100, 0, 0.0);
        let actions = c.take_actions();
        let first_other = actions
            .iter()
            .position(|a| !matches!(a, Action::Persist(_)))
            .expect("an answer and a render");
        let persisted: Vec<&Job> = actions[..first_other]
            .iter()
            .flat_map(|a| match a {
                Action::Persist(p) => p.jobs.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        let held = c.table().get(&id).expect("the job");
        assert_eq!(persisted.last().map(|j| j.version), Some(held.version));
        assert!(
            actions[first_other..]
                .iter()
                .all(|a| !matches!(a, Action::Persist(_))),
            "{actions:?}"
        );
        // Nothing changed: nothing is written.
        c.tick(start + 150, 0, 0.0);
        assert!(
            !c.take_actions()
                .iter()
                .any(|a| matches!(a, Action::Persist(_)))
        );
    }

    /// Issue 12: a node back from a power cut takes its records and its term back from disk,
    /// leads above every term its records were written in, and carries on their tasks.
    #[test]
    fn a_restored_node_leads_above_its_records_terms_and_carries_on_their_tasks() {
        let mut c = core("a");
        let id = JobId([4; 16]);
        let plan = rendermesh_protocol::plan(&spec(), 1);
        let mut job = Job::new(id, spec(), n("a"), plan, Term(5), 0);
        job.assign(0, n("a"), Term(5))
            .expect("assigned before the cut");
        let mut forged = job.clone();
        forged.id = JobId([9; 16]);
        forged.tasks[0].frames = FrameRange {
            start: 0,
            end: 9,
            step: 1,
        };
        c.restore(Saved {
            term: Term(3),
            jobs: vec![job.clone(), forged],
            repairs: Vec::new(),
        });
        assert_eq!(c.membership().max_term(), Term(5));
        assert!(
            !c.table().contains(&JobId([9; 16])),
            "an invalid record is not kept"
        );
        let start = ELECTION_GRACE_MS + 100;
        c.tick(start, 0, 0.0);
        assert_eq!(c.leading(), Some(Term(6)));
        // The task its worker side lost in the cut is handed out again, in the new term.
        let mut render = None;
        for t in 1..100 {
            c.tick(start + t * 100, 0, 0.0);
            render = c.take_actions().into_iter().find_map(|a| match a {
                Action::Render { assignment, .. } => Some(assignment),
                _ => None,
            });
            if render.is_some() {
                break;
            }
        }
        let render = render.expect("the restored job's task is rendered again");
        assert_eq!((render.job, render.term, render.attempt), (id, Term(6), 2));
    }

    /// Issue 12: a blob found damaged on disk is fetched again, from the nodes the records
    /// name, until it is back; one no job uses is let go.
    #[test]
    fn a_damaged_blob_a_job_uses_is_fetched_again_until_it_is_back() {
        let mut c = core("a");
        let id = JobId([4; 16]);
        let plan = rendermesh_protocol::plan(&spec(), 1);
        let mut job = Job::new(id, spec(), n("c"), plan, Term(2), 0);
        let attempt = job.assign(0, n("b"), Term(2)).expect("assigned");
        let frame = BlobHash::of(b"frame 1");
        let output = Output {
            frame: 1,
            blob: frame,
            size: 7,
            thumb: None,
        };
        job.complete(0, attempt, &n("b"), vec![output], Term(2))
            .expect("done");
        c.restore(Saved {
            term: Term(2),
            jobs: vec![job],
            repairs: Vec::new(),
        });
        let fetches = |c: &mut Core| -> Vec<(Vec<BlobHash>, Vec<NodeId>, Ticket)> {
            c.take_actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Fetch {
                        blobs,
                        hints,
                        ticket,
                    } => Some((blobs, hints, ticket)),
                    _ => None,
                })
                .collect()
        };
        c.damaged(vec![frame], 100);
        let first = fetches(&mut c);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].0, vec![frame]);
        assert!(first[0].1.contains(&n("b")) && first[0].1.contains(&n("c")));
        c.tick(200, 0, 0.0);
        assert!(fetches(&mut c).is_empty(), "one fetch at a time");
        c.fetched(first[0].2, Err("no peer yet".into()), 300);
        c.tick(300 + REPAIR_RETRY_MS - 100, 0, 0.0);
        assert!(fetches(&mut c).is_empty(), "not before the retry is due");
        c.tick(300 + REPAIR_RETRY_MS, 0, 0.0);
        let again = fetches(&mut c);
        assert_eq!(again.len(), 1, "tried again");
        c.fetched(again[0].2, Ok(()), 6_000);
        assert_eq!(c.repairs().count(), 0);
        c.tick(20_000, 0, 0.0);
        assert!(fetches(&mut c).is_empty(), "back: never fetched again");

        // A blob no record uses (this node's table may lag) is tried too, then let go.
        let unused = BlobHash::of(b"nobody's");
        c.damaged(vec![unused], 30_000);
        let mut now = 30_000;
        for _ in 0..REPAIR_TRIES_UNUSED {
            let tried = fetches(&mut c);
            assert_eq!(tried.len(), 1, "{tried:?}");
            c.fetched(tried[0].2, Err("nobody has it".into()), now);
            now += REPAIR_RETRY_MS;
            c.tick(now, 0, 0.0);
        }
        assert_eq!(c.repairs().count(), 0, "let go");
        assert!(fetches(&mut c).is_empty());
    }

    #[test]
    fn a_submit_on_a_follower_goes_to_the_coordinator_and_the_record_stays_there_too() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 1, true), 100);
        b.tick(200, 0, 0.0);
        assert_eq!(b.coordinator(), Some(n("a")));
        b.take_actions();
        let id = JobId([2; 16]);
        let submit = Request::Submit { id, spec: spec() };
        b.request(n("b"), submit, ReplyTo::Outside(7), 300);
        let Some(Action::Send { to, ticket, .. }) = b.take_actions().into_iter().next() else {
            panic!("the submit was not passed on");
        };
        assert_eq!(to, n("a"));
        let plan = rendermesh_protocol::plan(&spec(), 2);
        let record = Job::new(id, spec(), n("b"), plan, Term(1), 0);
        b.answered(ticket, Ok(Response::Job(Box::new(record.clone()))), 400);
        // The record goes to disk before the user hears of it.
        let actions = b.take_actions();
        assert!(
            matches!(&actions[..], [Action::Persist(p), Action::Reply {
                to: 7,
                response: Response::Job(_)
            }] if p.jobs == vec![record.clone()]),
            "{actions:?}"
        );
        assert_eq!(b.table().get(&id), Some(&record));
        // A peer's submit to a node that does not coordinate is refused, naming the coordinator.
        let theirs = Request::Submit {
            id: JobId([3; 16]),
            spec: spec(),
        };
        b.request(n("c"), theirs, ReplyTo::Outside(8), 500);
        let answer = b.take_actions();
        assert!(
            matches!(&answer[..], [Action::Reply { to: 8, response: Response::NotCoordinator(Some(c)) }] if *c == n("a"))
        );
    }

    #[test]
    fn an_assignment_is_taken_only_from_the_coordinator_in_its_term() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        b.take_actions();
        let stale = assignment(2);
        b.request(
            n("a"),
            Request::Assign(stale.clone()),
            ReplyTo::Outside(9),
            300,
        );
        let answer = b.take_actions();
        assert!(
            matches!(&answer[..], [Action::Reply { to: 9, response: Response::Rejected(m) }] if m.contains("stale term"))
        );
        // Nor does any node but the coordinator get a task rendered here, whatever its term.
        let mut rogue = stale;
        rogue.term = Term(9);
        b.request(n("z"), Request::Assign(rogue), ReplyTo::Outside(10), 400);
        let answer = b.take_actions();
        assert!(
            matches!(&answer[..], [Action::Reply { to: 10, response: Response::Rejected(m) }] if m.contains("not the coordinator"))
        );
        assert_eq!(
            b.membership().max_term(),
            Term(3),
            "a refused assignment raises no term"
        );
        assert!(!b.worker().is_rendering());
    }

    /// A record of job `id` (a byte) as written in `term`, at `seq`.
    fn record(id: u8, term: u64, seq: u64) -> Job {
        let plan = rendermesh_protocol::plan(&spec(), 1);
        let mut job = Job::new(JobId([id; 16]), spec(), n("a"), plan, Term(term), 0);
        job.version = rendermesh_protocol::Version {
            term: Term(term),
            seq,
        };
        job
    }

    /// `name`'s heartbeat in `term` advertising `records`.
    fn advertising(name: &str, term: u64, claims: bool, records: &[&Job]) -> Arc<Heartbeat> {
        let mut hb = heartbeat(name, term, claims);
        Arc::make_mut(&mut hb).jobs = records
            .iter()
            .map(|j| rendermesh_protocol::JobDigest {
                id: j.id,
                version: j.version,
            })
            .collect();
        hb
    }

    /// The job records `actions` ask for, and from whom.
    fn pulls(actions: &[Action]) -> Vec<(NodeId, JobId, Ticket)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    to,
                    request: Request::GetJob(id),
                    ticket,
                } => Some((to.clone(), *id, *ticket)),
                _ => None,
            })
            .collect()
    }

    /// The heartbeat `name` sends as it leaves, having coordinated in `term` or not.
    fn leaving(name: &str, term: u64) -> Arc<Heartbeat> {
        let mut hb = heartbeat(name, term, false);
        Arc::make_mut(&mut hb).leaving = true;
        hb
    }

    /// Issue 13: the task held next is given back when the coordinator asks (an idle node
    /// would end it sooner), and then never started; the running one never is, and nobody but
    /// the coordinator may ask.
    #[test]
    fn the_task_held_next_is_given_back_only_to_the_coordinator_and_only_unstarted() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        let running = assignment(3);
        let next = Assignment {
            task: 1,
            frames: FrameRange::single(2),
            ..assignment(3)
        };
        for (key, a) in [(1, &running), (2, &next)] {
            b.request(
                n("a"),
                Request::Assign(a.clone()),
                ReplyTo::Outside(key),
                300,
            );
        }
        b.take_actions();
        let give_back = |a: &Assignment| Request::GiveBack {
            job: a.job,
            task: a.task,
            attempt: a.attempt,
        };
        let answer = |b: &mut Core, from: &str, request: Request, key: u64| {
            b.request(n(from), request, ReplyTo::Outside(key), 400);
            b.take_actions()
        };
        let rogue = answer(&mut b, "z", give_back(&next), 3);
        assert!(
            matches!(&rogue[..], [Action::Reply { response: Response::Rejected(m), .. }] if m.contains("not the coordinator")),
            "{rogue:?}"
        );
        let started = answer(&mut b, "a", give_back(&running), 4);
        assert!(
            matches!(&started[..], [Action::Reply { response: Response::Rejected(m), .. }] if m.contains("not held here unstarted")),
            "{started:?}"
        );
        assert!(b.worker().is_rendering(), "the running task goes on");
        let given = answer(&mut b, "a", give_back(&next), 5);
        assert!(
            matches!(
                &given[..],
                [Action::Reply {
                    to: 5,
                    response: Response::Accepted
                }]
            ),
            "{given:?}"
        );
        // The running task ends: the task given back is not started.
        let output = Output {
            frame: 1,
            blob: BlobHash::of(b"frame 1"),
            size: 7,
            thumb: None,
        };
        b.rendered(&running, Some(Outcome::Done(vec![output])), 500);
        let after = b.take_actions();
        assert!(
            !after.iter().any(|a| matches!(a, Action::Render { .. })),
            "{after:?}"
        );
        assert!(!b.worker().is_rendering());
    }

    /// Issue 12: a node stopped politely (SIGTERM, ctrl-c) was seen as dead: its task waited
    /// out the peer timeout. It now says so at once, stops its render, takes no more work and
    /// never claims again.
    #[test]
    fn a_node_that_leaves_says_so_at_once_and_takes_no_more_work() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        b.request(
            n("a"),
            Request::Assign(assignment(3)),
            ReplyTo::Outside(1),
            300,
        );
        assert!(b.worker().is_rendering());
        b.take_actions();
        b.leave(400);
        let actions = b.take_actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::CancelRender)),
            "{actions:?}"
        );
        let said = actions.iter().any(|a| {
            matches!(a, Action::Publish(hb) if hb.leaving && !hb.claims && hb.current.is_none())
        });
        assert!(said, "{actions:?}");
        // And to the coordinator it follows, which must hear it (it requeues the task): the
        // node has told it only once it answers.
        let told = actions.iter().find_map(|a| match a {
            Action::Send {
                to,
                request: Request::Alive(hb),
                ticket,
            } if *to == n("a") && hb.leaving => Some(*ticket),
            _ => None,
        });
        let told = told.expect("the leaving heartbeat goes to the coordinator");
        assert!(b.has_left() && !b.has_told());
        b.answered(told, Ok(Response::Accepted), 450);
        assert!(b.has_told() && b.was_heard_leaving());
        let again = Assignment {
            attempt: 2,
            version: Default::default(),
            ..assignment(3)
        };
        b.request(n("a"), Request::Assign(again), ReplyTo::Outside(2), 500);
        let refused = b.take_actions();
        assert!(
            matches!(&refused[..], [Action::Reply { response: Response::Rejected(m), .. }] if m.contains("leaving")),
            "{refused:?}"
        );
        // Alone for long after, it still never claims.
        let mut now = 500;
        while now < 3 * ELECTION_GRACE_MS {
            now += 100;
            b.tick(now, 0, 0.0);
            assert_eq!(b.leading(), None, "at {now}");
        }
    }

    /// A coordinator that leaves hands its term over: it writes nothing more, and says it is
    /// leaving only once its peers hold its latest records (or after [`HANDOVER_MS`]), so that
    /// its successor does not carry on from an older copy.
    #[test]
    fn a_coordinator_that_leaves_first_waits_for_its_peers_to_hold_its_records() {
        let start = ELECTION_GRACE_MS + 100;
        for caught_up in [true, false] {
            let mut c = core("c");
            c.heard(n("w"), heartbeat("w", 0, false), start);
            c.tick(start, 0, 0.0);
            assert_eq!(c.leading(), Some(Term(1)));
            let id = JobId([5; 16]);
            c.request(
                n("c"),
                Request::Submit { id, spec: spec() },
                ReplyTo::Outside(1),
                start,
            );
            c.tick(start + 100, 0, 0.0);
            c.take_actions();
            c.leave(start + 200);
            let said = |actions: &[Action]| {
                actions
                    .iter()
                    .any(|a| matches!(a, Action::Publish(hb) if hb.leaving))
            };
            assert!(
                !said(&c.take_actions()),
                "not before its peers hold its records"
            );
            assert!(!c.has_left());
            let report = rendermesh_protocol::Report {
                job: id,
                task: 0,
                attempt: 1,
                outcome: rendermesh_protocol::Outcome::Failed("x".into()),
            };
            c.request(
                n("w"),
                Request::Report(report),
                ReplyTo::Outside(2),
                start + 300,
            );
            let busy = c.take_actions();
            assert!(
                matches!(&busy[..], [Action::Reply { response: Response::Busy(m), .. }] if m.contains("leaving")),
                "{busy:?}"
            );
            let mut now = start + 300;
            if caught_up {
                let mut hb = heartbeat("w", 1, false);
                Arc::make_mut(&mut hb).jobs = c.table().digests();
                c.heard(n("w"), hb, now + 100);
                now += 200;
                c.tick(now, 0, 0.0);
            } else {
                // w stays live, with an old copy.
                while now < start + 200 + HANDOVER_MS {
                    now += 100;
                    c.heard(n("w"), heartbeat("w", 1, false), now);
                    c.tick(now, 0, 0.0);
                    assert!(
                        !c.has_left() || now >= start + 200 + HANDOVER_MS,
                        "at {now}"
                    );
                }
            }
            assert!(c.has_left(), "caught up: {caught_up}");
            // It followed nobody but itself: no answer to wait for, and only the gossip says it.
            assert!(c.has_told() && !c.was_heard_leaving());
            assert!(said(&c.take_actions()));
            assert_eq!(c.leading(), None);
        }
    }

    /// A coordinator that hears a worker leave requeues its task at once; a follower that
    /// hears its coordinator leave elects a new one at its next tick, and a late heartbeat of
    /// the leaver does not bring it back.
    #[test]
    fn peers_drop_a_leaving_node_at_once_requeue_its_task_and_elect_anew() {
        let start = ELECTION_GRACE_MS + 100;
        let mut c = core("c");
        c.heard(n("w"), heartbeat("w", 0, false), start);
        c.tick(start, 0, 0.0);
        assert_eq!(c.leading(), Some(Term(1)));
        let two = JobSpec {
            chunk: Some(1),
            frames: FrameRange::new(1, 2).unwrap(),
            ..spec()
        };
        let id = JobId([5; 16]);
        c.request(
            n("c"),
            Request::Submit { id, spec: two },
            ReplyTo::Outside(1),
            start,
        );
        c.tick(start + 100, 0, 0.0);
        let on_w = |c: &Core| {
            c.table().get(&id).unwrap().tasks.iter().any(|t| {
                t.state == rendermesh_protocol::TaskState::Running && t.worker == Some(n("w"))
            })
        };
        assert!(on_w(&c), "a task is on w");
        c.heard(n("w"), leaving("w", 0), start + 200);
        assert!(!on_w(&c), "requeued at once");
        assert!(!c.membership().is_member(&n("w")));

        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), start);
        b.tick(start + 100, 0, 0.0);
        assert_eq!(b.coordinator(), Some(n("a")));
        b.heard(n("a"), leaving("a", 3), start + 200);
        b.tick(start + 300, 0, 0.0);
        assert_eq!(b.leading(), Some(Term(4)), "took over at its next tick");
        b.heard(n("a"), heartbeat("a", 3, true), start + 400);
        b.tick(start + 500, 0, 0.0);
        assert_eq!(
            b.leading(),
            Some(Term(4)),
            "a late heartbeat changes nothing"
        );
    }

    /// `b` hears `from` (its coordinator in `term`) advertise `job`, pulls it and is answered.
    fn take_record(b: &mut Core, from: &str, term: u64, job: &Job, now: u64) {
        b.heard(n(from), advertising(from, term, true, &[job]), now);
        let asked = pulls(&b.take_actions());
        let [(_, _, ticket)] = asked[..] else {
            panic!("one pull expected: {asked:?}");
        };
        b.answered(ticket, Ok(Response::Job(Box::new(job.clone()))), now + 1);
    }

    /// Issue 11: any node could advertise a forged record with a higher version, and every
    /// node, the coordinator too, pulled and kept it.
    /// Issue 12: a node woken from SIGSTOP took every peer for gone, claimed at once and
    /// deposed the live coordinator with its stale table.
    #[test]
    fn a_node_that_stood_still_does_not_take_its_peers_for_gone() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        assert_eq!(b.coordinator(), Some(n("a")));
        // Frozen for 20 s: the first event after it finds a still there.
        let woke = 20_200;
        b.tick(woke, 0, 0.0);
        assert_eq!(b.coordinator(), Some(n("a")));
        assert!(b.membership().is_member(&n("a")));
        // Heard again, it stays followed; silent for a peer timeout after the wake-up, it is
        // gone.
        b.heard(n("a"), heartbeat("a", 3, true), woke + 500);
        let mut now = woke + 500;
        while now < woke + 500 + limits::PEER_TIMEOUT_MS {
            now += 100;
            b.tick(now, 0, 0.0);
            assert_eq!(b.coordinator(), Some(n("a")), "at {now}");
        }
        b.tick(now + 200, 0, 0.0);
        assert!(!b.membership().is_member(&n("a")));
    }

    /// Issue 12: a removed job's tombstone is forgotten after a while, deleted from disk,
    /// and not pulled back from a peer that still holds it.
    #[test]
    fn a_forgotten_tombstone_leaves_the_disk_and_is_not_pulled_back() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        let mut tombstone = record(7, 3, 2);
        tombstone.remove(1_000, Term(3), &n("a"));
        take_record(&mut b, "a", 3, &tombstone, 300);
        b.take_actions();
        let keep = Policy::default().keep_tombstones_ms;
        b.tick(500, 1_000 + keep, 0.0);
        assert!(b.table().contains(&tombstone.id));
        b.tick(600, 1_001 + keep, 0.0);
        assert!(!b.table().contains(&tombstone.id));
        let forgot = b
            .take_actions()
            .into_iter()
            .any(|a| matches!(a, Action::Persist(p) if p.forget == [tombstone.id]));
        assert!(forgot, "the forgotten record is deleted from disk");
        b.heard(n("a"), advertising("a", 3, true, &[&tombstone]), 700);
        assert_eq!(pulls(&b.take_actions()), vec![]);
    }

    /// Issue 12: nothing was ever deleted. A removed job's blobs are handed out to be
    /// collected once, except those a kept job still uses.
    #[test]
    fn a_removed_jobs_blobs_are_collected_once_except_what_a_kept_job_uses() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        // Two jobs of the same .blend; the first is removed.
        let mut removed = record(7, 3, 2);
        removed.remove(1_000, Term(3), &n("a"));
        let kept = record(8, 3, 2);
        for job in [&removed, &kept] {
            take_record(&mut b, "a", 3, job, 300);
        }
        b.take_actions();
        let mut unique = removed.clone();
        unique.id = JobId([9; 16]);
        unique.spec.blend = BlobHash::of(b"only the removed job used this");
        take_record(&mut b, "a", 3, &unique, 500);
        b.tick(700, 0, 0.0);
        let collected: Vec<Vec<BlobHash>> = b
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Collect(blobs) => Some(blobs),
                _ => None,
            })
            .collect();
        // The shared .blend stays; the one only the removed job used goes, once.
        assert_eq!(collected, [vec![unique.spec.blend]]);
        b.tick(800, 0, 0.0);
        let again = b
            .take_actions()
            .into_iter()
            .any(|a| matches!(a, Action::Collect(_)));
        assert!(!again, "handed out once");
    }

    #[test]
    fn a_follower_takes_job_records_only_from_its_coordinator() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        b.take_actions();
        let forged = record(7, 3, 99);
        b.heard(n("z"), advertising("z", 3, false, &[&forged]), 300);
        assert_eq!(
            pulls(&b.take_actions()),
            vec![],
            "nothing pulled from a non-coordinator"
        );
        let real = record(7, 3, 2);
        b.heard(n("a"), advertising("a", 3, true, &[&real]), 400);
        let asked = pulls(&b.take_actions());
        let [(from, id, ticket)] = &asked[..] else {
            panic!("one pull from the coordinator: {asked:?}");
        };
        assert_eq!((from, id), (&n("a"), &real.id));
        b.answered(*ticket, Ok(Response::Job(Box::new(real.clone()))), 500);
        assert_eq!(b.table().get(&real.id), Some(&real));
    }

    /// A coordinator takes from its peers only jobs it holds no record of, written in an
    /// earlier term (its predecessor accepted them before this node heard of them); never a
    /// newer version of a record it holds, nor a record claiming its own term.
    #[test]
    fn a_coordinator_takes_from_peers_only_jobs_it_holds_no_record_of() {
        let mut c = core("c");
        c.heard(n("x"), heartbeat("x", 4, true), 100);
        c.tick(200, 0, 0.0);
        // x falls silent; c ticks on until it takes over.
        let mut gone = 200;
        while gone < 200 + limits::PEER_TIMEOUT_MS + ELECTION_GRACE_MS {
            gone += 100;
            c.tick(gone, 0, 0.0);
        }
        assert_eq!(c.leading(), Some(Term(5)));
        c.take_actions();

        let missed = record(1, 4, 9);
        let mine = record(2, 5, 40);
        c.heard(
            n("y"),
            advertising("y", 4, false, &[&missed, &mine]),
            gone + 10,
        );
        let asked = pulls(&c.take_actions());
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert_eq!(asked[0].1, missed.id);
        c.answered(
            asked[0].2,
            Ok(Response::Job(Box::new(missed.clone()))),
            gone + 20,
        );
        assert_eq!(c.table().get(&missed.id), Some(&missed));
        // Once held, a peer's newer version of it is not taken, however high its seq.
        let newer = record(1, 4, u64::MAX);
        c.heard(n("y"), advertising("y", 4, false, &[&newer]), gone + 30);
        assert_eq!(pulls(&c.take_actions()), vec![]);
        // A pull answered with a record in this coordinator's term is not kept.
        let other = record(3, 4, 1);
        c.heard(n("y"), advertising("y", 4, false, &[&other]), gone + 40);
        let asked = pulls(&c.take_actions());
        c.answered(
            asked[0].2,
            Ok(Response::Job(Box::new(record(3, 5, 2)))),
            gone + 50,
        );
        assert!(!c.table().contains(&other.id));
    }

    /// Replicate is the coordinator's request, for a job this node knows, and bounded by it:
    /// at most a frame and its thumbnail per frame.
    #[test]
    fn a_copy_is_made_only_for_the_coordinator_and_a_known_job() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.tick(200, 0, 0.0);
        b.take_actions();
        let job = record(7, 3, 2);
        let blob = BlobHash::of(b"frame 1");
        let replicate = |blobs: Vec<BlobHash>| Request::Replicate { job: job.id, blobs };
        let answer = |b: &mut Core, from: &str, request: Request, key: u64| {
            b.request(n(from), request, ReplyTo::Outside(key), 300);
            b.take_actions()
        };
        let refused = answer(&mut b, "z", replicate(vec![blob]), 1);
        assert!(
            matches!(&refused[..], [Action::Reply { response: Response::Rejected(m), .. }] if m.contains("not the coordinator")),
            "{refused:?}"
        );
        let unknown = answer(&mut b, "a", replicate(vec![blob]), 2);
        assert!(
            matches!(&unknown[..], [Action::Reply { response: Response::Busy(m), .. }] if m.contains("not known")),
            "{unknown:?}"
        );
        take_record(&mut b, "a", 3, &job, 400);
        assert!(matches!(&b.take_actions()[..], [Action::Persist(_)]));
        let too_many = answer(&mut b, "a", replicate(vec![blob; 3]), 3);
        assert!(
            matches!(&too_many[..], [Action::Reply { response: Response::Rejected(m), .. }] if m.contains("frames")),
            "{too_many:?}"
        );
        let thumb = BlobHash::of(b"thumbnail of frame 1");
        let taken = answer(&mut b, "a", replicate(vec![blob, thumb]), 4);
        assert!(
            matches!(&taken[..], [Action::Fetch { blobs, .. }] if blobs == &vec![blob, thumb]),
            "{taken:?}"
        );
    }

    /// Issue 11: one heartbeat naming a huge term, claiming nothing, used to make every
    /// worker refuse the real coordinator's assignments as stale.
    #[test]
    fn a_term_named_without_a_claim_does_not_stop_a_worker_obeying_its_coordinator() {
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 3, true), 100);
        b.heard(n("z"), heartbeat("z", u64::MAX, false), 150);
        b.tick(200, 0, 0.0);
        b.take_actions();
        assert_eq!(b.coordinator(), Some(n("a")));
        assert_eq!(b.heartbeat().term, Term(3));
        let assignment = assignment(3);
        b.request(
            n("a"),
            Request::Assign(assignment),
            ReplyTo::Outside(9),
            300,
        );
        let actions = b.take_actions();
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Reply {
                    to: 9,
                    response: Response::Accepted
                }
            )),
            "{actions:?}"
        );
        assert!(b.worker().is_rendering());
    }

    /// Issue 13: a follower sends its heartbeat to its coordinator alone and gossips nothing;
    /// it pulls the coordinator's membership record when the coordinator names a version it
    /// does not hold, and dials the members it names.
    #[test]
    fn a_follower_tells_its_coordinator_alone_and_pulls_its_record() {
        let mut b = core("b");
        let mut hb = heartbeat("a", 1, true);
        let version = rendermesh_protocol::Version {
            term: Term(1),
            seq: 4,
        };
        Arc::make_mut(&mut hb).members = Some(version);
        b.heard(n("a"), hb.clone(), 100);
        b.tick(200, 0, 0.0);
        b.take_actions();
        assert_eq!(b.coordinator(), Some(n("a")));
        // The next heartbeat of the coordinator names a record b lacks: b pulls it.
        b.heard(n("a"), hb.clone(), 300);
        let actions = b.take_actions();
        let members_pull = actions.iter().find_map(|a| match a {
            Action::Send {
                to,
                request: Request::Members,
                ticket,
            } if *to == n("a") => Some(*ticket),
            _ => None,
        });
        let ticket = members_pull.expect("the record pulled");
        let c = rendermesh_protocol::Member {
            id: n("c"),
            heartbeat: (*heartbeat("c", 1, false)).clone(),
        };
        let mut bad = c.clone();
        bad.id = n("d");
        bad.heartbeat.name = "d".repeat(limits::MAX_NAME_LEN + 1);
        let record = Response::Members {
            version,
            members: vec![c, bad],
        };
        b.answered(ticket, Ok(record), 350);
        let actions = b.take_actions();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Dial { peer, .. } if *peer == n("c"))),
            "{actions:?}"
        );
        assert!(b.membership().is_member(&n("c")));
        assert!(
            !b.membership().is_member(&n("d")),
            "a heartbeat out of bounds"
        );
        // Its heartbeat goes to the coordinator, and is not gossiped.
        b.heard(n("a"), hb, 1_100);
        b.tick(1_300, 0, 0.0);
        let actions = b.take_actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Send {
                to,
                request: Request::Alive(hb),
                ..
            } if *to == n("a") && hb.name == "b")),
            "{actions:?}"
        );
        assert!(!actions.iter().any(|a| matches!(a, Action::Publish(_))));
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                Action::Send {
                    request: Request::Members,
                    ..
                }
            )),
            "the record held is current"
        );
    }

    /// Issue 13: a record pull left unanswered by a coordinator that fell silent (frozen, its
    /// connection still open) does not stop the node pulling its successor's record.
    #[test]
    fn an_unanswered_record_pull_does_not_hold_up_the_next_coordinators() {
        let mut b = core("b");
        let version = |term| rendermesh_protocol::Version {
            term: Term(term),
            seq: 1,
        };
        let pulls = |b: &mut Core| -> Vec<NodeId> {
            b.take_actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Send {
                        to,
                        request: Request::Members,
                        ..
                    } => Some(to),
                    _ => None,
                })
                .collect()
        };
        let mut a = heartbeat("a", 1, true);
        Arc::make_mut(&mut a).members = Some(version(1));
        b.heard(n("a"), a.clone(), 100);
        b.tick(200, 0, 0.0);
        b.heard(n("a"), a, 300);
        assert_eq!(pulls(&mut b), vec![n("a")]);
        // a falls silent without answering; c claims the next term.
        let silent = 300 + limits::PEER_TIMEOUT_MS + 1;
        b.tick(silent, 0, 0.0);
        let mut c = heartbeat("c", 2, true);
        Arc::make_mut(&mut c).members = Some(version(2));
        b.heard(n("c"), c.clone(), silent + 10);
        b.tick(silent + 20, 0, 0.0);
        assert_eq!(b.coordinator(), Some(n("c")));
        b.take_actions();
        b.heard(n("c"), c, silent + 1_000);
        assert_eq!(pulls(&mut b), vec![n("c")]);
    }

    /// Issue 13: the coordinator takes heartbeats by request, refuses one out of bounds,
    /// serves its membership record, and a node that does not coordinate sends the asker to
    /// the one it follows.
    #[test]
    fn a_coordinator_takes_heartbeats_by_request_and_serves_its_record() {
        let mut a = core("a");
        let start = ELECTION_GRACE_MS + 100;
        a.tick(start, 0, 0.0);
        assert_eq!(a.leading(), Some(Term(1)));
        a.take_actions();
        let w = (*heartbeat("w", 1, false)).clone();
        a.request(
            n("w"),
            Request::Alive(w.clone()),
            ReplyTo::Outside(1),
            start,
        );
        let mut long = w.clone();
        long.addrs = vec!["/ip4/10.0.0.1".into(); limits::MAX_ADDRS + 1];
        a.request(n("x"), Request::Alive(long), ReplyTo::Outside(2), start);
        a.request(n("w"), Request::Members, ReplyTo::Outside(3), start);
        let actions = a.take_actions();
        let answer = |to: u64| {
            actions.iter().find_map(|a| match a {
                Action::Reply { to: t, response } if *t == to => Some(response.clone()),
                _ => None,
            })
        };
        assert_eq!(answer(1), Some(Response::Accepted));
        assert!(matches!(answer(2), Some(Response::Rejected(m)) if m.contains("addresses")));
        let Some(Response::Members { version, members }) = answer(3) else {
            panic!("no record: {actions:?}");
        };
        assert_eq!(Some(version), a.membership().record_version());
        let ids: Vec<NodeId> = members.into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![n("w")]);
        // A follower asked for the record names its coordinator.
        let mut b = core("b");
        b.heard(n("a"), heartbeat("a", 1, true), 100);
        b.tick(200, 0, 0.0);
        b.take_actions();
        b.request(n("c"), Request::Members, ReplyTo::Outside(4), 300);
        b.request(n("c"), Request::Alive(w), ReplyTo::Outside(5), 300);
        let actions = b.take_actions();
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::Reply { response: Response::NotCoordinator(Some(c)), .. } if *c == n("a")
        )));
    }

    /// Issue 13: a follower stops sending heartbeats to a coordinator that answers none
    /// (frozen), and sends the next one to its successor at once, whatever its predecessor
    /// left unanswered.
    #[test]
    fn heartbeats_unanswered_by_a_frozen_coordinator_do_not_silence_a_follower_to_the_next() {
        let mut b = core("b");
        let alive_to = |actions: &[Action]| -> Vec<NodeId> {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Send {
                        to,
                        request: Request::Alive(_),
                        ..
                    } => Some(to.clone()),
                    _ => None,
                })
                .collect()
        };
        let mut sent = Vec::new();
        let mut now = 100;
        for seq in 1..=6 {
            b.heard(n("a"), heartbeat("a", 1, true), now);
            b.tick(now + 10, 0, 0.0);
            sent.extend(alive_to(&b.take_actions()));
            now += limits::HEARTBEAT_MS;
            assert!(seq < 6 || b.coordinator() == Some(n("a")));
        }
        assert_eq!(
            sent,
            vec![n("a"); MAX_ALIVE_IN_FLIGHT],
            "a few unanswered at most"
        );
        // Node c claims a higher term: b follows it and tells it at once.
        b.heard(n("c"), heartbeat("c", 2, true), now);
        b.tick(now + 10, 0, 0.0);
        let mut to_c = alive_to(&b.take_actions());
        b.tick(now + 10 + limits::HEARTBEAT_MS, 0, 0.0);
        to_c.extend(alive_to(&b.take_actions()));
        assert_eq!(b.coordinator(), Some(n("c")));
        assert!(to_c.contains(&n("c")), "{to_c:?}");
    }

    /// Issue 13: a coordinator whose membership changes (a node fell silent) publishes its
    /// heartbeat, naming the record's new version, at the same tick, not up to a second
    /// later: its followers drop the node about when it does.
    #[test]
    fn a_coordinator_names_a_new_membership_at_once() {
        let mut a = core("a");
        let start = ELECTION_GRACE_MS + 100;
        a.tick(start, 0, 0.0);
        assert_eq!(a.leading(), Some(Term(1)));
        let w = (*heartbeat("w", 1, false)).clone();
        a.request(n("w"), Request::Alive(w), ReplyTo::Outside(1), start + 10);
        let mut now = start + 10;
        let mut published = Vec::new();
        while now < start + 10 + limits::PEER_TIMEOUT_MS + 200 {
            now += 100;
            a.tick(now, 0, 0.0);
            for action in a.take_actions() {
                if let Action::Publish(hb) = action {
                    published.push((now, hb.members));
                }
            }
        }
        assert!(!a.membership().is_member(&n("w")), "w fell silent");
        let gone_at = start + 10 + limits::PEER_TIMEOUT_MS + 100;
        let last = published.last().expect("heartbeats");
        assert_eq!(
            last.0, gone_at,
            "published at the tick w was dropped: {published:?}"
        );
        assert_eq!(last.1, a.membership().record_version());
    }
}
