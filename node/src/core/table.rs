//! The replicated job table: every node holds a copy of every job record. Only the coordinator
//! writes records (each write raises the record's [`Version`]); peers advertise
//! `(id, version)` digests in their heartbeats, and a node pulls every record a peer holds in
//! a newer version than its own.

use std::collections::BTreeMap;

use rendermesh_protocol::{Job, JobDigest, JobId, NodeId, Response, Version, limits};
use tracing::debug;

use super::{Outbox, Ticket};
use rendermesh_protocol::Request;

/// Job records pulled at once.
pub const MAX_PULLS: usize = 8;

/// One node's copy of every job record, and the pulls under way.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: BTreeMap<JobId, Job>,
    /// Pulls under way: the ticket of each `GetJob` and the job it asks for.
    pulling: BTreeMap<Ticket, JobId>,
}

impl JobTable {
    /// One job, if this node holds a copy.
    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// One job, to write (the coordinator only).
    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        self.jobs.get_mut(id)
    }

    /// Whether this node holds a copy of `id`.
    pub fn contains(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }

    /// Adds a record this node wrote (the coordinator accepting a job).
    pub fn insert(&mut self, job: Job) {
        self.jobs.insert(job.id, job);
    }

    /// Every record, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Every record, to write (the coordinator only), in id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Job> {
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

    /// A record from a peer: kept when it is newer than this node's copy. Returns whether it
    /// was kept.
    pub fn offer(&mut self, job: Job) -> bool {
        let newer = self
            .jobs
            .get(&job.id)
            .is_none_or(|mine| job.version > mine.version);
        if newer {
            debug!(job = %job.id.short(), version = ?job.version, "job record updated");
            self.jobs.insert(job.id, job);
        }
        newer
    }

    fn is_newer(&self, id: &JobId, version: Version) -> bool {
        self.jobs.get(id).is_none_or(|j| version > j.version)
    }

    /// Pulls, from the peer that advertises it, every record newer than this node's copy,
    /// [`MAX_PULLS`] at a time. `peers` are the live peers and their digests.
    pub fn pull<'a>(
        &mut self,
        peers: impl Iterator<Item = (&'a NodeId, &'a [JobDigest])>,
        out: &mut Outbox,
    ) {
        let mut wanted: Vec<(JobId, NodeId)> = Vec::new();
        for (peer, digests) in peers {
            for d in digests {
                if self.is_newer(&d.id, d.version)
                    && !self.pulling.values().any(|id| *id == d.id)
                    && !wanted.iter().any(|(id, _)| *id == d.id)
                {
                    wanted.push((d.id, peer.clone()));
                }
            }
        }
        for (id, peer) in wanted {
            if self.pulling.len() >= MAX_PULLS {
                break;
            }
            let ticket = out.send(peer, Request::GetJob(id));
            self.pulling.insert(ticket, id);
        }
    }

    /// The answer to a pull. Returns false when `ticket` is not a pull.
    pub fn pulled(&mut self, ticket: Ticket, answer: &Result<Response, String>) -> bool {
        let Some(id) = self.pulling.remove(&ticket) else {
            return false;
        };
        if let Ok(Response::Job(job)) = answer
            && job.id == id
        {
            self.offer((**job).clone());
        }
        true
    }
}
