//! The worker side of one node: whether it takes an assignment, the task it renders, the one
//! it holds to render next (one task ahead: it starts the moment the current one ends, with no
//! round trip to the coordinator between them), and the reports it owes the coordinator
//! (re-sent until one is acknowledged or refused).

use std::collections::BTreeSet;

use rendermesh_protocol::{
    Assignment, Engine, FrameRange, JobId, NodeId, Outcome, Report, Request, Response, TaskRef,
    Tile, limits,
};
use tracing::{debug, info};

use super::table::JobTable;
use super::{Action, Millis, Outbox, Ticket};

/// The task this node is rendering.
#[derive(Debug)]
struct Running {
    assignment: Assignment,
    frames_done: u32,
    /// Its job ended and the render was told to stop.
    cancelled: bool,
}

/// A report waiting for the coordinator's acknowledgement.
#[derive(Debug)]
struct PendingReport {
    report: Report,
    frames: FrameRange,
    tile: Option<Tile>,
    /// The request carrying it, while one is in flight.
    in_flight: Option<Ticket>,
}

impl PendingReport {
    /// The task it reports, every frame of it done.
    fn task_ref(&self) -> TaskRef {
        TaskRef {
            job: self.report.job,
            task: self.report.task,
            attempt: self.report.attempt,
            frames: self.frames,
            tile: self.tile,
            frames_done: self.frames.len(),
        }
    }
}

/// Assignment `a`, with `frames_done` of its frames rendered.
fn task_ref(a: &Assignment, frames_done: u32) -> TaskRef {
    TaskRef {
        job: a.job,
        task: a.task,
        attempt: a.attempt,
        frames: a.frames,
        tile: a.tile,
        frames_done,
    }
}

/// One node's worker side.
#[derive(Debug)]
pub struct Worker {
    /// This node's Blender version; `None`: it does not render.
    blender: Option<String>,
    /// The engines it renders with headless.
    engines: Vec<Engine>,
    running: Option<Running>,
    /// The assignment accepted while rendering: it starts when the render ends.
    next: Option<(Assignment, NodeId)>,
    reports: Vec<PendingReport>,
    /// `Some(bytes free)` while this node is low on disk: it takes no work.
    low_disk: Option<u64>,
    /// This node is leaving the mesh: it takes no work.
    leaving: bool,
    /// The jobs it asked to prepare in this run ([`Worker::prepare_next`]).
    prepared: BTreeSet<JobId>,
    /// Where the probe of its engines stands ([`Worker::probe_when_idle`]).
    probe: Probe,
    /// Since when it renders nothing and holds nothing to render.
    idle_since: Option<Millis>,
}

/// Where the probe of a worker's engines stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Its engines are what it was given: nothing to ask.
    Given,
    /// To be asked once it has been idle for [`PROBE_IDLE_MS`].
    Wanted,
    /// Asked; the answer comes to [`Worker::set_engines`].
    Asked,
}

/// How long a worker must have had nothing to render before its engines are probed: the
/// probe is a Blender run of its own (an 8x8 Workbench render, about a second), and a node
/// that starts with work waiting renders first.
pub const PROBE_IDLE_MS: Millis = 2_000;

impl Worker {
    /// A worker that renders with `blender` (`None`: it does not render) and `engines`.
    pub fn new(blender: Option<String>, engines: Vec<Engine>) -> Self {
        Self {
            blender,
            engines,
            running: None,
            next: None,
            reports: Vec::new(),
            low_disk: None,
            leaving: false,
            prepared: BTreeSet::new(),
            probe: Probe::Given,
            idle_since: None,
        }
    }

    /// Its engines beyond those it was given are to be probed ([`Action::ProbeEngines`]), once
    /// it has been idle for [`PROBE_IDLE_MS`] ([`Worker::probe_when_idle`]). A worker that
    /// does not render has nothing to probe.
    pub fn probe_engines(&mut self) {
        if self.blender.is_some() {
            self.probe = Probe::Wanted;
        }
    }

