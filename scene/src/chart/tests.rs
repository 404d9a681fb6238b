//! Tests of the chart format: examples, one test per diagnostic, and round-trip properties.

use proptest::prelude::*;

use super::*;

/// A valid histogram; tests replace one line (1-based) to break it at a known place.
const BASE: [&str; 16] = [
    "CONFIG",
    "image-size; 64; 48",
    "image-type; png",
    "graph-type; histogram",
    "default-material; material(diffuse, 0.5)",
    "default-color; color(1, 0, 0)",
    "floor-color; color(0.9, 0.9, 0.9)",
    "END",
    "VARS",
    "$blue; color(0, 0, 1)",
    "$red; color(1, 0, 0)",
    "$shiny; material(glossy, sharp, 0.1, 1.5)",
    "END",
    "DATA",
    "1; 2; 3",
    "END",
];

/// `BASE` with line `no` replaced by `text` (`None`: removed).
fn with_line(no: usize, text: Option<&str>) -> String {
    let mut lines: Vec<&str> = BASE.to_vec();
    match text {
        Some(text) => lines[no - 1] = text,
        None => {
            lines.remove(no - 1);
        }
    }
    lines.join("\n")
}

/// The diagnostics of `text`, displayed.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(chart) => panic!("parsed: {chart:?}"),
        Err(errors) => errors.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

/// Asserts that `text` fails with exactly the one diagnostic `expected`.
#[track_caller]
fn only_error(text: &str, expected: &str) {
    assert_eq!(errors(text), [expected]);
}

fn rgb(r: f64, g: f64, b: f64) -> Color {
    Color { r, g, b }
}

fn cell(value: Option<f64>, color: Option<Color>, material: Option<Material>) -> Cell {
    Cell {
        value,
        color,
        material,
    }
}

fn range(var: &str, start: usize, end: usize) -> Range {
    Range {
        var: var.to_owned(),
        start,
        end,
    }
}

const HISTOGRAM: &str = "\
# A histogram with every key.
CONFIG
image-size; 800; 600
image-type; PNG
graph-type; histogram
default-material; material(diffuse, 0.5)
default-color; color(0.2, 0.4, 0.8)
floor-color; color(0.9, 0.9, 0.9)
camera-type; orthographic
camera-transform; translate(0, 4, -2).rotate(20, 0, 1, 0)
background-strength; 0.3
bar-width; 0.8
bar-separation; 0.2, 0.4
minimum-bar-height; 0.05
END

VARS
$red; color(1, 0, 0)
$glass; material(glass, SHARP, 0, 1.45)
END_VARS
Data
10; $red$ 20 $; 30
$glass$ 1; ; -3 $
0; $red$ $glass$ 5 $; 6 $;
end_data
";

#[test]
fn histogram_example_parses_to_the_model() {
    let chart = parse(HISTOGRAM).unwrap();
    let glass = Material::Glass {
        distribution: Distribution::Sharp,
        roughness: 0.0,
        ior: 1.45,
    };
    let red = rgb(1.0, 0.0, 0.0);
    let expected = Chart {
        config: Config {
            image_size: ImageSize {
                width: 800,
                height: 600,
            },
            image_type: ImageType::Png,
            graph_type: GraphType::Histogram,
            default_material: Material::Diffuse { roughness: 0.5 },
            default_color: rgb(0.2, 0.4, 0.8),
            floor_color: rgb(0.9, 0.9, 0.9),
            camera_type: CameraType::Orthographic,
            camera_transform: Transform {
                steps: vec![
                    Step::Translate {
                        x: 0.0,
                        y: 4.0,
                        z: -2.0,
                    },
                    Step::Rotate {
                        degrees: 20.0,
                        axis: [0.0, 1.0, 0.0],
                    },
                ],
            },
            background_strength: 0.3,
            bar_width: 0.8,
            bar_separation: BarSeparation { x: 0.2, z: 0.4 },
            minimum_bar_height: 0.05,
            cake_height: DEFAULT_CAKE_HEIGHT,
            // No text key: nothing to read; a file from before them renders as it did.
            title: None,
            x_labels: Vec::new(),
            z_labels: Vec::new(),
            labels: Vec::new(),
            value_labels: false,
            axis: false,
            legend: false,
            text_color: DEFAULT_TEXT_COLOR,
            surface_colors: DEFAULT_SURFACE_COLORS.to_vec(),
        },
        vars: Vars {
            entries: vec![
                Var {
                    name: "$red".into(),
                    value: VarValue::Color(red),
                },
                Var {
                    name: "$glass".into(),
                    value: VarValue::Material(glass),
                },
            ],
        },
        rows: vec![
            Row {
                cells: vec![
                    cell(Some(10.0), None, None),
                    cell(Some(20.0), Some(red), None),
                    cell(Some(30.0), None, None),
                ],
                ranges: vec![range("$red", 1, 2)],
            },
            Row {
                cells: vec![
                    cell(Some(1.0), None, Some(glass)),
                    cell(None, None, Some(glass)),
                    cell(Some(-3.0), None, Some(glass)),
                ],
                ranges: vec![range("$glass", 0, 3)],
            },
            Row {
                cells: vec![
                    cell(Some(0.0), None, None),
                    cell(Some(5.0), Some(red), Some(glass)),
                    cell(Some(6.0), Some(red), None),
                ],
                ranges: vec![range("$red", 1, 3), range("$glass", 1, 2)],
            },
        ],
    };
    assert_eq!(chart, expected);
}

