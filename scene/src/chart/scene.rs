//! From a [`Chart`] to a [`SceneDesc`]: the objects, meshes, shaders, lights and camera that
//! draw it, in Blender's axes. Pure and deterministic: the same chart always gives the same
//! scene, hence the same pixels.
//!
//! # Axes
//!
//! Charts are described Y-up: a histogram's columns run along X, its rows along Z, its bars rise
//! along Y (as in the wording and `camera-transform` examples). Blender is Z-up. The
//! layout maps chart `(x, y, z)` to Blender `(x, -z, y)`, a proper rotation, so row 0 is the
//! row farthest from the default camera and later rows come forward. Camera-transform steps are
//! given in the camera's own axes (X right, Y up, looking down -Z), which are the same in both.
//!
//! # What is drawn
//!
//! See `docs/CHART-FORMAT.md` for every rule: bar heights, zero, negative and missing values,
//! `minimum-bar-height`, one cake per row, the floor, the lights and the default camera.

use std::collections::BTreeMap;

use super::labels::{self, Annotations};
use super::model::{CameraType, Cell, Chart, Color, GraphType, Material, Row, Step, Transform};
use super::surface::surface;

/// Samples per pixel the builder uses when the job does not say.
pub const DEFAULT_SAMPLES: u32 = 64;
/// Radius of a cake.
pub const CAKE_RADIUS: f64 = 2.0;
/// Gap between two cakes (several rows), along X.
pub const CAKE_GAP: f64 = 1.0;
/// Each slice is pushed out from the cake's centre by this much, so that slices of one colour
/// stay apart.
pub const SLICE_GAP: f64 = 0.04;
/// Arc segments of a whole cake (a slice gets its share, at least one).
pub const CAKE_SEGMENTS: u32 = 128;
/// The tallest bar is this share of the larger side of the grid (at least [`MIN_TALLEST`]
/// bar widths), so any data gives a chart that reads well.
pub const TALLEST_SHARE: f64 = 0.5;
/// The tallest bar is at least this many bar widths tall.
pub const MIN_TALLEST: f64 = 3.0;
/// Vertical field of view of the default perspective camera, in degrees, along the image's
/// longer side (Blender's "auto" sensor fit).
pub const FOV_DEGREES: f64 = 40.0;
/// Default camera direction from the chart's centre: azimuth to the right of straight-on and
/// elevation above the floor, in degrees.
pub const CAMERA_AZIMUTH: f64 = 30.0;
/// See [`CAMERA_AZIMUTH`].
pub const CAMERA_ELEVATION: f64 = 30.0;
/// Room left around the chart by the default camera (1.0: touching the image's edges).
pub const FRAME_MARGIN: f64 = 1.1;
/// How far the floor sits below the lowest bottom of the chart.
pub const FLOOR_GAP: f64 = 0.001;
/// Strength of the sun that gives the chart its shading (the world light is
/// `background-strength`).
pub const SUN_STRENGTH: f64 = 1.5;

/// Everything the builder script needs to make the Blender scene, in Blender's axes (Z up).
#[derive(Clone, Debug, PartialEq)]
pub struct SceneDesc {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Samples per pixel unless the job overrides it.
    pub samples: u32,
    /// The camera.
    pub camera: CameraDesc,
    /// The world (ambient) light.
    pub world: WorldDesc,
    /// The sun.
    pub sun: SunDesc,
    /// Shaders, each used by at least one mesh; names are unique.
    pub shaders: Vec<ShaderDesc>,
    /// Meshes: one per shader for the chart (every bar or slice of that shader), the grid
    /// lines of the axis, plus the floor.
    pub meshes: Vec<MeshDesc>,
    /// Lines of 3D text: the title, labels, values, tick values and legend names.
    pub texts: Vec<TextDesc>,
    /// The legend's entries, in order (empty without `legend; on`).
    pub legend: Vec<LegendDesc>,
}

/// A legend entry: a small cube of the variable's colour and material, and its name.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendDesc {
    /// The variable's name without `$`.
    pub name: String,
    /// The centre of the cube's face towards the camera.
    pub swatch: [f64; 3],
}

/// Where a text's origin is along its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// The origin is where the text starts.
    Left,
    /// The origin is the middle of the line.
    Center,
    /// The origin is where the text ends.
    Right,
}

impl Align {
    /// The word the scene XML uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Center => "center",
            Self::Right => "right",
        }
    }
}

/// One line of 3D text, drawn by the builder script with the chart font (see
/// [`font`](super::font)) and turned into a mesh.
#[derive(Clone, Debug, PartialEq)]
pub struct TextDesc {
    /// Unique name (`title`, `x-label-0`, ...).
    pub name: String,
    /// Index into [`SceneDesc::shaders`].
    pub shader: usize,
    /// What it says (one line, every character drawable).
    pub body: String,
    /// The height of a capital "H", in scene units.
    pub size: f64,
    /// Where the origin is along the line.
    pub align: Align,
    /// Text to world, row-major 4x4: the text reads along its local +X, its letters stand up
    /// along +Y and face +Z; the origin is on the baseline, placed by `align`.
    pub matrix: [[f64; 4]; 4],
    /// Thickness of the letters along their local Z, centred on the origin.
    pub depth: f64,
}

