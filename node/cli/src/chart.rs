//! `rendermesh chart`: a chart data file in, a Cycles-rendered chart out.
//!
//! The file is parsed and laid out by `rendermesh_scene::chart` (pure), written as scene XML,
//! built into a `.blend` by the builder script inside `blender -b --factory-startup -Y`, and that
//! `.blend` is rendered as a one-frame job on the mesh like any other (tiled across the nodes,
//! an embedded node when none runs). `--emit-scene` and `--emit-blend` stop early and keep what
//! was made; `chart check` only parses.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rendermesh_node::chart::{check, not_text, output_format, render, summary, too_long};
use rendermesh_node::render::Blender;
use rendermesh_protocol::{Engine, FrameRange, OutputFormat};
use rendermesh_scene::Inspection;
use rendermesh_scene::chart::{self, Chart};

use crate::args::{NodeOrEmbedded, TilesArg};
use crate::submit::{Submission, output_name, submit_and_follow};

/// `rendermesh chart`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChartArgs {
    /// `check FILE`: validate a chart file without rendering.
    #[command(subcommand)]
    pub command: Option<ChartCommand>,
    /// The chart data file (CONFIG / VARS / DATA; see docs/CHART-FORMAT.md).
    pub file: Option<PathBuf>,
    /// Where the image goes [default: the file's name with the chart's image-type extension,
    /// in the current directory].
    #[arg(long, value_name = "IMAGE")]
    pub out: Option<PathBuf>,
    /// Cycles samples per pixel [default: the builder's, 64].
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Render at this percentage of the file's `image-size`, 1 to 100 (a quick draft)
    /// [default: 100].
    #[arg(long, value_name = "P")]
    pub resolution_percent: Option<u32>,
    /// Cut the image into tiles rendered on different nodes: `CxR`, `auto` or `none`
    /// [default: `auto`].
    #[arg(long, value_name = "CxR|auto|none")]
    pub tiles: Option<TilesArg>,
    /// Write the scene description (XML) here; renders only if `--out` is also given.
    #[arg(long, value_name = "XML")]
    pub emit_scene: Option<PathBuf>,
    /// Save the built Blender scene here, to open and edit in Blender; renders only if `--out`
    /// is also given.
    #[arg(long, value_name = "BLEND")]
    pub emit_blend: Option<PathBuf>,
    /// The node to render on, or the embedded one.
    #[command(flatten)]
    pub node: NodeOrEmbedded,
    /// Print how long each step took: parse, layout, scene XML, building the .blend, render.
    #[arg(long)]
    pub timings: bool,
}

