//! Membership and the coordinator election of one node: the live peers (from their
//! heartbeats), the highest term seen, and whether this node coordinates or whom it follows.
//!
//! [`Membership::heard`] takes each heartbeat; every tick, [`Membership::expire`] drops the
//! peers unheard for [`limits::PEER_TIMEOUT_MS`] and [`Membership::elect`] applies
//! [`rendermesh_protocol::elect`] to what is left. A node does not claim during its first
//! [`ELECTION_GRACE_MS`], so that it hears an existing coordinator first, unless it is alone:
//! [`ALONE_AFTER_MS`] after it started, with no peer heard and no contact (no connection, no
//! dial to a bootstrap node under way), it claims at once. Terms never go down.
//!
//! Only a claim raises the highest term seen: a heartbeat that claims nothing, whatever term
//! it names, changes neither whom this node follows nor which assignments it takes (a buggy
//! or hostile peer cannot stall the mesh with a big number).
//!
//! Heartbeats reach a node two ways, so that what each node handles per second does not grow
//! with the mesh. The coordinator's own is gossiped to everyone; every other node sends its
//! own to the coordinator only, and gossips it only while it follows nobody
//! ([`Membership::publishes`]: while the mesh elects). The coordinator keeps the membership as
//! a record whose version ([`Membership::record_version`]) it raises when a member that counts
//! changes ([`counts`]); its followers pull the record ([`Membership::apply_record`]) when its
//! heartbeat names another version. A member the record names is alive on the coordinator's
//! word for as long as the coordinator is heard ([`Membership::vouch`]); when the coordinator
//! falls silent, each such member has [`limits::PEER_TIMEOUT_MS`] from then to be heard
//! itself, as everyone publishes again, so that the election runs over the live nodes as
//! before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rendermesh_protocol::{Claim, Decision, Heartbeat, NodeId, Role, Term, Version, elect, limits};

use super::Millis;

/// A new node waits this long before it may claim: it hears an existing coordinator first.
pub const ELECTION_GRACE_MS: Millis = limits::PEER_TIMEOUT_MS + 500;

/// A new node that, this long after it started, has heard no peer and has no contact (see
/// [`Membership::set_contacts`]) is alone and claims at once: its mDNS query and its dials of
/// bootstrap nodes have been answered (or failed) well within it on a LAN, so a lone
/// `rendermesh render` does not wait out the whole grace.
pub const ALONE_AFTER_MS: Millis = 500;

/// A live peer: its last heartbeat and when it was heard.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its newest heartbeat.
    pub hb: Arc<Heartbeat>,
    /// When it was last heard itself (or a record named it; see [`Membership::seen`]).
    pub last_seen: Millis,
    /// The coordinator's record this node holds names it: it counts as heard whenever that
    /// coordinator is.
    pub listed: bool,
}

/// What an election changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This node coordinates from now on, in this term (a new claim, or a higher term).
    Lead(Term),
    /// This node follows this coordinator from now on (`stepped_down`: it coordinated until now).
    Follow {
        /// The coordinator and its term.
        claim: Claim,
        /// This node was coordinating and is deposed.
        stepped_down: bool,
    },
    /// Nobody coordinates in this node's view any more (`stepped_down` as above).
    Nobody {
        /// This node was coordinating.
        stepped_down: bool,
    },
}

/// One node's view of the mesh and of the election.
#[derive(Clone, Debug)]
pub struct Membership {
    me: NodeId,
    role: Role,
    /// When this node started (the election grace counts from it).
    started: Millis,
    /// Live peers, never this node; ordered so that every run visits them alike.
    members: BTreeMap<NodeId, Member>,
    /// The highest term seen anywhere.
    max_term: Term,
    /// `Some(term)` while this node coordinates.
    leading: Option<Term>,
    /// The coordinator this node follows.
    following: Option<Claim>,
    /// This node is low on disk: it may not coordinate while another node may.
    low_disk: bool,
    /// This node is leaving the mesh: it may not coordinate.
    leaving: bool,
    /// Peers that said they were leaving, and until when their other heartbeats (reordered,
    /// late) are ignored.
    departed: BTreeMap<NodeId, Millis>,
    /// Other machines this node is in touch with, heard or not: open connections and dials of
    /// bootstrap nodes under way ([`Membership::set_contacts`]).
    contacts: usize,
    /// While it coordinates: the version of its membership record, raised with every change
    /// that counts.
    record_seq: u64,
    /// While it follows: the coordinator whose record it holds, and that record's version
    /// (`None` until the first one arrives); the members it names are alive on the
    /// coordinator's word while the coordinator is heard.
    record: Option<(NodeId, Option<Version>)>,
    /// When the coordinator whose record this node holds was last heard.
    vouched_at: Millis,
}

/// Whether a member's heartbeat changed in what the membership record is for: who it is, how
/// to reach it, what it renders with, whether it may coordinate and what term it has seen.
/// What changes every second (load, tasks, free bytes) does not count: the coordinator alone
/// uses it, from the member's own heartbeats.
pub fn counts(old: &Heartbeat, new: &Heartbeat) -> bool {
    old.name != new.name
        || old.role != new.role
        || old.term != new.term
        || old.claims != new.claims
        || old.low_disk != new.low_disk
        || old.leaving != new.leaving
        || old.addrs != new.addrs
        || old.blender != new.blender
        || old.engines != new.engines
        || old.confinement != new.confinement
        || old.cores != new.cores
        || old.memory != new.memory
}