/// The camera.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraDesc {
    /// Projection.
    pub kind: CameraType,
    /// Camera to world, row-major 4x4; the camera looks down its local -Z with +Y up.
    pub matrix: [[f64; 4]; 4],
    /// Perspective: field of view along the image's longer side, in degrees.
    pub fov_degrees: f64,
    /// Orthographic: the width of the view along the image's longer side, in scene units.
    pub ortho_scale: f64,
    /// Nearest distance drawn.
    pub clip_start: f64,
    /// Farthest distance drawn.
    pub clip_end: f64,
}

/// The world: a uniform background light.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldDesc {
    /// Its colour.
    pub color: [f64; 3],
    /// Its strength (`background-strength`).
    pub strength: f64,
}

/// A sun lamp.
#[derive(Clone, Debug, PartialEq)]
pub struct SunDesc {
    /// The direction the light travels (unit vector).
    pub direction: [f64; 3],
    /// Its strength.
    pub strength: f64,
}

/// A surface shader built from one of Cycles' BSDFs.
#[derive(Clone, Debug, PartialEq)]
pub struct ShaderDesc {
    /// Unique name (`chart-0`, `floor`).
    pub name: String,
    /// Base colour (white when `vertex_color`).
    pub color: [f64; 3],
    /// The material.
    pub material: Material,
    /// The colour comes from each vertex's colour ([`MeshDesc::colors`]), not from `color`.
    pub vertex_color: bool,
}

/// A mesh of polygons with one shader.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshDesc {
    /// Unique name.
    pub name: String,
    /// Index into [`SceneDesc::shaders`].
    pub shader: usize,
    /// Vertex positions.
    pub vertices: Vec<[f64; 3]>,
    /// Polygons, each a list of vertex indices, counter-clockwise seen from outside.
    pub faces: Vec<Vec<u32>>,
    /// A normal per vertex for smooth shading (a surface's), or empty: flat faces.
    pub normals: Vec<[f64; 3]>,
    /// A colour per vertex (a surface's colours by height, for a `vertex_color` shader), or
    /// empty.
    pub colors: Vec<[f64; 3]>,
}

impl MeshDesc {
    pub(super) fn add_face(&mut self, corners: &[[f64; 3]]) {
        let first = self.vertices.len() as u32;
        self.vertices.extend_from_slice(corners);
        self.faces
            .push((first..first + corners.len() as u32).collect());
    }

    /// An axis-aligned box between `lo` and `hi` (Blender axes).
    pub(super) fn add_box(&mut self, lo: [f64; 3], hi: [f64; 3]) {
        let first = self.vertices.len() as u32;
        for z in [lo[2], hi[2]] {
            for (x, y) in [
                (lo[0], lo[1]),
                (hi[0], lo[1]),
                (hi[0], hi[1]),
                (lo[0], hi[1]),
            ] {
                self.vertices.push([x, y, z]);
            }
        }
        let f = |a: u32, b: u32, c: u32, d: u32| vec![first + a, first + b, first + c, first + d];
        self.faces.extend([
            f(0, 3, 2, 1), // bottom
            f(4, 5, 6, 7), // top
            f(0, 1, 5, 4), // front (-y)
            f(1, 2, 6, 5), // right
            f(2, 3, 7, 6), // back
            f(3, 0, 4, 7), // left
        ]);
    }

    /// A box with one corner at `origin` and edges `ex`, `ey`, `ez` (a right-handed set, so
    /// that its faces point outward). Returns its corners.
    pub(super) fn add_cuboid(
        &mut self,
        origin: [f64; 3],
        [ex, ey, ez]: [[f64; 3]; 3],
    ) -> Vec<[f64; 3]> {
        let first = self.vertices.len() as u32;
        for c in [0.0, 1.0] {
            for (a, b) in [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)] {
                let p = [0, 1, 2].map(|i| origin[i] + a * ex[i] + b * ey[i] + c * ez[i]);
                self.vertices.push(p);
            }
        }
        let f = |a: u32, b: u32, c: u32, d: u32| vec![first + a, first + b, first + c, first + d];
        self.faces.extend([
            f(0, 3, 2, 1),
            f(4, 5, 6, 7),
            f(0, 1, 5, 4),
            f(1, 2, 6, 5),
            f(2, 3, 7, 6),
            f(3, 0, 4, 7),
        ]);
        self.vertices[first as usize..].to_vec()
    }
}

