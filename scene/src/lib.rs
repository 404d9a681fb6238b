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

pub use rendermesh_protocol::{Engine, PixelRect, Tile};

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
            args.push("--tile".to_owned());
            args.extend([tile.col, tile.row, tile.cols, tile.rows].map(|n| n.to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_engine_is_named_to_the_settings_script() {
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
