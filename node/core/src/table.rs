//! The replicated job table: every node holds a copy of every job record. Only the coordinator
//! writes records (each write raises the record's [`Version`]). A heartbeat advertises the
//! `(id, version)` of the records its node changed most recently, and a digest of its whole
//! table ([`TableDigest`]); a node pulls every record a peer advertises in a newer version than
//! its own, and when the digests still differ, the peer's whole list of versions
//! ([`Request::Digests`]), from which it goes on pulling until it holds what the list names.
//!
//! Whom a node pulls from is the core's rule ([`super::Core::heard`]): a follower pulls only
//! from the coordinator it follows, and a coordinator pulls from its peers only jobs it holds
//! no record of, written in earlier terms (what its predecessor accepted), never a record
//! claiming its own term.

use std::collections::{BTreeMap, BTreeSet};

use rendermesh_protocol::{
    BlobHash, Job, JobChanges, JobDigest, JobId, NodeId, Response, TableDigest, Term, Version,
    limits,
};
use tracing::{debug, warn};

use super::{Outbox, Ticket};
use rendermesh_protocol::Request;

/// Job records pulled at once.
pub const MAX_PULLS: usize = 8;

/// Versions of a running job's record remembered as served, to tell a puller what changed
/// since the one it holds ([`JobTable::answer_pull`]).
pub const SERVED_VERSIONS: usize = 64;

/// Running jobs whose served versions are kept (the least recently served go first).
pub const SERVED_JOBS: usize = 4;

/// A list of versions that named nothing to pull is not asked for again from the same peer
/// for this long (two tables may differ for good: a record this node holds in a newer version
/// than its new coordinator, which will supersede it at its next write).
pub const LIST_AGAIN_MS: super::Millis = 30_000;

/// What a node remembers of the versions of a running job's record it served: enough to tell
/// which tasks changed since any of them, for the cost of one copy of the tasks.
#[derive(Debug, Default)]
struct Served {
    /// When it was last served, on the table's own counter.
    last: u64,
    /// The tasks as they were in the last version served.
    tasks: Vec<rendermesh_protocol::Task>,
    /// Per task, the number of the version served in which it last changed (or appeared).
    changed: Vec<u32>,
    /// The versions served, oldest first, with their numbers (at most [`SERVED_VERSIONS`]).
    versions: Vec<(Version, u32)>,
}

impl Served {
    /// Notes `job` as served now (its version numbered after the last one).
    fn note(&mut self, job: &Job) {
        if self.versions.last().is_some_and(|(v, _)| *v == job.version) {
            return;
        }
        if job.tasks.len() < self.tasks.len() {
            // Not a later version of what was served: start over.
            *self = Served::default();
        }
        let number = self.versions.last().map_or(0, |(_, n)| n + 1);
        for (i, task) in job.tasks.iter().enumerate() {
            match self.tasks.get(i) {
                Some(old) if old == task => {}
                Some(_) => self.changed[i] = number,
                None => self.changed.push(number),
            }
        }
        self.tasks.clone_from(&job.tasks);
        self.versions.push((job.version, number));
        if self.versions.len() > SERVED_VERSIONS {
            self.versions.remove(0);
        }
    }

    /// What changed in `job` (the version last noted) since version `since`, if it was served.
    fn since(&self, job: &Job, since: Version) -> Option<JobChanges> {
        let (_, number) = self.versions.iter().find(|(v, _)| *v == since)?;
        let tasks = job
            .tasks
            .iter()
            .zip(&self.changed)
            .filter(|(_, at)| *at > number)
            .map(|(t, _)| t.clone())
            .collect();
        Some(JobChanges {
            since,
            head: job.without_tasks(),
            task_count: u32::try_from(job.tasks.len()).ok()?,
            tasks,
        })
    }
}

/// A peer's list of versions this node goes on pulling from.
#[derive(Debug)]
struct Backlog {
    /// Records newer than this node's copies, still to pull.
    digests: Vec<JobDigest>,
    /// Only records written before this term.
    below: Option<Term>,
    /// Only jobs this node holds no record of.
    only_new: bool,
}

