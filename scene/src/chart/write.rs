//! The writer: a [`Chart`] back to text, in canonical form.

use std::fmt::Write as _;

use super::model::{
    Chart, Color, GraphType, Keyword, Material, MaterialKind, Row, Step, Switch, VarValue,
};

/// Writes `chart` in canonical form: lower-case section and key names, `end` closing each
/// section, one key per line (every optional key spelt out, except an empty `camera-transform`
/// and the keys of the other graph type), a `vars` section only when there are variables, and
/// the rows with their ranges re-emitted (`$name$` before the first value a range covers, `$`
/// after the last).
///
/// [`parse`](super::parse) reads the output back to an equal chart whenever `chart` came from
/// `parse`, or satisfies what `parse` checks (at least one row, at least one cell per row,
/// ranges nested and naming variables, numbers in their ranges).
pub fn write(chart: &Chart) -> String {
    let mut out = String::new();
    let config = &chart.config;
    out.push_str("config\n");
    let _ = writeln!(
        out,
        "image-size; {}; {}",
        config.image_size.width, config.image_size.height
    );
    let _ = writeln!(out, "image-type; {}", config.image_type.name());
    let _ = writeln!(out, "graph-type; {}", config.graph_type.name());
    let _ = writeln!(
        out,
        "default-material; {}",
        material(&config.default_material)
    );
    let _ = writeln!(out, "default-color; {}", color(&config.default_color));
    let _ = writeln!(out, "floor-color; {}", color(&config.floor_color));
    let _ = writeln!(out, "camera-type; {}", config.camera_type.name());
    if !config.camera_transform.steps.is_empty() {
        let steps: Vec<String> = config
            .camera_transform
            .steps
            .iter()
            .map(|step| match step {
                Step::Translate { x, y, z } => format!("translate({x}, {y}, {z})"),
                Step::Rotate {
                    degrees,
                    axis: [x, y, z],
                } => format!("rotate({degrees}, {x}, {y}, {z})"),
            })
            .collect();
        let _ = writeln!(out, "camera-transform; {}", steps.join("."));
    }
    let _ = writeln!(out, "background-strength; {}", config.background_strength);
    match config.graph_type {
        GraphType::Histogram => {
            let _ = writeln!(out, "bar-width; {}", config.bar_width);
            let _ = writeln!(
                out,
                "bar-separation; {}, {}",
                config.bar_separation.x, config.bar_separation.z
            );
            let _ = writeln!(out, "minimum-bar-height; {}", config.minimum_bar_height);
        }
        GraphType::Cake => {
            let _ = writeln!(out, "cake-height; {}", config.cake_height);
        }
        GraphType::Surface => {
            let colors: Vec<String> = config.surface_colors.iter().map(color).collect();
            let _ = writeln!(out, "surface-colors; {}", colors.join("; "));
        }
    }
    if let Some(title) = &config.title {
        let _ = writeln!(out, "title; {}", text(title));
    }
    let lists: Vec<(&str, &Vec<String>)> = match config.graph_type {
        GraphType::Histogram | GraphType::Surface => vec![
            ("x-labels", &config.x_labels),
            ("z-labels", &config.z_labels),
        ],
        GraphType::Cake => vec![("labels", &config.labels)],
    };
    for (key, labels) in lists.iter().filter(|(_, l)| !l.is_empty()) {
        let texts: Vec<String> = labels.iter().map(|l| text(l)).collect();
        let _ = writeln!(out, "{key}; {}", texts.join("; "));
    }
    let switch = |on: bool| if on { Switch::On } else { Switch::Off }.name();
    let _ = writeln!(out, "value-labels; {}", switch(config.value_labels));
    if config.graph_type != GraphType::Cake {
        let _ = writeln!(out, "axis; {}", switch(config.axis));
    }
    let _ = writeln!(out, "legend; {}", switch(config.legend));
    let _ = writeln!(out, "text-color; {}", color(&config.text_color));
    out.push_str("end\n");
    if !chart.vars.is_empty() {
        out.push_str("\nvars\n");
        for var in &chart.vars.entries {
            let value = match &var.value {
                VarValue::Color(c) => color(c),
                VarValue::Material(m) => material(m),
            };
            let _ = writeln!(out, "{}; {value}", var.name);
        }
        out.push_str("end\n");
    }
    out.push_str("\ndata\n");
    for row in &chart.rows {
        write_row(&mut out, row);
        out.push('\n');
    }
    out.push_str("end\n");
    out
}

/// A title or label as the parser reads it back: bare when it can be, else quoted with `""`
/// for each `"`.
fn text(t: &str) -> String {
    let bare = !t.is_empty() && !t.contains(';') && !t.starts_with('"') && t.trim() == t;
    if bare {
        t.to_owned()
    } else {
        format!("\"{}\"", t.replace('"', "\"\""))
    }
}

fn color(c: &Color) -> String {
    format!("color({}, {}, {})", c.r, c.g, c.b)
}

fn material(m: &Material) -> String {
    let diffuse = MaterialKind::Diffuse.name();
    let (kind, distribution, roughness, ior) = match m {
        Material::Diffuse { roughness } => return format!("material({diffuse}, {roughness})"),
        Material::Glossy {
            distribution,
            roughness,
            ior,
        } => (MaterialKind::Glossy, distribution, roughness, ior),
        Material::Glass {
            distribution,
            roughness,
            ior,
        } => (MaterialKind::Glass, distribution, roughness, ior),
    };
    format!(
        "material({}, {}, {roughness}, {ior})",
        kind.name(),
        distribution.name()
    )
}

/// A range marker at a cell boundary: an opener (with its variable) or a closer.
type Marker<'a> = (usize, Option<&'a str>);

fn write_row(out: &mut String, row: &Row) {
    let n = row.cells.len();
    // Openers in list order, each preceded by the closers of the ranges that end before it.
    let mut markers: Vec<Marker<'_>> = Vec::with_capacity(row.ranges.len() * 2);
    let mut ends: Vec<usize> = Vec::new();
    for range in &row.ranges {
        while let Some(&end) = ends.last().filter(|&&end| end <= range.start) {
            markers.push((end.min(n), None));
            ends.pop();
        }
        markers.push((range.start.min(n), Some(&range.var)));
        ends.push(range.end);
    }
    while let Some(end) = ends.pop() {
        markers.push((end.min(n), None));
    }
    let mut next = 0;
    let emit = |out: &mut String, boundary: usize, next: &mut usize| {
        while let Some(&(_, var)) = markers.get(*next).filter(|(at, _)| *at <= boundary) {
            match var {
                Some(var) => {
                    out.push_str(var);
                    out.push('$');
                }
                None => out.push('$'),
            }
            out.push(' ');
            *next += 1;
        }
    };
    for (i, cell) in row.cells.iter().enumerate() {
        if i > 0 {
            // Closers that come first at this boundary read best right after the previous value.
            if row.cells[i - 1].value.is_some() {
                while markers
                    .get(next)
                    .is_some_and(|&(at, var)| at <= i && var.is_none())
                {
                    out.push_str(" $");
                    next += 1;
                }
            }
            out.push_str("; ");
        }
        emit(out, i, &mut next);
        if let Some(value) = cell.value {
            let _ = write!(out, "{value}");
        }
    }
    let last_missing = row.cells.last().is_some_and(|cell| cell.value.is_none());
    if next < markers.len() {
        // Markers after the last value; after an empty last cell they need a segment of their own.
        out.push_str(if last_missing { "; " } else { " " });
        emit(out, usize::MAX, &mut next);
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
    } else if last_missing {
        out.push(';');
    }
}
