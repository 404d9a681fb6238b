//! The page a node serves, in a real browser (Debian's headless Chromium through ChromeDriver,
//! see `rendermesh_tests::browser`), on a mesh of two `rendermesh node` processes rendering
//! real Cycles frames.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rendermesh_tests::browser::Browser;
use rendermesh_tests::{Fixture, MeshNode, assert_same_pixels, cluster, dump_logs, http_get_bytes};
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

/// Submits `frames` of the fixture's scene through `node` and returns the job's id.
fn submit(node: &MeshNode, fx: &Fixture, frames: &str) -> Result<String> {
    let blend = fx.blend.display().to_string();
    let samples = SAMPLES.to_string();
    let percent = PERCENT.to_string();
    // Detached, the command writes nothing there; the frames are taken from the page.
    let unused = fx.root.join("detached").display().to_string();
    let out = node.cli(&[
        "render",
        &blend,
        "--frames",
        frames,
        "--samples",
        &samples,
        "--resolution-percent",
        &percent,
        "--chunk",
        "1",
        "--detach",
        "--out",
        &unused,
    ])?;
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
    let deadline = Instant::now() + CLICK;
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
            bail!("clicking `{css}` did not change job {id} within {CLICK:?}");
        }
    }
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

    let six = submit(via, fx, "1-6")?;
    let card = format!("#job-{six}");
    browser
        .wait_text("the job done on the page", &card, TIMEOUT, |t| {
            t.contains(" done ") && t.contains("6/6 frames")
        })
        .await?;
    // Pushed, not polled: the page asked for no list of jobs or peers.
    let asked = browser
        .eval(
            "return performance.getEntriesByType('resource').map((e) => e.name)\
             .filter((n) => /\\/api\\/v1\\/(jobs|peers)$/.test(n));",
        )
        .await?;
    assert_eq!(asked, Value::Array(Vec::new()), "the page polled");

    // A long job, steered from its buttons while it runs.
    let long = submit(via, fx, "1-500")?;
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
    let elements = browser
        .eval("return document.getElementsByTagName('*').length;")
        .await?;
    let elements = elements.as_u64().context("an element count")?;
    assert!(
        elements < 2_000,
        "{elements} elements on a page with a 500-frame job"
    );
    std::fs::create_dir_all(screenshots(&fx.root))?;
    std::fs::write(
        screenshots(&fx.root).join("page-jobs.png"),
        browser.screenshot().await?,
    )?;
    click_until(
        &browser,
        via,
        &long,
        &format!("button[data-cancel=\"{long}\"]"),
        |j| j["state"] == "Cancelled",
    )
    .await?;

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
    Ok(())
}
