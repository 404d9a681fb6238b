//! What the text keys draw: the title, the columns' and rows' names, the slices' names, the
//! values, the value axis with its grid lines, and the legend. Every text is a [`TextDesc`]
//! the builder script turns into a 3D mesh with the chart font; sizes and places come from the
//! chart's geometry and the font's metrics ([`font`](super::font)), so the camera can frame
//! them with the rest.
//!
//! - The title, the values, the tick values and the legend face the default camera
//!   ("billboards"): they read straight on, whatever the chart's shape.
//! - The columns' and rows' names lie flat on the floor, as axis names do.
//!
//! Sizes are cap heights (the height of a capital "H") in scene units. Each text also adds its
//! box to the bounds the camera frames, so a long title or legend widens the view.

use super::annotate::{self, MAX_TICKS};
use super::font;
use super::model::{Cell, Chart, Color, Material, VarValue};
use super::scene::{
    Align, Bars, Bounds, CAKE_RADIUS, LegendDesc, MeshDesc, ShaderDesc, Shaders, Shape, Slice,
    TextDesc, View, cross, dot, rgb,
};

/// The title's cap height, as a share of the chart's largest extent.
pub const TITLE_SHARE: f64 = 0.07;
/// Names, values and the legend: cap height as a share of the chart's largest extent...
pub const LABEL_SHARE: f64 = 0.05;
/// ... and at most this share of a bar's width, so names fit their columns.
pub const LABEL_PER_BAR: f64 = 0.4;
/// A cake's names and shares: cap height, as a share of the cake's radius.
pub const CAKE_LABEL_SHARE: f64 = 0.11;
/// Thickness of the letters, as a share of their cap height.
pub const DEPTH_SHARE: f64 = 0.15;
/// Thickness of a grid line, as a share of a bar's width.
pub const GRID_LINE: f64 = 0.025;
/// ... and at least this share of the chart's largest extent.
pub const GRID_SPAN: f64 = 0.002;
/// Tick values: cap height as a share of the chart's largest extent.
pub const TICK_SHARE: f64 = 0.035;
/// How much of the background's white a grid line mixes into the text colour (faint lines).
pub const GRID_FADE: f64 = 0.7;

/// How far a cake's slice names reach beyond its rim (0 when it has none), so that
/// neighbouring cakes leave them room.
pub(super) fn slice_name_room(chart: &Chart) -> f64 {
    let names = &chart.config.labels;
    if names.is_empty() {
        return 0.0;
    }
    let size = CAKE_LABEL_SHARE * CAKE_RADIUS;
    // The longest name, and the gap between it and the rim.
    names
        .iter()
        .map(|l| font::width(l) * size)
        .fold(0.0, f64::max)
        + size
}

/// The text of a value label: whole numbers as such, others as Rust prints them (the shortest
/// text that reads back as the same number), in scientific notation past 10 characters.
pub fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let plain = format!("{v}");
    if plain.len() <= 10 {
        plain
    } else {
        format!("{v:.3e}")
    }
}

/// A slice's share as a percentage: whole percents from 1 %, one decimal below.
pub fn share_text(share: f64) -> String {
    let percent = share * 100.0;
    if percent >= 0.995 {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}

/// The annotations being laid out: texts and grid lines, added to the bounds as they come.
pub(super) struct Annotations<'a> {
    chart: &'a Chart,
    view: View,
    /// The chart's own geometry (bars or cakes), before any annotation.
    shape: Bounds,
    /// The chart's largest extent.
    span: f64,
    /// The axis's ticks: (height in the scene, label).
    ticks: Vec<(f64, String)>,
    /// Where the floor is (set by [`Annotations::draw`]).
    floor_z: f64,
    texts: Vec<TextDesc>,
    grid: MeshDesc,
    /// The corners of every annotation, for the camera to frame.
    points: Vec<[f64; 3]>,
    legend: Vec<LegendDesc>,
    swatches: Vec<MeshDesc>,
}

