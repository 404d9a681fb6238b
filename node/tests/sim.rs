//! The simulator's scenarios: many seeded runs of 10 and 100 membership cores with kills,
//! restarts, partitions and heals ([`simulator`] describes the network and the invariants it
//! checks after every step). A failing run prints its seed and the command that replays it;
//! `SIM_SEEDS=N` runs N seeds per scenario (a soak), `SIM_TRACE=1` prints every change.

#[path = "support/simulator.rs"]
mod simulator;

use simulator::{Config, DEFAULT_SEEDS, Sim};

/// The seeds to run: `SIM_SEED` alone, or `SIM_SEEDS` (default [`DEFAULT_SEEDS`]) of them.
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (0..n).collect()
}

fn run_all(config: Config) -> usize {
    seeds()
        .into_iter()
        .map(|seed| Sim::new(config, seed).run().changes)
        .sum()
}

#[test]
fn ten_nodes_with_kills_and_restarts_agree_on_one_coordinator() {
    let changes = run_all(Config {
        nodes: 10,
        duration: 60_000,
        kills: true,
        partitions: false,
        loss: 0.05,
        duplicate: 0.05,
        max_delay: 80,
    });
    assert!(changes > 0);
}

#[test]
fn ten_nodes_split_and_healed_agree_on_one_coordinator_per_side_then_one() {
    let changes = run_all(Config {
        nodes: 10,
        duration: 60_000,
        kills: false,
        partitions: true,
        loss: 0.05,
        duplicate: 0.05,
        max_delay: 80,
    });
    assert!(changes > 0);
}

#[test]
fn a_hundred_nodes_with_kills_and_splits_agree_on_one_coordinator() {
    let changes = run_all(Config {
        nodes: 100,
        duration: 25_000,
        kills: true,
        partitions: true,
        loss: 0.02,
        duplicate: 0.02,
        max_delay: 50,
    });
    assert!(changes > 0);
}