#[test]
fn cake_example_parses_to_the_model_with_defaults() {
    let text = "config\nimage-size; 640; 640\nimage-type; jpg\ngraph-type; CAKE\n\
                default-material; material(glossy, beckmann, 0.2, 1.5)\n\
                default-color; color(0.8, 0.8, 0.1)\nfloor-color; color(1, 1, 1)\n\
                cake-height; 0.5\nend\ndata\n40; 35; 25\nend\n";
    let chart = parse(text).unwrap();
    let mut config = Config::new(
        ImageSize {
            width: 640,
            height: 640,
        },
        ImageType::Jpg,
        GraphType::Cake,
        Material::Glossy {
            distribution: Distribution::Beckmann,
            roughness: 0.2,
            ior: 1.5,
        },
        rgb(0.8, 0.8, 0.1),
        rgb(1.0, 1.0, 1.0),
    );
    config.cake_height = 0.5;
    assert_eq!(config.camera_type, CameraType::Perspective);
    assert_eq!(config.background_strength, DEFAULT_BACKGROUND_STRENGTH);
    let expected = Chart {
        config,
        vars: Vars::default(),
        rows: vec![Row {
            cells: [40.0, 35.0, 25.0]
                .map(|v| cell(Some(v), None, None))
                .to_vec(),
            ranges: vec![],
        }],
    };
    assert_eq!(chart, expected);
}

#[test]
fn range_forms_from_the_issue_parse_alike() {
    for (row, cells, expected) in [
        ("10; $blue$ 20 $; 30", 3, vec![range("$blue", 1, 2)]),
        ("1; $blue$5; 6; 7$; 8", 5, vec![range("$blue", 1, 4)]),
        ("$red$ 1; 2; 3 $", 3, vec![range("$red", 0, 3)]),
        ("$red$1;2;3$", 3, vec![range("$red", 0, 3)]),
        ("1 $red$; 2 $; 3", 3, vec![range("$red", 1, 2)]),
        ("1; $red$ $; 3", 3, vec![range("$red", 1, 1)]),
        ("1; 2;", 2, vec![]),
        ("1; ;", 2, vec![]),
        (";", 1, vec![]),
    ] {
        let chart = parse(&with_line(15, Some(row))).unwrap();
        assert_eq!(chart.rows[0].cells.len(), cells, "{row}");
        assert_eq!(chart.rows[0].ranges, expected, "{row}");
    }
}

#[test]
fn the_widest_range_wins_and_properties_combine() {
    let chart = parse(&with_line(
        15,
        Some("$blue$ 1; $red$ $shiny$ 2 $ $; 3 $; 4"),
    ))
    .unwrap();
    let blue = rgb(0.0, 0.0, 1.0);
    let shiny = Material::Glossy {
        distribution: Distribution::Sharp,
        roughness: 0.1,
        ior: 1.5,
    };
    assert_eq!(
        chart.rows[0].cells,
        [
            cell(Some(1.0), Some(blue), None),
            cell(Some(2.0), Some(blue), Some(shiny)),
            cell(Some(3.0), Some(blue), None),
            cell(Some(4.0), None, None),
        ]
    );
}

#[test]
fn zero_negative_and_missing_values_parse() {
    let chart = parse(&with_line(15, Some("0; -1.5; ; -0; 2e3;;"))).unwrap();
    let values: Vec<Option<f64>> = chart.rows[0].cells.iter().map(|c| c.value).collect();
    assert_eq!(
        values,
        [Some(0.0), Some(-1.5), None, Some(0.0), Some(2000.0), None]
    );
}

