//! Which piece of a blob to ask of whom, when several peers hold it (a swarm).
//!
//! A blob of more than one chunk is fetched in pieces of [`PIECE_CHUNKS`] chunks. Every peer
//! that may hold any of it (its *sources*) says which chunks it holds and which are on their way
//! to it ([`rendermesh_protocol::Request::BlobHave`]), asked again a few times a second while the
//! fetch waits for pieces. [`Swarm::pick`] then chooses:
//!
//! 1. a missing piece held by a source that is not the blob's origin (the peers the job names),
//!    in an order of pieces that differs per node (so nodes fetching at once start apart), from
//!    the least busy such source;
//! 2. only then, a piece from the origin, and none that another source holds or that is on its
//!    way to one (it will be held there soon; once that source has shown no progress for
//!    [`PATIENCE`], the claim is no longer believed). The pieces are shared out among the nodes fetching the blob at once (the
//!    sources that say it is arriving there, and this node) by rendezvous hashing: each takes
//!    its own share from the origin first, and the others' only after.
//!
//! So nodes fetching one blob at once each take distinct pieces from the origin and the rest
//! from each other, and the origin uploads about one copy instead of one per node. Pure
//! bookkeeping: no I/O, the time passed in (the node's `fetch` drives it over the network; the
//! simulator's swarm scenarios, `node/core/tests/swarm.rs`, over simulated links).

use rendermesh_protocol::NodeId;

use crate::Millis;

/// Chunks in a piece: the unit of a blob shared out among the nodes fetching it (4 MiB).
pub const PIECE_CHUNKS: u64 = 4;
/// Consecutive pieces asked of one source at once, at most (64 MiB): each ask is a stream of
/// its own, and a new stream starts slow (its flow-control window grows as it goes), so a
/// source that holds a run of pieces nobody else needs is asked for the run.
pub const RUN_PIECES: usize = 16;
/// Asks a fetch has in flight at once, from all its sources.
pub const ASKS_IN_FLIGHT: usize = 4;
/// Asks a fetch has in flight to one source at once.
pub const ASKS_PER_SOURCE: usize = 2;
/// Times a source may fail a piece (a broken transfer, a stall) before the fetch gives it up.
pub const SOURCE_FAILURES: u32 = 2;
/// How long a piece said to be on its way to another source is left to it, rather than asked of
/// the origin, after that source last showed progress: a frozen peer's claim holds nobody back
/// for longer, and a slow one that makes progress keeps its claims.
pub const PATIENCE: Millis = 3_000;
/// How long a source that failed a piece is left alone (its connection reset under load, say).
pub const REST: Millis = 500;
/// How often a fetch in pieces asks its sources again what they hold.
pub const ASK_AGAIN: Millis = 250;
/// How long a source may take to say what it holds before it counts as saying nothing this
/// time (it is asked again next time).
pub const ASK_TIMEOUT: Millis = 1_000;

/// A peer a fetch may take pieces from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The peer.
    pub peer: NodeId,
    /// Named by the job as holding the blob (its origin): asked last.
    pub origin: bool,
    /// The chunks it holds, as it last said; `None` before it said (an origin is then taken to
    /// hold them all: older nodes cannot say).
    held: Option<Vec<bool>>,
    /// The chunks on their way to it, as it last said.
    coming: Vec<bool>,
    /// Asks to it not answered yet.
    in_flight: usize,
    /// Pieces it failed.
    failures: u32,
    /// It said the blob is arriving there, not whole: it fetches it too.
    fetching: bool,
    /// When it was first heard, or last said it holds more than before: what it says is on its
    /// way there is believed for [`PATIENCE`] after.
    progress_at: Option<Millis>,
    /// Not asked before then: it just failed a piece.
    rest_until: Option<Millis>,
}

impl Source {
    fn live(&self) -> bool {
        self.failures < SOURCE_FAILURES
    }

    fn holds(&self, chunks: std::ops::Range<u64>) -> bool {
        match &self.held {
            Some(held) => chunks.clone().all(|i| held.get(i as usize) == Some(&true)),
            None => self.origin,
        }
    }

    /// Whether it said it holds the whole blob.
    fn whole(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.iter().all(|c| *c))
    }

    fn expects(&self, chunks: std::ops::Range<u64>) -> bool {
        chunks
            .clone()
            .any(|i| self.coming.get(i as usize) == Some(&true))
    }
}

