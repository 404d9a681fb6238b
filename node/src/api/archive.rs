//! `GET /api/v1/jobs/{id}/frames.zip`: every finished frame of a job in one zip, streamed as
//! it is built. Each frame is fetched (from this node's store, else from the mesh) only when
//! its turn comes, and written stored (frames are compressed images already), so the first
//! bytes leave at once and memory stays at a few chunks whatever the job's size.

use std::io::Write;
use std::path::Path as FilePath;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rendermesh_protocol::{BlobHash, Job, NodeId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{ApiError, parse_job_id};
use crate::mesh::Handle;

/// Chunks of the zip waiting to be sent: the writer waits when the client reads slowly.
const IN_FLIGHT: usize = 8;

/// The route.
pub(super) async fn frames_zip(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (job, frames) = finished(&h, &id).await?;
    let id = job.id;
    let name = format!("{}-{}.zip", stem(&job.spec.name), &id.to_string()[..8]);
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    let count = frames.len();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_zip(&runtime, &h, frames, tx.clone()) {
            warn!(job = %id.short(), "the zip of the job's frames stopped: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    debug!(job = %id.short(), frames = count, "streaming the frames as a zip");
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

/// Job `id` (hex) as this node holds it, with its finished frames; 404 for an unknown job or
/// one with no finished frame yet.
pub(super) async fn finished(h: &Handle, id: &str) -> Result<(Job, Vec<Entry>), ApiError> {
    let id = parse_job_id(id)?;
    let Some(job) = h.job(id).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    let frames = entries(&job);
    if frames.is_empty() {
        return Err(ApiError::not_found(format!(
            "job {id} has no finished frame yet"
        )));
    }
    Ok((job, frames))
}

/// A frame to put in the zip: its file name, its blob, and the peers likely to hold it.
pub(super) type Entry = (String, BlobHash, Vec<NodeId>);

/// The job's finished frames, in frame order, named as `rendermesh download` names them.
pub(super) fn entries(job: &Job) -> Vec<Entry> {
    let stem = stem(&job.spec.name);
    let ext = job.spec.format.extension();
    job.outputs()
        .into_iter()
        .map(|o| {
            let mut hints: Vec<NodeId> = job
                .tasks
                .iter()
                .filter(|t| t.outputs.iter().any(|x| x.blob == o.blob))
                .filter_map(|t| t.worker.clone())
                .collect();
            hints.push(job.origin.clone());
            (format!("{stem}_{:04}.{ext}", o.frame), o.blob, hints)
        })
        .collect()
}

/// The stem of a job's name, kept to letters, digits, `-`, `_` and `.` (the name comes from
/// the submitter: no path may sneak into the zip).
pub(super) fn stem(name: &str) -> String {
    let stem = FilePath::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let kept = kept.trim_start_matches('.');
    if kept.is_empty() {
        "frame".to_owned()
    } else {
        kept.to_owned()
    }
}

/// Writes the zip to `tx`, fetching each frame in turn (on a blocking thread: the zip writer
/// is synchronous).
fn write_zip(
    runtime: &tokio::runtime::Handle,
    h: &Handle,
    frames: Vec<Entry>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut zip = zip::ZipWriter::new_stream(ChannelWriter { tx });
    for (name, blob, hints) in frames {
        let path = runtime
            .block_on(h.fetch(blob, hints))
            .map_err(|e| std::io::Error::other(format!("frame {name}: {e}")))?;
        let mut file = std::fs::File::open(&path)?;
        zip.start_file(name, options)
            .map_err(std::io::Error::other)?;
        std::io::copy(&mut file, &mut zip)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

/// Hands what the zip writer writes to the response body, one chunk at a time.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The receiver as a stream of body chunks.
fn tokio_stream_of(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's finished frames are its entries, in frame order, named after the job; a job
    /// with none has no entry (the route then answers 404).
    #[test]
    fn the_entries_are_the_finished_frames_in_order() {
        use rendermesh_protocol::{FrameRange, JobId, JobSpec, Output, Term, plan};
        let mut spec = JobSpec::new(
            "../shot 1.blend",
            BlobHash::of(b"blend"),
            5,
            FrameRange::new(1, 3).expect("range"),
        );
        spec.chunk = Some(1);
        let origin = NodeId::from_bytes(b"origin".to_vec()).expect("id");
        let mut job = Job::new(
            JobId([1; 16]),
            spec.clone(),
            origin,
            plan(&spec, 1),
            Term(1),
            0,
        );
        assert!(entries(&job).is_empty());
        for index in (0..job.tasks.len() as u32).rev() {
            let worker = NodeId::from_bytes(b"w".to_vec()).expect("id");
            let attempt = job
                .assign(index, worker.clone(), Term(1))
                .expect("assigned");
            let outputs = job.tasks[index as usize]
                .frames
                .iter()
                .map(|frame| Output {
                    frame,
                    blob: BlobHash::of(&frame.to_le_bytes()),
                    size: 4,
                    thumb: None,
                })
                .collect();
            job.complete(index, attempt, &worker, outputs, Term(1))
                .expect("done");
        }
        let names: Vec<String> = entries(&job).into_iter().map(|(n, ..)| n).collect();
        assert_eq!(
            names,
            ["shot_1_0001.png", "shot_1_0002.png", "shot_1_0003.png"]
        );
    }

    #[test]
    fn a_jobs_name_makes_a_safe_stem() {
        assert_eq!(stem("scene.blend"), "scene");
        assert_eq!(stem("/home/u/shot 01.blend"), "shot_01");
        assert_eq!(stem("../../etc/passwd"), "passwd");
        assert_eq!(stem(".."), "frame");
        assert_eq!(stem("..hidden.blend"), "hidden");
        assert_eq!(stem(""), "frame");
    }
}
