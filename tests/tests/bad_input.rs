//! Bad input through the real CLI and a real node: each gets a clear error naming what is wrong,
//! and the node keeps serving.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rendermesh_tests::{MeshNode, free_port};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_scene_without_a_camera_fails_the_job_quickly_with_blenders_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = MeshNode::start(dir.path(), "solo", None)?;
    let blend = dir.path().join("nocam.blend");
    let made = rendermesh_tests::run_bounded(
        std::process::Command::new("blender")
            .args([
                "-b",
                "--factory-startup",
                "-Y",
                "--python-exit-code",
                "2",
                "--python-expr",
            ])
            .arg(format!(
                "import bpy\n{}\nbpy.ops.wm.save_as_mainfile(filepath={:?})",
                "for o in list(bpy.data.objects):\n    bpy.data.objects.remove(o)",
                blend.display().to_string()
            )),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    let started = Instant::now();
    let out = node.cli(&[
        "render",
        &blend.display().to_string(),
        "--frames",
        "1-3",
        "--out",
        &dir.path().join("out").display().to_string(),
    ])?;
    assert!(!out.status.success(), "a camera-less scene rendered");
    let err = stderr(&out);
    assert!(err.contains("no camera"), "{err}");
    assert!(err.contains("failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // The node still answers.
    assert!(node.peers().is_some());
    Ok(())
}

#[test]
fn a_file_that_is_not_a_blend_and_a_bad_frame_range_are_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = MeshNode::start(dir.path(), "solo", None)?;
    let text = dir.path().join("notes.blend");
    std::fs::write(&text, "these are my notes")?;
    let out_dir = dir.path().join("out").display().to_string();
    let out = node.cli(&[
        "render",
        &text.display().to_string(),
        "--frames",
        "1-3",
        "--out",
        &out_dir,
    ])?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("notes.blend is not a Blender file"), "{err}");

    let missing = dir.path().join("missing.blend").display().to_string();
    let out = node.cli(&["render", &missing, "--frames", "1-3", "--out", &out_dir])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.blend"), "{}", stderr(&out));

    let out = node.cli(&[
        "render",
        &text.display().to_string(),
        "--frames",
        "9-2",
        "--out",
        &out_dir,
    ])?;
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = stderr(&out);
    assert!(
        err.contains("9-2") && err.contains("after the last"),
        "{err}"
    );

    let out = node.cli(&["job", "zz", "--json"])?;
    assert!(!out.status.success());
    assert!(!stderr(&out).is_empty());
    let out = node.cli(&["download", "zz", "--out", &out_dir])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("zz"), "{}", stderr(&out));
    assert!(node.get("/api/v1/node").context("node still answers")?["id"].is_string());
    Ok(())
}

#[test]
fn detach_without_a_node_and_an_unusable_secret_file_are_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let blend = dir.path().join("shot.blend");
    std::fs::write(&blend, "BLENDER-v304 and then nothing")?;
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .arg("render")
            .arg(&blend)
            .args(["--frames", "1", "--out"])
            .arg(dir.path().join("out"))
            .args(["--detach", "--api", &nobody]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(!out.status.success(), "detached with no node");
    let err = stderr(&out);
    assert!(
        err.contains("--detach needs a running node") && err.contains(&nobody),
        "{err}"
    );
    assert!(!dir.path().join("rendermesh-data").exists());

    let short = dir.path().join("short.secret");
    std::fs::write(&short, "abc\n")?;
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--api", &nobody, "--data-dir"])
            .arg(dir.path().join("node"))
            .arg("--secret-file")
            .arg(&short),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(!out.status.success(), "started with a 3-character secret");
    let err = stderr(&out);
    assert!(
        err.contains("short.secret") && err.contains("3 characters"),
        "{err}"
    );
    Ok(())
}