impl<'a> Annotations<'a> {
    /// Prepares the annotations of `chart`, whose geometry is `shape` within `bounds`.
    pub(super) fn new(chart: &'a Chart, view: View, shape: &Shape, bounds: Bounds) -> Self {
        let d = [0, 1, 2].map(|i| bounds.hi[i] - bounds.lo[i]);
        let ticks = match shape {
            Shape::Bars(bars) if chart.config.axis => {
                let values = chart
                    .rows
                    .iter()
                    .flat_map(|r| r.cells.iter().filter_map(|c| c.value));
                let (low, high) =
                    values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
                annotate::axis_ticks(low, high, MAX_TICKS)
                    .into_iter()
                    .map(|(value, label)| (bars.height(value), label))
                    .collect()
            }
            _ => Vec::new(),
        };
        Self {
            chart,
            view,
            shape: bounds,
            span: d[0].max(d[1]).max(d[2]).max(1e-3),
            ticks,
            floor_z: 0.0,
            texts: Vec::new(),
            grid: MeshDesc {
                name: "grid".into(),
                ..MeshDesc::default()
            },
            points: Vec::new(),
            legend: Vec::new(),
            swatches: Vec::new(),
        }
    }

    /// The corners of everything the annotations drew.
    pub(super) fn points(&self) -> &[[f64; 3]] {
        &self.points
    }

    /// Adds `p` to what the camera frames and to `bounds`.
    fn mark(&mut self, p: [f64; 3], bounds: &mut Bounds) {
        bounds.add(p);
        self.points.push(p);
    }

    /// The lowest point the annotations reach down to (the axis's lowest tick), so the floor
    /// goes under it.
    pub(super) fn lowest(&self) -> f64 {
        self.ticks.iter().map(|t| t.0).fold(0.0, f64::min)
    }

    /// Lays out every annotation the chart asks for, over a floor at `floor_z`.
    pub(super) fn draw(
        &mut self,
        shape: &Shape,
        floor_z: f64,
        shaders: &mut Shaders<'_>,
        bounds: &mut Bounds,
    ) {
        self.floor_z = floor_z;
        let config = &self.chart.config;
        match shape {
            Shape::Bars(bars) => {
                if config.axis {
                    self.axis(bars, bounds);
                }
                self.column_names(bars, bounds);
                self.row_names(bars, bounds);
                if config.value_labels {
                    self.bar_values(bars, bounds);
                }
            }
            Shape::Cakes(slices) => self.slices(slices, bounds),
        }
        if let Some(title) = config.title.as_deref().filter(|t| !t.is_empty()) {
            self.title(title, bounds);
        }
        if config.legend {
            self.legend(shaders, bounds);
        }
    }

    /// Adds the text and grid shaders (when used) and the grid mesh; gives the texts their
    /// shader.
    pub(super) fn finish(
        mut self,
        shaders: &mut Vec<ShaderDesc>,
        meshes: &mut Vec<MeshDesc>,
    ) -> (Vec<TextDesc>, Vec<LegendDesc>) {
        let text = self.chart.config.text_color;
        meshes.append(&mut self.swatches);
        if !self.texts.is_empty() {
            let at = shaders.len();
            shaders.push(ShaderDesc {
                name: "text".into(),
                color: rgb(text),
                material: Material::Diffuse { roughness: 0.5 },
                vertex_color: false,
            });
            for t in &mut self.texts {
                t.shader = at;
            }
        }
        if !self.grid.faces.is_empty() {
            let fade = |c: f64| c + (1.0 - c) * GRID_FADE;
            self.grid.shader = shaders.len();
            shaders.push(ShaderDesc {
                name: "grid".into(),
                color: rgb(Color {
                    r: fade(text.r),
                    g: fade(text.g),
                    b: fade(text.b),
                }),
                material: Material::Diffuse { roughness: 0.5 },
                vertex_color: false,
            });
            meshes.push(self.grid);
        }
        (self.texts, self.legend)
    }

    /// A cap height for names and values: a share of the chart's extent, at most `most`.
    fn label_size(&self, most: f64) -> f64 {
        (LABEL_SHARE * self.span).min(most)
    }

