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
//! let settings = RenderSettings { samples: Some(8), resolution_percent: None };
//! assert_eq!(settings.script_args(), ["--samples", "8"]);
//! ```

pub mod chart;

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
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_args_name_only_what_is_overridden() {
        assert!(RenderSettings::default().script_args().is_empty());
        let both = RenderSettings {
            samples: Some(2),
            resolution_percent: Some(10),
        };
        assert_eq!(
            both.script_args(),
            ["--samples", "2", "--resolution-percent", "10"]
        );
        let percent = RenderSettings {
            samples: None,
            resolution_percent: Some(25),
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
