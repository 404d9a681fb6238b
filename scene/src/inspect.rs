//! What Blender says about a `.blend` before it is submitted: its scene's engine, frame range
//! and output format, every external file it uses, and its unbaked simulations.
//!
//! [`INSPECT_PY`] runs in the submitting machine's Blender (`blender -b --factory-startup -Y
//! FILE -P inspect.py -- OUT.json`: the file's own Python never runs) and writes an
//! [`Inspection`] as JSON; [`Inspection::from_json`] reads it back, bounded and checked.
//! `rendermesh-node`'s `render` module runs it.

use serde::{Deserialize, Serialize};

/// The inspection script: writes an [`Inspection`] of the opened `.blend` as JSON to the path
/// given after `--`. Never saves or changes the file.
pub const INSPECT_PY: &str = include_str!("scripts/inspect.py");

/// Largest inspection report read (a file with thousands of textures stays far below it).
pub const MAX_REPORT: usize = 64 << 20;

/// What is wrong with an inspection report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The report is larger than [`MAX_REPORT`].
    #[error("the inspection report is {size} bytes; at most {MAX_REPORT} are read")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The report is not the JSON the script writes.
    #[error("the inspection report does not read: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// A `.blend` as its own Blender sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    /// The file's absolute, normalised path, as Blender resolves the file's relative paths
    /// against it.
    pub blend: String,
    /// The scene `blender -b` renders (the file's active scene).
    pub scene: String,
    /// The scene's render engine, as Blender names it (`CYCLES`, `BLENDER_EEVEE`,
    /// `BLENDER_WORKBENCH`).
    pub engine: String,
    /// The scene's first frame.
    pub frame_start: i64,
    /// The scene's last frame.
    pub frame_end: i64,
    /// The scene's frame step.
    pub frame_step: i64,
    /// The scene's output format.
    pub output: OutputSettings,
    /// Every external file a render may read, sorted by path, each once.
    pub files: Vec<ExternalFile>,
    /// Simulations whose results depend on rendering every frame in order, in one process.
    pub unbaked: Vec<Simulation>,
}

/// The output format a scene sets (Blender's `scene.render.image_settings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSettings {
    /// `PNG`, `OPEN_EXR`, `JPEG`, ...
    pub file_format: String,
    /// `8`, `16`, `32`.
    pub color_depth: String,
    /// `BW`, `RGB`, `RGBA`.
    pub color_mode: String,
    /// The EXR codec (`ZIP`, `PIZ`, ...).
    pub exr_codec: String,
    /// The extension Blender gives the files, with its dot (`.png`).
    pub extension: String,
}

/// One external file of a `.blend`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalFile {
    /// Resolved as Blender resolves it (relative to the file that names it), absolute and
    /// normalised.
    pub path: String,
    /// The path as the datablock holds it (`//tex/a.png`).
    pub named: String,
    /// What it is: `image`, `image sequence`, `udim tile`, `movie`, `library`, `font`,
    /// `sound`, `text`, `volume`, `cache`, `movie clip`, `point cache`, `fluid cache`, `other`.
    pub kind: String,
    /// The datablock that uses it (`a.png`, or `Object / Modifier` for a cache).
    pub user: String,
    /// The library whose datablock names it; `None`: the `.blend` itself.
    pub library: Option<String>,
    /// Whether the file exists.
    pub exists: bool,
}

/// A simulation that is not baked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    /// `rigid body`, `cloth`, `soft body`, `particles`, `dynamic paint`, `fluid`, ...
    pub kind: String,
    /// The object (or rigid body world) it belongs to.
    pub name: String,
}

impl Inspection {
    /// Reads the script's report.
    pub fn from_json(text: &str) -> Result<Self, InspectError> {
        if text.len() > MAX_REPORT {
            return Err(InspectError::TooLarge { size: text.len() });
        }
        Ok(serde_json::from_str(text)?)
    }

    /// The external files that do not exist.
    pub fn missing(&self) -> impl Iterator<Item = &ExternalFile> {
        self.files.iter().filter(|f| !f.exists)
    }
}

impl ExternalFile {
    /// `//tex/gone.png (image "gone.png")`, or with the library: what a person needs to find
    /// the datablock that uses the file.
    pub fn describe(&self) -> String {
        let mut text = format!("{} ({} \"{}\"", self.path, self.kind, self.user);
        if self.named != self.path {
            text.push_str(&format!(", named \"{}\"", self.named));
        }
        if let Some(library) = &self.library {
            text.push_str(&format!(", in library {library}"));
        }
        text.push(')');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
        "blend": "/p/proj/main.blend", "scene": "Scene", "engine": "CYCLES",
        "frame_start": 1, "frame_end": 3, "frame_step": 1,
        "output": {"file_format": "PNG", "color_depth": "8", "color_mode": "RGBA",
                   "exr_codec": "ZIP", "extension": ".png"},
        "files": [
          {"path": "/p/proj/lib/tex/l.png", "named": "//tex/l.png", "kind": "image",
           "user": "l.png", "library": "/p/proj/lib/lib.blend", "exists": true},
          {"path": "/p/proj/tex/gone.png", "named": "//tex/gone.png", "kind": "image",
           "user": "gone.png", "library": null, "exists": false}
        ],
        "unbaked": [{"kind": "rigid body", "name": "RigidBodyWorld"}]
    }"#;

    #[test]
    fn a_report_reads_and_names_what_is_missing() {
        let report = Inspection::from_json(REPORT).unwrap();
        assert_eq!(report.files.len(), 2);
        let missing: Vec<String> = report.missing().map(ExternalFile::describe).collect();
        assert_eq!(
            missing,
            [r#"/p/proj/tex/gone.png (image "gone.png", named "//tex/gone.png")"#]
        );
        assert_eq!(
            report.files[0].describe(),
            r#"/p/proj/lib/tex/l.png (image "l.png", named "//tex/l.png", in library /p/proj/lib/lib.blend)"#
        );
        assert_eq!(report.unbaked[0].kind, "rigid body");
    }

    #[test]
    fn bad_reports_are_refused() {
        assert!(matches!(
            Inspection::from_json("{\"blend\": 3}"),
            Err(InspectError::Malformed(_))
        ));
        let huge = " ".repeat(MAX_REPORT + 1);
        assert!(matches!(
            Inspection::from_json(&huge),
            Err(InspectError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_script_writes_what_the_report_reads() {
        for needle in [
            "\"blend\"",
            "\"files\"",
            "\"unbaked\"",
            "blend_paths",
            "\"frame_step\"",
            "rendermesh: error:",
        ] {
            assert!(INSPECT_PY.contains(needle), "inspect.py lacks {needle}");
        }
    }
}