    /// The chart's own geometry seen from the camera: its extent along `right` and `up`
    /// around its centre, `(centre, [right_lo, right_hi], [up_lo, up_hi])`.
    fn screen_extent(&self) -> ([f64; 3], [f64; 2], [f64; 2]) {
        let c = self.shape.center();
        let (mut r, mut u) = (
            [f64::INFINITY, f64::NEG_INFINITY],
            [f64::INFINITY, f64::NEG_INFINITY],
        );
        for p in self.shape.corners() {
            let d = [0, 1, 2].map(|i| p[i] - c[i]);
            let (a, b) = (dot(d, self.view.right), dot(d, self.view.up));
            r = [r[0].min(a), r[1].max(a)];
            u = [u[0].min(b), u[1].max(b)];
        }
        (c, r, u)
    }

    /// A text facing the camera, its origin at `at`.
    fn billboard(&self, at: [f64; 3]) -> [[f64; 4]; 4] {
        let View { right, up, back } = self.view;
        matrix(right, up, back, at)
    }

    /// A text lying on the floor reading along `along` (horizontal), its letters' tops away
    /// from the reader; `at` on the floor.
    fn flat(&self, at: [f64; 2], along: [f64; 3], size: f64) -> [[f64; 4]; 4] {
        let up = cross([0.0, 0.0, 1.0], along);
        let lift = self.floor_z + DEPTH_SHARE * size / 2.0 + 1e-3 * size;
        matrix(along, up, [0.0, 0.0, 1.0], [at[0], at[1], lift])
    }

    /// Adds a text (nothing when `body` is empty) and its box to `bounds`.
    fn text(
        &mut self,
        name: String,
        body: &str,
        size: f64,
        align: Align,
        matrix: [[f64; 4]; 4],
        bounds: &mut Bounds,
    ) {
        if body.is_empty() || size <= 0.0 || !size.is_finite() {
            return;
        }
        let width = font::width(body) * size;
        let x0 = match align {
            Align::Left => 0.0,
            Align::Center => -width / 2.0,
            Align::Right => -width,
        };
        let depth = DEPTH_SHARE * size;
        for x in [x0, x0 + width] {
            for y in [-font::DESCENT * size, font::ASCENT * size] {
                for z in [-depth / 2.0, depth / 2.0] {
                    self.mark(apply(&matrix, [x, y, z]), bounds);
                }
            }
        }
        self.texts.push(TextDesc {
            name,
            shader: 0,
            body: body.to_owned(),
            size,
            align,
            matrix,
            depth,
        });
    }

    fn title(&mut self, title: &str, bounds: &mut Bounds) {
        let size = TITLE_SHARE * self.span;
        let (c, r, u) = self.screen_extent();
        let View { right, up, .. } = self.view;
        let rise = u[1] + (0.6 + font::DESCENT) * size;
        let across = (r[0] + r[1]) / 2.0;
        let at = [0, 1, 2].map(|i| c[i] + up[i] * rise + right[i] * across);
        let m = self.billboard(at);
        self.text("title".into(), title, size, Align::Center, m, bounds);
    }

    fn legend(&mut self, shaders: &mut Shaders<'_>, bounds: &mut Bounds) {
        let entries = annotate::legend_entries(self.chart);
        if entries.is_empty() {
            return;
        }
        let size = LABEL_SHARE * self.span;
        let (c, r, u) = self.screen_extent();
        let View { right, up, back } = self.view;
        let config = &self.chart.config;
        for (i, entry) in entries.iter().enumerate() {
            let rise = u[1] - size - i as f64 * 1.8 * size;
            let across = r[1] + 1.5 * size;
            let at = [0, 1, 2].map(|k| c[k] + up[k] * rise + right[k] * across);
            let cell = match entry.value {
                VarValue::Color(color) => Cell {
                    value: None,
                    color: Some(color),
                    material: Some(config.default_material),
                },
                VarValue::Material(material) => Cell {
                    value: None,
                    color: Some(config.default_color),
                    material: Some(material),
                },
            };
            // A cube of the variable's colour and material, then its name.
            let corner = [0, 1, 2].map(|k| at[k] - back[k] * size / 2.0);
            let edges = [right, up, back].map(|v| v.map(|x| x * size));
            // Its own mesh: the chart's mesh of that shader may be smooth (a surface's).
            let mut swatch = MeshDesc {
                name: format!("swatch-{i}"),
                shader: shaders.index_for(&cell, false),
                ..MeshDesc::default()
            };
            for p in swatch.add_cuboid(corner, edges) {
                self.mark(p, bounds);
            }
            self.swatches.push(swatch);
            let face = [0, 1, 2].map(|k| at[k] + (right[k] + up[k] + back[k]) * size / 2.0);
            self.legend.push(LegendDesc {
                name: entry.name.clone(),
                swatch: face,
            });
            let name_at = [0, 1, 2].map(|k| at[k] + right[k] * 1.6 * size);
            let m = self.billboard(name_at);
            self.text(
                format!("legend-{i}"),
                &entry.name,
                size,
                Align::Left,
                m,
                bounds,
            );
        }
    }

