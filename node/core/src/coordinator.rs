//! The coordinator's rules: accepting and cancelling jobs, handing tasks to idle workers that
//! can render them, taking reports (only the current assignment's counts, and only once two
//! nodes hold its frames), requeueing the tasks of workers that died or lost them, and
//! stitching tiled frames. A [`Coordinator`] exists only while this node coordinates: it is
//! built when the node takes over in a term and dropped when it steps down.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rendermesh_protocol::{
    Assignment, BlobHash, Engine, Job, JobId, JobSpec, JobState, Judgement, NodeId, Outcome,
    Output, Report, Request, Response, Steer, Task, TaskRef, TaskState, Term, Tiling, limits, plan,
};
use tracing::{debug, info, warn};

use super::table::JobTable;
use super::{Millis, Outbox, ReplyTo, StitchFailure, Ticket};
use crate::Action;

/// A worker whose heartbeats, this long after an assignment, name another task has lost it.
pub const LOST_ASSIGNMENT_AFTER_MS: Millis = 5_000;
/// A worker must have been heard this long after an assignment before its heartbeat can show
/// that it lost it (the heartbeat must postdate the assignment).
const HEARD_AFTER_MS: Millis = 1_500;
/// After a refused or failed assignment, a worker is left alone this long.
pub const ASSIGN_COOLDOWN_MS: Millis = 2_000;
/// How long a coordinator waits before stitching a frame again after a passing failure.
pub const STITCH_RETRY_MS: Millis = 2_000;
/// How long a job submitted on the coordinator's own node waits for a peer to hold its record
/// before it is accepted anyway (peers pull a new record within about a second; one whose
/// pulls keep failing must not leave the user waiting for ever).
pub const SECOND_COPY_WAIT_MS: Millis = 5_000;

/// How long a check nobody else can render waits (while its job has nothing else to do)
/// before it is skipped: a node away for a moment, or restarting, comes back within it.
pub const UNCHECKABLE_AFTER_MS: Millis = 10_000;

/// How long a task cut as its job goes ([`Job::carve`]) is meant to take at most, at its node's
/// measured pace: long enough that the hand-over between tasks is small against it, short
/// enough that a node lost in the middle costs little (Deadline's target task time).
pub const TARGET_TASK_MS: Millis = 60_000;

/// Guided self-scheduling: a task cut as its job goes takes its node's share (by pace) of the
/// frames left, divided by this, so tasks shrink as the job nears its end, down to single
/// frames for the last ones.
pub const GUIDED_DIVISOR: u64 = 2;

/// A task runs at most this many times the job's median time per frame (times its frames)
/// before it is taken back, and twice as long again for each time it timed out before.
pub const TIMEOUT_FACTOR: u64 = 5;

/// How this node runs the mesh's jobs while it coordinates (each node's own settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The shortest task timeout, however fast a job's frames have been
    /// ([`Coordinator::task_timeout`]). Default: 60 s.
    pub min_task_timeout: Millis,
    /// The timeout of a task of a job none of whose frames has been timed yet (its first
    /// tasks, or a job of one task). Default: 1 hour.
    pub unmeasured_task_timeout: Millis,
    /// How long a job is kept once it has ended, before it is removed for everyone (its
    /// record becomes a tombstone and its blobs may be collected). Default: 30 days, as
    /// Flamenco keeps jobs 31 days.
    pub keep_jobs_ms: u64,
    /// How long every node keeps a removed job's tombstone before it forgets it. Default: 7
    /// days (a node away longer may bring an old copy back; its retention removes it again).
    pub keep_tombstones_ms: u64,
    /// How many tasks of each worker in each job are checked: one frame of each rendered again
    /// on another node and compared pixel for pixel. 0 checks nothing. Default: 1.
    pub checks: usize,
}

/// A day in milliseconds.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_task_timeout: 60_000,
            unmeasured_task_timeout: 3_600_000,
            keep_jobs_ms: 30 * DAY_MS,
            keep_tombstones_ms: 7 * DAY_MS,
            checks: 1,
        }
    }
}

/// A live node that renders, as the coordinator sees it (this node included).
#[derive(Clone, Debug)]
pub struct Seat<'a> {
    /// The node.
    pub id: &'a NodeId,
    /// Its Blender version.
    pub blender: Option<&'a str>,
    /// The engines it renders with headless.
    pub engines: &'a [Engine],
    /// The task it says it is rendering or reporting.
    pub current: Option<TaskRef>,
    /// The other tasks it says it holds: the one it renders next, those it still reports.
    pub held: Vec<TaskRef>,
    /// When it was last heard (now, for this node).
    pub last_seen: Millis,
    /// It is low on disk, and takes no work.
    pub low_disk: bool,
}

impl Seat<'_> {
    /// Whether it may render tasks of `spec`: the job's Blender version (when it names one) and
    /// engine.
    pub fn can_render(&self, spec: &JobSpec) -> bool {
        spec.blender_version
            .as_deref()
            .is_none_or(|v| self.blender == Some(v))
            && self.engines.contains(&spec.engine)
    }

    fn holds(&self, job: JobId, task: u32, attempt: u32) -> bool {
        self.current
            .iter()
            .chain(&self.held)
            .any(|c| c.job == job && c.task == task && c.attempt == attempt)
    }

    /// Whether it holds task `task` of `job` in `attempt` to render next (not started yet).
    fn holds_ahead(&self, job: JobId, task: u32, attempt: u32) -> bool {
        self.held.first().is_some_and(|c| {
            c.job == job && c.task == task && c.attempt == attempt && c.frames_done == 0
        }) && !self
            .current
            .as_ref()
            .is_some_and(|c| c.job == job && c.task == task)
    }
}

/// The mesh as the coordinator sees it at one moment.
#[derive(Clone, Debug)]
pub struct View<'a> {
    /// Now.
    pub now: Millis,
    /// Wall-clock milliseconds since the Unix epoch (job creation times only).
    pub wall_ms: u64,
    /// Every live node that renders, in id order.
    pub workers: Vec<Seat<'a>>,
    /// Every live peer (never this node), in id order.
    pub peers: Vec<&'a NodeId>,
    /// The live peers low on disk: they take no work, nor a second copy of anything.
    pub full: Vec<&'a NodeId>,
}

impl View<'_> {
    fn seat(&self, id: &NodeId) -> Option<&Seat<'_>> {
        self.workers.iter().find(|s| s.id == id)
    }

    fn is_peer(&self, id: &NodeId) -> bool {
        self.peers.contains(&id)
    }

    fn matching(&self, spec: &JobSpec) -> usize {
        self.workers.iter().filter(|s| s.can_render(spec)).count()
    }
}

/// How many nodes of the slowest one's speed the workers of `paces` amount to (each worker's
/// pace relative to the others', per mille; `None`: not measured yet, counted at 1,000, a
/// median node): the slowest counts as one, one twice as fast as two; rounded (nodes of about
/// the same speed count as one each). At least the number of workers, at most four per worker.
pub fn speed_weighted(paces: &[Option<u64>]) -> usize {
    let paces: Vec<u64> = paces.iter().map(|p| p.unwrap_or(1_000).max(1)).collect();
    let Some(&slowest) = paces.iter().max() else {
        return 0;
    };
    let per_mille: u64 = paces.iter().map(|p| slowest * 1_000 / p).sum();
    let weighted = usize::try_from((per_mille + 500) / 1_000).unwrap_or(usize::MAX);
    weighted.clamp(paces.len(), paces.len().saturating_mul(4))
}

/// Work the coordinator waits on.
#[derive(Debug)]
enum Pending {
    /// An assignment sent to a worker.
    Assign {
        node: NodeId,
        job: JobId,
        task: u32,
        attempt: u32,
    },
    /// A report whose outputs are being copied (to this node, or from it to a second node);
    /// `checkable`: another live node could check it.
    Held {
        from: NodeId,
        report: Report,
        reply: Option<ReplyTo>,
        checkable: bool,
    },
    /// A tiled frame being stitched from `tiles` (`lone`: with nobody to copy it to).
    Stitch {
        job: JobId,
        frame: u32,
        tiles: Vec<BlobHash>,
        lone: bool,
    },
    /// A frame held on one node being copied to a second.
    Copy { job: JobId, blob: BlobHash },
    /// A check's render being compared with the render it checks.
    Compare { job: JobId, check: u32 },
    /// A task held ahead asked back from its holder, `node`, for an idle node.
    GiveBack {
        node: NodeId,
        job: JobId,
        task: u32,
        attempt: u32,
    },
}

/// The coordinator of one term.
#[derive(Debug)]
pub struct Coordinator {
    me: NodeId,
    term: Term,
    policy: Policy,
    /// Workers with an assignment in flight.
    assigning: BTreeSet<NodeId>,
    /// When each running task was handed out (or inherited).
    assigned_at: BTreeMap<(JobId, u32), Millis>,
    /// When each assignment this coordinator made was handed out (job, task, attempt): its
    /// report then times it.
    started: BTreeMap<(JobId, u32, u32), Millis>,
    /// The time per frame each report measured, until its task counts.
    measured: BTreeMap<(JobId, u32, u32), Millis>,
    /// Each node's last measured time per frame in each job: what its next task's size
    /// comes from ([`Coordinator::task_size`]).
    pace: BTreeMap<JobId, BTreeMap<NodeId, Millis>>,
    /// The nodes whose pace in a job comes from their first task alone, which includes their
    /// preparation: their next measure replaces it.
    first_paced: BTreeSet<(JobId, NodeId)>,
    /// Each node's pace in the last job it was measured in (not by its first task alone),
    /// per mille of that job's median pace: what sizes a `--tiles auto` grid by speed.
    relative_pace: BTreeMap<NodeId, u64>,
    /// Assignments handed to a worker busy with another task, not started yet as far as this
    /// coordinator knows: their clocks start when the worker reports the task before them, or
    /// names them as its current one.
    ahead: BTreeSet<(JobId, u32, u32)>,
    /// Of those, the ones asked back from their holder ([`Request::GiveBack`]), until it
    /// answers: only its word says whether it started them.
    giving_back: BTreeSet<(JobId, u32, u32)>,
    /// Backup tasks under way ([`Task::backup`]): the node running each and when it was
    /// handed it (its clocks, apart from the task's worker's).
    backups: BTreeMap<(JobId, u32), (NodeId, Millis)>,
    /// Workers left alone until then, after refusing.
    cooldown: BTreeMap<NodeId, Millis>,
    /// Reports whose outputs are being copied, and the node that reported each (it has ended
    /// that render: it is free for another task).
    verifying: BTreeMap<(JobId, u32, u32), NodeId>,
    /// Tiled frames being stitched.
    stitching: BTreeSet<(JobId, u32)>,
    /// Tiled frames whose stitching failed for a passing reason, and when to retry.
    stitch_after: BTreeMap<(JobId, u32), Millis>,
    /// Frames held on one node being copied to a second.
    copying: BTreeSet<BlobHash>,
    /// Frames whose copy failed, and when to try again.
    copy_after: BTreeMap<BlobHash, Millis>,
    /// Checks being compared.
    comparing: BTreeSet<(JobId, u32)>,
    /// Checks whose comparison failed for a passing reason, and when to try again.
    compare_after: BTreeMap<(JobId, u32), Millis>,
    /// Queued checks no live node may render, since when (skipped after
    /// [`UNCHECKABLE_AFTER_MS`]).
    uncheckable: BTreeMap<(JobId, u32), Millis>,
    /// Jobs submitted on this node, answered once a peer holds their record: where the answer
    /// goes, and since when it waits.
    unconfirmed: BTreeMap<JobId, (ReplyTo, Millis)>,
    pending: BTreeMap<Ticket, Pending>,
    /// A job record changed since [`Coordinator::take_changed`] last said so.
    changed: bool,
}

impl Coordinator {
    /// Takes over in `term` at `now`: every running task in `table` gets a fresh grace
    /// period before it can count as lost.
    pub fn new(me: NodeId, term: Term, policy: Policy, table: &JobTable, now: Millis) -> Self {
        info!(term = %term, "coordinating");
        let mut assigned_at = BTreeMap::new();
        for job in table.iter() {
            for t in job.all_tasks() {
                if t.state == TaskState::Running {
                    assigned_at.insert((job.id, t.index), now);
                }
            }
        }
        Self {
            me,
            term,
            policy,
            assigning: BTreeSet::new(),
            assigned_at,
            started: BTreeMap::new(),
            measured: BTreeMap::new(),
            pace: BTreeMap::new(),
            first_paced: BTreeSet::new(),
            relative_pace: BTreeMap::new(),
            ahead: BTreeSet::new(),
            giving_back: BTreeSet::new(),
            backups: BTreeMap::new(),
            cooldown: BTreeMap::new(),
            verifying: BTreeMap::new(),
            stitching: BTreeSet::new(),
            stitch_after: BTreeMap::new(),
            copying: BTreeSet::new(),
            copy_after: BTreeMap::new(),
            comparing: BTreeSet::new(),
            compare_after: BTreeMap::new(),
            uncheckable: BTreeMap::new(),
            unconfirmed: BTreeMap::new(),
            pending: BTreeMap::new(),
            changed: true,
        }
    }

    /// The term it coordinates in.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Whether a job record changed since the last call (the node then sends a heartbeat
    /// early).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Steps down: every request still waiting on this coordinator is told to go to
    /// `successor`.
    pub fn retire(self, successor: Option<NodeId>, out: &mut Outbox) {
        for (reply, _) in self.unconfirmed.into_values() {
            out.reply(reply, Response::NotCoordinator(successor.clone()));
        }
        for pending in self.pending.into_values() {
            if let Pending::Held { reply, .. } = pending {
                out.reply_to(reply, Response::NotCoordinator(successor.clone()));
            }
        }
    }

