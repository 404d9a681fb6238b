//! The local HTTP+JSON API: what the CLI ([`crate::client`]) and the progress page ([`PAGE`],
//! served at `/`) use to talk to a node. It listens on loopback by default (`--api HOST:PORT`); it has no authentication,
//! so it must not be exposed beyond the machine.
//!
//! # Routes
//!
//! Every API path starts with `/api/v1`; `GET /` is the progress page. Ids are lowercase hex in
//! paths and in JSON.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/node` | | [`NodeInfo`]: id, name, addrs, term, coordinator, store counters |
//! | GET | `/peers` | | [`PeersView`]: every live node and who coordinates |
//! | GET | `/jobs` | | `[Job]`, newest first |
//! | POST | `/jobs` | `JobSpec` | 201 [`Submitted`] `{"id": "<hex>"}` once the coordinator accepted it |
//! | GET | `/jobs/{id}` | | `Job`, or 404 while this node holds no copy |
//! | POST | `/jobs/{id}/cancel` | | 200 `{}` |
//! | PUT | `/blobs` | raw bytes (at most [`limits::MAX_BLOB`]) | [`Uploaded`] `{"hash": "<hex>", "size": N}` |
//! | GET | `/blobs/{hash}?hint=<peer id>&hint=...` | | the blob's bytes (`application/octet-stream`), fetched from the mesh first if not here; `hint`s are peers likely to hold it |
//!
//! A job's `.blend` must be uploaded (`PUT /blobs`) to the node it is submitted to; the job
//! spec names it by hash.
//!
//! # Errors
//!
//! Every error is JSON [`ErrorBody`] `{"error": "<message>"}`, the message carrying the whole
//! cause chain, with status 400 (bad input; the message names the field or id), 404 (unknown
//! job, blob or route), 413 (upload too large), 503 (no coordinator reachable yet, node shutting
//! down) or 500 (anything else).

use std::path::PathBuf;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, limits};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use crate::Error;
use crate::mesh::Handle;
use crate::net;
pub mod types;

pub use types::{ErrorBody, NodeInfo, PREFIX, PeerView, PeersView, Submitted, Uploaded};

/// An error answer: a status and a message.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }

    /// A local I/O failure, naming what was done to which file.
    fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Self {
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} `{}`: {e}", path.display()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug!(status = self.0.as_u16(), error = %self.1, "error answer");
        let body = ErrorBody { error: self.1 };
        (self.0, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::UnknownJob(_) | Error::BlobUnavailable { .. } => StatusCode::NOT_FOUND,
            Error::Protocol(_) | Error::Rejected(_) => StatusCode::BAD_REQUEST,
            Error::NoCoordinator(_) | Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, chain(&e))
    }
}

/// An error and its sources joined by `: `, as anyhow's `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The API's routes over `handle`.
pub fn router(handle: Handle) -> Router {
    let api = Router::new()
        .route("/node", get(node))
        .route("/peers", get(peers))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/cancel", post(cancel))
        // Uploads are streamed to disk under our own limit, not buffered under axum's 2 MB one.
        .route("/blobs", put(upload).layer(DefaultBodyLimit::disable()))
        .route("/blobs/{hash}", get(download));
    Router::new()
        .route("/", get(page))
        .nest(PREFIX, api)
        .fallback(no_route)
        .layer(middleware::from_fn(trace))
        .with_state(handle)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets requests in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        debug!(%addr, "API listening");
    }
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// One span per request; logs the status and time taken at `debug`.
async fn trace(request: Request, next: Next) -> Response {
    let span = debug_span!("api", method = %request.method(), path = %request.uri().path());
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

/// The progress page: nodes, jobs, a cell per task, cancel buttons and download links, all
/// drawn in the browser from this API (one file, no dependencies).
pub const PAGE: &str = include_str!("../web/index.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn no_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {} (every API route starts with {PREFIX}; the page is at /)",
        request.method(),
        request.uri().path()
    ))
}

fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse()
        .map_err(|e: rendermesh_protocol::Error| ApiError::bad_request(e.to_string()))
}