#[test]
fn vars_may_follow_data() {
    let text = "DATA\n$x$ 1 $\nEND\nCONFIG\nimage-size; 1; 1\nimage-type; bmp\ngraph-type; cake\n\
                default-material; material(diffuse, 0)\ndefault-color; color(0, 0, 0)\n\
                floor-color; color(0, 0, 0)\nEND\nVARS\n$x; color(0, 1, 0)\nEND";
    let chart = parse(text).unwrap();
    assert_eq!(chart.rows[0].cells[0].color, Some(rgb(0.0, 1.0, 0.0)));
}

// ---- one test per diagnostic ----

#[test]
fn a_diagnostic_spans_exactly_the_text_it_found() {
    let mut lines: Vec<&str> = BASE.to_vec();
    lines[2] = "imgae-type; png";
    lines[4] = "default-material; material(difuse, 0.5)";
    lines[11] = "$shiny; material(glossy, bekmann, 0.1, 1.5)";
    lines[14] = "$bleu$ 1 $";
    let text = lines.join("\n");
    let errors = parse(&text).unwrap_err();
    let spans: Vec<(usize, usize, String)> = errors
        .diagnostics()
        .iter()
        .filter(|d| d.length > 0)
        .map(|d| {
            let source: String = lines[d.line - 1]
                .chars()
                .skip(d.column - 1)
                .take(d.length)
                .collect();
            assert_eq!(source, d.found, "{d}");
            (d.line, d.column, source)
        })
        .collect();
    assert_eq!(
        spans,
        [
            (3, 1, "imgae-type".to_owned()),
            (5, 28, "difuse".to_owned()),
            (12, 26, "bekmann".to_owned()),
            (15, 1, "$bleu".to_owned()),
        ]
    );
    // Something missing spans nothing: here the required `image-type`, reported at `CONFIG`.
    let missing = &errors.diagnostics()[0];
    assert_eq!((missing.line, missing.length), (1, 0), "{missing}");
    assert_eq!(
        missing.message(),
        "expected the key `image-type` in this `CONFIG` section"
    );
}

#[test]
fn misspelt_material_kind_suggests_the_name() {
    only_error(
        &with_line(5, Some("default-material; material(difuse, 0.5)")),
        "line 5, column 28: expected `diffuse`, `glossy` or `glass`, found \"difuse\"; did you mean `diffuse`?",
    );
}

#[test]
fn misspelt_distribution_suggests_the_name() {
    only_error(
        &with_line(12, Some("$shiny; material(glossy, bekmann, 0.1, 1.5)")),
        "line 12, column 26: expected `beckmann` or `sharp`, found \"bekmann\"; did you mean `beckmann`?",
    );
}

#[test]
fn misspelt_key_suggests_the_key() {
    let errors = errors(&with_line(3, Some("imgae-type; png")));
    assert_eq!(
        errors,
        [
            "line 1, column 1: expected the key `image-type` in this `CONFIG` section",
            "line 3, column 1: expected a CONFIG key, found \"imgae-type\"; did you mean `image-type`?",
        ]
    );
}

#[test]
fn misspelt_section_suggests_the_section() {
    let errors = errors(&with_line(9, Some("VRAS")));
    assert_eq!(
        errors[0],
        "line 9, column 1: expected a section (`CONFIG`, `VARS` or `DATA`), found \"VRAS\"; did you mean `VARS`?"
    );
}

#[test]
fn misspelt_keyword_value_suggests_the_value() {
    only_error(
        &with_line(4, Some("graph-type; histogran")),
        "line 4, column 13: expected `histogram`, `cake` or `surface`, found \"histogran\"; did you mean `histogram`?",
    );
}

#[test]
fn colon_for_semicolon_in_config_says_use_semicolon() {
    only_error(
        &with_line(2, Some("image-size: 64; 48")),
        "line 2, column 11: expected `;`, found \":\"; use `;` to separate values",
    );
}

#[test]
fn comma_for_semicolon_in_a_value_says_use_semicolon() {
    only_error(
        &with_line(2, Some("image-size; 64, 48")),
        "line 2, column 15: expected `;`, found \",\"; use `;` to separate values",
    );
}

#[test]
fn comma_for_semicolon_in_data_says_use_semicolon() {
    only_error(
        &with_line(15, Some("1; 2, 3")),
        "line 15, column 5: expected `;`, found \",\"; use `;` to separate values",
    );
}

#[test]
fn unknown_variable_suggests_a_defined_one() {
    only_error(
        &with_line(15, Some("1; $bleu$ 2 $")),
        "line 15, column 4: expected a variable defined in `VARS`, found \"$bleu\"; did you mean `$blue`?",
    );
}

