//! Charts on a node: a chart file's text checked into diagnostics (the page's chart editor
//! through `POST /api/v1/charts/check`, and `rendermesh chart check --json`), and a parsed
//! chart built into a `.blend` by the builder script in a factory-fresh Blender (the page's
//! `POST /api/v1/charts`, and `rendermesh chart`).
//!
//! Parsing and layout are `rendermesh_scene::chart`'s (pure); this module only shapes what they
//! say for JSON and runs Blender.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annotate_snippets::{Level, Renderer, Snippet};
use rendermesh_protocol::OutputFormat;
use rendermesh_scene::chart::{self, Chart, Diagnostic, ImageType, Keyword};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::Error;
use crate::render::Blender;
use rendermesh_scene::Inspection;

/// One problem in a chart file, as JSON gives it: where it is, what is wrong, what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartDiagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes).
    pub column: usize,
    /// How many characters the offending text spans from `column`; 0 when something is
    /// missing there.
    pub length: usize,
    /// What is wrong: `expected a number, found "1O"`.
    pub message: String,
    /// What to do, when the parser knows: ``did you mean `diffuse`?``.
    pub suggestion: Option<String>,
}

impl From<&Diagnostic> for ChartDiagnostic {
    fn from(d: &Diagnostic) -> Self {
        Self {
            line: d.line,
            column: d.column,
            length: d.length,
            message: d.message(),
            suggestion: d.suggestion.clone(),
        }
    }
}

/// What checking a chart file found: `POST /api/v1/charts/check`'s answer and `rendermesh
/// chart check --json`'s output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartCheck {
    /// True when the file has no problem (then it can be rendered).
    pub ok: bool,
    /// For a valid file, one line about it: `histogram, 3 rows, 12 values, 640x360 png`.
    pub summary: Option<String>,
    /// Every problem, sorted by line and column; empty when `ok`.
    pub diagnostics: Vec<ChartDiagnostic>,
}

/// Parses `text`: what the check says, and the chart when it is valid.
pub fn check(text: &str) -> (ChartCheck, Option<Chart>) {
    match chart::parse(text) {
        Ok(chart) => (
            ChartCheck {
                ok: true,
                summary: Some(summary(&chart)),
                diagnostics: Vec::new(),
            },
            Some(chart),
        ),
        Err(errors) => (
            ChartCheck {
                ok: false,
                summary: None,
                diagnostics: errors.diagnostics().iter().map(Into::into).collect(),
            },
            None,
        ),
    }
}

/// `diagnostics` of `text` (the file `origin`) as compilers show them: each problem's source
/// line with the offending text underlined, and the suggestion beneath as help; in colour when
/// `color` (for a terminal).
pub fn render(origin: &str, text: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for d in diagnostics {
        let message = d.message();
        let source = lines
            .get(d.line.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        // Columns count characters; spans are bytes of the line.
        let byte = |chars: usize| {
            source
                .char_indices()
                .nth(chars)
                .map_or(source.len(), |(i, _)| i)
        };
        let start = byte(d.column.saturating_sub(1));
        let end = byte(d.column.saturating_sub(1) + d.length).max(start);
        let mut report = Level::Error.title(&message).snippet(
            Snippet::source(source)
                .line_start(d.line)
                .origin(origin)
                .annotation(Level::Error.span(start..end)),
        );
        if let Some(suggestion) = &d.suggestion {
            report = report.footer(Level::Help.title(suggestion));
        }
        out.push_str(&renderer.render(report).to_string());
        out.push_str("\n\n");
    }
    out
}

/// The check of bytes that are not UTF-8: one diagnostic at the first bad byte.
pub fn not_text(bytes: &[u8], valid_up_to: usize) -> ChartCheck {
    let good = String::from_utf8_lossy(&bytes[..valid_up_to.min(bytes.len())]);
    let line = good.matches('\n').count() + 1;
    let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ChartCheck {
        ok: false,
        summary: None,
        diagnostics: vec![ChartDiagnostic {
            line,
            column,
            length: 1,
            message: format!("expected UTF-8 text, found byte {valid_up_to} that is not"),
            suggestion: Some("a chart file is text: save it as UTF-8".to_owned()),
        }],
    }
}

/// The check of a file over [`chart::MAX_TEXT_BYTES`] (`size` bytes), not read.
pub fn too_long(size: u64) -> ChartCheck {
    ChartCheck {
        ok: false,
        summary: None,
        diagnostics: vec![ChartDiagnostic {
            line: 1,
            column: 1,
            length: 0,
            message: format!(
                "expected at most {} bytes of text, found {size} bytes",
                chart::MAX_TEXT_BYTES
            ),
            suggestion: None,
        }],
    }
}

/// One line about a valid chart: `histogram, 3 rows, 12 values, 640x360 png`.
pub fn summary(chart: &Chart) -> String {
    let values: usize = chart.rows.iter().map(|r| r.cells.len()).sum();
    let kind = chart.config.graph_type.name();
    let size = chart.config.image_size;
    format!(
        "{kind}, {} row{}, {values} value{}, {}x{} {}",
        chart.rows.len(),
        if chart.rows.len() == 1 { "" } else { "s" },
        if values == 1 { "" } else { "s" },
        size.width,
        size.height,
        output_format(chart.config.image_type)
    )
}

/// The job format for a chart's `image-type`.
pub fn output_format(image_type: ImageType) -> OutputFormat {
    match image_type {
        ImageType::Png => OutputFormat::Png,
        ImageType::Jpg => OutputFormat::Jpg,
        ImageType::Bmp => OutputFormat::Bmp,
    }
}

/// Writes `xml` (a chart's scene, [`chart::to_xml`]) to `xml_path` and builds it into `blend`
/// with [`chart::BUILDER_PY`] (bounded like every script: 5 minutes); returns what
/// [`Blender::inspect`] says of the saved file, asked in the same Blender.
pub async fn build_blend(
    blender: &Blender,
    xml_path: &Path,
    xml: &str,
    blend: &Path,
) -> Result<Inspection, Error> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    tokio::fs::write(xml_path, xml)
        .await
        .map_err(io("cannot write the chart scene", xml_path))?;
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::ChartBuild(format!("the path `{}` is not UTF-8", p.display())))
    };
    let (xml_arg, blend_arg) = (utf8(xml_path)?, utf8(blend)?);
    let inspection = blender
        .run_script_then_inspect(chart::BUILDER_PY, &[&xml_arg, "--save", &blend_arg], blend)
        .await
        .map_err(|e| Error::ChartBuild(e.to_string()))?;
    if !blend.is_file() {
        return Err(Error::ChartBuild(format!(
            "Blender ran the builder but saved no `{}`",
            blend.display()
        )));
    }
    Ok(inspection)
}

