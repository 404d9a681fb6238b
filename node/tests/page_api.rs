//! The page's own routes (issue 14), against a real node: charts typed on the page
//! (`/api/v1/charts/check` and `/api/v1/charts`: the check answers the parser's diagnostics with
//! their spans, and a chart is submitted only when it has no problem, its name is plain, and the
//! node can build it), preview videos (refused, by name, on a node without ffmpeg), and the
//! scene of a `.blend` the node holds (`/api/v1/blobs/{hash}/scene`, read in its sandbox).
//! `tests/tests/browser.rs` drives both from the page, with Blender and ffmpeg.

mod common;

use std::net::SocketAddr;

use rendermesh_node::chart::ChartCheck;
use rendermesh_scene::chart::MAX_TEXT_BYTES;
use serde_json::json;

const GOOD: &str = "CONFIG\nimage-size; 64; 48\nimage-type; png\ngraph-type; histogram\n\
    default-material; material(diffuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
    floor-color; color(0.9, 0.9, 0.9)\nEND\nDATA\n1; 2; 3\nEND\n";

async fn post(api: SocketAddr, path: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{api}/api/v1{path}"))
        .json(&body)
        .send()
        .await
        .expect("answers")
}

async fn error(answer: reqwest::Response) -> String {
    answer.json::<serde_json::Value>().await.expect("JSON")["error"]
        .as_str()
        .expect("a message")
        .to_owned()
}

#[tokio::test]
async fn the_check_answers_the_parsers_diagnostics_with_their_spans() {
    let (_dir, node, api) = common::start("page").await;
    let answer = post(api, "/charts/check", json!({ "text": GOOD })).await;
    assert_eq!(answer.status(), 200);
    let check: ChartCheck = answer.json().await.expect("a check");
    assert!(check.ok, "{check:?}");
    assert_eq!(
        check.summary.as_deref(),
        Some("histogram, 1 row, 3 values, 64x48 png")
    );

    let typos = GOOD.replace("(diffuse", "(difuse").replace("2; 3", "2; 3O");
    let answer = post(api, "/charts/check", json!({ "text": typos })).await;
    let check: ChartCheck = answer.json().await.expect("a check");
    assert!(!check.ok);
    let places: Vec<_> = check
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.length, d.suggestion.as_deref()))
        .collect();
    assert_eq!(
        places,
        [
            (5, 28, 6, Some("did you mean `diffuse`?")),
            (10, 7, 2, Some("did you mean 30?"))
        ]
    );

    // Too long a text is one diagnostic; a body over the limit, or not JSON, is refused.
    let long = " ".repeat(MAX_TEXT_BYTES + 1);
    let check: ChartCheck = post(api, "/charts/check", json!({ "text": long }))
        .await
        .json()
        .await
        .expect("a check");
    assert!(
        check.diagnostics[0].message.contains("bytes of text"),
        "{check:?}"
    );
    let huge = " ".repeat(2 * MAX_TEXT_BYTES + 8192);
    let answer = post(api, "/charts/check", json!({ "text": huge })).await;
    assert_eq!(answer.status(), 413);
    let answer = reqwest::Client::new()
        .post(format!("http://{api}/api/v1/charts/check"))
        .header("content-type", "text/plain")
        .body(GOOD)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 415);
    let answer = post(api, "/charts/check", json!({ "txt": GOOD })).await;
    assert_eq!(answer.status(), 400);
    assert!(error(answer).await.contains("{\"text\""));
    node.shutdown().await;
}