#[test]
fn unclosed_range_points_at_its_opener() {
    only_error(
        &with_line(15, Some("1; $blue$ 2; 3")),
        "line 15, column 4: expected `$` to close this range, found \"$blue$ 2; 3\"",
    );
}

#[test]
fn stray_dollar_is_reported() {
    only_error(
        &with_line(15, Some("1; 2 $; 3")),
        "line 15, column 6: expected a value, `;` or `$name$` (this `$` closes no range), found \"$\"",
    );
}

#[test]
fn variable_name_without_closing_dollar_is_reported() {
    only_error(
        &with_line(15, Some("$blue 1; 2")),
        "line 15, column 6: expected `$` to end the variable `$blue`, found \"1\"",
    );
}

#[test]
fn channel_outside_unit_range_is_reported() {
    only_error(
        &with_line(6, Some("default-color; color(1.5, 0, 0)")),
        "line 6, column 22: expected a channel in 0..1, found \"1.5\"",
    );
}

#[test]
fn cell_that_is_not_a_number_is_reported_with_a_fix() {
    only_error(
        &with_line(15, Some("1; 1O; 3")),
        "line 15, column 4: expected a number, found \"1O\"; did you mean 10?",
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    only_error(
        &with_line(15, Some("1;  é")),
        "line 15, column 5: expected a number, found \"é\"",
    );
    only_error(
        &with_line(10, Some("$blue; color(0, 0, 1) ; é")),
        "line 10, column 25: expected no more values after the variable's value, found \"é\"",
    );
}

#[test]
fn missing_required_key_is_reported_at_the_config_header() {
    only_error(
        &with_line(7, None),
        "line 1, column 1: expected the key `floor-color` in this `CONFIG` section",
    );
}

#[test]
fn duplicate_key_is_reported() {
    only_error(
        &with_line(8, Some("image-type; jpg\nEND")),
        "line 8, column 1: expected each key once (`image-type` is already set on line 3), found \"image-type\"",
    );
}

#[test]
fn histogram_key_in_a_cake_chart_is_reported() {
    only_error(
        &with_line(4, Some("graph-type; cake\nbar-width; 2")),
        "line 5, column 1: expected a key for this chart (`bar-width` is for histograms only), found \"bar-width\"",
    );
}

#[test]
fn missing_data_section_is_reported_at_the_end() {
    let text = BASE[..13].join("\n");
    only_error(&text, "line 13, column 4: expected a `DATA` section");
}

#[test]
fn unclosed_section_is_reported_at_its_header() {
    only_error(
        &with_line(8, Some("")),
        "line 1, column 1: expected `END` or `END_CONFIG` to close the `CONFIG` section opened here",
    );
    only_error(
        &BASE[..15].join("\n"),
        "line 14, column 1: expected `END` or `END_DATA` to close the `DATA` section opened here",
    );
}

#[test]
fn mismatched_end_is_reported() {
    only_error(
        &with_line(13, Some("END_DATA")),
        "line 13, column 1: expected `END` or `END_VARS`, found \"END_DATA\"",
    );
}

#[test]
fn text_outside_sections_is_reported() {
    only_error(
        &format!("hello; world\n{}", BASE.join("\n")),
        "line 1, column 1: expected a section (`CONFIG`, `VARS` or `DATA`), found \"hello; world\"",
    );
}

#[test]
fn duplicate_section_is_reported() {
    only_error(
        &format!("{}\nVARS\nEND", BASE.join("\n")),
        "line 17, column 1: expected each section once (`VARS` is already opened on line 9), found \"VARS\"",
    );
}

#[test]
fn every_problem_is_reported_in_one_pass_in_order() {
    let text = with_line(15, Some("x; 2; $nope$ 3 $"))
        .replace("image-type; png", "image-type; gif")
        .replace("color(0, 0, 1)", "color(0, 0, 2)");
    let errors = parse(&text).unwrap_err();
    let places: Vec<(usize, usize)> = errors
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    assert_eq!(places, [(3, 13), (10, 20), (15, 1), (15, 7)]);
    assert_eq!(errors.to_string().lines().count(), 4);
}

#[test]
fn too_many_values_names_the_limit() {
    let row = vec!["1"; 1000].join(";");
    let mut text = BASE[..14].join("\n");
    for _ in 0..1000 {
        text.push('\n');
        text.push_str(&row);
    }
    text.push_str("\n1\nEND\n");
    only_error(
        &text,
        "line 1015, column 1: expected at most 1000000 values in DATA (MAX_VALUES), found \"1\"",
    );
}

#[test]
fn too_much_text_names_the_limit() {
    let text = "#".repeat(MAX_TEXT_BYTES + 1);
    only_error(
        &text,
        "line 1, column 1: expected at most 16777216 bytes of text (MAX_TEXT_BYTES), found \"16777217 bytes\"",
    );
}

/// Not a benchmark: shows a million values parse, and prints how long it took for the lead.
#[test]
fn a_million_values_parse() {
    let row = vec!["12.5"; 1000].join("; ");
    let mut text = BASE[..14].join("\n");
    for _ in 0..1000 {
        text.push('\n');
        text.push_str(&row);
    }
    text.push_str("\nEND\n");
    let started = std::time::Instant::now();
    let chart = parse(&text).unwrap();
    eprintln!(
        "parsed {} values ({} bytes) in {:?}",
        MAX_VALUES,
        text.len(),
        started.elapsed()
    );
    assert_eq!(chart.rows.len(), 1000);
    assert!(chart.rows.iter().all(|row| row.cells.len() == 1000));
}

#[test]
fn write_is_canonical() {
    let chart = parse(HISTOGRAM).unwrap();
    let text = write(&chart);
    assert!(text.starts_with("config\nimage-size; 800; 600\nimage-type; png\n"));
    assert!(text.contains("camera-transform; translate(0, 4, -2).rotate(20, 0, 1, 0)\n"));
    assert!(
        text.contains(
            "\nvars\n$red; color(1, 0, 0)\n$glass; material(glass, sharp, 0, 1.45)\nend\n"
        )
    );
    assert!(text.contains(
        "\ndata\n10; $red$ 20 $; 30\n$glass$ 1; ; -3 $\n0; $red$ $glass$ 5 $; 6 $\nend\n"
    ));
    assert_eq!(parse(&text).unwrap(), chart);
}

// ---- properties ----

/// Numbers that survive `Display` and back exactly.
fn num(range: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = f64> {
    range.prop_map(|n| n as f64 / 100.0)
}

fn color_strategy() -> impl Strategy<Value = Color> {
    (num(0..=100), num(0..=100), num(0..=100)).prop_map(|(r, g, b)| Color { r, g, b })
}

fn material_strategy() -> impl Strategy<Value = Material> {
    let dist = prop_oneof![Just(Distribution::Beckmann), Just(Distribution::Sharp)];
    prop_oneof![
        num(0..=100).prop_map(|roughness| Material::Diffuse { roughness }),
        (dist.clone(), num(0..=100), num(1..=300)).prop_map(|(distribution, roughness, ior)| {
            Material::Glossy {
                distribution,
                roughness,
                ior,
            }
        }),
        (dist, num(0..=100), num(1..=300)).prop_map(|(distribution, roughness, ior)| {
            Material::Glass {
                distribution,
                roughness,
                ior,
            }
        }),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (num(-1000..=1000), num(-1000..=1000), num(-1000..=1000))
            .prop_map(|(x, y, z)| Step::Translate { x, y, z }),
        (
            num(-36000..=36000),
            num(1..=100),
            num(-100..=100),
            num(-100..=100)
        )
            .prop_map(|(degrees, x, y, z)| Step::Rotate {
                degrees,
                axis: [x, y, z],
            }),
    ]
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        (1..5000u32, 1..5000u32),
        prop_oneof![
            Just(ImageType::Png),
            Just(ImageType::Jpg),
            Just(ImageType::Bmp)
        ],
        (
            prop_oneof![
                Just(GraphType::Histogram),
                Just(GraphType::Cake),
                Just(GraphType::Surface)
            ],
            prop::collection::vec(color_strategy(), 2..=MAX_SURFACE_COLORS),
        ),
        material_strategy(),
        color_strategy(),
        color_strategy(),
        any::<bool>(),
        prop::collection::vec(step_strategy(), 0..3),
        num(0..=500),
        (num(1..=500), num(0..=500), num(0..=500), num(0..=500)),
    )
        .prop_map(
            |(
                (width, height),
                image_type,
                (graph, ramp),
                material,
                color,
                floor,
                ortho,
                steps,
                background,
                (size, gap_x, gap_z, minimum),
            )| {
                let mut config = Config::new(
                    ImageSize { width, height },
                    image_type,
                    graph,
                    material,
                    color,
                    floor,
                );
                if ortho {
                    config.camera_type = CameraType::Orthographic;
                }
                config.camera_transform = Transform { steps };
                config.background_strength = background;
                match graph {
                    GraphType::Cake => config.cake_height = size,
                    GraphType::Histogram => {
                        config.bar_width = size;
                        config.bar_separation = BarSeparation { x: gap_x, z: gap_z };
                        config.minimum_bar_height = minimum;
                    }
                    GraphType::Surface => config.surface_colors = ramp,
                }
                config
            },
        )
}

/// Keeps the candidate ranges that nest with those kept before, in opening order.
fn nested(candidates: Vec<(usize, usize, usize)>, cells: usize, vars: usize) -> Vec<Range> {
    let mut kept: Vec<(usize, usize, usize)> = Vec::new();
    for (a, b, var) in candidates {
        let (start, end) = (a.min(b) % (cells + 1), a.max(b) % (cells + 1));
        let (start, end) = (start.min(end), start.max(end));
        let fits = kept.iter().all(|&(s, e, _)| {
            end <= s || e <= start || (s <= start && end <= e) || (start <= s && e <= end)
        });
        if fits && vars > 0 {
            kept.push((start, end, var % vars));
        }
    }
    kept.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
    kept.into_iter()
        .map(|(start, end, var)| range(&format!("$v{var}"), start, end))
        .collect()
}

fn chart_strategy() -> impl Strategy<Value = Chart> {
    let var_value = prop_oneof![
        color_strategy().prop_map(VarValue::Color),
        material_strategy().prop_map(VarValue::Material),
    ];
    let row = (
        prop::collection::vec(prop::option::weighted(0.8, num(-100_000..=100_000)), 1..7),
        prop::collection::vec((0..8usize, 0..8usize, 0..4usize), 0..5),
    );
    (
        config_strategy(),
        prop::collection::vec(var_value, 0..4),
        prop::collection::vec(row, 1..5),
    )
        .prop_map(|(config, values, rows)| {
            let vars = Vars {
                entries: values
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| Var {
                        name: format!("$v{i}"),
                        value,
                    })
                    .collect(),
            };
            let var_count = vars.entries.len();
            let rows = rows
                .into_iter()
                .map(|(values, candidates)| Row {
                    ranges: nested(candidates, values.len(), var_count),
                    cells: values
                        .into_iter()
                        .map(|value| cell(value, None, None))
                        .collect(),
                })
                .collect();
            let mut chart = Chart { config, vars, rows };
            chart.resolve_overrides();
            chart
        })
}

