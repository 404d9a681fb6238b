//! Issue 12: nothing is lost when the whole mesh loses power. Three `rendermesh node`
//! processes render a job; all three are SIGKILLed at once mid-job and started again on the
//! same data directories. The job carries on from their job tables on disk and finishes with
//! every frame equal to `blender -b`, and a job finished before the cut can still be
//! downloaded.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rendermesh_tests::{
    Fixture, MeshNode, agreed_coordinator, assert_same_pixels, cluster, dump_logs, frames_done,
    kill_all, wait_for,
};
use serde_json::Value;

const FRAMES: (u32, u32) = (1, 12);
const SAMPLES: u32 = 16;
const PERCENT: u32 = 25;

/// Submits frames `first..=last` through `node` and returns the job id at once (`--detach`).
fn submit(node: &MeshNode, fx: &Fixture, first: u32, last: u32) -> Result<String> {
    let out = node.cli(&[
        "render",
        &fx.blend.display().to_string(),
        "--frames",
        &format!("{first}-{last}"),
        "--samples",
        &SAMPLES.to_string(),
        "--resolution-percent",
        &PERCENT.to_string(),
        "--chunk",
        "1",
        "--detach",
        "--out",
        &fx.root.join("unused").display().to_string(),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "submit failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text.lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .map(|id| id.trim().to_owned())
        .with_context(|| format!("no job id printed: {text}"))
}

/// Job `id` as `node` holds it.
fn job(node: &MeshNode, id: &str) -> Option<Value> {
    node.get(&format!("/api/v1/jobs/{id}"))
}

/// Waits until `node` holds job `id` done.
fn wait_done(nodes: &[MeshNode], via: usize, id: &str, timeout: Duration) -> Result<Value> {
    wait_for(&format!("job {id} to be done"), timeout, || {
        job(&nodes[via], id).filter(|j| j["state"] == "Done")
    })
    .with_context(|| dump_logs(nodes))
}

/// `rendermesh download ID` through `node` into `dir`, then every frame of `first..=last`
/// equals `blender -b`'s.
fn download_and_compare(
    node: &MeshNode,
    fx: &Fixture,
    id: &str,
    first: u32,
    last: u32,
) -> Result<()> {
    let dir = fx.root.join(format!("download-{id}"));
    let got = node.cli(&[
        "download",
        id,
        "--no-wait",
        "--out",
        &dir.display().to_string(),
    ])?;
    if !got.status.success() {
        bail!(
            "download {id} failed: {}{}",
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&got.stderr)
        );
    }
    for f in first..=last {
        assert_same_pixels(
            &dir.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("job {id}, frame {f}"))?;
    }
    Ok(())
}

#[test]
fn a_whole_mesh_killed_at_once_carries_on_its_jobs_from_disk() -> Result<()> {
    let fx = Fixture::new(FRAMES, SAMPLES, PERCENT, &[])?;
    let mut nodes = cluster(&fx.root.join("mesh"), 3)?;

    // A job finished before the power cut.
    let before = submit(&nodes[1], &fx, 1, 3)?;
    wait_done(&nodes, 1, &before, Duration::from_secs(120))?;

    // A job cut in the middle: every node is killed at once.
    let cut = submit(&nodes[1], &fx, FRAMES.0, FRAMES.1)?;
    wait_for(
        "a few frames of the job to be done",
        Duration::from_secs(120),
        || job(&nodes[1], &cut).filter(|j| (2..10).contains(&frames_done(j))),
    )
    .with_context(|| dump_logs(&nodes))?;
    kill_all(&mut nodes);

    // Back on the same data directories: the first alone, the others joining it.
    let (first, rest) = nodes.split_at_mut(1);
    first[0].restart(None)?;
    for node in rest.iter_mut() {
        node.restart(Some(&first[0]))?;
    }
    wait_for(
        "the restarted mesh to agree",
        Duration::from_secs(30),
        || agreed_coordinator(&nodes, 3),
    )
    .with_context(|| dump_logs(&nodes))?;
    // Each node took its table back from its own disk, before any peer could send it.
    for node in &nodes {
        let log = node.log_text();
        if !log.contains("job table restored from disk jobs=2") {
            bail!("{} did not restore both jobs:\n{log}", node.name);
        }
    }

    let done = wait_done(&nodes, 2, &cut, Duration::from_secs(300))?;
    assert_eq!(done["state"], "Done");
    download_and_compare(&nodes[2], &fx, &cut, FRAMES.0, FRAMES.1)?;
    download_and_compare(&nodes[0], &fx, &before, 1, 3)?;
    Ok(())
}

/// Issue 12: a power cut truncates one frame in a node's store and corrupts another. Back up,
/// the node finds both damaged, removes them, and fetches both again from its peer; with that
/// peer gone, it serves every frame of the job whole.
#[test]
fn damaged_blobs_are_found_after_a_restart_and_fetched_again() -> Result<()> {
    let fx = Fixture::new(FRAMES, SAMPLES, PERCENT, &[])?;
    let mut nodes = cluster(&fx.root.join("mesh"), 2)?;
    let id = submit(&nodes[1], &fx, 1, 3)?;
    let done = wait_done(&nodes, 1, &id, Duration::from_secs(120))?;
    let blobs: Vec<String> = done["tasks"]
        .as_array()
        .context("no tasks")?
        .iter()
        .flat_map(|t| t["outputs"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| o["blob"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(blobs.len(), 3, "{done}");
    let store = nodes[1].data_dir.join("store/blobs");
    let path = |blob: &str| store.join(blob);
    // In a mesh of two, both nodes hold every frame once the job is done.
    let whole = wait_for(
        "node-2 to hold every frame",
        Duration::from_secs(30),
        || {
            blobs
                .iter()
                .map(|b| std::fs::read(path(b)).ok())
                .collect::<Option<Vec<Vec<u8>>>>()
        },
    )?;

    nodes[1].kill();
    let truncated = &whole[0][..whole[0].len() / 2];
    std::fs::write(path(&blobs[0]), truncated)?;
    let mut flipped = whole[1].clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(path(&blobs[1]), &flipped)?;

    let (first, rest) = nodes.split_at_mut(1);
    rest[0].restart(Some(&first[0]))?;
    wait_for(
        "both damaged frames to be fetched again",
        Duration::from_secs(60),
        || {
            let back =
                (0..2).all(|i| std::fs::read(path(&blobs[i])).ok().as_ref() == Some(&whole[i]));
            back.then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let log = nodes[1].log_text();
    assert_eq!(
        log.matches("a blob was damaged on disk").count(),
        2,
        "{log}"
    );

    // The only node left serves every frame, whole.
    nodes[0].kill();
    download_and_compare(&nodes[1], &fx, &id, 1, 3)
}
