//! Issue 12: one short chaos run in CI (`rendermesh_tests::chaos`; `scripts/chaos` runs long
//! ones). Four real nodes in network namespaces render a short job (`Options::short`: 20
//! frames, no fault-free run first) under the faults of a fixed seed for at most 40 s; the job
//! must finish with no suspect, every node back in the mesh, every corrupted blob whole again
//! and every frame equal to `blender -b`'s.
//!
//! Needs root (CI runs as root), `ip` and Blender.

use anyhow::Result;
use rendermesh_tests::chaos::{self, Options};

/// The seed CI runs: its storm opens with a blackout, a freeze of 12 s and a partition of two
/// nodes (a corrupted blob comes next when the job still runs).
const SEED: u64 = 10;

#[test]
fn a_short_chaos_run_loses_no_frame() -> Result<()> {
    let summary = chaos::run(&Options::short(SEED, 40.0 / 60.0))?;
    eprintln!("{summary}");
    assert_eq!(summary.verified, summary.options.frames, "{summary}");
    assert!(
        !summary.faults.is_empty(),
        "no fault was injected: {summary}"
    );
    Ok(())
}