/// Lays `chart` out as a scene.
pub fn layout(chart: &Chart) -> SceneDesc {
    let mut shaders = Shaders::new(chart);
    let mut bounds = Bounds::default();
    let shape = match chart.config.graph_type {
        GraphType::Histogram => Shape::Bars(histogram(chart, &mut shaders, &mut bounds)),
        GraphType::Cake => Shape::Cakes(cakes(chart, &mut shaders, &mut bounds)),
        GraphType::Surface => Shape::Bars(surface(chart, &mut shaders, &mut bounds)),
    };
    if bounds.is_empty() {
        // Nothing to draw (every value missing): frame a unit cube on the floor.
        bounds.add([-0.5, -0.5, 0.0]);
        bounds.add([0.5, 0.5, 1.0]);
    }
    let mut annotations = Annotations::new(chart, View::default_direction(), &shape, bounds);
    let shape_bounds = bounds;
    // Just below the lowest bottom (and the axis's lowest tick): a face shared by a bar and
    // the floor would trap rays (glass bars turn black where they touch it).
    let floor_z = bounds.lo[2].min(0.0).min(annotations.lowest()) - FLOOR_GAP;
    annotations.draw(&shape, floor_z, &mut shaders, &mut bounds);
    let (mut shader_list, mut meshes) = shaders.finish();
    // The camera frames the chart's box and each annotation's own corners (a box around a
    // tilted text would leave too much room).
    let mut frame = shape_bounds.corners().to_vec();
    frame.extend_from_slice(annotations.points());
    let (texts, legend) = annotations.finish(&mut shader_list, &mut meshes);
    let floor_shader = shader_list.len();
    shader_list.push(ShaderDesc {
        name: "floor".into(),
        color: rgb(chart.config.floor_color),
        material: Material::Diffuse { roughness: 0.5 },
        vertex_color: false,
    });
    let mut floor = MeshDesc {
        name: "floor".into(),
        shader: floor_shader,
        ..MeshDesc::default()
    };
    let center = bounds.center();
    let reach = bounds.radius().max(1.0) * 6.0;
    let (x0, x1, y0, y1) = (
        center[0] - reach,
        center[0] + reach,
        center[1] - reach,
        center[1] + reach,
    );
    floor.add_face(&[
        [x0, y0, floor_z],
        [x1, y0, floor_z],
        [x1, y1, floor_z],
        [x0, y1, floor_z],
    ]);
    meshes.push(floor);
    let size = chart.config.image_size;
    SceneDesc {
        width: size.width,
        height: size.height,
        samples: DEFAULT_SAMPLES,
        camera: camera(chart, &bounds, &frame, size.width, size.height),
        world: WorldDesc {
            color: [1.0, 1.0, 1.0],
            strength: chart.config.background_strength,
        },
        sun: SunDesc {
            direction: normalize([0.35, 0.6, -1.0]),
            strength: SUN_STRENGTH,
        },
        shaders: shader_list,
        meshes,
        texts,
        legend,
    }
}

pub(super) fn rgb(c: Color) -> [f64; 3] {
    [c.r, c.g, c.b]
}

/// One shader per distinct (colour, material), in order of first use, each with one mesh.
pub(super) struct Shaders<'a> {
    chart: &'a Chart,
    /// (colour, material) as exact bits → index.
    index: BTreeMap<[u64; 8], usize>,
    list: Vec<(ShaderDesc, MeshDesc)>,
}

impl<'a> Shaders<'a> {
    fn new(chart: &'a Chart) -> Self {
        Self {
            chart,
            index: BTreeMap::new(),
            list: Vec::new(),
        }
    }

    /// The mesh collecting the geometry drawn with `cell`'s colour and material.
    pub(super) fn mesh_for(&mut self, cell: &Cell) -> &mut MeshDesc {
        let at = self.index_for(cell, false);
        &mut self.list[at].1
    }

    /// The index of the shader (and its mesh) of `cell`'s colour and material; with `ramp`, of
    /// its material with the colour from the vertices unless the cell sets one.
    pub(super) fn index_for(&mut self, cell: &Cell, ramp: bool) -> usize {
        let vertex_color = ramp && cell.color.is_none();
        let color = if vertex_color {
            [1.0; 3]
        } else {
            rgb(cell.color.unwrap_or(self.chart.config.default_color))
        };
        let material = cell.material.unwrap_or(self.chart.config.default_material);
        let key = shader_key(color, material, vertex_color);
        let next = self.list.len();
        let at = *self.index.entry(key).or_insert(next);
        if at == next {
            let name = format!("chart-{at}");
            self.list.push((
                ShaderDesc {
                    name: name.clone(),
                    color,
                    material,
                    vertex_color,
                },
                MeshDesc {
                    name,
                    shader: at,
                    ..MeshDesc::default()
                },
            ));
        }
        at
    }

    /// The mesh of the shader at `at` (from [`Shaders::index_for`]).
    pub(super) fn mesh(&mut self, at: usize) -> &mut MeshDesc {
        &mut self.list[at].1
    }

    /// The shaders, and the meshes that drew something (a shader may serve a legend's swatch
    /// only).
    fn finish(self) -> (Vec<ShaderDesc>, Vec<MeshDesc>) {
        let (shaders, meshes): (Vec<ShaderDesc>, Vec<MeshDesc>) = self.list.into_iter().unzip();
        (
            shaders,
            meshes.into_iter().filter(|m| !m.faces.is_empty()).collect(),
        )
    }
}

