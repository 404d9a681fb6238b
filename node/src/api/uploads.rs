//! Resumable uploads: a file sent in pieces, each at the offset the node has reached, so that
//! an upload cut off (a dropped connection, a laptop put to sleep) goes on from where it
//! stopped instead of starting again. The page uploads every `.blend` this way.
//!
//! - `POST /api/v1/uploads` `{"size": N}` opens one: `201 {"id", "size", "received": 0}`.
//! - `PUT /api/v1/uploads/{id}?offset=R` with the next bytes appends them when `R` is what the
//!   node holds (else `409`, naming the offset it holds); the answer says what it holds now,
//!   and once it holds `size` bytes, the blob's `hash` (the file is in the store).
//! - `GET /api/v1/uploads/{id}` says what it holds; `DELETE` drops it.
//!
//! The bytes are hashed as they arrive (in order, so the hash needs no second read) into a
//! file in the store's `tmp/`. A piece cut off part way counts for the bytes written whole: the
//! next piece starts there, and the file is cut back to it first. At most [`MAX_OPEN`] uploads
//! are open at once; one left untouched for [`ABANDONED`] is dropped. Uploads do not outlive
//! the node (its `tmp/` is emptied when it starts).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rendermesh_protocol::{BlobHash, limits};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tracing::debug;

use super::{ApiError, chain, too_large};
use crate::Error;
use crate::mesh::Handle;

/// The most uploads open at once on one node.
pub const MAX_OPEN: usize = 16;
/// How long an upload may go untouched before it is dropped.
pub const ABANDONED: Duration = Duration::from_secs(3600);

/// The open uploads, by id, and the largest file this node takes.
#[derive(Clone)]
pub struct Uploads {
    open: Arc<std::sync::Mutex<BTreeMap<String, Arc<Mutex<Partial>>>>>,
    max: u64,
}

/// One open upload.
struct Partial {
    /// Its file in the store's `tmp/`.
    path: PathBuf,
    /// The size it was opened with.
    size: u64,
    /// The bytes written whole so far, and hashed.
    received: u64,
    hasher: blake3::Hasher,
    touched: Instant,
}

impl Drop for Partial {
    fn drop(&mut self) {
        // Finished, dropped or abandoned: its file goes (a finished one was moved already).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `POST /uploads`: what to open.
#[derive(Debug, Deserialize)]
pub(super) struct Open {
    size: u64,
}

/// Where an upload stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Its id (hex).
    pub id: String,
    /// The size it was opened with.
    pub size: u64,
    /// The bytes the node holds: the offset of the next piece.
    pub received: u64,
    /// Once every byte is in: the blob's content hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<BlobHash>,
}

/// `PUT /uploads/{id}?offset=R`.
#[derive(Debug, Deserialize)]
pub(super) struct At {
    offset: u64,
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no upload {id} (finished, dropped after an hour untouched, or the node restarted): start it again"
    ))
}

impl Uploads {
    /// No upload open; files of at most `max` bytes taken (at most [`limits::MAX_BLOB`]).
    pub fn new(max: u64) -> Self {
        Self {
            open: Arc::default(),
            max: max.min(limits::MAX_BLOB),
        }
    }

    /// The largest file this node takes, in bytes (`PUT /blobs` and uploads alike).
    pub fn max(&self) -> u64 {
        self.max
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<Partial>>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }
}