/// Where a piece stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Missing,
    /// Asked of source `.0`.
    Asked(usize),
    Held,
}

/// The first 8 bytes of the blake3 hash of `parts`, in order, as a number: a node's seed for
/// its order of pieces, and a rendezvous score.
pub fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("8 bytes");
    u64::from_le_bytes(bytes)
}

/// What a source says of a blob: the chunks it holds and the chunks on their way to it, one
/// flag per chunk each.
pub type Said = (Vec<bool>, Vec<bool>);

/// Consecutive pieces asked of one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The pieces.
    pub pieces: std::ops::Range<usize>,
    /// The source, by index.
    pub source: usize,
}

/// How a fetch in pieces stands, and what to ask next.
#[derive(Debug)]
pub struct Swarm {
    chunks: u64,
    pieces: Vec<Piece>,
    /// Piece indices in this node's order.
    order: Vec<usize>,
    sources: Vec<Source>,
    /// This node, as the rendezvous hashing knows it.
    me: NodeId,
    /// Per piece: whether it is this node's to take from the origin (its share, among the
    /// nodes fetching the blob).
    mine: Vec<bool>,
}

impl Swarm {
    /// A fetch by `me` of a blob of `chunks` chunks from `sources` (`(peer, origin)`), its
    /// pieces taken in an order starting at piece `seed % pieces` (each node its own seed).
    pub fn new(me: NodeId, chunks: u64, sources: Vec<(NodeId, bool)>, seed: u64) -> Self {
        let count = chunks.div_ceil(PIECE_CHUNKS).max(1) as usize;
        let start = (seed % count as u64) as usize;
        Self {
            me,
            mine: vec![true; count],
            chunks,
            pieces: vec![Piece::Missing; count],
            order: (0..count).map(|i| (start + i) % count).collect(),
            sources: sources
                .into_iter()
                .map(|(peer, origin)| Source {
                    peer,
                    origin,
                    held: None,
                    coming: Vec::new(),
                    in_flight: 0,
                    failures: 0,
                    fetching: false,
                    progress_at: None,
                    rest_until: None,
                })
                .collect(),
        }
    }

    /// The sources, in the order given.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Source `source` said what it holds (`None`: neither held nor arriving there) at `now`.
    pub fn heard(&mut self, source: usize, holding: Option<Said>, now: Millis) {
        let Some(s) = self.sources.get_mut(source) else {
            return;
        };
        let was_fetching = s.fetching;
        let had = s
            .held
            .as_ref()
            .map_or(0, |h| h.iter().filter(|c| **c).count());
        let (held, coming) = holding.unwrap_or_default();
        if held.iter().filter(|c| **c).count() > had || s.progress_at.is_none() {
            s.progress_at = Some(now);
        }
        // A holding of another length is not this blob's: nothing held.
        let fits = held.len() as u64 == self.chunks && coming.len() as u64 == self.chunks;
        s.fetching = fits && held.contains(&false);
        s.held = Some(if fits { held } else { Vec::new() });
        s.coming = if fits { coming } else { Vec::new() };
        if s.fetching != was_fetching {
            self.share_out();
        }
    }

    /// Shares the pieces out among the nodes fetching the blob: each piece is the node's whose
    /// hash with it is highest (rendezvous hashing), so that the share of each stays put as
    /// nodes come and go.
    fn share_out(&mut self) {
        let fetchers: Vec<Vec<u8>> = self
            .sources
            .iter()
            .filter(|s| s.fetching)
            .map(|s| s.peer.as_bytes().to_vec())
            .collect();
        let me = self.me.as_bytes().to_vec();
        let score = |node: &[u8], piece: usize| hash_u64(&[node, &(piece as u64).to_le_bytes()]);
        for (piece, mine) in self.mine.iter_mut().enumerate() {
            let own = score(&me, piece);
            *mine = fetchers.iter().all(|other| score(other, piece) < own);
        }
    }

    /// The chunks of piece `piece`.
    pub fn range(&self, piece: usize) -> std::ops::Range<u64> {
        self.chunks_of(piece..piece + 1)
    }