fn shader_key(color: [f64; 3], material: Material, vertex_color: bool) -> [u64; 8] {
    let (kind, dist, roughness, ior) = match material {
        Material::Diffuse { roughness } => (0, 0, roughness, 0.0),
        Material::Glossy {
            distribution,
            roughness,
            ior,
        } => (1, distribution as u64, roughness, ior),
        Material::Glass {
            distribution,
            roughness,
            ior,
        } => (2, distribution as u64, roughness, ior),
    };
    [
        color[0].to_bits(),
        color[1].to_bits(),
        color[2].to_bits(),
        kind,
        dist,
        roughness.to_bits(),
        ior.to_bits(),
        u64::from(vertex_color),
    ]
}

/// Axis-aligned bounds of everything drawn (Blender axes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) lo: [f64; 3],
    pub(super) hi: [f64; 3],
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            lo: [f64::INFINITY; 3],
            hi: [f64::NEG_INFINITY; 3],
        }
    }
}

impl Bounds {
    pub(super) fn add(&mut self, p: [f64; 3]) {
        self.lo = [0, 1, 2].map(|i| self.lo[i].min(p[i]));
        self.hi = [0, 1, 2].map(|i| self.hi[i].max(p[i]));
    }

    fn is_empty(&self) -> bool {
        self.lo[0] > self.hi[0]
    }

    pub(super) fn center(&self) -> [f64; 3] {
        [0, 1, 2].map(|i| (self.lo[i] + self.hi[i]) / 2.0)
    }

    fn radius(&self) -> f64 {
        let d = [0, 1, 2].map(|i| self.hi[i] - self.lo[i]);
        (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() / 2.0
    }

    pub(super) fn corners(&self) -> [[f64; 3]; 8] {
        let (lo, hi) = (self.lo, self.hi);
        let mut out = [[0.0; 3]; 8];
        for (i, c) in out.iter_mut().enumerate() {
            *c = [
                if i & 1 == 0 { lo[0] } else { hi[0] },
                if i & 2 == 0 { lo[1] } else { hi[1] },
                if i & 4 == 0 { lo[2] } else { hi[2] },
            ];
        }
        out
    }
}

/// The height a histogram bar of `value` is drawn with: proportional to the value, scaled so
/// that the largest magnitude is `tallest`; a height of magnitude below `minimum` is raised to
/// it, keeping its sign (zero counts as positive). `None`: nothing is drawn (a zero value with no
/// minimum).
pub fn bar_height(value: f64, largest: f64, tallest: f64, minimum: f64) -> Option<f64> {
    let h = if largest > 0.0 {
        value / largest * tallest
    } else {
        0.0
    };
    if h.abs() >= minimum && h != 0.0 {
        return Some(h);
    }
    (minimum > 0.0).then_some(if h < 0.0 { -minimum } else { minimum })
}

/// What the chart's geometry leaves for its annotations to place themselves by.
pub(super) enum Shape {
    /// A histogram's grid of bars.
    Bars(Bars),
    /// A cake's slices.
    Cakes(Vec<Slice>),
}

/// How a histogram's bars are laid out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bars {
    /// Bar width.
    pub(super) width: f64,
    /// From one column to the next, along +X.
    pub(super) step_x: f64,
    /// From one row to the next, along -Y.
    pub(super) step_z: f64,
    /// Columns (the longest row's values).
    pub(super) cols: usize,
    /// Rows.
    pub(super) rows: usize,
    /// The largest magnitude of a value (0 when none).
    pub(super) largest: f64,
    /// The height the largest magnitude is drawn with.
    pub(super) tallest: f64,
    /// A surface's grid of points (at the middle of where bars would stand), not bars: every
    /// value is drawn, zero included.
    pub(super) surface: bool,
}

impl Bars {
    /// The height a value is drawn at (no minimum).
    pub(super) fn height(&self, value: f64) -> f64 {
        if self.largest > 0.0 {
            value / self.largest * self.tallest
        } else {
            0.0
        }
    }
}

/// One drawn slice of a cake.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slice {
    /// The cake's centre.
    pub(super) center: [f64; 2],
    /// The angle of the slice's bisector (radians, counter-clockwise from +X).
    pub(super) mid: f64,
    /// Its share of the cake, 0..=1.
    pub(super) share: f64,
    /// Which value of its row it draws.
    pub(super) index: usize,
    /// The cake's thickness.
    pub(super) height: f64,
}

