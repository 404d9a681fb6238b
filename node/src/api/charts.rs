//! Charts typed on the page: `POST /api/v1/charts/check` runs the chart parser over the text
//! and answers its diagnostics (the editor shows them as the person types), and `POST
//! /api/v1/charts` builds a valid chart into a `.blend` on this node and submits it as a
//! one-frame job, as `rendermesh chart` does on the submitting machine.
//!
//! Both take JSON (the text is at most [`chart::MAX_TEXT_BYTES`] bytes). Parsing runs on a
//! blocking thread; builds run one at a time ([`ChartBuilder`]), each a bounded Blender run.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use rendermesh_protocol::{BlobHash, Engine, FrameRange, JobSpec, Tiling, limits};
use rendermesh_scene::chart;
use serde::Deserialize;
use tracing::{Instrument, debug, debug_span};

use super::{ApiError, PREFIX, chain, created, json_body};
use crate::Error;
use crate::chart::{ChartBuilder, ChartCheck, check};
use crate::mesh::Handle;

/// The most a chart request's body may hold: the text at its limit, JSON-escaped.
pub const MAX_BODY: usize = 2 * chart::MAX_TEXT_BYTES + 4096;

/// `POST /charts/check`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    text: String,
}

/// `POST /charts`'s body: the chart's text and how to render it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartJob {
    /// The chart file's text.
    pub text: String,
    /// The job's name, without extension [default: `chart`].
    #[serde(default)]
    pub name: Option<String>,
    /// Cycles samples per pixel [default: the builder's].
    #[serde(default)]
    pub samples: Option<u32>,
    /// Render at this percentage of `image-size` [default: 100].
    #[serde(default)]
    pub resolution_percent: Option<u32>,
    /// Tiles across the nodes, as in a job spec: `"Auto"`, `{"Grid": {"cols", "rows"}}`, or
    /// whole frames when absent (the page sends `"Auto"` unless told otherwise).
    #[serde(default)]
    pub tiles: Option<Tiling>,
}

/// Parses `text` away from the async threads.
async fn checked(text: String) -> Result<(ChartCheck, Option<chart::Chart>), ApiError> {
    tokio::task::spawn_blocking(move || check(&text))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the parser: {e}"),
            )
        })
}

pub(super) async fn check_chart(body: axum::body::Bytes) -> Result<Json<ChartCheck>, ApiError> {
    let CheckBody { text } = json_body(&body, "{\"text\": \"<a chart file>\"}")?;
    Ok(Json(checked(text).await?.0))
}

/// A job name from what the page sent: printable, no path, at most 64 characters.
fn job_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("chart");
    let bad = |c: char| c.is_control() || c == '/' || c == '\\';
    if name.chars().count() > 64 || name.chars().any(bad) || name.starts_with('.') {
        return Err(ApiError::bad_request(format!(
            "bad chart name {name:?}: at most 64 characters, no `/`, `\\` or control \
             characters, not starting with `.`"
        )));
    }
    Ok(format!("{name}.blend"))
}

pub(super) async fn render_chart(
    State(h): State<Handle>,
    Extension(builder): Extension<ChartBuilder>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let job: ChartJob = json_body(
        &body,
        "{\"text\": \"<a chart file>\", \"name\"?, \"samples\"?, \"resolution_percent\"?, \
         \"tiles\"?}",
    )?;
    let name = job_name(job.name.as_deref())?;
    let (check, chart) = checked(job.text).await?;
    let Some(chart) = chart else {
        let n = check.diagnostics.len();
        let first = &check.diagnostics[0];
        return Err(ApiError::bad_request(format!(
            "the chart has {n} problem{}; nothing was submitted (the first: line {}, column \
             {}: {}); POST {PREFIX}/charts/check lists them all",
            if n == 1 { "" } else { "s" },
            first.line,
            first.column,
            first.message
        )));
    };
    let format = crate::chart::output_format(chart.config.image_type);
    let span = debug_span!("chart", name = %name);
    let (hash, size) = build_into_store(&h, &builder, chart)
        .instrument(span)
        .await?;
    let mut spec = JobSpec::new(name, hash, size, FrameRange::single(1));
    spec.samples = job.samples;
    spec.resolution_percent = job.resolution_percent;
    spec.format = format;
    // The builder makes a Cycles scene that uses no other file and no simulation.
    spec.engine = Engine::Cycles;
    spec.tiles = job.tiles;
    spec.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = h.submit(spec).await?;
    debug!(job = %id.short(), "chart submitted");
    Ok(created(id))
}

/// Builds `chart` in a scratch directory of the store's `tmp/` and moves the `.blend` into
/// the store; returns its hash and size.
async fn build_into_store(
    h: &Handle,
    builder: &ChartBuilder,
    chart: chart::Chart,
) -> Result<(BlobHash, u64), ApiError> {
    let dir = ScratchDir::create(h, "chart").await?;
    let blend = builder.build(chart, &dir.0).await.map_err(|e| match e {
        Error::ChartBuild(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, chain(&e)),
        e => e.into(),
    })?;
    let path = blend.clone();
    let (hash, size) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut hasher = blake3::Hasher::new();
        let size = hasher.update_reader(std::fs::File::open(&path)?)?.count();
        Ok((BlobHash(*hasher.finalize().as_bytes()), size))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::io("cannot read", &blend, e))?;
    if size > limits::MAX_BLOB {
        return Err(ApiError::bad_request(format!(
            "the built chart is {size} bytes, over the blob limit of {}",
            limits::MAX_BLOB
        )));
    }
    h.store()
        .adopt(&blend, hash)
        .await
        .map_err(|e| ApiError::from(Error::from(e)))?;
    Ok((hash, size))
}

/// A directory removed with what it holds when dropped.
pub(super) struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// A new directory in the store's `tmp/`, named after `what`.
    pub(super) async fn create(h: &Handle, what: &str) -> Result<Self, ApiError> {
        let dir = Self(h.store().tmp_dir().join(format!(
            "{what}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        )));
        tokio::fs::create_dir(&dir.0)
            .await
            .map_err(|e| ApiError::io("cannot create", &dir.0, e))?;
        Ok(dir)
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_job_is_named_after_a_plain_name_or_refused() {
        assert_eq!(job_name(None).unwrap(), "chart.blend");
        assert_eq!(job_name(Some("  ")).unwrap(), "chart.blend");
        assert_eq!(job_name(Some("sales 2026")).unwrap(), "sales 2026.blend");
        for bad in ["../x", "a\\b", ".hidden", "a\nb", &"x".repeat(65)] {
            let e = job_name(Some(bad)).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.1.contains("bad chart name"), "{}", e.1);
        }
    }
}
