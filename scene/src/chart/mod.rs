//! Chart data files: the reference for the format, its [`parse`]r into a typed [`Chart`], the
//! [`write()`]r back to text, the [`layout`] of a chart as a 3D scene ([`SceneDesc`]), that
//! scene as XML ([`to_xml`]) and the Blender-side [`BUILDER_PY`] that builds it. Pure: text in,
//! values out.
//!
//! ```
//! use rendermesh_scene::chart;
//!
//! let text = "CONFIG\nimage-size; 64; 48\nimage-type; png\ngraph-type; cake\n\
//!             default-material; material(diffuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
//!             floor-color; color(0.9, 0.9, 0.9)\nEND\nDATA\n1; 2; 3\nEND\n";
//! let chart = chart::parse(text).unwrap();
//! assert_eq!(chart.rows[0].cells.len(), 3);
//! assert_eq!(chart::parse(&chart::write(&chart)).unwrap(), chart);
//! ```
//!
//! # The format
//!
//! Text (UTF-8, a leading byte-order mark is skipped), read line by line. Blank lines and lines
//! whose first non-blank character is `#` are ignored everywhere; there are no comments at the
//! end of a line. Leading and trailing blanks of a line, and blanks around values, are ignored.
//!
//! ```text
//! file     = section+                       (CONFIG and DATA once each, VARS at most once,
//!                                            in any order)
//! section  = NAME NEWLINE line* END-LINE
//! NAME     = "CONFIG" | "VARS" | "DATA"     (any case, alone on its line)
//! END-LINE = "END" | "END_" NAME            (any case, e.g. `end_config`; the name must match)
//! ```
//!
//! Any other non-blank line outside a section is an error. A section name inside a section
//! reports the first one as unclosed.
//!
//! ## CONFIG
//!
//! One `key; value[; value]` per line, each key at most once; keys and keyword values are
//! matched in any case.
//!
//! | key | value | default |
//! |---|---|---|
//! | `image-size` | `W; H`, whole numbers ≥ 1 | required |
//! | `image-type` | `png`, `jpg` or `bmp` | required |
//! | `graph-type` | `histogram`, `cake` or `surface` | required |
//! | `default-material` | MATERIAL | required |
//! | `default-color` | COLOR | required |
//! | `floor-color` | COLOR | required |
//! | `camera-type` | `perspective` or `orthographic` | `perspective` |
//! | `camera-transform` | TRANSFORM | none: the renderer's own camera placement |
//! | `background-strength` | number ≥ 0 (ambient light) | `1` |
//! | `bar-width` (histogram only) | number > 0 | `1` |
//! | `bar-separation` (histogram only) | `X, Z` (or `X; Z`), numbers ≥ 0: gaps along X and Z | `0.5, 0.5` |
//! | `minimum-bar-height` (histogram only) | number ≥ 0 | `0` |
//! | `cake-height` (cake only) | number > 0 | `1` |
//! | `title` | TEXT | none |
//! | `x-labels` (histogram, surface) | TEXT; TEXT; …: the columns' names, along X, at most one per column | none |
//! | `z-labels` (histogram, surface) | TEXT; TEXT; …: the rows' names, along Z, at most one per row | none |
//! | `labels` (cake only) | TEXT; TEXT; …: the slices' names, in the order of a row's values | none |
//! | `value-labels` | `on` or `off`: the value above each bar, or each slice's share on it | `off` |
//! | `axis` (histogram, surface) | `on` or `off`: a value axis with round ticks and faint grid lines on the back walls | `off` |
//! | `legend` | `on` or `off`: one entry per variable used in DATA | `off` |
//! | `text-color` | COLOR | `color(0.05, 0.05, 0.05)` |
//! | `surface-colors` (surface only) | COLOR; COLOR[; …]: 2 to 16 colours from the lowest value to the highest, evenly spaced | viridis ([`DEFAULT_SURFACE_COLORS`]) |
//!
//! A key of the other graph type is an error. The text keys (`title` to `text-color`) are drawn as 3D
//! text ([`labels`](self) lays them out; `docs/CHART-FORMAT.md` says where each goes); their
//! defaults draw nothing, so every file from before them renders as it did.
//!
//! TEXT is what stands between two `;` (blanks around it dropped), or, when it holds a `;` or
//! starts with `"`, a quoted text: `"` … `"`, in which `""` stands for one `"` (`title; "Sales;
//! by ""shop"""` is `Sales; by "shop"`). An empty field (`x-labels; Q1; ; Q3`) or `""` is an empty
//! label. A text holds at most 200 characters, none a control character (tabs included) and
//! each one the chart font draws ([`font`]: Latin, Greek, Cyrillic and common signs); a
//! character it lacks is an error pointing at it. Fewer labels than columns (or rows, or values) leave the rest unnamed;
//! more are an error, reported at the key. A `title` holding an unquoted `;` is an error whose
//! help shows it quoted. Values:
//!
//! ```text
//! COLOR     = "color(" r "," g "," b ")"          each channel a number in 0..1 (inclusive)
//! MATERIAL  = "material(diffuse," ROUGHNESS ")"
//!           | "material(glossy," DIST "," ROUGHNESS "," IOR ")"
//!           | "material(glass," DIST "," ROUGHNESS "," IOR ")"
//! DIST      = "beckmann" | "sharp"                 (any case)
//! ROUGHNESS = number in 0..1;  IOR = number > 0
//! TRANSFORM = STEP ("." STEP)*                     applied in order
//! STEP      = "translate(" x "," y "," z ")" | "rotate(" degrees "," ax "," ay "," az ")"
//!                                                  (the axis must not be 0, 0, 0)
//! number    = optional sign, digits with an optional `.` and exponent (`-1.5`, `.5`, `2e3`);
//!             `inf` and `nan` are not numbers
//! ```
//!
//! ## VARS (optional)
//!
//! One `$name; COLOR` or `$name; MATERIAL` per line. The `$` is part of the name; after it come
//! a letter or `_`, then letters, digits or `_`. Names are case-sensitive and defined once.
//!
//! ## DATA
//!
//! Each line is a row of values separated by `;`; there must be at least one row and each row
//! holds at least one value.
//!
//! - **Numbers**: zero and negative values are ordinary values; how they are drawn is the
//!   renderer's decision.
//! - **Missing values**: an empty cell (`1;;3`, `1; ; 3`) is a missing value, [`Cell::value`]
//!   `None`, drawn as a gap. A trailing `;` ends the row without adding a value (`1; 2;` is two
//!   values), so a row whose last value is missing ends with `;;` (`1; ;` is `1` then a gap).
//! - **Ranges**: `$name$` opens a range of the variable `$name`; the next `$` that does not
//!   start a `$name$` closes the innermost open range. Blanks around either are optional:
//!   `10; $blue$ 20 $; 30`, `1; $blue$5; 6; 7$; 8`, `$red$ 1; 2; 3 $`. A marker before a cell's
//!   number (or anywhere in an empty cell) sits before that cell; a marker after the number sits
//!   after it. Ranges nest, may be empty, and must close on their own line.
//! - **Overrides**: each cell's colour and material come from the ranges over it: for each of the
//!   two properties, the widest range that sets it wins (of nested ranges the outer one; of
//!   ranges over the same cells, the one opened first). A property no range sets keeps
//!   `None` in [`Cell`], meaning `default-color` / `default-material`.
//!
//! ## Limits
//!
//! At most [`MAX_TEXT_BYTES`] (16 MiB) of text and [`MAX_VALUES`] (1 000 000) values, empty
//! cells included; beyond either, a diagnostic names the limit. At most [`MAX_DIAGNOSTICS`]
//! problems are listed, then one more says how many were left out.
//!
//! ## Errors
//!
//! [`parse`] reads the whole file and returns every problem as a [`Diagnostic`] (line and
//! column, both 1-based, columns in characters; the text found; what was expected; a suggestion
//! for likely typos: a misspelt name within two edits, `:` or `,` used for `;`, `1O` for `10`).
//! `Display` of [`Errors`] prints one per line:
//! `line 7, column 12: expected a number, found "1O"; did you mean 10?`.
//!
//! ## Examples
//!
//! A histogram:
//!
//! ```text
//! CONFIG
//! image-size; 800; 600
//! image-type; png
//! graph-type; histogram
//! default-material; material(diffuse, 0.5)
//! default-color; color(0.2, 0.4, 0.8)
//! floor-color; color(0.9, 0.9, 0.9)
//! camera-transform; translate(0, 4, -2).rotate(20, 0, 1, 0)
//! bar-width; 0.8
//! bar-separation; 0.2, 0.4
//! END
//! VARS
//! $red; color(1, 0, 0)
//! $glass; material(glass, sharp, 0, 1.45)
//! END_VARS
//! DATA
//! 10; $red$ 20 $; 30
//! $glass$ 1; ; -3 $
//! END
//! ```
//!
//! A cake:
//!
//! ```text
//! config
//! image-size; 640; 640
//! image-type; jpg
//! graph-type; cake
//! default-material; material(glossy, beckmann, 0.2, 1.5)
//! default-color; color(0.8, 0.8, 0.1)
//! floor-color; color(1, 1, 1)
//! cake-height; 0.5
//! end
//! data
//! 40; 35; 25
//! end
//! ```

