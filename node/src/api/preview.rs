//! `GET /api/v1/jobs/{id}/preview.mp4`: a short video of a job's finished frames, made with
//! ffmpeg when this node has it (Debian's `ffmpeg`; `GET /api/v1/node` says, and the page
//! tells the person to install it when it does not).
//!
//! The frames are decoded here, within the thumbnails' bounds (float frames brought to sRGB),
//! and handed to ffmpeg as raw pixels on its stdin: ffmpeg never parses a file a peer made. It
//! encodes H.264 (yuv420p, `+faststart`, at most [`MAX_WIDTH`] pixels wide, an odd last row or
//! column cut off) into a scratch file
//! of the store's `tmp/`, which is then streamed back and removed. One video is made at a
//! time, each bounded by [`TIMEOUT`]; a job of more than [`MAX_FRAMES`] frames shows that many,
//! evenly spread.

use std::path::{Path as FilePath, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use image::{RgbaImage, imageops};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use super::ApiError;
use super::archive::{finished, stem};
use super::sheet::spread;
use crate::mesh::Handle;
use crate::thumb;

/// The most frames a preview shows.
pub const MAX_FRAMES: usize = 1000;
/// The widest a preview is, in pixels (wider frames are scaled down).
pub const MAX_WIDTH: u32 = 1280;
/// Frames per second, unless `?fps=` says otherwise (1 to [`MAX_FPS`]).
pub const DEFAULT_FPS: u32 = 24;
/// The highest `?fps=`.
pub const MAX_FPS: u32 = 60;
/// How long ffmpeg may take over one preview.
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// How long `ffmpeg -version` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ffmpeg this node makes previews with, if it has one.
#[derive(Clone, Debug)]
pub struct Previews {
    /// The executable, and its version (`5.1.9-0+deb12u1`), when `-version` answered.
    ffmpeg: Option<(PathBuf, String)>,
    /// One video at a time.
    turn: Arc<Semaphore>,
}

impl Previews {
    /// Asks `exe -version` (bounded by 10 s); previews are refused when it does not answer.
    pub async fn probe(exe: &FilePath) -> Self {
        let version = async {
            let out = Command::new(exe)
                .arg("-version")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let first = text.lines().next()?;
            // `ffmpeg version 5.1.9-0+deb12u1 Copyright (c) ...`
            let version = first.strip_prefix("ffmpeg version ")?.split(' ').next()?;
            out.status.success().then(|| version.to_owned())
        };
        let version = tokio::time::timeout(PROBE_TIMEOUT, version)
            .await
            .ok()
            .flatten();
        debug!(ffmpeg = %exe.display(), ?version, "ffmpeg probed");
        Self {
            ffmpeg: version.map(|v| (exe.to_path_buf(), v)),
            turn: Arc::new(Semaphore::new(1)),
        }
    }

    /// The ffmpeg version previews are made with, if any.
    pub fn version(&self) -> Option<String> {
        self.ffmpeg.as_ref().map(|(_, v)| v.clone())
    }
}

/// `?fps=N`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewQuery {
    fps: Option<u32>,
}