fn histogram(chart: &Chart, shaders: &mut Shaders<'_>, bounds: &mut Bounds) -> Bars {
    let c = &chart.config;
    let w = c.bar_width;
    let step_x = w + c.bar_separation.x;
    let step_z = w + c.bar_separation.z;
    let cols = chart.rows.iter().map(|r| r.cells.len()).max().unwrap_or(0);
    let rows = chart.rows.len();
    let largest = chart
        .rows
        .iter()
        .flat_map(|r| r.cells.iter().filter_map(|cell| cell.value))
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    let extent = (cols as f64 * step_x).max(rows as f64 * step_z);
    let tallest = (extent * TALLEST_SHARE).max(MIN_TALLEST * w);
    for (r, row) in chart.rows.iter().enumerate() {
        for (col, cell) in row.cells.iter().enumerate() {
            let Some(value) = cell.value else { continue };
            let Some(h) = bar_height(value, largest, tallest, c.minimum_bar_height) else {
                continue;
            };
            // Chart (x, y, z) → Blender (x, -z, y).
            let x = col as f64 * step_x;
            let y = -(r as f64) * step_z;
            let (z0, z1) = if h >= 0.0 { (0.0, h) } else { (h, 0.0) };
            let lo = [x, y - w, z0];
            let hi = [x + w, y, z1];
            shaders.mesh_for(cell).add_box(lo, hi);
            bounds.add(lo);
            bounds.add(hi);
        }
    }
    Bars {
        width: w,
        step_x,
        step_z,
        cols,
        rows,
        largest,
        tallest,
        surface: false,
    }
}

/// The share of the cake each cell takes: positive values only, with their index in the row.
fn slice_values(row: &Row) -> impl Iterator<Item = (usize, &Cell, f64)> {
    row.cells.iter().enumerate().filter_map(|(i, c)| {
        c.value
            .filter(|v| *v > 0.0 && v.is_finite())
            .map(|v| (i, c, v))
    })
}

fn cakes(chart: &Chart, shaders: &mut Shaders<'_>, bounds: &mut Bounds) -> Vec<Slice> {
    let height = chart.config.cake_height;
    // Slice names stand outside the cake: neighbours move apart to leave them room.
    let gap = CAKE_GAP + 2.0 * labels::slice_name_room(chart);
    let mut slices = Vec::new();
    for (r, row) in chart.rows.iter().enumerate() {
        let cx = r as f64 * (2.0 * CAKE_RADIUS + gap);
        let total: f64 = slice_values(row).map(|(_, _, v)| v).sum();
        // Bounds cover the whole cake even if it has no slice, so cakes stay evenly spaced.
        bounds.add([cx - CAKE_RADIUS, -CAKE_RADIUS, 0.0]);
        bounds.add([cx + CAKE_RADIUS, CAKE_RADIUS, height]);
        if total <= 0.0 {
            continue;
        }
        // Slices go clockwise seen from above, starting at twelve o'clock (the far side).
        let mut start = std::f64::consts::FRAC_PI_2;
        for (index, cell, value) in slice_values(row) {
            let sweep = value / total * std::f64::consts::TAU;
            let mesh = shaders.mesh_for(cell);
            add_slice(mesh, [cx, 0.0], start - sweep, start, height);
            slices.push(Slice {
                center: [cx, 0.0],
                mid: start - sweep / 2.0,
                share: value / total,
                index,
                height,
            });
            start -= sweep;
        }
    }
    slices
}

/// A wedge of the cake centred at `center` from angle `a0` to `a1` (radians, counter-clockwise
/// from +X), pushed out along its bisector by [`SLICE_GAP`] unless it is the whole cake.
fn add_slice(mesh: &mut MeshDesc, center: [f64; 2], a0: f64, a1: f64, height: f64) {
    let sweep = a1 - a0;
    let segments = ((sweep / std::f64::consts::TAU * f64::from(CAKE_SEGMENTS)).ceil() as u32)
        .clamp(1, CAKE_SEGMENTS);
    let whole = sweep >= std::f64::consts::TAU - 1e-9;
    let mid = (a0 + a1) / 2.0;
    let push = if whole { 0.0 } else { SLICE_GAP };
    let c = [center[0] + push * mid.cos(), center[1] + push * mid.sin()];
    let arc: Vec<[f64; 2]> = (0..=segments)
        .map(|i| {
            let a = a0 + sweep * f64::from(i) / f64::from(segments);
            [c[0] + CAKE_RADIUS * a.cos(), c[1] + CAKE_RADIUS * a.sin()]
        })
        .collect();
    let at = |p: [f64; 2], z: f64| [p[0], p[1], z];
    // Top (counter-clockwise seen from above) and bottom (reversed).
    let mut top = vec![at(c, height)];
    top.extend(arc.iter().map(|p| at(*p, height)));
    let mut bottom = vec![at(c, 0.0)];
    bottom.extend(arc.iter().rev().map(|p| at(*p, 0.0)));
    if whole {
        top.remove(0);
        top.pop();
        bottom.remove(0);
        bottom.pop();
    }
    mesh.add_face(&top);
    mesh.add_face(&bottom);
    for pair in arc.windows(2) {
        mesh.add_face(&[
            at(pair[0], 0.0),
            at(pair[1], 0.0),
            at(pair[1], height),
            at(pair[0], height),
        ]);
    }
    if !whole {
        let (first, last) = (arc[0], arc[arc.len() - 1]);
        mesh.add_face(&[at(c, 0.0), at(first, 0.0), at(first, height), at(c, height)]);
        mesh.add_face(&[at(last, 0.0), at(c, 0.0), at(c, height), at(last, height)]);
    }
}

// ---- camera -------------------------------------------------------------------------------

type Mat = [[f64; 4]; 4];

