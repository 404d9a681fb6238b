//! The typed chart model: what [`parse`](super::parse) produces and [`write`](super::write)
//! prints. Every optional CONFIG key is resolved to its default here, so the renderer never has
//! to know which keys a file spelt out.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Ambient light when `background-strength` is not given.
pub const DEFAULT_BACKGROUND_STRENGTH: f64 = 1.0;
/// Bar width (along X and Z) when `bar-width` is not given.
pub const DEFAULT_BAR_WIDTH: f64 = 1.0;
/// Gaps between bars when `bar-separation` is not given.
pub const DEFAULT_BAR_SEPARATION: BarSeparation = BarSeparation { x: 0.5, z: 0.5 };
/// Minimum bar height when `minimum-bar-height` is not given: no minimum.
pub const DEFAULT_MINIMUM_BAR_HEIGHT: f64 = 0.0;
/// Cake thickness when `cake-height` is not given.
pub const DEFAULT_CAKE_HEIGHT: f64 = 1.0;
/// Colour of every text when `text-color` is not given: near black.
pub const DEFAULT_TEXT_COLOR: Color = Color {
    r: 0.05,
    g: 0.05,
    b: 0.05,
};
/// A surface's colours by height when `surface-colors` is not given: viridis (dark violet,
/// blue, teal, green, yellow), perceptually even and readable with colour blindness; written
/// as linear values so that the image shows viridis's own colours.
pub const DEFAULT_SURFACE_COLORS: [Color; 5] = [
    Color {
        r: 0.058,
        g: 0.0,
        b: 0.088,
    },
    Color {
        r: 0.043,
        g: 0.085,
        b: 0.259,
    },
    Color {
        r: 0.015,
        g: 0.281,
        b: 0.264,
    },
    Color {
        r: 0.112,
        g: 0.585,
        b: 0.121,
    },
    Color {
        r: 0.984,
        g: 0.799,
        b: 0.018,
    },
];
/// The most colours `surface-colors` takes.
pub const MAX_SURFACE_COLORS: usize = 16;
/// The longest text (a title or a label), in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// A whole chart file: its settings, its named colours and materials, and its data rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// The CONFIG section, with every default filled in.
    pub config: Config,
    /// The VARS section (empty when the file has none), in file order.
    pub vars: Vars,
    /// The DATA section, one entry per row, in file order.
    pub rows: Vec<Row>,
}

/// The CONFIG section.
///
/// Keys that belong to the other graph type (`bar-*` for a cake, `cake-height` for a histogram)
/// are rejected by the parser, so their fields here always hold their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Output image size in pixels (`image-size; W; H`).
    pub image_size: ImageSize,
    /// Output file format (`image-type`).
    pub image_type: ImageType,
    /// Which chart to build (`graph-type`).
    pub graph_type: GraphType,
    /// Material of every value no range overrides (`default-material`).
    pub default_material: Material,
    /// Colour of every value no range overrides (`default-color`).
    pub default_color: Color,
    /// Colour of the floor the chart stands on (`floor-color`).
    pub floor_color: Color,
    /// Projection of the camera (`camera-type`, default perspective).
    pub camera_type: CameraType,
    /// Moves the camera from the renderer's default place (`camera-transform`, default none).
    pub camera_transform: Transform,
    /// Strength of the ambient (world) light (`background-strength`).
    pub background_strength: f64,
    /// Histogram only: width of a bar along X and Z (`bar-width`).
    pub bar_width: f64,
    /// Histogram only: gaps between bars (`bar-separation; X, Z`).
    pub bar_separation: BarSeparation,
    /// Histogram only: the lowest bar drawn (`minimum-bar-height`).
    pub minimum_bar_height: f64,
    /// Cake only: thickness of the cake (`cake-height`).
    pub cake_height: f64,
    /// A title above the chart (`title`, default none).
    pub title: Option<String>,
    /// Histogram and surface: names of the columns, along X (`x-labels`, default none); there may be
    /// fewer than columns.
    pub x_labels: Vec<String>,
    /// Histogram and surface: names of the rows, along Z (`z-labels`, default none).
    pub z_labels: Vec<String>,
    /// Cake only: names of the slices, in the order of a row's values (`labels`, default none).
    pub labels: Vec<String>,
    /// The value above each bar, or each slice's share on it (`value-labels`, default off).
    pub value_labels: bool,
    /// Histogram and surface: a value axis with round ticks and faint grid lines on the back walls
    /// (`axis`, default off).
    pub axis: bool,
    /// One entry per variable used in DATA, with its colour or material (`legend`, default
    /// off).
    pub legend: bool,
    /// Colour of every text (`text-color`, default [`DEFAULT_TEXT_COLOR`]).
    pub text_color: Color,
    /// Surface only: the colours from the lowest value to the highest, evenly spaced
    /// (`surface-colors`, default [`DEFAULT_SURFACE_COLORS`]); at least two.
    pub surface_colors: Vec<Color>,
}