/// The route.
pub(super) async fn preview(
    State(h): State<Handle>,
    Extension(previews): Extension<Previews>,
    Path(id): Path<String>,
    Query(query): Query<PreviewQuery>,
) -> Result<Response, ApiError> {
    let Some((ffmpeg, _)) = &previews.ffmpeg else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no preview video: this node has no ffmpeg (install it: apt-get install ffmpeg, or \
             start the node with --ffmpeg PATH)"
                .to_owned(),
        ));
    };
    let fps = query.fps.unwrap_or(DEFAULT_FPS);
    if !(1..=MAX_FPS).contains(&fps) {
        return Err(ApiError::bad_request(format!(
            "bad fps {fps}: 1 to {MAX_FPS} frames per second"
        )));
    }
    let (job, frames) = finished(&h, &id).await?;
    let frames = spread(frames, MAX_FRAMES);
    let mut paths = Vec::with_capacity(frames.len());
    for (name, blob, hints) in frames {
        paths.push((name, h.fetch(blob, hints).await?));
    }
    let count = paths.len();
    let _turn = previews
        .turn
        .acquire()
        .await
        .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_owned()))?;
    let out = ScratchFile(h.store().tmp_dir().join(format!(
        "preview-{}-{:016x}.mp4",
        std::process::id(),
        rand::random::<u64>()
    )));
    tokio::time::timeout(TIMEOUT, encode(ffmpeg, paths, fps, &out.0))
        .await
        .map_err(|_| internal(format!("ffmpeg took over {} s", TIMEOUT.as_secs())))??;
    let file = tokio::fs::File::open(&out.0)
        .await
        .map_err(|e| ApiError::io("cannot open", &out.0, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::io("cannot read", &out.0, e))?
        .len();
    // Open: the bytes stay readable while the name goes.
    drop(out);
    debug!(job = %job.id.short(), frames = count, fps, bytes = size, "preview made");
    let name = format!(
        "{}-{}-preview.mp4",
        stem(&job.spec.name),
        &job.id.to_string()[..8]
    );
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

fn internal(message: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The arguments that make ffmpeg read `width` x `height` RGBA frames at `fps` from stdin and
/// write `out`: H.264 in yuv420p (even sizes: an odd last row or column is cut off), at most
/// [`MAX_WIDTH`] wide, `+faststart` so a browser plays it before it has it all.
pub fn ffmpeg_args(width: u32, height: u32, fps: u32, out: &FilePath) -> Vec<String> {
    // Scaled down only when wider than MAX_WIDTH, then an odd last row or column cut off.
    let scale = format!("scale=min({MAX_WIDTH}\\,iw):-1,crop=trunc(iw/2)*2:trunc(ih/2)*2");
    [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostats",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgba",
        "-s",
        &format!("{width}x{height}"),
        "-framerate",
        &fps.to_string(),
        "-i",
        "pipe:0",
        "-vf",
        &scale,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-y",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(out.display().to_string()))
    .collect()
}

/// Decodes `frames` one by one (on a blocking thread) and pipes their pixels through ffmpeg
/// into `out`. Every frame takes the first one's size.
async fn encode(
    ffmpeg: &FilePath,
    frames: Vec<(String, PathBuf)>,
    fps: u32,
    out: &FilePath,
) -> Result<(), ApiError> {
    let (tx, mut rx) = mpsc::channel::<Result<RgbaImage, String>>(2);
    let decoder = tokio::task::spawn_blocking(move || {
        let mut size = None;
        for (name, path) in frames {
            let frame = thumb::decode(&path)
                .map(|image| thumb::to_srgb8(&image))
                .map(|image| {
                    let (w, h) = *size.get_or_insert(image.dimensions());
                    if image.dimensions() == (w, h) {
                        image
                    } else {
                        imageops::resize(&image, w, h, imageops::FilterType::Triangle)
                    }
                })
                .map_err(|e| format!("frame {name}: {e}"));
            let failed = frame.is_err();
            if tx.blocking_send(frame).is_err() || failed {
                return;
            }
        }
    });
    let first = match rx.recv().await {
        Some(Ok(frame)) => frame,
        Some(Err(e)) => return Err(internal(e)),
        None => return Err(internal("no frame decoded".to_owned())),
    };
    let (width, height) = first.dimensions();
    let mut child = Command::new(ffmpeg)
        .args(ffmpeg_args(width, height, fps, out))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| internal(format!("cannot run ffmpeg `{}`: {e}", ffmpeg.display())))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Read while it runs: a chatty ffmpeg must not block on a full pipe.
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut frame = Some(Ok(first));
    let mut fed = Ok(());
    while let Some(next) = frame {
        match next {
            Ok(image) => {
                if let Err(e) = stdin.write_all(image.as_raw()).await {
                    fed = Err(format!("ffmpeg stopped reading: {e}"));
                    break;
                }
            }
            Err(e) => {
                fed = Err(e);
                break;
            }
        }
        frame = rx.recv().await;
    }
    drop(stdin);
    drop(rx);
    let _ = decoder.await;
    let status = child
        .wait()
        .await
        .map_err(|e| internal(format!("ffmpeg: {e}")))?;
    let said = errors.await.unwrap_or_default();
    match fed {
        Err(e) => Err(internal(format!("{e}; ffmpeg said: {}", said.trim()))),
        Ok(()) if !status.success() => Err(internal(format!(
            "ffmpeg failed ({status}): {}",
            said.trim()
        ))),
        Ok(()) => Ok(()),
    }
}

/// A file removed when dropped.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_reads_raw_pixels_only_and_writes_an_even_sized_h264() {
        let args = ffmpeg_args(480, 270, 24, FilePath::new("/tmp/x.mp4"));
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].as_str()
        };
        assert_eq!(after("-f"), "rawvideo");
        assert_eq!(after("-i"), "pipe:0");
        assert_eq!(after("-s"), "480x270");
        assert_eq!(after("-framerate"), "24");
        assert_eq!(after("-c:v"), "libx264");
        assert_eq!(
            after("-vf"),
            "scale=min(1280\\,iw):-1,crop=trunc(iw/2)*2:trunc(ih/2)*2"
        );
        assert_eq!(args.last().map(String::as_str), Some("/tmp/x.mp4"));
    }
}
