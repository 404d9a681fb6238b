//! The swarm's scenarios: many nodes fetching one blob at once, each driven by the core's
//! [`Swarm`] (the rules the node's `fetch` follows), over simulated links.
//!
//! The simulation: node 0 is the blob's origin and holds it whole; every other node fetches
//! it, from the origin and up to 15 other nodes (its sources, as a node's `fetch` takes the
//! hinted origin and its connected peers). Each message takes 1 to 20 ms. A node uploads one
//! chunk at a time, [`CHUNK_MS`] each, in the order asked (its upload is the bottleneck, as
//! the origin's is on a LAN). A fetcher asks all its sources what they hold
//! ([`swarm::ASK_AGAIN`] apart, a round waiting for every answer or [`swarm::ASK_TIMEOUT`])
//! and asks for pieces only once the first round is in; a source serves a range only if it
//! holds every chunk of it when asked (else it answers that it lacks it), and the fetcher
//! holds the chunks once the whole range has arrived. A *frozen* node never answers anything;
//! a *liar* says it holds the whole blob and lacks every range asked of it. A failing run
//! names its seed: `SWARM_SEED=<seed> cargo test -p rendermesh-core --test swarm`.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rendermesh_core::Millis;
use rendermesh_core::swarm::{self, Ask, Said, Swarm};
use rendermesh_protocol::NodeId;

/// What uploading one chunk (1 MiB) takes a node: 250 MiB/s.
const CHUNK_MS: Millis = 4;
/// Sources a fetcher takes pieces from at most, the origin included.
const SOURCES: usize = 16;
/// Seeds per scenario.
const SEEDS: u64 = 10;

