//! `rendermesh chart`: every example chart renders through the mesh, a tiled render equals the
//! untiled one pixel for pixel, a labelled chart's title and legend are where the layout puts
//! them, `--emit-scene` / `--emit-blend` write what they promise, and a
//! file with mistakes is refused with every problem named and nothing rendered.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, bail};
use rendermesh_tests::{MeshNode, assert_same_pixels, cluster_with, pixels, workspace};

const SAMPLES: &str = "4";
/// The examples render at this share of their size (a sixteenth of the pixels); the slope
/// surface of `a_surface_takes_its_ramps_end_colours` renders at its full declared size.
const PERCENT: u32 = 25;

fn examples() -> Result<Vec<PathBuf>> {
    let dir = workspace().join("examples/charts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "chart"))
        .collect();
    files.sort();
    if files.len() < 5 {
        bail!(
            "expected several example charts in {}, found {files:?}",
            dir.display()
        );
    }
    Ok(files)
}

fn chart(node: &MeshNode, args: &[&str]) -> Result<Output> {
    let mut all = vec!["chart"];
    all.extend(args);
    node.cli(&all)
}

fn ok(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The image size a chart file asks for (`image-size; W; H`).
fn image_size(file: &Path) -> Result<(u32, u32)> {
    let text = std::fs::read_to_string(file)?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("image-size"))
        .context("no image-size")?;
    let mut parts = line.split(';').skip(1).map(|v| v.trim().parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(w)), Some(Ok(h))) => Ok((w, h)),
        _ => bail!("cannot read `{line}`"),
    }
}

/// The image type a chart file asks for.
fn image_type(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(';')?;
            (key.trim().eq_ignore_ascii_case("image-type")).then(|| value.trim().to_lowercase())
        })
        .context("no image-type")
}

#[test]
fn every_example_renders_and_a_tiled_chart_equals_the_untiled_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // No check renders (`--no-verify`): each chart here is one task, which a check would
    // render twice; checks have their own tests (durable.rs, the simulator).
    let nodes = cluster_with(
        &dir.path().join("mesh"),
        2,
        &["--threads", "1", "--no-verify"],
    )?;
    let mut rendered = 0;
    for file in examples()? {
        let stem = file.file_stem().and_then(|s| s.to_str()).context("name")?;
        let out = dir.path().join(format!("{stem}.{}", image_type(&file)?));
        let run = chart(
            &nodes[0],
            &[
                path_str(&file),
                "--out",
                path_str(&out),
                "--samples",
                SAMPLES,
                "--resolution-percent",
                &PERCENT.to_string(),
                "--tiles",
                "none",
            ],
        )?;
        ok(run, &format!("chart {stem}"))?;
        let (w, h, px) = pixels(&out)?;
        // Blender's arithmetic: the size times the percentage, rounded down.
        let (fw, fh) = image_size(&file)?;
        assert_eq!(
            (w, h),
            (fw * PERCENT / 100, fh * PERCENT / 100),
            "{stem}: not the size the file asks for at {PERCENT} %"
        );
        // Not a blank image: a chart shows more than one colour.
        let first = &px[..4];
        assert!(
            px.chunks(4).any(|p| p != first),
            "{stem}: every pixel is the same"
        );
        rendered += 1;
    }
    assert!(rendered >= 5);

    // A labelled chart in 2x2 tiles over both nodes: the same pixels as whole (glass, text
    // and all), its title and legend where the layout puts them.
    labels_are_drawn_in_3d(&nodes[1], dir.path())?;
    let jobs = nodes[1].get("/api/v1/jobs").context("jobs")?;
    let newest = &jobs[0];
    assert_eq!(newest["grid"]["cols"], 2, "{newest}");
    // A chart's scene is self-contained, texts included (meshes, no font file): it ships no
    // file but its .blend, and misses none.
    let all = jobs.as_array().context("jobs")?;
    assert!(all.len() >= 7, "{} jobs", all.len());
    for job in all {
        assert_eq!(job["spec"]["deps"], serde_json::json!([]), "{job}");
        assert_eq!(job["spec"]["missing"], serde_json::json!([]), "{job}");
        assert!(job["spec"]["blend_path"].is_string(), "{job}");
    }
    a_surface_takes_its_ramps_end_colours(&nodes[0], dir.path())
}