    /// The chunks of pieces `pieces`.
    pub fn chunks_of(&self, pieces: std::ops::Range<usize>) -> std::ops::Range<u64> {
        let first = pieces.start as u64 * PIECE_CHUNKS;
        first..(pieces.end as u64 * PIECE_CHUNKS).min(self.chunks)
    }

    /// Whether every piece is held.
    pub fn done(&self) -> bool {
        self.pieces.iter().all(|p| *p == Piece::Held)
    }

    /// Asks not answered yet.
    pub fn in_flight(&self) -> usize {
        self.sources.iter().map(|s| s.in_flight).sum()
    }

    /// Whether piece `piece` may be asked of the origin: no other source holds it, and none
    /// has said it is on its way there within [`PATIENCE`].
    fn for_origin(&self, piece: usize, now: Millis) -> bool {
        let range = self.range(piece);
        let elsewhere = self
            .sources
            .iter()
            .any(|s| !s.origin && s.live() && s.holds(range.clone()));
        let coming = self.sources.iter().any(|s| {
            s.live()
                && s.progress_at.is_some_and(|t| now < t + PATIENCE)
                && s.expects(range.clone())
        });
        !elsewhere && !coming
    }

    /// The next pieces to ask for, and of which source, if any may be asked now (see the module
    /// documentation); marks them asked. A piece is extended into a run of the missing pieces
    /// after it that the same source holds (and, from the origin, that are this node's share
    /// and nobody else's), up to [`RUN_PIECES`].
    pub fn pick(&mut self, now: Millis) -> Option<Ask> {
        if self.in_flight() >= ASKS_IN_FLIGHT {
            return None;
        }
        let missing: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|p| self.pieces[*p] == Piece::Missing)
            .collect();
        let free = |s: &Source| {
            s.live() && s.in_flight < ASKS_PER_SOURCE && s.rest_until.is_none_or(|t| now >= t)
        };
        let from_peers = missing.iter().find_map(|&piece| {
            let range = self.range(piece);
            self.sources
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.origin && free(s) && s.holds(range.clone()))
                // The least busy, and one still fetching before one that has it all.
                .min_by_key(|(_, s)| (s.in_flight, s.whole()))
                .map(|(i, _)| (piece, i))
        });
        // This node's share first.
        let by_share = missing
            .iter()
            .filter(|p| self.mine[**p])
            .chain(missing.iter().filter(|p| !self.mine[**p]));
        let from_origin = || {
            by_share.clone().find_map(|&piece| {
                if !self.for_origin(piece, now) {
                    return None;
                }
                let range = self.range(piece);
                self.sources
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.origin && free(s) && s.holds(range.clone()))
                    .min_by_key(|(_, s)| s.in_flight)
                    .map(|(i, _)| (piece, i))
            })
        };
        let (piece, source) = from_peers.or_else(from_origin)?;
        let s = &self.sources[source];
        let mut end = piece + 1;
        while end < self.pieces.len()
            && end - piece < RUN_PIECES
            && self.pieces[end] == Piece::Missing
            && s.holds(self.range(end))
            && (!s.origin || (self.mine[piece] && self.mine[end] && self.for_origin(end, now)))
        {
            end += 1;
        }
        for p in &mut self.pieces[piece..end] {
            *p = Piece::Asked(source);
        }
        self.sources[source].in_flight += 1;
        Some(Ask {
            pieces: piece..end,
            source,
        })
    }

    /// The pieces of `ask` arrived whole.
    pub fn arrived(&mut self, ask: &Ask) {
        self.sources[ask.source].in_flight -= 1;
        for p in &mut self.pieces[ask.pieces.clone()] {
            *p = Piece::Held;
        }
    }

    /// The pieces of `ask` did not all arrive at `now` (those for which `arrived` says every
    /// chunk did count as held): its source lacked them (`lacked`: not asked for them again
    /// before it says it holds them), or failed (left alone for [`REST`]). A source is given up
    /// after [`SOURCE_FAILURES`] failures, lacking what it said it held counting as one.
    pub fn failed(
        &mut self,
        ask: &Ask,
        lacked: bool,
        now: Millis,
        arrived: impl Fn(std::ops::Range<u64>) -> bool,
    ) {
        for piece in ask.pieces.clone() {
            self.pieces[piece] = if arrived(self.range(piece)) {
                Piece::Held
            } else {
                Piece::Missing
            };
        }
        let range = self.chunks_of(ask.pieces.clone());
        let s = &mut self.sources[ask.source];
        s.in_flight -= 1;
        match (&mut s.held, lacked) {
            // It said it held them, and then lacked them: counted as a failure too, so that a
            // peer that keeps saying so holds the fetch back twice at most.
            (Some(held), true) => {
                for i in range {
                    if let Some(c) = held.get_mut(i as usize) {
                        *c = false;
                    }
                }
                s.failures += 1;
            }
            // An origin that could not say.
            (None, true) => s.held = Some(Vec::new()),
            (_, false) => {
                s.failures += 1;
                s.rest_until = Some(now + REST);
            }
        }
    }

    /// Whether the fetch cannot go on: nothing is in flight, and some missing piece is neither
    /// held by a live source nor on its way to one.
    pub fn stuck(&self) -> bool {
        self.in_flight() == 0
            && (0..self.pieces.len()).any(|piece| {
                let range = self.range(piece);
                self.pieces[piece] == Piece::Missing
                    && !self
                        .sources
                        .iter()
                        .any(|s| s.live() && (s.holds(range.clone()) || s.expects(range.clone())))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PIECE_CHUNKS;

    /// Node ids 1 to 255 (0 is this node).
    fn node(i: u8) -> NodeId {
        NodeId::from_bytes(vec![i]).expect("a node id")
    }

    fn peers(n: usize) -> Vec<NodeId> {
        (1..=n).map(|i| node(i as u8)).collect()
    }

    fn all(chunks: u64, held: bool) -> Vec<bool> {
        vec![held; chunks as usize]
    }

    /// Of a blob of `chunks` chunks, the chunks of `pieces` held.
    fn holding(chunks: u64, pieces: &[u64]) -> Option<Said> {
        let held = (0..chunks).map(|i| pieces.contains(&(i / P))).collect();
        Some((held, all(chunks, false)))
    }

    /// A fetch of `chunks` chunks from origin `p[0]` (source 0) and peer `p[1]` (source 1).
    fn with_origin_and_peer(p: &[NodeId], chunks: u64) -> Swarm {
        Swarm::new(
            node(0),
            chunks,
            vec![(p[0].clone(), true), (p[1].clone(), false)],
            0,
        )
    }

    fn ask(pieces: std::ops::Range<usize>, source: usize) -> Option<Ask> {
        Some(Ask { pieces, source })
    }

    #[test]
    fn the_origin_alone_serves_runs_of_pieces_two_at_a_time() {
        let p = peers(1);
        // 40 pieces, the last one short; this node's order starts at piece 30.
        let chunks = 40 * P - 1;
        let mut swarm = Swarm::new(node(0), chunks, vec![(p[0].clone(), true)], 30);
        let now = 1_000;
        // A run to the blob's end, then one of the most pieces at once, then no more from
        // one source.
        assert_eq!(swarm.pick(now), ask(30..40, 0));
        assert_eq!(swarm.chunks_of(30..40), 30 * P..chunks);
        assert_eq!(swarm.pick(now), ask(0..RUN_PIECES, 0));
        assert_eq!(swarm.pick(now), None);
        swarm.arrived(&Ask {
            pieces: 30..40,
            source: 0,
        });
        assert_eq!(swarm.pick(now), ask(RUN_PIECES..30, 0));
        // A run that broke off half-way: the pieces that arrived whole are kept.
        let broken = Ask {
            pieces: 0..RUN_PIECES,
            source: 0,
        };
        swarm.failed(&broken, false, now, |chunks| chunks.end <= 3 * P);
        assert_eq!(swarm.pick(now + REST), ask(3..RUN_PIECES, 0));
    }

    #[test]
    fn a_piece_another_peer_holds_is_never_asked_of_the_origin() {
        let p = peers(3);
        let chunks = 8 * P;
        let sources = vec![
            (p[0].clone(), true),
            (p[1].clone(), false),
            (p[2].clone(), false),
        ];
        let mut swarm = Swarm::new(node(0), chunks, sources, 0);
        let now = 1_000;
        swarm.heard(0, Some((all(chunks, true), all(chunks, false))), now);
        // Peer 1 holds piece 3, peer 2 holds pieces 0 and 3.
        swarm.heard(1, holding(chunks, &[3]), now);
        swarm.heard(2, holding(chunks, &[0, 3]), now);
        // Held elsewhere first, each from the least busy holder: 0 from peer 2, 3 from peer 1.
        assert_eq!(swarm.pick(now), ask(0..1, 2));
        assert_eq!(swarm.pick(now), ask(3..4, 1));
        // Then the origin, for what nobody else holds, in runs that stop at what others hold.
        let first = swarm.pick(now).expect("from the origin");
        let second = swarm.pick(now).expect("from the origin");
        assert_eq!((first.source, second.source), (0, 0));
        for piece in first.pieces.chain(second.pieces) {
            assert!(![0, 3].contains(&piece), "{piece} is held by a peer");
        }
        assert_eq!(swarm.pick(now), None, "four asks in flight at most");
    }

    #[test]
    fn a_piece_on_its_way_to_a_peer_is_left_to_it_for_a_while() {
        let p = peers(2);
        let chunks = 2 * P;
        let t0 = 1_000;
        let coming: Vec<bool> = (0..chunks).map(|i| i < P).collect();
        let mut swarm = with_origin_and_peer(&p, chunks);
        swarm.heard(1, Some((all(chunks, false), coming.clone())), t0);
        // Piece 0 is coming to peer 1: piece 1 from the origin, and piece 0 waits.
        assert_eq!(swarm.pick(t0), ask(1..2, 0));
        assert_eq!(swarm.pick(t0), None);
        // Still said to be coming when asked again later: the claim dates from the first time.
        let later = t0 + PATIENCE / 2;
        swarm.heard(1, Some((all(chunks, false), coming.clone())), later);
        assert_eq!(swarm.pick(later), None);
        // It arrives there: taken from the peer.
        swarm.heard(1, holding(chunks, &[0]), later);
        assert_eq!(swarm.pick(later), ask(0..1, 1));

        // A claim that stays unfulfilled past the patience is no longer believed.
        let mut swarm = with_origin_and_peer(&p, chunks);
        swarm.heard(1, Some((all(chunks, false), coming.clone())), t0);
        swarm.heard(1, Some((all(chunks, false), coming.clone())), t0 + PATIENCE);
        let picks: Vec<_> = (0..2).filter_map(|_| swarm.pick(t0 + PATIENCE)).collect();
        assert!(
            picks.iter().any(|a| a.pieces.contains(&0) && a.source == 0),
            "{picks:?}"
        );

        // A slow source that shows progress keeps its claims: piece 1 came, piece 0 still comes.
        let mut swarm = with_origin_and_peer(&p, chunks);
        let both: Vec<bool> = all(chunks, true);
        swarm.heard(1, Some((all(chunks, false), both)), t0);
        let later = t0 + PATIENCE;
        swarm.heard(
            1,
            Some(((0..chunks).map(|i| i >= P).collect(), coming)),
            later,
        );
        assert_eq!(swarm.pick(later), ask(1..2, 1));
        assert_eq!(swarm.pick(later), None, "piece 0 is left to peer 1");
    }

    #[test]
    fn nodes_fetching_at_once_share_out_what_they_take_from_the_origin() {
        let [origin, a, b, c] = [1, 2, 3, 4].map(node);
        let now = 1_000;
        let chunks = 24 * P;
        let arriving = || Some((all(chunks, false), all(chunks, false)));
        // Each of three nodes fetching a blob of 24 pieces hears the other two are fetching it.
        let mut swarms: Vec<Swarm> = [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])]
            .into_iter()
            .map(|(me, [one, two])| {
                let sources = vec![
                    (origin.clone(), true),
                    (one.clone(), false),
                    (two.clone(), false),
                ];
                let me = me.clone();
                let mut swarm = Swarm::new(me, chunks, sources, 0);
                swarm.heard(1, arriving(), now);
                swarm.heard(2, arriving(), now);
                swarm
            })
            .collect();
        // Their shares are apart and cover the blob, and each takes its own from the origin.
        let mut owners = vec![0; 24];
        for swarm in &swarms {
            for (piece, mine) in swarm.mine.iter().enumerate() {
                owners[piece] += usize::from(*mine);
            }
        }
        assert_eq!(owners, vec![1; 24]);
        for swarm in &mut swarms {
            while let Some(ask) = swarm.pick(now) {
                assert_eq!(ask.source, 0);
                for piece in ask.pieces {
                    assert!(swarm.mine[piece], "{piece} is another's");
                }
            }
        }
        // A node that stops fetching (its fetch ended, or it says nothing) leaves its share
        // to the others.
        let swarm = &mut swarms[0];
        swarm.heard(1, None, now);
        swarm.heard(2, None, now);
        assert_eq!(swarm.mine, vec![true; 24]);
    }

    #[test]
    fn nodes_with_other_seeds_start_on_other_pieces() {
        let p = peers(1);
        let firsts: Vec<usize> = (0..4)
            .map(|seed| {
                let mut swarm = Swarm::new(
                    node(0),
                    32 * P,
                    vec![(p[0].clone(), true)],
                    seed * 1_000_003,
                );
                swarm.pick(1_000).map(|a| a.pieces.start).unwrap()
            })
            .collect();
        let mut distinct = firsts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{firsts:?}");
    }

    #[test]
    fn a_source_that_fails_twice_is_given_up_and_one_that_lacks_is_not_asked_for_that_piece() {
        let p = peers(2);
        let chunks = 2 * P;
        let mut swarm = with_origin_and_peer(&p, chunks);
        let now = 1_000;
        let none = |_: std::ops::Range<u64>| false;
        swarm.heard(1, Some((all(chunks, true), all(chunks, false))), now);
        assert_eq!(swarm.pick(now), ask(0..2, 1));
        swarm.failed(
            &Ask {
                pieces: 0..2,
                source: 1,
            },
            true,
            now,
            none,
        );
        // Peer 1 said it held the pieces, then lacked them: the origin gives them.
        assert_eq!(swarm.pick(now), ask(0..2, 0));
        swarm.failed(
            &Ask {
                pieces: 0..2,
                source: 0,
            },
            false,
            now,
            none,
        );
        // Left alone for a while after a failure.
        assert_eq!(swarm.pick(now), None);
        let later = now + REST;
        assert_eq!(swarm.pick(later), ask(0..2, 0));
        swarm.failed(
            &Ask {
                pieces: 0..2,
                source: 0,
            },
            false,
            later,
            none,
        );
        // Failed twice: the origin is no source any more, and nobody else holds the blob.
        assert_eq!(swarm.pick(later + REST), None);
        assert!(swarm.stuck());
    }

    #[test]
    fn a_peer_that_keeps_saying_it_holds_what_it_lacks_is_given_up() {
        let p = peers(2);
        let chunks = 2 * P;
        let mut swarm = with_origin_and_peer(&p, chunks);
        let now = 1_000;
        let none = |_: std::ops::Range<u64>| false;
        for _ in 0..SOURCE_FAILURES {
            swarm.heard(1, Some((all(chunks, true), all(chunks, false))), now);
            assert_eq!(swarm.pick(now), ask(0..2, 1));
            swarm.failed(&ask(0..2, 1).expect("an ask"), true, now, none);
        }
        swarm.heard(1, Some((all(chunks, true), all(chunks, false))), now);
        assert_eq!(
            swarm.pick(now),
            ask(0..2, 0),
            "only the origin is asked now"
        );
    }

    #[test]
    fn a_fetch_is_stuck_when_nobody_holds_or_expects_a_missing_piece() {
        let p = peers(2);
        let chunks = 2 * P;
        let mut swarm = with_origin_and_peer(&p, chunks);
        let now = 1_000;
        assert!(!swarm.stuck(), "the origin is taken to hold it all");
        swarm.heard(0, None, now);
        swarm.heard(1, holding(chunks, &[0]), now);
        assert!(swarm.stuck(), "piece 1 is nowhere");
        let coming: Vec<bool> = (0..chunks).map(|i| i >= P).collect();
        swarm.heard(1, Some(((0..chunks).map(|i| i < P).collect(), coming)), now);
        assert!(!swarm.stuck(), "piece 1 is on its way to peer 1");
        // A source that was never heard and is not the origin holds nothing.
        let mut swarm = Swarm::new(node(0), chunks, vec![(p[1].clone(), false)], 0);
        assert!(swarm.stuck());
        assert_eq!(swarm.pick(now), None);
    }
}
