//! Scenes whose textures, libraries, image sequences and fonts live in other files
//! ([`DepsScene`]): two `rendermesh node` processes render them pixel-identical to `blender -b`
//! on the original files in place, after every file travelled by hash (the originals are moved
//! away as soon as the job is submitted, so no node can read them where they were). A file
//! missing on the submitting machine is refused by name before anything renders.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{
    DepsScene, MeshNode, assert_same_pixels, blender_direct, cluster, dump_logs, newest_job,
    pixels, wait_for, wait_render,
};
use serde_json::Value;

const FRAMES: (u32, u32) = (1, 3);
const SAMPLES: u32 = 4;

/// `rendermesh render BLEND --frames 1-3 --chunk 1 --tiles none --samples N --out OUT`
/// through `via`, its stdout in `log` and its stderr beside it (`.err`).
fn start_render(
    via: &MeshNode,
    blend: &Path,
    out: &Path,
    log: &Path,
    samples: u32,
) -> Result<std::process::Child> {
    Ok(rendermesh_tests::rendermesh()
        .arg("render")
        .arg(blend)
        .args(["--frames", &format!("{}-{}", FRAMES.0, FRAMES.1)])
        .args(["--chunk", "1", "--tiles", "none"])
        .args(["--samples", &samples.to_string()])
        .arg("--out")
        .arg(out)
        .arg("--api")
        .arg(via.api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

/// The newest job on `node` once it is not `previous`.
fn newest_other_than(node: &MeshNode, previous: Option<&str>) -> Result<Value> {
    wait_for("the job to be listed", Duration::from_secs(30), || {
        newest_job(node).filter(|j| j["id"].as_str() != previous)
    })
}

#[test]
fn every_file_a_blend_uses_travels_by_hash_and_renders_pixel_identical_on_two_nodes() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let scene = DepsScene::build(&tmp.path().join("scene"))?;
    let reference = tmp.path().join("reference");
    blender_direct(&scene.main, &reference, FRAMES, SAMPLES, 100, &[])?;
    let nodes = cluster(&tmp.path().join("mesh"), 2)?;

    let out = tmp.path().join("out");
    let log = tmp.path().join("render.log");
    let mut child = start_render(&nodes[1], &scene.main, &out, &log, SAMPLES)?;
    // Once the job is submitted its files are in the mesh: move the originals away.
    wait_for("the job to be submitted", Duration::from_secs(120), || {
        let err = std::fs::read_to_string(log.with_extension("err")).ok()?;
        err.contains("submitted job").then_some(())
    })
    .with_context(|| std::fs::read_to_string(log.with_extension("err")).unwrap_or_default())?;
    let moved = tmp.path().join("scene-moved");
    std::fs::rename(&scene.dir, &moved)?;
    wait_render(&mut child, Duration::from_secs(300), &log, &nodes)?;
    check_frames(&out, &reference)?;
    let first = pixels(&out.join("main_0001.png"))?;
    let second = pixels(&out.join("main_0002.png"))?;
    assert_ne!(first, second, "the image sequence did not animate");

    let job = newest_other_than(&nodes[1], None)?;
    let deps = job["spec"]["deps"].as_array().context("no deps")?;
    let mut shipped: Vec<&str> = deps.iter().filter_map(|d| d["path"].as_str()).collect();
    shipped.sort();
    let under = |p: &str| scene.dir.join(p).display().to_string();
    let mut expected = vec![
        under("abs/c.png"),
        under("proj/fonts/font.ttf"),
        under("proj/lib/lib.blend"),
        under("proj/lib/tex/l.png"),
        under("proj/seq/s_0001.png"),
        under("proj/seq/s_0002.png"),
        under("proj/seq/s_0003.png"),
        under("proj/tex/a.png"),
        under("shared/b.png"),
    ];
    expected.sort();
    assert_eq!(shipped, expected);
    // Both nodes rendered a task of it (the record may name only one: a node slow to fetch the
    // files can see its task ended first by the other's backup copy).
    let first = job["id"].as_str().context("no job id")?;
    for node in &nodes {
        assert!(
            rendered_a_task_of(node, first),
            "{} rendered no task of the first job",
            node.name
        );
    }

    // A second job with the same files (back in place): each crosses the network at most once
    // per node, and the node that is not the origin fetched each exactly once.
    std::fs::rename(&moved, &scene.dir)?;
    let again = tmp.path().join("again");
    let log = tmp.path().join("again.log");
    let mut child = start_render(&nodes[1], &scene.main, &again, &log, 2)?;
    wait_render(&mut child, Duration::from_secs(300), &log, &nodes)?;
    let second_job = newest_other_than(&nodes[1], job["id"].as_str())?;
    let second = second_job["id"].as_str().context("no job id")?;
    assert!(
        rendered_a_task_of(&nodes[0], second),
        "the second job never ran on {}",
        nodes[0].name
    );
    for node in &nodes {
        let info = node.get("/api/v1/node").context("node info")?;
        for dep in deps {
            let hash = dep["blob"].as_str().context("no hash")?;
            let received = info["store"]["received"][hash].as_u64().unwrap_or(0);
            let want = if node.id == nodes[0].id { 1 } else { 0 };
            assert_eq!(
                received, want,
                "{} received {} {received} times",
                node.name, dep["path"]
            );
        }
    }
    Ok(())
}

/// Whether `node` started rendering a task of job `id` (its log says so).
fn rendered_a_task_of(node: &MeshNode, id: &str) -> bool {
    node.logged(&[
        "rendermesh_node::mesh: rendering",
        &format!("job={}", &id[..8]),
    ])
}

/// Every frame in `out` equals `blender -b`'s in `reference`.
fn check_frames(out: &Path, reference: &Path) -> Result<()> {
    for f in FRAMES.0..=FRAMES.1 {
        let ours = out.join(format!("main_{f:04}.png"));
        let theirs: PathBuf = reference.join(format!("ref_{f:05}.png"));
        assert_same_pixels(&ours, &theirs).with_context(|| format!("frame {f}"))?;
    }
    Ok(())
}

#[test]
fn a_file_missing_at_submit_is_refused_by_name_unless_the_user_allows_it() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let scene = DepsScene::build(&tmp.path().join("scene"))?;
    let nodes = cluster(&tmp.path().join("mesh"), 2)?;
    let out = tmp.path().join("out");
    let missing = scene.missing.display().to_string();
    let refused = nodes[1].cli(&[
        "render",
        &missing,
        "--frames",
        "1",
        "--out",
        &out.display().to_string(),
    ])?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    let gone = scene.dir.join("proj/tex/gone.png").display().to_string();
    assert!(
        said.contains(&gone)
            && said.contains("image \"gone.png\"")
            && said.contains("--allow-missing"),
        "{said}"
    );
    for node in &nodes {
        let jobs = node.get("/api/v1/jobs").context("jobs")?;
        assert_eq!(
            jobs.as_array().map(Vec::len),
            Some(0),
            "{}: {jobs}",
            node.name
        );
    }

    // The user may render without it; the job says what is missing.
    let allowed = nodes[1].cli(&[
        "render",
        &missing,
        "--frames",
        "1",
        "--tiles",
        "none",
        "--samples",
        "1",
        "--allow-missing",
        "--out",
        &out.display().to_string(),
    ])?;
    let said = String::from_utf8_lossy(&allowed.stderr);
    assert!(allowed.status.success(), "{said}{}", dump_logs(&nodes));
    assert!(said.contains("rendering without 1 file"), "{said}");
    assert!(out.join("missing_0001.png").is_file());
    let job = newest_job(&nodes[1]).context("no job")?;
    assert_eq!(job["spec"]["missing"], serde_json::json!([gone]));
    Ok(())
}