impl Config {
    /// A configuration with the required keys given and every optional key at its default.
    pub fn new(
        image_size: ImageSize,
        image_type: ImageType,
        graph_type: GraphType,
        default_material: Material,
        default_color: Color,
        floor_color: Color,
    ) -> Self {
        Self {
            image_size,
            image_type,
            graph_type,
            default_material,
            default_color,
            floor_color,
            camera_type: CameraType::Perspective,
            camera_transform: Transform::default(),
            background_strength: DEFAULT_BACKGROUND_STRENGTH,
            bar_width: DEFAULT_BAR_WIDTH,
            bar_separation: DEFAULT_BAR_SEPARATION,
            minimum_bar_height: DEFAULT_MINIMUM_BAR_HEIGHT,
            cake_height: DEFAULT_CAKE_HEIGHT,
            title: None,
            x_labels: Vec::new(),
            z_labels: Vec::new(),
            labels: Vec::new(),
            value_labels: false,
            axis: false,
            legend: false,
            text_color: DEFAULT_TEXT_COLOR,
            surface_colors: DEFAULT_SURFACE_COLORS.to_vec(),
        }
    }
}

/// Image size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    /// Width in pixels, at least 1.
    pub width: u32,
    /// Height in pixels, at least 1.
    pub height: u32,
}

/// Gaps between neighbouring bars.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarSeparation {
    /// Gap between the bars of one row (along X).
    pub x: f64,
    /// Gap between rows (along Z).
    pub z: f64,
}

/// A setting whose value is one of a few words: [`Keyword::ALL`] lists the values and
/// [`Keyword::name`] spells each as a chart file does. The parser, the writer, the XML writer
/// and the command line all take the words from here.
pub trait Keyword: Copy + Sized + 'static {
    /// Every value, in the order the format lists them.
    const ALL: &'static [Self];

    /// The value's word in a chart file (lower case).
    fn name(self) -> &'static str;
}

/// Implements [`Keyword`] for an enum from its variants and their words.
macro_rules! keywords {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl Keyword for $ty {
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }
    };
}

keywords!(ImageType { Png => "png", Jpg => "jpg", Bmp => "bmp" });
keywords!(GraphType { Histogram => "histogram", Cake => "cake", Surface => "surface" });
keywords!(CameraType { Perspective => "perspective", Orthographic => "orthographic" });
keywords!(Distribution { Beckmann => "beckmann", Sharp => "sharp" });
keywords!(MaterialKind { Diffuse => "diffuse", Glossy => "glossy", Glass => "glass" });
keywords!(Switch { On => "on", Off => "off" });

/// The value of `value-labels`, `axis` and `legend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Switch {
    /// `on`
    On,
    /// `off`
    Off,
}

/// The first argument of `material(...)`: which shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaterialKind {
    /// `diffuse`
    Diffuse,
    /// `glossy`
    Glossy,
    /// `glass`
    Glass,
}

/// Output file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageType {
    /// `png`
    Png,
    /// `jpg`
    Jpg,
    /// `bmp`
    Bmp,
}

/// Which chart the data draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GraphType {
    /// `histogram`: one bar per value, one line of bars per row.
    Histogram,
    /// `cake`: one slice per value.
    Cake,
    /// `surface`: one smooth surface through a grid of heights, coloured by height.
    Surface,
}

/// Camera projection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CameraType {
    /// `perspective` (the default).
    #[default]
    Perspective,
    /// `orthographic`
    Orthographic,
}

/// A colour, each channel in `0..=1`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Color {
    /// Red.
    pub r: f64,
    /// Green.
    pub g: f64,
    /// Blue.
    pub b: f64,
}

/// A surface, as Blender's shaders of the same names.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Material {
    /// `material(diffuse, ROUGHNESS)`
    Diffuse {
        /// In `0..=1`.
        roughness: f64,
    },
    /// `material(glossy, DIST, ROUGHNESS, IOR)`
    Glossy {
        /// Microfacet distribution.
        distribution: Distribution,
        /// In `0..=1`.
        roughness: f64,
        /// Index of refraction, above 0.
        ior: f64,
    },
    /// `material(glass, DIST, ROUGHNESS, IOR)`
    Glass {
        /// Microfacet distribution.
        distribution: Distribution,
        /// In `0..=1`.
        roughness: f64,
        /// Index of refraction, above 0.
        ior: f64,
    },
}

