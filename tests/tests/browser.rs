//! The page a node serves, in a real browser (Debian's headless Chromium through ChromeDriver,
//! see `rendermesh_tests::browser`), on a mesh of two `rendermesh node` processes rendering
//! real Cycles frames.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rendermesh_node::api::sheet;
use rendermesh_node::thumb;
use rendermesh_tests::browser::Browser;
use rendermesh_tests::{
    Fixture, MeshNode, assert_same_pixels, cluster, dump_logs, http_get_bytes, http_send,
};
use serde_json::Value;

/// The shared fixture of `tests/tests/mesh.rs` (the same key: its reference frames are made
/// once per run of the suite).
const FRAMES: (u32, u32) = (1, 12);
const SAMPLES: u32 = 16;
const PERCENT: u32 = 25;

/// How long a job, or the page, may take.
const TIMEOUT: Duration = Duration::from_secs(180);
/// How long a click may take to show in the job's record.
const CLICK: Duration = Duration::from_secs(10);
/// How long a steering click may take to reach the job's record: the request goes to the
/// coordinator, a node rendering at full load, and the record comes back by a pull (CI saw a
/// cancel take over 10 s with three test binaries running).
const STEER: Duration = Duration::from_secs(30);

/// Submits `frames` of the fixture's scene through `node` and returns the job's id.
fn submit(node: &MeshNode, fx: &Fixture, frames: &str) -> Result<String> {
    submit_with(node, fx, frames, &[])
}