    /// At `now`: asks for the engines probe when it is wanted and this worker has rendered
    /// nothing, and held nothing to render, for [`PROBE_IDLE_MS`]. Asked once.
    pub fn probe_when_idle(&mut self, now: Millis, out: &mut Outbox) {
        let idle = self.running.is_none() && self.next.is_none();
        self.idle_since = match (idle, self.idle_since) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, since) => since,
        };
        if self.probe == Probe::Wanted
            && self
                .idle_since
                .is_some_and(|since| now.saturating_sub(since) >= PROBE_IDLE_MS)
        {
            self.probe = Probe::Asked;
            out.push(Action::ProbeEngines);
        }
    }

    /// This node leaves the mesh: it takes no more work, stops its render and lets its reports
    /// go (its coordinator hands its task to another node).
    pub fn leave(&mut self, out: &mut Outbox) {
        self.leaving = true;
        self.reports.clear();
        self.next = None;
        if let Some(r) = &mut self.running
            && !r.cancelled
        {
            info!(job = %r.assignment.job.short(), task = r.assignment.task,
                  "leaving: the task goes back to the coordinator");
            r.cancelled = true;
            out.push(Action::CancelRender);
        }
    }

    /// Its Blender version.
    pub fn blender(&self) -> Option<&str> {
        self.blender.as_deref()
    }

    /// The engines it renders with.
    pub fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// The engines probe answered.
    pub fn set_engines(&mut self, engines: Vec<Engine>) {
        self.engines = engines;
        self.probe = Probe::Given;
    }

    /// This node is low on disk (`Some(bytes free)`), or not.
    pub fn set_low_disk(&mut self, low: Option<u64>) {
        self.low_disk = low;
    }

    /// Whether this node is low on disk, and so takes no work.
    pub fn is_low_disk(&self) -> bool {
        self.low_disk.is_some()
    }

    /// Whether a render is under way.
    pub fn is_rendering(&self) -> bool {
        self.running.is_some()
    }

    /// The task it renders, or else the oldest one it still reports.
    pub fn current(&self) -> Option<TaskRef> {
        if let Some(r) = &self.running {
            let a = &r.assignment;
            return Some(task_ref(a, r.frames_done));
        }
        self.reports.first().map(PendingReport::task_ref)
    }

    /// The other tasks it holds, for its heartbeat: the one it renders next, then those it
    /// still reports (but the one [`Worker::current`] names).
    pub fn held(&self) -> Vec<TaskRef> {
        let next = self.next.iter().map(|(a, _)| task_ref(a, 0));
        let skip = usize::from(self.running.is_none());
        let reports = self.reports.iter().skip(skip).map(PendingReport::task_ref);
        next.chain(reports).take(limits::MAX_HELD).collect()
    }

    /// An assignment from `from`, whose term the caller has checked. Starts the render, or
    /// while one is under way holds it to start next, and accepts; or says why not.
    pub fn assign(&mut self, a: Assignment, from: NodeId, out: &mut Outbox) -> Response {
        let Some(blender) = &self.blender else {
            return Response::Rejected("this node does not render".into());
        };
        if self.leaving {
            return Response::Rejected("this node is leaving the mesh".into());
        }
        let same = |b: &Assignment| b.job == a.job && b.task == a.task && b.attempt == a.attempt;
        let running = self.running.as_ref().map(|r| &r.assignment);
        if running.is_some_and(same) || self.next.as_ref().is_some_and(|(b, _)| same(b)) {
            return Response::Accepted;
        }
        // After a failed render, nothing more of its job until the coordinator has read the
        // failure (it may blocklist this node): an assignment made before it did is refused.
        let failed = |p: &PendingReport| {
            p.report.job == a.job && matches!(p.report.outcome, Outcome::Failed(_))
        };
        if self.reports.iter().any(failed) {
            return Response::Rejected(format!(
                "its last render of job {} failed, and the coordinator has not read that yet",
                a.job.short()
            ));
        }
        if let (Some(r), Some((n, _))) = (running, &self.next) {
            return Response::Rejected(format!(
                "busy with job {} task {}, and task {} next",
                r.job.short(),
                r.task,
                n.task
            ));
        }
        if let Some(free) = self.low_disk {
            return Response::Rejected(format!(
                "this node is low on disk ({} MiB free): it takes no work",
                free >> 20
            ));
        }
        // The spec comes from a peer: it is checked here as the coordinator checked it (its
        // file paths above all, which name where files are laid out on this node).
        if let Err(e) = a.spec.validate() {
            return Response::Rejected(format!("the assignment's job is invalid: {e}"));
        }
        if let Some(wanted) = &a.spec.blender_version
            && wanted != blender
        {
            return Response::Rejected(format!(
                "the job needs {wanted:?}; this node runs {blender:?}"
            ));
        }
        if !self.engines.contains(&a.spec.engine) {
            return Response::Rejected(format!(
                "the job renders with {}; this node cannot run it headless",
                a.spec.engine
            ));
        }
        if self.running.is_some() {
            debug!(job = %a.job.short(), task = a.task, "holding the task to render next");
            self.next = Some((a, from));
        } else {
            self.start(a, from, out);
        }
        Response::Accepted
    }

    fn start(&mut self, a: Assignment, from: NodeId, out: &mut Outbox) {
        self.running = Some(Running {
            assignment: a.clone(),
            frames_done: 0,
            cancelled: false,
        });
        out.push(Action::Render {
            assignment: Box::new(a),
            from,
        });
    }

    /// The coordinator asks back `task` of `job` (`attempt`), held to render next: an idle
    /// node would end it sooner. Given back unless it has started (or is not held here).
    pub fn give_back(&mut self, job: JobId, task: u32, attempt: u32) -> Response {
        match &self.next {
            Some((a, _)) if a.job == job && a.task == task && a.attempt == attempt => {
                info!(job = %job.short(), task, attempt, "the task held next is given back for an idle node");
                self.next = None;
                Response::Accepted
            }
            _ => Response::Rejected(format!(
                "task {task} of job {job} (attempt {attempt}) is not held here unstarted"
            )),
        }
    }

    /// Starts the task held next, once nothing renders (and the node is not leaving).
    /// A node low on disk gives the task held next back instead (its coordinator requeues
    /// it).
    pub fn start_next(&mut self, out: &mut Outbox) {
        if self.running.is_some() || self.leaving {
            return;
        }
        if self.low_disk.is_some() {
            if let Some((a, _)) = self.next.take() {
                info!(job = %a.job.short(), task = a.task, "low on disk: the task held next is given back");
            }
            return;
        }
        if let Some((a, from)) = self.next.take() {
            self.start(a, from, out);
        }
    }

    /// A frame of task `task` of `job` is rendered.
    pub fn progress(&mut self, job: JobId, task: u32) {
        if let Some(r) = &mut self.running
            && r.assignment.job == job
            && r.assignment.task == task
        {
            r.frames_done += 1;
        }
    }

    /// The render of `assignment` ended; `None`: it was cancelled, and there is nothing to
    /// report.
    pub fn rendered(&mut self, assignment: &Assignment, outcome: Option<Outcome>) {
        let same = self.running.as_ref().is_some_and(|r| {
            r.assignment.job == assignment.job
                && r.assignment.task == assignment.task
                && r.assignment.attempt == assignment.attempt
        });
        if same {
            self.running = None;
        }
        let Some(outcome) = outcome else {
            return;
        };
        // A render that failed gives the task held next back unstarted: this node may be
        // broken for the job, and its coordinator, reading the failure, requeues that task
        // (and blocklists the node after its third failure).
        if matches!(outcome, Outcome::Failed(_))
            && let Some((next, _)) = self.next.take()
        {
            info!(job = %next.job.short(), task = next.task,
                  "the render failed: the task held next is given back");
        }
        self.reports.push(PendingReport {
            frames: assignment.frames,
            tile: assignment.tile,
            report: Report {
                job: assignment.job,
                task: assignment.task,
                attempt: assignment.attempt,
                outcome,
            },
            in_flight: None,
        });
    }

    /// Prepares, once per run, the job this node is likely to render next, before its first
    /// task comes (its files fetched and laid out, Blender started with the file loaded): the
    /// oldest job of `table` still under way that it can render (its Blender version, its
    /// engines) and in which it is not blocklisted. Only while it renders nothing of another job,
    /// since preparing a job lays its files out in place of the others'.
    pub fn prepare_next(&mut self, me: &NodeId, table: &JobTable, out: &mut Outbox) {
        let Some(blender) = &self.blender else {
            return;
        };
        self.prepared
            .retain(|id| table.get(id).is_some_and(|j| !j.state.is_terminal()));
        if self.leaving || self.low_disk.is_some() {
            return;
        }
        let next = table
            .iter()
            .filter(|j| {
                !j.state.is_terminal()
                    && j.spec.blender_version.as_ref().is_none_or(|v| v == blender)
                    && self.engines.contains(&j.spec.engine)
                    && !j.blocklisted(me)
            })
            .min_by_key(|j| (j.created_ms, j.id));
        let Some(job) = next else {
            return;
        };
        let busy_elsewhere = self
            .running
            .iter()
            .map(|r| r.assignment.job)
            .chain(self.next.iter().map(|(a, _)| a.job))
            .any(|other| other != job.id);
        if busy_elsewhere || !self.prepared.insert(job.id) {
            return;
        }
        debug!(job = %job.id.short(), "preparing the job before its first task");
        out.push(Action::Prepare {
            job: job.id,
            spec: Box::new(job.spec.clone()),
            origin: job.origin.clone(),
        });
    }

    /// Stops the render when its job has ended, or when the record no longer gives this node
    /// (`me`) its task: the coordinator took it back (it timed out, or the coordinator saw this
    /// node as gone), and whatever it renders would be refused.
    pub fn stop_revoked(&mut self, me: &NodeId, table: &JobTable, out: &mut Outbox) {
        if let Some((a, _)) = &self.next
            && let Some(job) = table.get(&a.job)
            && (job.state.is_terminal() || job.revoked(a.task, a.attempt, me, a.version))
        {
            info!(job = %a.job.short(), task = a.task, attempt = a.attempt,
                  "the task held next was taken back or its job ended; dropped");
            self.next = None;
        }
        let Some(r) = &mut self.running else {
            return;
        };
        let a = &r.assignment;
        let Some(job) = table.get(&a.job) else {
            return;
        };
        if r.cancelled {
            return;
        }
        if job.state.is_terminal() {
            info!(job = %a.job.short(), "job ended; stopping its task");
        } else if job.revoked(a.task, a.attempt, me, a.version) {
            info!(job = %a.job.short(), task = a.task, attempt = a.attempt,
                  "the coordinator took the task back; stopping it");
        } else {
            return;
        }
        r.cancelled = true;
        out.push(Action::CancelRender);
    }

    /// Sends every report not in flight to `coordinator`.
    pub fn send_reports(&mut self, coordinator: Option<&NodeId>, out: &mut Outbox) {
        let Some(coordinator) = coordinator else {
            return;
        };
        for p in &mut self.reports {
            if p.in_flight.is_none() {
                let ticket = out.send(coordinator.clone(), Request::Report(p.report.clone()));
                p.in_flight = Some(ticket);
            }
        }
    }

    /// The coordinator changed: every report goes to the new one.
    pub fn coordinator_changed(&mut self) {
        for p in &mut self.reports {
            p.in_flight = None;
        }
    }

    /// The answer to a report. Returns false when `ticket` is not a report's.
    pub fn answered(&mut self, ticket: Ticket, answer: &Result<Response, String>) -> bool {
        let Some(pos) = self
            .reports
            .iter()
            .position(|p| p.in_flight == Some(ticket))
        else {
            return false;
        };
        let report = &self.reports[pos].report;
        match answer {
            Ok(Response::Accepted) => {
                self.reports.remove(pos);
            }
            Ok(Response::Rejected(reason)) => {
                info!(job = %report.job.short(), task = report.task, "report refused: {reason}");
                self.reports.remove(pos);
            }
            other => {
                debug!(job = %report.job.short(), task = report.task, "report not taken: {other:?}");
                self.reports[pos].in_flight = None;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{BlobHash, JobId, JobSpec, Output, Term};

    use super::*;

    const BLENDER: &str = "Blender 3.4.1";

    fn n(name: &str) -> NodeId {
        NodeId::from_bytes(name.as_bytes()).expect("a node id")
    }

    fn assignment(task: u32, attempt: u32) -> Assignment {
        Assignment {
            term: Term(1),
            job: JobId([3; 16]),
            task,
            attempt,
            version: Default::default(),
            frames: FrameRange::single(task + 1),
            tile: None,
            spec: JobSpec {
                chunk: Some(1),
                blender_version: Some(BLENDER.into()),
                ..JobSpec::new(
                    "shot.blend",
                    BlobHash::of(b"shot"),
                    4,
                    FrameRange::new(1, 4).expect("a range"),
                )
            },
            origin: n("origin"),
        }
    }

    fn renders(out: &mut Outbox) -> usize {
        out.take_actions()
            .iter()
            .filter(|a| matches!(a, Action::Render { .. }))
            .count()
    }

    fn report_tickets(out: &mut Outbox) -> Vec<Ticket> {
        out.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send {
                    request: Request::Report(_),
                    ticket,
                    ..
                } => Some(ticket),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_worker_renders_one_assignment_at_a_time_and_only_what_it_can() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        assert_eq!(
            w.assign(assignment(0, 1), n("c"), &mut out),
            Response::Accepted
        );
        assert_eq!(renders(&mut out), 1);
        // The same assignment again (a retried request) is accepted once more, not rendered twice.
        assert_eq!(
            w.assign(assignment(0, 1), n("c"), &mut out),
            Response::Accepted
        );
        assert_eq!(renders(&mut out), 0);
        // One more is held to render next; a third is refused.
        assert_eq!(
            w.assign(assignment(1, 1), n("c"), &mut out),
            Response::Accepted
        );
        assert_eq!(renders(&mut out), 0, "held, not rendered yet");
        let busy = w.assign(assignment(2, 1), n("c"), &mut out);
        assert!(matches!(busy, Response::Rejected(m) if m.contains("busy")));
        assert_eq!(w.current().map(|c| (c.task, c.attempt)), Some((0, 1)));

        let mut other = Worker::new(Some("Blender 4.2.0".into()), vec![Engine::Cycles]);
        let version = other.assign(assignment(0, 1), n("c"), &mut out);
        assert!(matches!(version, Response::Rejected(m) if m.contains("3.4.1")));
        let mut no_cycles = Worker::new(Some(BLENDER.into()), vec![Engine::Workbench]);
        let engine = no_cycles.assign(assignment(0, 1), n("c"), &mut out);
        assert!(matches!(engine, Response::Rejected(m) if m.contains("cannot run it headless")));
        let mut relay = Worker::new(None, Vec::new());
        let none = relay.assign(assignment(0, 1), n("c"), &mut out);
        assert!(matches!(none, Response::Rejected(m) if m.contains("does not render")));
        assert_eq!(renders(&mut out), 0);
    }

    #[test]
    fn a_report_is_sent_until_the_coordinator_takes_or_refuses_it() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let a = assignment(0, 1);
        w.assign(a.clone(), n("c"), &mut out);
        out.take_actions();
        let output = Output {
            frame: 1,
            blob: BlobHash::of(b"frame"),
            size: 5,
            thumb: None,
        };
        w.rendered(&a, Some(Outcome::Done(vec![output])));
        assert!(!w.is_rendering());
        // Until acknowledged, the report is what the worker says it is doing.
        assert_eq!(w.current().map(|c| c.frames_done), Some(1));
        w.send_reports(Some(&n("c")), &mut out);
        let [first] = report_tickets(&mut out)[..] else {
            panic!("one report expected");
        };
        // In flight: not sent twice.
        w.send_reports(Some(&n("c")), &mut out);
        assert_eq!(report_tickets(&mut out), []);
        // Not taken (the coordinator is busy copying): sent again.
        assert!(w.answered(first, &Ok(Response::Busy("copying".into()))));
        w.send_reports(Some(&n("c")), &mut out);
        let [second] = report_tickets(&mut out)[..] else {
            panic!("the report again expected");
        };
        // A new coordinator: sent to it, and the old answer no longer counts.
        w.coordinator_changed();
        w.send_reports(Some(&n("d")), &mut out);
        let [third] = report_tickets(&mut out)[..] else {
            panic!("the report to the new coordinator expected");
        };
        assert!(!w.answered(second, &Ok(Response::Accepted)));
        assert!(w.current().is_some());
        assert!(w.answered(third, &Ok(Response::Accepted)));
        assert_eq!(w.current(), None);
    }

    /// Lets `w` check `table` twice; returns the renders it cancelled.
    fn cancels_of_two_checks(w: &mut Worker, table: &JobTable, out: &mut Outbox) -> usize {
        w.stop_revoked(&n("w"), table, out);
        w.stop_revoked(&n("w"), table, out);
        out.take_actions()
            .iter()
            .filter(|a| matches!(a, Action::CancelRender))
            .count()
    }

    #[test]
    fn a_node_low_on_disk_refuses_work_until_it_has_room() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        w.set_low_disk(Some(5 << 20));
        let refused = w.assign(assignment(0, 1), n("c"), &mut out);
        assert!(
            matches!(&refused, Response::Rejected(m) if m.contains("low on disk (5 MiB free)")),
            "{refused:?}"
        );
        assert!(out.take_actions().is_empty());
        w.set_low_disk(None);
        assert_eq!(
            w.assign(assignment(0, 1), n("c"), &mut out),
            Response::Accepted
        );
    }

    #[test]
    fn a_render_the_coordinator_took_back_is_stopped_once() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let a = assignment(0, 1);
        let plan = rendermesh_protocol::plan(&a.spec, 1);
        let mut job =
            rendermesh_protocol::Job::new(a.job, a.spec.clone(), n("o"), plan, Term(1), 0);
        let mut table = JobTable::default();
        // The record from before the assignment, then the one that names it: no stop.
        table.insert(job.clone());
        w.assign(a.clone(), n("c"), &mut out);
        out.take_actions();
        w.stop_revoked(&n("w"), &table, &mut out);
        assert_eq!(job.assign(0, n("w"), Term(1)), Ok(1));
        table.insert(job.clone());
        w.stop_revoked(&n("w"), &table, &mut out);
        assert!(out.take_actions().is_empty());
        // Timed out and handed to another node: stopped, once.
        job.fail(0, 1, &n("w"), "timed out".into(), 3, Term(1))
            .unwrap();
        job.assign(0, n("x"), Term(1)).unwrap();
        table.insert(job);
        assert_eq!(cancels_of_two_checks(&mut w, &table, &mut out), 1);
    }

    /// Issue 13: the engines probe (a Blender run of its own) waits until the worker has had
    /// nothing to render for [`PROBE_IDLE_MS`], is asked once, never while a render runs, and
    /// not at all when the engines given are all there is or when the node does not render.
    #[test]
    fn the_engines_probe_waits_for_an_idle_worker_and_is_asked_once() {
        let mut out = Outbox::new(n("w"));
        let mut probes = |w: &mut Worker, now: Millis| {
            w.probe_when_idle(now, &mut out);
            let actions = out.take_actions();
            actions
                .iter()
                .filter(|a| matches!(a, Action::ProbeEngines))
                .count()
        };
        let mut given = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let mut relay = Worker::new(None, Vec::new());
        relay.probe_engines();
        for w in [&mut given, &mut relay] {
            assert_eq!(probes(w, 0) + probes(w, 60_000), 0);
        }

        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        w.probe_engines();
        assert_eq!(probes(&mut w, 0), 0);
        // Work comes at 1.5 s, before the probe: it renders until 9 s, then holds nothing.
        let (first, second) = (assignment(0, 1), assignment(1, 1));
        let mut sink = Outbox::new(n("w"));
        w.assign(first.clone(), n("c"), &mut sink);
        assert_eq!(probes(&mut w, 1_500), 0);
        w.assign(second.clone(), n("c"), &mut sink);
        assert_eq!(probes(&mut w, 4_000), 0, "rendering");
        w.rendered(&first, None);
        w.start_next(&mut sink);
        assert_eq!(probes(&mut w, 6_000), 0, "rendering the task held ahead");
        w.rendered(&second, None);
        assert_eq!(probes(&mut w, 9_000), 0, "just idle");
        assert_eq!(probes(&mut w, 10_999), 0);
        assert_eq!(probes(&mut w, 11_000), 1, "idle for 2 s");
        assert_eq!(probes(&mut w, 20_000), 0, "asked once");
        w.set_engines(vec![Engine::Cycles, Engine::Eevee]);
        assert_eq!(probes(&mut w, 40_000), 0);
        assert_eq!(w.engines(), [Engine::Cycles, Engine::Eevee]);
    }

    /// Issue 13: a worker holds one task ahead. It names it in its heartbeat, starts it the
    /// moment the current render ends, drops it when the record takes it back, and gives it
    /// up when it leaves.
    #[test]
    fn a_worker_holds_one_task_ahead_and_starts_it_when_the_current_one_ends() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let (first, second, third) = (assignment(0, 1), assignment(1, 1), assignment(2, 1));
        w.assign(first.clone(), n("c"), &mut out);
        w.assign(second.clone(), n("c"), &mut out);
        assert_eq!(renders(&mut out), 1);
        let held: Vec<(u32, u32)> = w.held().iter().map(|t| (t.task, t.frames_done)).collect();
        assert_eq!(held, [(1, 0)], "the task ahead, not started");
        w.start_next(&mut out);
        assert_eq!(renders(&mut out), 0, "nothing starts while a render runs");

        let frame = Output {
            frame: 1,
            blob: BlobHash::of(b"frame 1"),
            size: 7,
            thumb: None,
        };
        w.rendered(&first, Some(Outcome::Done(vec![frame])));
        // The report of the first is owed; the second starts at once.
        w.start_next(&mut out);
        let started: Vec<u32> = out
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Render { assignment, .. } => Some(assignment.task),
                _ => None,
            })
            .collect();
        assert_eq!(started, [1]);
        assert_eq!(w.current().map(|c| c.task), Some(1));
        let held: Vec<u32> = w.held().iter().map(|t| t.task).collect();
        assert_eq!(held, [0], "the report still owed");

        // A task held next that the record gave to another node is dropped, never started.
        w.assign(third.clone(), n("c"), &mut out);
        let mut job = rendermesh_protocol::Job::new(
            third.job,
            third.spec.clone(),
            n("o"),
            rendermesh_protocol::plan(&third.spec, 1),
            Term(1),
            0,
        );
        for task in 0..3 {
            job.assign(task, n("w"), Term(1)).unwrap();
        }
        job.release(2, 1, &n("w"), Term(1)).unwrap();
        job.assign(2, n("x"), Term(1)).unwrap();
        let mut table = JobTable::default();
        table.insert(job);
        w.stop_revoked(&n("w"), &table, &mut out);
        assert_eq!(out.take_actions().len(), 0, "the render under way goes on");
        w.rendered(&second, None);
        w.start_next(&mut out);
        assert_eq!(renders(&mut out), 0, "the revoked task is not started");

        // A render that fails gives the task held next back (the node may be broken for the
        // job: its coordinator requeues the task as it reads the failure).
        let (fourth, fifth) = (assignment(3, 1), assignment(2, 2));
        w.assign(fourth.clone(), n("c"), &mut out);
        w.assign(fifth, n("c"), &mut out);
        out.take_actions();
        w.rendered(&fourth, Some(Outcome::Failed("a broken frame".into())));
        w.start_next(&mut out);
        assert_eq!(renders(&mut out), 0, "nothing held next any more");
        assert!(w.held().iter().all(|t| t.frames_done > 0));
        // Nor does it take another task of the job before its coordinator reads the failure.
        let refused = w.assign(assignment(1, 3), n("c"), &mut out);
        assert!(matches!(refused, Response::Rejected(m) if m.contains("failed")));
        w.send_reports(Some(&n("c")), &mut out);
        for ticket in report_tickets(&mut out) {
            w.answered(ticket, &Ok(Response::Accepted));
        }
        assert_eq!(
            w.assign(assignment(1, 3), n("c"), &mut out),
            Response::Accepted
        );
        w.rendered(&assignment(1, 3), None);
        out.take_actions();

        // Leaving gives the task held next up.
        w.assign(assignment(3, 1), n("c"), &mut out);
        w.assign(third, n("c"), &mut out);
        w.leave(&mut out);
        assert!(w.held().is_empty());
        w.rendered(&assignment(3, 1), None);
        w.start_next(&mut out);
        assert_eq!(
            out.take_actions()
                .iter()
                .filter(|a| matches!(a, Action::Render { .. }))
                .count(),
            1,
            "only the render started before leaving"
        );
    }

    /// Issue 13: a node prepares the job it is likely to render next (the oldest under way
    /// that it can render) once, before its first task, and never while it renders another job.
    #[test]
    fn a_worker_prepares_the_oldest_job_it_can_render_once_and_not_while_busy_elsewhere() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let job = |id: u8, created_ms: u64, blender: &str| {
            let mut a = assignment(0, 1);
            a.spec.blender_version = Some(blender.into());
            let plan = rendermesh_protocol::plan(&a.spec, 1);
            rendermesh_protocol::Job::new(
                JobId([id; 16]),
                a.spec,
                n("o"),
                plan,
                Term(1),
                created_ms,
            )
        };
        let prepared = |out: &mut Outbox| -> Vec<JobId> {
            out.take_actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Prepare { job, .. } => Some(job),
                    _ => None,
                })
                .collect()
        };
        let mut table = JobTable::default();
        table.insert(job(1, 10, "Blender 4.2.0"));
        table.insert(job(2, 20, BLENDER));
        table.insert(job(3, 30, BLENDER));
        w.prepare_next(&n("w"), &table, &mut out);
        assert_eq!(
            prepared(&mut out),
            [JobId([2; 16])],
            "the oldest it can render"
        );
        w.prepare_next(&n("w"), &table, &mut out);
        assert_eq!(prepared(&mut out), [], "once");
        // Job 2 ends while this node renders a task of it: job 3 waits for the render to end.
        let mut a = assignment(0, 1);
        a.job = JobId([2; 16]);
        w.assign(a.clone(), n("c"), &mut out);
        out.take_actions();
        let mut ended = table.get(&JobId([2; 16])).unwrap().clone();
        ended.cancel(Term(1), &n("o"));
        table.insert(ended);
        w.prepare_next(&n("w"), &table, &mut out);
        assert_eq!(prepared(&mut out), []);
        w.rendered(&a, None);
        w.prepare_next(&n("w"), &table, &mut out);
        assert_eq!(prepared(&mut out), [JobId([3; 16])]);
        // A node that is leaving prepares nothing.
        let mut leaving = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        leaving.leave(&mut out);
        leaving.prepare_next(&n("w"), &table, &mut out);
        assert_eq!(prepared(&mut out), []);
    }

    #[test]
    fn a_render_whose_job_ended_is_stopped_once_and_reports_nothing() {
        let mut out = Outbox::new(n("w"));
        let mut w = Worker::new(Some(BLENDER.into()), vec![Engine::Cycles]);
        let a = assignment(0, 1);
        w.assign(a.clone(), n("c"), &mut out);
        out.take_actions();
        let mut table = JobTable::default();
        let plan = rendermesh_protocol::plan(&a.spec, 1);
        let mut job =
            rendermesh_protocol::Job::new(a.job, a.spec.clone(), n("o"), plan, Term(1), 0);
        job.cancel(Term(1), &job.origin.clone());
        table.insert(job);
        assert_eq!(cancels_of_two_checks(&mut w, &table, &mut out), 1);
        w.rendered(&a, None);
        assert_eq!((w.is_rendering(), w.current()), (false, None));
        w.send_reports(Some(&n("c")), &mut out);
        assert_eq!(report_tickets(&mut out), []);
    }
}
