//! Compares two renders of the same frame or tile by their decoded pixels.
//!
//! A verification render renders a sample of a worker's output again on another node. The two
//! files' bytes differ even when the renders agree: Blender writes metadata such as the render
//! time into a PNG or EXR, and encoders may compress differently. So [`same_pixels`] decodes
//! both files (PNG, EXR, or any format this build of `image` reads, as [`crate::stitch`] does)
//! and compares what they hold: the same width, height and pixel type, and byte-identical
//! pixels. Nothing is converted first: an 8-bit and a 16-bit render of the same scene differ.
//!
//! A file that does not decode is [`CompareError::NotAnImage`], naming which [`Side`] it was:
//! the caller decides what an unreadable render means (for a verification, a render that
//! differs). When the pixels differ, the [`Comparison`] says how, for a log line: both sizes,
//! or how many pixels differ and by how much at most.
//!
//! Decoding and comparing a frame takes milliseconds to a second of CPU: call it from
//! `tokio::task::spawn_blocking` in async code.

use std::fmt;

use image::{ColorType, DynamicImage};

/// Which of the two files compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first argument of [`same_pixels`].
    First,
    /// The second argument of [`same_pixels`].
    Second,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::First => "first",
            Self::Second => "second",
        })
    }
}

/// Why two files could not be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// One file is not an image this build reads (the first one tried, if both are not).
    #[error("the {side} file is not a readable image: {reason}")]
    NotAnImage {
        /// Which file.
        side: Side,
        /// What the decoder said.
        reason: String,
    },
}

/// The size and pixel type of a decoded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels and their type, as decoded.
    pub color: ColorType,
}

impl Shape {
    fn of(img: &DynamicImage) -> Self {
        Self {
            width: img.width(),
            height: img.height(),
            color: img.color(),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} {:?}", self.width, self.height, self.color)
    }
}

/// What two decoded images have in common.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Comparison {
    /// Same size, same pixel type, the same bytes in every pixel.
    Same,
    /// The sizes or the pixel types differ, so no pixel is compared.
    Shapes {
        /// The first file's.
        first: Shape,
        /// The second file's.
        second: Shape,
    },
    /// Same size and pixel type, different pixels.
    Pixels {
        /// The size and pixel type both have.
        shape: Shape,
        /// How many pixels differ in at least one channel's bytes.
        differing: u64,
        /// The largest difference of one channel, in the channel's own units: 0 to 255 for
        /// 8-bit channels, 0 to 65535 for 16-bit ones, the value itself for floats (infinite
        /// where one is not a number and the other is).
        largest: f64,
    },
}

impl Comparison {
    /// Whether the two files hold the same pixels.
    pub fn is_same(&self) -> bool {
        matches!(self, Self::Same)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Same => f.write_str("the same pixels"),
            Self::Shapes { first, second } if first.color == second.color => write!(
                f,
                "different sizes: {}x{} against {}x{}",
                first.width, first.height, second.width, second.height
            ),
            Self::Shapes { first, second } => {
                write!(f, "different images: {first} against {second}")
            }
            Self::Pixels {
                shape,
                differing,
                largest,
            } => write!(
                f,
                "{differing} of {} pixels differ (largest channel difference {largest}) in {shape}",
                u64::from(shape.width) * u64::from(shape.height)
            ),
        }
    }
}

