//! One frame cut into tiles across three `rendermesh node` processes on loopback: the stitched
//! frame must equal a whole-frame `blender -b` render with the same settings pixel for pixel,
//! also when a worker or the coordinator is SIGKILLed mid-job.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{
    Fixture, KillPlan, MeshNode, assert_same_pixels, cluster, cluster_with, dump_logs, http_get,
    newest_job, wait_for, wait_render,
};
use serde_json::Value;

const FRAME: u32 = 12;
const SAMPLES: u32 = 8;
const PERCENT: u32 = 25;
const TIMEOUT: Duration = Duration::from_secs(300);

/// The example scene and its frame [`FRAME`] rendered whole by `blender -b` with the settings
/// tiles are rendered with.
fn fixture() -> Result<Fixture> {
    Fixture::new((FRAME, FRAME), SAMPLES, PERCENT, &["--exact"])
}

/// `rendermesh render` of frame [`FRAME`] through `via`, with `tiles` (`None`: the default).
fn start_render(
    via: &MeshNode,
    blend: &Path,
    out: &Path,
    tiles: Option<&str>,
    log: &Path,
) -> Result<Child> {
    let mut cmd = rendermesh_tests::rendermesh();
    cmd.arg("render")
        .arg(blend)
        .args(["--frames", &FRAME.to_string()])
        .args(["--samples", &SAMPLES.to_string()])
        .args(["--resolution-percent", &PERCENT.to_string()])
        .arg("--out")
        .arg(out)
        .arg("--api")
        .arg(via.api.to_string());
    if let Some(tiles) = tiles {
        cmd.args(["--tiles", tiles]);
    }
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

fn tiles_done(job: &Value) -> usize {
    job["tasks"]
        .as_array()
        .map_or(0, |ts| ts.iter().filter(|t| t["state"] == "Done").count())
}

/// The distinct nodes that rendered the job's tiles; checks every task is a tile of `grid`.
fn tile_workers(job: &Value, grid: (u64, u64)) -> Result<Vec<String>> {
    assert_eq!(
        (job["grid"]["cols"].as_u64(), job["grid"]["rows"].as_u64()),
        (Some(grid.0), Some(grid.1)),
        "grid of {job}"
    );
    let tasks = job["tasks"].as_array().context("no tasks")?;
    assert_eq!(tasks.len() as u64, grid.0 * grid.1);
    let mut workers = Vec::new();
    for t in tasks {
        assert_eq!(t["state"], "Done", "{t}");
        assert!(t["tile"].is_object(), "task without a tile: {t}");
        let w = t["worker"].as_str().context("done task without worker")?;
        if !workers.iter().any(|x| x == w) {
            workers.push(w.to_owned());
        }
    }
    Ok(workers)
}

fn output(out: &Path) -> PathBuf {
    out.join(format!("scene_{FRAME:04}.png"))
}

#[test]
fn a_frame_in_4x4_tiles_over_three_nodes_equals_the_whole_frame() -> Result<()> {
    let fx = fixture()?;
    // Each node keeps a spare Blender, as nodes do unless told not to.
    let nodes = cluster_with(
        &fx.root.join("mesh"),
        3,
        &["--threads", "1", "--spare-blender"],
    )?;
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[1], &fx.blend, &out, Some("4x4"), &log)?;
    wait_render(&mut child, TIMEOUT, &log, &nodes)?;
    assert_same_pixels(&output(&out), &fx.reference_frame(FRAME))?;
    let job = newest_job(&nodes[1]).context("no job listed")?;
    assert_eq!(job["state"], "Done");
    let workers = tile_workers(&job, (4, 4))?;
    assert!(workers.len() >= 2, "tiles rendered by {workers:?} only");
    // Each node started Blender once for the job's 16 tiles: one session, whether started by
    // the job's preparation or by its first tile, is asked each tile in turn; and that session
    // was the spare it kept.
    for node in &nodes {
        node.assert_one_blender_start();
        node.assert_session_from_spare();
    }

    // The progress page the node serves draws this job from the same API.
    let (head, page) = http_get(nodes[1].api, "/").context("no page at /")?;
    assert!(
        head.to_lowercase().contains("content-type: text/html"),
        "{head}"
    );
    for needle in [
        "/api/v1",
        "/jobs",
        "/events",
        "\"peers\"",
        "tiles per frame",
        "cancel",
        "pause",
        "resume",
        "data-steer=\"priority\"",
        "data-steer=\"rerender\"",
        "/jobs/${d.job}/${d.steer}",
        "EventSource",
        "/frames.zip",
        "download",
    ] {
        assert!(page.contains(needle), "the page lacks {needle:?}");
    }

    // The frame asked for again from the CLI: each of its 16 tiles is rendered again under a
    // new attempt, the job is done again, and the frame stitched anew is `blender -b`'s.
    let id = job["id"].as_str().context("no job id")?.to_owned();
    let attempts = |job: &Value| -> Vec<u64> {
        job["tasks"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t["attempt"].as_u64()).collect())
            .unwrap_or_default()
    };
    let before = attempts(&job);
    let asked = nodes[1].cli(&["rerender", &id, &FRAME.to_string()])?;
    assert!(
        asked.status.success(),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    wait_for("the frame rendered again", TIMEOUT, || {
        let job = nodes[1].get(&format!("/api/v1/jobs/{id}"))?;
        let after = attempts(&job);
        let again = after.len() == before.len() && after.iter().zip(&before).all(|(a, b)| a > b);
        (job["state"] == "Done" && again).then_some(())
    })
    .with_context(|| dump_logs(&nodes))?;
    let redo = fx.root.join("redo");
    let got = nodes[1].cli(&["download", &id, "--out", &redo.display().to_string()])?;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_same_pixels(&output(&redo), &fx.reference_frame(FRAME))?;

    // Without --tiles, a one-frame job on three nodes is tiled automatically (3x2).
    let auto = fx.root.join("auto");
    let mut child = start_render(&nodes[2], &fx.blend, &auto, None, &log)?;
    wait_render(&mut child, TIMEOUT, &log, &nodes)?;
    assert_same_pixels(&output(&auto), &fx.reference_frame(FRAME))?;
    let job = newest_job(&nodes[2]).context("no job listed")?;
    tile_workers(&job, (3, 2))?;
    Ok(())
}

/// Kills `victim` (a worker that is neither the coordinator nor the node submitted to, or the
/// coordinator) once some tiles are done, and checks the stitched frame.
fn tiles_surviving_a_kill(kill_coordinator: bool) -> Result<()> {
    let fx = fixture()?;
    let mut nodes = cluster(&fx.root.join("mesh"), 3)?;
    let plan = KillPlan::new(&nodes, kill_coordinator)?;
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[plan.via], &fx.blend, &out, Some("4x4"), &log)?;
    plan.kill_when(&mut nodes, "a few tiles to be done", |job| {
        (2..12).contains(&tiles_done(job))
    })?;
    wait_render(&mut child, TIMEOUT, &log, &nodes)?;
    assert_same_pixels(&output(&out), &fx.reference_frame(FRAME))?;
    let job = newest_job(&nodes[plan.via]).context("no job listed")?;
    tile_workers(&job, (4, 4))?;
    plan.check_requeued(&nodes, &job)?;
    plan.check_survivors(nodes)?;
    Ok(())
}

#[test]
fn killing_a_worker_mid_frame_still_stitches_the_same_pixels() -> Result<()> {
    tiles_surviving_a_kill(false)
}

#[test]
fn killing_the_coordinator_mid_frame_still_stitches_the_same_pixels() -> Result<()> {
    tiles_surviving_a_kill(true)
}
