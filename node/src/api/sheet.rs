//! `GET /api/v1/jobs/{id}/contact.png`: a contact sheet of a job's finished frames, one PNG.
//!
//! Each frame is scaled to [`THUMB_WIDTH`] pixels wide (its height kept in proportion, from
//! the first frame's size), and the thumbnails laid out in frame order, left to right and top
//! to bottom, on a dark ground with [`GAP`] pixels around each. A grid is as close to square
//! as it can be, at most [`MAX_COLUMNS`] wide; a job of more than [`MAX_FRAMES`] frames shows
//! that many, evenly spread over it (the first and the last included).

use std::io::Cursor;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use image::{ImageFormat, Rgba, RgbaImage, imageops};
use tracing::debug;

use super::ApiError;
use super::archive::{Entry, finished, stem};
use crate::mesh::Handle;
use crate::thumb;

/// How wide each frame's thumbnail is, in pixels.
pub const THUMB_WIDTH: u32 = 192;
/// The space around each thumbnail, in pixels.
pub const GAP: u32 = 4;
/// The most thumbnails in a row.
pub const MAX_COLUMNS: usize = 12;
/// The most frames a sheet shows.
pub const MAX_FRAMES: usize = 144;
/// The ground between the thumbnails.
pub const GROUND: Rgba<u8> = Rgba([32, 32, 32, 255]);

/// The route.
pub(super) async fn contact_sheet(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (job, frames) = finished(&h, &id).await?;
    let id = job.id;
    let frames = spread(frames, MAX_FRAMES);
    let mut paths = Vec::with_capacity(frames.len());
    for (name, blob, hints) in frames {
        let path = h.fetch(blob, hints).await?;
        paths.push((name, path));
    }
    let count = paths.len();
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut images = Vec::with_capacity(paths.len());
        for (name, path) in &paths {
            let image = thumb::decode(path).map_err(|e| format!("frame {name}: {e}"))?;
            images.push(thumb::to_srgb8(&image));
        }
        let sheet = compose(&images);
        let mut png = Vec::new();
        sheet
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(|e| format!("the sheet does not encode: {e}"))?;
        Ok(png)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    debug!(job = %id.short(), frames = count, bytes = png.len(), "contact sheet made");
    let name = format!(
        "{}-{}-contact.png",
        stem(&job.spec.name),
        &id.to_string()[..8]
    );
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        Body::from(png),
    )
        .into_response())
}

/// At most `most` of `frames`, evenly spread over them, the first and the last included.
pub(super) fn spread(frames: Vec<Entry>, most: usize) -> Vec<Entry> {
    let n = frames.len();
    if n <= most || most < 2 {
        return frames.into_iter().take(most.max(1)).collect();
    }
    let picked: Vec<usize> = (0..most).map(|i| i * (n - 1) / (most - 1)).collect();
    frames
        .into_iter()
        .enumerate()
        .filter(|(i, _)| picked.contains(i))
        .map(|(_, f)| f)
        .collect()
}

/// The columns and rows of a sheet of `n` thumbnails: as square as can be, at most
/// [`MAX_COLUMNS`] wide.
pub fn grid(n: usize) -> (u32, u32) {
    let mut cols = 1;
    while cols * cols < n {
        cols += 1;
    }
    let cols = cols.clamp(1, MAX_COLUMNS);
    let rows = n.div_ceil(cols).max(1);
    (cols as u32, rows as u32)
}

/// The size of each thumbnail of frames `width` x `height`.
pub fn thumb_size(width: u32, height: u32) -> (u32, u32) {
    let h = (u64::from(THUMB_WIDTH) * u64::from(height) + u64::from(width.max(1)) / 2)
        / u64::from(width.max(1));
    (THUMB_WIDTH, (h as u32).max(1))
}

/// `image` scaled to `size`, as the sheet shows it.
pub fn thumbnail(image: &RgbaImage, (w, h): (u32, u32)) -> RgbaImage {
    imageops::thumbnail(image, w, h)
}

/// The sheet of `images`, in order.
fn compose(images: &[RgbaImage]) -> RgbaImage {
    let (cols, rows) = grid(images.len());
    let size = images.first().map_or((THUMB_WIDTH, THUMB_WIDTH), |i| {
        thumb_size(i.width(), i.height())
    });
    let mut sheet = RgbaImage::from_pixel(
        cols * size.0 + (cols + 1) * GAP,
        rows * size.1 + (rows + 1) * GAP,
        GROUND,
    );
    for (i, image) in images.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let x = GAP + col * (size.0 + GAP);
        let y = GAP + row * (size.1 + GAP);
        imageops::replace(
            &mut sheet,
            &thumbnail(image, size),
            i64::from(x),
            i64::from(y),
        );
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_as_square_as_can_be_and_at_most_twelve_wide() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(6), (3, 2));
        assert_eq!(grid(9), (3, 3));
        assert_eq!(grid(10), (4, 3));
        assert_eq!(grid(144), (12, 12));
        assert_eq!(grid(200), (12, 17));
    }

    #[test]
    fn many_frames_are_spread_evenly_the_first_and_last_included() {
        let frames: Vec<Entry> = (0..10)
            .map(|i| {
                (
                    format!("f{i}"),
                    rendermesh_protocol::BlobHash::of(&[i]),
                    Vec::new(),
                )
            })
            .collect();
        let names = |v: Vec<Entry>| v.into_iter().map(|(n, ..)| n).collect::<Vec<_>>();
        assert_eq!(names(spread(frames.clone(), 4)), ["f0", "f3", "f6", "f9"]);
        assert_eq!(names(spread(frames.clone(), 10)).len(), 10);
        assert_eq!(names(spread(frames, 1)), ["f0"]);
    }

    #[test]
    fn the_sheet_holds_each_thumbnail_in_its_cell_on_the_ground() {
        let red = RgbaImage::from_pixel(384, 216, Rgba([255, 0, 0, 255]));
        let blue = RgbaImage::from_pixel(384, 216, Rgba([0, 0, 255, 255]));
        let sheet = compose(&[red.clone(), blue, red]);
        let (w, h) = thumb_size(384, 216);
        assert_eq!((w, h), (192, 108));
        // Two columns, two rows.
        assert_eq!(sheet.dimensions(), (2 * w + 3 * GAP, 2 * h + 3 * GAP));
        assert_eq!(*sheet.get_pixel(0, 0), GROUND);
        assert_eq!(*sheet.get_pixel(GAP + 5, GAP + 5), Rgba([255, 0, 0, 255]));
        assert_eq!(
            *sheet.get_pixel(2 * GAP + w + 5, GAP + 5),
            Rgba([0, 0, 255, 255])
        );
        assert_eq!(
            *sheet.get_pixel(GAP + 5, 2 * GAP + h + 5),
            Rgba([255, 0, 0, 255])
        );
        // The fourth cell is empty.
        assert_eq!(*sheet.get_pixel(2 * GAP + w + 5, 2 * GAP + h + 5), GROUND);
    }
}