    /// Columns' names on the floor in front of the front row: across, centred under each
    /// column when they fit; when the longest would need to shrink below 60 %, all run towards
    /// the viewer instead.
    fn column_names(&mut self, bars: &Bars, bounds: &mut Bounds) {
        let names = &self.chart.config.x_labels;
        if names.is_empty() {
            return;
        }
        let base = self.label_size(LABEL_PER_BAR * bars.width);
        let longest = names.iter().map(|n| font::width(n)).fold(0.0, f64::max);
        let fit = if longest > 0.0 {
            0.9 * bars.step_x / longest
        } else {
            base
        };
        let front = -((bars.rows.max(1) - 1) as f64) * bars.step_z - bars.width;
        let gap = 0.3 * bars.width;
        let across = fit >= 0.6 * base;
        let size = if across { base.min(fit) } else { base };
        for (i, name) in names.iter().enumerate().take(bars.cols) {
            let x = i as f64 * bars.step_x + bars.width / 2.0;
            let (m, align) = if across {
                let y = front - gap - font::ASCENT * size;
                (self.flat([x, y], [1.0, 0.0, 0.0], size), Align::Center)
            } else {
                let m = self.flat([x - size / 2.0, front - gap], [0.0, -1.0, 0.0], size);
                (m, Align::Left)
            };
            self.text(format!("x-label-{i}"), name, size, align, m, bounds);
        }
    }

    /// Rows' names on the floor to the right of the last column, each centred on its row.
    fn row_names(&mut self, bars: &Bars, bounds: &mut Bounds) {
        let names = &self.chart.config.z_labels;
        if names.is_empty() {
            return;
        }
        let most =
            (LABEL_PER_BAR * bars.width).min(0.9 * bars.step_z / (font::ASCENT + font::DESCENT));
        let size = self.label_size(most);
        let right = (bars.cols.max(1) - 1) as f64 * bars.step_x + bars.width;
        for (r, name) in names.iter().enumerate().take(bars.rows) {
            let y = -(r as f64) * bars.step_z - bars.width / 2.0 - size / 2.0;
            let m = self.flat([right + 0.3 * bars.width, y], [1.0, 0.0, 0.0], size);
            self.text(format!("z-label-{r}"), name, size, Align::Left, m, bounds);
        }
    }

    /// Each value above its bar (a negative bar's value above zero), or above its point of a
    /// surface, facing the camera.
    fn bar_values(&mut self, bars: &Bars, bounds: &mut Bounds) {
        let base = self.label_size(LABEL_PER_BAR * bars.width);
        let c = &self.chart.config;
        let up = self.view.up;
        for (r, row) in self.chart.rows.iter().enumerate() {
            for (col, cell) in row.cells.iter().enumerate() {
                let Some(value) = cell.value else { continue };
                let h = if bars.surface {
                    bars.height(value)
                } else {
                    let drawn = super::scene::bar_height(
                        value,
                        bars.largest,
                        bars.tallest,
                        c.minimum_bar_height,
                    );
                    let Some(h) = drawn else { continue };
                    h.max(0.0)
                };
                let body = value_text(value);
                let fit = 0.95 * bars.step_x / font::width(&body).max(1e-9);
                let size = base.min(fit);
                let top = [
                    col as f64 * bars.step_x + bars.width / 2.0,
                    -(r as f64) * bars.step_z - bars.width / 2.0,
                    h,
                ];
                let lift = (0.3 + font::DESCENT) * size;
                let at = [0, 1, 2].map(|i| top[i] + up[i] * lift);
                let m = self.billboard(at);
                self.text(
                    format!("value-{r}-{col}"),
                    &body,
                    size,
                    Align::Center,
                    m,
                    bounds,
                );
            }
        }
    }