/// One node's copy of every job record, and the pulls under way.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: BTreeMap<JobId, Job>,
    /// Pulls under way: the ticket of each `GetJob`, the job it asks for, and the term the
    /// answer's version must stay below, if any.
    pulling: BTreeMap<Ticket, (JobId, Option<Term>, NodeId)>,
    /// The version of each record as it was last handed out to be written to disk.
    saved: BTreeMap<JobId, Version>,
    /// Tombstones forgotten in this run: never pulled back from a peer that still holds one.
    forgotten: BTreeSet<JobId>,
    /// Tombstones forgotten and not yet handed out to be deleted from disk.
    unsaved_forgotten: Vec<JobId>,
    /// A record may have changed since [`JobTable::unsaved`] last looked: set by every way
    /// to write one, so that the look (after every event) costs nothing when none did.
    touched: bool,
    /// When each record last changed here, on a counter of this node's own.
    stamps: BTreeMap<JobId, u64>,
    /// The same, by stamp: the records changed most recently last.
    by_stamp: BTreeMap<u64, JobId>,
    /// The last stamp given.
    stamp: u64,
    /// The digest of the whole table, until a record changes.
    digest: std::cell::OnceCell<TableDigest>,
    /// Lists of versions asked for: the peer, and what to pull from its list.
    listing: BTreeMap<Ticket, (NodeId, Option<Term>, bool)>,
    /// Per peer, when its list may be asked for again.
    listed: BTreeMap<NodeId, super::Millis>,
    /// Per peer, the records its list names that are still to pull.
    backlog: BTreeMap<NodeId, Backlog>,
    /// The versions of running jobs' records served to pullers.
    served: BTreeMap<JobId, Served>,
    /// Counts pulls answered.
    answered: u64,
}

