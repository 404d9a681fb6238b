//! What rendermesh tells Blender, as data: the Blender-side Python scripts and the render
//! settings a job overrides. Pure: no I/O, no processes; `rendermesh-node`'s `render` module is
//! the only code that starts Blender and feeds it these scripts.
//!
//! The scripts live as real `.py` files under `src/scripts/` (so they can be read, linted and run
//! by hand) and are embedded here as text:
//!
//! - [`SETTINGS_PY`] runs inside every render (`-P settings.py ... -- ARGS`, ARGS from
//!   [`RenderSettings::script_args`]): Cycles on the CPU, denoising off, the job's samples and
//!   resolution, and a fast, readable failure for a scene with no camera.
//! - [`EXAMPLE_SCENE_PY`] builds a small 24-frame example animation (`-- OUT.blend`).
//! - [`NO_CAMERA_SCENE_PY`] builds the same scene without its camera: a test fixture.
//!
//! ```
//! use rendermesh_scene::RenderSettings;
//!
//! let settings = RenderSettings { samples: Some(8), ..RenderSettings::default() };
//! assert_eq!(settings.script_args(), ["--samples", "8"]);
//! ```

pub mod chart;
pub mod inspect;

pub use inspect::{INSPECT_PY, Inspection};

use serde::{Deserialize, Serialize};

/// The settings script, run with `-P` after the `.blend` is loaded and before `-a` renders.
///
/// Reads its arguments after `--` (see [`RenderSettings::script_args`]), forces Cycles on the
/// CPU, turns denoising off (Debian's Blender has no OpenImageDenoise and fails a render that
/// asks for it), forces `use_overwrite` on and `use_placeholder` off so that every expected file
/// is freshly written, and applies the samples and resolution percentage when given. A scene
/// with no camera ends Blender at once with status 2 and the line
/// `rendermesh: error: scene "NAME" has no camera`.
pub const SETTINGS_PY: &str = include_str!("scripts/settings.py");

/// Bakes every unbaked simulation of the opened `.blend` into a copy (`-- OUT.blend
/// CACHE_DIR`), leaving the file itself as it is; prints `rendermesh: baking KIND "NAME" (frames
/// A-B)` before each and `rendermesh: baked N simulations` at the end.
pub const BAKE_PY: &str = include_str!("scripts/bake.py");

/// Finds out whether this Blender renders with an OpenGL context headless (Workbench, and so
/// EEVEE): prints `rendermesh: engine BLENDER_WORKBENCH ok` when it does.
pub const ENGINES_PY: &str = include_str!("scripts/engines.py");

/// Builds the example animation and saves it to the path given after `--`.
///
/// `blender -b --factory-startup -Y -P example_scene.py -- OUT.blend`: frames 1–24 of a red cube
/// turning and a blue sphere rolling past on a floor, a sun, a sky and a camera; Cycles on the
/// CPU, 480x270 at 100%, 16 samples, denoising off. Every frame differs from the others.
pub const EXAMPLE_SCENE_PY: &str = include_str!("scripts/example_scene.py");

/// Builds the example scene, removes its camera and saves it to the path given after `--`: a
/// fixture for the "scene with no camera" failure.
///
/// `no_camera_scene.py` is appended to [`EXAMPLE_SCENE_PY`], so one Blender run does both.
pub const NO_CAMERA_SCENE_PY: &str = concat!(
    include_str!("scripts/example_scene.py"),
    "\n",
    include_str!("scripts/no_camera_scene.py"),
);

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

/// The render settings a job may override; `None` keeps the `.blend` file's own value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RenderSettings {
    /// Cycles samples per pixel.
    pub samples: Option<u32>,
    /// Render resolution percentage, 1..=100 (the job spec validates the range).
    pub resolution_percent: Option<u32>,
    /// Render only this tile, cropped (implies `exact`).
    pub tile: Option<Tile>,
    /// Turn off what makes a pixel depend on its neighbours or on where the render region
    /// starts, so that tiles stitch into exactly the whole frame: compositing, the sequencer,
    /// dither and adaptive sampling. Set for every tile, and for a whole-frame render that must
    /// equal a tiled one.
    pub exact: bool,
    /// Render even when a file the `.blend` uses is missing (the user said so at submit). By
    /// default the settings script refuses, naming every missing file: a missing texture
    /// renders magenta, and a frame that looks done but is wrong must never be delivered.
    pub allow_missing: bool,
    /// The engine to render with (`-E`, and the settings script's `--engine`).
    pub engine: Engine,
    /// Write frames in the file's own output format with its own options (colour depth,
    /// codec, quality): Blender is given no `-F`. Tiles are always written lossless.
    pub keep_file_format: bool,
}

impl RenderSettings {
    /// The arguments [`SETTINGS_PY`] reads after Blender's `--`, e.g.
    /// `["--samples", "8", "--resolution-percent", "50"]`; empty when nothing is overridden.
    pub fn script_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(samples) = self.samples {
            args.extend(["--samples".to_owned(), samples.to_string()]);
        }
        if let Some(percent) = self.resolution_percent {
            args.extend(["--resolution-percent".to_owned(), percent.to_string()]);
        }
        if let Some(tile) = self.tile {
            args.extend(tile.script_args());
        } else if self.exact {
            args.push("--exact".to_owned());
        }
        if self.allow_missing {
            args.push("--allow-missing".to_owned());
        }
        if self.engine != Engine::Cycles {
            args.extend(["--engine".to_owned(), self.engine.blender_name().to_owned()]);
        }
        args
    }
}

