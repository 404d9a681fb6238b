//! A scene whose rigid-body simulation is not baked: `render` bakes it on the submitting
//! machine (the file stays as it is) and two nodes render frames pixel-identical to
//! `blender -b -a` on the same file baked with Blender's own `ptcache.bake_all`; with
//! `--no-bake` it is refused, naming the simulation.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_tests::{
    assert_same_pixels, bake_with_blender, blender_plain, cluster, job_workers, newest_job, pixels,
    sim_scene, wait_render,
};

#[test]
fn an_unbaked_simulation_is_baked_at_submit_and_renders_as_blender_renders_the_baked_file()
-> Result<()> {
    let tmp = tempfile::tempdir()?;
    let blend = tmp.path().join("scene/sim.blend");
    sim_scene(&blend)?;
    let original = std::fs::read(&blend)?;
    let reference = tmp.path().join("reference");
    let baked = tmp.path().join("baked/sim.blend");
    std::fs::create_dir_all(baked.parent().context("parent")?)?;
    bake_with_blender(&blend, &baked)?;
    blender_plain(&baked, &reference)?;
    let nodes = cluster(&tmp.path().join("mesh"), 2)?;

    // Refused with --no-bake, naming the simulation; nothing is submitted.
    let out = tmp.path().join("out");
    let out_arg = out.display().to_string();
    let blend_arg = blend.display().to_string();
    let refused = nodes[1].cli(&["render", &blend_arg, "--no-bake", "--out", &out_arg])?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("unbaked simulation") && said.contains("rigid body \"RigidBodyWorld\""),
        "{said}"
    );
    assert!(newest_job(&nodes[1]).is_none(), "a job was submitted");

    let log = tmp.path().join("render.log");
    let mut child = rendermesh_tests::rendermesh()
        .args(["render", &blend_arg, "--chunk", "1", "--out", &out_arg])
        .arg("--api")
        .arg(nodes[1].api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?;
    wait_render(&mut child, Duration::from_secs(300), &log, &nodes)?;
    let said = std::fs::read_to_string(log.with_extension("err"))?;
    assert!(said.contains("note: baked 1 unbaked simulation"), "{said}");
    for f in 1..=8 {
        assert_same_pixels(
            &out.join(format!("sim_{f:04}.png")),
            &reference.join(format!("ref_{f:04}.png")),
        )
        .with_context(|| format!("frame {f}"))?;
    }
    // The cube falls: the simulation is in the frames.
    assert_ne!(
        pixels(&out.join("sim_0001.png"))?,
        pixels(&out.join("sim_0006.png"))?
    );
    assert_eq!(std::fs::read(&blend)?, original, "the user's file changed");
    let job = newest_job(&nodes[1]).context("no job")?;
    let workers = job_workers(&job);
    assert_eq!(workers.len(), 2, "rendered by {workers:?} only");
    Ok(())
}