/// Decodes the image files `first` and `second` and compares their pixels (see the module
/// docs). Fails only when a file does not decode, naming which.
pub fn same_pixels(first: &[u8], second: &[u8]) -> Result<Comparison, CompareError> {
    let a = decode(first, Side::First)?;
    let b = decode(second, Side::Second)?;
    let (shape, other) = (Shape::of(&a), Shape::of(&b));
    if shape != other {
        return Ok(Comparison::Shapes {
            first: shape,
            second: other,
        });
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b {
        return Ok(Comparison::Same);
    }
    let pixel = usize::from(shape.color.bytes_per_pixel()).max(1);
    let read = channel_reader(shape.color);
    let channel = (pixel / usize::from(shape.color.channel_count()).max(1)).max(1);
    let mut differing = 0;
    let mut largest: f64 = 0.0;
    for (pa, pb) in a.chunks(pixel).zip(b.chunks(pixel)) {
        if pa == pb {
            continue;
        }
        differing += 1;
        for (ca, cb) in pa.chunks(channel).zip(pb.chunks(channel)) {
            largest = largest.max(difference(read(ca), read(cb)));
        }
    }
    Ok(Comparison::Pixels {
        shape,
        differing,
        largest,
    })
}

fn decode(bytes: &[u8], side: Side) -> Result<DynamicImage, CompareError> {
    image::load_from_memory(bytes).map_err(|e| CompareError::NotAnImage {
        side,
        reason: e.to_string(),
    })
}

/// Reads one channel's bytes (native-endian, as [`DynamicImage::as_bytes`] holds them) as a
/// number in the channel's own units.
fn channel_reader(color: ColorType) -> fn(&[u8]) -> f64 {
    let float = matches!(color, ColorType::Rgb32F | ColorType::Rgba32F);
    let size = usize::from(color.bytes_per_pixel()) / usize::from(color.channel_count()).max(1);
    match (float, size) {
        (true, 4) => |c| {
            c.try_into()
                .map_or(0.0, |c| f64::from(f32::from_ne_bytes(c)))
        },
        (_, 2) => |c| {
            c.try_into()
                .map_or(0.0, |c| f64::from(u16::from_ne_bytes(c)))
        },
        _ => |c| c.first().map_or(0.0, |&c| f64::from(c)),
    }
}

/// `|a - b|`, with NaN against a number counted as infinitely far and NaN against NaN as 0.
fn difference(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (false, false) if a == b => 0.0,
        (false, false) => (a - b).abs(),
        (true, true) => 0.0,
        _ => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::{ImageFormat, Rgba, Rgba32FImage, RgbaImage};

    use super::*;

    /// An image whose pixels are mostly distinct.
    fn picture(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| {
            Rgba([
                (x * 3 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
                255,
            ])
        })
    }

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// The CRC-32 of a PNG chunk (ISO 3309, bit by bit).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// `png` with a `tEXt` chunk after its header, as Blender writes its render time.
    fn with_text(png: &[u8], key: &str, value: &str) -> Vec<u8> {
        let mut body = b"tEXt".to_vec();
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        let after_header = 8 + 4 + 4 + 13 + 4;
        let mut out = png[..after_header].to_vec();
        out.extend_from_slice(&(body.len() as u32 - 4).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out.extend_from_slice(&png[after_header..]);
        out
    }

    #[test]
    fn the_same_pixels_encoded_differently_with_other_metadata_are_the_same() {
        let img = picture(64, 36);
        let mut fast = Vec::new();
        img.write_with_encoder(PngEncoder::new_with_quality(
            &mut fast,
            CompressionType::Fast,
            FilterType::NoFilter,
        ))
        .unwrap();
        let fast = with_text(&fast, "RenderTime", "00:01.25");
        let mut best = Vec::new();
        img.write_with_encoder(PngEncoder::new_with_quality(
            &mut best,
            CompressionType::Best,
            FilterType::Paeth,
        ))
        .unwrap();
        let best = with_text(&best, "RenderTime", "00:03.50");
        assert_ne!(fast, best);
        assert_eq!(same_pixels(&fast, &best).unwrap(), Comparison::Same);
        // The chunk is well formed: the decoder would refuse a bad CRC.
        assert!(image::load_from_memory(&fast).is_ok());
    }

    #[test]
    fn one_changed_pixel_is_counted_with_its_difference() {
        let img = picture(64, 36);
        let mut changed = img.clone();
        changed.get_pixel_mut(10, 20).0[1] ^= 0x20;
        let got = same_pixels(&png(&img.into()), &png(&changed.into())).unwrap();
        assert!(!got.is_same());
        assert!(
            matches!(got, Comparison::Pixels { differing: 1, largest, .. } if largest == 32.0),
            "{got:?}"
        );
        let text = got.to_string();
        assert!(text.contains("1 of 2304 pixels differ"), "{text}");
        assert!(text.contains("largest channel difference 32"), "{text}");
    }

    #[test]
    fn different_sizes_name_both() {
        let big = png(&picture(640, 360).into());
        let small = png(&picture(320, 180).into());
        let got = same_pixels(&big, &small).unwrap();
        assert!(matches!(got, Comparison::Shapes { .. }), "{got:?}");
        assert_eq!(got.to_string(), "different sizes: 640x360 against 320x180");
    }

    #[test]
    fn a_file_that_is_not_an_image_is_named() {
        let good = png(&picture(8, 8).into());
        let err = same_pixels(b"not an image", &good).unwrap_err();
        assert!(
            matches!(
                err,
                CompareError::NotAnImage {
                    side: Side::First,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("the first file is not"),
            "{err}"
        );
        let err = same_pixels(&good, &good[..good.len() / 2]).unwrap_err();
        assert!(
            matches!(
                err,
                CompareError::NotAnImage {
                    side: Side::Second,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("the second file is not"),
            "{err}"
        );
    }

    #[test]
    fn sixteen_bit_pixels_compare_in_sixteen_bit_units() {
        let deep = DynamicImage::ImageRgba16(DynamicImage::from(picture(16, 9)).to_rgba16());
        let mut changed = deep.to_rgba16();
        changed.get_pixel_mut(3, 4).0[0] = changed.get_pixel(3, 4).0[0].wrapping_add(300);
        changed.get_pixel_mut(5, 6).0[2] ^= 1;
        let changed = DynamicImage::ImageRgba16(changed);
        assert_eq!(
            same_pixels(&png(&deep), &png(&deep)).unwrap(),
            Comparison::Same
        );
        let got = same_pixels(&png(&deep), &png(&changed)).unwrap();
        assert!(
            matches!(got, Comparison::Pixels { differing: 2, largest, .. } if largest == 300.0),
            "{got:?}"
        );
        // The same scene at another depth is another image.
        let eight = png(&picture(16, 9).into());
        let got = same_pixels(&eight, &png(&deep)).unwrap();
        assert_eq!(
            got.to_string(),
            "different images: 16x9 Rgba8 against 16x9 Rgba16"
        );
    }

    #[test]
    fn exr_pixels_compare_as_floats() {
        let exr = |img: &Rgba32FImage| {
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageRgba32F(img.clone())
                .write_to(&mut out, ImageFormat::OpenExr)
                .unwrap();
            out.into_inner()
        };
        let img = DynamicImage::from(picture(12, 7)).to_rgba32f();
        let mut changed = img.clone();
        changed.get_pixel_mut(11, 6).0[0] += 0.25;
        assert_eq!(
            same_pixels(&exr(&img), &exr(&img)).unwrap(),
            Comparison::Same
        );
        let got = same_pixels(&exr(&img), &exr(&changed)).unwrap();
        assert!(
            matches!(got, Comparison::Pixels { differing: 1, largest, .. } if (largest - 0.25).abs() < 1e-6),
            "{got:?}"
        );
    }
}
