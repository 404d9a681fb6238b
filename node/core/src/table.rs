//! The replicated job table: every node holds a copy of every job record. Only the coordinator
//! writes records (each write raises the record's [`Version`]); peers advertise
//! `(id, version)` digests in their heartbeats, and a node pulls every record a peer holds in
//! a newer version than its own.
//!
//! Whom a node pulls from is the core's rule ([`super::Core::heard`]): a follower pulls only
//! from the coordinator it follows, and a coordinator pulls from its peers only jobs it holds
//! no record of, written in earlier terms (what its predecessor accepted), never a record
//! claiming its own term.

use std::collections::{BTreeMap, BTreeSet};

use rendermesh_protocol::{
    BlobHash, Job, JobDigest, JobId, NodeId, Response, Term, Version, limits,
};
use tracing::{debug, warn};

use super::{Outbox, Ticket};
use rendermesh_protocol::Request;

/// Job records pulled at once.
pub const MAX_PULLS: usize = 8;

/// One node's copy of every job record, and the pulls under way.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: BTreeMap<JobId, Job>,
    /// Pulls under way: the ticket of each `GetJob`, the job it asks for, and the term the
    /// answer's version must stay below, if any.
    pulling: BTreeMap<Ticket, (JobId, Option<Term>)>,
    /// The version of each record as it was last handed out to be written to disk.
    saved: BTreeMap<JobId, Version>,
    /// Tombstones forgotten in this run: never pulled back from a peer that still holds one.
    forgotten: BTreeSet<JobId>,
    /// Tombstones forgotten and not yet handed out to be deleted from disk.
    unsaved_forgotten: Vec<JobId>,
    /// A record may have changed since [`JobTable::unsaved`] last looked: set by every way
    /// to write one, so that the look (after every event) costs nothing when none did.
    touched: bool,
}

impl JobTable {
    /// One job, if this node holds a copy.
    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// One job, to write (the coordinator only).
    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        self.touched = true;
        self.jobs.get_mut(id)
    }

    /// Whether this node holds a copy of `id`.
    pub fn contains(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }

    /// Adds a record this node wrote (the coordinator accepting a job).
    pub fn insert(&mut self, job: Job) {
        self.touched = true;
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
        kept
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
        for id in &old {
            self.jobs.remove(id);
            self.saved.remove(id);
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
            let stitched = job.stitched.iter().any(|o| o.blob == *blob);
            let rendered = job
                .all_tasks()
                .filter(|t| t.outputs.iter().any(|o| o.blob == *blob))
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
        self.touched = true;
        self.jobs.values_mut()
    }

    /// Every record, newest first.
    pub fn newest_first(&self) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
        jobs
    }

    /// What this node's heartbeat advertises: the newest records' ids and versions.
    pub fn digests(&self) -> Vec<JobDigest> {
        self.newest_first()
            .into_iter()
            .take(limits::MAX_DIGESTS)
            .map(|j| JobDigest {
                id: j.id,
                version: j.version,
            })
            .collect()
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
            self.touched = true;
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
                && !self.pulling.values().any(|(id, _)| *id == d.id)
            {
                let ticket = out.send(peer.clone(), Request::GetJob(d.id));
                self.pulling.insert(ticket, (d.id, below));
            }
        }
    }

    /// The answer to a pull. Returns false when `ticket` is not a pull.
    pub fn pulled(&mut self, ticket: Ticket, answer: &Result<Response, String>) -> bool {
        let Some((id, below)) = self.pulling.remove(&ticket) else {
            return false;
        };
        if let Ok(Response::Job(job)) = answer
            && job.id == id
        {
            if below.is_some_and(|t| job.version.term >= t) {
                // Only this coordinator writes in its term.
                warn!(job = %id.short(), version = ?job.version,
                      "a peer's job record claims this coordinator's term: not kept");
            } else {
                self.offer((**job).clone());
            }
        }
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
}