    /// A job submitted by `from`; the answer goes to `reply`. A job is accepted only once two
    /// nodes hold its record, so that it outlives this coordinator: a peer that submits gets
    /// the record in the answer and keeps it; a job submitted on this node is answered once a
    /// peer's heartbeat shows that it pulled the record (at once in a mesh of one, and after
    /// [`SECOND_COPY_WAIT_MS`] at the latest). Submitting twice is harmless: the id is the
    /// submitter's.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        table: &mut JobTable,
        view: &View<'_>,
        id: JobId,
        spec: JobSpec,
        from: NodeId,
        reply: ReplyTo,
        out: &mut Outbox,
    ) {
        let answer = self.accept(table, view, id, spec, &from);
        if from == self.me && !view.peers.is_empty() && matches!(answer, Response::Job(_)) {
            self.unconfirmed.insert(id, (reply, view.now));
        } else {
            out.reply(reply, answer);
        }
    }

    fn accept(
        &mut self,
        table: &mut JobTable,
        view: &View<'_>,
        id: JobId,
        spec: JobSpec,
        from: &NodeId,
    ) -> Response {
        if let Some(job) = table.get(&id) {
            return Response::Job(Box::new(job.clone()));
        }
        if *from != self.me && !view.is_peer(from) {
            return Response::Busy(format!(
                "unknown peer {from}: no heartbeat heard from it yet; retry once it has joined"
            ));
        }
        if let Err(e) = spec.validate() {
            return Response::Rejected(e.to_string());
        }
        let workers = view.matching(&spec);
        // A grid sized to the live nodes is sized to their speeds: a node twice as fast as
        // the slowest counts twice (so it takes more tiles, and the slowest is not left with
        // a large one at the end).
        let weighted = match spec.tiles {
            Some(Tiling::Auto) => {
                let paces: Vec<Option<u64>> = view
                    .workers
                    .iter()
                    .filter(|s| s.can_render(&spec))
                    .map(|s| self.relative_pace.get(s.id).copied())
                    .collect();
                speed_weighted(&paces)
            }
            _ => workers,
        };
        let plan = plan(&spec, weighted);
        let job = Job::new(id, spec, from.clone(), plan, self.term, view.wall_ms);
        info!(job = %id.short(), name = %job.spec.name, frames = %job.spec.frames,
              tasks = job.tasks.len(), tiles = ?job.grid.map(|g| g.to_string()), workers,
              "job accepted");
        if workers == 0 {
            warn!(job = %id.short(), "no live node runs {:?} with {}; the job waits for one",
                  job.spec.blender_version, job.spec.engine);
        }
        let answer = Response::Job(Box::new(job.clone()));
        table.insert(job);
        self.changed = true;
        answer
    }

    /// A peer's heartbeat advertised these job records: the jobs submitted here whose record
    /// a peer now holds are accepted.
    pub fn advertised(
        &mut self,
        digests: &[rendermesh_protocol::JobDigest],
        table: &JobTable,
        out: &mut Outbox,
    ) {
        for d in digests {
            if let Some((reply, _)) = self.unconfirmed.remove(&d.id)
                && let Some(job) = table.get(&d.id)
            {
                out.reply(reply, Response::Job(Box::new(job.clone())));
            }
        }
    }

    /// Cancels a job, asked by node `by`: only the node it was submitted on (its origin) may,
    /// so that no other node, buggy or hostile, can stop someone else's job.
    pub fn cancel(&mut self, table: &mut JobTable, id: JobId, by: &NodeId) -> Response {
        match table.get_mut(&id) {
            Some(job) if job.origin != *by => Response::Rejected(format!(
                "job {id} was submitted on node {}: only that node can cancel it",
                job.origin.short()
            )),
            Some(job) => {
                if job.cancel(self.term, by) {
                    info!(job = %id.short(), "job cancelled");
                    self.changed = true;
                }
                Response::Accepted
            }
            None => Response::Rejected(format!("no job {id}")),
        }
    }

    /// Pauses, resumes or reprioritises a job, asked by node `by`: only the node it was
    /// submitted on may, as for [`Coordinator::cancel`]. A paused job gets no new assignments
    /// ([`Coordinator::tick`]); the job of highest priority is handed out first.
    pub fn steer(
        &mut self,
        table: &mut JobTable,
        id: JobId,
        steer: Steer,
        by: &NodeId,
    ) -> Response {
        match table.get_mut(&id) {
            Some(job) if job.origin != *by => Response::Rejected(format!(
                "job {id} was submitted on node {}: only that node can steer it ({steer})",
                job.origin.short()
            )),
            Some(job) => match job.steer(steer, self.term) {
                Ok(changed) => {
                    if changed {
                        info!(job = %id.short(), "job steered: {steer}");
                        self.changed = true;
                    }
                    Response::Accepted
                }
                Err(why) => Response::Rejected(why),
            },
            None => Response::Rejected(format!("no job {id}")),
        }
    }

    /// Removes a job for everyone, asked by node `by` at `wall_ms` (cancelled first if it has
    /// not ended): only the node it was submitted on may, as for [`Coordinator::cancel`].
    pub fn remove(
        &mut self,
        table: &mut JobTable,
        id: JobId,
        by: &NodeId,
        wall_ms: u64,
    ) -> Response {
        match table.get_mut(&id) {
            Some(job) if job.origin != *by => Response::Rejected(format!(
                "job {id} was submitted on node {}: only that node can remove it",
                job.origin.short()
            )),
            Some(job) => {
                if job.remove(wall_ms, self.term, by) {
                    info!(job = %id.short(), "job removed");
                    self.changed = true;
                }
                Response::Accepted
            }
            None => Response::Rejected(format!("no job {id}")),
        }
    }

    /// Notes when each job ended, and removes those that ended longer ago than
    /// [`Policy::keep_jobs_ms`].
    fn expire(&mut self, table: &mut JobTable, wall_ms: u64) {
        for job in table.iter_mut() {
            if job.note_ended(wall_ms, self.term) {
                self.changed = true;
            }
            if let Some(ended) = job.ended_ms
                && !job.is_removed()
                && wall_ms.saturating_sub(ended) > self.policy.keep_jobs_ms
            {
                let origin = job.origin.clone();
                job.remove(wall_ms, self.term, &origin);
                info!(job = %job.id.short(), "job removed at the end of its retention");
                self.changed = true;
            }
        }
    }

    /// A report from `from`. Only the current assignment's report counts. A failure counts
    /// at once; rendered frames count once two nodes hold them: the coordinator copies them
    /// here first (or, when it rendered them itself, to a second node).
    pub fn report(
        &mut self,
        table: &mut JobTable,
        view: &View<'_>,
        from: NodeId,
        report: Report,
        reply: Option<ReplyTo>,
        out: &mut Outbox,
    ) {
        let Some(job) = table.get_mut(&report.job) else {
            // A new coordinator may not have pulled the job yet: the worker retries.
            out.reply_to(
                reply,
                Response::Busy(format!("job {} is not known here yet", report.job)),
            );
            return;
        };
        if let Err(stale) = job.check_current(report.task, report.attempt, &from) {
            debug!(job = %report.job.short(), task = report.task, "stale report: {stale}");
            out.reply_to(reply, Response::Rejected(stale.to_string()));
            return;
        }
        match &report.outcome {
            Outcome::Failed(message) => {
                warn!(job = %report.job.short(), task = report.task, node = %from.short(),
                      "task failed: {message}");
                let message = message.clone();
                self.failed(
                    job,
                    view,
                    report.task,
                    report.attempt,
                    &from,
                    message,
                    false,
                );
                // A worker whose render failed gives back the task it held next, unstarted.
                self.release_ahead(table, &from);
                self.sync_backups(table);
                out.reply_to(reply, Response::Accepted);
            }
            Outcome::Done(outputs) => {
                let Some(task) = job.task(report.task) else {
                    return;
                };
                if let Err(why) = task.check_outputs(outputs) {
                    warn!(job = %report.job.short(), task = report.task, node = %from.short(),
                          "report refused: {why}");
                    out.reply_to(reply, Response::Rejected(why));
                    return;
                }
                let key = (report.job, report.task, report.attempt);
                self.restart_clocks(table, &from, key, view.now);
                let Some(job) = table.get(&report.job) else {
                    return;
                };
                let Some(task) = job.task(report.task) else {
                    return;
                };
                let at = match self.backups.get(&(report.job, report.task)) {
                    Some((node, at)) if *node == from => Some(at),
                    _ => self.started.get(&key),
                };
                if let Some(at) = at {
                    let frames = u64::from(task.frames.len().max(1));
                    let ms = view.now.saturating_sub(*at) / frames;
                    self.measured.insert(key, ms);
                    // The mean of the last two measures: one slow frame does not halve a node's
                    // next task. The first (its Blender started, its files fetched) is replaced
                    // by the second.
                    let paces = self.pace.entry(report.job).or_default();
                    let first = self.first_paced.remove(&(report.job, from.clone()));
                    let pace = match paces.get(&from) {
                        Some(last) if !first => (last + ms) / 2,
                        Some(_) => ms,
                        None => {
                            self.first_paced.insert((report.job, from.clone()));
                            ms
                        }
                    };
                    paces.insert(from.clone(), pace.max(1));
                    // Tiles differ in cost (sky, or a detailed corner): only whole frames
                    // compare nodes.
                    if task.tile.is_none() {
                        self.note_relative_paces(report.job);
                    }
                }
                if self.verifying.insert(key, from.clone()).is_some() {
                    out.reply_to(
                        reply,
                        Response::Busy("its frames are being copied; retry".into()),
                    );
                    return;
                }
                // The frames and their thumbnails.
                let blobs: Vec<BlobHash> = outputs.iter().flat_map(Output::blobs).collect();
                let checkable = view
                    .workers
                    .iter()
                    .any(|s| *s.id != from && s.can_render(&job.spec));
                let ticket = if from != self.me {
                    // Hold every frame here before the task counts: two copies exist.
                    out.fetch(blobs, vec![from.clone()])
                } else {
                    match second_copy(&self.me, view, Some(&job.origin)) {
                        Some(target) => out.send(
                            target,
                            Request::Replicate {
                                job: report.job,
                                blobs,
                            },
                        ),
                        None => {
                            // Nobody to hold a second copy (a mesh of one, or this node is
                            // cut off): the frames count, and are copied once a peer shows up.
                            self.verifying.remove(&key);
                            self.apply_done(table, &from, report, reply, true, checkable, out);
                            return;
                        }
                    }
                };
                self.pending.insert(
                    ticket,
                    Pending::Held {
                        from,
                        report,
                        reply,
                        checkable,
                    },
                );
            }
        }
    }

    /// Puts every task held ahead by `node`, not started, back in the queue: it gave them back
    /// (its render failed, or it runs low on disk).
    fn release_ahead(&mut self, table: &mut JobTable, node: &NodeId) {
        let held: Vec<(JobId, u32, u32)> = self.ahead.iter().copied().collect();
        for (id, index, attempt) in held {
            if let Some(job) = table.get_mut(&id)
                && job.release(index, attempt, node, self.term).is_ok()
            {
                info!(job = %id.short(), task = index, node = %node.short(),
                      "task held ahead given back; requeued");
                self.ahead.remove(&(id, index, attempt));
                self.started.remove(&(id, index, attempt));
                self.assigned_at.remove(&(id, index));
                self.changed = true;
            }
        }
    }

    /// `from` reported task `done`: the task it held next starts now, and so do its clocks
    /// (its timeout, and the time its report measures).
    fn restart_clocks(
        &mut self,
        table: &JobTable,
        from: &NodeId,
        done: (JobId, u32, u32),
        now: Millis,
    ) {
        // Only tasks held ahead restart (a pass over those, not over every running task).
        let restarted: Vec<(JobId, u32, u32)> = self
            .ahead
            .iter()
            .filter(|key| **key != done)
            .filter(|(job, index, attempt)| {
                table
                    .get(job)
                    .and_then(|j| j.task(*index))
                    .is_some_and(|t| {
                        t.state == TaskState::Running
                            && t.attempt == *attempt
                            && t.worker.as_ref() == Some(from)
                    })
            })
            .copied()
            .collect();
        for key in restarted {
            let (job, index, _) = key;
            self.ahead.remove(&key);
            if let Some(at) = self.started.get_mut(&key) {
                *at = now;
                self.assigned_at.insert((job, index), now);
            }
        }
    }

    /// Notes the pace of each node measured in `job` (not by its first task alone) relative
    /// to the median of theirs.
    fn note_relative_paces(&mut self, job: JobId) {
        let Some(paces) = self.pace.get(&job) else {
            return;
        };
        let measured: Vec<(&NodeId, Millis)> = paces
            .iter()
            .filter(|(id, _)| !self.first_paced.contains(&(job, (*id).clone())))
            .map(|(id, pace)| (id, *pace))
            .collect();
        let Some(median) = median_of(measured.iter().map(|(_, pace)| *pace).collect()) else {
            return;
        };
        for (id, pace) in measured {
            self.relative_pace
                .insert(id.clone(), pace.max(1) * 1_000 / median.max(1));
        }
    }

    /// Counts a failed attempt of task `index` by `node` (`timed_out`: it ran past its
    /// timeout): the task goes back to the queue, or the job fails once the task has failed on
    /// 3 distinct nodes (or on every matching one, when fewer) or timed out 3 times, or once
    /// every node that could render it is blocklisted.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &mut self,
        job: &mut Job,
        view: &View<'_>,
        index: u32,
        attempt: u32,
        node: &NodeId,
        message: String,
        timed_out: bool,
    ) {
        let give_up = view.matching(&job.spec).clamp(1, 3);
        let counted = if timed_out {
            job.time_out(index, attempt, node, message.clone(), self.term)
        } else {
            job.fail(index, attempt, node, message.clone(), give_up, self.term)
        };
        if counted.is_err() {
            return;
        }
        self.changed = true;
        if job
            .task(index)
            .is_some_and(|t| t.state == TaskState::Running)
        {
            // The other of the task and its backup carries the attempt on (its clocks are
            // settled by `sync_backups`).
            return;
        }
        abort_if_nobody_left(job, view, self.term, || {
            format!(
                "every node that can render it failed {} of its tasks; the last said: {message}",
                limits::BLOCKLIST_AFTER
            )
        });
        self.assigned_at.remove(&(job.id, index));
        self.started.remove(&(job.id, index, attempt));
    }

    /// Follows the backups' fates in the records: a backup still running stays; one that now
    /// runs the task alone (its worker failed, timed out or vanished) brings its own clocks;
    /// any other has ended.
    fn sync_backups(&mut self, table: &JobTable) {
        for ((id, index), (node, at)) in std::mem::take(&mut self.backups) {
            let Some(t) = table.get(&id).and_then(|j| j.task(index)) else {
                continue;
            };
            if t.state != TaskState::Running {
                continue;
            }
            if t.backup.as_ref() == Some(&node) {
                self.backups.insert((id, index), (node, at));
            } else if t.worker.as_ref() == Some(&node) {
                self.started.insert((id, index, t.attempt), at);
                self.assigned_at.insert((id, index), at);
            }
        }
    }

    /// How long task `task` of `job` may run before it is taken back:
    /// [`TIMEOUT_FACTOR`] times the job's median time per frame (as its coordinators measured
    /// it, [`Job::frame_ms`]) times the
    /// task's frames, never less than [`Policy::min_task_timeout`];
    /// [`Policy::unmeasured_task_timeout`] while no frame of the job has been timed; in both
    /// cases doubled for each time the task timed out before, so that a frame much slower
    /// than the others still gets through.
    pub fn task_timeout(&self, job: &Job, task: &Task) -> Millis {
        let limit = match job.median_frame_ms() {
            Some(median) => median
                .saturating_mul(u64::from(task.frames.len().max(1)))
                .saturating_mul(TIMEOUT_FACTOR)
                .max(self.policy.min_task_timeout),
            None => self.policy.unmeasured_task_timeout,
        };
        let retries = job.timeouts(task.index).min(16) as u32;
        limit.saturating_mul(1 << retries)
    }

    /// Why task `task` of `job`, running for `ran` ms, is taken back, for its failure record.
    fn timed_out(&self, job: &Job, task: &Task, ran: Millis) -> String {
        let limit = match job.median_frame_ms() {
            Some(median) => format!(
                "{TIMEOUT_FACTOR}x the job's median frame time of {:.1} s, at least {} s",
                median as f64 / 1000.0,
                self.policy.min_task_timeout / 1000
            ),
            None => format!(
                "no frame of the job timed yet: at most {} s",
                self.policy.unmeasured_task_timeout / 1000
            ),
        };
        let retries = job.timeouts(task.index);
        let doubled = if retries > 0 {
            format!(", doubled for each of {retries} earlier timeouts")
        } else {
            String::new()
        };
        format!("timed out after {} s ({limit}{doubled})", ran / 1000)
    }

    /// Counts a report whose frames are held on two nodes (`lone`: on this node alone), and
    /// queues a check of it when its worker is due one and another node (`checkable`) could
    /// render it.
    #[allow(clippy::too_many_arguments)]
    fn apply_done(
        &mut self,
        table: &mut JobTable,
        from: &NodeId,
        report: Report,
        reply: Option<ReplyTo>,
        lone: bool,
        checkable: bool,
        out: &mut Outbox,
    ) {
        let Some(job) = table.get_mut(&report.job) else {
            out.reply_to(reply, Response::Busy("job record not held".into()));
            return;
        };
        let Outcome::Done(outputs) = report.outcome else {
            return;
        };
        let blobs: Vec<BlobHash> = outputs.iter().flat_map(Output::blobs).collect();
        let key = (report.job, report.task, report.attempt);
        let is_check = job.check(report.task).is_some();
        // A sample of each worker's renders is rendered again elsewhere: queued with the write
        // that counts the task, so that the job cannot end before it.
        let check = !is_check
            && job.checks_of(from) < self.policy.checks
            && checkable
            && job.check_current(report.task, report.attempt, from).is_ok();
        if check && let Some(index) = job.add_check(report.task, from.clone(), None, self.term) {
            debug!(job = %report.job.short(), task = report.task, check = index, node = %from.short(),
                   "a frame of it will be rendered again elsewhere, to check it");
        }
        let answer = match job.complete(report.task, report.attempt, from, outputs, self.term) {
            Ok(()) => {
                if let Some(ms) = self.measured.remove(&key) {
                    job.note_frame_time(ms);
                }
                if lone && !is_check {
                    for blob in blobs {
                        job.note_held_once(blob, self.me.clone(), self.term);
                    }
                }
                info!(job = %report.job.short(), task = report.task, node = %from.short(),
                      done = job.frames_done(), of = job.spec.frames.len(), "task done");
                if job.state == JobState::Done {
                    info!(job = %report.job.short(), "job done");
                }
                self.assigned_at.remove(&(report.job, report.task));
                self.changed = true;
                Response::Accepted
            }
            Err(stale) => Response::Rejected(stale.to_string()),
        };
        out.reply_to(reply, answer);
    }

    /// The answer to a request this coordinator sent. Returns false when `ticket` is not its.
    pub fn answered(
        &mut self,
        table: &mut JobTable,
        ticket: Ticket,
        answer: Result<Response, String>,
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        match self.pending.remove(&ticket) {
            Some(Pending::Assign {
                node,
                job,
                task,
                attempt,
            }) => {
                self.assigning.remove(&node);
                if !matches!(answer, Ok(Response::Accepted)) {
                    debug!(node = %node.short(), "assignment not taken: {answer:?}");
                    self.cooldown.insert(node.clone(), now + ASSIGN_COOLDOWN_MS);
                    if let Some(j) = table.get_mut(&job)
                        && j.release(task, attempt, &node, self.term).is_ok()
                    {
                        if !j.task(task).is_some_and(|t| t.state == TaskState::Running) {
                            self.assigned_at.remove(&(job, task));
                        }
                        self.sync_backups(table);
                        self.changed = true;
                    }
                }
                true
            }
            Some(Pending::GiveBack {
                node,
                job,
                task,
                attempt,
            }) => {
                self.given_back(table, &node, (job, task, attempt), &answer);
                true
            }
            Some(Pending::Held {
                from,
                report,
                reply,
                checkable,
            }) => {
                let result = match answer {
                    Ok(Response::Accepted) => Ok(()),
                    Ok(other) => Err(format!("the copy was refused: {other:?}")),
                    Err(e) => Err(e),
                };
                self.held(table, from, report, reply, checkable, result, out);
                true
            }
            Some(Pending::Copy { job, blob }) => {
                let result = match answer {
                    Ok(Response::Accepted) => Ok(()),
                    Ok(other) => Err(format!("the copy was refused: {other:?}")),
                    Err(e) => Err(e),
                };
                self.copied(table, job, blob, result, now);
                true
            }
            Some(other) => {
                self.pending.insert(ticket, other);
                false
            }
            None => false,
        }
    }

    /// The result of a fetch this coordinator asked for. Returns false when `ticket` is not
    /// its.
    pub fn fetched(
        &mut self,
        table: &mut JobTable,
        ticket: Ticket,
        result: Result<(), String>,
        now: Millis,
        out: &mut Outbox,
    ) -> bool {
        match self.pending.remove(&ticket) {
            Some(Pending::Held {
                from,
                report,
                reply,
                checkable,
            }) => {
                self.held(table, from, report, reply, checkable, result, out);
                true
            }
            Some(Pending::Copy { job, blob }) => {
                self.copied(table, job, blob, result, now);
                true
            }
            Some(other) => {
                self.pending.insert(ticket, other);
                false
            }
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn held(
        &mut self,
        table: &mut JobTable,
        from: NodeId,
        report: Report,
        reply: Option<ReplyTo>,
        checkable: bool,
        result: Result<(), String>,
        out: &mut Outbox,
    ) {
        self.verifying
            .remove(&(report.job, report.task, report.attempt));
        match result {
            Ok(()) => self.apply_done(table, &from, report, reply, false, checkable, out),
            Err(e) => {
                warn!(job = %report.job.short(), task = report.task,
                      "the frames of {} are not held twice yet: {e}", from.short());
                out.reply_to(reply, Response::Busy(format!("frames not copied yet: {e}")));
            }
        }
    }

    fn copied(
        &mut self,
        table: &mut JobTable,
        job: JobId,
        blob: BlobHash,
        result: Result<(), String>,
        now: Millis,
    ) {
        self.copying.remove(&blob);
        match result {
            Ok(()) => {
                if let Some(job) = table.get_mut(&job) {
                    job.held_twice(&blob, self.term);
                    self.changed = true;
                }
            }
            Err(e) => {
                debug!(job = %job.short(), blob = %blob.short(), "no second copy yet: {e}");
                self.copy_after.insert(blob, now + STITCH_RETRY_MS);
            }
        }
    }

    /// Whether a check's render holds the same pixels as the render it checks (or why they could
    /// not be compared: tried again later). Returns false when `ticket` is not this
    /// coordinator's.
    pub fn compared(
        &mut self,
        table: &mut JobTable,
        ticket: Ticket,
        result: Result<bool, String>,
        now: Millis,
    ) -> bool {
        let (id, index) = match self.pending.remove(&ticket) {
            Some(Pending::Compare { job, check }) => (job, check),
            Some(other) => {
                self.pending.insert(ticket, other);
                return false;
            }
            None => return false,
        };
        self.comparing.remove(&(id, index));
        let Some(job) = table.get_mut(&id) else {
            return true;
        };
        let same = match result {
            Ok(same) => same,
            Err(why) => {
                warn!(job = %id.short(), check = index, "check not compared yet: {why}");
                self.compare_after
                    .insert((id, index), now + STITCH_RETRY_MS);
                return true;
            }
        };
        let Some(check) = job.check(index).cloned() else {
            return true;
        };
        let checker = check.task.worker.as_ref().map(|w| w.short());
        match job.judge(index, same, self.term) {
            Some(Judgement::Agree) => {
                info!(job = %id.short(), task = check.of, node = %check.checked.short(),
                      checker = ?checker, "check passed: the same pixels");
            }
            Some(Judgement::Disputed(tie)) => {
                warn!(job = %id.short(), task = check.of, node = %check.checked.short(),
                      checker = ?checker, tie_break = ?tie,
                      "check failed: the pixels differ; a third node decides");
            }
            Some(Judgement::Suspect(node)) => {
                warn!(job = %id.short(), node = %node.short(), task = check.of,
                      "suspect: its render differs from two other nodes'; all it rendered \
                       for the job is rendered again");
            }
            None => return true,
        }
        self.changed = true;
        true
    }

    /// A stitched frame (or why not). Returns false when `ticket` is not this coordinator's.
    pub fn stitched(
        &mut self,
        table: &mut JobTable,
        ticket: Ticket,
        result: Result<Output, StitchFailure>,
        now: Millis,
    ) -> bool {
        let (id, frame, tiles, lone) = match self.pending.remove(&ticket) {
            Some(Pending::Stitch {
                job,
                frame,
                tiles,
                lone,
            }) => (job, frame, tiles, lone),
            Some(other) => {
                self.pending.insert(ticket, other);
                return false;
            }
            None => return false,
        };
        self.stitching.remove(&(id, frame));
        let Some(job) = table.get_mut(&id) else {
            return true;
        };
        // A tile rendered again meanwhile (its node turned out suspect): stitched again.
        let current: Vec<BlobHash> = job
            .tiles_of(frame)
            .filter_map(|t| t.outputs.first().map(|o| o.blob))
            .collect();
        if current != tiles {
            debug!(job = %id.short(), frame, "stitched from tiles no longer counted: dropped");
            return true;
        }
        match result {
            Ok(output) => {
                let blobs: Vec<BlobHash> = output.blobs().collect();
                if job.add_stitched(output, self.term).is_ok() {
                    if lone {
                        for blob in blobs {
                            job.note_held_once(blob, self.me.clone(), self.term);
                        }
                    }
                    info!(job = %id.short(), frame, done = job.frames_done(),
                          of = job.spec.frames.len(), "frame stitched");
                    if job.state == JobState::Done {
                        info!(job = %id.short(), "job done");
                    }
                    self.changed = true;
                }
            }
            Err(StitchFailure::Retry(why)) => {
                warn!(job = %id.short(), frame, "frame not stitched yet: {why}");
                self.stitch_after.insert((id, frame), now + STITCH_RETRY_MS);
            }
            Err(StitchFailure::Fatal(why)) => {
                let message = format!("frame {frame} cannot be stitched: {why}");
                warn!(job = %id.short(), "job failed: {message}");
                job.abort(message, self.term);
                self.changed = true;
            }
        }
        true
    }

    /// `node` left the mesh: its running tasks go back to the queue at once.
    pub fn node_gone(&mut self, table: &mut JobTable, node: &NodeId) {
        for job in table.iter_mut() {
            let n = job.requeue_node(node, self.term);
            if n > 0 {
                info!(job = %job.id.short(), tasks = n, node = %node.short(),
                      "requeued the tasks of a vanished node");
                self.changed = true;
            }
        }
        self.sync_backups(table);
        self.assigning.remove(node);
        self.relative_pace.remove(node);
    }

    /// The coordinator's periodic work: requeue lost tasks, hand out queued ones, stitch
    /// the frames whose tiles are all rendered.
    pub fn tick(&mut self, table: &mut JobTable, view: &View<'_>, out: &mut Outbox) {
        // Alone now, nobody can hold a second copy of a record; after a while, one copy is
        // better than a user left waiting.
        let alone = view.peers.is_empty();
        let due: Vec<JobId> = self
            .unconfirmed
            .iter()
            .filter(|(_, (_, since))| {
                alone || view.now.saturating_sub(*since) >= SECOND_COPY_WAIT_MS
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let (Some((reply, _)), Some(job)) = (self.unconfirmed.remove(&id), table.get(&id)) {
                if !alone {
                    warn!(job = %id.short(), "no peer has pulled the job's record yet: accepted with one copy");
                }
                out.reply(reply, Response::Job(Box::new(job.clone())));
            }
        }
        self.expire(table, view.wall_ms);
        self.reconcile(table, view);
        self.schedule(table, view, out);
        self.stitch_ready(table, view, out);
        self.compare_ready(table, view, out);
        self.copy_held_once(table, view, out);
    }

    /// Compares every rendered check with the render it checks.
    fn compare_ready(&mut self, table: &JobTable, view: &View<'_>, out: &mut Outbox) {
        let now = view.now;
        self.compare_after.retain(|_, after| *after > now);
        for job in table.iter() {
            if job.state.is_terminal() {
                continue;
            }
            for check in &job.checks {
                let key = (job.id, check.task.index);
                if self.comparing.contains(&key) || self.compare_after.contains_key(&key) {
                    continue;
                }
                let Some((checked, again)) = job.to_compare(check.task.index) else {
                    continue;
                };
                let mut hints = vec![check.checked.clone()];
                hints.extend(check.task.worker.clone());
                hints.push(job.origin.clone());
                let ticket = out.ticket();
                self.comparing.insert(key);
                self.pending.insert(
                    ticket,
                    Pending::Compare {
                        job: job.id,
                        check: check.task.index,
                    },
                );
                out.push(Action::Compare {
                    checked,
                    check: again,
                    hints,
                    ticket,
                });
            }
        }
    }

    /// Skips the checks no live node may render once their job has nothing else left to do
    /// and [`UNCHECKABLE_AFTER_MS`] has passed: a job is never held up for good by a check
    /// (a mesh of two where one node left, or both of a dispute and nobody else); a dispute
    /// nobody can decide makes both its nodes suspect.
    fn skip_uncheckable(&mut self, table: &mut JobTable, view: &View<'_>) {
        let now = view.now;
        let mut stuck = BTreeSet::new();
        for job in table.iter() {
            let waiting = !job.state.is_terminal()
                && job.uncut() == 0
                && job.tasks.iter().all(|t| t.state == TaskState::Done);
            if !waiting {
                continue;
            }
            for c in &job.checks {
                let nobody = c.task.state == TaskState::Queued
                    && !view.workers.iter().any(|s| {
                        s.can_render(&job.spec)
                            && c.may_check(s.id)
                            && !s.low_disk
                            && !job.blocklisted(s.id)
                    });
                if nobody {
                    stuck.insert((job.id, c.task.index));
                }
            }
        }
        self.uncheckable.retain(|key, _| stuck.contains(key));
        for key in stuck {
            let since = *self.uncheckable.entry(key).or_insert(now);
            if now.saturating_sub(since) < UNCHECKABLE_AFTER_MS {
                continue;
            }
            self.uncheckable.remove(&key);
            let (id, index) = key;
            let Some(job) = table.get_mut(&id) else {
                continue;
            };
            let Some(check) = job.check(index).cloned() else {
                continue;
            };
            match check.disputed_by {
                None => {
                    warn!(job = %id.short(), task = check.of, node = %check.checked.short(),
                          "check skipped: no other node can render it");
                    job.skip_check(index, self.term);
                }
                Some(other) => {
                    warn!(job = %id.short(), task = check.of, a = %check.checked.short(),
                          b = %other.short(),
                          "two nodes render differently and no third can decide: both suspect");
                    job.skip_check(index, self.term);
                    job.distrust(check.checked.clone(), self.term);
                    job.distrust(other.clone(), self.term);
                    abort_if_nobody_left(job, view, self.term, || {
                        format!(
                            "nodes {} and {} render it differently and no third node can \
                             decide which is right; render it with --no-verify or on more nodes",
                            check.checked.short(),
                            other.short()
                        )
                    });
                }
            }
            self.changed = true;
        }
    }

    /// Copies every frame held on one node to a second one: this node fetches it from its
    /// holder, or, when it holds it itself, asks a peer to fetch it.
    fn copy_held_once(&mut self, table: &JobTable, view: &View<'_>, out: &mut Outbox) {
        let now = view.now;
        self.copy_after.retain(|_, after| *after > now);
        for job in table.iter() {
            for (blob, holder) in &job.held_once {
                if self.copying.contains(blob) || self.copy_after.contains_key(blob) {
                    continue;
                }
                let ticket = if *holder == self.me {
                    match second_copy(&self.me, view, Some(&job.origin)) {
                        Some(target) => out.send(
                            target,
                            Request::Replicate {
                                job: job.id,
                                blobs: vec![*blob],
                            },
                        ),
                        None => continue,
                    }
                } else if view.is_peer(holder) {
                    out.fetch(vec![*blob], vec![holder.clone()])
                } else {
                    continue;
                };
                self.copying.insert(*blob);
                self.pending.insert(
                    ticket,
                    Pending::Copy {
                        job: job.id,
                        blob: *blob,
                    },
                );
            }
        }
    }

    /// Requeues running tasks whose worker is gone or has visibly lost them, and fails those
    /// that ran past their [timeout](Coordinator::task_timeout) (a hung Blender, a frozen
    /// driver: the worker, seeing its task taken back, kills its render).
    fn reconcile(&mut self, table: &mut JobTable, view: &View<'_>) {
        let now = view.now;
        // A worker low on disk gives back the task it held next (it starts nothing).
        for seat in view.workers.iter().filter(|s| s.low_disk) {
            self.release_ahead(table, seat.id);
        }
        self.sync_backups(table);
        let mut releases = Vec::new();
        let mut timeouts = Vec::new();
        self.started.retain(|(id, index, attempt), _| {
            table.get(id).is_some_and(|j| {
                j.task(*index)
                    .is_some_and(|t| t.state == TaskState::Running && t.attempt == *attempt)
            })
        });
        self.measured
            .retain(|key, _| self.started.contains_key(key));
        self.pace
            .retain(|id, _| table.get(id).is_some_and(|j| !j.state.is_terminal()));
        self.first_paced
            .retain(|(id, _)| self.pace.contains_key(id));
        self.ahead.retain(|key| self.started.contains_key(key));
        // A give-back whose task moved on (its holder gone, say) holds up no backup while its
        // answer (or its request's timeout) is on its way.
        self.giving_back.retain(|key| self.ahead.contains(key));
        for job in table.iter() {
            if job.state.is_terminal() {
                continue;
            }
            for t in job.all_tasks() {
                if t.state != TaskState::Running {
                    continue;
                }
                let Some(worker) = &t.worker else { continue };
                let key = (job.id, t.index, t.attempt);
                if self.ahead.contains(&key) {
                    let seat = view.seat(worker);
                    if seat.is_some_and(|s| s.holds_ahead(job.id, t.index, t.attempt)) {
                        // Held next, not started: its clocks start when it does.
                        self.assigned_at.insert((job.id, t.index), now);
                        if let Some(at) = self.started.get_mut(&key) {
                            *at = now;
                        }
                        continue;
                    }
                    if seat.is_some_and(|s| {
                        s.current
                            .as_ref()
                            .is_some_and(|c| c.task == t.index && c.job == job.id)
                    }) {
                        self.ahead.remove(&key);
                    }
                }
                let since = *self.assigned_at.entry((job.id, t.index)).or_insert(now);
                let mut runners = vec![(worker, since)];
                // A backup is lost, or times out, as a task does, on its own clocks (a new
                // coordinator starts them when it first sees the backup).
                if let Some(backup) = &t.backup {
                    let (_, since) = self
                        .backups
                        .entry((job.id, t.index))
                        .or_insert_with(|| (backup.clone(), now));
                    runners.push((backup, *since));
                }
                for (node, since) in runners {
                    let key = (job.id, t.index, t.attempt, node.clone());
                    match self.fate(job, t, node, since, view) {
                        Some(Fate::Lost) => releases.push(key),
                        Some(Fate::TimedOut(reason)) => timeouts.push((key, reason)),
                        None => {}
                    }
                }
            }
        }
        for ((id, index, attempt, worker), reason) in timeouts {
            if let Some(job) = table.get_mut(&id) {
                warn!(job = %id.short(), task = index, node = %worker.short(), "task {reason}; taken back");
                self.failed(job, view, index, attempt, &worker, reason, true);
            }
        }
        for (id, index, attempt, worker) in releases {
            if let Some(job) = table.get_mut(&id)
                && job.release(index, attempt, &worker, self.term).is_ok()
            {
                info!(job = %id.short(), task = index, node = %worker.short(),
                      "task requeued, or left to its other runner: its node lost it");
                if !job
                    .task(index)
                    .is_some_and(|t| t.state == TaskState::Running)
                {
                    self.assigned_at.remove(&(id, index));
                }
                self.changed = true;
            }
        }
        self.sync_backups(table);
        self.skip_uncheckable(table, view);
    }

    /// What became of `node`'s run of task `t` of `job`, handed to it at `since`: lost (the
    /// node vanished, or its heartbeats, well after the assignment, do not name the task), run
    /// past its timeout, or neither (`None`). A node still live is neither while the task's
    /// report is being taken in.
    fn fate(
        &self,
        job: &Job,
        t: &Task,
        node: &NodeId,
        since: Millis,
        view: &View<'_>,
    ) -> Option<Fate> {
        let now = view.now;
        let reporting = self.verifying.contains_key(&(job.id, t.index, t.attempt));
        let lost = view.seat(node).is_none_or(|seat| {
            now.saturating_sub(since) > LOST_ASSIGNMENT_AFTER_MS
                && seat.last_seen >= since + HEARD_AFTER_MS
                && !seat.holds(job.id, t.index, t.attempt)
                && !self.assigning.contains(node)
                && !reporting
        });
        if lost {
            Some(Fate::Lost)
        } else if now.saturating_sub(since) > self.task_timeout(job, t) && !reporting {
            Some(Fate::TimedOut(self.timed_out(
                job,
                t,
                now.saturating_sub(since),
            )))
        } else {
            None
        }
    }

    /// Hands queued tasks, oldest job first, to idle workers that can render them; then, while
    /// a job has more work left than it has workers, one task ahead to each worker rendering
    /// its only task, so that it starts the next one the moment it ends.
    /// Hands out work now, between two ticks: a job was just accepted, and idle workers start
    /// on it at once rather than at the next tick (up to 100 ms later).
    pub fn hand_out_now(&mut self, table: &mut JobTable, view: &View<'_>, out: &mut Outbox) {
        self.schedule(table, view, out);
    }

    fn schedule(&mut self, table: &mut JobTable, view: &View<'_>, out: &mut Outbox) {
        let now = view.now;
        // Tasks each worker holds, per the records; but not one it has reported done while its
        // frames are being copied: it has ended that render, and is free for the next.
        let mut holding: BTreeMap<&NodeId, Vec<(JobId, u32, u32)>> = BTreeMap::new();
        for job in table.iter() {
            for t in job.all_tasks() {
                if t.state != TaskState::Running {
                    continue;
                }
                let reporter = self.verifying.get(&(job.id, t.index, t.attempt));
                for w in t.worker.iter().chain(&t.backup) {
                    if reporter == Some(w) {
                        continue;
                    }
                    holding
                        .entry(w)
                        .or_default()
                        .push((job.id, t.index, t.attempt));
                }
            }
        }
        self.cooldown.retain(|_, until| *until > now);
        let mut free_at = self.free_at(table, &holding, now);
        let free = |s: &&Seat<'_>| {
            !self.assigning.contains(s.id) && !self.cooldown.contains_key(s.id) && !s.low_disk
        };
        // A worker still rendering (or reporting) a task, per its own word, is not idle; but a
        // word about a task the records hold done (its heartbeat predates the report), or that
        // it has reported done since, says nothing.
        let settled = |c: &TaskRef| {
            table
                .get(&c.job)
                .and_then(|j| j.task(c.task))
                .is_some_and(|t| t.attempt > c.attempt || t.state == TaskState::Done)
        };
        let ended = |s: &Seat<'_>, c: &TaskRef| {
            settled(c) || self.verifying.get(&(c.job, c.task, c.attempt)) == Some(s.id)
        };
        let mut idle: Vec<&Seat<'_>> = view
            .workers
            .iter()
            .filter(free)
            .filter(|s| {
                !holding.contains_key(s.id) && s.current.as_ref().is_none_or(|c| ended(s, c))
            })
            .collect();
        // A worker holding its one task holds nothing next yet when it renders it by its own
        // word; or when the task it named has ended since, by a word older than the task (it
        // starts a task on receipt when idle, and the one it holds next the moment the other
        // ends: a task held ahead is reckoned handed out when the one before it is reported).
        // A task its word named as held next, unstarted, has then started (a fast worker ends
        // a task between two of its words, and would otherwise be handed no next one).
        let mut ahead: Vec<&Seat<'_>> = view
            .workers
            .iter()
            .filter(free)
            .filter(|s| match holding.get(s.id).map(Vec::as_slice) {
                Some([(job, task, attempt)]) => {
                    let it =
                        |c: &TaskRef| c.job == *job && c.task == *task && c.attempt == *attempt;
                    let rendering = s.current.as_ref().is_some_and(it);
                    let taking = !rendering
                        && s.current.as_ref().is_none_or(|c| ended(s, c))
                        && self
                            .assigned_at
                            .get(&(*job, *task))
                            .is_some_and(|at| s.last_seen <= *at);
                    (rendering || taking)
                        && s.held
                            .iter()
                            .all(|h| h.frames_done > 0 || (taking && it(h)))
                }
                _ => false,
            })
            .collect();
        if idle.is_empty() && ahead.is_empty() {
            return;
        }
        // The job of highest priority first, the oldest first among equals; a paused job gets
        // nothing new.
        let mut order: Vec<(Reverse<u8>, u64, JobId)> = table
            .iter()
            .filter(|j| !j.state.is_terminal() && !j.paused)
            .map(|j| (Reverse(j.priority), j.created_ms, j.id))
            .collect();
        order.sort();
        let mut assignments = Vec::new();
        for (_, _, id) in &order {
            if let Some(job) = table.get_mut(id) {
                self.hand_out(job, &mut idle, view, &mut free_at, &mut assignments);
            }
        }
        // Workers still idle: nothing is queued for them. A task handed out ahead to a busy
        // worker, and not started, goes to one of them instead when it would end sooner there:
        // its holder is asked to give it back (it may have started it since its last word).
        if !idle.is_empty() {
            self.ask_back_ahead(table, view, &idle, out);
        }
        let first_ahead = assignments.len();
        for (_, _, id) in &order {
            let Some(job) = table.get_mut(id) else {
                continue;
            };
            let queued: u32 = job
                .all_tasks()
                .filter(|t| t.state == TaskState::Queued)
                .map(|t| t.frames.len())
                .sum();
            let left = u64::from(job.uncut()) + u64::from(queued);
            if left > 0 {
                self.hand_out(job, &mut ahead, view, &mut free_at, &mut assignments);
            }
        }
        for (k, (node, a)) in assignments.into_iter().enumerate() {
            self.assigned_at.insert((a.job, a.task), now);
            self.started.insert((a.job, a.task, a.attempt), now);
            if k >= first_ahead {
                self.ahead.insert((a.job, a.task, a.attempt));
            }
            info!(job = %a.job.short(), task = a.task, frames = %a.frames, node = %node.short(),
                  attempt = a.attempt, "task assigned");
            self.send_assignment(node, a, out);
        }
        // Workers still idle: nothing is left to hand out to them. Each may back up the task
        // expected to end last, when it would end it sooner; but not while tasks are being
        // given back for them (a task given back is better done once than backed up).
        if !self.giving_back.is_empty() {
            return;
        }
        let ahead_or_reported =
            |key: &(JobId, u32, u32)| self.ahead.contains(key) || self.verifying.contains_key(key);
        let backups = back_ups(
            table,
            view,
            &idle,
            &self.pace,
            &self.started,
            ahead_or_reported,
        );
        for (seat, id, index) in backups {
            let Some(job) = table.get_mut(&id) else {
                continue;
            };
            let Ok(attempt) = job.back_up(index, seat.clone(), self.term) else {
                continue;
            };
            let Some(task) = job.task(index) else {
                continue;
            };
            let a = assignment(self.term, job, task, attempt);
            info!(job = %id.short(), task = index, frames = %a.frames, node = %seat.short(),
                  attempt, "backup task assigned");
            self.backups.insert((id, index), (seat.clone(), now));
            self.send_assignment(seat, a, out);
        }
    }

    /// Sends `a` to `node`, and waits for its answer.
    fn send_assignment(&mut self, node: NodeId, a: Assignment, out: &mut Outbox) {
        self.changed = true;
        self.assigning.insert(node.clone());
        let (job, task, attempt) = (a.job, a.task, a.attempt);
        let ticket = out.send(node.clone(), Request::Assign(a));
        self.pending.insert(
            ticket,
            Pending::Assign {
                node,
                job,
                task,
                attempt,
            },
        );
    }

    /// Asks back tasks handed out ahead to busy workers and not started yet, as far as this
    /// coordinator knows, when one of the `idle` workers would end them sooner (by measured
    /// paces: the holder first ends its current task). A task given back goes to the queue
    /// ([`Coordinator::given_back`]); at most one is asked back per idle worker.
    fn ask_back_ahead(
        &mut self,
        table: &JobTable,
        view: &View<'_>,
        idle: &[&Seat<'_>],
        out: &mut Outbox,
    ) {
        let now = view.now;
        let mut asked = self.giving_back.len();
        let ahead: Vec<(JobId, u32, u32)> = self.ahead.iter().copied().collect();
        for (id, index, attempt) in ahead {
            if asked >= idle.len() {
                break;
            }
            if self.giving_back.contains(&(id, index, attempt)) {
                continue;
            }
            let Some(job) = table.get(&id) else { continue };
            let Some(task) = job.task(index) else {
                continue;
            };
            let Some(holder) = task.worker.clone() else {
                continue;
            };
            let started = view.seat(&holder).is_none_or(|s| {
                s.current
                    .as_ref()
                    .is_some_and(|c| c.job == id && c.task == index)
            });
            if task.state != TaskState::Running || task.attempt != attempt || started {
                continue;
            }
            let Some(paces) = self.pace.get(&id) else {
                continue;
            };
            let frames = u64::from(task.frames.len());
            // A holder not measured yet in a job counts at the job's median pace.
            let pace_in = |job: &JobId| {
                let paces = self.pace.get(job)?;
                paces.get(&holder).copied().or_else(|| median(paces))
            };
            let Some(mut slow) = pace_in(&id) else {
                continue;
            };
            // When the holder's current task should end, by its pace in that task's job; a
            // task that has run longer says the holder renders at least that slowly.
            let mut busy_until = now;
            for ((j, i, _), at) in self.started.iter().filter(|(k, _)| !self.ahead.contains(k)) {
                let Some(t) = table.get(j).and_then(|job| job.task(*i)) else {
                    continue;
                };
                if t.worker.as_ref() != Some(&holder) || t.state != TaskState::Running {
                    continue;
                }
                let its = u64::from(t.frames.len()).max(1);
                if let Some(pace) = pace_in(j) {
                    busy_until = busy_until.max(at + its * pace);
                }
                slow = slow.max(now.saturating_sub(*at) / its);
            }
            let there = busy_until.max(now) + frames * slow;
            let sooner = idle.iter().any(|s| {
                s.can_render(&job.spec)
                    && !job.blocklisted(s.id)
                    && paces.get(s.id).is_some_and(|p| now + frames * p < there)
            });
            if !sooner {
                continue;
            }
            debug!(job = %id.short(), task = index, node = %holder.short(),
                   "asking back a task held ahead for an idle node");
            let ticket = out.send(
                holder.clone(),
                Request::GiveBack {
                    job: id,
                    task: index,
                    attempt,
                },
            );
            self.pending.insert(
                ticket,
                Pending::GiveBack {
                    node: holder,
                    job: id,
                    task: index,
                    attempt,
                },
            );
            self.giving_back.insert((id, index, attempt));
            asked += 1;
        }
    }

    /// `node` answered a [`Request::GiveBack`] of task `task` of `job` in `attempt`: given back
    /// (`Accepted`), the task goes back to the queue, for the idle node that would end it
    /// sooner; otherwise it has started (or its holder could not be asked), and it stays.
    fn given_back(
        &mut self,
        table: &mut JobTable,
        node: &NodeId,
        (job, task, attempt): (JobId, u32, u32),
        answer: &Result<Response, String>,
    ) {
        let key = (job, task, attempt);
        self.giving_back.remove(&key);
        if !matches!(answer, Ok(Response::Accepted)) {
            debug!(job = %job.short(), task, node = %node.short(),
                   "the task held ahead stays with its holder: {answer:?}");
            self.ahead.remove(&key);
            return;
        }
        if let Some(j) = table.get_mut(&job)
            && j.release(task, attempt, node, self.term).is_ok()
        {
            info!(job = %job.short(), task, node = %node.short(),
                  "task held ahead given back for an idle node; requeued");
            self.ahead.remove(&key);
            self.started.remove(&key);
            self.assigned_at.remove(&(job, task));
            self.sync_backups(table);
            self.changed = true;
        }
    }

    /// When each worker holding tasks should be free to start another, by its measured pace
    /// in each task's job: once the tasks it renders end (from when each was handed out or
    /// started) and the tasks it holds next are rendered after them. A task whose worker's pace
    /// is unknown (its first, which measures it) counts for nothing; a worker left alone after
    /// refusing is free when its cooldown ends.
    fn free_at(
        &self,
        table: &JobTable,
        holding: &BTreeMap<&NodeId, Vec<(JobId, u32, u32)>>,
        now: Millis,
    ) -> BTreeMap<NodeId, Millis> {
        let mut free: BTreeMap<NodeId, Millis> = self
            .cooldown
            .iter()
            .map(|(id, until)| (id.clone(), (*until).max(now)))
            .collect();
        for (node, tasks) in holding {
            let (mut ends, mut then) = (now, 0);
            for &(job, index, attempt) in tasks {
                let key = (job, index, attempt);
                let Some(pace) = self.pace.get(&job).and_then(|p| p.get(*node)) else {
                    continue;
                };
                let Some(task) = table.get(&job).and_then(|j| j.task(index)) else {
                    continue;
                };
                let work = u64::from(task.frames.len()) * pace;
                if self.ahead.contains(&key) {
                    then += work;
                    continue;
                }
                let since = match self.backups.get(&(job, index)) {
                    Some((backup, at)) if backup == *node => Some(*at),
                    _ => self.started.get(&key).copied(),
                };
                ends = ends.max(since.unwrap_or(now) + work);
            }
            let at = free.entry((*node).clone()).or_insert(now);
            *at = (*at).max(ends + then);
        }
        free
    }

    /// The frames of `job` not rendered nor handed out yet (queued, or not cut yet) shared
    /// among the live workers that may render it, in whole frames, so that each, starting when
    /// it is free (`free_at`; now when absent) at its measured pace in the job (the median of
    /// the job's paces when unmeasured), ends its share at about the same time: the earliest
    /// time by which they can end them all. A worker that would end even one frame after that
    /// time gets none. `None` while no pace in the job is measured.
    fn shares(
        &self,
        job: &Job,
        view: &View<'_>,
        free_at: &BTreeMap<NodeId, Millis>,
    ) -> Option<BTreeMap<NodeId, u64>> {
        let all = self.pace.get(&job.id)?;
        // A pace from a node's first task alone includes its preparation. When the time by
        // which the job can end is reckoned, the median of the others' paces stands for it
        // (once there are others: they are the faster nodes, so that time comes early); its own
        // share is then reckoned at its own, slower, pace (one frame at least when it would
        // end one by then at the others' pace). Both err towards smaller tasks.
        let first = |id: &NodeId| self.first_paced.contains(&(job.id, id.clone()));
        let mut sorted: Vec<Millis> = all
            .iter()
            .filter(|(id, _)| !first(id))
            .map(|(_, pace)| *pace)
            .collect();
        if sorted.is_empty() {
            sorted = all.values().copied().collect();
        }
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied()?;
        let queued: u64 = job
            .all_tasks()
            .filter(|t| t.state == TaskState::Queued)
            .map(|t| u64::from(t.frames.len()))
            .sum();
        let left = u64::from(job.uncut()) + queued;
        let blocked = job.blocklist();
        // Each member: when it is free, its pace towards the end time, its pace for its share.
        let members: Vec<(&NodeId, Millis, Millis, Millis)> = view
            .workers
            .iter()
            .filter(|s| s.can_render(&job.spec) && !s.low_disk && !blocked.contains(s.id))
            .map(|s| {
                let start = free_at.get(s.id).copied().unwrap_or(view.now).max(view.now);
                let own = all.get(s.id).copied().unwrap_or(median).max(1);
                let pace = if first(s.id) { median.max(1) } else { own };
                (s.id, start, pace, own)
            })
            .collect();
        let ended_by = |t: Millis| -> u64 {
            members
                .iter()
                .map(|(_, start, pace, _)| t.saturating_sub(*start) / pace)
                .sum()
        };
        // The earliest time by which the members end `left` frames: at most when the best of
        // them would end them all alone.
        let mut low = view.now;
        let mut high = members
            .iter()
            .map(|(_, start, pace, _)| start.saturating_add(left.saturating_mul(*pace)))
            .min()?;
        while low < high {
            let mid = low + (high - low) / 2;
            if ended_by(mid) >= left {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Some(
            members
                .iter()
                .map(|(id, start, pace, own)| {
                    // At its own pace it may end nothing by then, yet it would one frame at
                    // least at the others': it gets one (so the frames left always go to
                    // somebody).
                    let free = low.saturating_sub(*start);
                    ((*id).clone(), (free / own).max((free / pace).min(1)))
                })
                .collect(),
        )
    }

    /// Gives each of `seats` that can render `job` its next task (a queued one, or one cut
    /// for it: [`Coordinator::task_size`]), and takes it out of `seats`; each seat's
    /// `free_at` moves on by the task's work.
    fn hand_out(
        &self,
        job: &mut Job,
        seats: &mut Vec<&Seat<'_>>,
        view: &View<'_>,
        free_at: &mut BTreeMap<NodeId, Millis>,
        assignments: &mut Vec<(NodeId, Assignment)>,
    ) {
        let mut shares = None;
        let mut i = 0;
        while i < seats.len() {
            let seat = seats[i];
            if !seat.can_render(&job.spec) {
                i += 1;
                continue;
            }
            // A queued task (a tile, a planned chunk, one requeued, a check) goes to a worker
            // whose share of what is left is something: not to a slow one that would end it
            // after the others had ended everything. Unless no worker with a share may take
            // it (a check, never for the node it checks; a task failed on the fast ones).
            let queued = job.next_task_for(seat.id).filter(|index| {
                let shares = shares.get_or_insert_with(|| self.shares(job, view, free_at));
                self.task_size(job, seat.id, shares.as_ref()).is_some()
                    || !another_takes(job, *index, seat.id, view, shares.as_ref())
            });
            let next = queued.or_else(|| {
                let shares = shares.get_or_insert_with(|| self.shares(job, view, free_at));
                let size = self.task_size(job, seat.id, shares.as_ref())?;
                (!job.blocklisted(seat.id))
                    .then(|| job.carve(size, self.term))
                    .flatten()
            });
            let Some(index) = next else {
                i += 1;
                continue;
            };
            let Ok(attempt) = job.assign(index, seat.id.clone(), self.term) else {
                i += 1;
                continue;
            };
            let Some(task) = job.task(index) else {
                i += 1;
                continue;
            };
            if let Some(pace) = self.pace.get(&job.id).and_then(|p| p.get(seat.id)) {
                let at = free_at.entry(seat.id.clone()).or_insert(view.now);
                *at = (*at).max(view.now) + u64::from(task.frames.len()) * pace;
                shares = None;
            }
            assignments.push((seat.id.clone(), assignment(self.term, job, task, attempt)));
            seats.remove(i);
        }
    }

    /// How many frames the next task cut from `job` for `node` takes (guided self-scheduling,
    /// by measured pace): a single frame while the node's pace in the job is unknown (it
    /// measures it); otherwise its share of the frames left ([`Coordinator::shares`]) divided
    /// by [`GUIDED_DIVISOR`], and at most [`TARGET_TASK_MS`] of work at its pace. `None` when
    /// its share is nothing: the others end the job sooner without it.
    fn task_size(
        &self,
        job: &Job,
        node: &NodeId,
        shares: Option<&BTreeMap<NodeId, u64>>,
    ) -> Option<u32> {
        let Some(&mine) = self.pace.get(&job.id).and_then(|p| p.get(node)) else {
            return Some(1);
        };
        let share = shares.and_then(|s| s.get(node)).copied().unwrap_or(1);
        if share == 0 {
            return None;
        }
        let guided = share.div_ceil(GUIDED_DIVISOR);
        let target = TARGET_TASK_MS / mine.max(1);
        Some(guided.min(target).clamp(1, u64::from(u32::MAX)) as u32)
    }

    /// Stitches every tiled frame whose tiles are all rendered and copies it to a second node.
    fn stitch_ready(&mut self, table: &JobTable, view: &View<'_>, out: &mut Outbox) {
        let now = view.now;
        self.stitch_after.retain(|_, after| *after > now);
        for job in table.iter() {
            for frame in job.frames_to_stitch() {
                let key = (job.id, frame);
                if self.stitching.contains(&key) || self.stitch_after.contains_key(&key) {
                    continue;
                }
                let mut hints: Vec<NodeId> = Vec::new();
                let mut tiles = Vec::new();
                for task in job.tiles_of(frame) {
                    if let (Some(tile), Some(out)) = (task.tile, task.outputs.first()) {
                        tiles.push((tile, out.blob));
                    }
                    if let Some(w) = &task.worker
                        && !hints.contains(w)
                    {
                        hints.push(w.clone());
                    }
                }
                hints.push(job.origin.clone());
                let ticket = out.ticket();
                let copy_to = second_copy(&self.me, view, Some(&job.origin));
                self.stitching.insert(key);
                self.pending.insert(
                    ticket,
                    Pending::Stitch {
                        job: job.id,
                        frame,
                        tiles: tiles.iter().map(|(_, blob)| *blob).collect(),
                        lone: copy_to.is_none(),
                    },
                );
                out.push(Action::Stitch {
                    job: job.id,
                    frame,
                    format: job.spec.format,
                    tiles,
                    hints,
                    copy_to,
                    ticket,
                });
            }
        }
    }
}

/// The assignment of `task` of `job` under `attempt`, by the coordinator of `term`, as the
/// record now reads.
/// The median of `paces` (the higher of the two middle ones); `None` when there are none.
/// The median of `values` (the upper one of an even count).
fn median_of(mut values: Vec<Millis>) -> Option<Millis> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// Whether a worker of `view` other than `me`, with a share of what is left of `job`
/// ([`Coordinator::shares`]: only workers that may render the job, not low on disk nor
/// blocklisted, have one), may take its queued task `index`.
fn another_takes(
    job: &Job,
    index: u32,
    me: &NodeId,
    view: &View<'_>,
    shares: Option<&BTreeMap<NodeId, u64>>,
) -> bool {
    let Some(shares) = shares else {
        return false;
    };
    view.workers
        .iter()
        .any(|s| s.id != me && shares.get(s.id).is_some_and(|n| *n > 0) && job.open_to(index, s.id))
}

fn median(paces: &BTreeMap<NodeId, Millis>) -> Option<Millis> {
    median_of(paces.values().copied().collect())
}

fn assignment(term: Term, job: &Job, task: &Task, attempt: u32) -> Assignment {
    Assignment {
        term,
        job: job.id,
        task: task.index,
        attempt,
        version: job.version,
        frames: task.frames,
        tile: task.tile,
        spec: job.spec.clone(),
        origin: job.origin.clone(),
    }
}

/// What became of a run of a task ([`Coordinator::fate`]).
enum Fate {
    /// Its node vanished, or no longer names it.
    Lost,
    /// It ran past its timeout; why, in words.
    TimedOut(String),
}

/// The most a backup copy may take of the time its task's worker has left, as a fraction
/// (see [`back_ups`]).
const BACKUP_GAIN: (u64, u64) = (3, 4);

/// Backup tasks at the end of jobs (MapReduce's): for each of the `idle` workers, in order,
/// the task expected to end last among those it could end sooner than their own worker
/// would, by measured paces. Only tasks (not checks) of jobs with nothing left to hand out,
/// started (not held ahead), not being reported, without a backup yet; one backup per task.
/// An overdue task is expected to end after its frames not reported yet, at its worker's
/// pace, from now. A copy is worth its power only when it would take at most
/// [`BACKUP_GAIN`] of the time left to the task's worker: nodes of one speed, whose paces
/// differ by noise, never back each other up. Returns `(worker, job, task)`.
fn back_ups(
    table: &JobTable,
    view: &View<'_>,
    idle: &[&Seat<'_>],
    pace: &BTreeMap<JobId, BTreeMap<NodeId, Millis>>,
    started: &BTreeMap<(JobId, u32, u32), Millis>,
    skip: impl Fn(&(JobId, u32, u32)) -> bool,
) -> Vec<(NodeId, JobId, u32)> {
    let now = view.now;
    let mut chosen: Vec<(NodeId, JobId, u32)> = Vec::new();
    for seat in idle {
        let mut best: Option<(Millis, JobId, u32)> = None;
        for job in table.iter() {
            let tail = !job.state.is_terminal()
                && !job.paused
                && job.uncut() == 0
                && job.tasks.iter().all(|t| t.state != TaskState::Queued);
            if !tail || !seat.can_render(&job.spec) || job.blocklisted(seat.id) {
                continue;
            }
            let Some(paces) = pace.get(&job.id) else {
                continue;
            };
            let Some(&mine) = paces.get(seat.id) else {
                continue;
            };
            for t in &job.tasks {
                let key = (job.id, t.index, t.attempt);
                let Some(worker) = &t.worker else { continue };
                if t.state != TaskState::Running
                    || t.backup.is_some()
                    || worker == seat.id
                    || skip(&key)
                    || chosen.iter().any(|(_, j, i)| *j == job.id && *i == t.index)
                {
                    continue;
                }
                let (Some(&theirs), Some(&at)) = (paces.get(worker), started.get(&key)) else {
                    continue;
                };
                let frames = u64::from(t.frames.len().max(1));
                let mut end = at.saturating_add(frames.saturating_mul(theirs));
                if end <= now {
                    let done = view
                        .seat(worker)
                        .and_then(|s| s.current.as_ref())
                        .filter(|c| c.job == job.id && c.task == t.index)
                        .map_or(0, |c| u64::from(c.frames_done));
                    end = now.saturating_add(frames.saturating_sub(done).max(1) * theirs);
                }
                let (num, den) = BACKUP_GAIN;
                let copy = frames.saturating_mul(mine);
                let left = end.saturating_sub(now);
                let sooner = copy.saturating_mul(den) <= left.saturating_mul(num);
                if sooner && best.is_none_or(|(b, _, _)| end > b) {
                    best = Some((end, job.id, t.index));
                }
            }
        }
        if let Some((_, id, index)) = best {
            chosen.push((seat.id.clone(), id, index));
        }
    }
    chosen
}

/// Fails `job` with `message` when every live node that could render it is blocklisted:
/// nobody is left to try.
fn abort_if_nobody_left(
    job: &mut Job,
    view: &View<'_>,
    term: Term,
    message: impl FnOnce() -> String,
) {
    let mut matching = view
        .workers
        .iter()
        .filter(|s| s.can_render(&job.spec))
        .peekable();
    if !job.state.is_terminal() && matching.peek().is_some() && {
        let blocked = job.blocklist();
        matching.all(|s| blocked.contains(s.id))
    } {
        job.abort(message(), term);
    }
    if job.state == JobState::Failed {
        warn!(job = %job.id.short(), "job failed: {}", job.message.clone().unwrap_or_default());
    }
}

/// Where a second copy of something `me` made should go: the job's origin when it is live and
/// not `me`, else the first live peer; `None` in a mesh of one.
fn second_copy(me: &NodeId, view: &View<'_>, origin: Option<&NodeId>) -> Option<NodeId> {
    let roomy = |id: &&NodeId| !view.full.contains(id);
    match origin {
        Some(o) if o != me && view.is_peer(o) && roomy(&o) => Some(o.clone()),
        // A node that renders first (a live worker holds what it is sent); any peer else.
        _ => view
            .workers
            .iter()
            .map(|s| s.id)
            .find(|id| *id != me && view.is_peer(id) && roomy(id))
            .or_else(|| view.peers.iter().copied().find(roomy))
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{FIRST_CHECK, FrameRange, TileGrid, Tiling, Verdict};

    use super::*;

    const BLENDER: &str = "Blender 3.4.1";
    const CYCLES: &[Engine] = &[Engine::Cycles];

    fn n(name: &str) -> NodeId {
        NodeId::from_bytes(name.as_bytes()).expect("a node id")
    }

    fn spec(frames: FrameRange) -> JobSpec {
        JobSpec {
            samples: Some(4),
            chunk: Some(1),
            blender_version: Some(BLENDER.into()),
            ..JobSpec::new("shot.blend", BlobHash::of(b"shot"), 4, frames)
        }
    }

    fn seat<'a>(id: &'a NodeId, blender: &'a str, last_seen: Millis) -> Seat<'a> {
        Seat {
            id,
            blender: Some(blender),
            engines: CYCLES,
            current: None,
            held: Vec::new(),
            last_seen,
            low_disk: false,
        }
    }

    /// Workers `a` and `b`, idle, at 0.
    fn both_at_0<'a>(a: &'a NodeId, b: &'a NodeId) -> View<'a> {
        view(
            0,
            vec![seat(a, BLENDER, 0), seat(b, BLENDER, 0)],
            vec![a, b],
        )
    }

    /// The coordinator `c` in term 1 and its node's outbox, with an empty table.
    fn fixture() -> (Coordinator, JobTable, Outbox) {
        let table = JobTable::default();
        let c = Coordinator::new(n("c"), Term(1), Policy::default(), &table, 0);
        (c, table, Outbox::new(n("c")))
    }

    fn view<'a>(now: Millis, workers: Vec<Seat<'a>>, peers: Vec<&'a NodeId>) -> View<'a> {
        View {
            now,
            wall_ms: 1_000,
            workers,
            peers,
            full: Vec::new(),
        }
    }

    /// Submits `spec` from the view's first peer; returns the job's id once accepted.
    fn submit(c: &mut Coordinator, table: &mut JobTable, view: &View<'_>, spec: JobSpec) -> JobId {
        let id = JobId([7; 16]);
        let answer = ask(c, table, view, id, spec, view.peers[0]);
        assert!(matches!(answer, Response::Job(_)), "{answer:?}");
        id
    }

    /// Submits `spec` as job `id` from `from`; returns the answer given at once.
    fn ask(
        c: &mut Coordinator,
        table: &mut JobTable,
        view: &View<'_>,
        id: JobId,
        spec: JobSpec,
        from: &NodeId,
    ) -> Response {
        let mut out = Outbox::new(n("c"));
        c.submit(
            table,
            view,
            id,
            spec,
            from.clone(),
            ReplyTo::Outside(0),
            &mut out,
        );
        match &replies(&mut out)[..] {
            [(0, answer)] => answer.clone(),
            other => panic!("one answer expected, got {other:?}"),
        }
    }

    /// The assignments in the outbox, as (worker, task, attempt), and the outbox emptied.
    fn assignments(out: &mut Outbox) -> Vec<(NodeId, u32, u32)> {
        let mut found = Vec::new();
        for action in out.actions.drain(..) {
            if let Action::Send {
                to,
                request: Request::Assign(a),
                ..
            } = action
            {
                found.push((to, a.task, a.attempt));
            }
        }
        found
    }

    /// The tickets of the sends and fetches in the outbox, in order, and the outbox emptied.
    fn tickets(out: &mut Outbox) -> Vec<Ticket> {
        out.actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Send { ticket, .. }
                | Action::Fetch { ticket, .. }
                | Action::Stitch { ticket, .. } => Some(ticket),
                _ => None,
            })
            .collect()
    }

    /// The answers given so far to outside requests, and the outbox emptied of them.
    fn replies(out: &mut Outbox) -> Vec<(u64, Response)> {
        let mut found = Vec::new();
        out.actions.retain(|a| match a {
            Action::Reply { to, response } => {
                found.push((*to, response.clone()));
                false
            }
            _ => true,
        });
        found
    }

    fn done(job: JobId, task: u32, attempt: u32, frame: u32) -> Report {
        Report {
            job,
            task,
            attempt,
            outcome: Outcome::Done(vec![Output {
                frame,
                blob: BlobHash::of(format!("{task}/{attempt}").as_bytes()),
                size: 3,
                thumb: Some(BlobHash::of(
                    format!("{task}/{attempt} thumbnail").as_bytes(),
                )),
            }]),
        }
    }

    #[test]
    fn a_submitted_job_is_planned_for_the_matching_workers_and_its_record_comes_back() {
        let (mut c, mut table, _) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, "Blender 4.2.0", 0)],
            vec![&a, &b],
        );
        let mut s = spec(FrameRange::new(1, 16).unwrap());
        s.chunk = None;
        let id = JobId([1; 16]);
        let Response::Job(job) = ask(&mut c, &mut table, &v, id, s.clone(), &a) else {
            panic!("no record came back");
        };
        // No chunk size given: the frames are cut into tasks as the job goes.
        assert!(job.tasks.is_empty());
        assert_eq!(job.uncut(), 16);
        assert_eq!((job.origin.clone(), job.created_ms), (a.clone(), 1_000));
        assert_eq!(table.get(&id), Some(&*job));
        assert!(c.take_changed());
        // Submitting again (a retry) changes nothing and answers alike.
        let again = ask(&mut c, &mut table, &v, id, s.clone(), &a);
        assert_eq!(again, Response::Job(job));
        assert!(!c.take_changed());
        // A stranger must join first; a bad spec is refused by name.
        let stranger = ask(&mut c, &mut table, &v, JobId([2; 16]), s.clone(), &n("z"));
        assert!(matches!(stranger, Response::Busy(m) if m.contains("unknown peer")));
        let mut bad = s;
        bad.samples = Some(0);
        let refused = ask(&mut c, &mut table, &v, JobId([3; 16]), bad, &a);
        assert!(
            matches!(refused, Response::Rejected(m) if m.contains("samples")),
            "bad samples"
        );
    }

    #[test]
    fn idle_workers_get_tasks_only_when_their_blender_and_engines_match() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b, e) = (n("a"), n("b"), n("e"));
        let mut no_engine = seat(&e, BLENDER, 0);
        no_engine.engines = &[];
        let v = view(
            0,
            vec![
                seat(&a, BLENDER, 0),
                seat(&b, "Blender 4.2.0", 0),
                no_engine,
            ],
            vec![&a, &b, &e],
        );
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::new(1, 3).unwrap()));
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assignments(&mut out), [(a.clone(), 0, 1)]);
        // A busy worker gets nothing more; a matching one that is idle does.
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assignments(&mut out), []);
        let mut any = spec(FrameRange::new(1, 3).unwrap());
        any.blender_version = None;
        let other = JobId([8; 16]);
        ask(&mut c, &mut table, &v, other, any, &a);
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assignments(&mut out), [(b.clone(), 0, 1)]);
        assert_eq!(
            table.get(&id).map(|j| j.tasks[0].state),
            Some(TaskState::Running)
        );
    }

    #[test]
    fn a_report_counts_once_its_frames_are_held_here_and_only_once() {
        let (mut c, mut table, mut out) = fixture();
        let a = n("a");
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        c.tick(&mut table, &v, &mut out);
        let [assign] = tickets(&mut out)[..] else {
            panic!("one assignment expected");
        };
        assert!(c.answered(&mut table, assign, Ok(Response::Accepted), 10, &mut out));

        c.report(
            &mut table,
            &v,
            a.clone(),
            done(id, 0, 1, 1),
            Some(ReplyTo::Outside(1)),
            &mut out,
        );
        // Not done yet: the frames are copied here first, with their thumbnails.
        assert_eq!(
            table.get(&id).map(|j| j.tasks[0].state),
            Some(TaskState::Running)
        );
        let Outcome::Done(outputs) = done(id, 0, 1, 1).outcome else {
            unreachable!("a done report");
        };
        let both: Vec<BlobHash> = outputs[0].blobs().collect();
        assert_eq!(both.len(), 2);
        assert!(
            out.actions
                .iter()
                .any(|a| matches!(a, Action::Fetch { blobs, .. } if *blobs == both)),
            "{:?}",
            out.actions
        );
        let [fetch] = tickets(&mut out)[..] else {
            panic!("one fetch expected");
        };
        // The same report again while copying: the worker is told to wait.
        c.report(
            &mut table,
            &v,
            a.clone(),
            done(id, 0, 1, 1),
            Some(ReplyTo::Outside(2)),
            &mut out,
        );
        assert!(matches!(&replies(&mut out)[..], [(2, Response::Busy(_))]));
        assert!(c.fetched(&mut table, fetch, Ok(()), 10, &mut out));
        assert_eq!(replies(&mut out), [(1, Response::Accepted)]);
        let job = table.get(&id).unwrap();
        assert_eq!((job.state, job.frames_done()), (JobState::Done, 1));
        // Once more after it counted: refused, and nothing counts twice.
        c.report(
            &mut table,
            &v,
            a.clone(),
            done(id, 0, 1, 1),
            Some(ReplyTo::Outside(3)),
            &mut out,
        );
        assert!(matches!(
            &replies(&mut out)[..],
            [(3, Response::Rejected(_))]
        ));
        assert_eq!(table.get(&id).unwrap().frames_done(), 1);
    }

    /// Runs task `task` of `id` on `w` through the coordinator: assigned on the next tick,
    /// accepted, reported done with frame `frame`, and its frames fetched here.
    fn run_on(
        c: &mut Coordinator,
        table: &mut JobTable,
        v: &View<'_>,
        out: &mut Outbox,
        w: &NodeId,
        (id, task, frame): (JobId, u32, u32),
    ) {
        c.tick(table, v, out);
        let given: Vec<Ticket> = out
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    to,
                    request: Request::Assign(a),
                    ticket,
                } if to == w && a.task == task => Some(*ticket),
                _ => None,
            })
            .collect();
        let [assign] = given[..] else {
            panic!("task {task} not given to {w}: {:?}", out.actions);
        };
        out.actions.clear();
        assert!(c.answered(table, assign, Ok(Response::Accepted), v.now, out));
        c.report(table, v, w.clone(), done(id, task, 1, frame), None, out);
        let [fetch] = tickets(out)[..] else {
            panic!("one fetch expected");
        };
        assert!(c.fetched(table, fetch, Ok(()), v.now, out));
    }

    /// The comparisons in the outbox, as (checked, check, ticket), and the outbox emptied.
    fn compares(out: &mut Outbox) -> Vec<(BlobHash, BlobHash, Ticket)> {
        out.actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Compare {
                    checked,
                    check,
                    ticket,
                    ..
                } => Some((checked, check, ticket)),
                _ => None,
            })
            .collect()
    }

    /// Issue 12: a node rendering wrong pixels was believed. A worker's first task gets a
    /// check on another node; when the pixels differ, a third node decides, and the node it
    /// disagrees with (here the checker) is suspect and gets no more of the job.
    #[test]
    fn a_render_is_checked_on_another_node_and_a_tie_break_finds_who_is_wrong() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b, x) = (n("a"), n("b"), n("x"));
        let v = view(
            0,
            vec![
                seat(&a, BLENDER, 0),
                seat(&b, BLENDER, 0),
                seat(&x, BLENDER, 0),
            ],
            vec![&a, &b, &x],
        );
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        run_on(&mut c, &mut table, &v, &mut out, &a, (id, 0, 1));
        let job = table.get(&id).unwrap();
        assert_eq!(job.state, JobState::Running, "waits for its check");
        assert_eq!(job.checks.len(), 1);
        // Another node renders the check; its pixels differ.
        run_on(&mut c, &mut table, &v, &mut out, &b, (id, FIRST_CHECK, 1));
        c.tick(&mut table, &v, &mut out);
        let [(checked, check, ticket)] = compares(&mut out)[..] else {
            panic!("one comparison expected");
        };
        assert_eq!(
            (checked, check),
            (
                BlobHash::of(b"0/1"),
                BlobHash::of(format!("{FIRST_CHECK}/1").as_bytes())
            )
        );
        assert!(c.compared(&mut table, ticket, Err("unreachable".into()), 0));
        c.tick(&mut table, &v, &mut out);
        assert_eq!(compares(&mut out), [], "compared again only after a while");
        let later = view(STITCH_RETRY_MS + 1, v.workers.clone(), v.peers.clone());
        c.tick(&mut table, &later, &mut out);
        let [(_, _, ticket)] = compares(&mut out)[..] else {
            panic!("compared again");
        };
        assert!(c.compared(&mut table, ticket, Ok(false), 0));
        // The tie-break goes to the third node, and agrees with the first render.
        run_on(
            &mut c,
            &mut table,
            &later,
            &mut out,
            &x,
            (id, FIRST_CHECK + 1, 1),
        );
        c.tick(&mut table, &later, &mut out);
        let [(_, _, ticket)] = compares(&mut out)[..] else {
            panic!("the tie-break compared");
        };
        assert!(c.compared(&mut table, ticket, Ok(true), 0));
        let job = table.get(&id).unwrap();
        assert_eq!(job.suspects, std::slice::from_ref(&b));
        assert_eq!(job.state, JobState::Done);
        assert_eq!(
            job.tasks[0].worker,
            Some(a.clone()),
            "the first render stands"
        );
    }

    /// A check nobody else can render (its only other node left) is skipped after a while, and
    /// in a mesh of one nothing is checked at all.
    #[test]
    fn a_check_nobody_else_can_render_is_skipped_after_a_while() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let both = both_at_0(&a, &b);
        let id = submit(&mut c, &mut table, &both, spec(FrameRange::single(1)));
        run_on(&mut c, &mut table, &both, &mut out, &a, (id, 0, 1));
        assert_eq!(table.get(&id).unwrap().checks.len(), 1);
        let alone = |now| view(now, vec![seat(&a, BLENDER, now)], vec![&a]);
        c.tick(&mut table, &alone(100), &mut out);
        c.tick(&mut table, &alone(100 + UNCHECKABLE_AFTER_MS - 1), &mut out);
        assert_eq!(table.get(&id).unwrap().state, JobState::Running);
        c.tick(&mut table, &alone(100 + UNCHECKABLE_AFTER_MS), &mut out);
        let job = table.get(&id).unwrap();
        assert_eq!(job.checks[0].verdict, Some(Verdict::Skipped));
        assert_eq!(job.state, JobState::Done);

        let other = JobId([9; 16]);
        let v = alone(20_000);
        ask(
            &mut c,
            &mut table,
            &v,
            other,
            spec(FrameRange::single(1)),
            &a,
        );
        run_on(&mut c, &mut table, &v, &mut out, &a, (other, 0, 1));
        let job = table.get(&other).unwrap();
        assert_eq!((job.state, job.checks.len()), (JobState::Done, 0));
    }

    /// The jobs of the assignments in the outbox, in order, and the outbox emptied.
    fn assigned_jobs(out: &mut Outbox) -> Vec<JobId> {
        out.actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Send {
                    request: Request::Assign(a),
                    ..
                } => Some(a.job),
                _ => None,
            })
            .collect()
    }

    /// Issue 14: a job's submitter pauses, resumes and reprioritises it; nobody else may, a
    /// priority out of range is refused, and so is steering a job that has ended.
    #[test]
    fn only_the_node_a_job_was_submitted_on_steers_it_while_it_runs() {
        let (mut c, mut table, _) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a, &b]);
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        let refused = c.steer(&mut table, id, Steer::Pause, &b);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("only that node can steer it (pause)")),
            "{refused:?}"
        );
        assert!(!table.get(&id).unwrap().paused);
        let version = table.get(&id).unwrap().version;
        assert_eq!(
            c.steer(&mut table, id, Steer::Pause, &a),
            Response::Accepted
        );
        let job = table.get(&id).unwrap();
        assert!(
            job.paused && job.version > version,
            "written as a new version"
        );
        assert_eq!(
            c.steer(&mut table, id, Steer::Priority(90), &a),
            Response::Accepted
        );
        assert_eq!(table.get(&id).unwrap().priority, 90);
        let refused = c.steer(&mut table, id, Steer::Priority(101), &a);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("priority 101 is out of range")),
            "{refused:?}"
        );
        assert_eq!(table.get(&id).unwrap().priority, 90);
        assert_eq!(c.cancel(&mut table, id, &a), Response::Accepted);
        let refused = c.steer(&mut table, id, Steer::Resume, &a);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("has ended")),
            "{refused:?}"
        );
        let unknown = c.steer(&mut table, JobId([1; 16]), Steer::Resume, &a);
        assert!(matches!(unknown, Response::Rejected(m) if m.contains("no job")));
    }

    /// Issue 14: the submitter of a done job has a frame of it rendered again: its task goes
    /// back to the queue, is handed out under a new attempt, and its report ends the job
    /// again. Nobody else may ask it.
    #[test]
    fn a_frame_of_a_done_job_is_rendered_again_on_its_submitters_word() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let (a, b) = (n("a"), n("b"));
        let at = |now| view(now, vec![seat(&a, BLENDER, 0)], vec![&a, &b]);
        let id = submit(&mut c, &mut table, &at(0), spec(FrameRange::single(1)));
        let first = hand_out_and_accept(&mut c, &mut table, &at(0), &mut out);
        assert_eq!(first, [(a.clone(), 0, "1".into())]);
        report_done(&mut c, &mut table, &at(1_000), &mut out, &a, (id, 0, 1));
        assert_eq!(table.get(&id).unwrap().state, JobState::Done);

        let refused = c.steer(&mut table, id, Steer::Rerender(1), &b);
        assert!(
            matches!(&refused, Response::Rejected(m)
                if m.contains("only that node can steer it (re-render frame 1)")),
            "{refused:?}"
        );
        assert_eq!(table.get(&id).unwrap().state, JobState::Done);
        assert_eq!(
            c.steer(&mut table, id, Steer::Rerender(1), &a),
            Response::Accepted
        );
        assert_eq!(table.get(&id).unwrap().state, JobState::Running);
        let again = hand_out_and_accept(&mut c, &mut table, &at(1_000), &mut out);
        assert_eq!(again, [(a.clone(), 0, "1".into())]);
        assert_eq!(table.get(&id).unwrap().tasks[0].attempt, 2);
        report_done(&mut c, &mut table, &at(2_000), &mut out, &a, (id, 0, 2));
        assert_eq!(table.get(&id).unwrap().state, JobState::Done);
    }

    /// Issue 14: a paused job gets no new assignments (the others go on); resumed, it does.
    #[test]
    fn a_paused_job_is_handed_out_only_once_resumed() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let (a, b) = (n("a"), n("b"));
        let v = both_at_0(&a, &b);
        let paused = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        assert_eq!(
            c.steer(&mut table, paused, Steer::Pause, &a),
            Response::Accepted
        );
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assigned_jobs(&mut out), [], "paused");
        let other = JobId([9; 16]);
        ask(
            &mut c,
            &mut table,
            &v,
            other,
            spec(FrameRange::single(1)),
            &a,
        );
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assigned_jobs(&mut out), [other], "the other job goes on");
        assert_eq!(
            c.steer(&mut table, paused, Steer::Resume, &a),
            Response::Accepted
        );
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assigned_jobs(&mut out), [paused], "resumed");
    }

    /// Issue 14: the tasks of the job of highest priority go out first; among equals, the
    /// oldest job's. Two jobs submitted together, one idle worker.
    #[test]
    fn the_job_of_highest_priority_is_handed_out_first() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let a = n("a");
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let first = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        let urgent = JobId([9; 16]);
        ask(
            &mut c,
            &mut table,
            &v,
            urgent,
            spec(FrameRange::single(1)),
            &a,
        );
        assert_eq!(
            c.steer(&mut table, urgent, Steer::Priority(80), &a),
            Response::Accepted
        );
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assigned_jobs(&mut out), [urgent]);
        assert_eq!(table.get(&first).unwrap().state, JobState::Queued);
    }

    /// Issue 11: any node could cancel any job.
    #[test]
    fn only_the_node_a_job_was_submitted_on_cancels_it() {
        let (mut c, mut table, _) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a, &b]);
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        let refused = c.cancel(&mut table, id, &b);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("only that node")),
            "{refused:?}"
        );
        assert_eq!(table.get(&id).map(|j| j.state), Some(JobState::Queued));
        assert_eq!(c.cancel(&mut table, id, &a), Response::Accepted);
        let job = table.get(&id).expect("the job");
        assert_eq!(job.state, JobState::Cancelled);
        assert!(
            job.message
                .as_deref()
                .is_some_and(|m| m.contains(&a.short()))
        );
    }

    /// Issue 12: no code checked free space.
    #[test]
    fn a_worker_low_on_disk_gets_no_task() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let low = Seat {
            low_disk: true,
            ..seat(&a, BLENDER, 0)
        };
        let v = view(0, vec![low, seat(&b, BLENDER, 0)], vec![&a, &b]);
        submit(&mut c, &mut table, &v, spec(FrameRange::new(1, 4).unwrap()));
        c.tick(&mut table, &v, &mut out);
        assert_eq!(assignments(&mut out), [(b.clone(), 0, 1)]);
    }

    /// Issue 12: nothing was ever deleted.
    #[test]
    fn a_finished_job_is_removed_after_its_retention_and_sooner_only_by_its_origin() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let at = |wall_ms: u64| View {
            wall_ms,
            ..view(0, vec![], vec![&a, &b])
        };
        // A job that ended is kept for the retention time from when it ended.
        let id = submit(&mut c, &mut table, &at(1_000), spec(FrameRange::single(1)));
        assert_eq!(c.cancel(&mut table, id, &a), Response::Accepted);
        c.tick(&mut table, &at(5_000), &mut out);
        assert_eq!(table.get(&id).unwrap().ended_ms, Some(5_000));
        let keep = Policy::default().keep_jobs_ms;
        c.tick(&mut table, &at(5_000 + keep), &mut out);
        assert!(!table.get(&id).unwrap().is_removed());
        c.tick(&mut table, &at(5_001 + keep), &mut out);
        assert_eq!(table.get(&id).unwrap().removed_ms, Some(5_001 + keep));

        // Sooner, a running job is removed by its origin only (cancelled on the way).
        let other = JobId([8; 16]);
        let answer = ask(
            &mut c,
            &mut table,
            &at(1_000),
            other,
            spec(FrameRange::single(1)),
            &a,
        );
        assert!(matches!(answer, Response::Job(_)), "{answer:?}");
        let refused = c.remove(&mut table, other, &b, 2_000);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("only that node")),
            "{refused:?}"
        );
        assert!(!table.get(&other).unwrap().is_removed());
        assert_eq!(c.remove(&mut table, other, &a, 2_000), Response::Accepted);
        let job = table.get(&other).unwrap();
        assert_eq!(
            (job.state, job.removed_ms),
            (JobState::Cancelled, Some(2_000))
        );
        assert!(matches!(
            c.remove(&mut table, JobId([9; 16]), &a, 2_000),
            Response::Rejected(_)
        ));
    }

    /// Found by the insider test on a clean clone: the second copy of the coordinator's own
    /// frames went to the first peer, a rogue that refused every time, and the job stalled.
    #[test]
    fn a_second_copy_goes_to_a_live_worker_before_any_other_peer() {
        let (me, rogue, a) = (n("c"), n("0-rogue"), n("a"));
        let v = view(
            0,
            vec![seat(&me, BLENDER, 0), seat(&a, BLENDER, 0)],
            vec![&rogue, &a],
        );
        assert_eq!(second_copy(&me, &v, Some(&me)), Some(a.clone()));
        assert_eq!(
            second_copy(&me, &v, Some(&rogue)),
            Some(rogue.clone()),
            "the origin first"
        );
        let alone = view(0, vec![seat(&me, BLENDER, 0)], vec![&rogue]);
        assert_eq!(second_copy(&me, &alone, None), Some(rogue));
    }

    #[test]
    fn a_stale_report_is_refused_and_changes_nothing() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a, &b]);
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        c.tick(&mut table, &v, &mut out);
        out.actions.clear();
        let before = table.get(&id).cloned();
        // Another node, and an older attempt, both report the task a is rendering.
        for (who, attempt) in [(b.clone(), 1), (a.clone(), 0)] {
            let report = done(id, 0, attempt, 1);
            c.report(
                &mut table,
                &v,
                who,
                report,
                Some(ReplyTo::Outside(9)),
                &mut out,
            );
            assert!(
                matches!(&replies(&mut out)[..], [(9, Response::Rejected(m))] if m.contains("not the current"))
            );
            assert!(out.actions.is_empty(), "a stale report fetched nothing");
        }
        assert_eq!(table.get(&id).cloned(), before);
    }

    #[test]
    fn the_tasks_of_a_worker_that_died_or_lost_them_are_requeued() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, BLENDER, 0)],
            vec![&a, &b],
        );
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::new(1, 2).unwrap()));
        c.tick(&mut table, &v, &mut out);
        let sent = tickets(&mut out);
        assert_eq!(sent.len(), 2);
        for ticket in sent {
            c.answered(&mut table, ticket, Ok(Response::Accepted), 10, &mut out);
        }
        let state = |table: &JobTable, i: usize| table.get(&id).unwrap().tasks[i].state;

        // a is gone from the mesh: its task is queued again at once.
        c.node_gone(&mut table, &a);
        assert_eq!(state(&table, 0), TaskState::Queued);

        // b is heard after the assignment, saying it renders nothing: still within the grace,
        // the task stays; past it, the task is requeued (and handed to b again, attempt 2).
        let idle_b = view(4_000, vec![seat(&b, BLENDER, 3_900)], vec![&b]);
        c.tick(&mut table, &idle_b, &mut out);
        assert_eq!(state(&table, 1), TaskState::Running);
        out.actions.clear();
        let later = view(6_000, vec![seat(&b, BLENDER, 5_900)], vec![&b]);
        c.tick(&mut table, &later, &mut out);
        // b was busy until the release: it gets the first queued task (task 0) now.
        assert_eq!(assignments(&mut out), [(b.clone(), 0, 2)]);
        assert_eq!(state(&table, 1), TaskState::Queued);
    }

    #[test]
    fn a_new_coordinator_keeps_running_tasks_and_counts_their_reports() {
        let (mut old, mut table, mut out) = fixture();
        let a = n("a");
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let id = submit(&mut old, &mut table, &v, spec(FrameRange::single(1)));
        old.tick(&mut table, &v, &mut out);
        old.retire(None, &mut out);
        out.actions.clear();

        // Node d takes over in term 2 with the replicated table, long after the assignment.
        let mut new = Coordinator::new(n("d"), Term(2), Policy::default(), &table, 60_000);
        let mut working = seat(&a, BLENDER, 60_000);
        working.current = Some(TaskRef {
            job: id,
            task: 0,
            attempt: 1,
            frames: FrameRange::single(1),
            tile: None,
            frames_done: 0,
        });
        let v = view(70_000, vec![working], vec![&a]);
        new.tick(&mut table, &v, &mut out);
        assert_eq!(table.get(&id).unwrap().tasks[0].state, TaskState::Running);
        assert_eq!(assignments(&mut out), []);

        new.report(&mut table, &v, a.clone(), done(id, 0, 1, 1), None, &mut out);
        let [fetch] = tickets(&mut out)[..] else {
            panic!("one fetch expected");
        };
        new.fetched(&mut table, fetch, Ok(()), 10, &mut out);
        let job = table.get(&id).unwrap();
        assert_eq!((job.state, job.version.term), (JobState::Done, Term(2)));
    }

    #[test]
    fn a_frame_is_stitched_once_all_its_tiles_are_rendered() {
        let (mut c, mut table, mut out) = fixture();
        // Checks aside (they hold the job until compared): this is about stitching.
        c.policy.checks = 0;
        let (a, b) = (n("a"), n("b"));
        let v = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, BLENDER, 0)],
            vec![&a, &b],
        );
        let mut s = spec(FrameRange::single(5));
        s.tiles = Some(Tiling::Grid(TileGrid::new(2, 1).unwrap()));
        let id = submit(&mut c, &mut table, &v, s);
        c.tick(&mut table, &v, &mut out);
        let sent = tickets(&mut out);
        assert_eq!(sent.len(), 2);
        for (task, (who, ticket)) in [(&a, sent[0]), (&b, sent[1])].into_iter().enumerate() {
            c.answered(&mut table, ticket, Ok(Response::Accepted), 10, &mut out);
            let report = done(id, task as u32, 1, 5);
            c.report(&mut table, &v, who.clone(), report, None, &mut out);
            let [fetch] = tickets(&mut out)[..] else {
                panic!("one fetch expected");
            };
            c.fetched(&mut table, fetch, Ok(()), 10, &mut out);
            // No stitch while a tile is missing.
            c.tick(&mut table, &v, &mut out);
            let stitches = out
                .actions
                .iter()
                .filter(|a| matches!(a, Action::Stitch { .. }))
                .count();
            assert_eq!(stitches, task, "after {} tiles", task + 1);
        }
        let Some(Action::Stitch {
            ticket,
            tiles,
            copy_to,
            ..
        }) = out
            .actions
            .iter()
            .find(|a| matches!(a, Action::Stitch { .. }))
            .cloned()
        else {
            unreachable!("counted above")
        };
        assert_eq!((tiles.len(), copy_to), (2, Some(a.clone())));
        // Stitching is not asked twice while under way.
        out.actions.clear();
        c.tick(&mut table, &v, &mut out);
        assert!(
            out.actions
                .iter()
                .all(|a| !matches!(a, Action::Stitch { .. }))
        );
        let frame = Output {
            frame: 5,
            blob: BlobHash::of(b"frame 5"),
            size: 7,
            thumb: None,
        };
        assert!(c.stitched(&mut table, ticket, Ok(frame.clone()), 20));
        let job = table.get(&id).unwrap();
        assert_eq!((job.state, job.outputs()), (JobState::Done, vec![&frame]));
    }

    #[test]
    fn a_refused_assignment_is_requeued_and_its_worker_left_alone_a_while() {
        let (mut c, mut table, mut out) = fixture();
        let a = n("a");
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        c.tick(&mut table, &v, &mut out);
        let [assign] = tickets(&mut out)[..] else {
            panic!("one assignment expected");
        };
        c.answered(
            &mut table,
            assign,
            Ok(Response::Rejected("busy".into())),
            100,
            &mut out,
        );
        assert_eq!(table.get(&id).unwrap().tasks[0].state, TaskState::Queued);
        c.tick(
            &mut table,
            &view(1_000, vec![seat(&a, BLENDER, 900)], vec![&a]),
            &mut out,
        );
        assert_eq!(assignments(&mut out), []);
        c.tick(
            &mut table,
            &view(2_200, vec![seat(&a, BLENDER, 2_100)], vec![&a]),
            &mut out,
        );
        assert_eq!(assignments(&mut out), [(a, 0, 2)]);
    }

    #[test]
    fn a_task_that_fails_on_every_matching_worker_fails_the_job() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, BLENDER, 0)],
            vec![&a, &b],
        );
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::single(1)));
        for (now, who) in [(0, &a), (3_000, &b)] {
            c.tick(
                &mut table,
                &view(now, v.workers.clone(), v.peers.clone()),
                &mut out,
            );
            let sent = assignments(&mut out);
            assert_eq!(sent.iter().map(|s| &s.0).collect::<Vec<_>>(), [who]);
            let report = Report {
                job: id,
                task: 0,
                attempt: sent[0].2,
                outcome: Outcome::Failed("no camera".into()),
            };
            c.report(
                &mut table,
                &v,
                who.clone(),
                report,
                Some(ReplyTo::Outside(1)),
                &mut out,
            );
            assert_eq!(replies(&mut out), [(1, Response::Accepted)]);
        }
        let job = table.get(&id).unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(
            job.message
                .as_deref()
                .is_some_and(|m| m.contains("2 nodes")),
            "{:?}",
            job.message
        );
    }

    /// Issue 12: a hung Blender held its task for good, its worker's heartbeat naming it.
    #[test]
    fn a_task_running_past_five_times_the_median_frame_time_is_taken_back() {
        let policy = Policy {
            min_task_timeout: 4_000,
            unmeasured_task_timeout: 30_000,
            ..Policy::default()
        };
        let (a, b) = (n("a"), n("b"));
        let idle = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, BLENDER, 0)],
            vec![&a, &b],
        );
        fn holding(seat: Seat<'_>, job: JobId, task: u32) -> Seat<'_> {
            Seat {
                current: Some(TaskRef {
                    job,
                    task,
                    attempt: 1,
                    frames: FrameRange::single(task + 1),
                    tile: None,
                    frames_done: 0,
                }),
                ..seat
            }
        }
        // a renders task 0, b task 1 for ever; both keep saying so.
        let id = JobId([7; 16]);
        let at = |now: Millis| {
            view(
                now,
                vec![
                    holding(seat(&a, BLENDER, now), id, 0),
                    holding(seat(&b, BLENDER, now), id, 1),
                ],
                vec![&a, &b],
            )
        };
        let mut out = Outbox::new(n("c"));

        // Nothing timed yet (a job of one task): the unmeasured timeout.
        let mut table = JobTable::default();
        let mut c = Coordinator::new(n("c"), Term(1), policy, &table, 0);
        submit(&mut c, &mut table, &idle, spec(FrameRange::single(1)));
        c.tick(&mut table, &idle, &mut out);
        assert_eq!(assignments(&mut out), [(a.clone(), 0, 1)]);
        let job = table.get(&id).unwrap();
        assert_eq!(c.task_timeout(job, &job.tasks[0]), 30_000);
        c.tick(&mut table, &at(30_000), &mut out);
        assert_eq!(table.get(&id).unwrap().tasks[0].state, TaskState::Running);
        c.tick(&mut table, &at(30_001), &mut out);
        let task = &table.get(&id).unwrap().tasks[0];
        assert_eq!(task.state, TaskState::Queued, "{task:?}");
        assert!(
            task.failures[0]
                .message
                .contains("no frame of the job timed"),
            "{task:?}"
        );

        // a's frame took 2 s: b's task times out after 5 x 2 s, from when it was handed out.
        let mut table = JobTable::default();
        let mut c = Coordinator::new(n("c"), Term(1), policy, &table, 0);
        submit(
            &mut c,
            &mut table,
            &idle,
            spec(FrameRange::new(1, 3).unwrap()),
        );
        c.tick(&mut table, &idle, &mut out);
        assert_eq!(
            assignments(&mut out),
            [(a.clone(), 0, 1), (b.clone(), 1, 1)]
        );
        c.report(
            &mut table,
            &at(2_000),
            a.clone(),
            done(id, 0, 1, 1),
            None,
            &mut out,
        );
        let [fetch] = tickets(&mut out)[..] else {
            panic!("one fetch expected");
        };
        assert!(c.fetched(&mut table, fetch, Ok(()), 2_000, &mut out));
        let job = table.get(&id).unwrap();
        assert_eq!(job.frame_ms, [2_000]);
        assert_eq!(c.task_timeout(job, &job.tasks[1]), 10_000);
        c.tick(&mut table, &at(10_000), &mut out);
        assert_eq!(table.get(&id).unwrap().tasks[1].state, TaskState::Running);
        out.take_actions();
        c.tick(&mut table, &at(10_001), &mut out);
        let job = table.get(&id).unwrap();
        let task = &job.tasks[1];
        assert_eq!(task.state, TaskState::Queued, "{task:?}");
        assert!(
            task.failures[0].message.contains("timed out after 10 s"),
            "{task:?}"
        );
        assert_eq!(&task.failures[0].node, &b);
        // Tried again elsewhere, with twice the time; b's late report does not count.
        assert_eq!(c.task_timeout(job, task), 20_000);
        c.report(
            &mut table,
            &at(10_002),
            b.clone(),
            done(id, 1, 1, 2),
            Some(ReplyTo::Outside(4)),
            &mut out,
        );
        assert!(matches!(
            &replies(&mut out)[..],
            [(4, Response::Rejected(_))]
        ));
        assert_eq!(table.get(&id).unwrap().frames_done(), 1);
    }

    /// Issue 12: with a blocklist, a job whose every matching node is blocklisted would wait
    /// for ever; it fails instead, saying why.
    #[test]
    fn a_job_fails_once_every_node_that_can_render_it_is_blocklisted() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let v = view(
            0,
            vec![seat(&a, BLENDER, 0), seat(&b, BLENDER, 0)],
            vec![&a, &b],
        );
        let id = submit(&mut c, &mut table, &v, spec(FrameRange::new(1, 8).unwrap()));
        // a failed tasks 0-2 and b tasks 3-4: no task failed on both, so none fails the job.
        let job = table.get_mut(&id).unwrap();
        for (who, task) in [(&a, 0), (&a, 1), (&a, 2), (&b, 3), (&b, 4)] {
            let attempt = job.assign(task, who.clone(), Term(1)).unwrap();
            job.fail(task, attempt, who, "segfault".into(), 2, Term(1))
                .unwrap();
        }
        assert!(job.blocklisted(&a) && !job.blocklisted(&b));
        let attempt = job.assign(5, b.clone(), Term(1)).unwrap();
        let report = Report {
            job: id,
            task: 5,
            attempt,
            outcome: Outcome::Failed("segfault".into()),
        };
        c.report(
            &mut table,
            &v,
            b.clone(),
            report,
            Some(ReplyTo::Outside(1)),
            &mut out,
        );
        assert_eq!(replies(&mut out), [(1, Response::Accepted)]);
        let job = table.get(&id).unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(
            job.message
                .as_deref()
                .is_some_and(|m| m.contains("every node that can render it failed 3")
                    && m.contains("segfault")),
            "{:?}",
            job.message
        );
    }

    #[test]
    fn a_job_submitted_on_the_coordinator_is_accepted_once_a_peer_holds_its_record() {
        let (mut c, mut table, mut out) = fixture();
        let (a, me) = (n("a"), n("c"));
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let id = JobId([4; 16]);
        let s = spec(FrameRange::single(1));
        c.submit(
            &mut table,
            &v,
            id,
            s.clone(),
            me.clone(),
            ReplyTo::Outside(5),
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            [],
            "one copy of the record is not enough"
        );
        // A heartbeat that advertises other jobs changes nothing; one with this job accepts it.
        let other = rendermesh_protocol::JobDigest {
            id: JobId([9; 16]),
            version: Default::default(),
        };
        c.advertised(&[other], &table, &mut out);
        assert_eq!(replies(&mut out), []);
        let digest = rendermesh_protocol::JobDigest {
            id,
            version: table.get(&id).unwrap().version,
        };
        c.advertised(&[digest], &table, &mut out);
        assert!(matches!(&replies(&mut out)[..], [(5, Response::Job(j))] if j.id == id));

        // A peer that never pulls the record: accepted with one copy after a while.
        let third = JobId([8; 16]);
        c.submit(
            &mut table,
            &v,
            third,
            s.clone(),
            me.clone(),
            ReplyTo::Outside(7),
            &mut out,
        );
        c.tick(
            &mut table,
            &view(SECOND_COPY_WAIT_MS - 1, v.workers.clone(), v.peers.clone()),
            &mut out,
        );
        assert!(!replies(&mut out).iter().any(|(to, _)| *to == 7));
        c.tick(
            &mut table,
            &view(SECOND_COPY_WAIT_MS, v.workers.clone(), v.peers.clone()),
            &mut out,
        );
        assert!(
            replies(&mut out)
                .iter()
                .any(|(to, r)| *to == 7 && matches!(r, Response::Job(j) if j.id == third))
        );

        // Alone, a coordinator accepts at its next tick: nobody else could hold the record.
        let alone = view(100, vec![], vec![]);
        let second = JobId([5; 16]);
        c.submit(&mut table, &v, second, s, me, ReplyTo::Outside(6), &mut out);
        assert_eq!(replies(&mut out), []);
        c.tick(&mut table, &alone, &mut out);
        assert!(matches!(&replies(&mut out)[..], [(6, Response::Job(j))] if j.id == second));
    }

    #[test]
    fn frames_counted_with_no_peer_are_copied_to_a_second_node_once_one_shows_up() {
        let (mut c, mut table, mut out) = fixture();
        let me = n("c");
        // Alone, this node renders and counts a frame with one copy.
        let alone = view(0, vec![seat(&me, BLENDER, 0)], vec![]);
        let id = submit_alone(&mut c, &mut table, &alone);
        c.tick(&mut table, &alone, &mut out);
        // To itself: the node's core hands it to its own worker side.
        let [(assign, Request::Assign(_))] = &out.to_self[..] else {
            panic!("one assignment to itself expected: {:?}", out.to_self);
        };
        let assign = *assign;
        c.answered(&mut table, assign, Ok(Response::Accepted), 10, &mut out);
        let report = done(id, 0, 1, 1);
        // The frame and its thumbnail.
        let (blob, thumb) = (BlobHash::of(b"0/1"), BlobHash::of(b"0/1 thumbnail"));
        c.report(&mut table, &alone, me.clone(), report, None, &mut out);
        let job = table.get(&id).unwrap();
        assert_eq!(
            (job.state, job.held_once.clone()),
            (
                JobState::Done,
                vec![(blob, me.clone()), (thumb, me.clone())]
            )
        );

        // A peer joins: it is asked to hold a copy, and once it does the record says so.
        let a = n("a");
        let together = view(1_000, vec![seat(&me, BLENDER, 1_000)], vec![&a]);
        c.tick(&mut table, &together, &mut out);
        let copies: Vec<_> = out
            .actions
            .iter()
            .filter_map(|x| match x {
                Action::Send {
                    to,
                    request: Request::Replicate { blobs, .. },
                    ticket,
                } => Some((to.clone(), blobs.clone(), *ticket)),
                _ => None,
            })
            .collect();
        let [(to, blobs, ticket), (to_too, thumbs, thumb_ticket)] = &copies[..] else {
            panic!("two copies asked for: {:?}", out.actions);
        };
        assert_eq!((to, blobs), (&a, &vec![blob]));
        assert_eq!((to_too, thumbs), (&a, &vec![thumb]));
        let (ticket, thumb_ticket) = (*ticket, *thumb_ticket);
        out.actions.clear();
        // Not asked twice while under way.
        c.tick(&mut table, &together, &mut out);
        assert!(
            out.actions
                .iter()
                .all(|x| !matches!(x, Action::Send { .. }))
        );
        c.answered(&mut table, ticket, Ok(Response::Accepted), 1_100, &mut out);
        assert_eq!(table.get(&id).unwrap().held_once, [(thumb, me.clone())]);
        c.answered(
            &mut table,
            thumb_ticket,
            Ok(Response::Accepted),
            1_100,
            &mut out,
        );
        assert_eq!(table.get(&id).unwrap().held_once, []);
    }

    fn submit_alone(c: &mut Coordinator, table: &mut JobTable, view: &View<'_>) -> JobId {
        let id = JobId([6; 16]);
        let answer = ask(c, table, view, id, spec(FrameRange::single(1)), &n("c"));
        assert!(matches!(answer, Response::Job(_)), "{answer:?}");
        id
    }

    #[test]
    fn a_report_whose_outputs_are_not_its_tasks_frames_is_refused() {
        let (mut c, mut table, mut out) = fixture();
        let a = n("a");
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let mut s = spec(FrameRange::new(1, 2).unwrap());
        s.chunk = Some(2);
        let id = submit(&mut c, &mut table, &v, s);
        c.tick(&mut table, &v, &mut out);
        out.actions.clear();
        let output = |frame: u32| Output {
            frame,
            blob: BlobHash::of(&frame.to_le_bytes()),
            size: 4,
            thumb: None,
        };
        for (outputs, what) in [
            (vec![output(1)], "no output for frame 2"),
            (vec![output(1), output(2), output(7)], "frame 7"),
            (vec![output(1), output(1), output(2)], "comes twice"),
        ] {
            let report = Report {
                job: id,
                task: 0,
                attempt: 1,
                outcome: Outcome::Done(outputs),
            };
            c.report(
                &mut table,
                &v,
                a.clone(),
                report,
                Some(ReplyTo::Outside(4)),
                &mut out,
            );
            let answers = replies(&mut out);
            assert!(
                matches!(&answers[..], [(4, Response::Rejected(m))] if m.contains(what)),
                "{answers:?}"
            );
            assert!(
                out.actions.is_empty(),
                "nothing fetched for a refused report"
            );
        }
        assert_eq!(table.get(&id).unwrap().tasks[0].state, TaskState::Running);
    }

    /// As [`fixture`], with no verification renders (they would take turns in the hand-outs).
    fn fixture_without_checks() -> (Coordinator, JobTable, Outbox) {
        let table = JobTable::default();
        let policy = Policy {
            checks: 0,
            ..Policy::default()
        };
        let c = Coordinator::new(n("c"), Term(1), policy, &table, 0);
        (c, table, Outbox::new(n("c")))
    }

    /// Issue 13: the mesh as `c` sees it at `now`: workers `a` and `b`, each rendering the
    /// task of `job` named in `current` (if any).
    fn busy_view<'a>(
        now: Millis,
        a: &'a NodeId,
        b: &'a NodeId,
        current: [Option<(JobId, u32, u32)>; 2],
    ) -> View<'a> {
        let with = |seat: Seat<'a>, c: Option<(JobId, u32, u32)>| Seat {
            current: c.map(|(job, task, attempt)| TaskRef {
                job,
                task,
                attempt,
                frames: FrameRange::single(1),
                tile: None,
                frames_done: 0,
            }),
            ..seat
        };
        view(
            now,
            vec![
                with(seat(a, BLENDER, now), current[0]),
                with(seat(b, BLENDER, now), current[1]),
            ],
            vec![a, b],
        )
    }

    /// Ticks `c` and accepts every assignment it sends; returns them as (worker, task,
    /// frames).
    fn hand_out_and_accept(
        c: &mut Coordinator,
        table: &mut JobTable,
        v: &View<'_>,
        out: &mut Outbox,
    ) -> Vec<(NodeId, u32, String)> {
        c.tick(table, v, out);
        // A holder asked to give back a task it holds ahead gives it back (it has not started
        // it): the next tick hands it out.
        let asked: Vec<Ticket> = out
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    request: Request::GiveBack { .. },
                    ticket,
                    ..
                } => Some(*ticket),
                _ => None,
            })
            .collect();
        if !asked.is_empty() {
            for ticket in asked {
                assert!(c.answered(table, ticket, Ok(Response::Accepted), v.now, out));
            }
            c.tick(table, v, out);
        }
        let sent: Vec<(NodeId, u32, String, Ticket)> = out
            .actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Send {
                    to,
                    request: Request::Assign(a),
                    ticket,
                } => Some((to, a.task, a.frames.to_string(), ticket)),
                _ => None,
            })
            .collect();
        for (_, _, _, ticket) in &sent {
            assert!(c.answered(table, *ticket, Ok(Response::Accepted), v.now, out));
        }
        sent.into_iter().map(|(n, t, f, _)| (n, t, f)).collect()
    }

    /// Reports task `task` of `id`, attempt `attempt`, done by `w` at `v.now` (frames
    /// `frames`), and its frames fetched.
    /// Workers `a` and `b`, idle, and a job of frames 1 to `frames` with no chunk size (cut as
    /// it goes) submitted at 0.
    fn cut_as_it_goes_on_a_and_b(
        frames: u32,
    ) -> (Coordinator, JobTable, Outbox, NodeId, NodeId, JobId) {
        let (mut c, mut table, out) = fixture_without_checks();
        let (a, b) = (n("a"), n("b"));
        let mut s = spec(FrameRange::new(1, frames).unwrap());
        s.chunk = None;
        let id = submit(&mut c, &mut table, &busy_view(0, &a, &b, [None, None]), s);
        (c, table, out, a, b, id)
    }

    /// Who was handed which task, in the order of their ids.
    fn handed(next: &[(NodeId, u32, String)]) -> Vec<(&NodeId, u32)> {
        let mut to: Vec<(&NodeId, u32)> = next.iter().map(|(w, t, _)| (w, *t)).collect();
        to.sort();
        to
    }

    /// Issue 13: a job of six single-frame tasks planned (chunk 1) on `a` and `b`, each handed
    /// its first task at 0 and one ahead at 100 ms, as it renders the first.
    fn six_planned_tasks_on_a_and_b(
        c: &mut Coordinator,
        table: &mut JobTable,
        out: &mut Outbox,
        (a, b): (&NodeId, &NodeId),
    ) -> JobId {
        let mut s = spec(FrameRange::new(1, 6).unwrap());
        s.chunk = Some(1);
        let idle = busy_view(0, a, b, [None, None]);
        let id = submit(c, table, &idle, s);
        assert_eq!(table.get(&id).unwrap().tasks.len(), 6, "planned");
        hand_out_and_accept(c, table, &idle, out);
        let rendering = busy_view(100, a, b, [Some((id, 0, 1)), Some((id, 1, 1))]);
        hand_out_and_accept(c, table, &rendering, out);
        id
    }

    /// A report that task `task` (attempt `attempt`) of job `id` is done, with a blob per frame.
    fn done_report(table: &JobTable, (id, task, attempt): (JobId, u32, u32)) -> Report {
        let frames = table.get(&id).unwrap().task(task).unwrap().frames;
        Report {
            job: id,
            task,
            attempt,
            outcome: Outcome::Done(
                frames
                    .iter()
                    .map(|frame| Output {
                        frame,
                        blob: BlobHash::of(format!("{task}/{frame}").as_bytes()),
                        size: 3,
                        thumb: None,
                    })
                    .collect(),
            ),
        }
    }

    fn report_done(
        c: &mut Coordinator,
        table: &mut JobTable,
        v: &View<'_>,
        out: &mut Outbox,
        w: &NodeId,
        key: (JobId, u32, u32),
    ) {
        let report = done_report(table, key);
        c.report(table, v, w.clone(), report, None, out);
        let [fetch] = tickets(out)[..] else {
            panic!("one fetch expected");
        };
        assert!(c.fetched(table, fetch, Ok(()), v.now, out));
        out.actions.clear();
    }

    /// `a` and `b` of [`cut_as_it_goes_on_a_and_b`], each holding its first task and one
    /// ahead, report: `a` frame 1 at 1 s and frame 3 at 2 s (started as it reported frame 1),
    /// `b` frame 2 at 4 s. Returns the view at 4 s (`b` rendering frame 4).
    fn a_at_1_s_and_b_at_4_s_report<'a>(
        c: &mut Coordinator,
        table: &mut JobTable,
        out: &mut Outbox,
        (a, b): (&'a NodeId, &'a NodeId),
        id: JobId,
    ) -> View<'a> {
        let v = busy_view(1_000, a, b, [Some((id, 2, 1)), Some((id, 1, 1))]);
        report_done(c, table, &v, out, a, (id, 0, 1));
        let v = busy_view(2_000, a, b, [None, Some((id, 1, 1))]);
        report_done(c, table, &v, out, a, (id, 2, 1));
        let v = busy_view(4_000, a, b, [None, Some((id, 3, 1))]);
        report_done(c, table, &v, out, b, (id, 1, 1));
        v
    }

    /// Issue 13: a job with no chunk size is cut as it goes. Each worker's first task is one
    /// frame (it measures the worker's pace), and a worker rendering its only task gets one
    /// more ahead; once paces are known, each worker's next task is its share of the frames
    /// left by pace, halved, so the faster one gets more; the clocks of a task held ahead start
    /// when the task before it is reported.
    #[test]
    fn a_job_is_cut_as_it_goes_by_each_workers_pace_and_each_worker_holds_one_task_ahead() {
        let (mut c, mut table, mut out, a, b, id) = cut_as_it_goes_on_a_and_b(100);
        let first = hand_out_and_accept(
            &mut c,
            &mut table,
            &busy_view(0, &a, &b, [None, None]),
            &mut out,
        );
        assert_eq!(
            first,
            [(a.clone(), 0, "1".into()), (b.clone(), 1, "2".into())]
        );
        // Both render: each gets one task ahead, of one frame while its pace is unknown.
        let rendering = [Some((id, 0, 1)), Some((id, 1, 1))];
        let v = busy_view(100, &a, &b, rendering);
        let ahead = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(
            ahead,
            [(a.clone(), 2, "3".into()), (b.clone(), 3, "4".into())]
        );
        // Holding two, neither gets a third.
        assert_eq!(hand_out_and_accept(&mut c, &mut table, &v, &mut out), []);
        // a renders a frame in 1 s, b in 4 s; each starts its task ahead as it reports, and
        // its clocks start then: a's frame 3, started at 1 s, takes it 1 s, and that second
        // measure replaces the first.
        let v = a_at_1_s_and_b_at_4_s_report(&mut c, &mut table, &mut out, (&a, &b), id);
        // The 96 frames left are shared so that both end together. b's only measure is its
        // first task's (4 s), which may include its preparation: towards that end it counts
        // at the others' pace (1 s), which brings the end early (54 s: a free now, b at 8 s
        // once its frame 4 is rendered); its own share is reckoned at its own 4 s. a's share
        // is 50 frames, halved: 25; then b's, ahead, 11 (from 8 s to 54 s at 4 s), halved: 6.
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(
            next,
            [
                (a.clone(), 4, "5-29".into()),
                (b.clone(), 5, "30-35".into())
            ]
        );
        // Tasks shrink as the job goes: of the 65 left, a (free at 29 s) and b (free at 32 s,
        // at 1 s a frame towards the end) end them together at 63 s; a's share is 34, halved,
        // ahead: 17.
        let v = busy_view(5_000, &a, &b, [Some((id, 4, 1)), Some((id, 3, 1))]);
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(next, [(a.clone(), 6, "36-52".into())]);
        assert_eq!(table.get(&id).unwrap().uncut(), 48);
    }

    /// Issue 13: the tail rule (a slow worker gets none of the last frames when the others
    /// would end them all sooner) holds for queued tasks too: a job planned in chunks, a tiled
    /// frame's tiles, a task requeued. Six single-frame tasks; `a` renders a frame in 1 s, `b`
    /// in 4 s. At 4 s, with tasks 4 and 5 left, `a` idle ends both by 6 s; `b`, busy until
    /// 8 s, gets neither to hold next. But the rule once stalled a job: a queued task no worker
    /// with a share may take goes to a slow one all the same. `a` fails task 4 at 4.5 s: then
    /// `a` takes task 5, and `b` holds task 4 next.
    #[test]
    fn a_queued_task_goes_to_a_slow_worker_only_when_no_worker_with_a_share_may_take_it() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let (a, b) = (n("a"), n("b"));
        let id = six_planned_tasks_on_a_and_b(&mut c, &mut table, &mut out, (&a, &b));
        let v = a_at_1_s_and_b_at_4_s_report(&mut c, &mut table, &mut out, (&a, &b), id);
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(handed(&next), [(&a, 4)], "{next:?}");
        let v = busy_view(4_500, &a, &b, [None, Some((id, 3, 1))]);
        let failed = Report {
            job: id,
            task: 4,
            attempt: 1,
            outcome: Outcome::Failed("out of memory".into()),
        };
        c.report(&mut table, &v, a.clone(), failed, None, &mut out);
        out.actions.clear();
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        let to = handed(&next);
        assert_eq!(to, [(&a, 5), (&b, 4)], "{next:?}");
    }

    /// Issue 13: the tail rule once stalled a job: the last check of a job went to nobody,
    /// since the only worker with a share was the one it checks. With checks on, `a` and `b`
    /// as above: at 4 s `a` takes the check of `b`'s first task, and `b`, with no share,
    /// holds the check of `a`'s next all the same.
    #[test]
    fn a_check_only_a_slow_worker_may_render_goes_to_it() {
        let (mut c, mut table, mut out) = fixture();
        let (a, b) = (n("a"), n("b"));
        let id = six_planned_tasks_on_a_and_b(&mut c, &mut table, &mut out, (&a, &b));
        let v = a_at_1_s_and_b_at_4_s_report(&mut c, &mut table, &mut out, (&a, &b), id);
        let checks: Vec<(NodeId, u32)> = table
            .get(&id)
            .unwrap()
            .checks
            .iter()
            .map(|k| (k.checked.clone(), k.task.index))
            .collect();
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        let to = handed(&next);
        let of = |w: &NodeId| {
            checks
                .iter()
                .find(|(c, _)| c == w)
                .map(|(_, t)| *t)
                .unwrap()
        };
        assert_eq!(to, [(&a, of(&b)), (&b, of(&a))], "{next:?} {checks:?}");
    }

    /// Issue 13: how many nodes of the slowest one's speed a set of measured paces amounts
    /// to (what sizes a `--tiles auto` grid): one per node at the same speed, one more for
    /// each node as fast again as the slowest; unmeasured nodes count as median ones.
    #[test]
    fn workers_are_weighed_by_their_speed_against_the_slowest() {
        assert_eq!(speed_weighted(&[None, None]), 2);
        assert_eq!(speed_weighted(&[Some(1_000), Some(1_000), Some(1_000)]), 3);
        assert_eq!(
            speed_weighted(&[Some(250), Some(1_000)]),
            5,
            "one 4x as fast"
        );
        assert_eq!(speed_weighted(&[Some(500), None]), 3, "unmeasured: 1,000");
        assert_eq!(speed_weighted(&[Some(600), Some(1_000), Some(1_000)]), 4);
        assert_eq!(
            speed_weighted(&[Some(900), Some(1_000), Some(1_100)]),
            3,
            "about the same speed"
        );
        assert_eq!(
            speed_weighted(&[Some(1), Some(100_000)]),
            8,
            "at most 4 per node"
        );
        assert_eq!(speed_weighted(&[Some(0)]), 1);
        assert_eq!(speed_weighted(&[]), 0);
    }

    /// Issue 13: `--tiles auto` sized the grid from the number of live nodes alone (two
    /// tiles each), so a slow node's tile could end long after a fast node had rendered the
    /// rest. It now weighs each node by its speed relative to the others, measured in the
    /// last job each rendered (not by its first task alone): after a job in which `a` renders a
    /// frame in 1 s and `b` in 4 s, one frame in tiles auto is cut for five nodes of `b`'s
    /// speed (a 4x3 grid), not two (2x2, what a coordinator with no measure still cuts).
    #[test]
    fn tiles_auto_weighs_each_node_by_its_measured_speed() {
        let (mut c, mut table, mut out, a, b, id) = cut_as_it_goes_on_a_and_b(100);
        let idle = busy_view(0, &a, &b, [None, None]);
        hand_out_and_accept(&mut c, &mut table, &idle, &mut out);
        let rendering = busy_view(100, &a, &b, [Some((id, 0, 1)), Some((id, 1, 1))]);
        hand_out_and_accept(&mut c, &mut table, &rendering, &mut out);
        // a: frame 1 by 1 s, frame 3 by 2 s; b: frame 2 by 4 s, frame 4 by 8 s.
        a_at_1_s_and_b_at_4_s_report(&mut c, &mut table, &mut out, (&a, &b), id);
        let v = busy_view(8_000, &a, &b, [None, None]);
        report_done(&mut c, &mut table, &v, &mut out, &b, (id, 3, 1));
        let mut s = spec(FrameRange::single(1));
        s.tiles = Some(Tiling::Auto);
        let tiled = JobId([8; 16]);
        let answer = ask(&mut c, &mut table, &v, tiled, s.clone(), &a);
        assert!(matches!(answer, Response::Job(_)), "{answer:?}");
        assert_eq!(table.get(&tiled).unwrap().grid, TileGrid::new(4, 3).ok());

        let (mut c, mut table, _) = fixture_without_checks();
        let answer = ask(&mut c, &mut table, &idle, tiled, s, &a);
        assert!(matches!(answer, Response::Job(_)), "{answer:?}");
        assert_eq!(table.get(&tiled).unwrap().grid, TileGrid::new(2, 2).ok());
    }

    /// Issue 13: a worker starts the task it holds next the moment its current one ends. One
    /// whose last word named task 0 as current and task 1 as held next, unstarted, holds two
    /// tasks until task 0 is reported; then task 1 alone, and it is handed the next task ahead
    /// at once, not after its next word (a fast worker ends single frames between two of its
    /// words, and the last frames of a job trickled out a round trip each).
    #[test]
    fn a_worker_whose_current_task_is_reported_has_started_the_one_it_named_next() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let a = n("a");
        let task = |id: JobId, task: u32| TaskRef {
            job: id,
            task,
            attempt: 1,
            frames: FrameRange::single(task + 1),
            tile: None,
            frames_done: 0,
        };
        let mut s = spec(FrameRange::new(1, 10).unwrap());
        s.chunk = None;
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let id = submit(&mut c, &mut table, &v, s);
        assert_eq!(
            hand_out_and_accept(&mut c, &mut table, &v, &mut out),
            [(a.clone(), 0, "1".into())]
        );
        let rendering_0 = |held: Vec<TaskRef>, now: Millis| {
            let seat = Seat {
                current: Some(task(id, 0)),
                held,
                ..seat(&a, BLENDER, 150)
            };
            view(now, vec![seat], vec![&a])
        };
        assert_eq!(
            hand_out_and_accept(&mut c, &mut table, &rendering_0(Vec::new(), 100), &mut out),
            [(a.clone(), 1, "2".into())]
        );
        // Its last word, at 150: rendering task 0, task 1 held next.
        let v = rendering_0(vec![task(id, 1)], 900);
        assert_eq!(hand_out_and_accept(&mut c, &mut table, &v, &mut out), []);
        let v = rendering_0(vec![task(id, 1)], 1_000);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, 0, 1));
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!((&next[0].0, next[0].1), (&a, 2));
    }

    /// Issue 13: a worker idle by its last word when it was handed a task starts it on
    /// receipt, so it is handed the next one to hold at once, without waiting for a heartbeat
    /// to say it renders the first; one heard since, and idle by that word, gets nothing more.
    #[test]
    fn a_worker_handed_a_task_since_its_last_word_holds_the_next_at_once() {
        let (mut c, mut table, mut out) = fixture_without_checks();
        let a = n("a");
        let mut s = spec(FrameRange::new(1, 10).unwrap());
        s.chunk = None;
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        submit(&mut c, &mut table, &v, s);
        let first = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(first, [(a.clone(), 0, "1".into())]);
        let v = view(100, vec![seat(&a, BLENDER, 0)], vec![&a]);
        let next = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(next, [(a.clone(), 1, "2".into())]);
        // Holding two, it gets no third.
        assert_eq!(hand_out_and_accept(&mut c, &mut table, &v, &mut out), []);

        let (mut c, mut table, mut out) = fixture_without_checks();
        let mut s = spec(FrameRange::new(1, 10).unwrap());
        s.chunk = None;
        let v = view(0, vec![seat(&a, BLENDER, 0)], vec![&a]);
        submit(&mut c, &mut table, &v, s);
        hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        let v = view(100, vec![seat(&a, BLENDER, 50)], vec![&a]);
        assert_eq!(hand_out_and_accept(&mut c, &mut table, &v, &mut out), []);
    }

    /// Issue 13: a node's first task in a job includes its preparation (fetching files,
    /// starting Blender), so its second measure replaces the first; later ones are averaged
    /// with the one before.
    #[test]
    fn a_nodes_first_measure_in_a_job_is_replaced_by_its_second() {
        let (mut c, mut table, mut out, a, b, id) = cut_as_it_goes_on_a_and_b(100);
        hand_out_and_accept(
            &mut c,
            &mut table,
            &busy_view(0, &a, &b, [None, None]),
            &mut out,
        );
        let v = busy_view(100, &a, &b, [Some((id, 0, 1)), Some((id, 1, 1))]);
        hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        // a's first frame took 3 s, its preparation included; its second 1 s, its third 2 s.
        let v = busy_view(3_000, &a, &b, [Some((id, 2, 1)), Some((id, 1, 1))]);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, 0, 1));
        assert_eq!(c.pace[&id][&a], 3_000);
        let v = busy_view(4_000, &a, &b, [None, Some((id, 1, 1))]);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, 2, 1));
        assert_eq!(c.pace[&id][&a], 1_000);
        let third = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        let (_, task, _) = third.iter().find(|(w, ..)| *w == a).unwrap().clone();
        let frames = u64::from(table.get(&id).unwrap().task(task).unwrap().frames.len());
        let v = busy_view(4_000 + frames * 2_000, &a, &b, [None, Some((id, 1, 1))]);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, task, 1));
        assert_eq!(c.pace[&id][&a], 1_500);
    }

    /// Issue 13's tail: `a` renders a frame in 4 s, `b` in 1 s, and a job of 8 frames is cut
    /// as it goes (job id `[7; 16]`).
    struct Tail {
        c: Coordinator,
        table: JobTable,
        out: Outbox,
        id: JobId,
        a: NodeId,
        b: NodeId,
        /// `b` says it is low on disk (it takes no new task, nor a share of the job).
        b_low_disk: bool,
    }

    impl Tail {
        fn new() -> Self {
            let (mut c, mut table, out) = fixture_without_checks();
            let (a, b) = (n("a"), n("b"));
            let mut s = spec(FrameRange::new(1, 8).unwrap());
            s.chunk = None;
            let id = JobId([7; 16]);
            let v = busy_view(0, &a, &b, [None, None]);
            assert_eq!(submit(&mut c, &mut table, &v, s), id);
            Self {
                c,
                table,
                out,
                id,
                a,
                b,
                b_low_disk: false,
            }
        }

        /// At `now`, with `a` and `b` rendering `current` (task, attempt), `reports` (node,
        /// task, attempt) come in and the coordinator ticks; returns what it handed out, as
        /// (node, task).
        fn step(
            &mut self,
            now: Millis,
            current: [Option<(u32, u32)>; 2],
            reports: &[(&NodeId, u32, u32)],
        ) -> Vec<(String, u32)> {
            let current = current.map(|t| t.map(|(t, attempt)| (self.id, t, attempt)));
            let mut v = busy_view(now, &self.a, &self.b, current);
            v.workers[1].low_disk = self.b_low_disk;
            for (w, task, attempt) in reports {
                report_done(
                    &mut self.c,
                    &mut self.table,
                    &v,
                    &mut self.out,
                    w,
                    (self.id, *task, *attempt),
                );
            }
            hand_out_and_accept(&mut self.c, &mut self.table, &v, &mut self.out)
                .into_iter()
                .map(|(n, t, _)| (n.to_string(), t))
                .collect()
        }

        /// Runs the job until `b`, idle at 5 s, takes the last frame `a` held ahead (task 7,
        /// attempt 2); `a` renders task 2 (frame 3) since 4 s.
        fn run_to_the_last_frame(&mut self) {
            self.run_until_a_holds_the_last_frame();
            let b = self.b.clone();
            // b ends its last task and is idle: a would end frame 8 at 12 s, b at 6 s. It goes
            // to b.
            assert_eq!(
                self.step(5_000, [Some((2, 1)), None], &[(&b, 6, 1)]),
                [(b.to_string(), 7)]
            );
            let task = self.table.get(&self.id).unwrap().task(7).unwrap();
            assert_eq!((task.attempt, task.worker.as_ref()), (2, Some(&b)));
        }

        /// At 5 s, `b` reports its last task and is idle; `a`'s last word: rendering task 2,
        /// holding task 7. The coordinator ticks; `out` holds only what that tick sent.
        fn b_idle_at_5_s(&mut self) {
            let v = busy_view(5_000, &self.a, &self.b, [Some((self.id, 2, 1)), None]);
            let b = self.b.clone();
            report_done(
                &mut self.c,
                &mut self.table,
                &v,
                &mut self.out,
                &b,
                (self.id, 6, 1),
            );
            self.out.actions.clear();
            self.c.tick(&mut self.table, &v, &mut self.out);
        }

        /// Runs the job to 3 s: `a` renders task 0 (frame 1) and holds task 2 (frame 3); `b`
        /// has rendered frames 2, 4 and 5 and renders task 5 (frame 6), holding task 6 (frame
        /// 7). Frame 8 is left.
        fn run_to_3_s(&mut self) {
            let (sa, sb) = (self.a.to_string(), self.b.to_string());
            let b = self.b.clone();
            assert_eq!(
                self.step(0, [None, None], &[]),
                [(sa.clone(), 0), (sb.clone(), 1)]
            );
            assert_eq!(
                self.step(100, [Some((0, 1)), Some((1, 1))], &[]),
                [(sa.clone(), 2), (sb.clone(), 3)]
            );
            // b reports frame after frame, and takes one more ahead each time.
            for (now, (current, done)) in [(3, 1), (4, 3), (5, 4)].into_iter().enumerate() {
                let now = 1_000 * (now as u64 + 1);
                assert_eq!(
                    self.step(now, [Some((0, 1)), Some((current, 1))], &[(&b, done, 1)]),
                    [(sb.clone(), current + 1)]
                );
            }
        }

        /// Runs the job until `a`, rendering task 2 (frame 3) since 4 s, holds the last frame
        /// ahead (task 7, attempt 1), and `b` renders task 6.
        fn run_until_a_holds_the_last_frame(&mut self) {
            self.run_to_3_s();
            let (a, b) = (self.a.clone(), self.b.clone());
            let sa = a.to_string();
            // a reports its first frame (4 s) and starts its task ahead; b, low on disk for a
            // moment, takes nothing, so a takes the last frame ahead (b would have: it ends it
            // sooner).
            self.b_low_disk = true;
            assert_eq!(
                self.step(
                    4_000,
                    [Some((2, 1)), Some((6, 1))],
                    &[(&a, 0, 1), (&b, 5, 1)]
                ),
                [(sa.clone(), 7)]
            );
            self.b_low_disk = false;
            assert_eq!(self.table.get(&self.id).unwrap().uncut(), 0);
        }
    }

    /// Issue 13: a worker that has reported its task done is free for the next while its
    /// frames are still being copied, and while its last heartbeat still names that task: at
    /// the tail, a task a slower node holds ahead is asked back for it at once (it waited for
    /// the copy, which on a large frame takes seconds).
    #[test]
    fn a_worker_whose_report_is_being_copied_counts_as_idle() {
        let mut tail = Tail::new();
        tail.run_until_a_holds_the_last_frame();
        let (a, id) = (tail.a.clone(), tail.id);
        let v = busy_view(
            5_000,
            &tail.a,
            &tail.b,
            [Some((id, 2, 1)), Some((id, 6, 1))],
        );
        let report = done_report(&tail.table, (id, 6, 1));
        tail.c.report(
            &mut tail.table,
            &v,
            tail.b.clone(),
            report,
            None,
            &mut tail.out,
        );
        assert_eq!(
            tickets(&mut tail.out).len(),
            1,
            "b's frames are being copied"
        );
        tail.c.tick(&mut tail.table, &v, &mut tail.out);
        let asked: Vec<(NodeId, u32)> = give_backs(&mut tail.out)
            .into_iter()
            .map(|(to, task, _)| (to, task))
            .collect();
        assert_eq!(asked, [(a, 7)], "a is asked to give task 7 back for b");
    }

    /// The tasks asked back ([`Request::GiveBack`]) in `out`, as (holder, task, ticket).
    fn give_backs(out: &mut Outbox) -> Vec<(NodeId, u32, Ticket)> {
        out.actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Send {
                    to,
                    request: Request::GiveBack { task, .. },
                    ticket,
                } => Some((to, task, ticket)),
                _ => None,
            })
            .collect()
    }

    /// Issue 13: the frames left go to the workers that would end them first, not to whoever
    /// asks. At 4 s `a` (4 s a frame, rendering frame 3 since 4 s: free at 8 s) and `b` (1 s a
    /// frame, rendering frame 7: free at 5 s) may each hold a task next; the last frame goes to
    /// `b`, ahead (it ends it at 6 s), and `a` gets nothing (it would end it at 12 s).
    #[test]
    fn the_last_frame_goes_ahead_to_the_worker_that_ends_it_first() {
        let mut tail = Tail::new();
        tail.run_to_3_s();
        let (a, b) = (tail.a.clone(), tail.b.clone());
        assert_eq!(
            tail.step(
                4_000,
                [Some((2, 1)), Some((6, 1))],
                &[(&a, 0, 1), (&b, 5, 1)]
            ),
            [(b.to_string(), 7)]
        );
        assert_eq!(
            tail.step(5_000, [Some((2, 1)), Some((7, 1))], &[(&b, 6, 1)]),
            []
        );
        // a, idle later, gets nothing either: nothing is left, and b holds the frame.
        assert_eq!(tail.step(8_000, [None, Some((7, 1))], &[(&a, 2, 1)]), []);
    }

    /// Issue 13: a task held ahead by a worker whose pace is not measured yet (its first task
    /// has not ended) is asked back for an idle measured one too: the holder counts at the
    /// job's median pace, and at least as slow as its current task has been so far. Here `b`
    /// has rendered its first frame for 2 s and holds the last frame ahead; `a` (1 s a frame)
    /// is idle, would end it at 3 s, `b` at 4 s at the earliest: it goes to `a`.
    #[test]
    fn a_task_held_ahead_by_an_unmeasured_slow_worker_goes_to_an_idle_measured_one() {
        let (mut c, mut table, mut out, a, b, id) = cut_as_it_goes_on_a_and_b(4);
        let v = busy_view(0, &a, &b, [None, None]);
        let first = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(
            first,
            [(a.clone(), 0, "1".into()), (b.clone(), 1, "2".into())]
        );
        let v = busy_view(100, &a, &b, [Some((id, 0, 1)), Some((id, 1, 1))]);
        let ahead = hand_out_and_accept(&mut c, &mut table, &v, &mut out);
        assert_eq!(
            ahead,
            [(a.clone(), 2, "3".into()), (b.clone(), 3, "4".into())]
        );
        let v = busy_view(1_000, &a, &b, [Some((id, 2, 1)), Some((id, 1, 1))]);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, 0, 1));
        let v = busy_view(2_000, &a, &b, [None, Some((id, 1, 1))]);
        report_done(&mut c, &mut table, &v, &mut out, &a, (id, 2, 1));
        out.actions.clear();
        c.tick(&mut table, &v, &mut out);
        let asked: Vec<(NodeId, u32)> = give_backs(&mut out)
            .into_iter()
            .map(|(holder, task, _)| (holder, task))
            .collect();
        assert_eq!(asked, [(b.clone(), 3)]);
    }

    /// Issue 13: a give-back in flight holds up backups (an idle node waits for the task it
    /// may get), but not once its task has moved on: here the holder reports the task before it
    /// (so it has started the one asked back) while its answer is still on its way, and the
    /// idle node backs that task up at once.
    #[test]
    fn a_give_back_whose_task_started_holds_up_no_backup() {
        let mut tail = Tail::new();
        tail.run_until_a_holds_the_last_frame();
        let (a, b, id) = (tail.a.clone(), tail.b.clone(), tail.id);
        tail.b_idle_at_5_s();
        assert_eq!(give_backs(&mut tail.out).len(), 1, "task 7 asked back");
        // a ends task 2 (at its 4 s a frame) and reports it: it runs task 7 now. Its answer
        // has not come.
        assert_eq!(
            tail.step(8_000, [Some((7, 1)), None], &[(&a, 2, 1)]),
            [(b.to_string(), 7)],
            "b backs task 7 up"
        );
        let task = tail.table.get(&id).unwrap().task(7).unwrap();
        assert_eq!(
            (task.worker.as_ref(), task.backup.as_ref()),
            (Some(&a), Some(&b))
        );
    }

    /// Issue 13: a task held ahead is asked back, never just taken: its holder may have
    /// started it since its last heartbeat (its report of the task before is on its way).
    /// Until it answers, the task stays its own; refused, it stays, and is not asked again.
    #[test]
    fn a_task_held_ahead_stays_with_a_holder_that_has_started_it() {
        let mut tail = Tail::new();
        tail.run_until_a_holds_the_last_frame();
        let (a, b, id) = (tail.a.clone(), tail.b.clone(), tail.id);
        tail.b_idle_at_5_s();
        let sends: Vec<String> = tail
            .out
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { request, .. } => Some(format!("{request:?}")),
                _ => None,
            })
            .collect();
        assert!(
            sends.iter().all(|s| s.starts_with("GiveBack")),
            "nothing is assigned (or backed up) while a task is asked back: {sends:?}"
        );
        let asked = give_backs(&mut tail.out);
        let [(holder, 7, ticket)] = &asked[..] else {
            panic!("{asked:?}");
        };
        assert_eq!(holder, &a);
        let held_by_a = |table: &JobTable| {
            let task = table.get(&id).unwrap().task(7).unwrap();
            (task.state, task.attempt, task.worker.clone())
        };
        assert_eq!(
            held_by_a(&tail.table),
            (TaskState::Running, 1, Some(a.clone()))
        );
        // a has started it: it stays a's, and is not asked back again.
        let started = Ok(Response::Rejected(
            "task 7 is not held here unstarted".into(),
        ));
        assert!(
            tail.c
                .answered(&mut tail.table, *ticket, started, 5_050, &mut tail.out)
        );
        for now in [5_100, 5_200] {
            let v = busy_view(now, &a, &b, [Some((id, 2, 1)), None]);
            tail.c.tick(&mut tail.table, &v, &mut tail.out);
            assert_eq!(give_backs(&mut tail.out), []);
            assert_eq!(
                held_by_a(&tail.table),
                (TaskState::Running, 1, Some(a.clone()))
            );
        }
    }

    /// Issue 13: a task held ahead by a busy slow worker, not started, goes back to the queue
    /// for an idle worker that would end it sooner, once nothing else is left.
    #[test]
    fn a_task_held_ahead_by_a_slow_busy_worker_goes_to_an_idle_faster_one() {
        Tail::new().run_to_the_last_frame();
    }

    /// Issue 13: once nothing is left to hand out, an idle worker backs up the running task
    /// expected to end last when it would end it sooner (MapReduce's backup tasks): the same
    /// attempt, on a second node. The first report counts; the other is refused.
    #[test]
    fn an_idle_faster_worker_backs_up_the_last_task_and_the_first_report_counts() {
        let mut tail = Tail::new();
        tail.run_to_the_last_frame();
        let (a, b, id) = (tail.a.clone(), tail.b.clone(), tail.id);
        // b ends frame 8 at 6 s and is idle; a's frame 3 (since 4 s) should end at 8 s, and b
        // would end it at 7 s: b backs it up.
        assert_eq!(
            tail.step(6_000, [Some((2, 1)), None], &[(&b, 7, 2)]),
            [(b.to_string(), 2)]
        );
        let task = tail.table.get(&id).unwrap().task(2).unwrap();
        assert_eq!(
            (task.attempt, task.worker.as_ref(), task.backup.as_ref()),
            (1, Some(&a), Some(&b))
        );
        assert_eq!(tail.table.get(&id).unwrap().backups, 1);
        // Nothing more to back up, or hand out: each task has one backup at most.
        assert_eq!(tail.step(6_100, [Some((2, 1)), Some((2, 1))], &[]), []);
        // b reports first: its render counts, and the job is done.
        assert_eq!(tail.step(7_000, [Some((2, 1)), None], &[(&b, 2, 1)]), []);
        let job = tail.table.get(&id).unwrap();
        let task = job.task(2).unwrap();
        assert_eq!(
            (task.state, task.worker.as_ref(), task.backup.as_ref()),
            (TaskState::Done, Some(&b), None)
        );
        assert_eq!(job.state, JobState::Done);
        // a's report, later, is refused: the task is not its any more.
        let v = busy_view(8_000, &a, &b, [None, None]);
        let late = Report {
            job: id,
            task: 2,
            attempt: 1,
            outcome: Outcome::Done(vec![Output {
                frame: 3,
                blob: BlobHash::of(b"late"),
                size: 4,
                thumb: None,
            }]),
        };
        tail.c.report(
            &mut tail.table,
            &v,
            a.clone(),
            late,
            Some(ReplyTo::Outside(9)),
            &mut tail.out,
        );
        assert!(
            matches!(&replies(&mut tail.out)[..], [(9, Response::Rejected(_))]),
            "a's late report must be refused"
        );
    }

    /// A copy is worth its power only when it saves much: with a's frame 3 overdue (1 s
    /// left at a's pace of 1 s), an idle b of pace 0.9 s (noise between nodes of one speed)
    /// does not back it up; of pace 0.5 s, it does.
    #[test]
    fn no_backup_when_the_copy_would_end_the_task_only_a_little_sooner() {
        let mut tail = Tail::new();
        tail.run_to_the_last_frame();
        let (a, b, id) = (tail.a.clone(), tail.b.clone(), tail.id);
        let v = busy_view(5_000, &a, &b, [Some((id, 2, 1)), None]);
        let idle = [v.seat(&b).unwrap()];
        let started = BTreeMap::from([((id, 2, 1), 4_000)]);
        let copies = |b_pace: Millis| {
            let paces = BTreeMap::from([(
                id,
                BTreeMap::from([(a.clone(), 1_000), (b.clone(), b_pace)]),
            )]);
            back_ups(&tail.table, &v, &idle, &paces, &started, |_| false)
        };
        assert_eq!(copies(900), []);
        assert_eq!(copies(500), [(b.clone(), id, 2)]);
    }
}