/// Microfacet distribution of a glossy or glass material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Distribution {
    /// `beckmann`
    Beckmann,
    /// `sharp`
    Sharp,
}

/// A chain of steps applied in order; empty means "leave the camera where the renderer puts it".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// The steps, first applied first.
    pub steps: Vec<Step>,
}

/// One step of a [`Transform`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// `translate(x, y, z)`
    Translate {
        /// Along X.
        x: f64,
        /// Along Y.
        y: f64,
        /// Along Z.
        z: f64,
    },
    /// `rotate(angle_degrees, ax, ay, az)`
    Rotate {
        /// In degrees, counter-clockwise around the axis.
        degrees: f64,
        /// The axis, not all zero.
        axis: [f64; 3],
    },
}

/// What a variable names.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum VarValue {
    /// A colour: a range of this variable overrides the values' colour.
    Color(Color),
    /// A material: a range of this variable overrides the values' material.
    Material(Material),
}

/// One VARS line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Var {
    /// The name, `$` included (`$blue`).
    pub name: String,
    /// What it stands for.
    pub value: VarValue,
}

/// The VARS section: names in file order, each once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vars {
    /// The variables, in file order; names are unique.
    pub entries: Vec<Var>,
}

impl Vars {
    /// The value of the variable `name` (`$` included).
    pub fn get(&self, name: &str) -> Option<&VarValue> {
        self.entries
            .iter()
            .find(|var| var.name == name)
            .map(|var| &var.value)
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One DATA line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The values, with the overrides their ranges resolve to.
    pub cells: Vec<Cell>,
    /// The ranges as written, in the order they were opened (an outer range before the ranges
    /// nested in it). Kept so that [`write`](super::write) reproduces them.
    pub ranges: Vec<Range>,
}

/// One value of a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The number; `None` for an empty cell (a gap in the chart).
    pub value: Option<f64>,
    /// The colour of the widest range over this value that sets one; `None`: the default.
    pub color: Option<Color>,
    /// The material of the widest range over this value that sets one; `None`: the default.
    pub material: Option<Material>,
}

/// A variable applied to the cells `start..end` of a row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The variable, `$` included.
    pub var: String,
    /// Index of the first cell covered.
    pub start: usize,
    /// Index one past the last cell covered (`start == end`: an empty range).
    pub end: usize,
}

impl Chart {
    /// Sets every cell's `color` and `material` from the rows' ranges and the variables: for each
    /// property, the widest range over the cell that sets it wins (of nested ranges, the outer
    /// one; of two ranges over the same cells, the one opened first). Unknown variables set
    /// nothing. Linear in cells plus ranges.
    pub fn resolve_overrides(&mut self) {
        let index: HashMap<&str, VarValue> = self
            .vars
            .entries
            .iter()
            .map(|var| (var.name.as_str(), var.value))
            .collect();
        for row in &mut self.rows {
            resolve_row(row, &index);
        }
    }
}

/// Open range on the resolution stack: where it ends and what it and its parents set.
struct Open {
    end: usize,
    color: Option<Color>,
    material: Option<Material>,
}

fn resolve_row(row: &mut Row, index: &HashMap<&str, VarValue>) {
    let mut stack: Vec<Open> = Vec::new();
    let mut next = 0;
    for (i, cell) in row.cells.iter_mut().enumerate() {
        while stack.last().is_some_and(|open| open.end <= i) {
            stack.pop();
        }
        while let Some(range) = row.ranges.get(next).filter(|range| range.start <= i) {
            next += 1;
            if range.end <= i {
                continue;
            }
            let (parent_color, parent_material) = stack
                .last()
                .map_or((None, None), |open| (open.color, open.material));
            let (color, material) = match index.get(range.var.as_str()) {
                Some(VarValue::Color(color)) => (Some(*color), None),
                Some(VarValue::Material(material)) => (None, Some(*material)),
                None => (None, None),
            };
            stack.push(Open {
                end: range.end,
                // The outer (wider) range wins, so a parent's setting shadows the child's.
                color: parent_color.or(color),
                material: parent_material.or(material),
            });
        }
        let top = stack.last();
        cell.color = top.and_then(|open| open.color);
        cell.material = top.and_then(|open| open.material);
    }
}