/// Builds charts into `.blend`s for the API, one at a time (each is a Blender run).
#[derive(Clone)]
pub struct ChartBuilder {
    /// `None` on a node that has no Blender: it builds no chart.
    blender: Option<Blender>,
    /// One build at a time: a page cannot start Blender many times over.
    turn: Arc<Semaphore>,
}

impl std::fmt::Debug for ChartBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartBuilder")
            .field("blender", &self.blender.is_some())
            .finish()
    }
}

impl ChartBuilder {
    /// A builder running `blender`, or one that refuses every chart.
    pub fn new(blender: Option<Blender>) -> Self {
        Self {
            blender,
            turn: Arc::new(Semaphore::new(1)),
        }
    }

    /// Lays `chart` out and builds it into `dir/chart.blend` (`dir` must exist); returns that
    /// path. Waits for any build under way first.
    pub async fn build(&self, chart: Chart, dir: &Path) -> Result<PathBuf, Error> {
        let Some(blender) = &self.blender else {
            return Err(Error::ChartBuild(
                "this node has no Blender to build charts with".to_owned(),
            ));
        };
        let xml = tokio::task::spawn_blocking(move || chart::to_xml(&chart::layout(&chart)))
            .await
            .map_err(|e| Error::ChartBuild(format!("the layout stopped: {e}")))?;
        let _turn = self.turn.acquire().await.map_err(|_| Error::Shutdown)?;
        let blend = dir.join("chart.blend");
        let started = std::time::Instant::now();
        let inspection = build_blend(blender, &dir.join("scene.xml"), &xml, &blend).await?;
        // The job made of it ships the .blend alone.
        if let Some(file) = inspection.files.first() {
            return Err(Error::ChartBuild(format!(
                "the built chart uses a file outside itself: {} ({})",
                file.path, file.kind
            )));
        }
        debug!(ms = started.elapsed().as_millis() as u64, "chart built");
        Ok(blend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = "CONFIG\nimage-size; 64; 48\nimage-type; jpg\ngraph-type; cake\n\
        default-material; material(diffuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
        floor-color; color(0.9, 0.9, 0.9)\nEND\nDATA\n1; 2; 3\nEND\n";

    #[test]
    fn a_valid_chart_checks_ok_with_its_summary() {
        let (check, chart) = check(CHART);
        assert!(chart.is_some());
        assert_eq!(
            check,
            ChartCheck {
                ok: true,
                summary: Some("cake, 1 row, 3 values, 64x48 jpg".to_owned()),
                diagnostics: Vec::new(),
            }
        );
    }

    #[test]
    fn each_problem_comes_with_its_place_span_and_suggestion_as_json() {
        let text = CHART
            .replace("graph-type; cake", "graph-type; caek")
            .replace("1; 2; 3", "1; 2x; 3");
        let (check, chart) = check(&text);
        assert!(chart.is_none());
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ok": false,
                "summary": null,
                "diagnostics": [
                    {
                        "line": 4, "column": 13, "length": 4,
                        "message": "expected `histogram`, `cake` or `surface`, found \"caek\"",
                        "suggestion": "did you mean `cake`?",
                    },
                    {
                        "line": 10, "column": 4, "length": 2,
                        "message": "expected a number, found \"2x\"",
                        "suggestion": null,
                    },
                ],
            })
        );
    }

    /// The inspection asked in the Blender that built a chart (`rendermesh chart` submits
    /// with it) is what a fresh Blender reading the saved file says: a self-contained file, its
    /// title's font included, of one Cycles frame (its image type is the job's to set).
    #[tokio::test]
    async fn a_built_chart_is_inspected_as_a_fresh_blender_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = CHART.replace("END\nDATA", "title; Built\nEND\nDATA");
        let chart = chart::parse(&text).unwrap();
        let xml = chart::to_xml(&chart::layout(&chart));
        let blend = dir.path().join("chart.blend");
        let blender = Blender::new("blender", None);
        let built = build_blend(&blender, &dir.path().join("scene.xml"), &xml, &blend)
            .await
            .unwrap();
        assert_eq!(built, blender.inspect(&blend).await.unwrap());
        assert_eq!(built.files, Vec::new());
        assert_eq!(
            (built.engine.as_str(), built.frame_start, built.frame_end),
            ("CYCLES", 1, 1)
        );
    }

    /// A snapshot: several mistakes, as a terminal without colour shows them.
    #[test]
    fn diagnostics_render_as_a_compiler_shows_them() {
        let text = "CONFIG\nimage-size; 64; 48\nimage-type: png\ngraph-type; cake\n\
            default-material; material(difuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
            floor-color; color(0.9, 0.9, 0.9)\nEND\nDATA\n1; 2; 3O\n";
        let errors = chart::parse(text).unwrap_err();
        let shown = render("typos.chart", text, errors.diagnostics(), false);
        let want = r#"error: expected `;`, found ":"
 --> typos.chart:3:11
  |
3 | image-type: png
  |           ^
  |
  = help: use `;` to separate values

error: expected `diffuse`, `glossy` or `glass`, found "difuse"
 --> typos.chart:5:28
  |
5 | default-material; material(difuse, 0.5)
  |                            ^^^^^^
  |
  = help: did you mean `diffuse`?

error: expected `END` or `END_DATA` to close the `DATA` section opened here
 --> typos.chart:9:1
  |
9 | DATA
  | ^
  |

error: expected a number, found "3O"
  --> typos.chart:10:7
   |
10 | 1; 2; 3O
   |       ^^
   |
   = help: did you mean 30?

"#;
        assert_eq!(shown, want, "as shown:\n{shown}");
        // In colour for a terminal: the same words, with escape codes.
        let coloured = render("typos.chart", text, errors.diagnostics(), true);
        assert!(coloured.contains("\u{1b}["), "{coloured}");
        assert!(coloured.contains("did you mean `diffuse`?"));
    }

    #[test]
    fn a_span_counts_characters_not_bytes() {
        let text = CHART.replace("1; 2; 3", "é; 2; ü3");
        let errors = chart::parse(&text).unwrap_err();
        let shown = render("u.chart", &text, errors.diagnostics(), false);
        assert!(shown.contains("u.chart:10:1"), "{shown}");
        assert!(shown.contains("10 | é; 2; ü3\n   | ^\n"), "{shown}");
        assert!(shown.contains("u.chart:10:7"), "{shown}");
        assert!(shown.contains("10 | é; 2; ü3\n   |       ^^\n"), "{shown}");
    }

    #[test]
    fn bytes_that_are_not_text_are_one_diagnostic_at_the_first_bad_byte() {
        let bytes = b"CONFIG\nimage-\xffsize";
        let e = String::from_utf8(bytes.to_vec()).unwrap_err();
        let check = not_text(bytes, e.utf8_error().valid_up_to());
        assert!(!check.ok);
        let d = &check.diagnostics[0];
        assert_eq!((d.line, d.column, d.length), (2, 7, 1));
        assert!(d.message.contains("byte 13"), "{}", d.message);
    }

    #[tokio::test]
    async fn a_node_without_blender_refuses_to_build() {
        let (_, chart) = check(CHART);
        let dir = tempfile::tempdir().unwrap();
        let e = ChartBuilder::new(None)
            .build(chart.unwrap(), dir.path())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no Blender"), "{e}");
    }
}
