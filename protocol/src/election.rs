//! The coordinator election rule: a pure function of one node's view of the live mesh.
//!
//! Every node runs [`elect`] on each tick over the nodes it has heard from in the last
//! [`crate::limits::PEER_TIMEOUT_MS`], and the claims in their heartbeats:
//!
//! 1. Among live eligible nodes that claim to coordinate, the one with the highest term wins;
//!    equal terms go to the smallest node id. Everyone follows it; a claimant that is not the
//!    winner steps down.
//! 2. When nobody live claims, the smallest live eligible node id claims the term one above the
//!    highest term any node has seen. The others wait for its heartbeat.
//!
//! The rule prefers the incumbent (a joining node with a smaller id does not take over), gives one
//! winner for one view, and on a healed partition deposes every coordinator but the one with the
//! highest term. Terms never go down, so an assignment stamped with an older term is recognised
//! as stale everywhere.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use crate::id::{NodeId, Term};

/// A live node's claim to coordinate in `term`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The claimant.
    pub node: NodeId,
    /// The term it claims.
    pub term: Term,
}

/// What one node should do after looking at its view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Coordinate in this term (either keep coordinating, or claim a new term).
    Lead(Term),
    /// Follow this coordinator (step down if this node was claiming).
    Follow(Claim),
    /// Nobody coordinates yet; this node is not the one to claim. The candidate is named.
    Wait(NodeId),
    /// No eligible node is live (a lone bootstrap node, say).
    Nobody,
}

/// Applies the rule for `me`.
///
/// `eligible` lists the live nodes that may coordinate (including `me` if it may); `claims`
/// lists live nodes' current claims (including `me`'s own, if it is claiming); `max_term` is the
/// highest term this node has seen anywhere.
pub fn elect<E: Borrow<NodeId>>(
    me: &NodeId,
    eligible: &[E],
    claims: &[Claim],
    max_term: Term,
) -> Decision {
    let live = |node: &NodeId| eligible.iter().any(|e| e.borrow() == node);
    let winner = claims
        .iter()
        .filter(|c| live(&c.node))
        .max_by(|a, b| a.term.cmp(&b.term).then_with(|| b.node.cmp(&a.node)));
    if let Some(w) = winner {
        return if &w.node == me {
            Decision::Lead(w.term)
        } else {
            Decision::Follow(w.clone())
        };
    }
    match eligible.iter().map(Borrow::borrow).min() {
        Some(candidate) if candidate == me => Decision::Lead(Term(max_term.0.saturating_add(1))),
        Some(candidate) => Decision::Wait(candidate.clone()),
        None => Decision::Nobody,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::from_bytes(s.as_bytes()).expect("a node id")
    }

    fn claim(s: &str, t: u64) -> Claim {
        Claim {
            node: n(s),
            term: Term(t),
        }
    }

    #[test]
    fn smallest_id_claims_a_new_term_when_nobody_leads() {
        let live = [n("b"), n("a"), n("c")];
        assert_eq!(elect(&n("a"), &live, &[], Term(4)), Decision::Lead(Term(5)));
        assert_eq!(elect(&n("b"), &live, &[], Term(4)), Decision::Wait(n("a")));
        assert_eq!(elect(&n("c"), &live, &[], Term(4)), Decision::Wait(n("a")));
    }

    #[test]
    fn the_incumbent_keeps_leading_when_a_smaller_id_joins() {
        let live = [n("a"), n("b"), n("c")];
        let claims = [claim("b", 2)];
        for me in ["a", "b", "c"] {
            let d = elect(&n(me), &live, &claims, Term(2));
            if me == "b" {
                assert_eq!(d, Decision::Lead(Term(2)));
            } else {
                assert_eq!(d, Decision::Follow(claim("b", 2)));
            }
        }
    }

    #[test]
    fn after_a_heal_the_higher_term_wins_and_the_other_steps_down() {
        let live = [n("a"), n("b"), n("c"), n("d")];
        let claims = [claim("a", 3), claim("c", 5)];
        assert_eq!(
            elect(&n("a"), &live, &claims, Term(5)),
            Decision::Follow(claim("c", 5))
        );
        assert_eq!(
            elect(&n("c"), &live, &claims, Term(5)),
            Decision::Lead(Term(5))
        );
        assert_eq!(
            elect(&n("d"), &live, &claims, Term(5)),
            Decision::Follow(claim("c", 5))
        );
    }

    #[test]
    fn equal_terms_go_to_the_smaller_id() {
        let live = [n("a"), n("b"), n("c")];
        let claims = [claim("b", 1), claim("a", 1)];
        for me in ["a", "b", "c"] {
            let d = elect(&n(me), &live, &claims, Term(1));
            if me == "a" {
                assert_eq!(d, Decision::Lead(Term(1)));
            } else {
                assert_eq!(d, Decision::Follow(claim("a", 1)));
            }
        }
    }

    #[test]
    fn when_the_coordinator_vanishes_all_survivors_agree_on_the_next() {
        // Three nodes, "b" coordinated in term 7 and is gone from everyone's view.
        let live = [n("a"), n("c"), n("d")];
        let decisions: Vec<_> = live
            .iter()
            .map(|me| elect(me, &live, &[], Term(7)))
            .collect();
        assert_eq!(decisions[0], Decision::Lead(Term(8)));
        assert!(decisions[1..].iter().all(|d| *d == Decision::Wait(n("a"))));
        // Once "a" claims, everyone follows it.
        let claims = [claim("a", 8)];
        for me in &live[1..] {
            assert_eq!(
                elect(me, &live, &claims, Term(8)),
                Decision::Follow(claim("a", 8))
            );
        }
    }

    #[test]
    fn ineligible_claimants_are_ignored() {
        // "boot" is a bootstrap node; it may not coordinate even if it claims.
        let eligible = [n("x"), n("y")];
        let claims = [claim("boot", 9)];
        assert_eq!(
            elect(&n("x"), &eligible, &claims, Term(9)),
            Decision::Lead(Term(10))
        );
        assert_eq!(
            elect::<NodeId>(&n("boot"), &[], &[], Term(9)),
            Decision::Nobody
        );
    }
}