fn mat_mul(a: &Mat, b: &Mat) -> Mat {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn identity() -> Mat {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

pub(super) fn normalize(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if n == 0.0 { v } else { v.map(|x| x / n) }
}

pub(super) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(super) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The 4x4 matrix of one transform step (in the frame it is applied in).
fn step_matrix(step: &Step) -> Mat {
    let mut m = identity();
    match *step {
        Step::Translate { x, y, z } => {
            m[0][3] = x;
            m[1][3] = y;
            m[2][3] = z;
        }
        Step::Rotate { degrees, axis } => {
            let [x, y, z] = normalize(axis);
            let (s, c) = degrees.to_radians().sin_cos();
            let t = 1.0 - c;
            m[0][0] = t * x * x + c;
            m[0][1] = t * x * y - s * z;
            m[0][2] = t * x * z + s * y;
            m[1][0] = t * x * y + s * z;
            m[1][1] = t * y * y + c;
            m[1][2] = t * y * z - s * x;
            m[2][0] = t * x * z - s * y;
            m[2][1] = t * y * z + s * x;
            m[2][2] = t * z * z + c;
        }
    }
    m
}

/// The camera-transform steps composed in the camera's own frame, first step first.
pub fn transform_matrix(transform: &Transform) -> [[f64; 4]; 4] {
    transform
        .steps
        .iter()
        .fold(identity(), |m, step| mat_mul(&m, &step_matrix(step)))
}

/// The default camera's axes, in Blender's axes: it looks down `-back`.
#[derive(Clone, Copy, Debug)]
pub(super) struct View {
    /// The image's rightward direction.
    pub(super) right: [f64; 3],
    /// The image's upward direction.
    pub(super) up: [f64; 3],
    /// From the chart towards the camera.
    pub(super) back: [f64; 3],
}

impl View {
    /// Looking at the chart from [`CAMERA_AZIMUTH`] / [`CAMERA_ELEVATION`].
    pub(super) fn default_direction() -> Self {
        let (az, el) = (CAMERA_AZIMUTH.to_radians(), CAMERA_ELEVATION.to_radians());
        // From the centre towards the camera: in front (-Y), to the right, above.
        let back = normalize([az.sin() * el.cos(), -az.cos() * el.cos(), el.sin()]);
        let right = normalize(cross([0.0, 0.0, 1.0], back));
        let up = cross(back, right);
        Self { right, up, back }
    }
}

/// The default camera frames every point of `frame` for the image's aspect, looking at the
/// centre of `bounds` from [`CAMERA_AZIMUTH`] / [`CAMERA_ELEVATION`]; then `camera-transform`
/// moves it in its own frame.
fn camera(
    chart: &Chart,
    bounds: &Bounds,
    frame: &[[f64; 3]],
    width: u32,
    height: u32,
) -> CameraDesc {
    let center = bounds.center();
    let View { right, up, back } = View::default_direction();
    let aspect = f64::from(width.max(1)) / f64::from(height.max(1));
    // Half extents of the view per unit of depth (perspective) or in units (orthographic),
    // Blender's "auto" sensor fit: the field of view spans the longer side.
    let tan = (FOV_DEGREES.to_radians() / 2.0).tan();
    let (tan_x, tan_y) = if aspect >= 1.0 {
        (tan, tan / aspect)
    } else {
        (tan * aspect, tan)
    };
    let kind = chart.config.camera_type;
    // Each point in the camera's axes around the centre: (across, upward, toward the camera).
    let points: Vec<[f64; 3]> = frame
        .iter()
        .map(|p| {
            let d = [0, 1, 2].map(|i| p[i] - center[i]);
            [dot(d, right), dot(d, up), dot(d, back)]
        })
        .collect();
    let radius = bounds.radius().max(1e-3);
    let (shift, distance, ortho_scale) = match kind {
        CameraType::Perspective => {
            // The camera sits at centre + right * a + up * b + back * D. A point (x, y, z) is
            // in view when |x - a| <= tan_x * (D - z) (and likewise upward). Along one axis
            // the smallest D is (max(x + t z) - min(x - t z)) / 2t, with a midway:
            // the view is as close as it can be and centred on what it frames.
            let fit = |axis: usize, tan: f64| {
                let tan = tan / FRAME_MARGIN;
                let hi = points
                    .iter()
                    .map(|p| p[axis] + tan * p[2])
                    .fold(f64::MIN, f64::max);
                let lo = points
                    .iter()
                    .map(|p| p[axis] - tan * p[2])
                    .fold(f64::MAX, f64::min);
                ((hi + lo) / 2.0, (hi - lo) / (2.0 * tan))
            };
            let ((a, dx), (b, dy)) = (fit(0, tan_x), fit(1, tan_y));
            ([a, b], dx.max(dy), 0.0)
        }
        CameraType::Orthographic => {
            let span = |axis: usize| {
                let hi = points.iter().map(|p| p[axis]).fold(f64::MIN, f64::max);
                let lo = points.iter().map(|p| p[axis]).fold(f64::MAX, f64::min);
                ((hi + lo) / 2.0, hi - lo)
            };
            let ((a, width), (b, height)) = (span(0), span(1));
            let scale = if aspect >= 1.0 {
                width.max(height * aspect)
            } else {
                height.max(width / aspect)
            };
            // Far enough that nothing is behind the camera.
            ([a, b], radius * 3.0, scale * FRAME_MARGIN)
        }
    };
    let eye =
        [0, 1, 2].map(|i| center[i] + right[i] * shift[0] + up[i] * shift[1] + back[i] * distance);
    // Camera axes: X = right, Y = up, Z = back (it looks down -Z).
    let base: Mat = [
        [right[0], up[0], back[0], eye[0]],
        [right[1], up[1], back[1], eye[1]],
        [right[2], up[2], back[2], eye[2]],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let matrix = mat_mul(&base, &transform_matrix(&chart.config.camera_transform));
    // Clip range: generous around everything the camera might see after a transform.
    let moved = [matrix[0][3], matrix[1][3], matrix[2][3]];
    let gap = (0..3)
        .map(|i| (moved[i] - center[i]).powi(2))
        .sum::<f64>()
        .sqrt();
    CameraDesc {
        kind,
        matrix,
        fov_degrees: FOV_DEGREES,
        ortho_scale,
        clip_start: 0.01,
        clip_end: (gap + radius * 8.0).max(100.0),
    }
}

/// Where a point lands in the image, as fractions from the top-left corner (`0..=1` inside),
/// or `None` behind the camera. Follows Blender's projection with "auto" sensor fit.
pub fn project(scene: &SceneDesc, p: [f64; 3]) -> Option<(f64, f64)> {
    let m = &scene.camera.matrix;
    let eye = [m[0][3], m[1][3], m[2][3]];
    let d = [0, 1, 2].map(|i| p[i] - eye[i]);
    let axis = |j: usize| [m[0][j], m[1][j], m[2][j]];
    let (x, y, z) = (dot(d, axis(0)), dot(d, axis(1)), dot(d, axis(2)));
    let aspect = f64::from(scene.width) / f64::from(scene.height);
    let (sx, sy) = match scene.camera.kind {
        CameraType::Perspective => {
            if z >= 0.0 {
                return None;
            }
            let tan = (scene.camera.fov_degrees.to_radians() / 2.0).tan();
            (x / -z / tan, y / -z / tan)
        }
        CameraType::Orthographic => {
            let half = scene.camera.ortho_scale / 2.0;
            (x / half, y / half)
        }
    };
    // (sx, sy) span -1..1 along the longer side.
    let (u, v) = if aspect >= 1.0 {
        (sx, sy * aspect)
    } else {
        (sx / aspect, sy)
    };
    Some(((u + 1.0) / 2.0, (1.0 - v) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_heights_are_proportional_with_a_signed_minimum() {
        assert_eq!(bar_height(5.0, 10.0, 4.0, 0.0), Some(2.0));
        assert_eq!(bar_height(-10.0, 10.0, 4.0, 0.0), Some(-4.0));
        assert_eq!(bar_height(0.0, 10.0, 4.0, 0.0), None);
        assert_eq!(bar_height(0.0, 10.0, 4.0, 0.1), Some(0.1));
        assert_eq!(bar_height(-0.01, 10.0, 4.0, 0.1), Some(-0.1));
        assert_eq!(bar_height(0.0, 0.0, 4.0, 0.0), None);
    }

    #[test]
    fn rotation_steps_turn_the_right_way() {
        let m = step_matrix(&Step::Rotate {
            degrees: 90.0,
            axis: [0.0, 0.0, 1.0],
        });
        // +X turns to +Y around +Z, counter-clockwise.
        assert!((m[1][0] - 1.0).abs() < 1e-12 && m[0][0].abs() < 1e-12);
    }

    #[test]
    fn box_faces_point_outward() {
        let mut mesh = MeshDesc::default();
        mesh.add_box([0.0; 3], [1.0, 2.0, 3.0]);
        let centre = [0.5, 1.0, 1.5];
        for face in &mesh.faces {
            let p: Vec<[f64; 3]> = face.iter().map(|&i| mesh.vertices[i as usize]).collect();
            let e1 = [0, 1, 2].map(|i| p[1][i] - p[0][i]);
            let e2 = [0, 1, 2].map(|i| p[2][i] - p[0][i]);
            let normal = cross(e1, e2);
            let out = [0, 1, 2].map(|i| p[0][i] - centre[i]);
            assert!(dot(normal, out) > 0.0, "face {face:?} points inward");
        }
    }

    use crate::chart::tests::sample as chart;

    fn grid(rows: usize, cols: usize) -> String {
        (0..rows)
            .map(|r| {
                let row: Vec<String> = (0..cols)
                    .map(|c| ((r * 7 + c * 3) % 11).to_string())
                    .collect();
                row.join("; ") + "\n"
            })
            .collect()
    }

    /// Every vertex of the chart (not the floor, which runs off the image on purpose) lands
    /// inside the image.
    fn assert_framed(scene: &SceneDesc, what: &str) {
        for mesh in scene.meshes.iter().filter(|m| m.name != "floor") {
            for v in &mesh.vertices {
                let (u, w) = project(scene, *v)
                    .unwrap_or_else(|| panic!("{what}: {v:?} is behind the camera"));
                assert!(
                    (0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&w),
                    "{what}: {v:?} lands at ({u:.3}, {w:.3}), outside the image"
                );
            }
        }
    }

    #[test]
    fn the_default_camera_frames_any_chart() {
        for camera in ["", "camera-type; orthographic\n"] {
            for (rows, cols) in [(1, 1), (1, 40), (40, 1), (30, 30), (3, 4)] {
                let c = chart("histogram", camera, &grid(rows, cols));
                assert_framed(&layout(&c), &format!("{rows}x{cols} {camera}"));
            }
            for data in ["5\n", "1; 2; 3; 4; 5; 6; 7\n", "1; 2\n3; 4\n5; 6; 7\n"] {
                let c = chart("cake", camera, data);
                assert_framed(&layout(&c), &format!("cake {data:?} {camera}"));
            }
        }
        // A tall, thin image and a wide one.
        for size in ["image-size; 100; 900", "image-size; 1200; 100"] {
            let mut c = chart("histogram", "", &grid(5, 12));
            let (w, h) = size[12..].split_once("; ").unwrap();
            c.config.image_size.width = w.trim().parse().unwrap();
            c.config.image_size.height = h.trim().parse().unwrap();
            assert_framed(&layout(&c), size);
        }
    }

    #[test]
    fn a_histogram_has_one_box_per_drawn_value_and_shares_shaders() {
        let c = chart("histogram", "", "1; 2; $red$ 3; 4 $\n5; ; 0; -2\n");
        let scene = layout(&c);
        let boxes: usize = scene
            .meshes
            .iter()
            .filter(|m| m.name != "floor")
            .map(|m| m.faces.len() / 6)
            .sum();
        // Seven values, one missing (a gap), one zero (no bar without a minimum height).
        assert_eq!(boxes, 6);
        // Two colours plus the floor: three shaders, whatever the number of bars.
        assert_eq!(scene.shaders.len(), 3);
        let names: Vec<&str> = scene.shaders.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["chart-0", "chart-1", "floor"]);
        // The negative bar hangs below zero and the floor is under it.
        let lowest = scene
            .meshes
            .iter()
            .filter(|m| m.name != "floor")
            .flat_map(|m| m.vertices.iter().map(|v| v[2]))
            .fold(f64::INFINITY, f64::min);
        let floor = scene.meshes.iter().find(|m| m.name == "floor").unwrap();
        assert!(lowest < 0.0 && floor.vertices[0][2] < lowest);
        // With a minimum height the zero value gets a thin bar.
        let c = chart("histogram", "minimum-bar-height; 0.1\n", "1; 0; 2\n");
        let boxes: usize = layout(&c)
            .meshes
            .iter()
            .filter(|m| m.name != "floor")
            .map(|m| m.faces.len() / 6)
            .sum();
        assert_eq!(boxes, 3);
    }

    #[test]
    fn a_cake_gives_positive_values_their_share() {
        let c = chart("cake", "", "$red$ 1 $; 3; 0; -1; ; 4\n");
        let scene = layout(&c);
        // Red (1 of 8) and the default colour (3 + 4 of 8): two shaders plus the floor.
        assert_eq!(scene.shaders.len(), 3);
        let top_corners = |m: &MeshDesc| m.faces.iter().filter(|f| f.len() > 4).count();
        let red = &scene.meshes[0];
        let rest = &scene.meshes[1];
        // Each slice has a top and a bottom polygon.
        assert_eq!(top_corners(red), 2);
        assert_eq!(top_corners(rest), 4);
        // Arc segments follow the share: red has about 1/8 of CAKE_SEGMENTS.
        let sides = |m: &MeshDesc| m.faces.iter().filter(|f| f.len() == 4).count();
        assert_eq!(sides(red), (CAKE_SEGMENTS / 8) as usize + 2);
    }

    #[test]
    fn layout_and_xml_are_deterministic() {
        let c = chart(
            "histogram",
            "camera-transform; translate(0, 4, -2).rotate(20, 0, 1, 0)\n",
            &grid(6, 9),
        );
        let a = crate::chart::to_xml(&layout(&c));
        assert_eq!(a, crate::chart::to_xml(&layout(&c)));
        assert!(a.starts_with("<?xml") && a.contains("<cycles") && a.contains("<camera"));
    }

    #[test]
    fn camera_transform_steps_apply_in_the_cameras_own_frame() {
        let plain = layout(&chart("histogram", "", "1; 2\n"));
        let moved = layout(&chart(
            "histogram",
            "camera-transform; translate(0, 0, -1)\n",
            "1; 2\n",
        ));
        let (a, b) = (plain.camera.matrix, moved.camera.matrix);
        // Moving along local -Z is moving forward, along the camera's view direction.
        let forward = [-a[0][2], -a[1][2], -a[2][2]];
        for i in 0..3 {
            assert!((b[i][3] - a[i][3] - forward[i]).abs() < 1e-9);
        }
    }
}