pub mod annotate;
mod error;
pub mod font;
mod labels;
mod model;
mod parse;
pub mod scene;
mod surface;
mod write;
pub mod xml;

#[cfg(test)]
mod tests;

pub use error::{Diagnostic, Errors};
pub use model::{
    BarSeparation, CameraType, Cell, Chart, Color, Config, DEFAULT_BACKGROUND_STRENGTH,
    DEFAULT_BAR_SEPARATION, DEFAULT_BAR_WIDTH, DEFAULT_CAKE_HEIGHT, DEFAULT_MINIMUM_BAR_HEIGHT,
    DEFAULT_SURFACE_COLORS, DEFAULT_TEXT_COLOR, Distribution, GraphType, ImageSize, ImageType,
    Keyword, MAX_SURFACE_COLORS, MAX_TEXT_CHARS, Material, MaterialKind, Range, Row, Step, Switch,
    Transform, Var, VarValue, Vars,
};
pub use parse::{MAX_DIAGNOSTICS, MAX_TEXT_BYTES, MAX_VALUES, parse};
pub use scene::{SceneDesc, layout};
pub use write::write;
pub use xml::to_xml;

/// The builder script: reads the scene XML ([`to_xml`]) inside Blender, builds the scene and
/// saves and/or renders it:
///
/// `blender -b --factory-startup -Y --python-exit-code 2 -P build_chart.py -- SCENE.xml
/// [--save OUT.blend] [--render OUT.png] [--samples N]`
///
/// The scene it saves renders with denoising, compositing, the sequencer, dither and adaptive
/// sampling off, so that a tiled render equals the whole-frame one.
pub const BUILDER_PY: &str = include_str!("../scripts/build_chart.py");