/// A surface rising from its front-right corner to its back-left one, coloured from blue to
/// red: drawn in 2x2 tiles it equals its whole render (smooth normals and vertex colours
/// included), the highest region is red and the lowest blue.
fn a_surface_takes_its_ramps_end_colours(node: &MeshNode, dir: &Path) -> Result<()> {
    use rendermesh_scene::chart::{self, scene::project};
    let (rows, cols) = (6, 8);
    let data: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (0..cols)
                .map(|c| ((rows - 1 - r) + (cols - 1 - c)).to_string())
                .collect();
            row.join("; ")
        })
        .collect();
    let text = format!(
        "CONFIG\nimage-size; 240; 160\nimage-type; png\ngraph-type; surface\n\
         default-material; material(diffuse, 0.5)\ndefault-color; color(0.5, 0.5, 0.5)\n\
         floor-color; color(1, 1, 1)\nsurface-colors; color(0, 0, 1); color(1, 0, 0)\nEND\n\
         DATA\n{}\nEND\n",
        data.join("\n")
    );
    let file = dir.join("slope.chart");
    std::fs::write(&file, &text)?;
    let whole = dir.join("slope-whole.png");
    let tiled = dir.join("slope-tiled.png");
    for (out, tiles) in [(&whole, "none"), (&tiled, "2x2")] {
        let run = chart(
            node,
            &[
                path_str(&file),
                "--out",
                path_str(out),
                "--samples",
                SAMPLES,
                "--tiles",
                tiles,
            ],
        )?;
        ok(run, &format!("chart slope --tiles {tiles}"))?;
    }
    assert_same_pixels(&tiled, &whole)?;
    let (w, h, px) = pixels(&whole)?;
    assert_eq!((w, h), (240, 160));
    let scene = chart::layout(&chart::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?);
    let surface = scene
        .meshes
        .iter()
        .find(|m| m.name.starts_with("chart-"))
        .context("no surface")?;
    let centre = {
        let n = surface.vertices.len() as f64;
        [0, 1, 2].map(|i| surface.vertices.iter().map(|v| v[i]).sum::<f64>() / n)
    };
    // The colour a little inside the surface from its highest and lowest corners.
    let colour_near = |highest: bool| -> Result<[u8; 3]> {
        let corner = surface
            .vertices
            .iter()
            .copied()
            .max_by(|a, b| {
                let (a, b) = if highest { (a[2], b[2]) } else { (b[2], a[2]) };
                a.total_cmp(&b)
            })
            .context("no vertex")?;
        let p = [0, 1, 2].map(|i| corner[i] + (centre[i] - corner[i]) * 0.12);
        let (u, v) = project(&scene, p).context("behind the camera")?;
        let (x, y) = ((u * f64::from(w)) as usize, (v * f64::from(h)) as usize);
        let i = (y.min(h as usize - 1) * w as usize + x.min(w as usize - 1)) * 4;
        Ok([px[i], px[i + 1], px[i + 2]])
    };
    let top = colour_near(true)?;
    let bottom = colour_near(false)?;
    let (r, g, b) = (u32::from(top[0]), u32::from(top[1]), u32::from(top[2]));
    assert!(
        r > 2 * g && r > 2 * b,
        "the highest region is {top:?}, not red"
    );
    let (r, g, b) = (
        u32::from(bottom[0]),
        u32::from(bottom[1]),
        u32::from(bottom[2]),
    );
    assert!(
        b > 2 * g && b > 2 * r,
        "the lowest region is {bottom:?}, not blue"
    );
    Ok(())
}

/// Renders `file` at half its size whole into `whole` and in `tiles` into `tiled`, and checks
/// they are the same pixels.
fn half_size_whole_and_tiled(
    node: &MeshNode,
    file: &Path,
    whole: &Path,
    tiled: &Path,
    tiles: &str,
) -> Result<()> {
    for (out, tiles) in [(whole, "none"), (tiled, tiles)] {
        let run = chart(
            node,
            &[
                path_str(file),
                "--out",
                path_str(out),
                "--samples",
                SAMPLES,
                "--resolution-percent",
                "50",
                "--tiles",
                tiles,
            ],
        )?;
        ok(run, &format!("chart {} --tiles {tiles}", file.display()))?;
    }
    assert_same_pixels(tiled, whole)
}