/// One tile of a frame cut into a `cols` x `rows` grid: rendered alone with Blender's render
/// border and crop, then stitched with the others.
///
/// Tile edges are whole pixels: with the frame `W` x `H` pixels after the resolution
/// percentage, column `c` spans `c * W / cols .. (c + 1) * W / cols` (integer division), and row
/// `r` (counted from the top) spans `r * H / rows .. (r + 1) * H / rows`. [`SETTINGS_PY`] applies
/// the same formula inside Blender, where `W` and `H` are known.
///
/// ```
/// use rendermesh_scene::{PixelRect, Tile};
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

    /// The arguments [`SETTINGS_PY`] reads for this tile: `--tile COL ROW COLS ROWS`.
    pub fn script_args(&self) -> [String; 5] {
        [
            "--tile".to_owned(),
            self.col.to_string(),
            self.row.to_string(),
            self.cols.to_string(),
            self.rows.to_string(),
        ]
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
        let eevee = RenderSettings {
            engine: Engine::Eevee,
            ..RenderSettings::default()
        };
        assert_eq!(eevee.script_args(), ["--engine", "BLENDER_EEVEE"]);
    }

    #[test]
    fn script_args_name_only_what_is_overridden() {
        assert!(RenderSettings::default().script_args().is_empty());
        let both = RenderSettings {
            samples: Some(2),
            resolution_percent: Some(10),
            ..RenderSettings::default()
        };
        assert_eq!(
            both.script_args(),
            ["--samples", "2", "--resolution-percent", "10"]
        );
        let percent = RenderSettings {
            resolution_percent: Some(25),
            ..RenderSettings::default()
        };
        assert_eq!(percent.script_args(), ["--resolution-percent", "25"]);
    }

    #[test]
    fn settings_script_sets_what_a_render_depends_on() {
        for needle in [
            "--samples",
            "--resolution-percent",
            "sys.argv",
            "\"CYCLES\"",
            "cycles.device = \"CPU\"",
            "scene.cycles.use_denoising = False",
            "view_layer.cycles.use_denoising = False",
            "use_preview_denoising = False",
            "use_overwrite = True",
            "use_placeholder = False",
            "resolution_percentage",
            "rendermesh: error:",
            "has no camera",
            "sys.exit(2)",
        ] {
            assert!(SETTINGS_PY.contains(needle), "settings.py lacks {needle}");
        }
    }

    /// The block both scripts need to list a file's external files the same way.
    fn shared_block(script: &str) -> &str {
        let begin = script.find("# ---- BEGIN SHARED").expect("a shared block");
        let end = script.find("# ---- END SHARED ----").expect("its end");
        &script[begin..end]
    }

    #[test]
    fn the_inspection_and_the_worker_list_external_files_with_the_same_code() {
        let shared = shared_block(SETTINGS_PY);
        assert_eq!(shared, shared_block(INSPECT_PY));
        for needle in ["blend_paths", "libraries", "fonts", "point", "fluid"] {
            assert!(shared.contains(needle), "the shared block lacks {needle}");
        }
        for needle in [
            "--root",
            "--allow-missing",
            "missing file",
            "re-rooted under",
        ] {
            assert!(SETTINGS_PY.contains(needle), "settings.py lacks {needle}");
        }
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

    #[test]
    fn a_tile_tells_the_settings_script_which_one_it_is() {
        let tile = Tile {
            col: 1,
            row: 2,
            cols: 4,
            rows: 3,
        };
        let settings = RenderSettings {
            tile: Some(tile),
            exact: true,
            ..RenderSettings::default()
        };
        assert_eq!(settings.script_args(), ["--tile", "1", "2", "4", "3"]);
        let exact = RenderSettings {
            exact: true,
            ..RenderSettings::default()
        };
        assert_eq!(exact.script_args(), ["--exact"]);
        for needle in [
            "--tile",
            "--exact",
            "use_crop_to_border",
            "dither_intensity = 0",
            "use_compositing = False",
            "use_sequencer = False",
            "use_adaptive_sampling = False",
            "+ 0.5",
        ] {
            assert!(SETTINGS_PY.contains(needle), "settings.py lacks {needle}");
        }
    }

    #[test]
    fn scene_scripts_build_a_camera_and_save() {
        for (name, script) in [
            ("example_scene.py", EXAMPLE_SCENE_PY),
            ("no_camera_scene.py", NO_CAMERA_SCENE_PY),
        ] {
            for needle in [
                "save_as_mainfile",
                "use_denoising = False",
                "samples = 16",
                "480, 270, 100",
                "keyframe_insert",
                "sys.argv",
            ] {
                assert!(script.contains(needle), "{name} lacks {needle}");
            }
        }
        assert!(!EXAMPLE_SCENE_PY.contains("scene.camera = None"));
        assert!(NO_CAMERA_SCENE_PY.starts_with(EXAMPLE_SCENE_PY));
        assert!(NO_CAMERA_SCENE_PY.contains("scene.camera = None"));
    }
}
