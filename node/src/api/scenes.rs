//! `GET /api/v1/blobs/{hash}/scene`: what a `.blend` this node holds renders when nothing is
//! asked of it: its scene, engine, frame range and step, and output format, and how many other
//! files and unbaked simulations it needs. This node's Blender reads it in the node's sandbox,
//! seeing that file alone ([`Blender::inspect_confined`]). The page fills its form from the
//! answer, as `rendermesh render` settles a job from its own inspection.
//!
//! One read at a time, each a bounded Blender run; the last few answers are kept by hash (a
//! file's content does not change under its hash).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use rendermesh_protocol::BlobHash;
use rendermesh_scene::Inspection;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::debug;

use super::{ApiError, chain};
use crate::Error;
use crate::mesh::Handle;
use crate::render::{Blender, RenderError};

/// How many answers a node keeps.
const KEPT: usize = 32;

/// Reads the scenes of the `.blend` files this node holds, one at a time.
#[derive(Clone)]
pub struct SceneReader {
    /// `None` on a node that has no Blender, or cannot sandbox one: it reads no file.
    blender: Option<Blender>,
    turn: Arc<Semaphore>,
    kept: Arc<Mutex<VecDeque<(BlobHash, Scene)>>>,
}

impl std::fmt::Debug for SceneReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SceneReader")
            .field("blender", &self.blender.is_some())
            .finish()
    }
}

impl SceneReader {
    /// A reader running `blender` (in its sandbox, when it has one), or one that reads
    /// nothing.
    pub fn new(blender: Option<Blender>) -> Self {
        Self {
            blender,
            turn: Arc::new(Semaphore::new(1)),
            kept: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn kept(&self, hash: &BlobHash) -> Option<Scene> {
        let kept = self.kept.lock().ok()?;
        kept.iter().find(|(h, _)| h == hash).map(|(_, s)| s.clone())
    }

    fn keep(&self, hash: BlobHash, scene: Scene) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= KEPT {
                kept.pop_front();
            }
            kept.push_back((hash, scene));
        }
    }
}

/// The answer: what the file renders when nothing is asked of it.
#[derive(Clone, Debug, Serialize)]
pub struct Scene {
    /// The scene `blender -b` renders.
    pub scene: String,
    /// Its engine, as Blender names it (`CYCLES`, `BLENDER_EEVEE`, `BLENDER_WORKBENCH`).
    pub engine: String,
    /// Its first frame.
    pub frame_start: i64,
    /// Its last frame.
    pub frame_end: i64,
    /// Its frame step.
    pub frame_step: i64,
    /// Its output format, as Blender names it (`PNG`, `JPEG`, `OPEN_EXR`, `FFMPEG`, ...).
    pub file_format: String,
    /// Other files it uses (textures, libraries, ...): a job from the page ships none of them.
    pub files: usize,
    /// Simulations it would have to bake before its frames render apart.
    pub unbaked: usize,
}

impl From<Inspection> for Scene {
    fn from(report: Inspection) -> Self {
        Self {
            scene: report.scene,
            engine: report.engine,
            frame_start: report.frame_start,
            frame_end: report.frame_end,
            frame_step: report.frame_step,
            file_format: report.output.file_format,
            files: report.files.len(),
            unbaked: report.unbaked.len(),
        }
    }
}

pub(super) async fn scene(
    State(h): State<Handle>,
    Extension(reader): Extension<SceneReader>,
    Path(hash): Path<String>,
) -> Result<Json<Scene>, ApiError> {
    let hash = super::held_here(&h, &hash).await?;
    if let Some(scene) = reader.kept(&hash) {
        return Ok(Json(scene));
    }
    let Some(blender) = &reader.blender else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no Blender to read .blend files with".to_owned(),
        ));
    };
    let _turn = reader.turn.acquire().await.map_err(|_| Error::Shutdown)?;
    let scratch = super::charts::ScratchDir::create(&h, "scene").await?;
    let report = blender
        .inspect_confined(&h.store().path(&hash), scratch.path())
        .await
        .map_err(|e| match e {
            // What the file made of the run: Blender's words, or its silence.
            RenderError::Failed { .. }
            | RenderError::Inspect { .. }
            | RenderError::Timeout { .. } => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "blob {hash} is not a .blend this node's Blender can read: {}",
                    chain(&e)
                ),
            ),
            // The node's own trouble (its Blender or sandbox missing, its disk).
            e => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this node could not read blob {hash}: {}", chain(&e)),
            ),
        })?;
    let scene = Scene::from(report);
    debug!(%hash, scene = %scene.scene, engine = %scene.engine, "scene read");
    reader.keep(hash, scene.clone());
    Ok(Json(scene))
}
