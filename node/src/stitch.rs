//! Stitches the tiles of one frame into the frame, and encodes it once, in the job's format.
//!
//! Tiles arrive lossless (PNG, or EXR for an EXR job) as Blender wrote them, cropped to their
//! [`Tile::rect`]. The frame's size is read off the tiles themselves (the widths of the top row,
//! the heights of the left column) and every tile must then have exactly its rectangle's size:
//! a tile of the wrong size names itself rather than producing a torn image. Pixels are copied,
//! never converted, so the stitched frame equals a whole-frame render pixel for pixel; a lossy
//! format (JPEG) is encoded here, once, from the stitched pixels.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GenericImageView, ImageFormat};
use rendermesh_protocol::{OutputFormat, Tile};

/// JPEG quality of a stitched frame: Blender's default for `-F JPEG`.
pub const JPEG_QUALITY: u8 = 90;

/// Why a frame could not be stitched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StitchError {
    /// No tiles, or not every tile of the grid.
    #[error("the tiles do not cover the {cols}x{rows} grid: {reason}")]
    Incomplete {
        /// Columns of the grid.
        cols: u32,
        /// Rows of the grid.
        rows: u32,
        /// What is missing or doubled.
        reason: String,
    },
    /// A tile's file is not an image this build reads.
    #[error("{tile} is not a readable image: {reason}")]
    Decode {
        /// The tile.
        tile: Tile,
        /// What the decoder said.
        reason: String,
    },
    /// A tile does not have its rectangle's size, or another tile's pixel type.
    #[error("{tile} is {found}, expected {expected}")]
    Mismatch {
        /// The tile.
        tile: Tile,
        /// What it is.
        found: String,
        /// What its rectangle and the other tiles say it should be.
        expected: String,
    },
    /// The stitched frame could not be encoded.
    #[error("cannot encode the stitched frame as {format}: {reason}")]
    Encode {
        /// The format asked for.
        format: OutputFormat,
        /// What the encoder said.
        reason: String,
    },
}

/// Stitches `tiles` (every tile of one grid, each with its file's bytes, in any order) into one
/// frame and returns it encoded as `format`.
pub fn stitch(tiles: &[(Tile, Vec<u8>)], format: OutputFormat) -> Result<Vec<u8>, StitchError> {
    let frame = stitch_pixels(tiles)?;
    encode(frame, format)
}

