//! Resumable uploads (`/api/v1/uploads`, issue 14), against a real node: an upload cut off part
//! way goes on from the bytes the node holds, and lands in the store as the file's blob; what
//! does not fit the upload, or the node, is refused by name.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rendermesh_node::api::uploads::{MAX_OPEN, UploadState};
use rendermesh_protocol::{BlobHash, limits};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes that do not repeat.
fn file(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn open(http: &reqwest::Client, api: SocketAddr, size: u64) -> reqwest::Response {
    http.post(format!("http://{api}/api/v1/uploads"))
        .json(&json!({ "size": size }))
        .send()
        .await
        .expect("answers")
}

async fn put(
    http: &reqwest::Client,
    api: SocketAddr,
    id: &str,
    offset: u64,
    bytes: &[u8],
) -> reqwest::Response {
    http.put(format!("http://{api}/api/v1/uploads/{id}?offset={offset}"))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("answers")
}

async fn error(answer: reqwest::Response) -> String {
    answer
        .json::<serde_json::Value>()
        .await
        .expect("a JSON error")["error"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// Sends the head of a PUT of `declared` bytes and only `sent` of them, then drops the
/// connection: a piece cut off part way.
async fn cut_off(api: SocketAddr, id: &str, offset: u64, declared: usize, sent: &[u8]) {
    let mut stream = TcpStream::connect(api).await.expect("connects");
    let head = format!(
        "PUT /api/v1/uploads/{id}?offset={offset} HTTP/1.1\r\nHost: {api}\r\n\
         Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(sent).await.expect("part sent");
    stream.flush().await.expect("flushed");
    stream.shutdown().await.expect("shut");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
}

/// A 3 MiB file sent as 1 MiB, then a piece cut off after 300,000 bytes, then the rest from
/// where the node says it stands: the blob is the file's, under its blake3 hash. A piece at
/// another offset is refused naming the right one; the finished upload is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_resumes_where_it_stopped_and_lands_as_its_blob() {
    let (_dir, node, api) = common::start("uploads").await;
    let http = reqwest::Client::new();
    let data = file(3 << 20);
    let opened = open(&http, api, data.len() as u64).await;
    assert_eq!(opened.status(), 201);
    let state: UploadState = opened.json().await.expect("the upload's state");
    assert_eq!((state.size, state.received), (data.len() as u64, 0));
    let id = state.id;

    let first = put(&http, api, &id, 0, &data[..1 << 20]).await;
    assert_eq!(first.status(), 200);
    let state: UploadState = first.json().await.expect("state");
    assert_eq!((state.received, state.hash), (1 << 20, None));

    // The same piece again (the answer was lost, say): refused, naming the offset to use.
    let again = put(&http, api, &id, 0, &data[..1 << 20]).await;
    assert_eq!(again.status(), 409);
    let why = error(again).await;
    assert!(why.contains("offset 1048576"), "{why}");

    // Cut off part way: what arrived whole counts.
    cut_off(
        api,
        &id,
        1 << 20,
        1 << 20,
        &data[1 << 20..(1 << 20) + 300_000],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let answer = http
            .get(format!("http://{api}/api/v1/uploads/{id}"))
            .send()
            .await
            .expect("answers");
        // 409 while the cut-off request is still being wound up.
        if answer.status() == 200 {
            break answer.json::<UploadState>().await.expect("state").received;
        }
        assert_eq!(answer.status(), 409);
        assert!(Instant::now() < deadline, "the upload stayed busy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        held > 1 << 20 && held <= (1 << 20) + 300_000,
        "{held} bytes held"
    );

    // The rest, from there.
    let rest = put(&http, api, &id, held, &data[held as usize..]).await;
    assert_eq!(rest.status(), 200);
    let done: UploadState = rest.json().await.expect("state");
    assert_eq!(done.received, data.len() as u64);
    assert_eq!(done.hash, Some(BlobHash::of(&data)));
    let blob = http
        .get(format!("http://{api}/api/v1/blobs/{}", BlobHash::of(&data)))
        .send()
        .await
        .expect("answers")
        .bytes()
        .await
        .expect("the blob");
    assert!(blob[..] == data[..], "the stored blob is not the file");
    let gone = http
        .get(format!("http://{api}/api/v1/uploads/{id}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(gone.status(), 404);
    node.shutdown().await;
}

/// An empty file, one above the blob limit, a piece past the declared size and one upload
/// too many are each refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_does_not_fit_an_upload_is_refused_by_name() {
    let (_dir, node, api) = common::start("uploads").await;
    let http = reqwest::Client::new();
    let empty = open(&http, api, 0).await;
    assert_eq!(empty.status(), 400);
    assert!(error(empty).await.contains("empty"));
    let huge = open(&http, api, limits::MAX_BLOB + 1).await;
    assert_eq!(huge.status(), 413);
    assert!(error(huge).await.contains("too large"));

    let small: UploadState = open(&http, api, 10).await.json().await.expect("state");
    let past = put(&http, api, &small.id, 0, b"eleven byte").await;
    assert_eq!(past.status(), 400);
    let why = error(past).await;
    assert!(why.contains("opened for 10 bytes"), "{why}");
    let unknown = put(&http, api, "00ff", 0, b"x").await;
    assert_eq!(unknown.status(), 404);

    // `small` is open: MAX_OPEN - 1 more fit, and the next is refused.
    for _ in 1..MAX_OPEN {
        assert_eq!(open(&http, api, 10).await.status(), 201);
    }
    let full = open(&http, api, 10).await;
    assert_eq!(full.status(), 503);
    assert!(error(full).await.contains("open on this node already"));
    // Dropping one makes room.
    let dropped = http
        .delete(format!("http://{api}/api/v1/uploads/{}", small.id))
        .send()
        .await
        .expect("answers");
    assert_eq!(dropped.status(), 200);
    assert_eq!(open(&http, api, 10).await.status(), 201);
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_refuses_files_over_its_configured_limit_before_a_byte_is_sent() {
    const MAX: u64 = 1 << 20;
    let (_dir, node, api) = common::start_with("uploads", |config| config.max_upload = MAX).await;
    let http = reqwest::Client::new();
    let over = open(&http, api, MAX + 1).await;
    assert_eq!(over.status(), 413);
    let why = error(over).await;
    assert!(
        why.contains("1048577 bytes") && why.contains("at most 1048576 bytes"),
        "{why}"
    );
    assert_eq!(open(&http, api, MAX).await.status(), 201);
    // `PUT /blobs` (the CLI's) keeps the same limit, declared or not.
    let put_blob = |bytes: Vec<u8>| {
        http.put(format!("http://{api}/api/v1/blobs"))
            .body(bytes)
            .send()
    };
    let over = put_blob(file(MAX as usize + 1)).await.expect("answers");
    assert_eq!(over.status(), 413);
    assert!(error(over).await.contains("at most 1048576 bytes"));
    let fits = put_blob(file(MAX as usize)).await.expect("answers");
    assert_eq!(fits.status(), 200);
    node.shutdown().await;
}