/// `POST /uploads`.
pub(super) async fn open(
    State(h): State<Handle>,
    Extension(uploads): Extension<Uploads>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Open { size } = super::json_body(&body, r#"{"size": N}"#)?;
    if size == 0 {
        return Err(ApiError::bad_request("an empty file: nothing to upload"));
    }
    if size > uploads.max {
        return Err(too_large(size, uploads.max));
    }
    h.store()
        .check_room(size)
        .map_err(|e| ApiError::from(Error::from(e)))?;
    let id = format!("{:032x}", rand::random::<u128>());
    let path = h.store().tmp_dir().join(format!("upload-{id}"));
    tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::io("cannot create", &path, e))?;
    let partial = Partial {
        path,
        size,
        received: 0,
        hasher: blake3::Hasher::new(),
        touched: Instant::now(),
    };
    {
        let mut open = uploads
            .open
            .lock()
            .map_err(|_| ApiError::bad_request("the uploads are unavailable"))?;
        // Abandoned ones go first; busy ones (being written) are not abandoned.
        open.retain(|_, p| {
            p.try_lock()
                .map_or(true, |p| p.touched.elapsed() < ABANDONED)
        });
        if open.len() >= MAX_OPEN {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_OPEN} uploads are open on this node already: finish or drop one"),
            ));
        }
        open.insert(id.clone(), Arc::new(Mutex::new(partial)));
    }
    debug!(%id, size, "upload opened");
    let state = UploadState {
        id,
        size,
        received: 0,
        hash: None,
    };
    Ok((StatusCode::CREATED, Json(state)).into_response())
}

/// `GET /uploads/{id}`.
pub(super) async fn state(
    Extension(uploads): Extension<Uploads>,
    Path(id): Path<String>,
) -> Result<Json<UploadState>, ApiError> {
    let partial = uploads.get(&id).ok_or_else(|| unknown(&id))?;
    let p = partial.try_lock().map_err(|_| busy(&id))?;
    Ok(Json(UploadState {
        id,
        size: p.size,
        received: p.received,
        hash: None,
    }))
}

fn busy(id: &str) -> ApiError {
    ApiError(
        StatusCode::CONFLICT,
        format!("upload {id} is being written by another request"),
    )
}

/// `DELETE /uploads/{id}`.
pub(super) async fn drop_upload(
    Extension(uploads): Extension<Uploads>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    uploads.get(&id).ok_or_else(|| unknown(&id))?;
    uploads.remove(&id);
    Ok(Json(serde_json::json!({})))
}

/// `PUT /uploads/{id}?offset=R`: the next piece.
pub(super) async fn append(
    State(h): State<Handle>,
    Extension(uploads): Extension<Uploads>,
    Path(id): Path<String>,
    Query(At { offset }): Query<At>,
    body: Body,
) -> Result<Json<UploadState>, ApiError> {
    let partial = uploads.get(&id).ok_or_else(|| unknown(&id))?;
    let mut p = partial.try_lock_owned().map_err(|_| busy(&id))?;
    p.touched = Instant::now();
    if offset != p.received {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "upload {id} holds {} bytes: send the piece at offset {}, not {offset}",
                p.received, p.received
            ),
        ));
    }
    let path = p.path.clone();
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .await
        .map_err(|e| ApiError::io("cannot open", &path, e))?;
    // A piece cut off part way may have left bytes past what counts.
    file.set_len(p.received)
        .await
        .map_err(|e| ApiError::io("cannot cut back", &path, e))?;
    file.seek(std::io::SeekFrom::End(0))
        .await
        .map_err(|e| ApiError::io("cannot seek in", &path, e))?;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece
            .map_err(|e| ApiError::bad_request(format!("the piece broke off: {}", chain(&e))))?;
        let after = p.received.saturating_add(piece.len() as u64);
        if after > p.size {
            return Err(ApiError::bad_request(format!(
                "upload {id} was opened for {} bytes: this piece ends at {after}",
                p.size
            )));
        }
        file.write_all(&piece)
            .await
            .map_err(|e| ApiError::io("cannot write", &path, e))?;
        // Counted once written whole: a piece cut off here resumes after it.
        p.hasher.update(&piece);
        p.received = after;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::io("cannot write", &path, e))?;
    drop(file);
    let mut state = UploadState {
        id: id.clone(),
        size: p.size,
        received: p.received,
        hash: None,
    };
    if p.received == p.size {
        let hash = BlobHash(*p.hasher.finalize().as_bytes());
        h.store()
            .adopt(&path, hash)
            .await
            .map_err(|e| ApiError::from(Error::from(e)))?;
        uploads.remove(&id);
        debug!(%id, blob = %hash.short(), size = p.size, "upload finished");
        state.hash = Some(hash);
    }
    Ok(Json(state))
}
