//! Three `rendermesh node` processes on loopback (no mDNS; the second and third join through
//! the first) render real Cycles frames; the results must equal `blender -b` pixel for pixel,
//! also when a worker or the coordinator is SIGKILLed mid-job.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rendermesh_tests::{
    Fixture, KillPlan, MeshNode, assert_same_pixels, cluster, cluster_with, dump_logs, frames_done,
    newest_job, wait_for, wait_render,
};
use serde_json::Value;

const FRAMES: (u32, u32) = (1, 12);
const SAMPLES: u32 = 16;
const PERCENT: u32 = 25;

fn render_args(blend: &Path, out: &Path) -> Vec<String> {
    vec![
        "render".into(),
        blend.display().to_string(),
        "--frames".into(),
        format!("{}-{}", FRAMES.0, FRAMES.1),
        "--samples".into(),
        SAMPLES.to_string(),
        "--resolution-percent".into(),
        PERCENT.to_string(),
        "--chunk".into(),
        "1".into(),
        "--out".into(),
        out.display().to_string(),
    ]
}

fn start_render(via: &MeshNode, blend: &Path, out: &Path, log: &Path) -> Result<Child> {
    Ok(rendermesh_tests::rendermesh()
        .args(render_args(blend, out))
        .arg("--api")
        .arg(via.api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

/// Every frame in `out` equals the direct render in `reference`.
fn check_frames(out: &Path, fx: &Fixture) -> Result<()> {
    for f in FRAMES.0..=FRAMES.1 {
        let ours = out.join(format!("scene_{f:04}.png"));
        assert_same_pixels(&ours, &fx.reference_frame(f)).with_context(|| format!("frame {f}"))?;
    }
    Ok(())
}

fn fixture() -> Result<Fixture> {
    Fixture::new(FRAMES, SAMPLES, PERCENT, &[])
}

/// Three nodes render every frame pixel-identical to `blender -b` and share the work; any
/// node serves the frames, also of a job submitted with `--detach`; and `render` with no node
/// at its `--api` renders the same frames alone on an embedded node (sharing the fixture: its
/// reference frames cost a Blender run).
#[test]
fn three_nodes_render_every_frame_pixel_identical_share_the_work_and_any_node_serves_them()
-> Result<()> {
    let fx = fixture()?;
    // Each node keeps a spare Blender, as nodes do unless told not to.
    let nodes = cluster_with(
        &fx.root.join("mesh"),
        3,
        &["--threads", "1", "--spare-blender"],
    )?;
    // Every worker renders in its sandbox (issue 11), and the frames still equal `blender -b`.
    let peers = nodes[0].peers().context("peers")?;
    for p in peers["peers"].as_array().context("peers")? {
        assert_eq!(p["confinement"], "Sandboxed", "{p}");
    }
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[1], &fx.blend, &out, &log)?;
    wait_render(&mut child, Duration::from_secs(300), &log, &nodes)?;
    check_frames(&out, &fx)?;

    // `rendermesh job ID --json` names the node that rendered each task: at least two did.
    let job = newest_job(&nodes[1]).context("no job listed")?;
    let id = job["id"].as_str().context("job has no id")?;
    let shown = nodes[1].cli(&["job", id, "--json"])?;
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: Value = serde_json::from_slice(&shown.stdout)?;
    let mut workers: Vec<&str> = shown["tasks"]
        .as_array()
        .context("no tasks")?
        .iter()
        .filter_map(|t| t["worker"].as_str())
        .collect();
    workers.sort();
    workers.dedup();
    assert!(workers.len() >= 2, "rendered by {workers:?} only");

    // The .blend crossed the network exactly once to each node that rendered without holding
    // it, and never to the node it was submitted to.
    let blend = job["spec"]["blend"].as_str().context("no blend hash")?;
    for node in &nodes {
        let info = node.get("/api/v1/node").context("node info")?;
        let received = info["store"]["received"]
            .as_object()
            .context("no store counters")?
            .get(blend)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let want = if node.id == nodes[1].id {
            0
        } else if workers.contains(&node.id.as_str()) {
            1
        } else {
            received.min(1)
        };
        assert_eq!(
            received, want,
            "{} received the .blend {received} times",
            node.name
        );
    }

    // Each node started Blender once for the job, however many tasks it rendered: the spare
    // it kept.
    for node in &nodes {
        node.assert_one_blender_start();
        node.assert_session_from_spare();
    }

    // Any node serves a finished job's frames: `download` through another node, once its copy
    // of the job says it is finished (`--no-wait` saves the frames that copy counts: a copy a
    // version behind once missed a frame).
    wait_for(
        "node-3 to hold the job done",
        Duration::from_secs(10),
        || {
            nodes[2]
                .get(&format!("/api/v1/jobs/{id}"))
                .filter(|j| j["state"] == "Done")
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let again = fx.root.join("again");
    let got = nodes[2].cli(&[
        "download",
        &id[..8],
        "--no-wait",
        "--out",
        &again.display().to_string(),
    ])?;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    check_frames(&again, &fx)?;

    // Submit and leave (`--detach`), then follow and save the frames from a third node.
    let detached = fx.root.join("detached");
    let submitted = nodes[0].cli(&[
        "render",
        &fx.blend.display().to_string(),
        "--frames",
        "2-4",
        "--samples",
        &SAMPLES.to_string(),
        "--resolution-percent",
        &PERCENT.to_string(),
        "--detach",
        "--out",
        &detached.display().to_string(),
    ])?;
    let text = String::from_utf8_lossy(&submitted.stdout).into_owned();
    assert!(
        submitted.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .with_context(|| format!("no job id printed: {text}"))?;
    assert!(!detached.exists(), "--detach wrote frames itself");
    let got = nodes[1].cli(&["download", id, "--out", &detached.display().to_string()])?;
    assert!(
        got.status.success(),
        "{}{}",
        String::from_utf8_lossy(&got.stderr),
        dump_logs(&nodes)
    );
    for f in 2..=4 {
        assert_same_pixels(
            &detached.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("detached frame {f}"))?;
    }

    // With no node at its --api, `render` starts an embedded one (alone: no mDNS, no
    // bootstrap; it reads the file while the node starts), renders, stops it and says so.
    let alone = fx.root.join("alone");
    let data = fx.root.join("embedded-data");
    let nobody = format!("127.0.0.1:{}", rendermesh_tests::free_port());
    let got = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .args(["render", &fx.blend.display().to_string(), "--frames", "1-3"])
            .args(["--samples", &SAMPLES.to_string()])
            .args(["--resolution-percent", &PERCENT.to_string()])
            .args(["--api", &nobody, "--no-mdns", "--data-dir"])
            .arg(&data)
            .arg("--out")
            .arg(&alone),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(got.status.success(), "{err}");
    assert!(err.contains("started an embedded node"), "{err}");
    assert!(
        data.join("store").is_dir(),
        "the embedded node kept no data: {err}"
    );
    for f in 1..=3 {
        assert_same_pixels(
            &alone.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("embedded frame {f}"))?;
    }
    Ok(())
}

/// Starts a render through a node that is neither `victim` nor the coordinator (when killing a
/// worker), kills `victim` once a few frames are done, and checks every frame.
fn render_surviving_a_kill(kill_coordinator: bool) -> Result<()> {
    let fx = fixture()?;
    let mut nodes = cluster(&fx.root.join("mesh"), 3)?;
    let plan = KillPlan::new(&nodes, kill_coordinator)?;
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[plan.via], &fx.blend, &out, &log)?;
    // Kill once some frames are done but not all, and the victim holds work.
    plan.kill_when(&mut nodes, "a few frames to be done", |job| {
        (2..10).contains(&frames_done(job))
    })?;
    let killed_at = Instant::now();
    wait_render(&mut child, Duration::from_secs(300), &log, &nodes)?;
    check_frames(&out, &fx)?;
    let job = newest_job(&nodes[plan.via]).context("no job listed")?;
    plan.check_requeued(&nodes, &job)?;
    if kill_coordinator {
        let new = plan.check_survivors(nodes)?;
        eprintln!(
            "job finished {:?} after the coordinator was killed; {new} took over",
            killed_at.elapsed()
        );
    }
    Ok(())
}

#[test]
fn killing_a_worker_mid_job_loses_no_frame() -> Result<()> {
    render_surviving_a_kill(false)
}

#[test]
fn killing_the_coordinator_mid_job_loses_no_frame() -> Result<()> {
    render_surviving_a_kill(true)
}