/// The labelled histogram: drawn in 2x2 tiles over both nodes it equals its whole render; its
/// title stands above the chart, dark on the light background; its legend's first swatch has
/// its variable's colour.
fn labels_are_drawn_in_3d(node: &MeshNode, dir: &Path) -> Result<()> {
    use rendermesh_scene::chart::{self, font, scene::project};
    let file = workspace().join("examples/charts/labelled-histogram.chart");
    let text = std::fs::read_to_string(&file)?;
    let parsed = chart::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let scene = chart::layout(&parsed);
    let whole = dir.join("labelled-whole.png");
    let tiled = dir.join("labelled-tiled.png");
    half_size_whole_and_tiled(node, &file, &whole, &tiled, "2x2")?;
    let (w, h, px) = pixels(&whole)?;
    assert_eq!((w, h), (320, 200), "not the declared size at 50 %");
    let at = |p: [f64; 3]| {
        let (u, v) = project(&scene, p).context("behind the camera")?;
        anyhow::Ok(((u * f64::from(w)) as i64, (v * f64::from(h)) as i64))
    };
    let pixel = |x: i64, y: i64| {
        let i = ((y.clamp(0, i64::from(h) - 1) * i64::from(w)) + x.clamp(0, i64::from(w) - 1))
            as usize
            * 4;
        [px[i], px[i + 1], px[i + 2]]
    };
    let dark = |p: [u8; 3]| p.iter().all(|c| *c < 110);

    // The title's box, from its place in the scene and the font's widths.
    let title = scene
        .texts
        .iter()
        .find(|t| t.name == "title")
        .context("no title in the scene")?;
    let width = font::width(&title.body) * title.size;
    let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for x in [-width / 2.0, width / 2.0] {
        for y in [-font::DESCENT * title.size, font::ASCENT * title.size] {
            let m = title.matrix;
            let p = [0, 1, 2].map(|i| m[i][0] * x + m[i][1] * y + m[i][3]);
            let (px, py) = at(p)?;
            (x0, y0, x1, y1) = (x0.min(px), y0.min(py), x1.max(px), y1.max(py));
        }
    }
    // Above the chart: every bar's corner lands below the title's box.
    let chart_top = scene
        .meshes
        .iter()
        .filter(|m| m.name.starts_with("chart-"))
        .flat_map(|m| m.vertices.iter())
        .map(|v| at(*v).map(|p| p.1))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .min()
        .context("no bars")?;
    assert!(
        y1 <= chart_top,
        "the title ({y0}..{y1}) overlaps the chart (top {chart_top})"
    );
    let inked = (y0..=y1)
        .flat_map(|y| (x0..=x1).map(move |x| (x, y)))
        .filter(|&(x, y)| dark(pixel(x, y)))
        .count();
    assert!(
        inked >= 40,
        "only {inked} dark pixels where the title \"{}\" stands ({x0},{y0})-({x1},{y1})",
        title.body
    );
    // The background beside the title is not dark: the ink is the title's.
    assert!(!dark(pixel(2, 2)), "the corner is dark: {:?}", pixel(2, 2));

    // The legend's first entry is `record`, color(0.9, 0.2, 0.1): its swatch, facing the
    // light, shows that colour (sRGB (243, 124, 89)), not the bars' default blue
    // (149, 196, 238).
    let entry = scene.legend.first().context("no legend")?;
    assert_eq!(entry.name, "record");
    let (sx, sy) = at(entry.swatch)?;
    let mut mean = [0.0f64; 3];
    for (dx, dy) in [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)] {
        let p = pixel(sx + dx, sy + dy);
        for c in 0..3 {
            mean[c] += f64::from(p[c]) / 5.0;
        }
    }
    let want = [243.0, 124.0, 89.0];
    assert!(
        (0..3).all(|c| (mean[c] - want[c]).abs() < 40.0),
        "the swatch of `record` at ({sx}, {sy}) is {mean:?}, not about {want:?}"
    );
    Ok(())
}