async fn node(State(h): State<Handle>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(h.info().await?))
}

async fn peers(State(h): State<Handle>) -> Result<Json<PeersView>, ApiError> {
    Ok(Json(h.peers().await?))
}

async fn jobs(State(h): State<Handle>) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(h.jobs().await?))
}

async fn job(State(h): State<Handle>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    match h.job(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

async fn submit(State(h): State<Handle>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    // Parsed by hand rather than with the `Json` extractor, so that a bad body gets a JSON
    // error naming the field (serde says "missing field `frames`").
    let spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad job spec: {e}")))?;
    spec.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = h.submit(spec).await.map_err(|e| match e {
        // The spec names a `.blend` this node does not hold: the request is at fault.
        Error::BlobUnavailable { .. } => ApiError::bad_request(format!("bad blend: {}", chain(&e))),
        e => e.into(),
    })?;
    debug!(job = %id.short(), "submitted");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("{PREFIX}/jobs/{id}"))],
        Json(Submitted { id }),
    )
        .into_response())
}

async fn cancel(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_job_id(&id)?;
    match h.cancel(id).await {
        Ok(()) => {
            debug!(job = %id.short(), "cancelled");
            Ok(Json(serde_json::json!({})))
        }
        // The coordinator refuses jobs it does not know; so do we, if we hold no copy either.
        Err(Error::Rejected(reason)) if h.job(id).await?.is_none() => {
            debug!(job = %id.short(), %reason, "cancel refused");
            Err(ApiError::not_found(format!("no job {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// A file removed when dropped: an upload's temporary copy, whether the upload finished,
/// failed, or was abandoned by the client mid-way (which drops the handler's future).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where uploads are spooled: the store's own `tmp/` (same disk as the blobs, so a finished
/// upload is renamed into place; emptied when the store opens).
fn upload_dir(h: &Handle) -> PathBuf {
    h.store().tmp_dir().to_path_buf()
}

fn too_large() -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "upload too large: a blob holds at most {} bytes",
            limits::MAX_BLOB
        ),
    )
}

async fn upload(
    State(h): State<Handle>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<Uploaded>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits::MAX_BLOB) {
        return Err(too_large());
    }
    let tmp = TempFile(upload_dir(&h).join(format!(
        "upload-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )));
    let mut file = tokio::fs::File::create(&tmp.0)
        .await
        .map_err(|e| ApiError::io("cannot create", &tmp.0, e))?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    let mut hasher = blake3::Hasher::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("the upload broke off: {}", chain(&e))))?;
        size += chunk.len() as u64;
        if size > limits::MAX_BLOB {
            return Err(too_large());
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::io("cannot write", &tmp.0, e))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::io("cannot write", &tmp.0, e))?;
    drop(file);
    // Hashed while it arrived: moved into the store, not copied.
    let hash = BlobHash(*hasher.finalize().as_bytes());
    h.store()
        .adopt(&tmp.0, hash)
        .await
        .map_err(|e| ApiError::from(Error::from(e)))?;
    debug!(blob = %hash.short(), size, "uploaded");
    Ok(Json(Uploaded { hash, size }))
}

async fn download(
    State(h): State<Handle>,
    Path(hash): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let hash: BlobHash = hash
        .parse()
        .map_err(|e: rendermesh_protocol::Error| ApiError::bad_request(e.to_string()))?;
    let mut hints = Vec::new();
    for (key, value) in query {
        if key != "hint" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{key}`: expected `hint`"
            )));
        }
        let Some(node) = value
            .parse::<libp2p::PeerId>()
            .ok()
            .and_then(|p| net::node_id(&p))
        else {
            return Err(ApiError::bad_request(format!(
                "bad hint `{value}`: expected a peer id"
            )));
        };
        hints.push(node);
    }
    let path = h.fetch(hash, hints).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::io("cannot open", &path, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::io("cannot read", &path, e))?
        .len();
    debug!(blob = %hash.short(), size, "serving");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}