/// Submits `frames` of the fixture's scene through `node`, with `more` arguments, and returns
/// the job's id.
fn submit_with(node: &MeshNode, fx: &Fixture, frames: &str, more: &[&str]) -> Result<String> {
    let blend = fx.blend.display().to_string();
    let samples = SAMPLES.to_string();
    let percent = PERCENT.to_string();
    // Detached, the command writes nothing there; the frames are taken from the page.
    let unused = fx.root.join("detached").display().to_string();
    let mut args = vec![
        "render",
        &blend,
        "--frames",
        frames,
        "--samples",
        &samples,
        "--resolution-percent",
        &percent,
        "--detach",
        "--out",
        &unused,
    ];
    args.extend(if more.is_empty() {
        &["--chunk", "1"][..]
    } else {
        more
    });
    let out = node.cli(&args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .map(|id| id.trim().to_owned())
        .with_context(|| {
            format!(
                "no job id printed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Clicks `css` until `done` holds of the job's record (the page redraws a job as its
/// events come: a button found may be replaced before the click lands).
async fn click_until(
    browser: &Browser,
    node: &MeshNode,
    id: &str,
    css: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + STEER;
    loop {
        browser.click(css).await?;
        let poll_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < poll_until {
            if let Some(job) = node.get(&format!("/api/v1/jobs/{id}"))
                && done(&job)
            {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Instant::now() >= deadline {
            let script = format!(
                "return [!!document.querySelector({}), document.getElementById('error').textContent, \
                 performance.getEntriesByType('resource').filter((e) => e.name.includes('/jobs/{id}/')).length];",
                serde_json::to_string(css)?
            );
            let shown = browser.eval(&script);
            bail!(
                "clicking `{css}` did not change job {id} within {STEER:?} (the button is there, \
                 the page's notice, the requests for the job the page completed: {}); the job: {}",
                shown.await?,
                node.get(&format!("/api/v1/jobs/{id}"))
                    .map(|j| format!(
                        "state {}, paused {}, priority {}",
                        j["state"], j["paused"], j["priority"]
                    ))
                    .unwrap_or_default()
            );
        }
    }
}

/// Polls `check` every 100 ms until it holds, for at most `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Frame 1 in 4x4 tiles, paused once its first tile is in: the page shows the tiles done so
/// far, each with its node's name, and the queued ones empty; resumed, the stitched frame's
/// thumbnail is made from it, and shown.
async fn tiled_frame(fx: &Fixture, via: &MeshNode, browser: &Browser) -> Result<()> {
    let id = submit_with(via, fx, "1", &["--tiles", "4x4"])?;
    let record = || via.get(&format!("/api/v1/jobs/{id}"));
    let count = |job: &Value, state: &str| {
        job["tasks"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t["state"] == state).count())
    };
    wait_until("a first tile done", TIMEOUT, || async {
        Ok(record().is_some_and(|j| count(&j, "Done") > 0))
    })
    .await?;
    let out = via.cli(&["pause", &id])?;
    assert!(out.status.success(), "{out:?}");
    // Paused: the tiles handed out finish, and no more are.
    let mut paused = Value::Null;
    wait_until("the paused job's running tiles to finish", TIMEOUT, || {
        paused = record().unwrap_or_default();
        let settled = count(&paused, "Running") == 0;
        async move { Ok(settled) }
    })
    .await?;
    let done = count(&paused, "Done");
    assert!(
        done > 0 && count(&paused, "Queued") > 0,
        "{done} tiles done: {paused}"
    );
    let names: std::collections::BTreeMap<String, String> = via.peers().context("peers")?["peers"]
        .as_array()
        .context("peers")?
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_owned(),
                p["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mosaic = format!("#job-{id} .mosaic[data-frame=\"1\"]");
    let shown = wait_until("the paused frame's tiles shown", CLICK, || async {
        let shown = browser
            .eval(&format!(
                "return [...document.querySelectorAll('{mosaic} img')]\
                 .filter((i) => i.complete && i.naturalWidth > 0).length;"
            ))
            .await?;
        Ok(shown.as_u64() == Some(done as u64))
    })
    .await;
    if let Err(e) = shown {
        let card = card_html(browser, &id).await;
        return Err(e.context(format!("{done} tiles done: {paused}\nthe card: {card}")));
    }
    // Each tile's cell, in row order: its node's name when it was rendered, nothing queued.
    let tags = browser
        .eval(&format!(
            "return [...document.querySelectorAll('{mosaic} > div')]\
             .map((d) => d.querySelector('.tag') ? d.querySelector('.tag').textContent : '');"
        ))
        .await?;
    let tags: Vec<String> = serde_json::from_value(tags)?;
    assert_eq!(tags.len(), 16);
    for task in paused["tasks"].as_array().context("tasks")? {
        let (col, row) = (task["tile"]["col"].as_u64(), task["tile"]["row"].as_u64());
        let cell = (row.context("row")? * 4 + col.context("col")?) as usize;
        let want = match task["worker"].as_str() {
            Some(w) if task["state"] == "Done" => {
                names.get(w).cloned().context("a named worker")?
            }
            _ => String::new(),
        };
        assert_eq!(tags[cell], want, "cell {cell}: {task}");
    }
    browser
        .eval(&format!(
            "document.getElementById('job-{id}').scrollIntoView(); return true;"
        ))
        .await?;
    std::fs::write(
        screenshots(&fx.root).join("page-tiles.png"),
        browser.screenshot().await?,
    )?;
    let out = via.cli(&["resume", &id])?;
    assert!(out.status.success(), "{out:?}");
    wait_until("the tiled frame stitched", TIMEOUT, || async {
        Ok(record().is_some_and(|j| j["state"] == "Done"))
    })
    .await?;
    let job = record().context("the job's record")?;
    let frame = job["stitched"][0]["blob"].as_str().context("a frame")?;
    let (_, bytes) = http_get_bytes(via.api, &format!("/api/v1/blobs/{frame}"))
        .with_context(|| format!("GET frame {frame}"))?;
    // (A tiled frame is rendered with the settings every tile takes, `--exact`: tests/tiles.rs
    // compares it with `blender -b`. Here: its thumbnail is made from it.)
    let stitched = image::load_from_memory(&bytes)?;
    let hash = job["stitched"][0]["thumb"]
        .as_str()
        .context("a thumbnail")?;
    let (_, png) = http_get_bytes(via.api, &format!("/api/v1/blobs/{hash}"))
        .with_context(|| format!("GET thumbnail {hash}"))?;
    let want = thumb::thumbnail(&stitched, None);
    let shown = image::load_from_memory(&png)?.to_rgba8();
    assert!(
        shown == want,
        "the stitched frame's thumbnail ({:?}) differs from the frame's ({:?})",
        shown.dimensions(),
        want.dimensions()
    );
    // The page shows it with the job's frames, and no mosaic once the frame is stitched.
    let card = format!("#job-{id}");
    let shown = wait_until("the stitched frame shown", CLICK, || async {
        let shown = browser
            .eval(&format!(
                "return [...document.querySelectorAll('{card} .thumbs img')]\
                 .filter((i) => i.complete && i.naturalWidth > 0).length * 10 + \
                 document.querySelectorAll('{card} .mosaic').length;"
            ))
            .await?;
        Ok(shown.as_u64() == Some(10))
    })
    .await;
    if let Err(e) = shown {
        let html = card_html(browser, &id).await;
        return Err(e.context(format!("the job: {job}\nthe card: {html}")));
    }
    Ok(())
}

/// A chart typed into the page's editor: its mistake is shown at its line and column with the
/// parser's suggestion, and nothing can be submitted; fixed, it renders on the mesh and the
/// page shows the chart, equal to what `rendermesh chart` makes of the same file.
async fn chart_editor(fx: &Fixture, via: &MeshNode, browser: &Browser) -> Result<()> {
    let good = "# Three shops, four quarters.\nCONFIG\nimage-size; 160; 90\nimage-type; png\n\
                graph-type; histogram\ndefault-material; material(diffuse, 0.5)\n\
                default-color; color(0.2, 0.45, 0.8)\nfloor-color; color(0.9, 0.9, 0.88)\nEND\n\
                DATA\n12; 15; 9; 18\n7; 11; 14; 10\n5; 6; 8; 13\nEND\n";
    let typo = good.replace("material(diffuse", "material(difuse");
    assert!(
        browser.click("#chart-panel > summary").await?,
        "no chart panel"
    );
    browser
        .eval("document.getElementById('chart-panel').scrollIntoView(); return true;")
        .await?;
    browser.fill("#chart-text", &typo).await?;
    let problems = browser
        .wait_text("the mistake shown", "#chart-problems", CLICK, |t| {
            !t.is_empty()
        })
        .await?;
    assert_eq!(
        problems,
        "line 6, column 28: expected `diffuse`, `glossy` or `glass`, found \"difuse\" — did you \
         mean `diffuse`?",
        "the editor's problems"
    );
    // Underlined where it stands, and the render button off.
    let state = browser
        .eval(
            "const m = [...document.querySelectorAll('#chart-marks mark')];\
             return [m.map((e) => [e.dataset.line, e.textContent]),\
                     document.getElementById('chart-render').disabled];",
        )
        .await?;
    assert_eq!(state, serde_json::json!([[["6", "difuse"]], true]));
    std::fs::write(
        screenshots(&fx.root).join("page-chart.png"),
        browser.screenshot().await?,
    )?;
    // Fixed: the check passes and the chart renders.
    browser.fill("#chart-text", good).await?;
    browser
        .wait_text("the fixed chart passing", "#chart-note", CLICK, |t| {
            t.starts_with("ok: histogram, 3 rows, 12 values, 160x90 png")
        })
        .await?;
    browser.fill("#chart-name", "shops").await?;
    browser.fill("#chart-samples", &SAMPLES.to_string()).await?;
    browser.fill("#chart-tiles", "none").await?;
    assert!(browser.click("#chart-render").await?, "no render button");
    let note = browser
        .wait_text("the chart submitted", "#chart-note", TIMEOUT, |t| {
            t.starts_with("submitted job ")
                || t.starts_with("rendered")
                || t.contains("not submitted")
        })
        .await?;
    let id = browser
        .eval("return document.getElementById('chart-note').dataset.job || '';")
        .await?;
    let id = id
        .as_str()
        .filter(|id| !id.is_empty())
        .with_context(|| format!("the page says: {note}"))?
        .to_owned();
    wait_until("the chart shown", TIMEOUT, || async {
        let shown = browser
            .eval(
                "const i = document.getElementById('chart-result');\
                 return !i.hidden && i.complete && i.naturalWidth;",
            )
            .await?;
        Ok(shown.as_u64() == Some(160))
    })
    .await?;
    // The chart shown is the job's one frame, and equals the CLI's render of the same file.
    let record = via
        .get(&format!("/api/v1/jobs/{id}"))
        .context("the chart's job")?;
    assert_eq!(record["spec"]["name"], "shops.blend", "{record}");
    let output = record["tasks"][0]["outputs"][0].clone();
    let shown = browser
        .eval("return document.getElementById('chart-result').dataset.blob;")
        .await?;
    assert_eq!(
        shown, output["blob"],
        "the chart shown is not the job's frame"
    );
    let hash = output["blob"].as_str().context("the chart's blob")?;
    let (_, png) = http_get_bytes(via.api, &format!("/api/v1/blobs/{hash}"))
        .context("GET the chart's frame")?;
    let from_page = fx.root.join("shops-page.png");
    std::fs::write(&from_page, png)?;
    let file = fx.root.join("shops.chart");
    std::fs::write(&file, good)?;
    let from_cli = fx.root.join("shops-cli.png");
    let (file_arg, out_arg) = (file.display().to_string(), from_cli.display().to_string());
    let samples = SAMPLES.to_string();
    let out = via.cli(&[
        "chart",
        &file_arg,
        "--out",
        &out_arg,
        "--samples",
        &samples,
        "--tiles",
        "none",
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "rendermesh chart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_pixels(&from_page, &from_cli).context("the page's chart against the CLI's")?;
    Ok(())
}

/// The "preview video" link of the 6-frame job: the node makes an H.264 video of the frames
/// with ffmpeg, and the page plays it. It holds 6 frames of the frames' size, the first close to
/// `blender -b`'s (the video is lossy).
async fn preview_video(fx: &Fixture, via: &MeshNode, browser: &Browser, six: &str) -> Result<()> {
    let reference = image::open(fx.reference_frame(1))?.to_rgb8();
    let (width, height) = reference.dimensions();
    // The card may be redrawn between finding the link and clicking it: clicked again then.
    let link = format!("a[data-preview=\"{six}\"]");
    if let Err(e) = wait_until("the preview link clicked", CLICK, || async {
        browser.click(&link).await
    })
    .await
    {
        bail!("{e}: {}", card_html(browser, six).await);
    }
    let state = format!(
        "const v = document.querySelector('#job-{six} video.clip');\
         return v ? [v.readyState, v.videoWidth, v.videoHeight, v.error && v.error.message] \
         : document.getElementById('error').textContent;"
    );
    let playing = wait_until("the preview video playing on the page", TIMEOUT, || async {
        let state = browser.eval(&state).await?;
        Ok(state[0].as_u64().is_some_and(|r| r >= 1)
            && state[1] == width & !1
            && state[2] == height & !1)
    })
    .await;
    if let Err(e) = playing {
        bail!("{e}: the video reads {}", browser.eval(&state).await?);
    }
    let (_, mp4) = http_get_bytes(via.api, &format!("/api/v1/jobs/{six}/preview.mp4"))
        .context("GET preview.mp4")?;
    let video = fx.root.join("preview.mp4");
    std::fs::write(&video, mp4)?;
    let video_arg = video.display().to_string();
    let probe = rendermesh_tests::run_bounded(
        std::process::Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
            &video_arg,
        ]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    let probe: Value = serde_json::from_slice(&probe.stdout)?;
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{probe}");
    assert_eq!(stream["nb_read_frames"], "6", "{probe}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(u64::from(width & !1)), Some(u64::from(height & !1))),
        "{probe}"
    );
    let first = fx.root.join("preview-first.png");
    let first_arg = first.display().to_string();
    let out = rendermesh_tests::run_bounded(
        std::process::Command::new("ffmpeg").args([
            "-v",
            "error",
            "-i",
            &video_arg,
            "-frames:v",
            "1",
            "-y",
            &first_arg,
        ]),
        rendermesh_tests::COMMAND_TIMEOUT,
    )?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = image::open(&first)?.to_rgb8();
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y, p) in shown.enumerate_pixels() {
        let q = reference.get_pixel(x, y);
        for c in 0..3 {
            sum += u64::from(p[c].abs_diff(q[c]));
            n += 1;
        }
    }
    let mean = sum as f64 / n as f64;
    assert!(
        mean < 4.0,
        "the preview's first frame is {mean:.2} levels from frame 1 on average"
    );
    Ok(())
}

/// The page's card of job `id`, as HTML, for a failure's message.
async fn card_html(browser: &Browser, id: &str) -> String {
    browser
        .eval(&format!(
            "const c = document.getElementById('job-{id}'); return c ? c.outerHTML : 'no card';"
        ))
        .await
        .unwrap_or_default()
        .to_string()
}

/// Where the page's screenshots go: `RENDERMESH_SCREENSHOTS` (docs/screenshots when taken for
/// the docs), else the test's own directory.
fn screenshots(fallback: &std::path::Path) -> PathBuf {
    std::env::var_os("RENDERMESH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.to_path_buf())
}

/// On a 2-node mesh, the page of the node a job was submitted to shows its 6 frames arrive,
/// pushed by server-sent events (the page never polls the job list); on a running 500-frame
/// job its buttons pause, resume, raise and cancel it, and the page stays under 2,000
/// elements; its "all as one zip" link gives the 6 frames, each equal to `blender -b`'s.
#[test]
fn the_page_watches_steers_and_downloads_a_job_in_a_real_browser() -> Result<()> {
    let fx = Fixture::new(FRAMES, SAMPLES, PERCENT, &[])?;
    let nodes = cluster(&fx.root.join("mesh"), 2)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime
        .block_on(page(&fx, &nodes))
        .with_context(|| dump_logs(&nodes))
}

async fn page(fx: &Fixture, nodes: &[MeshNode]) -> Result<()> {
    let via = &nodes[0];
    let browser = Browser::start().await?;
    browser
        .client
        .goto(&format!("http://{}/", via.api))
        .await
        .context("the page does not open")?;
    browser
        .wait_text("both nodes listed", "#summary", TIMEOUT, |t| {
            t.starts_with("2 nodes")
        })
        .await?;

    // A page closed mid-upload left the first 100,000 bytes of the example .blend on the node
    // (an upload it remembers by the file's name, size and time): picked again, the file goes
    // on from there.
    let bytes = std::fs::read(&fx.blend)?;
    let (status, opened) = http_send(
        via.api,
        "POST",
        "/api/v1/uploads",
        "application/json",
        format!("{{\"size\": {}}}", bytes.len()).as_bytes(),
    )
    .context("POST /uploads")?;
    assert_eq!(status, 201, "{opened}");
    let upload: Value = serde_json::from_str(&opened)?;
    let upload = upload["id"].as_str().context("an upload id")?.to_owned();
    let (status, sent) = http_send(
        via.api,
        "PUT",
        &format!("/api/v1/uploads/{upload}?offset=0"),
        "application/octet-stream",
        &bytes[..100_000],
    )
    .context("PUT the first piece")?;
    assert_eq!(status, 200, "{sent}");
    let modified = std::fs::metadata(&fx.blend)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    browser
        .eval(&format!(
            "localStorage.setItem('rendermesh-upload:scene.blend:{}:{modified}', '{upload}'); return true;",
            bytes.len()
        ))
        .await?;

    // The example .blend picked in the page's form: uploaded at once, and its scene read by
    // the node, which fills the frames with the file's own (1-24). 6 frames asked, the rest
    // left as the file says.
    let path = fx.blend.display().to_string();
    browser.fill("#blend", &path).await?;
    let note = browser
        .wait_text("the file's scene", "#upload-note", TIMEOUT, |t| {
            t.contains("scene \"") || t.contains("cannot read") || t.contains("not a .blend")
        })
        .await?;
    assert!(
        note.contains("scene \"Scene\", frames 1-24, CYCLES, PNG"),
        "{note}"
    );
    let frames = browser
        .eval("return document.getElementById('frames').value;")
        .await?;
    assert_eq!(frames, "1-24", "the frames field");
    browser.fill("#frames", "1-6").await?;
    browser.fill("#samples", &SAMPLES.to_string()).await?;
    browser.fill("#percent", &PERCENT.to_string()).await?;
    browser.fill("#chunk", "1").await?;
    assert!(browser.click("#render").await?, "no render button");
    let note = browser
        .wait_text("the job submitted", "#upload-note", TIMEOUT, |t| {
            t.starts_with("submitted job ") || t.starts_with("not submitted")
        })
        .await?;
    let six = note
        .strip_prefix("submitted job ")
        .with_context(|| format!("the page says: {note}"))?
        .trim()
        .to_owned();
    let bar = browser
        .eval("return document.getElementById('upload-bar').style.width;")
        .await?;
    assert_eq!(bar, "100%", "the upload's progress bar");
    // It went on from the 100,000 bytes the node held, and the job renders the whole file.
    let offsets = browser
        .eval(&format!(
            "return performance.getEntriesByType('resource').map((e) => e.name)\
             .filter((n) => n.includes('/uploads/{upload}?offset='))\
             .map((n) => Number(n.split('offset=')[1]));"
        ))
        .await?;
    assert_eq!(
        offsets,
        serde_json::json!([100_000]),
        "the pieces the page sent"
    );
    let record = via
        .get(&format!("/api/v1/jobs/{six}"))
        .context("the job's record")?;
    // The format and engine left as the file says: its own PNG settings, and Cycles.
    assert_eq!(
        (
            &record["spec"]["format"],
            &record["spec"]["keep_file_format"],
            &record["spec"]["engine"]
        ),
        (
            &serde_json::json!("Png"),
            &serde_json::json!(true),
            &serde_json::json!("Cycles")
        ),
        "{record}"
    );
    assert_eq!(
        record["spec"]["blend"].as_str(),
        Some(
            rendermesh_protocol::BlobHash::of(&bytes)
                .to_string()
                .as_str()
        )
    );
    let card = format!("#job-{six}");
    browser
        .wait_text("the job done on the page", &card, TIMEOUT, |t| {
            t.contains(" done ") && t.contains("6/6 frames")
        })
        .await?;
    // The 6 frames shown as thumbnails, and the last one rendered beside the job.
    wait_until(
        "the 6 thumbnails and the preview shown",
        TIMEOUT,
        || async {
            let shown = browser
            .eval(&format!(
                "return [...document.querySelectorAll('{card} .thumbs img, {card} img.preview')]\
                 .filter((i) => i.complete && i.naturalWidth > 0).length;"
            ))
            .await?;
            Ok(shown.as_u64() == Some(7))
        },
    )
    .await?;
    // Each is the thumbnail of `blender -b`'s frame, made once by the node that stored it.
    let record = via
        .get(&format!("/api/v1/jobs/{six}"))
        .context("the job's record")?;
    for output in record["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .flat_map(|t| t["outputs"].as_array().cloned().unwrap_or_default())
    {
        let frame = output["frame"].as_u64().context("a frame")? as u32;
        let hash = output["thumb"].as_str().context("a thumbnail")?;
        let (_, png) = http_get_bytes(via.api, &format!("/api/v1/blobs/{hash}"))
            .with_context(|| format!("GET thumbnail {hash}"))?;
        let shown = image::load_from_memory(&png)?.to_rgba8();
        let want = thumb::thumbnail(&image::open(fx.reference_frame(frame))?, None);
        assert!(shown == want, "frame {frame}'s thumbnail differs");
    }
    // A preview video of the 6 frames, made by ffmpeg on the node, played on the page.
    preview_video(fx, via, &browser, &six).await?;
    // Each node's row: its state, and the frames it finished in the last minute (all 6 were).
    let deadline = Instant::now() + CLICK;
    loop {
        let per_minute = browser
            .eval(
                "return [...document.querySelectorAll('#peers tbody tr')]\
                 .map((r) => Number(r.children[7].innerText)).reduce((a, b) => a + b, 0);",
            )
            .await?;
        if per_minute.as_u64() == Some(6) {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the nodes' frames per minute add up to {per_minute}, not 6");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .wait_text("both nodes shown idle", "#peers tbody", CLICK, |t| {
            t.matches("idle, sandboxed").count() == 2
        })
        .await?;

    // A long job, from the form again: the node holds the file, so none of it is sent again.
    let uploads = "return performance.getEntriesByType('resource')\
                   .filter((e) => e.name.includes('/api/v1/uploads')).length;";
    let uploaded = browser.eval(uploads).await?;
    browser.fill("#frames", "1-500").await?;
    assert!(browser.click("#render").await?, "no render button");
    let note = browser
        .wait_text("the long job submitted", "#upload-note", TIMEOUT, |t| {
            (t.starts_with("submitted job ") && !t.contains(&six)) || t.starts_with("not submitted")
        })
        .await?;
    let long = note
        .strip_prefix("submitted job ")
        .with_context(|| format!("the page says: {note}"))?
        .trim()
        .to_owned();
    assert_eq!(
        browser.eval(uploads).await?,
        uploaded,
        "the file was uploaded again"
    );
    // Steered from its buttons while it runs.
    let job = format!("[data-job=\"{long}\"]");
    let paused = click_until(
        &browser,
        via,
        &long,
        &format!("button[data-steer=\"pause\"]{job}"),
        |j| j["paused"] == true,
    )
    .await?;
    assert!(
        paused["state"] == "Running" || paused["state"] == "Queued",
        "{paused}"
    );
    browser
        .wait_text(
            "the job shown paused",
            &format!("#job-{long}"),
            CLICK,
            |t| t.contains("paused"),
        )
        .await?;
    click_until(
        &browser,
        via,
        &long,
        &format!("button[data-steer=\"resume\"]{job}"),
        |j| j["paused"] == false,
    )
    .await?;
    click_until(
        &browser,
        via,
        &long,
        &format!("button[data-steer=\"priority\"][data-priority=\"60\"]{job}"),
        |j| j["priority"] == 60,
    )
    .await?;
    browser
        .wait_text(
            "the new priority shown",
            &format!("#job-{long}"),
            CLICK,
            |t| t.contains("priority 60"),
        )
        .await?;
    // A second job, raised above the long one from its buttons (60, then 70), is rendered
    // whole while the long one still has frames queued.
    let second = submit(via, fx, "1-4")?;
    let raise = |to: u64| {
        format!("button[data-steer=\"priority\"][data-priority=\"{to}\"][data-job=\"{second}\"]")
    };
    for to in [60, 70] {
        click_until(&browser, via, &second, &raise(to), |j| j["priority"] == to).await?;
    }
    browser
        .wait_text(
            "the raised job done",
            &format!("#job-{second}"),
            TIMEOUT,
            |t| t.contains(" done ") && t.contains("4/4 frames"),
        )
        .await?;
    let behind = via
        .get(&format!("/api/v1/jobs/{long}"))
        .context("the long job")?;
    // Without the raise, the second job would wait for all 500 frames of the long one.
    assert_eq!(
        behind["state"], "Running",
        "the long job ended before the raised one"
    );
    browser
        .wait_text("a node shown rendering", "#peers tbody", CLICK, |t| {
            t.contains("rendering, sandboxed")
        })
        .await?;
    let elements = browser
        .eval("return document.getElementsByTagName('*').length;")
        .await?;
    let elements = elements.as_u64().context("an element count")?;
    assert!(
        elements < 2_000,
        "{elements} elements on a page with a 500-frame job"
    );
    // Pushed, not polled: over all this, the page asked for the list of jobs or peers never;
    // its two requests to `/jobs` are the form's submissions.
    let asked = browser
        .eval(
            "return performance.getEntriesByType('resource').map((e) => e.name)\
             .filter((n) => /\\/api\\/v1\\/(jobs|peers)$/.test(n)).length;",
        )
        .await?;
    assert_eq!(asked, 2, "requests to /jobs or /peers: the page polled");
    std::fs::create_dir_all(screenshots(&fx.root))?;
    std::fs::write(
        screenshots(&fx.root).join("page-jobs.png"),
        browser.screenshot().await?,
    )?;
    // A phone-sized window: the narrow layout drops the table's least useful columns, and
    // nothing is wider than the window.
    browser.client.set_window_size(390, 844).await?;
    let wide = browser
        .eval("return document.documentElement.scrollWidth > window.innerWidth;")
        .await?;
    assert_eq!(wide, false, "the page is wider than a phone's window");
    std::fs::write(
        screenshots(&fx.root).join("page-phone.png"),
        browser.screenshot().await?,
    )?;
    browser.client.set_window_size(1280, 800).await?;
    click_until(
        &browser,
        via,
        &long,
        &format!("button[data-cancel=\"{long}\"]"),
        |j| j["state"] == "Cancelled",
    )
    .await?;

    // A tiled frame filling in: paused once a tile is in, it shows each tile done so far,
    // tagged with its node, until it is resumed and stitched.
    tiled_frame(fx, via, &browser).await?;

    // A chart typed with a mistake, shown, fixed, rendered and shown.
    chart_editor(fx, via, &browser).await?;

    // The zip the page links to holds the 6 frames `blender -b` renders.
    let href = browser
        .eval(&format!(
            "return document.querySelector('{card} a[href$=\"/frames.zip\"]').getAttribute('href');"
        ))
        .await?;
    let href = href.as_str().context("no zip link")?.to_owned();
    browser.close().await?;
    let (_, bytes) = http_get_bytes(via.api, &href).with_context(|| format!("GET {href}"))?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    assert_eq!(zip.len(), 6);
    let unzipped = fx.root.join("unzipped");
    std::fs::create_dir_all(&unzipped)?;
    for frame in 1..=6 {
        let name = format!("scene_{frame:04}.png");
        let mut entry = zip.by_name(&name).with_context(|| format!("no {name}"))?;
        let path = unzipped.join(&name);
        std::io::copy(&mut entry, &mut std::fs::File::create(&path)?)?;
        assert_same_pixels(&path, &fx.reference_frame(frame))
            .with_context(|| format!("frame {frame}"))?;
    }

    // The contact sheet the page links to: the 6 frames of `blender -b`, scaled, in a 3x2 grid.
    let (_, png) = http_get_bytes(via.api, &format!("/api/v1/jobs/{six}/contact.png"))
        .context("no contact sheet")?;
    let sheet = image::load_from_memory(&png)?.to_rgba8();
    let reference =
        |f: u32| -> Result<image::RgbaImage> { Ok(image::open(fx.reference_frame(f))?.to_rgba8()) };
    let first = reference(1)?;
    let size = sheet::thumb_size(first.width(), first.height());
    assert_eq!(sheet::grid(6), (3, 2));
    assert_eq!(
        sheet.dimensions(),
        (3 * size.0 + 4 * sheet::GAP, 2 * size.1 + 3 * sheet::GAP)
    );
    for frame in 1..=6u32 {
        let (col, row) = ((frame - 1) % 3, (frame - 1) / 3);
        let (x, y) = (
            sheet::GAP + col * (size.0 + sheet::GAP),
            sheet::GAP + row * (size.1 + sheet::GAP),
        );
        let cell = image::imageops::crop_imm(&sheet, x, y, size.0, size.1).to_image();
        let want = sheet::thumbnail(&reference(frame)?, size);
        assert!(
            cell == want,
            "frame {frame}'s cell differs from its thumbnail"
        );
    }
    Ok(())
}