impl JobTable {
    /// One job, if this node holds a copy.
    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// One job, to write (the coordinator only).
    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        self.touch();
        self.jobs.get_mut(id)
    }

    /// Whether this node holds a copy of `id`.
    pub fn contains(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }

    /// Adds a record this node wrote (the coordinator accepting a job).
    pub fn insert(&mut self, job: Job) {
        self.touch();
        self.jobs.insert(job.id, job);
    }

    /// Takes back the records a node kept on disk (at start, before any event): each is kept
    /// when it is valid ([`Job::validate`]), and counts as written. Returns how many were kept.
    pub fn restore(&mut self, jobs: Vec<Job>) -> usize {
        let mut kept = 0;
        for job in jobs {
            if let Err(e) = job.validate() {
                warn!(job = %job.id.short(), "a job record on disk was not kept: {e}");
                continue;
            }
            self.saved.insert(job.id, job.version);
            self.jobs.insert(job.id, job);
            kept += 1;
        }
        // Restored records count as changed in the order they were created.
        let mut ids: Vec<(u64, JobId)> = self.jobs.values().map(|j| (j.created_ms, j.id)).collect();
        ids.sort();
        for (_, id) in ids {
            self.stamp_changed(id);
        }
        self.digest = Default::default();
        kept
    }

    /// A record may change: the digest is made again when next asked for.
    fn touch(&mut self) {
        self.touched = true;
        self.digest = Default::default();
    }

    /// Record `id` changed just now.
    fn stamp_changed(&mut self, id: JobId) {
        self.stamp += 1;
        if let Some(old) = self.stamps.insert(id, self.stamp) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(self.stamp, id);
    }

    /// The digest of the whole table: how many records, and a hash of every id and version.
    pub fn digest(&self) -> TableDigest {
        *self
            .digest
            .get_or_init(|| TableDigest::of(self.jobs.iter().map(|(id, j)| (id, j.version))))
    }

    /// The version of every record, in id order (the answer to `Digests`), at most
    /// [`limits::MAX_TABLE`].
    pub fn versions(&self) -> Vec<JobDigest> {
        self.jobs
            .values()
            .take(limits::MAX_TABLE)
            .map(|j| JobDigest {
                id: j.id,
                version: j.version,
            })
            .collect()
    }

    /// Every record whose version changed since it was last handed out to be written, now
    /// counted as written. Every write raises a record's version ([`Job::touch`]) and a
    /// replica keeps only newer versions, so a record that changed has a new version.
    pub fn unsaved(&mut self) -> Vec<Job> {
        let mut out = Vec::new();
        if !std::mem::take(&mut self.touched) {
            return out;
        }
        for (id, job) in &self.jobs {
            if self.saved.get(id) != Some(&job.version) {
                self.saved.insert(*id, job.version);
                out.push(job.clone());
            }
        }
        for job in &out {
            self.stamp_changed(job.id);
        }
        out
    }

    /// Forgets every tombstone removed longer than `keep_ms` before `wall_ms`; returns how
    /// many. Each is deleted from disk with the next write, and never pulled back in this run.
    pub fn forget_tombstones(&mut self, wall_ms: u64, keep_ms: u64) -> usize {
        let old: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| {
                j.removed_ms
                    .is_some_and(|at| wall_ms.saturating_sub(at) > keep_ms)
            })
            .map(|j| j.id)
            .collect();
        if !old.is_empty() {
            self.digest = Default::default();
        }
        for id in &old {
            self.jobs.remove(id);
            self.saved.remove(id);
            if let Some(stamp) = self.stamps.remove(id) {
                self.by_stamp.remove(&stamp);
            }
            self.forgotten.insert(*id);
            self.unsaved_forgotten.push(*id);
        }
        old.len()
    }

    /// The records forgotten since the last call, to delete from disk.
    pub fn unsaved_forgotten(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.unsaved_forgotten)
    }

    /// Every blob a kept job this node holds a record of uses ([`Job::blobs`]).
    pub fn referenced(&self) -> BTreeSet<BlobHash> {
        self.jobs.values().flat_map(Job::blobs).collect()
    }

    /// The kept jobs in which a check found `node`'s pixels wrong ([`Job::suspects`]).
    pub fn suspected(&self, node: &NodeId) -> Vec<JobId> {
        self.jobs
            .values()
            .filter(|j| !j.is_removed() && j.suspects.contains(node))
            .map(|j| j.id)
            .collect()
    }

    /// The nodes likely to hold `blob`, when a job this node holds a record of uses it: its
    /// origin (which holds its inputs, and takes a copy of frames) and the nodes that rendered
    /// it. `None`: no job uses it.
    pub fn holders(&self, blob: &BlobHash) -> Option<Vec<NodeId>> {
        let mut found = false;
        let mut holders = Vec::new();
        for job in self.jobs.values() {
            let input = job.spec.blend == *blob || job.spec.deps.iter().any(|d| d.blob == *blob);
            let stitched = job.stitched.iter().any(|o| o.holds(blob));
            let rendered = job
                .all_tasks()
                .filter(|t| t.outputs.iter().any(|o| o.holds(blob)))
                .filter_map(|t| t.worker.clone());
            let before = holders.len();
            holders.extend(rendered);
            if input || stitched || holders.len() > before {
                found = true;
                holders.push(job.origin.clone());
            }
        }
        holders.dedup();
        found.then_some(holders)
    }

    /// Every record, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Every record, to write (the coordinator only), in id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Job> {
        self.touch();
        self.jobs.values_mut()
    }

    /// Every record, newest first.
    pub fn newest_first(&self) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
        jobs
    }

    /// What this node's heartbeat advertises: the ids and versions of the records that
    /// changed here most recently, the latest first, at most [`limits::MAX_DIGESTS`].
    pub fn digests(&self) -> Vec<JobDigest> {
        self.by_stamp
            .values()
            .rev()
            .filter_map(|id| self.jobs.get(id))
            .take(limits::MAX_DIGESTS)
            .map(|j| JobDigest {
                id: j.id,
                version: j.version,
            })
            .collect()
    }

    /// The answer to a pull of job `id` by a peer that holds version `since` of it (`None`: no
    /// copy): what changed since, when this node served that version of the running job
    /// recently (one of the last [`SERVED_VERSIONS`] it served); the whole record otherwise.
    /// Each version of a running job served is remembered, so that the puller's next pull,
    /// from it, takes only what changed.
    pub fn answer_pull(&mut self, id: JobId, since: Option<Version>) -> Response {
        let Some(job) = self.jobs.get(&id) else {
            return Response::NotFound;
        };
        self.answered += 1;
        if job.state.is_terminal() {
            self.served.remove(&id);
            return Response::Job(Box::new(job.clone()));
        }
        let served = self.served.entry(id).or_default();
        served.note(job);
        served.last = self.answered;
        let changes = since.and_then(|since| served.since(job, since));
        if self.served.len() > SERVED_JOBS
            && let Some(oldest) = self
                .served
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(id, _)| *id)
        {
            self.served.remove(&oldest);
        }
        match changes {
            Some(changes) => Response::JobChanges(Box::new(changes)),
            None => Response::Job(Box::new(job.clone())),
        }
    }

    /// A record from a peer: kept when it is valid ([`Job::validate`]) and newer than this
    /// node's copy. Returns whether it was kept.
    pub fn offer(&mut self, job: Job) -> bool {
        if let Err(e) = job.validate() {
            warn!("a peer's job record was not kept: {e}");
            return false;
        }
        let newer = self
            .jobs
            .get(&job.id)
            .is_none_or(|mine| job.version > mine.version);
        if newer {
            debug!(job = %job.id.short(), version = ?job.version, "job record updated");
            self.touch();
            self.jobs.insert(job.id, job);
        }
        newer
    }

    fn is_newer(&self, id: &JobId, version: Version) -> bool {
        self.jobs.get(id).is_none_or(|j| version > j.version)
    }

    /// Pulls from `peer` every record its `digests` advertise newer than this node's copy,
    /// [`MAX_PULLS`] at a time; with `below`, only records written before that term (and an
    /// answer from a later term is not kept); with `only_new`, only jobs this node holds no
    /// record of.
    pub fn pull(
        &mut self,
        peer: &NodeId,
        digests: &[JobDigest],
        below: Option<Term>,
        only_new: bool,
        out: &mut Outbox,
    ) {
        for d in digests {
            if self.pulling.len() >= MAX_PULLS {
                break;
            }
            if self.is_newer(&d.id, d.version)
                && !self.forgotten.contains(&d.id)
                && !(only_new && self.contains(&d.id))
                && below.is_none_or(|t| d.version.term < t)
                && !self.pulling.values().any(|(id, ..)| *id == d.id)
            {
                let request = match self.jobs.get(&d.id) {
                    Some(mine) => Request::GetJobSince {
                        id: d.id,
                        since: mine.version,
                    },
                    None => Request::GetJob(d.id),
                };
                let ticket = out.send(peer.clone(), request);
                self.pulling.insert(ticket, (d.id, below, peer.clone()));
            }
        }
    }

    /// Pulls from `peer` what its heartbeat advertises (as [`JobTable::pull`]), then, when
    /// `its` table digest still differs from this node's and nothing is being pulled, asks
    /// for its whole list of versions at `now` (unless a list of it named nothing to pull
    /// within [`LIST_AGAIN_MS`]) and goes on pulling from it.
    #[allow(clippy::too_many_arguments)]
    pub fn catch_up(
        &mut self,
        peer: &NodeId,
        advertised: &[JobDigest],
        its: TableDigest,
        below: Option<Term>,
        only_new: bool,
        now: super::Millis,
        out: &mut Outbox,
    ) {
        self.pull(peer, advertised, below, only_new, out);
        self.drain(peer, out);
        if its == self.digest()
            || !self.pulling.is_empty()
            || self.backlog.contains_key(peer)
            || self.listing.values().any(|(p, ..)| p == peer)
            || self.listed.get(peer).is_some_and(|at| now < *at)
        {
            return;
        }
        self.list(peer, below, only_new, out);
    }

    /// Asks `peer` for its whole list of versions, to pull from it (as [`JobTable::pull`]).
    pub fn list(&mut self, peer: &NodeId, below: Option<Term>, only_new: bool, out: &mut Outbox) {
        debug!(peer = %peer.short(), "job tables differ: asking for the whole list of versions");
        let ticket = out.send(peer.clone(), Request::Digests);
        self.listing.insert(ticket, (peer.clone(), below, only_new));
    }

    /// Pulls from `peer`'s list what is still newer here, [`MAX_PULLS`] at a time.
    fn drain(&mut self, peer: &NodeId, out: &mut Outbox) {
        let Some(mut backlog) = self.backlog.remove(peer) else {
            return;
        };
        backlog.digests.retain(|d| {
            self.is_newer(&d.id, d.version)
                && !self.forgotten.contains(&d.id)
                && !(backlog.only_new && self.contains(&d.id))
                && backlog.below.is_none_or(|t| d.version.term < t)
        });
        let digests = std::mem::take(&mut backlog.digests);
        self.pull(peer, &digests, backlog.below, backlog.only_new, out);
        backlog.digests = digests;
        if !backlog.digests.is_empty() {
            self.backlog.insert(peer.clone(), backlog);
        }
    }

    /// Goes on pulling from every list of versions not exhausted yet.
    pub fn drain_all(&mut self, out: &mut Outbox) {
        let peers: Vec<NodeId> = self.backlog.keys().cloned().collect();
        for peer in peers {
            self.drain(&peer, out);
        }
    }

    /// The answer to a pull or to a list of versions at `now`. Returns false when `ticket`
    /// is neither.
    pub fn pulled(
        &mut self,
        ticket: Ticket,
        answer: &Result<Response, String>,
        now: super::Millis,
        out: &mut Outbox,
    ) -> bool {
        if let Some((peer, below, only_new)) = self.listing.remove(&ticket) {
            if let Ok(Response::Digests(list)) = answer {
                let digests: Vec<JobDigest> =
                    list.iter().take(limits::MAX_TABLE).cloned().collect();
                self.backlog.insert(
                    peer.clone(),
                    Backlog {
                        digests,
                        below,
                        only_new,
                    },
                );
                self.drain(&peer, out);
                if !self.backlog.contains_key(&peer) {
                    // Nothing to pull: the tables differ for good, for now.
                    self.listed.insert(peer, now + LIST_AGAIN_MS);
                }
            }
            return true;
        }
        let Some((id, below, peer)) = self.pulling.remove(&ticket) else {
            return false;
        };
        let mut kept = false;
        let whole = match answer {
            Ok(Response::Job(job)) => Some(job.as_ref().clone()),
            Ok(Response::JobChanges(changes)) => {
                match self.jobs.get(&id).map(|mine| changes.apply(mine)) {
                    Some(Ok(job)) => Some(job),
                    Some(Err(e)) => {
                        debug!(job = %id.short(), "a peer's changes to a job record were not applied: {e}");
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(job) = whole
            && job.id == id
        {
            if below.is_some_and(|t| job.version.term >= t) {
                // Only this coordinator writes in its term.
                warn!(job = %id.short(), version = ?job.version,
                      "a peer's job record claims this coordinator's term: not kept");
            } else {
                kept = self.offer(job);
            }
        }
        // A record its list named that the peer did not give is not asked for again from
        // that list; the next pulls go out at once.
        if !kept && let Some(backlog) = self.backlog.get_mut(&peer) {
            backlog.digests.retain(|d| d.id != id);
        }
        self.drain(&peer, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{BlobHash, FrameRange, JobSpec, Term, Version, plan};

    use super::*;

    fn job(frames: FrameRange, seq: u64) -> Job {
        let spec = JobSpec {
            chunk: Some(1),
            ..JobSpec::new("shot.blend", BlobHash::of(b"shot"), 4, frames)
        };
        let plan = plan(&spec, 1);
        let origin = NodeId::from_bytes(*b"origin").expect("a node id");
        let mut job = Job::new(JobId([5; 16]), spec, origin, plan, Term(1), 0);
        job.version = Version { term: Term(1), seq };
        job
    }

    #[test]
    fn a_newer_record_is_kept_and_a_forged_one_is_not() {
        let mut table = JobTable::default();
        assert!(table.offer(job(FrameRange::new(1, 4).expect("a range"), 1)));
        assert!(
            !table.offer(job(FrameRange::new(1, 4).expect("a range"), 1)),
            "not newer"
        );
        // A higher version that rewrites a task's frames outside the job: refused, whatever
        // its version.
        let mut forged = job(FrameRange::new(1, 4).expect("a range"), 99);
        forged.tasks[0].frames = FrameRange {
            start: 0,
            end: 4_000_000,
            step: 1,
        };
        assert!(!table.offer(forged));
        let kept = table.get(&JobId([5; 16])).expect("the first record");
        assert_eq!(kept.version.seq, 1);
    }

    /// Record `id` (a byte) in version `seq` of term 1.
    fn record(id: u8, seq: u64) -> Job {
        let mut job = job(FrameRange::new(1, 4).expect("a range"), seq);
        job.id = JobId([id; 16]);
        job
    }

    fn digest(job: &Job) -> JobDigest {
        JobDigest {
            id: job.id,
            version: job.version,
        }
    }

    /// The `GetJob` (or `GetJobSince`) and `Digests` requests `out` holds.
    fn asked(out: &mut Outbox) -> (Vec<(JobId, Ticket)>, Vec<Ticket>) {
        let mut pulls = Vec::new();
        let mut lists = Vec::new();
        for action in out.take_actions() {
            match action {
                super::super::Action::Send {
                    request: Request::GetJob(id) | Request::GetJobSince { id, .. },
                    ticket,
                    ..
                } => pulls.push((id, ticket)),
                super::super::Action::Send {
                    request: Request::Digests,
                    ticket,
                    ..
                } => lists.push(ticket),
                _ => {}
            }
        }
        (pulls, lists)
    }

    /// A follower of node "coordinator" hearing it advertise `advertised` and `digest` at `now`.
    fn follow(
        mine: &mut JobTable,
        advertised: &[JobDigest],
        digest: TableDigest,
        now: super::super::Millis,
        out: &mut Outbox,
    ) {
        let coordinator = NodeId::from_bytes(*b"coordinator").expect("a node id");
        mine.catch_up(&coordinator, advertised, digest, None, false, now, out);
    }

    /// Issue 13: a heartbeat names only the records changed most recently; a node whose
    /// table still differs from its coordinator's by digest pulls the whole list of versions
    /// and then every record it names, until the tables agree; a list that names nothing
    /// to pull is not asked for again for a while.
    #[test]
    fn a_table_that_differs_pulls_the_list_and_every_record_it_names() {
        let mut theirs = JobTable::default();
        let records: Vec<Job> = (0..20).map(|i| record(i, 3)).collect();
        for r in &records {
            theirs.insert(r.clone());
            theirs.unsaved();
        }
        assert_eq!(theirs.digests().len(), limits::MAX_DIGESTS);
        assert_eq!(
            theirs.digests()[0].id,
            JobId([19; 16]),
            "the latest change first"
        );
        let mut mine = JobTable::default();
        let mut out = Outbox::new(NodeId::from_bytes(*b"me").expect("a node id"));
        // Nothing advertised, but the digests differ: the whole list is asked for.
        follow(&mut mine, &[], theirs.digest(), 0, &mut out);
        let (pulls, lists) = asked(&mut out);
        assert!(pulls.is_empty());
        assert_eq!(lists.len(), 1);
        let list = Ok(Response::Digests(theirs.versions()));
        assert!(mine.pulled(lists[0], &list, 10, &mut out));
        // Then every record, a few at a time, each answer sending the next pull.
        let mut rounds = 0;
        loop {
            let (pulls, lists) = asked(&mut out);
            assert!(lists.is_empty());
            if pulls.is_empty() {
                break;
            }
            assert!(pulls.len() <= MAX_PULLS);
            for (id, ticket) in pulls {
                let job = theirs.get(&id).expect("listed").clone();
                assert!(mine.pulled(ticket, &Ok(Response::Job(Box::new(job))), 20, &mut out));
            }
            rounds += 1;
        }
        assert!(rounds >= 20 / MAX_PULLS);
        assert_eq!(mine.digest(), theirs.digest(), "the tables agree");
        follow(&mut mine, &[], theirs.digest(), 30, &mut out);
        assert_eq!(asked(&mut out), (Vec::new(), Vec::new()));
        // A record held here in a newer version than the coordinator's: the list names
        // nothing to pull, and is not asked for again within LIST_AGAIN_MS.
        mine.offer(record(0, 9));
        follow(&mut mine, &[], theirs.digest(), 40, &mut out);
        let (_, lists) = asked(&mut out);
        assert_eq!(lists.len(), 1);
        assert!(mine.pulled(lists[0], &list, 50, &mut out));
        assert_eq!(asked(&mut out), (Vec::new(), Vec::new()));
        follow(&mut mine, &[], theirs.digest(), 60, &mut out);
        assert_eq!(asked(&mut out), (Vec::new(), Vec::new()));
        follow(
            &mut mine,
            &[],
            theirs.digest(),
            50 + LIST_AGAIN_MS,
            &mut out,
        );
        assert_eq!(asked(&mut out).1.len(), 1, "asked again");
        // What a heartbeat advertises newer is pulled at once.
        let newer = record(5, 7);
        follow(&mut mine, &[digest(&newer)], theirs.digest(), 70, &mut out);
        let (pulls, _) = asked(&mut out);
        assert_eq!(
            pulls.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![newer.id]
        );
    }

    /// Issue 13: a follower pulled a running job's whole record (thousands of tasks) at every
    /// version it heard of. Now it asks for what changed since the version it holds: a node
    /// that served that version answers with the changed tasks alone, and the follower's copy
    /// becomes the coordinator's; a node that did not (or a job that ended) answers with the
    /// whole record. Changes that do not apply to the follower's copy are not kept.
    #[test]
    fn a_follower_pulls_what_changed_since_the_version_it_holds() {
        let mut theirs = JobTable::default();
        let mut job = job(FrameRange::new(1, 400).expect("a range"), 1);
        job.spec.chunk = None;
        job.tasks = Vec::new();
        for _ in 0..300 {
            job.carve(1, Term(1));
        }
        theirs.insert(job.clone());
        let id = job.id;
        let mut mine = JobTable::default();
        let mut out = Outbox::new(NodeId::from_bytes(*b"me").expect("a node id"));
        // The first pull, of a job not held here: the whole record.
        follow(&mut mine, &[digest(&job)], theirs.digest(), 0, &mut out);
        let pulls = out.take_actions();
        let [
            super::super::Action::Send {
                request: Request::GetJob(pulled),
                ticket,
                ..
            },
        ] = &pulls[..]
        else {
            panic!("one GetJob expected: {pulls:?}");
        };
        assert_eq!(*pulled, id);
        let answer = theirs.answer_pull(id, None);
        assert!(matches!(answer, Response::Job(_)));
        assert!(mine.pulled(*ticket, &Ok(answer), 10, &mut out));
        assert_eq!(mine.get(&id), Some(&job));

        // Two tasks change and one more is cut: the next pull takes those three.
        let current = theirs.get_mut(&id).expect("held");
        current
            .assign(7, NodeId::from_bytes(*b"w").expect("a node id"), Term(1))
            .unwrap();
        current
            .assign(8, NodeId::from_bytes(*b"w").expect("a node id"), Term(1))
            .unwrap();
        current.carve(1, Term(1));
        let newer = current.clone();
        follow(&mut mine, &[digest(&newer)], theirs.digest(), 20, &mut out);
        let pulls = out.take_actions();
        let [
            super::super::Action::Send {
                request: Request::GetJobSince { id: pulled, since },
                ticket,
                ..
            },
        ] = &pulls[..]
        else {
            panic!("one GetJobSince expected: {pulls:?}");
        };
        assert_eq!((*pulled, *since), (id, job.version));
        let answer = theirs.answer_pull(id, Some(*since));
        let Response::JobChanges(changes) = &answer else {
            panic!("changes expected: {answer:?}");
        };
        let changed: Vec<u32> = changes.tasks.iter().map(|t| t.index).collect();
        assert_eq!(changed, [7, 8, 300]);
        assert!(mine.pulled(*ticket, &Ok(answer.clone()), 30, &mut out));
        assert_eq!(mine.get(&id), Some(&newer));
        // Asked again from the same version, the same changes.
        assert_eq!(theirs.answer_pull(id, Some(job.version)), answer);

        // A node that never served the version asked about answers the whole record.
        let mut other = JobTable::default();
        other.insert(newer.clone());
        assert!(matches!(
            other.answer_pull(id, Some(job.version)),
            Response::Job(_)
        ));
        // Changes from a version other than the one held here are not kept.
        let current = theirs.get_mut(&id).expect("held");
        current.carve(1, Term(1));
        let stale = theirs.answer_pull(id, Some(job.version));
        assert!(matches!(stale, Response::JobChanges(_)));
        let bump = [JobDigest {
            id,
            version: theirs.get(&id).unwrap().version,
        }];
        follow(&mut mine, &bump, theirs.digest(), 40, &mut out);
        let (pulls, _) = asked(&mut out);
        let [(_, ticket)] = pulls[..] else {
            panic!("one pull expected");
        };
        assert!(mine.pulled(ticket, &Ok(stale), 50, &mut out));
        assert_eq!(
            mine.get(&id),
            Some(&newer),
            "not applied to another version"
        );
    }
}
