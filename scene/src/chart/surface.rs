//! The surface chart (`graph-type; surface`): one smooth surface through a grid of heights,
//! coloured by height through `surface-colors`.
//!
//! Each value is a point of the grid: column `c` at `x = c + 0.5`, row `r` at `y = -(r + 0.5)`
//! (where a histogram's bar of width 1 with no gaps would stand, so names and the axis are
//! placed as for a histogram), at the height the value is drawn with (proportional to it, as
//! bars are). Each point owns the square around it, out to half-way to its neighbours, drawn
//! as up to four quads:
//!
//! - the quad towards a neighbour column and row meets the point itself, the two edge
//!   midpoints and the centre of the grid cell, at the mean height of the values there;
//! - a missing value (or a row shorter than the longest) owns nothing: a hole one cell wide;
//! - at the edge of the grid a point's square stops at the point (but a grid one row or one
//!   column thick is drawn half a cell wide on each side, flat across).
//!
//! Squares of one shader share their vertices (a 100x100 grid has 199x199 of them). Shading is
//! smooth: every vertex has the normal of the height field (central differences
//! over the values), so the squares join without a crease. The colour at each vertex is the
//! ramp's at the value there; a point in a range that sets a colour draws its square in that
//! colour, and a range that sets a material gives its square that material (the widest range
//! wins, as for bars).

use std::collections::HashMap;

use super::model::{Cell, Chart, Color};
use super::scene::{Bars, Bounds, MIN_TALLEST, Shaders, TALLEST_SHARE, normalize};

/// The colour of `value` on the ramp `colors` (evenly spaced from `low` to `high`, linear in
/// between); the middle of the ramp when `low == high`.
pub fn ramp(colors: &[Color], low: f64, high: f64, value: f64) -> [f64; 3] {
    let Some(last) = colors.len().checked_sub(1) else {
        return [0.0; 3];
    };
    let t = if high > low {
        ((value - low) / (high - low)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let at = t * last as f64;
    let i = (at.floor() as usize).min(last.saturating_sub(1));
    let f = if last == 0 { 0.0 } else { at - i as f64 };
    let (a, b) = (colors[i], colors[(i + 1).min(last)]);
    // Exact at the stops (the ends are the ramp's own colours).
    let mix = |x: f64, y: f64| x * (1.0 - f) + y * f;
    [mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)]
}

/// The grid of values: `rows × cols`, `None` where a value is missing or a row is short.
struct Grid<'a> {
    chart: &'a Chart,
    rows: usize,
    cols: usize,
}

impl Grid<'_> {
    fn cell(&self, r: isize, c: isize) -> Option<&Cell> {
        let (r, c) = (usize::try_from(r).ok()?, usize::try_from(c).ok()?);
        self.chart.rows.get(r)?.cells.get(c)
    }

    fn value(&self, r: isize, c: isize) -> Option<f64> {
        self.cell(r, c)?.value.filter(|v| v.is_finite())
    }

    fn inside(&self, r: isize, c: isize) -> bool {
        r >= 0 && c >= 0 && (r as usize) < self.rows && (c as usize) < self.cols
    }
}