#[test]
fn emit_scene_and_emit_blend_write_without_rendering() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = workspace().join("examples/charts/histogram.chart");
    let xml = dir.path().join("scene.xml");
    let blend = dir.path().join("chart.blend");
    // No node runs at this port: nothing renders, so none is needed. A render would write
    // its default output, `histogram.png`, in the working directory.
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh()
            .current_dir(dir.path())
            .args(["chart", path_str(&file), "--emit-scene", path_str(&xml)])
            .args(["--emit-blend", path_str(&blend)]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    ok(out, "chart --emit-scene --emit-blend")?;
    let text = std::fs::read_to_string(&xml)?;
    assert!(
        text.contains("<cycles") && text.contains("<camera"),
        "{text:.200}"
    );
    let head = std::fs::read(&blend)?;
    assert!(head.starts_with(b"BLENDER"), "not a .blend");
    assert!(!dir.path().join("histogram.png").exists());
    Ok(())
}

#[test]
fn a_file_with_mistakes_is_refused_with_every_problem_located() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("typos.chart");
    std::fs::write(
        &file,
        "CONFIG\n\
         image-size; 64; 48\n\
         image-type: png\n\
         graph-type; histogram\n\
         default-material; material(difuse, 0.5)\n\
         default-color; color(1.5, 0, 0)\n\
         floor-color; color(1, 1, 1)\n\
         END\n\
         DATA\n\
         1; 2; $blue$ 3\n\
         4; 1O; 6\n\
         END\n",
    )?;
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh().args(["chart", "check", path_str(&file)]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // As compilers show them: `--> FILE:LINE:COLUMN`, the line, and the help beneath.
    for needle in [
        "typos.chart:3:11",
        "typos.chart:5:28",
        "= help: did you mean `diffuse`?",
        "typos.chart:6:22",
        "typos.chart:10:7",
        "$blue",
        "typos.chart:11:4",
        "1O",
        "nothing was rendered",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Rendering the same file renders nothing, and no Blender or node is involved.
    let png = dir.path().join("typos.png");
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh().args(["chart", path_str(&file), "--out", path_str(&png)]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    assert!(!out.status.success());
    assert!(!png.exists());
    // A valid example passes the check.
    let good = workspace().join("examples/charts/cake.chart");
    let out = rendermesh_tests::run_bounded(
        rendermesh_tests::rendermesh().args(["chart", "check", path_str(&good)]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    let out = ok(out, "chart check cake")?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: cake"));
    Ok(())
}

#[test]
fn chart_check_json_gives_every_problem_as_data_for_editors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("typos.chart");
    let text = "CONFIG\nimage-size; 64; 48\nimage-type; png\ngraph-type; histogram\n\
                default-material; material(difuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
                floor-color; color(1, 1, 1)\nEND\nDATA\n4; 1O; 6\nEND\n";
    std::fs::write(&file, text)?;
    let check = |file: &std::path::Path| -> Result<(bool, serde_json::Value)> {
        let out = rendermesh_tests::run_bounded(
            rendermesh_tests::rendermesh().args(["chart", "check", "--json", path_str(file)]),
            rendermesh_tests::COMMAND_TIMEOUT,
        )?;
        Ok((out.status.success(), serde_json::from_slice(&out.stdout)?))
    };
    let (success, json) = check(&file)?;
    assert!(!success, "{json}");
    assert_eq!(
        json,
        serde_json::json!({
            "ok": false,
            "summary": null,
            "diagnostics": [
                {
                    "line": 5, "column": 28, "length": 6,
                    "message": "expected `diffuse`, `glossy` or `glass`, found \"difuse\"",
                    "suggestion": "did you mean `diffuse`?",
                },
                {
                    "line": 10, "column": 4, "length": 2,
                    "message": "expected a number, found \"1O\"",
                    "suggestion": "did you mean 10?",
                },
            ],
        })
    );
    // Each span is the text found, where it stands.
    for d in json["diagnostics"].as_array().into_iter().flatten() {
        let line = text
            .lines()
            .nth(d["line"].as_u64().unwrap_or(0) as usize - 1);
        let at: String = line
            .unwrap_or_default()
            .chars()
            .skip(d["column"].as_u64().unwrap_or(0) as usize - 1)
            .take(d["length"].as_u64().unwrap_or(0) as usize)
            .collect();
        assert!(
            d["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{at:?}")),
            "{d}"
        );
    }
    let (success, json) = check(&workspace().join("examples/charts/cake.chart"))?;
    assert!(success, "{json}");
    assert_eq!(json["ok"], true);
    assert!(
        json["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("cake, ")),
        "{json}"
    );
    assert_eq!(json["diagnostics"], serde_json::json!([]));
    Ok(())
}