fn seeds() -> Vec<u64> {
    match std::env::var("SWARM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..SEEDS).collect(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Honest,
    Frozen,
    Liar,
}

/// One fetch under way.
struct Fetch {
    swarm: Swarm,
    /// Source index to node index.
    sources: Vec<usize>,
    /// Whether the first round of answers is in.
    heard: bool,
    /// Rounds in a row that found the fetch stuck (the fetch fails at 2 with nothing in
    /// flight, as the node's does).
    stuck_rounds: u32,
    /// A round of questions is out.
    asking: bool,
}

enum Event {
    /// Node `.0` asks its sources what they hold.
    Round(usize),
    /// The answers of a round reach node `fetcher`.
    Answers {
        fetcher: usize,
        said: Vec<(usize, Option<Said>)>,
    },
    /// A range asked by `fetcher` of `source` reaches it.
    Asked { fetcher: usize, ask: Ask },
    /// A range arrives at `fetcher`, whole (`Ok`) or not (`Err(lacked)`).
    Served {
        fetcher: usize,
        ask: Ask,
        result: Result<(), bool>,
    },
}

struct Run {
    rng: StdRng,
    now: Millis,
    queue: BTreeMap<(Millis, u64), Event>,
    order: u64,
    chunks: u64,
    kinds: Vec<Kind>,
    /// Chunks held, and on their way, per node.
    held: Vec<Vec<bool>>,
    coming: Vec<Vec<bool>>,
    /// When each node's upload is free.
    upload_free: Vec<Millis>,
    /// Chunks each node uploaded.
    uploaded: Vec<u64>,
    fetches: Vec<Option<Fetch>>,
    /// When each fetch ended, and whether it failed.
    ended: Vec<Option<(Millis, bool)>>,
}

/// How one run went.
#[derive(Debug)]
struct Outcome {
    /// Copies of the blob the origin uploaded.
    origin_copies: f64,
    /// When the last honest fetch ended.
    last_done: Millis,
    /// Honest fetches that failed, or never ended.
    failed: usize,
}

impl Run {
    fn new(seed: u64, kinds: Vec<Kind>, chunks: u64) -> Self {
        let n = kinds.len();
        let mut run = Self {
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            queue: BTreeMap::new(),
            order: 0,
            chunks,
            held: (0..n).map(|i| vec![i == 0; chunks as usize]).collect(),
            coming: vec![vec![false; chunks as usize]; n],
            upload_free: vec![0; n],
            uploaded: vec![0; n],
            fetches: (0..n).map(|_| None).collect(),
            ended: vec![None; n],
            kinds,
        };
        for me in 1..n {
            if run.kinds[me] != Kind::Honest {
                continue;
            }
            // The origin, then up to 15 others, from the next node on.
            let mut sources = vec![0];
            sources.extend((1..n).map(|k| 1 + (me - 1 + k) % (n - 1)).take(SOURCES - 1));
            sources.retain(|s| *s != me);
            let listed = sources.iter().map(|&s| (node(s), s == 0)).collect();
            let seed = swarm::hash_u64(&[node(me).as_bytes(), b"blob"]);
            run.fetches[me] = Some(Fetch {
                swarm: Swarm::new(node(me), chunks, listed, seed),
                sources,
                heard: false,
                stuck_rounds: 0,
                asking: false,
            });
            // Nodes start within 50 ms of each other.
            let at = run.rng.random_range(0..50);
            run.at(at, Event::Round(me));
        }
        run
    }

    fn at(&mut self, at: Millis, event: Event) {
        self.order += 1;
        self.queue.insert((at, self.order), event);
    }

    fn latency(&mut self) -> Millis {
        self.rng.random_range(1..=20)
    }

    /// What `node` says it holds.
    fn say(&self, node: usize) -> Option<Said> {
        match self.kinds[node] {
            Kind::Frozen => None,
            Kind::Liar => Some((
                vec![true; self.chunks as usize],
                vec![false; self.chunks as usize],
            )),
            Kind::Honest => Some((self.held[node].clone(), self.coming[node].clone())),
        }
    }

    fn run(mut self) -> Outcome {
        while let Some(((at, _), event)) = self.queue.pop_first() {
            self.now = at;
            assert!(at < 600_000, "a run of ten simulated minutes");
            match event {
                Event::Round(me) => self.round(me),
                Event::Answers { fetcher, said } => self.answers(fetcher, said),
                Event::Asked { fetcher, ask } => self.serve(fetcher, ask),
                Event::Served {
                    fetcher,
                    ask,
                    result,
                } => self.served(fetcher, ask, result),
            }
        }
        let honest = (1..self.kinds.len()).filter(|&i| self.kinds[i] == Kind::Honest);
        let failed = honest
            .clone()
            .filter(|&i| !matches!(self.ended[i], Some((_, false))))
            .count();
        let last_done = honest
            .filter_map(|i| self.ended[i].map(|(at, _)| at))
            .max()
            .unwrap_or(0);
        Outcome {
            origin_copies: self.uploaded[0] as f64 / self.chunks as f64,
            last_done,
            failed,
        }
    }

    fn round(&mut self, me: usize) {
        let Some(fetch) = self.fetches[me].as_mut() else {
            return;
        };
        fetch.asking = true;
        let sources = fetch.sources.clone();
        // Each answer says what its source held when the question reached it; the round ends
        // with its last answer, or at the timeout when a source does not answer.
        let mut said = Vec::new();
        let mut ends = self.now;
        let mut silent = false;
        for (i, &s) in sources.iter().enumerate() {
            let (there, back) = (self.latency(), self.latency());
            if self.kinds[s] == Kind::Frozen {
                silent = true;
                continue;
            }
            // Answered from the state now: the links are short against a round.
            said.push((i, self.say(s)));
            ends = ends.max(self.now + there + back);
        }
        if silent {
            ends = self.now + swarm::ASK_TIMEOUT;
        }
        self.at(ends, Event::Answers { fetcher: me, said });
        let next = self.now + swarm::ASK_AGAIN;
        self.at(next.max(ends), Event::Round(me));
    }

    fn answers(&mut self, me: usize, said: Vec<(usize, Option<Said>)>) {
        let now = self.now;
        let Some(fetch) = self.fetches[me].as_mut() else {
            return;
        };
        fetch.asking = false;
        fetch.heard = true;
        for (source, holding) in said {
            fetch.swarm.heard(source, holding, now);
        }
        fetch.stuck_rounds = if fetch.swarm.stuck() {
            fetch.stuck_rounds + 1
        } else {
            0
        };
        self.pick(me);
    }

    /// Asks what `me`'s swarm picks; ends the fetch when done, or failed as the node's does.
    fn pick(&mut self, me: usize) {
        let now = self.now;
        let Some(fetch) = self.fetches[me].as_mut() else {
            return;
        };
        if fetch.swarm.done() {
            self.fetches[me] = None;
            self.ended[me] = Some((now, false));
            return;
        }
        let mut asks = Vec::new();
        while let Some(ask) = fetch.heard.then(|| fetch.swarm.pick(now)).flatten() {
            asks.push(ask);
        }
        if fetch.stuck_rounds >= 2 && fetch.swarm.in_flight() == 0 {
            self.fetches[me] = None;
            self.ended[me] = Some((now, true));
            return;
        }
        let ranges: Vec<_> = asks
            .iter()
            .map(|ask| fetch.swarm.chunks_of(ask.pieces.clone()))
            .collect();
        for (ask, range) in asks.into_iter().zip(ranges) {
            for i in range {
                self.coming[me][i as usize] = true;
            }
            let at = now + self.latency();
            self.at(at, Event::Asked { fetcher: me, ask });
        }
    }

    fn serve(&mut self, fetcher: usize, ask: Ask) {
        let source = self.fetches[fetcher]
            .as_ref()
            .map(|f| f.sources[ask.source]);
        let Some(source) = source else {
            return;
        };
        let range = {
            let first = ask.pieces.start as u64 * swarm::PIECE_CHUNKS;
            first..(ask.pieces.end as u64 * swarm::PIECE_CHUNKS).min(self.chunks)
        };
        let holds = self.kinds[source] == Kind::Honest
            && range.clone().all(|i| self.held[source][i as usize]);
        let back = self.latency();
        if !holds {
            let at = self.now + back;
            let result = Err(true);
            self.at(
                at,
                Event::Served {
                    fetcher,
                    ask,
                    result,
                },
            );
            return;
        }
        let start = self.upload_free[source].max(self.now);
        let done = start + (range.end - range.start) * CHUNK_MS;
        self.upload_free[source] = done;
        self.uploaded[source] += range.end - range.start;
        let result = Ok(());
        self.at(
            done + back,
            Event::Served {
                fetcher,
                ask,
                result,
            },
        );
    }

    fn served(&mut self, me: usize, ask: Ask, result: Result<(), bool>) {
        let now = self.now;
        let Some(fetch) = self.fetches[me].as_mut() else {
            return;
        };
        let range = fetch.swarm.chunks_of(ask.pieces.clone());
        for i in range {
            self.coming[me][i as usize] = false;
            if result.is_ok() {
                self.held[me][i as usize] = true;
            }
        }
        match result {
            Ok(()) => fetch.swarm.arrived(&ask),
            Err(lacked) => {
                let held = &self.held[me];
                fetch.swarm.failed(&ask, lacked, now, |chunks| {
                    chunks.into_iter().all(|i| held[i as usize])
                });
            }
        }
        self.pick(me);
    }
}

/// Node `i`'s id.
fn node(i: usize) -> NodeId {
    NodeId::from_bytes((i as u32).to_le_bytes().to_vec()).expect("a node id")
}

/// Runs every seed of a mesh of `kinds` (node 0 the origin) fetching a blob of `chunks`.
fn run_all(kinds: &[Kind], chunks: u64) -> Vec<(u64, Outcome)> {
    seeds()
        .into_iter()
        .map(|seed| (seed, Run::new(seed, kinds.to_vec(), chunks).run()))
        .collect()
}

/// The time the origin alone would take to upload one copy.
fn one_copy_ms(chunks: u64) -> Millis {
    chunks * CHUNK_MS
}

/// Issue 13's swarm goal, in the simulator: 8 nodes fetching a 256-chunk blob at once take it
/// mostly from each other. The origin uploads at most 2 copies (the issue asks 3; 8 without
/// the swarm), and every node holds it within 3 times what one copy takes the origin.
#[test]
fn eight_nodes_fetching_one_blob_take_it_mostly_from_each_other() {
    let kinds = vec![Kind::Honest; 9];
    for (seed, outcome) in run_all(&kinds, 256) {
        assert_eq!(outcome.failed, 0, "seed {seed}: {outcome:?}");
        assert!(outcome.origin_copies <= 2.0, "seed {seed}: {outcome:?}");
        assert!(
            outcome.last_done <= 3 * one_copy_ms(256),
            "seed {seed}: {outcome:?}"
        );
    }
}

/// At 64 nodes the origin uploads a few copies, not 64. Each node knows 16 sources at most,
/// so it shares the origin's pieces out among the 15 fetchers it knows, not all 64: about 64 /
/// 16 nodes take each piece from the origin (4.4 copies seen), and the rest of the blob
/// crosses between the others.
#[test]
fn sixty_four_nodes_fetching_one_blob_leave_the_origin_a_few_copies() {
    let kinds = vec![Kind::Honest; 65];
    for (seed, outcome) in run_all(&kinds, 256) {
        assert_eq!(outcome.failed, 0, "seed {seed}: {outcome:?}");
        assert!(outcome.origin_copies <= 6.0, "seed {seed}: {outcome:?}");
        assert!(
            outcome.last_done <= 6 * one_copy_ms(256),
            "seed {seed}: {outcome:?}"
        );
    }
}

/// A frozen source (it never answers) and a lying one (it says it holds the blob and lacks
/// every range asked of it) hold nobody back for long: every honest node gets the blob, the
/// liar is given up after two failures, and the frozen one costs the first round its timeout
/// (each round waits for every answer or [`swarm::ASK_TIMEOUT`]: at 5 s, this scenario took
/// 11 s and 6 copies from the origin, the others' progress being heard only every 5 s).
#[test]
fn a_frozen_source_and_a_lying_one_hold_nobody_back() {
    let mut kinds = vec![Kind::Honest; 9];
    kinds[3] = Kind::Frozen;
    kinds[5] = Kind::Liar;
    for (seed, outcome) in run_all(&kinds, 256) {
        assert_eq!(outcome.failed, 0, "seed {seed}: {outcome:?}");
        assert!(outcome.origin_copies <= 3.0, "seed {seed}: {outcome:?}");
        assert!(
            outcome.last_done <= 3 * one_copy_ms(256) + 2 * swarm::ASK_TIMEOUT,
            "seed {seed}: {outcome:?}"
        );
    }
}
