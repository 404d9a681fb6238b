//! Three `rendermesh node` processes on loopback (no mDNS; the second and third join through
//! the first) render real Cycles frames; the results must equal `blender -b` pixel for pixel,
//! also when a worker or the coordinator is SIGKILLed mid-job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rendermesh_tests::{
    MeshNode, agreed_coordinator, assert_same_pixels, bin, blender_direct, cluster, example_scene,
    wait_for,
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
    Ok(Command::new(bin())
        .args(render_args(blend, out))
        .arg("--api")
        .arg(via.api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

fn wait_child(child: &mut Child, timeout: Duration, log: &Path) -> Result<()> {
    let status = wait_for("the render command to finish", timeout, || {
        child.try_wait().ok().flatten()
    })?;
    if !status.success() {
        bail!(
            "render exited with {status}:\n{}\n{}",
            std::fs::read_to_string(log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
    }
    Ok(())
}

/// The newest job as the node sees it.
fn newest_job(node: &MeshNode) -> Option<Value> {
    node.get("/api/v1/jobs")?.as_array()?.first().cloned()
}

fn frames_done(job: &Value) -> usize {
    job["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["state"] == "Done")
                .map(|t| t["outputs"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

/// Every frame in `out` equals the direct render in `reference`.
fn check_frames(out: &Path, reference: &Path) -> Result<()> {
    for f in FRAMES.0..=FRAMES.1 {
        let ours = out.join(format!("scene_{f:04}.png"));
        let theirs = reference.join(format!("ref_{f:05}.png"));
        assert_same_pixels(&ours, &theirs).with_context(|| format!("frame {f}"))?;
    }
    Ok(())
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    blend: PathBuf,
    reference: PathBuf,
}

fn fixture() -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    let blend = root.join("scene.blend");
    example_scene(&blend)?;
    let reference = root.join("reference");
    blender_direct(&blend, &reference, FRAMES.0, FRAMES.1, SAMPLES, PERCENT)?;
    Ok(Fixture {
        _dir: dir,
        root,
        blend,
        reference,
    })
}

fn dump_logs(nodes: &[MeshNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_nodes_render_every_frame_pixel_identical_and_share_the_work() -> Result<()> {
    let fx = fixture()?;
    let nodes = cluster(&fx.root.join("mesh"), 3)?;
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[1], &fx.blend, &out, &log)?;
    wait_child(&mut child, Duration::from_secs(300), &log).with_context(|| dump_logs(&nodes))?;
    check_frames(&out, &fx.reference)?;

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

    // The .blend crossed the network at most once per node.
    let blend = job["spec"]["blend"].as_str().context("no blend hash")?;
    for node in &nodes {
        let info = node.get("/api/v1/node").context("node info")?;
        let received = info["store"]["received"][blend].as_u64().unwrap_or(0);
        assert!(
            received <= 1,
            "{} received the .blend {received} times",
            node.name
        );
    }
    Ok(())
}

/// Starts a render through a node that is neither `victim` nor the coordinator (when killing a
/// worker), kills `victim` once a few frames are done, and checks every frame.
fn render_surviving_a_kill(kill_coordinator: bool) -> Result<()> {
    let fx = fixture()?;
    let mut nodes = cluster(&fx.root.join("mesh"), 3)?;
    let coordinator = agreed_coordinator(&nodes, 3).context("no coordinator")?;
    let coord_idx = nodes
        .iter()
        .position(|n| n.id == coordinator)
        .context("coordinator is not one of ours")?;
    let others: Vec<usize> = (0..3).filter(|&i| i != coord_idx).collect();
    let (via, victim) = if kill_coordinator {
        (others[0], coord_idx)
    } else {
        (others[0], others[1])
    };
    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = start_render(&nodes[via], &fx.blend, &out, &log)?;
    // Kill once some frames are done but not all, and the victim holds work.
    wait_for("a few frames to be done", Duration::from_secs(120), || {
        let job = newest_job(&nodes[via])?;
        let done = frames_done(&job);
        (2..10).contains(&done).then_some(())
    })
    .with_context(|| dump_logs(&nodes))?;
    let killed_at = Instant::now();
    nodes[victim].kill();
    wait_child(&mut child, Duration::from_secs(300), &log).with_context(|| dump_logs(&nodes))?;
    check_frames(&out, &fx.reference)?;
    if kill_coordinator {
        let survivors: Vec<MeshNode> = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, n)| n)
            .collect();
        let new = agreed_coordinator(&survivors, 2).context("survivors disagree")?;
        assert_ne!(new, coordinator);
        eprintln!(
            "job finished {:?} after the coordinator was killed",
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
