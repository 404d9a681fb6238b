//! A job renders what the file says, as `blender -b FILE -a` does: its frame range and frame
//! step, its output format with its own options, and its engine (EEVEE too, headless), on two
//! `rendermesh node` processes; the flags still override each.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rendermesh_tests::{
    MeshNode, assert_same_pixels, blender_plain, cluster, example_variant, job_workers, newest_job,
    wait_for, wait_render,
};

/// `rendermesh render BLEND --out OUT ARGS` through `via`; waits for it to succeed and returns
/// its stderr.
fn render(
    via: &MeshNode,
    nodes: &[MeshNode],
    blend: &Path,
    out: &Path,
    args: &[&str],
) -> Result<String> {
    let log = out.with_extension("log");
    let mut child = rendermesh_tests::rendermesh()
        .arg("render")
        .arg(blend)
        .arg("--out")
        .arg(out)
        .args(args)
        .arg("--api")
        .arg(via.api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?;
    wait_render(&mut child, Duration::from_secs(300), &log, nodes)?;
    Ok(std::fs::read_to_string(log.with_extension("err"))?)
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".log") && !n.ends_with(".err"))
        .collect();
    names.sort();
    Ok(names)
}

/// Every channel of an EXR file: its name and whether it holds 32-bit floats.
fn exr_channels(path: &Path) -> Result<Vec<(String, bool)>> {
    let meta = exr::meta::MetaData::read_from_file(path, false)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = meta.headers.first().context("no header")?;
    Ok(header
        .channels
        .list
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.sample_type == exr::meta::attribute::SampleType::F32,
            )
        })
        .collect())
}

/// Decoded float samples of an EXR.
fn exr_samples(path: &Path) -> Result<(u32, u32, Vec<f32>)> {
    let img = image::open(path)
        .with_context(|| format!("cannot decode {}", path.display()))?
        .to_rgba32f();
    Ok((img.width(), img.height(), img.into_raw()))
}

#[test]
fn without_flags_a_job_renders_the_files_frames_step_and_exr_settings_like_blender_a() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let blend = example_variant(
        tmp.path(),
        "stepped",
        "scene.frame_start, scene.frame_end, scene.frame_step = 1, 5, 2\n\
         scene.render.resolution_percentage = 10\n\
         scene.cycles.samples = 2\n\
         im = scene.render.image_settings\n\
         im.file_format, im.color_depth, im.exr_codec = 'OPEN_EXR', '32', 'ZIP'",
    )?;
    let reference = tmp.path().join("reference");
    blender_plain(&blend, &reference)?;
    let nodes = cluster(&tmp.path().join("mesh"), 2)?;
    let out = tmp.path().join("out");
    render(&nodes[1], &nodes, &blend, &out, &["--chunk", "1"])?;

    // The same frames, numbered as Blender numbers them, in the same format.
    assert_eq!(
        names(&out)?,
        ["stepped_0001.exr", "stepped_0003.exr", "stepped_0005.exr"]
    );
    assert_eq!(
        names(&reference)?,
        ["ref_0001.exr", "ref_0003.exr", "ref_0005.exr"]
    );
    for f in [1, 3, 5] {
        let ours = out.join(format!("stepped_{f:04}.exr"));
        let theirs = reference.join(format!("ref_{f:04}.exr"));
        let channels = exr_channels(&ours)?;
        assert_eq!(channels, exr_channels(&theirs)?, "frame {f}");
        assert!(channels.iter().all(|(_, full)| *full), "{channels:?}");
        assert!(
            exr_samples(&ours)? == exr_samples(&theirs)?,
            "frame {f} differs"
        );
    }
    let job = newest_job(&nodes[1]).context("no job")?;
    assert_eq!(job["spec"]["frames"]["step"], 2, "{job}");
    assert_eq!(job["spec"]["keep_file_format"], true, "{job}");
    Ok(())
}

#[test]
fn an_eevee_scene_renders_as_blender_renders_it_and_cycles_when_asked() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let blend = example_variant(
        tmp.path(),
        "eevee",
        "scene.render.engine = 'BLENDER_EEVEE'\n\
         scene.eevee.taa_render_samples = 4\n\
         scene.render.resolution_percentage = 20\n\
         scene.frame_end = 4\n\
         scene.render.image_settings.file_format = 'PNG'",
    )?;
    let reference = tmp.path().join("reference");
    blender_plain(&blend, &reference)?;
    let nodes = cluster(&tmp.path().join("mesh"), 2)?;
    // Both nodes find out that they run EEVEE headless and say so in `peers`.
    wait_for("both nodes to run EEVEE", Duration::from_secs(60), || {
        let peers = nodes[0].peers()?;
        let all = peers["peers"].as_array()?;
        (all.len() == 2
            && all.iter().all(|p| {
                p["engines"]
                    .as_array()
                    .is_some_and(|e| e.contains(&"Eevee".into()))
            }))
        .then_some(())
    })?;
    let shown = nodes[0].cli(&["peers"])?;
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(table.contains("cycles,eevee,workbench"), "{table}");

    let out = tmp.path().join("out");
    let said = render(&nodes[1], &nodes, &blend, &out, &["--chunk", "1"])?;
    for f in 1..=4 {
        assert_same_pixels(
            &out.join(format!("eevee_{f:04}.png")),
            &reference.join(format!("ref_{f:04}.png")),
        )
        .with_context(|| format!("frame {f}"))?;
    }
    let job = newest_job(&nodes[1]).context("no job")?;
    assert_eq!(job["spec"]["engine"], "Eevee", "{job}");
    let workers = job_workers(&job);
    assert_eq!(workers.len(), 2, "rendered by {workers:?} only; {said}");

    // One frame would be tiled on two nodes; EEVEE's tiles would not match, so it is not.
    let single = tmp.path().join("single");
    let said = render(&nodes[1], &nodes, &blend, &single, &["--frames", "2"])?;
    assert!(said.contains("rendering whole frames"), "{said}");
    assert_same_pixels(
        &single.join("eevee_0002.png"),
        &reference.join("ref_0002.png"),
    )?;

    // --engine cycles overrides the file, and says so.
    let cycles = tmp.path().join("cycles");
    let said = render(
        &nodes[1],
        &nodes,
        &blend,
        &cycles,
        &[
            "--engine",
            "cycles",
            "--frames",
            "1",
            "--tiles",
            "none",
            "--samples",
            "2",
        ],
    )?;
    assert!(said.contains("rendering with cycles"), "{said}");
    let job = newest_job(&nodes[1]).context("no job")?;
    assert_eq!(job["spec"]["engine"], "Cycles", "{job}");
    if assert_same_pixels(
        &cycles.join("eevee_0001.png"),
        &reference.join("ref_0001.png"),
    )
    .is_ok()
    {
        bail!("--engine cycles rendered what EEVEE renders");
    }
    Ok(())
}