impl Membership {
    /// A node `me` with `role`, started at `now`, that knows nobody yet.
    pub fn new(me: NodeId, role: Role, now: Millis) -> Self {
        Self {
            me,
            role,
            started: now,
            members: BTreeMap::new(),
            max_term: Term(0),
            leading: None,
            following: None,
            low_disk: false,
            leaving: false,
            departed: BTreeMap::new(),
            contacts: 0,
            record_seq: 0,
            record: None,
            vouched_at: 0,
        }
    }

    /// Whether this node gossips its heartbeat for all to hear: while it coordinates, and
    /// while it follows nobody (the mesh is electing, or it has just started). Otherwise it
    /// sends its heartbeat to the coordinator alone.
    pub fn publishes(&self) -> bool {
        self.leading.is_some() || self.following.is_none()
    }

    /// While this node coordinates: the version of its membership record.
    pub fn record_version(&self) -> Option<Version> {
        self.leading.map(|term| Version {
            term,
            seq: self.record_seq,
        })
    }

    /// While this node coordinates: its membership record, the live peers in id order, at
    /// most [`limits::MAX_MEMBERS`] (each heartbeat without its job digests and held tasks,
    /// which only the coordinator uses).
    pub fn record(&self) -> Vec<rendermesh_protocol::Member> {
        self.members
            .iter()
            .take(limits::MAX_MEMBERS)
            .map(|(id, m)| {
                let mut heartbeat = (*m.hb).clone();
                heartbeat.jobs = Vec::new();
                heartbeat.held = Vec::new();
                rendermesh_protocol::Member {
                    id: id.clone(),
                    heartbeat,
                }
            })
            .collect()
    }

    /// Whose record this node holds, and its version (`None`: it follows that coordinator
    /// and has not had its record yet).
    pub fn held_record(&self) -> Option<&(NodeId, Option<Version>)> {
        self.record.as_ref()
    }