/// Stitches `tiles` into one frame's pixels, of the tiles' own pixel type.
pub fn stitch_pixels(tiles: &[(Tile, Vec<u8>)]) -> Result<DynamicImage, StitchError> {
    let (cols, rows) = check_grid(tiles)?;
    let mut decoded: Vec<(Tile, DynamicImage)> = tiles
        .iter()
        .map(|(tile, bytes)| {
            image::load_from_memory(bytes)
                .map(|img| (*tile, img))
                .map_err(|e| StitchError::Decode {
                    tile: *tile,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    decoded.sort_by_key(|(tile, _)| (tile.row, tile.col));
    let width: u32 = decoded[..cols as usize]
        .iter()
        .map(|(_, i)| i.width())
        .sum();
    let height: u32 = decoded
        .iter()
        .filter(|(tile, _)| tile.col == 0)
        .map(|(_, i)| i.height())
        .sum();
    let color = decoded[0].1.color();
    let mut frame = DynamicImage::new(width, height, color);
    for (tile, img) in &decoded {
        let rect = tile.rect(width, height);
        if img.dimensions() != (rect.width(), rect.height()) || img.color() != color {
            return Err(StitchError::Mismatch {
                tile: *tile,
                found: format!("{}x{} {:?}", img.width(), img.height(), img.color()),
                expected: format!(
                    "{}x{} {color:?} (pixels x {}..{}, y {}..{} of a {width}x{height} frame)",
                    rect.width(),
                    rect.height(),
                    rect.x0,
                    rect.x1,
                    rect.y0,
                    rect.y1
                ),
            });
        }
        image::imageops::replace(&mut frame, img, i64::from(rect.x0), i64::from(rect.y0));
    }
    debug_assert_eq!(rows, decoded.last().map_or(0, |(t, _)| t.row + 1));
    Ok(frame)
}

/// Every tile of one grid, each once.
fn check_grid(tiles: &[(Tile, Vec<u8>)]) -> Result<(u32, u32), StitchError> {
    let Some((first, _)) = tiles.first() else {
        return Err(StitchError::Incomplete {
            cols: 0,
            rows: 0,
            reason: "no tiles".into(),
        });
    };
    let (cols, rows) = (first.cols, first.rows);
    let incomplete = |reason: String| StitchError::Incomplete { cols, rows, reason };
    let mut seen = vec![false; cols as usize * rows as usize];
    for (tile, _) in tiles {
        if (tile.cols, tile.rows) != (cols, rows) || tile.col >= cols || tile.row >= rows {
            return Err(incomplete(format!("{tile} is not a tile of this grid")));
        }
        let at = (tile.row * cols + tile.col) as usize;
        if std::mem::replace(&mut seen[at], true) {
            return Err(incomplete(format!("{tile} is given twice")));
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        let (col, row) = (missing as u32 % cols, missing as u32 / cols);
        let tile = Tile {
            col,
            row,
            cols,
            rows,
        };
        return Err(incomplete(format!("{tile} is missing")));
    }
    Ok((cols, rows))
}

/// Encodes `frame` as `format`: PNG keeps the pixel type, JPEG drops alpha, BMP is 8-bit, EXR
/// is float.
pub fn encode(frame: DynamicImage, format: OutputFormat) -> Result<Vec<u8>, StitchError> {
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        OutputFormat::Png => frame.write_to(&mut out, ImageFormat::Png),
        OutputFormat::Jpg => {
            let rgb = DynamicImage::ImageRgb8(frame.to_rgb8());
            rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
        }
        OutputFormat::Bmp => {
            let eight = if frame.color().has_alpha() {
                DynamicImage::ImageRgba8(frame.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(frame.to_rgb8())
            };
            eight.write_to(&mut out, ImageFormat::Bmp)
        }
        OutputFormat::Exr => {
            DynamicImage::ImageRgba32F(frame.to_rgba32f()).write_to(&mut out, ImageFormat::OpenExr)
        }
    };
    result.map_err(|e| StitchError::Encode {
        format,
        reason: e.to_string(),
    })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use image::{Rgba, RgbaImage};

    use super::*;

    /// A frame whose every pixel is distinct, and its tiles as PNG files.
    fn frame_and_tiles(
        width: u32,
        height: u32,
        cols: u32,
        rows: u32,
    ) -> (RgbaImage, Vec<(Tile, Vec<u8>)>) {
        let frame = RgbaImage::from_fn(width, height, |x, y| {
            Rgba([
                (x % 256) as u8,
                (y % 256) as u8,
                ((x * 7 + y * 13) % 256) as u8,
                255 - (x % 3) as u8,
            ])
        });
        let tiles = Tile::grid(cols, rows)
            .map(|tile| {
                let r = tile.rect(width, height);
                let part =
                    image::imageops::crop_imm(&frame, r.x0, r.y0, r.width(), r.height()).to_image();
                let mut bytes = Cursor::new(Vec::new());
                part.write_to(&mut bytes, ImageFormat::Png).unwrap();
                (tile, bytes.into_inner())
            })
            .collect();
        (frame, tiles)
    }

    #[test]
    fn tiles_stitch_back_into_the_same_pixels_in_any_order() {
        for (w, h, cols, rows) in [(120, 67, 4, 4), (7, 5, 7, 5), (33, 1, 3, 1), (1, 9, 1, 2)] {
            let (frame, mut tiles) = frame_and_tiles(w, h, cols, rows);
            tiles.reverse();
            let png = stitch(&tiles, OutputFormat::Png).unwrap();
            let back = image::load_from_memory(&png).unwrap().to_rgba8();
            assert_eq!(back, frame, "{w}x{h} in {cols}x{rows}");
        }
    }

    #[test]
    fn every_format_encodes_and_decodes_to_the_frame_size() {
        let (frame, tiles) = frame_and_tiles(40, 30, 2, 3);
        for format in [
            OutputFormat::Png,
            OutputFormat::Jpg,
            OutputFormat::Bmp,
            OutputFormat::Exr,
        ] {
            let bytes = stitch(&tiles, format).unwrap();
            let img = image::load_from_memory(&bytes).unwrap();
            assert_eq!(img.dimensions(), frame.dimensions(), "{format}");
            if format == OutputFormat::Bmp {
                assert_eq!(img.to_rgba8(), frame);
            }
        }
    }

    #[test]
    fn a_missing_doubled_or_wrong_sized_tile_is_named() {
        let (_, tiles) = frame_and_tiles(40, 30, 2, 2);
        let err = stitch(&tiles[..3], OutputFormat::Png)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tile 1,1 of 2x2 is missing"), "{err}");
        let mut doubled = tiles.clone();
        doubled[3] = doubled[2].clone();
        let err = stitch(&doubled, OutputFormat::Png).unwrap_err().to_string();
        assert!(err.contains("given twice"), "{err}");
        let mut wrong = tiles.clone();
        let (_, small) = frame_and_tiles(5, 5, 1, 1);
        wrong[3].1 = small[0].1.clone();
        let err = stitch(&wrong, OutputFormat::Png).unwrap_err().to_string();
        assert!(err.contains("tile 1,1 of 2x2 is 5x5"), "{err}");
        let mut junk = tiles;
        junk[0].1 = b"not an image".to_vec();
        let err = stitch(&junk, OutputFormat::Png).unwrap_err().to_string();
        assert!(
            err.contains("tile 0,0 of 2x2 is not a readable image"),
            "{err}"
        );
        assert!(stitch(&[], OutputFormat::Png).is_err());
    }
}
