//! The local HTTP+JSON API (loopback only by default, `--api HOST:PORT`).
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/v1/node` | | [`NodeInfo`]: id, name, addrs, term, coordinator, store counters |
//! | GET | `/api/v1/peers` | | [`PeersView`]: every live node and the coordinator |
//! | GET | `/api/v1/jobs` | | `[Job]`, newest first |
//! | POST | `/api/v1/jobs` | `JobSpec` | 201 `{"id": "<hex>"}` |
//! | GET | `/api/v1/jobs/{id}` | | `Job`, or 404 |
//! | POST | `/api/v1/jobs/{id}/cancel` | | 200 `{}` |
//! | PUT | `/api/v1/blobs` | raw bytes | `{"hash": "<hex>", "size": N}` |
//! | GET | `/api/v1/blobs/{hash}?hint=<peer id>` | | the blob's bytes, fetched from the mesh if not local |
//!
//! Errors are JSON `{"error": "..."}` with 400 (bad input, naming it), 404 (unknown job or
//! blob), 503 (no coordinator yet, node shutting down) or 500.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, NodeId, limits};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::Error;
use crate::mesh::Handle;
use crate::view::{NodeInfo, PeersView};

/// An API error: a status and a message.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::UnknownJob(_) => StatusCode::NOT_FOUND,
            Error::BlobUnavailable { .. } => StatusCode::NOT_FOUND,
            Error::Protocol(_) | Error::Rejected(_) => StatusCode::BAD_REQUEST,
            Error::NoCoordinator(_) | Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, format!("{:#}", anyhow_chain(&e)))
    }
}

/// The error and its sources, joined with `: `.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, format!("bad {what}: {e}"))
}

/// The API's routes over `handle`.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/api/v1/node", get(node))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/jobs", get(jobs).post(submit))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route(
            "/api/v1/blobs",
            put(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/blobs/{hash}", get(download))
        .with_state(handle)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
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
    let id: JobId = id.parse().map_err(|e| bad("job id", e))?;
    match h.job(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}

async fn submit(
    State(h): State<Handle>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let spec: JobSpec = serde_json::from_slice(&body).map_err(|e| bad("job spec", e))?;
    spec.validate()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = h.submit(spec).await?;
    debug!(job = %id.short(), "submitted through the API");
    Ok((StatusCode::CREATED, Json(json!({ "id": id.to_string() }))))
}

async fn cancel(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: JobId = id.parse().map_err(|e| bad("job id", e))?;
    h.cancel(id).await?;
    Ok(Json(json!({})))
}

async fn upload(State(h): State<Handle>, body: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = std::env::temp_dir();
    let tmp = dir.join(format!(
        "rendermesh-upload-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut stream = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| bad("upload", e))?;
            size += chunk.len() as u64;
            if size > limits::MAX_BLOB {
                return Err(bad(
                    "upload",
                    format!("larger than the limit of {} bytes", limits::MAX_BLOB),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let (hash, size) = h.store().put_file(&tmp).await.map_err(Error::from)?;
        Ok(Json(json!({ "hash": hash.to_string(), "size": size })))
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result
}

async fn download(
    State(h): State<Handle>,
    Path(hash): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let hash: BlobHash = hash.parse().map_err(|e| bad("blob hash", e))?;
    let hints: Vec<NodeId> = query
        .into_iter()
        .filter(|(k, _)| k == "hint")
        .map(|(_, v)| NodeId(v))
        .collect();
    let path = h.fetch(hash, hints).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}