proptest! {
    #[test]
    fn written_charts_parse_back_equal(chart in chart_strategy()) {
        let text = write(&chart);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, chart, "{}", text);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in ".*") {
        let _ = parse(&text);
    }

    #[test]
    fn format_like_strings_never_panic(text in "([a-zA-Z$;:,.() 0-9#_-]|\n|CONFIG\n|DATA\n|END\n|\\$a\\$){0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_bad_cell_is_pointed_at_exactly(
        rows in prop::collection::vec(prop::collection::vec(num(-10_000..=10_000), 1..6), 1..6),
        pick in any::<(usize, usize)>(),
        bad in "[a-zA-Zé_][a-zA-Z0-9é_]{0,5}",
        pad in "[ ]{0,3}",
    ) {
        let row = pick.0 % rows.len();
        let col = pick.1 % rows[row].len();
        let mut text = BASE[..14].join("\n");
        let mut expected = (0, 0);
        for (r, values) in rows.iter().enumerate() {
            let mut line = String::new();
            for (c, value) in values.iter().enumerate() {
                if c > 0 {
                    line.push(';');
                    line.push_str(&pad);
                }
                if (r, c) == (row, col) {
                    expected = (15 + r, line.chars().count() + 1);
                    line.push_str(&bad);
                } else {
                    line.push_str(&value.to_string());
                }
            }
            text.push('\n');
            text.push_str(&line);
        }
        text.push_str("\nEND\n");
        let errors = parse(&text).unwrap_err();
        let diagnostics = errors.diagnostics();
        prop_assert_eq!(diagnostics.len(), 1, "{}", errors);
        prop_assert_eq!((diagnostics[0].line, diagnostics[0].column), expected);
        prop_assert_eq!(&diagnostics[0].found, &bad);
        prop_assert_eq!(&diagnostics[0].expected, "a number");
    }
}