#[tokio::test]
async fn a_chart_with_a_problem_a_bad_name_or_no_blender_is_not_submitted() {
    let (_dir, node, api) = common::start("page").await;
    let typo = GOOD.replace("(diffuse", "(difuse");
    let answer = post(api, "/charts", json!({ "text": typo })).await;
    assert_eq!(answer.status(), 400);
    let message = error(answer).await;
    assert!(
        message.contains("1 problem")
            && message.contains("line 5, column 28")
            && message.contains("nothing was submitted"),
        "{message}"
    );

    let answer = post(api, "/charts", json!({ "text": GOOD, "name": "../up" })).await;
    assert_eq!(answer.status(), 400);
    assert!(error(answer).await.contains("bad chart name"));

    // This node has no Blender to build the scene with: it says so.
    let answer = post(api, "/charts", json!({ "text": GOOD, "name": "ok" })).await;
    assert_eq!(answer.status(), 503);
    assert!(error(answer).await.contains("no Blender"));

    let jobs: serde_json::Value = reqwest::get(format!("http://{api}/api/v1/jobs"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(jobs, json!([]), "a job was submitted");
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_without_ffmpeg_says_so_and_makes_no_preview() {
    let (_dir, node, api) = common::start("page").await;
    let info: serde_json::Value = reqwest::get(format!("http://{api}/api/v1/node"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["ffmpeg"], serde_json::Value::Null, "{info}");
    let answer = reqwest::get(format!(
        "http://{api}/api/v1/jobs/{}/preview.mp4",
        "ab".repeat(16)
    ))
    .await
    .expect("answers");
    assert_eq!(answer.status(), 503);
    let message = error(answer).await;
    assert!(
        message.contains("no ffmpeg") && message.contains("apt-get install ffmpeg"),
        "{message}"
    );
    node.shutdown().await;
}

/// Stores `bytes` on the node as a blob; returns its hash.
async fn put_blob(api: SocketAddr, bytes: Vec<u8>) -> String {
    let answer = reqwest::Client::new()
        .put(format!("http://{api}/api/v1/blobs"))
        .body(bytes)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    let stored: serde_json::Value = answer.json().await.expect("JSON");
    stored["hash"].as_str().expect("a hash").to_owned()
}

async fn scene(api: SocketAddr, hash: &str) -> reqwest::Response {
    reqwest::get(format!("http://{api}/api/v1/blobs/{hash}/scene"))
        .await
        .expect("answers")
}

/// The page fills its form from a `.blend` it sent: the node's Blender reads the file in the
/// sandbox and answers its scene, engine, frames and format. A file that is not a `.blend`
/// gets Blender's words, an unknown blob a 404, and a node without Blender says so.
#[tokio::test]
async fn a_blend_the_node_holds_answers_its_scene() {
    let (dir, node, api) = common::start_with("scenes", |c| {
        c.blender = "blender".into();
        c.sandbox = true;
        c.spare_blender = false;
    })
    .await;
    let blend = dir.path().join("example.blend");
    rendermesh_node::render::Blender::new("blender", None)
        .make_example_scene(&blend)
        .await
        .expect("the example scene");
    let hash = put_blob(api, std::fs::read(&blend).expect("the scene")).await;
    let answer = scene(api, &hash).await;
    assert_eq!(answer.status(), 200);
    let read: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(
        read,
        json!({"scene": "Scene", "engine": "CYCLES", "frame_start": 1, "frame_end": 24,
               "frame_step": 1, "file_format": "PNG", "files": 0, "unbaked": 0})
    );

    let text = put_blob(api, b"not a blend file".to_vec()).await;
    let answer = scene(api, &text).await;
    assert_eq!(answer.status(), 422);
    let message = error(answer).await;
    assert!(
        message.contains(&text) && message.contains("not a .blend"),
        "{message}"
    );
    let answer = scene(api, &"ab".repeat(32)).await;
    assert_eq!(answer.status(), 404);
    node.shutdown().await;

    let (_dir, node, api) = common::start("no-blender").await;
    let hash = put_blob(api, std::fs::read(&blend).expect("the scene")).await;
    let answer = scene(api, &hash).await;
    assert_eq!(answer.status(), 503);
    assert!(error(answer).await.contains("no Blender"));
    node.shutdown().await;
}