    /// The membership record of `from`, in `version`, pulled at `now`: taken when `from` is
    /// the coordinator this node follows and the version is newer than the one it holds of
    /// it. Its members count as heard now; a member of the record this node held before that
    /// the new one drops is gone (the coordinator saw it leave or fall silent). A member this
    /// node heard itself more recently than the coordinator keeps its own heartbeat. Returns
    /// the members that joined, with their addresses, and those that are gone.
    pub fn apply_record(
        &mut self,
        from: &NodeId,
        version: Version,
        members: Vec<rendermesh_protocol::Member>,
        now: Millis,
    ) -> (Vec<(NodeId, Vec<String>)>, Vec<NodeId>) {
        let mut joined = Vec::new();
        let mut gone = Vec::new();
        if self.following.as_ref().is_none_or(|c| c.node != *from)
            || self
                .record
                .as_ref()
                .is_some_and(|(who, v)| who == from && *v >= Some(version))
        {
            return (joined, gone);
        }
        let mut listed = BTreeSet::new();
        self.vouched_at = self.vouched_at.max(now);
        for member in members.into_iter().take(limits::MAX_MEMBERS) {
            let id = member.id;
            if id == self.me
                || id == *from
                || self.departed.get(&id).is_some_and(|until| now < *until)
            {
                continue;
            }
            let hb = member.heartbeat;
            if hb.claims && hb.role == Role::Worker {
                self.max_term = self.max_term.max(hb.term);
            }
            match self.members.get_mut(&id) {
                Some(m) => {
                    if hb.name != m.hb.name || hb.seq > m.hb.seq {
                        m.hb = Arc::new(hb);
                    }
                    m.last_seen = m.last_seen.max(now);
                    m.listed = true;
                }
                None => {
                    joined.push((id.clone(), hb.addrs.clone()));
                    self.members.insert(
                        id.clone(),
                        Member {
                            hb: Arc::new(hb),
                            last_seen: now,
                            listed: true,
                        },
                    );
                }
            }
            listed.insert(id);
        }
        // The members the record held before named and this one does not: gone, when the
        // same coordinator dropped them; else (another coordinator's, or the members this
        // node knew when it began following) heard no more on anyone's word.
        let same_coordinator = self
            .record
            .as_ref()
            .is_some_and(|(who, v)| who == from && v.is_some());
        let vouched_at = self.vouched_at;
        let dropped: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(id, m)| m.listed && !listed.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dropped {
            if same_coordinator {
                self.members.remove(&id);
                gone.push(id);
            } else if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = m.last_seen.max(vouched_at);
                m.listed = false;
            }
        }
        self.record = Some((from.clone(), Some(version)));
        (joined, gone)
    }

    /// When `m` was last heard, itself or, while the coordinator's record this node holds
    /// names it, on the coordinator's word.
    pub fn seen(&self, m: &Member) -> Millis {
        if m.listed {
            m.last_seen.max(self.vouched_at)
        } else {
            m.last_seen
        }
    }

    /// Every member counts as heard when it last was, on its own or on the coordinator's
    /// word, and no longer on the coordinator's word from now on.
    fn unlist_all(&mut self) {
        let vouched_at = self.vouched_at;
        for m in self.members.values_mut().filter(|m| m.listed) {
            m.last_seen = m.last_seen.max(vouched_at);
            m.listed = false;
        }
        self.record = None;
    }

    /// This node begins following `coordinator`: every member it knows counts as named by its
    /// record until the record arrives. They stopped gossiping when they began following it
    /// too, and would otherwise time out here before the record names them; should the
    /// coordinator die first, each has a whole timeout from its silence to be heard (the
    /// election must not run without the smallest live id).
    fn vouch_until_recorded(&mut self, coordinator: &NodeId) {
        self.unlist_all();
        for (_, m) in self.members.iter_mut().filter(|(id, _)| *id != coordinator) {
            m.listed = true;
        }
        self.record = Some((coordinator.clone(), None));
        if let Some(c) = self.members.get(coordinator) {
            self.vouched_at = self.vouched_at.max(c.last_seen);
        }
    }

    /// The coordinator `from` was heard at `now`: every member of its record this node holds
    /// counts as heard now too.
    pub fn vouch(&mut self, from: &NodeId, now: Millis) {
        if self.record.as_ref().is_some_and(|(who, _)| who == from) {
            self.vouched_at = self.vouched_at.max(now);
        }
    }

    /// How many other machines this node is in touch with: open connections and dials of
    /// bootstrap nodes under way. A node with none, having heard nobody, is alone.
    pub fn set_contacts(&mut self, contacts: usize) {
        self.contacts = contacts;
    }

    /// Whether this node may not claim yet at `now`: during its first [`ELECTION_GRACE_MS`],
    /// or only its first [`ALONE_AFTER_MS`] when it is alone (nobody heard, no contact, nobody
    /// departed).
    fn in_grace(&self, now: Millis) -> bool {
        // A node that claimed while alone stays a candidate when peers show up.
        if self.leading.is_some() {
            return false;
        }
        let alone = self.members.is_empty() && self.contacts == 0 && self.departed.is_empty();
        let grace = if alone {
            ALONE_AFTER_MS
        } else {
            ELECTION_GRACE_MS
        };
        now.saturating_sub(self.started) < grace
    }

    /// This node leaves the mesh: it stops coordinating and never claims again.
    pub fn leave(&mut self) {
        self.leaving = true;
        self.leading = None;
    }

    /// `from` said it is leaving, at `now`: it is dropped at once, and its heartbeats are
    /// ignored for [`limits::PEER_TIMEOUT_MS`] (a late one must not bring it back). Returns
    /// whether it was a member.
    pub fn left(&mut self, from: &NodeId, now: Millis) -> bool {
        if *from == self.me {
            return false;
        }
        self.departed
            .insert(from.clone(), now + limits::PEER_TIMEOUT_MS);
        let was = self.members.remove(from).is_some();
        if was {
            self.record_seq += 1;
        }
        was
    }

    /// This node.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// A heartbeat from `from`, heard at `now`. Returns true when `from` was not a member (a
    /// peer joined). A heartbeat older than the newest one heard from the same run of a peer
    /// (same name, lower `seq`) only counts for its term; this node's own heartbeats are
    /// ignored. Its term counts only when it claims, from a node that may coordinate.
    pub fn heard(&mut self, from: NodeId, hb: Arc<Heartbeat>, now: Millis) -> bool {
        if from == self.me {
            return false;
        }
        if self.departed.get(&from).is_some_and(|until| now < *until) {
            return false;
        }
        if hb.claims && hb.role == Role::Worker {
            self.max_term = self.max_term.max(hb.term);
        }
        match self.members.get_mut(&from) {
            Some(m) if hb.seq < m.hb.seq && hb.name == m.hb.name => false,
            Some(m) => {
                if counts(&m.hb, &hb) {
                    self.record_seq += 1;
                }
                m.hb = hb;
                m.last_seen = now;
                false
            }
            None => {
                self.record_seq += 1;
                self.members.insert(
                    from,
                    Member {
                        hb,
                        last_seen: now,
                        listed: false,
                    },
                );
                true
            }
        }
    }

    /// Removes the peers unheard for longer than [`limits::PEER_TIMEOUT_MS`] at `now`; returns
    /// them, in id order.
    pub fn expire(&mut self, now: Millis) -> Vec<NodeId> {
        // The coordinator whose record this node holds fell silent: the members it vouched
        // for have a timeout from now to be heard themselves (everyone publishes again).
        let vouching = self.record.as_ref().map(|(who, _)| who.clone());
        if let Some(who) = vouching
            && self
                .members
                .get(&who)
                .is_none_or(|m| now.saturating_sub(m.last_seen) > limits::PEER_TIMEOUT_MS)
        {
            for m in self.members.values_mut().filter(|m| m.listed) {
                m.last_seen = m.last_seen.max(now);
                m.listed = false;
            }
            self.record = None;
        }
        let gone: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_sub(self.seen(m)) > limits::PEER_TIMEOUT_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.record_seq += 1;
        }
        self.departed.retain(|_, until| now < *until);
        gone
    }

    /// This node stood still until `now` (stopped, suspended): every peer counts as heard
    /// now, so that only a silence after the wake-up takes it for gone.
    pub fn woke(&mut self, now: Millis) {
        for m in self.members.values_mut() {
            m.last_seen = m.last_seen.max(now);
        }
    }

    /// This node is low on disk (or has room again).
    pub fn set_low_disk(&mut self, low: bool) {
        self.low_disk = low;
    }

    /// Runs the election over the live view at `now`; returns what changed, if anything. A
    /// node low on disk may not coordinate while another may (a coordinator holds a copy of
    /// every frame and stitches tiles): a coordinator that runs low steps down.
    pub fn elect(&mut self, now: Millis) -> Option<Change> {
        // One pass over the members, allocating only for claims (few): every tick runs this.
        let me_candidate = self.role == Role::Worker && !self.in_grace(now) && !self.leaving;
        let roomy = (me_candidate && !self.low_disk)
            || self
                .members
                .values()
                .any(|m| m.hb.role == Role::Worker && !m.hb.low_disk);
        let may = |role: Role, low: bool| role == Role::Worker && (!roomy || !low);
        // The smallest eligible member (the map is in id order), and every eligible claimant:
        // the election's outcome over them is its outcome over every eligible node.
        let mut eligible: Vec<&NodeId> = Vec::new();
        let mut claims: Vec<Claim> = Vec::new();
        let mut smallest = false;
        for (id, m) in &self.members {
            let ok = may(m.hb.role, m.hb.low_disk);
            if ok && (!smallest || m.hb.claims) {
                eligible.push(id);
                smallest = true;
            }
            if m.hb.claims {
                claims.push(Claim {
                    node: id.clone(),
                    term: m.hb.term,
                });
            }
        }
        if me_candidate && may(self.role, self.low_disk) {
            eligible.push(&self.me);
        }
        if let Some(term) = self.leading {
            claims.push(Claim {
                node: self.me.clone(),
                term,
            });
        }
        let was_leading = self.leading.is_some();
        // A new claim goes above the highest claim this node heard, or above the term most
        // nodes say they have seen if that is higher: a node back from the dead may have missed
        // a claim everyone else heard, and must not claim that term a second time. (Only a
        // new claim uses the floor: it is worked out only then.)
        let mut decision = elect(&self.me, &eligible, &claims, self.max_term);
        let new_claim = Term(self.max_term.0.saturating_add(1));
        if decision == Decision::Lead(new_claim) && self.leading != Some(new_claim) {
            let floor = self.max_term.max(self.quorum_term());
            decision = elect(&self.me, &eligible, &claims, floor);
        }
        match decision {
            // A coordinator that learns of a higher term than its own (a claim from a node
            // that has just stopped claiming, say) claims a term above it, so that its term
            // stays the highest it has seen.
            Decision::Lead(term) if self.leading == Some(term) && self.max_term > term => {
                let term = Term(self.max_term.0.saturating_add(1));
                self.leading = Some(term);
                self.max_term = term;
                Some(Change::Lead(term))
            }
            Decision::Lead(term) if self.leading == Some(term) => None,
            Decision::Lead(term) => {
                self.leading = Some(term);
                self.following = None;
                self.unlist_all();
                self.record_seq += 1;
                self.max_term = self.max_term.max(term);
                Some(Change::Lead(term))
            }
            Decision::Follow(claim) => {
                self.leading = None;
                self.max_term = self.max_term.max(claim.term);
                if self.following.as_ref() == Some(&claim) && !was_leading {
                    return None;
                }
                if self.following.as_ref().is_none_or(|c| c.node != claim.node) {
                    self.vouch_until_recorded(&claim.node);
                }
                self.following = Some(claim.clone());
                Some(Change::Follow {
                    claim,
                    stepped_down: was_leading,
                })
            }
            Decision::Wait(_) | Decision::Nobody => {
                let changed = was_leading || self.following.is_some();
                self.leading = None;
                self.following = None;
                changed.then_some(Change::Nobody {
                    stepped_down: was_leading,
                })
            }
        }
    }

    /// The highest term that at least half of the live nodes that may coordinate (this one
    /// included, with the highest claim it heard) say they have seen claimed: one node naming
    /// a huge term without claiming it (a hostile peer) moves nothing.
    fn quorum_term(&self) -> Term {
        let mut terms: Vec<Term> = self
            .members
            .values()
            .filter(|m| m.hb.role == Role::Worker)
            .map(|m| m.hb.term)
            .collect();
        terms.push(self.max_term);
        terms.sort_unstable_by(|a, b| b.cmp(a));
        terms[terms.len() / 2]
    }

    /// A term seen elsewhere than in a heartbeat (an assignment from the coordinator this
    /// node follows): terms never go down.
    pub fn observe_term(&mut self, term: Term) {
        self.max_term = self.max_term.max(term);
    }

    /// The highest term seen anywhere.
    pub fn max_term(&self) -> Term {
        self.max_term
    }

    /// `Some(term)` while this node coordinates.
    pub fn leading(&self) -> Option<Term> {
        self.leading
    }

    /// The coordinator this node follows, when it does not coordinate itself.
    pub fn following(&self) -> Option<&Claim> {
        self.following.as_ref()
    }

    /// The coordinator in this node's view and its term: itself while it leads, or the
    /// claim it follows.
    pub fn current(&self) -> Option<Claim> {
        match self.leading {
            Some(term) => Some(Claim {
                node: self.me.clone(),
                term,
            }),
            None => self.following.clone(),
        }
    }

    /// The coordinator in this node's view: itself, the one it follows, or nobody.
    pub fn coordinator(&self) -> Option<NodeId> {
        if self.leading.is_some() {
            Some(self.me.clone())
        } else {
            self.following.as_ref().map(|c| c.node.clone())
        }
    }

    /// The live peers (never this node), in id order.
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter()
    }

    /// A live peer.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Whether `id` is a live peer.
    pub fn is_member(&self, id: &NodeId) -> bool {
        self.members.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> NodeId {
        NodeId::from_bytes(format!("node-{i:02}")).expect("a node id")
    }

    /// A heartbeat of a worker named after `i`, in run `seq`, claiming `claims` in `term`.
    fn hb(i: u32, seq: u64, term: u64, claims: bool) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            seq,
            name: format!("w{i}"),
            role: Role::Worker,
            cores: 2,
            memory: 1 << 30,
            blender: Some("Blender 3.4.1".into()),
            engines: Vec::new(),
            confinement: rendermesh_protocol::Confinement::Unsandboxed,
            load: 0.0,
            current: None,
            held: Vec::new(),
            term: Term(term),
            coordinator: None,
            claims,
            jobs: Vec::new(),
            addrs: Vec::new(),
            disk_free: None,
            low_disk: false,
            leaving: false,
            table: Default::default(),
            members: None,
        })
    }

    /// After the grace period.
    const LATER: Millis = ELECTION_GRACE_MS + 1;

    #[test]
    fn the_smallest_id_claims_after_its_grace_and_the_others_wait_then_follow() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        let mut b = Membership::new(n(2), Role::Worker, 0);
        assert!(a.heard(n(2), hb(2, 1, 0, false), 10));
        assert!(b.heard(n(1), hb(1, 1, 0, false), 10));
        assert_eq!(a.elect(100), None, "no claim during the grace period");
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        assert_eq!(a.elect(LATER + 100), None, "nothing changes while it leads");
        assert_eq!(b.elect(LATER), None, "node 2 waits for node 1's claim");
        b.heard(n(1), hb(1, 2, 1, true), LATER + 50);
        let follow = Change::Follow {
            claim: Claim {
                node: n(1),
                term: Term(1),
            },
            stepped_down: false,
        };
        assert_eq!(b.elect(LATER + 100), Some(follow));
        assert_eq!(b.coordinator(), Some(n(1)));
        assert_eq!(b.max_term(), Term(1));
    }

    #[test]
    fn a_node_alone_claims_after_its_probe_and_one_in_touch_with_anyone_waits_its_grace() {
        // Nobody heard, nothing connected, no dial under way: claims once the probe is over.
        let mut alone = Membership::new(n(1), Role::Worker, 1_000);
        assert_eq!(alone.elect(1_000 + ALONE_AFTER_MS - 1), None, "probing");
        assert_eq!(
            alone.elect(1_000 + ALONE_AFTER_MS),
            Some(Change::Lead(Term(1)))
        );
        // Connected to a machine (or dialling a bootstrap node) that has not spoken yet.
        let mut touching = Membership::new(n(2), Role::Worker, 1_000);
        touching.set_contacts(1);
        assert_eq!(touching.elect(1_000 + ALONE_AFTER_MS), None);
        assert_eq!(touching.elect(1_000 + ELECTION_GRACE_MS - 1), None);
        assert_eq!(
            touching.elect(1_000 + ELECTION_GRACE_MS),
            Some(Change::Lead(Term(1)))
        );
        // A peer heard (whose connection already closed) is not nobody.
        let mut heard = Membership::new(n(3), Role::Worker, 0);
        heard.heard(n(4), hb(4, 1, 0, false), 10);
        assert_eq!(heard.elect(ALONE_AFTER_MS), None);
        // Nor is a peer that said it was leaving: the mesh is there, it waits for it.
        let mut left = Membership::new(n(3), Role::Worker, 0);
        left.heard(n(4), hb(4, 1, 0, false), 10);
        left.left(&n(4), 20);
        assert_eq!(left.elect(ALONE_AFTER_MS), None);
        // Once it leads, peers showing up do not put it back in its grace.
        alone.heard(n(6), hb(6, 1, 0, false), 1_000 + ALONE_AFTER_MS + 10);
        assert_eq!(
            alone.elect(1_000 + ALONE_AFTER_MS + 100),
            None,
            "still leads"
        );
        assert_eq!(alone.leading(), Some(Term(1)));
        // A bootstrap node never claims, alone or not.
        let mut boot = Membership::new(n(5), Role::Bootstrap, 0);
        assert_eq!(boot.elect(LATER), None);
    }

    #[test]
    fn a_silent_peer_times_out_and_the_next_smallest_takes_a_higher_term() {
        let mut b = Membership::new(n(2), Role::Worker, 0);
        b.heard(n(1), hb(1, 1, 4, true), LATER);
        b.heard(n(3), hb(3, 1, 4, false), LATER);
        assert!(matches!(b.elect(LATER), Some(Change::Follow { .. })));
        let timeout = LATER + limits::PEER_TIMEOUT_MS;
        b.heard(n(3), hb(3, 2, 4, false), timeout);
        assert!(
            b.expire(timeout).is_empty(),
            "exactly the timeout is not late"
        );
        assert_eq!(b.expire(timeout + 1), vec![n(1)]);
        assert!(b.is_member(&n(3)));
        assert_eq!(b.elect(timeout + 1), Some(Change::Lead(Term(5))));
    }

    #[test]
    fn a_coordinator_that_sees_a_higher_claim_steps_down_and_terms_never_go_down() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        // A healed partition: the other side's coordinator claims a higher term.
        a.heard(n(5), hb(5, 1, 3, true), LATER + 10);
        let change = a.elect(LATER + 100);
        assert_eq!(
            change,
            Some(Change::Follow {
                claim: Claim {
                    node: n(5),
                    term: Term(3)
                },
                stepped_down: true
            })
        );
        assert_eq!(a.leading(), None);
        // A late heartbeat of an older term changes nothing.
        a.heard(n(5), hb(5, 0, 2, true), LATER + 150);
        assert_eq!(a.elect(LATER + 200), None);
        assert_eq!(a.max_term(), Term(3));
        a.observe_term(Term(2));
        assert_eq!(a.max_term(), Term(3));
        a.observe_term(Term(7));
        assert_eq!(a.max_term(), Term(7));
    }

    /// Only claims raise terms: a peer that names a higher term, even u64::MAX, without
    /// claiming (or claims while it may not coordinate) changes nothing here.
    #[test]
    fn a_term_that_nobody_eligible_claims_changes_nothing() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        a.heard(n(7), hb(7, 1, 3, false), LATER + 10);
        a.heard(n(8), hb(8, 1, u64::MAX, false), LATER + 10);
        let mut bootstrap = hb(9, 1, 40, true);
        Arc::make_mut(&mut bootstrap).role = Role::Bootstrap;
        a.heard(n(9), bootstrap, LATER + 10);
        assert_eq!(a.elect(LATER + 100), None);
        assert_eq!((a.leading(), a.max_term()), (Some(Term(1)), Term(1)));
        let mut b = Membership::new(n(2), Role::Worker, 0);
        b.heard(n(1), hb(1, 1, 1, true), LATER);
        b.heard(n(8), hb(8, 1, u64::MAX, false), LATER);
        assert!(matches!(b.elect(LATER), Some(Change::Follow { .. })));
        assert_eq!(
            b.current(),
            Some(Claim {
                node: n(1),
                term: Term(1)
            })
        );
        assert_eq!(b.max_term(), Term(1));
    }

    /// A node back from the dead that missed a claim (term 2, by a node that has stepped down
    /// since) claims above the term most of its peers say they saw claimed, not term 2 again;
    /// one peer naming a huge term moves nothing.
    #[test]
    fn a_claim_goes_above_the_term_most_peers_saw_claimed() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        a.observe_term(Term(1));
        a.heard(n(2), hb(2, 1, 2, false), 10);
        a.heard(n(3), hb(3, 1, 2, false), 10);
        a.heard(n(4), hb(4, 1, u64::MAX, false), 10);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(3))));
        let mut b = Membership::new(n(1), Role::Worker, 0);
        b.heard(n(2), hb(2, 1, 0, false), 10);
        b.heard(n(3), hb(3, 1, u64::MAX, false), 10);
        assert_eq!(b.elect(LATER), Some(Change::Lead(Term(1))));
    }

    /// A coordinator that learns of a higher term from a claim it does not follow (its
    /// claimant is not eligible in this view yet) claims above it.
    #[test]
    fn a_coordinator_that_learns_of_a_higher_claim_claims_above_it() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        a.heard(n(7), hb(7, 1, 3, true), LATER + 10);
        a.expire(LATER + 10 + limits::PEER_TIMEOUT_MS + 1);
        assert_eq!(
            a.elect(LATER + 10 + limits::PEER_TIMEOUT_MS + 1),
            Some(Change::Lead(Term(4)))
        );
        assert_eq!((a.leading(), a.max_term()), (Some(Term(4)), Term(4)));
    }

    /// Issue 12: a coordinator low on disk could neither hold the frames it counts nor
    /// stitch tiles, and the job stalled.
    #[test]
    fn a_coordinator_low_on_disk_steps_down_for_a_node_with_room_and_leads_if_none_has() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        a.heard(n(2), hb(2, 1, 1, false), LATER);
        a.set_low_disk(true);
        assert_eq!(a.elect(LATER), Some(Change::Nobody { stepped_down: true }));
        // Node 2, with room, claims: a follows it.
        a.heard(n(2), hb(2, 2, 2, true), LATER + 10);
        assert!(matches!(
            a.elect(LATER + 10),
            Some(Change::Follow { claim, .. }) if claim.node == n(2)
        ));
        // Every node low on disk: one still coordinates (the smallest id, a).
        let mut low = hb(2, 3, 2, false);
        Arc::make_mut(&mut low).low_disk = true;
        a.heard(n(2), low, LATER + 20);
        assert_eq!(a.elect(LATER + 20), Some(Change::Lead(Term(3))));
    }

    #[test]
    fn of_two_claims_in_one_term_the_smaller_id_wins_and_a_bootstrap_never_leads() {
        let mut c = Membership::new(n(3), Role::Worker, 0);
        c.heard(n(2), hb(2, 1, 6, true), LATER);
        c.heard(n(1), hb(1, 1, 6, true), LATER);
        assert!(matches!(
            c.elect(LATER),
            Some(Change::Follow { claim, .. }) if claim.node == n(1)
        ));
        let mut boot = Membership::new(n(0), Role::Bootstrap, 0);
        assert_eq!(boot.elect(LATER), None, "alone, a bootstrap node waits");
        let mut lone = hb(9, 1, 0, false);
        Arc::make_mut(&mut lone).role = Role::Bootstrap;
        boot.heard(n(9), lone, LATER);
        assert_eq!(boot.elect(LATER), None, "nobody eligible");
        boot.heard(n(4), hb(4, 1, 1, true), LATER);
        assert!(matches!(boot.elect(LATER), Some(Change::Follow { .. })));
        // Its claimant gone, the view has nobody (node 9, known when it began following,
        // has a timeout from the coordinator's silence to be heard).
        assert_eq!(boot.expire(LATER + limits::PEER_TIMEOUT_MS + 1), vec![n(4)]);
        assert_eq!(
            boot.elect(LATER + limits::PEER_TIMEOUT_MS + 1),
            Some(Change::Nobody {
                stepped_down: false
            })
        );
    }

    /// Issue 13: only the coordinator, and nodes following nobody (the mesh is electing),
    /// gossip their heartbeats; a follower sends its own to the coordinator alone.
    #[test]
    fn a_follower_gossips_nothing_and_the_coordinator_and_the_leaderless_do() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        let mut b = Membership::new(n(2), Role::Worker, 0);
        assert!(a.publishes() && b.publishes(), "nobody followed yet");
        a.heard(n(2), hb(2, 1, 0, false), 10);
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        assert!(a.publishes());
        b.heard(n(1), hb(1, 2, 1, true), LATER);
        assert!(matches!(b.elect(LATER), Some(Change::Follow { .. })));
        assert!(!b.publishes());
        // Its coordinator silent, b follows nobody and gossips again.
        let silent = LATER + limits::PEER_TIMEOUT_MS + 1;
        b.expire(silent);
        b.elect(silent);
        assert!(b.publishes());
    }

    /// Issue 13: the coordinator's membership record changes version when a member joins,
    /// leaves, falls silent or changes in what the record is for, and not with its load.
    #[test]
    fn the_record_version_rises_with_what_counts_and_not_with_load() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        assert_eq!(a.record_version(), None, "it does not coordinate");
        assert_eq!(a.elect(LATER), Some(Change::Lead(Term(1))));
        let v0 = a.record_version().expect("it coordinates");
        a.heard(n(2), hb(2, 1, 1, false), LATER);
        let v1 = a.record_version().expect("a version");
        assert!(v1 > v0, "a member joined");
        let mut busy = hb(2, 2, 1, false);
        Arc::make_mut(&mut busy).load = 0.9;
        a.heard(n(2), busy, LATER + 1_000);
        assert_eq!(a.record_version(), Some(v1), "load does not count");
        let mut low = hb(2, 3, 1, false);
        Arc::make_mut(&mut low).low_disk = true;
        a.heard(n(2), low, LATER + 2_000);
        let v2 = a.record_version().expect("a version");
        assert!(v2 > v1, "its disk counts");
        a.heard(n(3), hb(3, 1, 1, false), LATER + 2_000);
        let v3 = a.record_version().expect("a version");
        a.left(&n(3), LATER + 2_100);
        let v4 = a.record_version().expect("a version");
        assert!(v4 > v3, "a member left");
        assert_eq!(
            a.expire(LATER + 2_000 + limits::PEER_TIMEOUT_MS + 1),
            vec![n(2)]
        );
        assert!(
            a.record_version().expect("a version") > v4,
            "a member fell silent"
        );
        assert!(a.record().is_empty());
    }

    /// The record of node 1 (coordinating in term 1) naming `members`, in version `seq`.
    fn record_of(members: &[u32], seq: u64) -> (Version, Vec<rendermesh_protocol::Member>) {
        let version = Version { term: Term(1), seq };
        let members = members
            .iter()
            .map(|&i| rendermesh_protocol::Member {
                id: n(i),
                heartbeat: (*hb(i, 1, 1, false)).clone(),
            })
            .collect();
        (version, members)
    }

    /// Issue 13: a follower learns the mesh from its coordinator's record, only from the
    /// coordinator it follows and only in a newer version; the members live on the
    /// coordinator's word while it is heard, and one the next record drops is gone.
    #[test]
    fn a_follower_takes_the_members_from_its_coordinators_record() {
        let mut b = Membership::new(n(2), Role::Worker, 0);
        let (v, members) = record_of(&[2, 3, 4], 3);
        assert_eq!(
            b.apply_record(&n(1), v, members.clone(), 10),
            (Vec::new(), Vec::new()),
            "not the coordinator it follows"
        );
        b.heard(n(1), hb(1, 1, 1, true), 10);
        assert!(matches!(b.elect(LATER), Some(Change::Follow { .. })));
        let (joined, gone) = b.apply_record(&n(1), v, members.clone(), LATER);
        let joined: Vec<NodeId> = joined.into_iter().map(|(id, _)| id).collect();
        assert_eq!(joined, vec![n(3), n(4)], "never itself");
        assert!(gone.is_empty());
        // An older or the same version changes nothing.
        let (old, fewer) = record_of(&[3], 2);
        assert_eq!(
            b.apply_record(&n(1), old, fewer, LATER),
            (Vec::new(), Vec::new())
        );
        assert!(b.is_member(&n(4)));
        // Long after, the members live on while the coordinator is heard.
        let mut now = LATER;
        for seq in 2..10 {
            now += 1_000;
            b.heard(n(1), hb(1, seq, 1, true), now);
            b.vouch(&n(1), now);
            assert!(b.expire(now).is_empty(), "at {now}");
        }
        assert!(b.is_member(&n(3)) && b.is_member(&n(4)));
        // The next record drops node 4.
        let (v, members) = record_of(&[3], 4);
        let (joined, gone) = b.apply_record(&n(1), v, members, now);
        assert!(joined.is_empty());
        assert_eq!(gone, vec![n(4)]);
        assert!(!b.is_member(&n(4)));
        // A node that said it was leaving is not brought back by a record made before.
        b.left(&n(3), now);
        let (v, members) = record_of(&[3], 5);
        b.apply_record(&n(1), v, members, now + 10);
        assert!(!b.is_member(&n(3)));
    }

    /// Issue 13: when the coordinator falls silent, the members it vouched for have a whole
    /// timeout from then to be heard themselves, so that the election runs over the live ones:
    /// a dead member stalls it no longer than it did before.
    #[test]
    fn when_the_coordinator_falls_silent_its_members_have_a_timeout_to_be_heard() {
        let mut c = Membership::new(n(3), Role::Worker, 0);
        c.heard(n(1), hb(1, 1, 1, true), LATER);
        assert!(matches!(c.elect(LATER), Some(Change::Follow { .. })));
        let (v, members) = record_of(&[2, 3, 4], 1);
        c.apply_record(&n(1), v, members, LATER);
        let silent = LATER + limits::PEER_TIMEOUT_MS + 1;
        assert_eq!(c.expire(silent), vec![n(1)], "only the coordinator");
        assert_eq!(
            c.elect(silent),
            Some(Change::Nobody {
                stepped_down: false
            }),
            "node 2 is the smallest: c waits for its claim"
        );
        // Node 4 is heard; node 2 is not (it died with the coordinator): it times out, and
        // c, now the smallest, claims above the term it saw.
        c.heard(n(4), hb(4, 2, 1, false), silent + 500);
        let later = silent + limits::PEER_TIMEOUT_MS + 1;
        assert_eq!(c.expire(later), vec![n(2)]);
        assert_eq!(c.elect(later), Some(Change::Lead(Term(2))));
        assert!(c.is_member(&n(4)));
    }

    /// Issue 13: the peers a node knew when it began following stopped gossiping then, as they
    /// began following too. Until the coordinator's record arrives they live on its word: a
    /// coordinator that dies first leaves them a whole timeout from its silence, so the
    /// smallest of them still takes over (a fresh-clone CI run saw the next smallest claim).
    #[test]
    fn the_peers_known_on_following_live_on_the_coordinators_word_until_its_record() {
        let mut c = Membership::new(n(3), Role::Worker, 0);
        c.heard(n(2), hb(2, 1, 0, false), LATER - 900);
        c.heard(n(1), hb(1, 2, 1, true), LATER);
        assert!(matches!(c.elect(LATER), Some(Change::Follow { .. })));
        assert_eq!(c.held_record(), Some(&(n(1), None)), "a record to pull");
        // Node 2 went quiet (it follows node 1 too); node 1 is heard, then dies.
        c.heard(n(1), hb(1, 3, 1, true), LATER + 1_000);
        c.vouch(&n(1), LATER + 1_000);
        let silent = LATER + 1_000 + limits::PEER_TIMEOUT_MS + 1;
        assert_eq!(c.expire(silent), vec![n(1)], "only the coordinator");
        assert_eq!(
            c.elect(silent),
            Some(Change::Nobody {
                stepped_down: false
            }),
            "node 2, the smallest, claims: c waits"
        );
        c.heard(n(2), hb(2, 2, 2, true), silent + 500);
        assert!(matches!(
            c.elect(silent + 500),
            Some(Change::Follow { claim, .. }) if claim.node == n(2)
        ));
        // The record names its members; the first one drops none that the node knew.
        let mut d = Membership::new(n(4), Role::Worker, 0);
        d.heard(n(3), hb(3, 1, 0, false), LATER);
        d.heard(n(1), hb(1, 2, 1, true), LATER);
        d.elect(LATER);
        let (v, members) = record_of(&[2, 4], 1);
        let (joined, gone) = d.apply_record(&n(1), v, members, LATER + 100);
        assert_eq!((joined.len(), gone), (1, Vec::new()), "node 2 joined");
        assert_eq!(d.held_record(), Some(&(n(1), Some(v))));
        assert!(d.is_member(&n(3)), "on its own word for a timeout more");
    }

    #[test]
    fn a_restarted_peer_is_heard_again_once_its_old_run_expires() {
        let mut a = Membership::new(n(1), Role::Worker, 0);
        a.heard(n(2), hb(2, 40, 1, false), 1_000);
        // Its new run starts counting again: an older seq from the same name is ignored...
        assert!(!a.heard(n(2), hb(2, 1, 1, false), 1_500));
        assert_eq!(a.member(&n(2)).map(|m| m.hb.seq), Some(40));
        // ...until the old run is forgotten, and the new one joins.
        assert_eq!(a.expire(1_000 + limits::PEER_TIMEOUT_MS + 1), vec![n(2)]);
        assert!(a.heard(n(2), hb(2, 5, 1, false), 4_000));
    }
}