// ---- titles, labels, axis, legend (issue 15) ----

/// `BASE`'s CONFIG (a histogram) with `lines` added before its `END`, and a DATA section of
/// two rows of three.
fn with_keys(lines: &[&str]) -> String {
    let mut text: Vec<&str> = BASE[..7].to_vec();
    text.extend_from_slice(lines);
    text.extend_from_slice(&["END", "DATA", "1; 2; 3", "4; 5; 6", "END"]);
    text.join("\n")
}

#[test]
fn text_keys_parse_with_quotes_unicode_and_empty_labels() {
    let chart = parse(&with_keys(&[
        r#"title; "Sales; by ""shop"" and quarter""#,
        "x-labels; Q1; \"\"; Q3 (est.)",
        "z-labels; Zürich ; Αθήνα",
        "value-labels; on",
        "axis; ON",
        "legend; off",
        "text-color; color(0.2, 0.2, 0.2)",
    ]))
    .unwrap();
    let c = &chart.config;
    assert_eq!(c.title.as_deref(), Some(r#"Sales; by "shop" and quarter"#));
    assert_eq!(c.x_labels, ["Q1", "", "Q3 (est.)"]);
    assert_eq!(c.z_labels, ["Zürich", "Αθήνα"]);
    assert!(c.value_labels && c.axis && !c.legend);
    assert_eq!(c.text_color, rgb(0.2, 0.2, 0.2));
    // Read back from the writer, equal.
    assert_eq!(parse(&write(&chart)).unwrap(), chart);
}

#[test]
fn text_keys_default_to_nothing_shown() {
    let c = parse(&with_keys(&[])).unwrap().config;
    assert_eq!(c.title, None);
    assert!(c.x_labels.is_empty() && c.z_labels.is_empty() && c.labels.is_empty());
    assert!(!c.value_labels && !c.axis && !c.legend);
    assert_eq!(c.text_color, DEFAULT_TEXT_COLOR);
}

#[test]
fn a_cake_names_its_slices_with_labels_and_takes_no_histogram_key() {
    let cake =
        |extra: &str| with_keys(&[extra]).replace("graph-type; histogram", "graph-type; cake");
    let chart = parse(&cake("labels; red; green; \"blue; dark\"")).unwrap();
    assert_eq!(chart.config.labels, ["red", "green", "blue; dark"]);
    only_error(
        &cake("axis; on"),
        "line 8, column 1: expected a key for this chart (`axis` is for histograms and surfaces only), found \"axis\"",
    );
    only_error(
        &with_keys(&["labels; a"]),
        "line 8, column 1: expected a key for this chart (`labels` is for cakes only), found \"labels\"",
    );
}

#[test]
fn a_quoted_text_left_open_is_pointed_at_its_quote() {
    only_error(
        &with_keys(&["title; \"Sales by quarter"]),
        "line 8, column 8: expected `\"` to close the text opened here, found \"\\\"Sales by quarter\"; \
         inside a quoted text, write `\"` as `\"\"`",
    );
}

#[test]
fn text_after_a_closing_quote_is_pointed_at() {
    only_error(
        &with_keys(&["x-labels; \"Q1\" est; Q2"]),
        "line 8, column 16: expected `;` after the quoted text, found \"est\"; quote the whole \
         text, or put the `;` right after its closing `\"`",
    );
}

#[test]
fn a_title_holding_a_semicolon_must_be_quoted() {
    only_error(
        &with_keys(&["title; Sales; 2026"]),
        "line 8, column 15: expected one title, found \"2026\"; quote a title that holds `;`: \
         \"Sales; 2026\"",
    );
}

#[test]
fn more_labels_than_columns_or_rows_are_refused_at_their_key() {
    only_error(
        &with_keys(&["x-labels; a; b; c; d"]),
        "line 8, column 1: expected at most 3 labels in `x-labels` (the data has 3 columns), \
         found \"x-labels\"; 4 labels given",
    );
    only_error(
        &with_keys(&["z-labels; a; b; c"]),
        "line 8, column 1: expected at most 2 labels in `z-labels` (the data has 2 rows), found \
         \"z-labels\"; 3 labels given",
    );
}

#[test]
fn a_misspelt_switch_suggests_on_or_off() {
    only_error(
        &with_keys(&["legend; onn"]),
        "line 8, column 9: expected `on` or `off`, found \"onn\"; did you mean `on`?",
    );
}

#[test]
fn a_label_with_a_control_character_or_too_long_is_refused() {
    let errors = errors(&with_keys(&["x-labels; a\u{7}b"]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("line 8, column 11: expected text without control characters")
            && errors[0].ends_with("remove the character U+0007"),
        "{errors:?}"
    );
    let long = format!("title; {}", "x".repeat(MAX_TEXT_CHARS + 1));
    let errors = self::errors(&with_keys(&[&long]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("line 8, column 8: expected at most 200 characters of text"),
        "{errors:?}"
    );
}

#[test]
fn a_character_the_font_cannot_draw_is_pointed_at() {
    // Quoted, after a doubled quote: the column is where 東 stands in the line.
    only_error(
        &with_keys(&["title; \"Sales \"\"東京\"\"\""]),
        "line 8, column 17: expected a character the chart font draws (Latin, Greek, Cyrillic \
         and common signs), found \"東\"; the chart font has no glyph for U+6771: leave it out \
         or spell it in one of those scripts",
    );
    only_error(
        &with_keys(&["x-labels; Q1; Q2 क"]),
        "line 8, column 18: expected a character the chart font draws (Latin, Greek, Cyrillic \
         and common signs), found \"क\"; the chart font has no glyph for U+0915: leave it out \
         or spell it in one of those scripts",
    );
}

proptest! {
    #[test]
    fn any_title_and_labels_are_written_and_read_back_equal(
        // Text the chart font draws: printable ASCII, Latin-1 (but the soft hyphen), Greek,
        // Cyrillic.
        title in prop::option::of("[ -~¡-¬®-ÿΑ-ΡΣ-ωА-я€…—]{0,40}"),
        labels in prop::collection::vec("[ a-zA-Zéж\"; ()$#-]{0,12}", 0..=3),
        switches in any::<(bool, bool, bool)>(),
    ) {
        let mut chart = parse(&with_keys(&[])).unwrap();
        chart.config.title = title;
        chart.config.x_labels = labels.clone();
        chart.config.z_labels = labels.into_iter().take(2).collect();
        (chart.config.value_labels, chart.config.axis, chart.config.legend) = switches;
        let text = write(&chart);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, chart, "{}", text);
    }

    #[test]
    fn text_and_colour_list_lines_never_panic(text in "(title|x-labels|labels|surface-colors); ([\"; a-zé(),.0-9]|\"\"){0,30}") {
        let _ = parse(&with_keys(&[&text]));
    }
}

#[test]
fn surface_colors_take_two_to_sixteen_colours_on_a_surface_only() {
    let surface =
        |extra: &str| with_keys(&[extra]).replace("graph-type; histogram", "graph-type; surface");
    let chart = parse(&surface("surface-colors; color(0, 0, 1); color(1, 1, 0)")).unwrap();
    assert_eq!(
        chart.config.surface_colors,
        [rgb(0.0, 0.0, 1.0), rgb(1.0, 1.0, 0.0)]
    );
    assert_eq!(parse(&write(&chart)).unwrap(), chart);
    // The default: viridis.
    let plain = parse(&surface("")).unwrap();
    assert_eq!(plain.config.surface_colors, DEFAULT_SURFACE_COLORS);
    only_error(
        &surface("surface-colors; color(0, 0, 1)"),
        "line 8, column 1: expected 2 to 16 colours, lowest value first (`surface-colors; \
         COLOR; COLOR[; ...]`), found \"surface-colors\"; 1 given",
    );
    let many = format!("surface-colors; {}", ["color(0, 0, 0)"; 17].join("; "));
    only_error(
        &surface(&many),
        "line 8, column 273: expected 2 to 16 colours, lowest value first (`surface-colors; \
         COLOR; COLOR[; ...]`), found \"color(0, 0, 0)\"; 17 given",
    );
    // Both colours checked in one pass.
    let errors = errors(&surface("surface-colors; color(2, 0, 0); colour(0, 0, 1)"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    only_error(
        &with_keys(&["surface-colors; color(0, 0, 1); color(1, 1, 0)"]),
        "line 8, column 1: expected a key for this chart (`surface-colors` is for surfaces \
         only), found \"surface-colors\"",
    );
    // Axis and names work on surfaces as on histograms.
    let named = parse(&surface("x-labels; a; b; c")).unwrap();
    assert_eq!(named.config.x_labels, ["a", "b", "c"]);
}

/// A small chart of `graph` with `keys` added to its CONFIG, the variables `$red` (a colour),
/// `$glass` and `$glossy` (materials), and `data` as its DATA: for the layout's tests.
pub(super) fn sample(graph: &str, keys: &str, data: &str) -> Chart {
    let text = format!(
        "CONFIG\nimage-size; 320; 200\nimage-type; png\ngraph-type; {graph}\n\
         default-material; material(diffuse, 0.5)\ndefault-color; color(0.2, 0.4, 0.8)\n\
         floor-color; color(1, 1, 1)\n{keys}END\n\
         VARS\n$red; color(1, 0, 0)\n$glass; material(glass, sharp, 0, 1.5)\n\
         $glossy; material(glossy, sharp, 0.1, 1.5)\nEND\n\
         DATA\n{data}END\n"
    );
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}