/// Lays the surface out, adding its squares to the shaders' meshes; returns the grid as
/// [`Bars`] of width 1 with no gaps, for the annotations.
pub(super) fn surface(chart: &Chart, shaders: &mut Shaders<'_>, bounds: &mut Bounds) -> Bars {
    let grid = Grid {
        chart,
        rows: chart.rows.len(),
        cols: chart.rows.iter().map(|r| r.cells.len()).max().unwrap_or(0),
    };
    let values = || {
        chart
            .rows
            .iter()
            .flat_map(|r| r.cells.iter().filter_map(|c| c.value))
    };
    let largest = values().fold(0.0_f64, |m, v| m.max(v.abs()));
    let low = values().fold(f64::INFINITY, f64::min);
    let high = values().fold(f64::NEG_INFINITY, f64::max);
    let extent = grid.cols.max(grid.rows) as f64;
    let bars = Bars {
        width: 1.0,
        step_x: 1.0,
        step_z: 1.0,
        cols: grid.cols,
        rows: grid.rows,
        largest,
        tallest: (extent * TALLEST_SHARE).max(MIN_TALLEST),
        surface: true,
    };
    let colors = &chart.config.surface_colors;
    // The normal at each point, from its neighbours' heights (one-sided at edges and holes).
    let normal = |r: isize, c: isize| -> Option<[f64; 3]> {
        let h = bars.height(grid.value(r, c)?);
        let slope = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(a), Some(b)) => (bars.height(b) - bars.height(a)) / 2.0,
            (Some(a), None) => h - bars.height(a),
            (None, Some(b)) => bars.height(b) - h,
            (None, None) => 0.0,
        };
        let dx = slope(grid.value(r, c - 1), grid.value(r, c + 1));
        // Rows run towards -Y.
        let dy = -slope(grid.value(r - 1, c), grid.value(r + 1, c));
        Some(normalize([-dx, -dy, 1.0]))
    };
    let mean = |items: &[Option<f64>]| {
        let present: Vec<f64> = items.iter().flatten().copied().collect();
        present.iter().sum::<f64>() / present.len().max(1) as f64
    };
    let mean_normal = |items: &[Option<[f64; 3]>]| {
        let mut sum = [0.0; 3];
        for n in items.iter().flatten() {
            for i in 0..3 {
                sum[i] += n[i];
            }
        }
        normalize(sum)
    };
    // (mesh, row and column on the half-grid) → vertex index in that mesh.
    let mut shared: HashMap<(usize, i64, i64), u32> = HashMap::new();
    for r in 0..grid.rows as isize {
        for c in 0..grid.cols as isize {
            let Some(v) = grid.value(r, c) else { continue };
            let Some(cell) = grid.cell(r, c) else {
                continue;
            };
            let at = shaders.index_for(cell, true);
            let mesh = shaders.mesh(at);
            let own_normal = normal(r, c);
            for (dr, dc) in [(-1, -1), (-1, 1), (1, 1), (1, -1)] {
                // Towards the grid's edge a square stops at the point, except across a grid one
                // point thick, which would otherwise have no area.
                if !(grid.inside(r, c + dc) || grid.cols == 1)
                    || !(grid.inside(r + dr, c) || grid.rows == 1)
                {
                    continue;
                }
                let across = grid.value(r, c + dc);
                let along = grid.value(r + dr, c);
                let corner = grid.value(r + dr, c + dc);
                let values = [
                    v,
                    mean(&[Some(v), across]),
                    mean(&[Some(v), across, along, corner]),
                    mean(&[Some(v), along]),
                ];
                let (rf, cf) = (r as f64, c as f64);
                let (hr, hc) = (dr as f64 / 2.0, dc as f64 / 2.0);
                let places = [(rf, cf), (rf, cf + hc), (rf + hr, cf + hc), (rf + hr, cf)];
                let normals = [
                    own_normal,
                    Some(mean_normal(&[own_normal, normal(r, c + dc)])),
                    Some(mean_normal(&[
                        own_normal,
                        normal(r, c + dc),
                        normal(r + dr, c),
                        normal(r + dr, c + dc),
                    ])),
                    Some(mean_normal(&[own_normal, normal(r + dr, c)])),
                ];
                let mut corners: Vec<usize> = vec![0, 1, 2, 3];
                // Counter-clockwise seen from above: Blender's Y runs against the rows.
                if dc * -dr < 0 {
                    corners.reverse();
                    corners.rotate_right(1);
                }
                let mut face = Vec::with_capacity(4);
                for &k in &corners {
                    let (pr, pc) = places[k];
                    // A place on the half-grid has one height, normal and colour whichever
                    // square reaches it, so squares of one mesh share their vertices there.
                    let key = (at, (2.0 * pr) as i64, (2.0 * pc) as i64);
                    let next = mesh.vertices.len() as u32;
                    let index = *shared.entry(key).or_insert(next);
                    if index == next {
                        let p = [pc + 0.5, -(pr + 0.5), bars.height(values[k])];
                        bounds.add(p);
                        mesh.vertices.push(p);
                        mesh.normals.push(normals[k].unwrap_or([0.0, 0.0, 1.0]));
                        if cell.color.is_none() {
                            mesh.colors.push(ramp(colors, low, high, values[k]));
                        }
                    }
                    face.push(index);
                }
                mesh.faces.push(face);
            }
        }
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::model::DEFAULT_SURFACE_COLORS;
    use crate::chart::scene::{SceneDesc, layout};

    fn chart(keys: &str, data: &str) -> Chart {
        crate::chart::tests::sample("surface", keys, data)
    }

    fn faces(scene: &SceneDesc) -> usize {
        scene
            .meshes
            .iter()
            .filter(|m| m.name.starts_with("chart-"))
            .map(|m| m.faces.len())
            .sum()
    }

    #[test]
    fn the_ramp_runs_from_its_first_colour_to_its_last() {
        let c = &DEFAULT_SURFACE_COLORS;
        let first = [c[0].r, c[0].g, c[0].b];
        let last = [c[4].r, c[4].g, c[4].b];
        assert_eq!(ramp(c, 2.0, 6.0, 2.0), first);
        assert_eq!(ramp(c, 2.0, 6.0, 6.0), last);
        assert_eq!(ramp(c, 2.0, 6.0, 3.0), [c[1].r, c[1].g, c[1].b]);
        // Half-way between two stops: their mean.
        let two = [
            Color {
                r: 0.0,
                g: 0.0,
                b: 0.0,
            },
            Color {
                r: 1.0,
                g: 0.5,
                b: 0.0,
            },
        ];
        assert_eq!(ramp(&two, 0.0, 10.0, 5.0), [0.5, 0.25, 0.0]);
        assert_eq!(ramp(&two, 0.0, 10.0, 50.0), [1.0, 0.5, 0.0]);
        assert_eq!(ramp(&two, 3.0, 3.0, 3.0), [0.5, 0.25, 0.0]);
    }

    #[test]
    fn each_point_owns_the_square_around_it_and_a_missing_value_leaves_a_hole() {
        // 3x3: the corner points own one quad, edge points two, the middle four.
        let full = layout(&chart("", "1; 2; 3\n4; 5; 6\n7; 8; 9\n"));
        assert_eq!(faces(&full), 4 * 4);
        // Shared on the half-grid: 5x5 vertices.
        assert_eq!(full.meshes[0].vertices.len(), 25);
        let holed = layout(&chart("", "1; 2; 3\n4; ; 6\n7; 8; 9\n"));
        assert_eq!(faces(&holed), 4 * 4 - 4);
        // One row, or one value: drawn with some width.
        assert_eq!(faces(&layout(&chart("", "1; 2; 3\n"))), 2 + 4 + 2);
        assert_eq!(faces(&layout(&chart("", "5\n"))), 4);
        // Every vertex has a normal and (no range sets a colour) a colour.
        for mesh in full.meshes.iter().filter(|m| m.name.starts_with("chart-")) {
            assert_eq!(mesh.normals.len(), mesh.vertices.len());
            assert_eq!(mesh.colors.len(), mesh.vertices.len());
            assert!(full.shaders[mesh.shader].vertex_color);
        }
    }

    #[test]
    fn the_lowest_and_highest_points_take_the_ramps_end_colours() {
        let scene = layout(&chart(
            "surface-colors; color(0, 0, 1); color(1, 1, 0)\n",
            "0; 1; 2\n3; 4; 5\n",
        ));
        let mesh = scene.meshes.iter().find(|m| m.name == "chart-0").unwrap();
        let top = mesh.vertices.iter().map(|v| v[2]).fold(f64::MIN, f64::max);
        let bottom = mesh.vertices.iter().map(|v| v[2]).fold(f64::MAX, f64::min);
        for (v, color) in mesh.vertices.iter().zip(&mesh.colors) {
            if v[2] == top {
                assert_eq!(*color, [1.0, 1.0, 0.0]);
            }
            if v[2] == bottom {
                assert_eq!(*color, [0.0, 0.0, 1.0]);
            }
        }
    }

    #[test]
    fn a_flat_surface_is_lit_from_straight_above_and_a_slope_leans() {
        let flat = layout(&chart("", "3; 3\n3; 3\n"));
        let mesh = &flat.meshes[0];
        assert!(mesh.normals.iter().all(|n| *n == [0.0, 0.0, 1.0]));
        // Rising along X: normals lean towards -X.
        let slope = layout(&chart("", "0; 10\n0; 10\n"));
        assert!(
            slope.meshes[0]
                .normals
                .iter()
                .all(|n| n[0] < 0.0 && n[2] > 0.0)
        );
    }

    #[test]
    fn a_range_colours_its_region_and_a_material_keeps_the_ramp() {
        let scene = layout(&chart("", "1; $red$ 2 $; 3\n$glossy$ 4; 5 $; 6\n"));
        let red = scene
            .shaders
            .iter()
            .position(|s| s.color == [1.0, 0.0, 0.0] && !s.vertex_color)
            .unwrap();
        let mesh = scene.meshes.iter().find(|m| m.shader == red).unwrap();
        // The red point is on the top edge: two quads, no vertex colours.
        assert_eq!(mesh.faces.len(), 2);
        assert!(mesh.colors.is_empty());
        let shiny = scene
            .shaders
            .iter()
            .position(|s| {
                s.vertex_color && matches!(s.material, crate::chart::Material::Glossy { .. })
            })
            .unwrap();
        let mesh = scene.meshes.iter().find(|m| m.shader == shiny).unwrap();
        assert_eq!(mesh.colors.len(), mesh.vertices.len());
    }

    #[test]
    fn surface_faces_point_up() {
        let scene = layout(&chart("", "1; 2; 3\n4; 5; 6\n"));
        for mesh in scene.meshes.iter().filter(|m| m.name.starts_with("chart-")) {
            for face in &mesh.faces {
                let p: Vec<[f64; 3]> = face.iter().map(|&i| mesh.vertices[i as usize]).collect();
                let e1 = [0, 1, 2].map(|i| p[1][i] - p[0][i]);
                let e2 = [0, 1, 2].map(|i| p[2][i] - p[0][i]);
                let z = e1[0] * e2[1] - e1[1] * e2[0];
                assert!(z > 0.0, "a face of {} points down", mesh.name);
            }
        }
    }
}