    /// A cake's slice names outside its rim and shares on the slices, facing the camera.
    fn slices(&mut self, slices: &[Slice], bounds: &mut Bounds) {
        let size = CAKE_LABEL_SHARE * CAKE_RADIUS;
        let names = &self.chart.config.labels;
        let up = self.view.up;
        for (k, slice) in slices.iter().enumerate() {
            let (s, c) = slice.mid.sin_cos();
            if self.chart.config.value_labels {
                let r = 0.62 * CAKE_RADIUS;
                let p = [
                    slice.center[0] + r * c,
                    slice.center[1] + r * s,
                    slice.height,
                ];
                let at = [0, 1, 2].map(|i| p[i] + up[i] * 0.2 * size);
                let m = self.billboard(at);
                let body = share_text(slice.share);
                self.text(format!("share-{k}"), &body, size, Align::Center, m, bounds);
            }
            if let Some(name) = names.get(slice.index) {
                let r = CAKE_RADIUS + 0.5 * size;
                let p = [
                    slice.center[0] + r * c,
                    slice.center[1] + r * s,
                    slice.height,
                ];
                let align = if c > 0.2 {
                    Align::Left
                } else if c < -0.2 {
                    Align::Right
                } else {
                    Align::Center
                };
                let m = self.billboard(p);
                self.text(format!("label-{k}"), name, size, align, m, bounds);
            }
        }
    }

    /// Grid lines at each tick on the back wall (behind row 0) and the left wall, and the tick
    /// values at the front end of the left wall's lines.
    fn axis(&mut self, bars: &Bars, bounds: &mut Bounds) {
        let w = bars.width;
        // Thin, but not lost on a wide chart.
        let t = (GRID_LINE * w).max(GRID_SPAN * self.span);
        let x_left = -0.5 * w;
        let x_right = (bars.cols.max(1) - 1) as f64 * bars.step_x + 1.5 * w;
        let y_back = 0.5 * w;
        let y_front = -((bars.rows.max(1) - 1) as f64) * bars.step_z - 1.5 * w;
        // Tick values stand beside the chart, not in a column: sized by the chart alone.
        let size = TICK_SHARE * self.span;
        let View { right, up, .. } = self.view;
        let ticks = std::mem::take(&mut self.ticks);
        for (i, (z, label)) in ticks.iter().enumerate() {
            let back = (
                [x_left - t, y_back, z - t / 2.0],
                [x_right, y_back + t, z + t / 2.0],
            );
            let left = (
                [x_left - t, y_front, z - t / 2.0],
                [x_left, y_back + t, z + t / 2.0],
            );
            for (lo, hi) in [back, left] {
                self.grid.add_box(lo, hi);
                self.mark(lo, bounds);
                self.mark(hi, bounds);
            }
            // Centred on its line, but never dipping under the floor.
            let drop = (0.5 * size).min((z - self.floor_z) / up[2] - font::DESCENT * size);
            let p = [x_left - t, y_front, *z];
            let at = [0, 1, 2].map(|k| p[k] - right[k] * 0.4 * size - up[k] * drop);
            let m = self.billboard(at);
            self.text(format!("tick-{i}"), label, size, Align::Right, m, bounds);
        }
        self.ticks = ticks;
    }
}