/// `rendermesh chart check`.
#[derive(Debug, Subcommand)]
pub enum ChartCommand {
    /// Validate a chart file: list every problem with its line and column, render nothing.
    Check {
        /// The chart data file.
        file: PathBuf,
        /// Print what was found as JSON on stdout, for editors: `{"ok", "summary",
        /// "diagnostics": [{"line", "column", "length", "message", "suggestion"}]}` (the same
        /// as the API's `POST /api/v1/charts/check`); the exit status is 1 when there are
        /// problems.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `rendermesh chart`.
pub async fn run(args: ChartArgs) -> Result<ExitCode> {
    if let Some(ChartCommand::Check { file, json }) = &args.command {
        if *json {
            return check_json(file);
        }
        let chart = load(file)?;
        println!("{}: ok: {}", file.display(), summary(&chart));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(file) = args.file.clone() else {
        bail!(
            "give a chart file: `rendermesh chart FILE --out chart.png`, or `rendermesh chart check FILE`"
        );
    };
    let mut timings = Timings::default();
    let chart = timings.step("parse", || load(&file))?;
    let format = output_format(chart.config.image_type);
    let out = match &args.out {
        Some(out) => {
            check_extension(out, format)?;
            Some(out.clone())
        }
        None if args.emit_scene.is_none() && args.emit_blend.is_none() => {
            Some(default_out(&file, format))
        }
        None => None,
    };
    let scene = timings.step("layout", || chart::layout(&chart));
    let xml = timings.step("scene XML", || chart::to_xml(&scene));
    if let Some(path) = &args.emit_scene {
        write_file(path, xml.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if args.emit_blend.is_none() && out.is_none() {
        timings.print(args.timings);
        return Ok(ExitCode::SUCCESS);
    }
    let work = WorkDir::new()?;
    let blender = Blender::new(args.node.blender.clone(), None);
    let stem = stem(&file);
    let blend = work.0.join(format!("{stem}.blend"));
    let started = Instant::now();
    let inspection = build_blend(&blender, &work.0.join("scene.xml"), &xml, &blend).await?;
    timings.record("build .blend", started.elapsed());
    if let Some(path) = &args.emit_blend {
        create_parent(path)?;
        std::fs::copy(&blend, path).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let Some(out) = out else {
        timings.print(args.timings);
        return Ok(ExitCode::SUCCESS);
    };
    let frames_dir = work.0.join("out");
    let render = Submission {
        file: blend.clone(),
        frames: Some(FrameRange::single(1)),
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        format: Some(format),
        // The builder makes a Cycles scene; say so rather than read it back.
        engine: Some(Engine::Cycles),
        chunk: None,
        tiles: args.tiles,
        out: frames_dir.clone(),
        detach: false,
        // The built scene uses no external file: a missing one is a bug to report.
        allow_missing: false,
        // Nor any simulation.
        no_bake: true,
        node: args.node.clone().into(),
        // Asked in the Blender that built it.
        inspection: Some(inspection),
    };
    let started = Instant::now();
    let code = submit_and_follow(render).await?;
    timings.record("render", started.elapsed());
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let rendered = frames_dir.join(output_name(&blend, 1, format));
    create_parent(&out)?;
    if std::fs::rename(&rendered, &out).is_err() {
        std::fs::copy(&rendered, &out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    println!("wrote {}", out.display());
    timings.print(args.timings);
    Ok(ExitCode::SUCCESS)
}

/// How long each step of a chart took, in order.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn step<T>(&mut self, name: &'static str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = work();
        self.record(name, started.elapsed());
        value
    }

    fn record(&mut self, name: &'static str, took: Duration) {
        tracing::debug!(step = name, ?took, "chart step done");
        self.0.push((name, took));
    }

    /// `parse 2.1 ms, layout 0.3 ms, ...` on stderr, when asked for.
    fn print(&self, wanted: bool) {
        if !wanted {
            return;
        }
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|(name, took)| format!("{name} {:.1} ms", took.as_secs_f64() * 1000.0))
            .collect();
        eprintln!("timings: {}", steps.join(", "));
    }
}

/// Reads and parses `path`; every problem is printed on stderr as compilers print theirs (the
/// line, the offending text underlined, the suggestion as help), and the error counts them.
pub fn load(path: &Path) -> Result<Chart> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > chart::MAX_TEXT_BYTES as u64 {
        bail!(
            "{} is {size} bytes; a chart file holds at most {} bytes",
            path.display(),
            chart::MAX_TEXT_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let good = &e.as_bytes()[..at];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            bail!(
                "{}: line {line}: not UTF-8 text (byte {at} is not valid UTF-8); a chart file is text",
                path.display()
            );
        }
    };
    match chart::parse(&text) {
        Ok(chart) => Ok(chart),
        Err(errors) => {
            let n = errors.diagnostics().len();
            // In colour on a terminal, unless NO_COLOR says otherwise (https://no-color.org).
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let origin = path.display().to_string();
            eprint!("{}", render(&origin, &text, errors.diagnostics(), color));
            bail!(
                "{}: {n} problem{} (listed above); nothing was rendered",
                path.display(),
                if n == 1 { "" } else { "s" }
            )
        }
    }
}

/// `chart check --json`: what the parser found, as JSON on stdout; 1 when there are problems.
fn check_json(file: &Path) -> Result<ExitCode> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let check = if size > chart::MAX_TEXT_BYTES as u64 {
        too_long(size)
    } else {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => check(text).0,
            Err(e) => not_text(&bytes, e.valid_up_to()),
        }
    };
    println!("{}", serde_json::to_string_pretty(&check)?);
    Ok(if check.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Refuses an `--out` whose extension names another image format than the chart's.
fn check_extension(out: &Path, format: OutputFormat) -> Result<()> {
    let Some(ext) = out.extension().and_then(|e| e.to_str()) else {
        return Ok(());
    };
    match ext.parse::<OutputFormat>() {
        Ok(named) if named != format => bail!(
            "{} ends in .{ext}, but the chart's image-type is {format}: change one of them",
            out.display()
        ),
        _ => Ok(()),
    }
}

/// `<file stem>.<ext>` in the current directory.
fn default_out(file: &Path, format: OutputFormat) -> PathBuf {
    PathBuf::from(format!("{}.{}", stem(file), format.extension()))
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chart".into())
}

/// Writes the scene XML to `xml` and builds it into `blend` with the builder script; returns
/// what Blender says of the saved file.
async fn build_blend(
    blender: &Blender,
    xml_path: &Path,
    xml: &str,
    blend: &Path,
) -> Result<Inspection> {
    Ok(rendermesh_node::chart::build_blend(blender, xml_path, xml, blend).await?)
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// A scratch directory for the scene XML, the built `.blend` and the rendered frame; removed
/// when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("rendermesh-chart-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_must_not_name_another_format() {
        assert!(check_extension(Path::new("a.png"), OutputFormat::Png).is_ok());
        assert!(check_extension(Path::new("a"), OutputFormat::Jpg).is_ok());
        assert!(check_extension(Path::new("a.image"), OutputFormat::Jpg).is_ok());
        let err = check_extension(Path::new("c/a.png"), OutputFormat::Jpg)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.png ends in .png") && err.contains("jpg"),
            "{err}"
        );
        assert_eq!(
            default_out(Path::new("x/sales.chart"), OutputFormat::Bmp),
            PathBuf::from("sales.bmp")
        );
    }
}
