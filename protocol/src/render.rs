//! What a task renders, as data the wire carries: the render [`Engine`], and the [`Tile`] of a
//! frame with its [`PixelRect`]. `rendermesh-scene` turns them into what Blender is told.

use serde::{Deserialize, Serialize};

/// A render engine Blender runs headless.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Engine {
    /// Cycles, on the CPU: path traced, the same pixels on every node; tiles stitch exactly.
    #[default]
    Cycles,
    /// EEVEE (through surfaceless EGL when there is no display). Its screen-space effects
    /// look past a tile's edge, so it renders whole frames only.
    Eevee,
    /// Workbench. Its cavity and outline effects are screen-space too: whole frames only.
    Workbench,
}

impl Engine {
    /// Every engine, in order.
    pub const ALL: [Engine; 3] = [Engine::Cycles, Engine::Eevee, Engine::Workbench];

    /// Blender's name for it (`-E NAME`, `scene.render.engine`).
    pub fn blender_name(self) -> &'static str {
        match self {
            Self::Cycles => "CYCLES",
            Self::Eevee => "BLENDER_EEVEE",
            Self::Workbench => "BLENDER_WORKBENCH",
        }
    }

    /// The engine Blender calls `name`, if it is one of these.
    pub fn from_blender_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.blender_name() == name)
    }

    /// Whether tiles of a frame rendered apart stitch into exactly the whole frame.
    pub fn tiles_exactly(self) -> bool {
        self == Self::Cycles
    }

    /// `cycles`, `eevee`, `workbench`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cycles => "cycles",
            Self::Eevee => "eevee",
            Self::Workbench => "workbench",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `cycles`, `eevee` or `workbench` (any case), or Blender's own names.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|e| e.name() == lower || e.blender_name().eq_ignore_ascii_case(&lower))
            .ok_or_else(|| format!("unknown engine `{s}`: expected cycles, eevee or workbench"))
    }
}

/// One tile of a frame cut into a `cols` x `rows` grid: rendered alone with Blender's render
/// border and crop, then stitched with the others.
///
/// Tile edges are whole pixels: with the frame `W` x `H` pixels after the resolution
/// percentage, column `c` spans `c * W / cols .. (c + 1) * W / cols` (integer division), and row
/// `r` (counted from the top) spans `r * H / rows .. (r + 1) * H / rows`. rendermesh's settings script applies
/// the same formula inside Blender, where `W` and `H` are known.
///
/// ```
/// use rendermesh_protocol::{PixelRect, Tile};
///
/// let tiles: Vec<Tile> = Tile::grid(2, 2).collect();
/// assert_eq!(tiles.len(), 4);
/// assert_eq!(tiles[3].rect(5, 3), PixelRect { x0: 2, y0: 1, x1: 5, y1: 3 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tile {
    /// Column, from the left, `0..cols`.
    pub col: u32,
    /// Row, from the top, `0..rows`.
    pub row: u32,
    /// Columns in the grid.
    pub cols: u32,
    /// Rows in the grid.
    pub rows: u32,
}

/// A rectangle of whole pixels, origin at the top left, ends exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PixelRect {
    /// First column.
    pub x0: u32,
    /// First row.
    pub y0: u32,
    /// One past the last column.
    pub x1: u32,
    /// One past the last row.
    pub y1: u32,
}

impl PixelRect {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
}

impl Tile {
    /// Every tile of a `cols` x `rows` grid, row by row from the top left.
    pub fn grid(cols: u32, rows: u32) -> impl Iterator<Item = Tile> {
        (0..rows).flat_map(move |row| {
            (0..cols).map(move |col| Tile {
                col,
                row,
                cols,
                rows,
            })
        })
    }

    /// The pixels this tile covers in a `width` x `height` frame. Empty when the grid has more
    /// columns than the frame has pixels (Blender refuses such a tile).
    pub fn rect(&self, width: u32, height: u32) -> PixelRect {
        let edge = |i: u32, n: u32, size: u32| {
            (u64::from(i) * u64::from(size) / u64::from(n.max(1))) as u32
        };
        PixelRect {
            x0: edge(self.col, self.cols, width),
            y0: edge(self.row, self.rows, height),
            x1: edge(self.col + 1, self.cols, width),
            y1: edge(self.row + 1, self.rows, height),
        }
    }
}

impl std::fmt::Display for Tile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tile {},{} of {}x{}",
            self.col, self.row, self.cols, self.rows
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_read_as_people_and_blender_name_them() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>(), Ok(engine));
            assert_eq!(engine.blender_name().parse::<Engine>(), Ok(engine));
            assert_eq!(
                Engine::from_blender_name(engine.blender_name()),
                Some(engine)
            );
        }
        assert_eq!("EEVEE".parse::<Engine>(), Ok(Engine::Eevee));
        assert!("luxcore".parse::<Engine>().unwrap_err().contains("luxcore"));
        assert_eq!(Engine::from_blender_name("LUXCORE"), None);
        assert!(Engine::Cycles.tiles_exactly() && !Engine::Eevee.tiles_exactly());
    }

    #[test]
    fn tiles_cover_every_pixel_exactly_once() {
        for (width, height) in [(1, 1), (120, 67), (7, 5), (1920, 1080)] {
            for (cols, rows) in [(1, 1), (4, 4), (3, 2), (7, 5)] {
                if cols > width || rows > height {
                    continue;
                }
                let mut covered = vec![0u8; (width * height) as usize];
                for tile in Tile::grid(cols, rows) {
                    let r = tile.rect(width, height);
                    assert!(
                        r.width() >= 1 && r.height() >= 1,
                        "{tile} of {width}x{height}"
                    );
                    for y in r.y0..r.y1 {
                        for x in r.x0..r.x1 {
                            covered[(y * width + x) as usize] += 1;
                        }
                    }
                }
                assert!(
                    covered.iter().all(|&n| n == 1),
                    "{cols}x{rows} of {width}x{height}"
                );
            }
        }
    }
}