/// The 4x4 matrix with columns `x`, `y`, `z` and origin `at`.
fn matrix(x: [f64; 3], y: [f64; 3], z: [f64; 3], at: [f64; 3]) -> [[f64; 4]; 4] {
    [
        [x[0], y[0], z[0], at[0]],
        [x[1], y[1], z[1], at[1]],
        [x[2], y[2], z[2], at[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// `m` applied to the point `p`.
pub(super) fn apply(m: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + m[i][3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::scene::{SceneDesc, layout, project};

    use crate::chart::tests::sample as chart;

    /// The bodies of `scene`'s texts whose names start with `prefix`, in order.
    fn bodies<'a>(scene: &'a SceneDesc, prefix: &str) -> Vec<&'a str> {
        scene
            .texts
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .map(|t| t.body.as_str())
            .collect()
    }

    const EVERYTHING: &str = "title; Sales by quarter\nx-labels; Q1; Q2; Q3\n\
        z-labels; North; South\nvalue-labels; on\naxis; on\nlegend; on\n";

    fn names(scene: &SceneDesc) -> Vec<&str> {
        scene.texts.iter().map(|t| t.name.as_str()).collect()
    }

    /// The corners of a text's box, in the scene.
    fn corners(t: &TextDesc) -> Vec<[f64; 3]> {
        let width = font::width(&t.body) * t.size;
        let x0 = match t.align {
            Align::Left => 0.0,
            Align::Center => -width / 2.0,
            Align::Right => -width,
        };
        let mut out = Vec::new();
        for x in [x0, x0 + width] {
            for y in [-font::DESCENT * t.size, font::ASCENT * t.size] {
                out.push(apply(&t.matrix, [x, y, 0.0]));
            }
        }
        out
    }

    #[track_caller]
    fn assert_texts_framed(scene: &SceneDesc, what: &str) {
        for t in &scene.texts {
            for p in corners(t) {
                let (u, v) = project(scene, p)
                    .unwrap_or_else(|| panic!("{what}: {} is behind the camera", t.name));
                assert!(
                    (0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&v),
                    "{what}: {} ({:?}) reaches ({u:.3}, {v:.3}), outside the image",
                    t.name,
                    t.body
                );
            }
        }
    }

    #[test]
    fn a_chart_without_text_keys_draws_no_text() {
        let scene = layout(&chart("histogram", "", "1; $red$ 2 $\n3; 4\n"));
        assert!(scene.texts.is_empty() && scene.legend.is_empty());
        let shaders: Vec<&str> = scene.shaders.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(shaders, ["chart-0", "chart-1", "floor"]);
    }

    #[test]
    fn each_text_key_draws_its_texts() {
        let scene = layout(&chart(
            "histogram",
            EVERYTHING,
            "1; $red$ 2 $; 3\n$glass$ 4; ; 6 $\n",
        ));
        let names = names(&scene);
        for want in [
            "title",
            "x-label-0",
            "x-label-2",
            "z-label-0",
            "z-label-1",
            "value-0-0",
            "value-1-2",
            "tick-0",
            "legend-0",
            "legend-1",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // One value per drawn bar (the empty cell has none).
        assert_eq!(names.iter().filter(|n| n.starts_with("value-")).count(), 5);
        // Ticks 0, 2, 4, 6, each with its grid lines on the two walls.
        let ticks = bodies(&scene, "tick-");
        assert_eq!(ticks, ["0", "2", "4", "6"]);
        let grid = scene.meshes.iter().find(|m| m.name == "grid").unwrap();
        assert_eq!(grid.faces.len(), ticks.len() * 2 * 6);
        let legend: Vec<&str> = scene.legend.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(legend, ["red", "glass"]);
        let shaders: Vec<&str> = scene.shaders.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            shaders,
            ["chart-0", "chart-1", "chart-2", "text", "grid", "floor"]
        );
        let text = &scene.shaders[scene.texts[0].shader];
        assert_eq!(text.name, "text");
        assert_eq!(text.color, [0.05, 0.05, 0.05]);
        assert_texts_framed(&scene, "everything");
    }

    #[test]
    fn texts_stay_in_the_image_whatever_their_length() {
        let long = "A rather long title that says a great deal about the data below it";
        for camera in ["", "camera-type; orthographic\n"] {
            for size in ["", "image-size; 100; 900\n", "image-size; 1200; 100\n"] {
                let keys = format!(
                    "title; {long}\nx-labels; January 2026; February 2026; March\n\
                     z-labels; The northern shops; South\nlegend; on\naxis; on\n\
                     value-labels; on\n{camera}"
                );
                let mut c = chart("histogram", &keys, "10; $red$ 200 $; 3\n-4; 5; 6\n");
                if let Some((w, h)) = size
                    .strip_prefix("image-size; ")
                    .and_then(|s| s.trim().split_once("; "))
                {
                    c.config.image_size.width = w.parse().unwrap();
                    c.config.image_size.height = h.parse().unwrap();
                }
                assert_texts_framed(&layout(&c), &format!("{camera:?} {size:?}"));
                let cake = chart(
                    "cake",
                    &format!(
                        "title; {long}\nlabels; One slice; Two\nlegend; on\nvalue-labels; on\n{camera}"
                    ),
                    "$red$ 1 $; 2; 3\n4; 5\n",
                );
                assert_texts_framed(&layout(&cake), &format!("cake {camera:?}"));
            }
        }
    }

    #[test]
    fn no_text_dips_under_the_floor() {
        let scene = layout(&chart("histogram", EVERYTHING, "-3; 1; 7\n2; -8; 5\n"));
        let floor = scene.meshes.iter().find(|m| m.name == "floor").unwrap();
        let floor_z = floor.vertices[0][2];
        for t in &scene.texts {
            for p in corners(t) {
                assert!(
                    p[2] >= floor_z - 1e-9,
                    "{} reaches {} under {floor_z}",
                    t.name,
                    p[2]
                );
            }
        }
    }

    #[test]
    fn column_names_too_long_for_their_columns_run_towards_the_viewer() {
        let short = layout(&chart("histogram", "x-labels; Q1; Q2\n", "1; 2\n"));
        let long = layout(&chart(
            "histogram",
            "x-labels; The first quarter of the year; Q2\n",
            "1; 2\n",
        ));
        let along = |s: &SceneDesc| {
            let m = s.texts[0].matrix;
            [m[0][0], m[1][0], m[2][0]]
        };
        assert_eq!(along(&short), [1.0, 0.0, 0.0]);
        assert_eq!(along(&long), [0.0, -1.0, 0.0]);
        // Across, a name fits its column.
        let t = &short.texts[0];
        assert!(font::width(&t.body) * t.size <= 1.5);
    }

    #[test]
    fn a_cake_names_its_slices_and_shows_their_shares() {
        let scene = layout(&chart(
            "cake",
            "labels; Rust; Go; ; Other\nvalue-labels; on\n",
            "40; 25; 20; -1; 15\n",
        ));
        let shares = bodies(&scene, "share-");
        assert_eq!(shares, ["40%", "25%", "20%", "15%"]);
        // Names follow the row's values: the third is empty (no text), the fourth names -1,
        // which has no slice, and 15 has no name.
        let labels = bodies(&scene, "label-");
        assert_eq!(labels, ["Rust", "Go"]);
    }

    #[test]
    fn value_and_share_texts_read_well() {
        assert_eq!(value_text(12.0), "12");
        assert_eq!(value_text(-3.0), "-3");
        assert_eq!(value_text(0.25), "0.25");
        assert_eq!(value_text(1.0 / 3.0), "3.333e-1");
        assert_eq!(value_text(2e20), "2.000e20");
        assert_eq!(share_text(0.4), "40%");
        assert_eq!(share_text(0.0995), "10%");
        assert_eq!(share_text(0.0125), "1%");
        assert_eq!(share_text(0.0042), "0.4%");
    }

    #[test]
    fn a_legend_swatch_is_drawn_with_its_variables_shader() {
        let scene = layout(&chart("histogram", "legend; on\n", "1; $red$ 2 $\n"));
        let red = scene
            .shaders
            .iter()
            .position(|s| s.color == [1.0, 0.0, 0.0])
            .unwrap();
        let meshes: Vec<&str> = scene
            .meshes
            .iter()
            .filter(|m| m.shader == red)
            .map(|m| m.name.as_str())
            .collect();
        // The bar's mesh and the swatch's own.
        assert_eq!(meshes, ["chart-1", "swatch-0"]);
        let swatch = scene.legend[0].swatch;
        let (u, v) = project(&scene, swatch).unwrap();
        assert!((0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&v));
    }
}
