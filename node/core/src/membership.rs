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

use std::collections::BTreeMap;
use std::sync::Arc;

use rendermesh_protocol::{Claim, Decision, Heartbeat, NodeId, Role, Term, elect, limits};

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
    /// When that heartbeat was heard.
    pub last_seen: Millis,
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
        self.members.remove(from).is_some()
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
                m.hb = hb;
                m.last_seen = now;
                false
            }
            None => {
                self.members.insert(from, Member { hb, last_seen: now });
                true
            }
        }
    }

    /// Removes the peers unheard for longer than [`limits::PEER_TIMEOUT_MS`] at `now`; returns
    /// them, in id order.
    pub fn expire(&mut self, now: Millis) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_sub(m.last_seen) > limits::PEER_TIMEOUT_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
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
        let mut candidates: Vec<(&NodeId, bool)> = self
            .members
            .iter()
            .filter(|(_, m)| m.hb.role == Role::Worker)
            .map(|(id, m)| (id, m.hb.low_disk))
            .collect();
        if self.role == Role::Worker && !self.in_grace(now) && !self.leaving {
            candidates.push((&self.me, self.low_disk));
        }
        let roomy = candidates.iter().any(|(_, low)| !low);
        let eligible: Vec<&NodeId> = candidates
            .into_iter()
            .filter(|(_, low)| !roomy || !low)
            .map(|(id, _)| id)
            .collect();
        let mut claims: Vec<Claim> = self
            .members
            .iter()
            .filter(|(_, m)| m.hb.claims)
            .map(|(id, m)| Claim {
                node: id.clone(),
                term: m.hb.term,
            })
            .collect();
        if let Some(term) = self.leading {
            claims.push(Claim {
                node: self.me.clone(),
                term,
            });
        }
        let was_leading = self.leading.is_some();
        // A new claim goes above the highest claim this node heard, or above the term most
        // nodes say they have seen if that is higher: a node back from the dead may have missed
        // a claim everyone else heard, and must not claim that term a second time.
        let floor = self.max_term.max(self.quorum_term());
        let decision = elect(&self.me, &eligible, &claims, floor);
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
                self.max_term = self.max_term.max(term);
                Some(Change::Lead(term))
            }
            Decision::Follow(claim) => {
                self.leading = None;
                self.max_term = self.max_term.max(claim.term);
                if self.following.as_ref() == Some(&claim) && !was_leading {
                    return None;
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
        // Its claimant gone, the view has nobody.
        assert_eq!(boot.expire(LATER + limits::PEER_TIMEOUT_MS + 1).len(), 2);
        assert_eq!(
            boot.elect(LATER + limits::PEER_TIMEOUT_MS + 1),
            Some(Change::Nobody {
                stepped_down: false
            })
        );
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
