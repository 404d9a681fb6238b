//! Thumbnails: a small PNG of each rendered frame (and of each tile), made once by the node
//! that stores the frame and kept as a blob of its own ([`Output::thumb`]), for pages to show
//! as frames arrive.
//!
//! A whole frame's thumbnail is [`limits::THUMB_WIDTH`] pixels wide at most (never wider than
//! the frame), its height in proportion. A tile's is the tile's share of that width, so that
//! the tiles of a frame laid side by side make up about one frame's thumbnail. Float frames
//! (EXR, linear light) are brought to sRGB, as an image viewer shows them; 8 and 16-bit
//! frames are taken as they are. Decoding is bounded ([`MAX_SIDE`]): a frame comes from a
//! worker, and the size its header gives is not trusted.
//!
//! [`Output::thumb`]: rendermesh_protocol::Output::thumb

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, RgbaImage, imageops};
use rendermesh_protocol::{Tile, limits};

/// The widest and tallest frame decoded for a thumbnail or a contact sheet.
pub const MAX_SIDE: u32 = 16_384;

/// Decodes an image file, whatever its format, within [`MAX_SIDE`] and the decoder's own
/// memory bound.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .map_err(|e| e.to_string())?;
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(MAX_SIDE);
    bounds.max_image_height = Some(MAX_SIDE);
    reader.limits(bounds);
    reader.decode().map_err(|e| format!("does not decode: {e}"))
}

/// `image` as 8-bit sRGB: float pixels (linear light) through the sRGB curve, others as they
/// are.
pub fn to_srgb8(image: &DynamicImage) -> RgbaImage {
    match image {
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            let linear = image.to_rgba32f();
            let mut out = RgbaImage::new(linear.width(), linear.height());
            for (o, p) in out.pixels_mut().zip(linear.pixels()) {
                let [r, g, b, a] = p.0;
                o.0 = [srgb(r), srgb(g), srgb(b), unit(a)];
            }
            out
        }
        _ => image.to_rgba8(),
    }
}

/// A linear value through the sRGB transfer curve, as a byte.
fn srgb(linear: f32) -> u8 {
    let v = if linear.is_nan() {
        0.0
    } else {
        linear.clamp(0.0, 1.0)
    };
    let encoded = if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    unit(encoded)
}

/// A value in 0..=1 as a byte.
fn unit(v: f32) -> u8 {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (v * 255.0).round() as u8
}

/// The size of the thumbnail of an image `width` x `height`: a whole frame's (`tile` is
/// `None`) or a tile's of a grid of `tile.cols` columns.
pub fn size(width: u32, height: u32, tile: Option<Tile>) -> (u32, u32) {
    let share = tile.map_or(1, |t| t.cols.max(1));
    let w = limits::THUMB_WIDTH.div_ceil(share).clamp(1, width.max(1));
    let h =
        (u64::from(w) * u64::from(height) + u64::from(width.max(1)) / 2) / u64::from(width.max(1));
    (w, (h as u32).max(1))
}

/// The thumbnail of `image` (a frame, or the tile `tile` of one), 8-bit sRGB.
pub fn thumbnail(image: &DynamicImage, tile: Option<Tile>) -> RgbaImage {
    let (w, h) = size(image.width(), image.height(), tile);
    imageops::thumbnail(&to_srgb8(image), w, h)
}

/// The thumbnail of the image file at `path` (a frame, or the tile `tile` of one), as PNG.
pub fn of_file(path: &Path, tile: Option<Tile>) -> Result<Vec<u8>, String> {
    png(&thumbnail(&decode(path)?, tile))
}

/// `image` encoded as PNG.
pub fn png(image: &RgbaImage) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|e| format!("cannot encode a thumbnail: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use image::{Rgba, Rgba32FImage};

    use super::*;

    fn tile(cols: u32) -> Option<Tile> {
        Some(Tile {
            col: 0,
            row: 0,
            cols,
            rows: 1,
        })
    }

    #[test]
    fn a_frame_is_scaled_to_the_thumbnail_width_and_never_up() {
        assert_eq!(size(1920, 1080, None), (192, 108));
        assert_eq!(size(1000, 1000, None), (192, 192));
        assert_eq!(size(64, 36, None), (64, 36));
        assert_eq!(size(4000, 1, None), (192, 1));
    }

    /// A tile takes its column's share of the width, so that a row of tiles is about one
    /// frame's thumbnail wide.
    #[test]
    fn a_tile_takes_its_share_of_the_width() {
        assert_eq!(size(480, 270, tile(4)), (48, 27));
        assert_eq!(size(481, 270, tile(4)), (48, 27));
        assert_eq!(size(30, 20, tile(4)), (30, 20));
        assert_eq!(size(10, 10, tile(64)), (3, 3));
    }

    #[test]
    fn a_thumbnail_decodes_to_its_size_as_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("frame.png");
        RgbaImage::from_pixel(400, 200, Rgba([200, 100, 50, 255]))
            .save(&path)
            .expect("saved");
        let png = of_file(&path, None).expect("a thumbnail");
        let back = image::load_from_memory(&png).expect("decodes").to_rgba8();
        assert_eq!(back.dimensions(), (192, 96));
        assert_eq!(back.get_pixel(10, 10), &Rgba([200, 100, 50, 255]));
    }

    /// Linear light goes through the sRGB curve: 0.5 is shown as 188, not 128.
    #[test]
    fn float_frames_are_brought_to_srgb() {
        let linear = Rgba32FImage::from_pixel(2, 2, Rgba([0.5, 0.0, 1.0, 1.0]));
        let shown = to_srgb8(&DynamicImage::ImageRgba32F(linear));
        assert_eq!(shown.get_pixel(0, 0), &Rgba([188, 0, 255, 255]));
        let plain = RgbaImage::from_pixel(2, 2, Rgba([128, 0, 255, 255]));
        assert_eq!(to_srgb8(&DynamicImage::ImageRgba8(plain.clone())), plain);
    }

    /// A frame wider than [`MAX_SIDE`] is refused before its pixels are decoded; one at the
    /// bound decodes.
    #[test]
    fn a_frame_larger_than_the_bound_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wide = dir.path().join("wide.png");
        RgbaImage::new(MAX_SIDE + 1, 1).save(&wide).expect("saved");
        let refused = decode(&wide).unwrap_err();
        assert!(refused.contains("does not decode"), "{refused}");
        let fits = dir.path().join("fits.png");
        RgbaImage::new(MAX_SIDE, 1).save(&fits).expect("saved");
        assert_eq!(decode(&fits).expect("decodes").width(), MAX_SIDE);
    }

    #[test]
    fn what_is_not_an_image_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("frame.png");
        std::fs::write(&path, b"not an image").expect("written");
        let refused = of_file(&path, None).unwrap_err();
        assert!(refused.contains("does not decode"), "{refused}");
    }
}
