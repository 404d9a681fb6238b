//! The job and task model shared by every node: what a job asks for, how it is split into
//! tasks, and the only legal state changes. Pure data and rules; the coordinator applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::render::{Engine, Tile};

use crate::files::{self, Dependency};
use crate::id::{BlobHash, JobId, NodeId, Term};
use crate::{Error, limits};

/// The frames `start`, `start + step`, ... up to `end` inclusive (Blender's frame range and
/// frame step; `end` is always one of the frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameRange {
    /// First frame rendered.
    pub start: u32,
    /// Last frame rendered (inclusive).
    pub end: u32,
    /// Frames between two rendered ones (Blender's frame step): 1 renders every frame.
    #[serde(default = "one")]
    pub step: u32,
}

fn one() -> u32 {
    1
}

impl FrameRange {
    /// A checked range of every frame: `start <= end`, within Blender's frame limit and the job
    /// size limit.
    pub fn new(start: u32, end: u32) -> Result<Self, Error> {
        Self::with_step(start, end, 1)
    }

    /// A checked range of every `step`th frame from `start`, as Blender renders with a frame
    /// step: `end` becomes the last frame reached (`1-10` by 4 is 1, 5, 9).
    pub fn with_step(start: u32, end: u32, step: u32) -> Result<Self, Error> {
        let text = if step == 1 {
            format!("{start}-{end}")
        } else {
            format!("{start}-{end}x{step}")
        };
        if start > end {
            return Err(Error::BadFrames {
                text,
                reason: "the first frame is after the last".into(),
            });
        }
        if end > limits::MAX_FRAME_NUMBER {
            return Err(Error::BadFrames {
                text,
                reason: format!("Blender's frames end at {}", limits::MAX_FRAME_NUMBER),
            });
        }
        if !(1..=limits::MAX_FRAME_NUMBER).contains(&step) {
            return Err(Error::BadFrames {
                text,
                reason: "the frame step must be at least 1".into(),
            });
        }
        let end = start + (end - start) / step * step;
        // One frame has no step: the same range whatever step was asked.
        let step = if end == start { 1 } else { step };
        let range = Self { start, end, step };
        if range.len() > limits::MAX_JOB_FRAMES {
            return Err(Error::BadFrames {
                text,
                reason: format!("a job holds at most {} frames", limits::MAX_JOB_FRAMES),
            });
        }
        Ok(range)
    }

    /// The single frame `frame`.
    pub fn single(frame: u32) -> Self {
        Self {
            start: frame,
            end: frame,
            step: 1,
        }
    }

    /// Whether the range is one [`FrameRange::with_step`] makes: what a range that came from
    /// elsewhere must be before it is used.
    pub fn is_valid(&self) -> bool {
        Self::with_step(self.start, self.end, self.step).is_ok_and(|r| r == *self)
    }

    /// How many frames the range holds (1 for a malformed range, never a panic).
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start) / self.step.max(1) + 1
    }

    /// Never true: a range holds at least one frame. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + use<> {
        (self.start..=self.end).step_by(self.step.max(1) as usize)
    }
}

impl fmt::Display for FrameRange {
    /// `7`, `1-250`, or with a step `1-250x2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else if self.step == 1 {
            write!(f, "{}-{}", self.start, self.end)
        } else {
            write!(f, "{}-{}x{}", self.start, self.end, self.step)
        }
    }
}

impl FromStr for FrameRange {
    type Err = Error;

    /// Parses `A-B`, `A-BxS` (every `S`th frame from `A`) or a single frame `N`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadFrames {
            text: s.to_owned(),
            reason: reason.to_owned(),
        };
        let number = |part: &str| {
            part.trim().parse::<u32>().map_err(|_| {
                bad("expected A-B, A-BxSTEP or N with whole, non-negative frame numbers")
            })
        };
        let (range, step) = match s.split_once(['x', 'X']) {
            Some((range, step)) => (range, number(step)?),
            None => (s, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => Self::with_step(number(a)?, number(b)?, step),
            None if step == 1 => {
                let n = number(range)?;
                Self::new(n, n)
            }
            None => Err(bad("a frame step needs a range, e.g. 1-250x2")),
        }
    }
}

/// The image format Blender writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputFormat {
    /// 8-bit RGBA PNG (the default; lossless).
    #[default]
    Png,
    /// JPEG at Blender's default quality.
    Jpg,
    /// Windows bitmap.
    Bmp,
    /// OpenEXR, half float.
    Exr,
}

impl OutputFormat {
    /// Blender's `-F` name for the format.
    pub fn blender_name(self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::Jpg => "JPEG",
            Self::Bmp => "BMP",
            Self::Exr => "OPEN_EXR",
        }
    }

    /// The file extension Blender appends (`-x 1`).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpg => "jpg",
            Self::Bmp => "bmp",
            Self::Exr => "exr",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(Self::Png),
            "jpg" | "jpeg" => Ok(Self::Jpg),
            "bmp" => Ok(Self::Bmp),
            "exr" => Ok(Self::Exr),
            _ => Err(Error::BadFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A grid of `cols` x `rows` tiles per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TileGrid {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

impl TileGrid {
    /// A checked grid: each side in `1..=`[`limits::MAX_TILE_SIDE`].
    pub fn new(cols: u32, rows: u32) -> Result<Self, Error> {
        let side = 1..=limits::MAX_TILE_SIDE;
        if !side.contains(&cols) || !side.contains(&rows) {
            return Err(Error::BadTiles {
                text: format!("{cols}x{rows}"),
                reason: format!("each side must be in 1..={}", limits::MAX_TILE_SIDE),
            });
        }
        Ok(Self { cols, rows })
    }

    /// Tiles per frame.
    pub fn count(&self) -> u32 {
        self.cols * self.rows
    }

    /// The grid for `workers` live nodes: at least two tiles per node (so a fast node takes
    /// more and nobody waits long for the slowest), as square as it goes, wider than tall;
    /// `None` for a single node, which gains nothing from tiles.
    pub fn auto(workers: usize) -> Option<Self> {
        if workers <= 1 {
            return None;
        }
        let want = (workers as u32)
            .saturating_mul(2)
            .min(limits::MAX_TILE_SIDE.pow(2));
        let cols = (f64::from(want).sqrt().ceil() as u32).clamp(1, limits::MAX_TILE_SIDE);
        let rows = want.div_ceil(cols).clamp(1, limits::MAX_TILE_SIDE);
        Some(Self { cols, rows })
    }
}

impl fmt::Display for TileGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

/// How a job cuts each frame: into a fixed grid, or into a grid sized to the live nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tiling {
    /// [`TileGrid::auto`] for the nodes live when the coordinator accepts the job.
    Auto,
    /// This grid (1x1 renders whole frames).
    Grid(TileGrid),
}

impl FromStr for Tiling {
    type Err = Error;

    /// Parses `auto` or `CxR` (`4x4`, `8X2`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let bad = || Error::BadTiles {
            text: s.to_owned(),
            reason: "expected `auto` or COLSxROWS with whole numbers, e.g. `4x4`".into(),
        };
        let (c, r) = text.split_once(['x', 'X']).ok_or_else(bad)?;
        let cols = c.trim().parse().map_err(|_| bad())?;
        let rows = r.trim().parse().map_err(|_| bad())?;
        Ok(Self::Grid(TileGrid::new(cols, rows)?))
    }
}

impl fmt::Display for Tiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Grid(grid) => grid.fmt(f),
        }
    }
}

/// What the user asked for: everything a worker needs to render any part of the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The `.blend` file's name as the user gave it (for display and output names only).
    pub name: String,
    /// The `.blend` file's content hash.
    pub blend: BlobHash,
    /// The `.blend` file's size in bytes.
    pub blend_size: u64,
    /// The frames to render.
    pub frames: FrameRange,
    /// Cycles samples per pixel; `None` keeps the file's own setting.
    pub samples: Option<u32>,
    /// Resolution percentage (1..=100); `None` keeps the file's own setting.
    pub resolution_percent: Option<u32>,
    /// The output image format.
    pub format: OutputFormat,
    /// Frames per task; `None` lets the coordinator choose (see [`plan_chunks`]). Ignored when
    /// frames are tiled: a tile task renders one tile of one frame.
    pub chunk: Option<u32>,
    /// Cut each frame into tiles rendered on different nodes; `None` renders whole frames.
    pub tiles: Option<Tiling>,
    /// The Blender version every task must run on (the submitter's); `None` accepts any.
    pub blender_version: Option<String>,
    /// Where the `.blend` was on the submitting machine (absolute, normalised): a worker opens
    /// it from that path under the job's directory, so that the relative paths it holds resolve
    /// as they did there ([`crate::files`]). `None` for a file that uses no external file.
    #[serde(default)]
    pub blend_path: Option<String>,
    /// Every external file the `.blend` uses (textures, libraries, fonts, caches, ...), each
    /// shipped as a blob of its own.
    #[serde(default)]
    pub deps: Vec<Dependency>,
    /// Files the `.blend` names that were missing on the submitting machine: the user chose to
    /// render without them (`--allow-missing`), and the job says so. Empty otherwise: a worker
    /// then fails a task rather than render with a file missing.
    #[serde(default)]
    pub missing: Vec<String>,
    /// The render engine: the file's own unless the user chose another. Only nodes that can
    /// run it headless get its tasks; an engine that does not tile exactly renders whole frames.
    #[serde(default)]
    pub engine: Engine,
    /// Frames are written in the file's own output format with its own options (colour depth,
    /// EXR codec, quality); `format` is that format. False: `format` with Blender's defaults.
    #[serde(default)]
    pub keep_file_format: bool,
}

impl JobSpec {
    /// A job that renders `frames` of the `.blend` named `name` (blob `blend`, `blend_size`
    /// bytes) as the file says: PNG, Cycles, any Blender version, no external files, the
    /// coordinator choosing chunks; set the other fields to ask for more.
    pub fn new(
        name: impl Into<String>,
        blend: BlobHash,
        blend_size: u64,
        frames: FrameRange,
    ) -> Self {
        Self {
            name: name.into(),
            blend,
            blend_size,
            frames,
            samples: None,
            resolution_percent: None,
            format: OutputFormat::Png,
            chunk: None,
            tiles: None,
            blender_version: None,
            blend_path: None,
            deps: Vec::new(),
            missing: Vec::new(),
            engine: Engine::Cycles,
            keep_file_format: false,
        }
    }

    /// Checks the values a person typed; names the field that is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.frames.is_valid() {
            FrameRange::with_step(self.frames.start, self.frames.end, self.frames.step)?;
            return Err(Error::BadFrames {
                text: format!(
                    "{}-{}x{}",
                    self.frames.start, self.frames.end, self.frames.step
                ),
                reason: "the last frame is not reached from the first by the step".into(),
            });
        }
        if let Some(samples) = self.samples
            && !(1..=limits::MAX_SAMPLES).contains(&samples)
        {
            return Err(Error::BadSpec {
                field: "samples",
                reason: format!("{samples} is outside 1..={}", limits::MAX_SAMPLES),
            });
        }
        if let Some(p) = self.resolution_percent
            && !(1..=100).contains(&p)
        {
            return Err(Error::BadSpec {
                field: "resolution-percent",
                reason: format!("{p} is outside 1..=100"),
            });
        }
        if self.chunk == Some(0) {
            return Err(Error::BadSpec {
                field: "chunk",
                reason: "a chunk holds at least one frame".into(),
            });
        }
        if let Some(Tiling::Grid(grid)) = self.tiles {
            TileGrid::new(grid.cols, grid.rows)?;
            let tasks = u64::from(grid.count()) * u64::from(self.frames.len());
            if tasks > u64::from(limits::MAX_TILED_TASKS) {
                return Err(Error::BadSpec {
                    field: "tiles",
                    reason: format!(
                        "{} frames of {grid} tiles make {tasks} tasks; a job holds at most {}",
                        self.frames.len(),
                        limits::MAX_TILED_TASKS
                    ),
                });
            }
        }
        if self.name.len() > limits::MAX_NAME_LEN {
            return Err(Error::BadSpec {
                field: "name",
                reason: format!("longer than {} bytes", limits::MAX_NAME_LEN),
            });
        }
        self.validate_files()
    }

    /// The file part of [`JobSpec::validate`]: see [`files::check_dependencies`].
    fn validate_files(&self) -> Result<(), Error> {
        match &self.blend_path {
            Some(path) => files::check_dependencies(path, &self.deps)?,
            None if !self.deps.is_empty() => {
                return Err(Error::BadSpec {
                    field: "blend-path",
                    reason: "a job that ships files must say where its .blend was".into(),
                });
            }
            None => {}
        }
        if self.missing.len() > limits::MAX_DEPENDENCIES {
            return Err(Error::BadSpec {
                field: "missing",
                reason: format!(
                    "{} files; at most {} may be listed",
                    self.missing.len(),
                    limits::MAX_DEPENDENCIES
                ),
            });
        }
        let text: usize = self.missing.iter().map(String::len).sum();
        if text > limits::MAX_DEPENDENCY_TEXT {
            return Err(Error::BadSpec {
                field: "missing",
                reason: format!(
                    "the missing paths take {text} bytes; at most {} are allowed",
                    limits::MAX_DEPENDENCY_TEXT
                ),
            });
        }
        Ok(())
    }
}

/// Splits `frames` into chunks for `workers` nodes.
///
/// With `chunk` given, every chunk holds that many frames (the last may hold fewer). Otherwise
/// each worker gets about four chunks, so that a fast node takes more of them and the job never
/// waits long for the slowest machine, while a chunk holds at most 16 frames so that a lost
/// worker costs little. Chunk size costs no Blender start-up: a node keeps one Blender session
/// per job (the file loaded once) and renders each of its chunks in it.
pub fn plan_chunks(frames: FrameRange, workers: usize, chunk: Option<u32>) -> Vec<FrameRange> {
    let count = frames.len();
    let size = match chunk {
        Some(size) => size.max(1),
        None => {
            let per = (workers.max(1) as u32).saturating_mul(4);
            count.div_ceil(per).clamp(1, 16)
        }
    };
    let step = frames.step.max(1);
    let mut chunks = Vec::with_capacity(count.div_ceil(size) as usize);
    let mut start = frames.start;
    loop {
        let end = start
            .saturating_add((size - 1).saturating_mul(step))
            .min(frames.end);
        chunks.push(FrameRange { start, end, step });
        if end >= frames.end {
            return chunks;
        }
        start = end + step;
    }
}

/// How a job is cut into tasks: the tile grid (if frames are tiled) and each task's frames and
/// tile, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The grid every frame is cut into; `None`: whole frames.
    pub grid: Option<TileGrid>,
    /// Each task's frames and tile (a tile task holds one frame).
    pub tasks: Vec<(FrameRange, Option<Tile>)>,
}

/// Plans `spec` for `workers` live nodes: when the spec asks for tiles, the engine tiles
/// exactly and the grid has more than one, one task per tile per frame, frame by frame, each
/// frame's tiles row by row from the top (the grid is capped so that the job stays within
/// [`limits::MAX_TILED_TASKS`]); whole frames in chunks of [`JobSpec::chunk`] frames
/// ([`plan_chunks`]) when the spec fixes it; and otherwise no task yet: the coordinator cuts the
/// frames into tasks as the job goes ([`Job::carve`]), each sized for the node it goes to.
pub fn plan(spec: &JobSpec, workers: usize) -> Plan {
    let grid = match spec.tiles {
        None => None,
        Some(_) if !spec.engine.tiles_exactly() => None,
        Some(Tiling::Auto) => TileGrid::auto(workers),
        Some(Tiling::Grid(grid)) => Some(grid),
    }
    .filter(|grid| {
        grid.count() > 1
            && u64::from(grid.count()) * u64::from(spec.frames.len())
                <= u64::from(limits::MAX_TILED_TASKS)
    });
    let tasks = match grid {
        None if spec.chunk.is_none() => Vec::new(),
        None => plan_chunks(spec.frames, workers, spec.chunk)
            .into_iter()
            .map(|frames| (frames, None))
            .collect(),
        Some(grid) => spec
            .frames
            .iter()
            .flat_map(|frame| {
                Tile::grid(grid.cols, grid.rows)
                    .map(move |tile| (FrameRange::single(frame), Some(tile)))
            })
            .collect(),
    };
    Plan { grid, tasks }
}

/// The index of a job's first check ([`Job::checks`]): its own tasks, cut as the job goes, are
/// numbered from 0, and its checks from here, so that neither renumbers the other.
pub const FIRST_CHECK: u32 = 1 << 30;

/// A job's state as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted; no task has started.
    Queued,
    /// At least one task has started.
    Running,
    /// Every frame is rendered (and stitched, when tiled) and held by at least two nodes.
    Done,
    /// A task failed on every node it may run on; `Job::message` says why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// True once the job has ended: it changes no more, unless its submitter asks for a frame
    /// of a done job again ([`Job::rerender`]) or removes it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Assigned to `Task::worker` under `Task::attempt`.
    Running,
    /// Rendered; `Task::outputs` names the frames (for a tile task: its one tile image).
    Done,
    /// Gave up on (the job failed or was cancelled).
    Failed,
}

/// One rendered frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The frame number.
    pub frame: u32,
    /// The image file's content hash.
    pub blob: BlobHash,
    /// The image file's size in bytes.
    pub size: u64,
    /// A small PNG of it (at most [`limits::THUMB_WIDTH`] pixels wide; a tile's is the tile's
    /// share of that width), made once by the node that stored the frame, for pages to show;
    /// `None` when it could not be made (the frame still counts).
    pub thumb: Option<BlobHash>,
}

impl Output {
    /// The frame's blob, then its thumbnail's when it has one.
    pub fn blobs(&self) -> impl Iterator<Item = BlobHash> + use<> {
        std::iter::once(self.blob).chain(self.thumb)
    }

    /// Whether `blob` is the frame's or its thumbnail's.
    pub fn holds(&self, blob: &BlobHash) -> bool {
        self.blob == *blob || self.thumb.as_ref() == Some(blob)
    }
}

/// A failed attempt, kept so the job's message can quote Blender's own words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The node the attempt ran on.
    pub node: NodeId,
    /// What went wrong, in the renderer's own words where it gave any.
    pub message: String,
    /// It ran past its timeout (a hang, or a frame far slower than the others) rather than
    /// failed: the node may try the task again, with a longer timeout.
    #[serde(default)]
    pub timed_out: bool,
}

impl Task {
    /// A new queued task `index` rendering `frames` (or `tile` of them), made under `term`.
    fn queued(index: u32, frames: FrameRange, tile: Option<Tile>, term: Term) -> Self {
        Self {
            index,
            frames,
            tile,
            state: TaskState::Queued,
            attempt: 0,
            worker: None,
            backup: None,
            assigned_term: term,
            outputs: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Whether `node` runs this task's current attempt: as its worker, or as its backup.
    pub fn runs_on(&self, node: &NodeId) -> bool {
        self.worker.as_ref() == Some(node) || self.backup.as_ref() == Some(node)
    }

    /// The assignment of `node` ends; the other node, if any, carries the attempt on. Returns
    /// whether the task still runs (on the other node).
    fn drop_runner(&mut self, node: &NodeId) -> bool {
        if self.backup.as_ref() == Some(node) {
            self.backup = None;
            return true;
        }
        match self.backup.take() {
            Some(backup) => {
                self.worker = Some(backup);
                true
            }
            None => {
                self.state = TaskState::Queued;
                self.worker = None;
                false
            }
        }
    }

    /// Checks that `outputs` are what this task makes: each of its frames exactly once (a tile
    /// task: its one frame), and nothing else.
    pub fn check_outputs(&self, outputs: &[Output]) -> Result<(), String> {
        let mut want: BTreeSet<u32> = self.frames.iter().collect();
        for o in outputs {
            if !want.remove(&o.frame) {
                return Err(format!(
                    "frame {} is not a frame of task {} ({}) or comes twice",
                    o.frame, self.index, self.frames
                ));
            }
        }
        match want.first() {
            Some(missing) => Err(format!(
                "task {} ({}) reports no output for frame {missing}",
                self.index, self.frames
            )),
            None => Ok(()),
        }
    }
}

/// A chunk of frames (or one tile of one frame) rendered on one node, in its Blender session for
/// the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's index in `Job::tasks`.
    pub index: u32,
    /// The frames it renders.
    pub frames: FrameRange,
    /// The tile of the frame it renders; `None`: whole frames.
    pub tile: Option<Tile>,
    /// Where it stands.
    pub state: TaskState,
    /// Counts assignments; a report is valid only for the current attempt.
    pub attempt: u32,
    /// The node running it (when running) or that rendered it (when done).
    pub worker: Option<NodeId>,
    /// A second node running the same attempt at the end of a job (a backup task, as in
    /// MapReduce): whichever of the two reports first renders the task, and the other's
    /// assignment ends. Only while running; never the worker itself.
    pub backup: Option<NodeId>,
    /// The term of the coordinator that made the current assignment.
    pub assigned_term: Term,
    /// The frames it produced, once done.
    pub outputs: Vec<Output>,
    /// Every failed attempt, oldest first (bounded by [`limits::MAX_FAILURES_KEPT`]).
    pub failures: Vec<Failure>,
}

/// One frame of a done task rendered again on another node, to check the first render
/// (rendering is deterministic: the same frame must come out with the same pixels).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The task checked.
    pub of: u32,
    /// The node whose render is checked: the task's worker when the check was made.
    pub checked: NodeId,
    /// For a tie-break: the node whose check disagreed with `checked`. Neither of them may
    /// render a tie-break, and the one it disagrees with is suspect.
    pub disputed_by: Option<NodeId>,
    /// The render again: one frame (the task's first) or the task's tile. Its index follows
    /// the job's tasks and the checks before it, and it is assigned, reported, timed out and
    /// requeued as any task.
    pub task: Task,
    /// What comparing its pixels with the checked render found, once compared.
    pub verdict: Option<Verdict>,
}

impl Check {
    /// Whether `node` may render this check: not the node it checks, nor, for a tie-break, the
    /// node whose check disagreed.
    pub fn may_check(&self, node: &NodeId) -> bool {
        self.checked != *node && self.disputed_by.as_ref() != Some(node)
    }
}

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The same pixels.
    Same,
    /// Different pixels: a tie-break on a third node decides which render is wrong.
    Differs,
    /// Not made: nobody else could render it, it failed wherever it ran, or the render it
    /// checks was dropped.
    Skipped,
}

/// What a compared check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The renders agree.
    Agree,
    /// They differ: a tie-break was queued (`None`: the job holds its most checks already).
    Disputed(Option<u32>),
    /// The tie-break decided: this node rendered wrong pixels and is now suspect.
    Suspect(NodeId),
}

/// The version of a job's replicated record: ordered by term, then by sequence number.
///
/// Only the coordinator writes a job, and every write raises the version; replicas keep the
/// highest version they have seen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Version {
    /// The term of the coordinator that wrote it.
    pub term: Term,
    /// Raised by every write, never reset.
    pub seq: u64,
}

/// Why a report or assignment was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Stale {
    /// The job has no such task.
    #[error("job has no task {0}")]
    NoSuchTask(u32),
    /// The task is no longer running under that attempt and worker.
    #[error("task {task} attempt {attempt} by {node} is not the current assignment")]
    NotCurrent {
        /// The task reported.
        task: u32,
        /// The attempt reported.
        attempt: u32,
        /// The reporting node.
        node: NodeId,
    },
    /// The job is already finished.
    #[error("the job is already {0:?}")]
    Finished(JobState),
}

/// A job and all its tasks: the record the coordinator writes and every node replicates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Chosen by the submitting node.
    pub id: JobId,
    /// What was asked for.
    pub spec: JobSpec,
    /// The node the job was submitted to; it holds the `.blend`.
    pub origin: NodeId,
    /// Where the job stands.
    pub state: JobState,
    /// For a failed job: what a person can act on.
    pub message: Option<String>,
    /// The chunks (or tiles), in frame order.
    pub tasks: Vec<Task>,
    /// The grid each frame is cut into; `None`: whole frames.
    pub grid: Option<TileGrid>,
    /// Tiled jobs: the stitched frames so far, in frame order.
    pub stitched: Vec<Output>,
    /// Raised by every write.
    pub version: Version,
    /// Submission time, milliseconds since the Unix epoch (for listing order).
    pub created_ms: u64,
    /// Frames counted while this record's coordinator had no peer (a mesh of one, or a node
    /// cut off from the others), each with the one node that holds it. A coordinator copies
    /// each to a second node as soon as it can, and then removes it from here.
    #[serde(default)]
    pub held_once: Vec<(BlobHash, NodeId)>,
    /// The latest times per frame its coordinators measured (from handing a task out to its
    /// report, divided by its frames), in milliseconds, at most
    /// [`limits::MAX_FRAME_TIMES`]: a coordinator derives its task timeout from them, and they
    /// outlive a change of coordinator.
    #[serde(default)]
    pub frame_ms: Vec<u64>,
    /// When its coordinator saw it end (done, failed or cancelled), in milliseconds since the
    /// Unix epoch: it is kept for the retention time from then.
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// When it was removed (by its submitter, or at the end of its retention), in milliseconds
    /// since the Unix epoch: the record is then a tombstone, kept a while so that every node
    /// learns of the removal and none brings the job back, and its blobs may be collected.
    #[serde(default)]
    pub removed_ms: Option<u64>,
    /// Frames rendered again elsewhere to check its workers (at most [`limits::MAX_CHECKS`]):
    /// the job is done only once each is compared or skipped.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Nodes whose renders a check found wrong: they get no more of this job, and every frame
    /// they rendered for it is rendered again.
    #[serde(default)]
    pub suspects: Vec<NodeId>,
    /// Backup copies handed out at the job's end (see [`Job::back_up`]): each may have
    /// rendered its frames a second time, the price of ending the job sooner.
    #[serde(default)]
    pub backups: u32,
    /// How urgent it is against the other jobs, from 0 to [`limits::MAX_PRIORITY`]: the
    /// coordinator hands out the tasks of the job of highest priority first (the oldest first
    /// among equals). New jobs get [`DEFAULT_PRIORITY`]; its submitter may change it while it
    /// runs ([`Steer::Priority`]).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Paused by its submitter ([`Steer::Pause`]): it gets no new assignments; the tasks
    /// already handed out go on to their end.
    #[serde(default)]
    pub paused: bool,
}

/// The priority of a new job: the middle of the range, so that a job can be put before or
/// after the others (Flamenco's default is 50 of 100 too).
pub const DEFAULT_PRIORITY: u8 = 50;

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

/// Whether `task` is queued and not one `node` failed (a timeout aside).
fn open_for(task: &Task, node: &NodeId) -> bool {
    task.state == TaskState::Queued
        && !task
            .failures
            .iter()
            .any(|f| &f.node == node && !f.timed_out)
}

/// What a job's submitter may change while it runs ([`Job::steer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Steer {
    /// No new assignments; tasks already handed out go on.
    Pause,
    /// Assignments again.
    Resume,
    /// A new priority, from 0 to [`limits::MAX_PRIORITY`].
    Priority(u8),
    /// Renders this frame again ([`Job::rerender`]): the task that rendered it (its chunk,
    /// or every tile of it) goes back to the queue, and the job runs again if it had ended.
    Rerender(u32),
}

impl std::fmt::Display for Steer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pause => f.write_str("pause"),
            Self::Resume => f.write_str("resume"),
            Self::Priority(p) => write!(f, "priority {p}"),
            Self::Rerender(frame) => write!(f, "re-render frame {frame}"),
        }
    }
}

impl Job {
    /// A new queued job whose tasks are `plan`'s.
    pub fn new(
        id: JobId,
        spec: JobSpec,
        origin: NodeId,
        plan: Plan,
        term: Term,
        created_ms: u64,
    ) -> Self {
        let tasks = plan
            .tasks
            .into_iter()
            .enumerate()
            .map(|(i, (frames, tile))| Task::queued(i as u32, frames, tile, term))
            .collect();
        Self {
            id,
            spec,
            origin,
            state: JobState::Queued,
            message: None,
            tasks,
            grid: plan.grid,
            stitched: Vec::new(),
            version: Version { term, seq: 1 },
            created_ms,
            held_once: Vec::new(),
            frame_ms: Vec::new(),
            ended_ms: None,
            removed_ms: None,
            checks: Vec::new(),
            suspects: Vec::new(),
            backups: 0,
            priority: DEFAULT_PRIORITY,
            paused: false,
        }
    }

    /// Task `index`: one of [`Job::tasks`], or from [`FIRST_CHECK`] on, the task of one of
    /// [`Job::checks`].
    pub fn task(&self, index: u32) -> Option<&Task> {
        match index.checked_sub(FIRST_CHECK) {
            None => self.tasks.get(index as usize),
            Some(c) => self.checks.get(c as usize).map(|c| &c.task),
        }
    }

    fn task_mut(&mut self, index: u32) -> Option<&mut Task> {
        match index.checked_sub(FIRST_CHECK) {
            None => self.tasks.get_mut(index as usize),
            Some(c) => self.checks.get_mut(c as usize).map(|c| &mut c.task),
        }
    }

    /// Whether the job's frames are cut into tasks as it goes ([`Job::carve`]): whole frames,
    /// with no chunk size fixed by its submitter.
    pub fn cut_as_it_goes(&self) -> bool {
        self.grid.is_none() && self.spec.chunk.is_none()
    }

    /// The first frame not in a task yet, when the job is [cut as it
    /// goes](Job::cut_as_it_goes): the one after the last task's.
    fn next_uncut(&self) -> Option<u32> {
        if !self.cut_as_it_goes() {
            return None;
        }
        let frames = self.spec.frames;
        let next = match self.tasks.last() {
            None => frames.start,
            Some(t) => t.frames.end.checked_add(frames.step.max(1))?,
        };
        (next <= frames.end).then_some(next)
    }

    /// How many of the job's frames are in no task yet (0 unless it is [cut as it
    /// goes](Job::cut_as_it_goes)).
    pub fn uncut(&self) -> u32 {
        let step = self.spec.frames.step.max(1);
        self.next_uncut()
            .map_or(0, |next| (self.spec.frames.end - next) / step + 1)
    }

    /// Cuts the next task, queued, from the first `frames` frames in no task yet (at least
    /// one, at most what is left), under `term`; returns its index. `None` when every frame is
    /// in a task, the job is not cut as it goes, or it has ended.
    pub fn carve(&mut self, frames: u32, term: Term) -> Option<u32> {
        if self.state.is_terminal() {
            return None;
        }
        let start = self.next_uncut()?;
        let step = self.spec.frames.step.max(1);
        let count = frames.clamp(1, self.uncut());
        let end = start.saturating_add((count - 1).saturating_mul(step));
        let index = u32::try_from(self.tasks.len()).ok()?;
        let range = FrameRange { start, end, step };
        self.tasks.push(Task::queued(index, range, None, term));
        self.touch(term);
        Some(index)
    }

    /// Every task, the checks' last.
    pub fn all_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().chain(self.checks.iter().map(|c| &c.task))
    }

    fn all_tasks_mut(&mut self) -> impl Iterator<Item = &mut Task> {
        self.tasks
            .iter_mut()
            .chain(self.checks.iter_mut().map(|c| &mut c.task))
    }

    /// The check whose task is task `index`, if it is one.
    pub fn check(&self, index: u32) -> Option<&Check> {
        index
            .checked_sub(FIRST_CHECK)
            .and_then(|c| self.checks.get(c as usize))
    }

    /// How many checks of `node`'s renders this job has made or queued (tie-breaks aside).
    pub fn checks_of(&self, node: &NodeId) -> usize {
        self.checks
            .iter()
            .filter(|c| c.checked == *node && c.disputed_by.is_none())
            .count()
    }

    /// Queues a check of task `of`, rendered by `checked` (`disputed_by`: a tie-break after a
    /// check by that node disagreed). Returns the check's task index; `None` when the task has
    /// no frame or the job holds [`limits::MAX_CHECKS`] already.
    pub fn add_check(
        &mut self,
        of: u32,
        checked: NodeId,
        disputed_by: Option<NodeId>,
        term: Term,
    ) -> Option<u32> {
        let task = self.tasks.get(of as usize)?;
        if self.checks.len() >= limits::MAX_CHECKS {
            return None;
        }
        let index = FIRST_CHECK + self.checks.len() as u32;
        let frames = FrameRange {
            end: task.frames.start,
            ..task.frames
        };
        let tile = task.tile;
        self.checks.push(Check {
            of,
            checked,
            disputed_by,
            task: Task::queued(index, frames, tile, term),
            verdict: None,
        });
        self.state = JobState::Running;
        self.touch(term);
        Some(index)
    }

    /// The blobs a done check's comparison needs: the checked render of its frame, and the
    /// check's own.
    pub fn to_compare(&self, index: u32) -> Option<(BlobHash, BlobHash)> {
        let check = self.check(index)?;
        let frame = check.task.frames.start;
        let original = self.tasks.get(check.of as usize)?;
        let find = |t: &Task| t.outputs.iter().find(|o| o.frame == frame).map(|o| o.blob);
        if check.verdict.is_some() || check.task.state != TaskState::Done {
            return None;
        }
        Some((find(original)?, find(&check.task)?))
    }

    /// Records what comparing check `index` found (`same`: the same pixels), under `term`. A
    /// check that disagrees queues a tie-break on a third node; a tie-break makes the render
    /// it disagrees with suspect ([`Job::distrust`]).
    pub fn judge(&mut self, index: u32, same: bool, term: Term) -> Option<Judgement> {
        let c = index.checked_sub(FIRST_CHECK)?;
        let check = self.checks.get_mut(c as usize)?;
        if check.verdict.is_some() || check.task.state != TaskState::Done {
            return None;
        }
        check.verdict = Some(if same {
            Verdict::Same
        } else {
            Verdict::Differs
        });
        let (of, checked, disputed_by) =
            (check.of, check.checked.clone(), check.disputed_by.clone());
        let checker = check.task.worker.clone();
        self.touch(term);
        let judgement = match (disputed_by, same) {
            (None, true) => Judgement::Agree,
            (None, false) => {
                let checker = checker?;
                Judgement::Disputed(self.add_check(of, checked, Some(checker), term))
            }
            (Some(first), true) => Judgement::Suspect(first),
            (Some(_), false) => Judgement::Suspect(checked),
        };
        if let Judgement::Suspect(node) = &judgement {
            self.distrust(node.clone(), term);
        }
        self.finish_if_complete();
        Some(judgement)
    }

    /// Skips check `index` (nobody else can render it), under `term`.
    pub fn skip_check(&mut self, index: u32, term: Term) {
        let Some(c) = index.checked_sub(FIRST_CHECK) else {
            return;
        };
        if let Some(check) = self.checks.get_mut(c as usize)
            && check.verdict.is_none()
        {
            check.verdict = Some(Verdict::Skipped);
            if check.task.state != TaskState::Done {
                check.task.state = TaskState::Failed;
                check.task.worker = None;
            }
            self.touch(term);
            self.finish_if_complete();
        }
    }

    /// Marks `node` suspect: it gets no more of this job, its running tasks go back to the
    /// queue, every task it rendered is rendered again (with the frames stitched from its
    /// tiles), and the checks of its renders still open are skipped.
    pub fn distrust(&mut self, node: NodeId, term: Term) {
        if self.state.is_terminal() || self.suspects.contains(&node) {
            return;
        }
        let mut redo = BTreeSet::new();
        for task in &mut self.tasks {
            if task.state == TaskState::Running && task.runs_on(&node) {
                // Its backup, if it has one, goes on alone; a suspect's backup is dropped.
                task.drop_runner(&node);
            } else if task.worker.as_ref() == Some(&node) && task.state != TaskState::Failed {
                if task.state == TaskState::Done {
                    redo.insert(task.frames.start);
                }
                task.state = TaskState::Queued;
                task.worker = None;
                task.outputs.clear();
            }
        }
        if self.grid.is_some() {
            self.stitched.retain(|o| !redo.contains(&o.frame));
        }
        let kept: BTreeSet<BlobHash> = self.all_blobs().collect();
        self.held_once.retain(|(b, _)| kept.contains(b));
        for check in &mut self.checks {
            let task = &mut check.task;
            if check.verdict.is_some() {
                continue;
            }
            if check.checked == node || check.disputed_by.as_ref() == Some(&node) {
                check.verdict = Some(Verdict::Skipped);
                if task.state != TaskState::Done {
                    task.state = TaskState::Failed;
                }
                task.worker = None;
            } else if task.worker.as_ref() == Some(&node) {
                task.state = TaskState::Queued;
                task.worker = None;
                task.outputs.clear();
            }
        }
        self.suspects.push(node);
        self.touch(term);
    }

    /// Raises the version for a write made under `term`.
    pub fn touch(&mut self, term: Term) {
        self.version = Version {
            term: term.max(self.version.term),
            seq: self.version.seq.saturating_add(1),
        };
    }

    /// Every node [`Job::blocklisted`] names, in one pass over the tasks (for a question
    /// asked of every node at once).
    pub fn blocklist(&self) -> BTreeSet<&NodeId> {
        let mut failed: BTreeMap<&NodeId, usize> = BTreeMap::new();
        for t in self.all_tasks() {
            let mut nodes: Vec<&NodeId> = t.failures.iter().map(|f| &f.node).collect();
            nodes.sort_unstable();
            nodes.dedup();
            for node in nodes {
                *failed.entry(node).or_default() += 1;
            }
        }
        failed
            .into_iter()
            .filter(|(_, n)| *n >= limits::BLOCKLIST_AFTER)
            .map(|(node, _)| node)
            .chain(self.suspects.iter())
            .collect()
    }

    /// Whether `node` has failed [`limits::BLOCKLIST_AFTER`] tasks of this job, so that it gets
    /// no more of them (Flamenco's blocklist: a node that cannot render this file stops
    /// wasting its tasks).
    /// A [suspect](Job::suspects) is blocklisted too.
    pub fn blocklisted(&self, node: &NodeId) -> bool {
        self.suspects.contains(node)
            || self
                .all_tasks()
                .filter(|t| t.failures.iter().any(|f| &f.node == node))
                .count()
                >= limits::BLOCKLIST_AFTER
    }

    /// Whether task `index` is queued and open to `node`: not one it failed (a timeout aside),
    /// and, for a check, one it [may check](Check::may_check). Whether `node` is
    /// [blocklisted](Job::blocklisted) is not asked.
    pub fn open_to(&self, index: u32, node: &NodeId) -> bool {
        let Some(task) = self.task(index) else {
            return false;
        };
        let check = index
            .checked_sub(FIRST_CHECK)
            .and_then(|c| self.checks.get(c as usize));
        open_for(task, node) && check.is_none_or(|c| c.may_check(node))
    }

    /// The first queued task that `node` has not already failed (a timeout aside), if any,
    /// unless `node` is [blocklisted](Job::blocklisted) for this job. Checks come first (a
    /// node rendering wrong pixels is caught before it renders much), each only for a node
    /// that [may check it](Job::may_check).
    pub fn next_task_for(&self, node: &NodeId) -> Option<u32> {
        if self.state.is_terminal() || self.blocklisted(node) {
            return None;
        }
        self.checks
            .iter()
            .find(|c| open_for(&c.task, node) && c.may_check(node))
            .map(|c| &c.task)
            .or_else(|| self.tasks.iter().find(|t| open_for(t, node)))
            .map(|t| t.index)
    }

    /// Counts tasks by state: (queued, running, done).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for t in &self.tasks {
            match t.state {
                TaskState::Queued => c.0 += 1,
                TaskState::Running => c.1 += 1,
                TaskState::Done => c.2 += 1,
                TaskState::Failed => {}
            }
        }
        c
    }

    /// Frames finished so far (stitched, when tiled).
    pub fn frames_done(&self) -> u32 {
        if self.grid.is_some() {
            return self.stitched.len() as u32;
        }
        self.tasks
            .iter()
            .filter(|t| t.state == TaskState::Done)
            .map(|t| t.frames.len())
            .sum()
    }

    /// Assigns task `index` to `node` under `term`; returns the new attempt number.
    pub fn assign(&mut self, index: u32, node: NodeId, term: Term) -> Result<u32, Stale> {
        if self.state.is_terminal() {
            return Err(Stale::Finished(self.state));
        }
        let task = self.task_mut(index).ok_or(Stale::NoSuchTask(index))?;
        if task.state != TaskState::Queued {
            return Err(Stale::NotCurrent {
                task: index,
                attempt: task.attempt,
                node,
            });
        }
        task.attempt += 1;
        task.state = TaskState::Running;
        task.worker = Some(node);
        task.assigned_term = term;
        let attempt = task.attempt;
        self.state = JobState::Running;
        self.touch(term);
        Ok(attempt)
    }

    fn current_mut(&mut self, index: u32, attempt: u32, node: &NodeId) -> Result<&mut Task, Stale> {
        self.check_current(index, attempt, node)?;
        self.task_mut(index).ok_or(Stale::NoSuchTask(index))
    }

    /// Checks that `node` holds the current assignment of task `index` under `attempt`.
    pub fn check_current(&self, index: u32, attempt: u32, node: &NodeId) -> Result<(), Stale> {
        if self.state.is_terminal() {
            return Err(Stale::Finished(self.state));
        }
        let task = self.task(index).ok_or(Stale::NoSuchTask(index))?;
        if task.state != TaskState::Running || task.attempt != attempt || !task.runs_on(node) {
            return Err(Stale::NotCurrent {
                task: index,
                attempt,
                node: node.clone(),
            });
        }
        Ok(())
    }

    /// Whether this record takes task `index`, attempt `attempt`, away from `node`, which was
    /// assigned it in the record's version `since`: the task was handed out again since (a
    /// higher attempt), put back in the queue, rendered by the other of a task and its backup,
    /// or given to another node. A record older than the assignment (a version below `since`,
    /// or a lower attempt) does not, since a worker may hold an assignment before the record
    /// that names it reaches it; nor does a record without the task (a check queued after it
    /// was written).
    pub fn revoked(&self, index: u32, attempt: u32, node: &NodeId, since: Version) -> bool {
        if self.version < since {
            return false;
        }
        let Some(task) = self.task(index) else {
            return false;
        };
        match task.attempt.cmp(&attempt) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => match task.state {
                TaskState::Queued => true,
                TaskState::Running | TaskState::Done => !task.runs_on(node),
                TaskState::Failed => true,
            },
        }
    }

    /// Checks a record that came from a peer: it must be one a coordinator writes. The spec is
    /// checked as a submitted one is; the tasks must be its plan's shape (frames inside the
    /// job's, tiles of the job's grid, indices in order, at most [`limits::MAX_JOB_FRAMES`] or
    /// [`limits::MAX_TILED_TASKS`]); a done task's outputs its frames; failures, messages,
    /// stitched frames and frames held once bounded.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Error::BadRecord {
            job: self.id,
            reason,
        };
        self.spec.validate()?;
        let frames = self.spec.frames;
        let max_tasks = match self.grid {
            Some(grid) => {
                TileGrid::new(grid.cols, grid.rows)?;
                limits::MAX_TILED_TASKS
            }
            None => limits::MAX_JOB_FRAMES,
        };
        let none_yet = self.tasks.is_empty() && !self.cut_as_it_goes();
        if none_yet || self.tasks.len() > max_tasks as usize {
            return Err(bad(format!("{} tasks", self.tasks.len())));
        }
        let text_ok = |t: &str| t.len() <= limits::MAX_FAILURE_TEXT;
        if self.failure_text() > limits::MAX_JOB_FAILURE_TEXT {
            return Err(bad(format!(
                "its failures hold {} bytes of text (at most {})",
                self.failure_text(),
                limits::MAX_JOB_FAILURE_TEXT
            )));
        }
        if !self.message.as_deref().is_none_or(text_ok) {
            return Err(bad("its message is too long".into()));
        }
        if self.priority > limits::MAX_PRIORITY {
            return Err(bad(format!(
                "priority {} (at most {})",
                self.priority,
                limits::MAX_PRIORITY
            )));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if t.index as usize != i {
                return Err(bad(format!("task {i} says it is task {}", t.index)));
            }
            // A chunk keeps the job's step, so one of a single frame may read `5-5x2`.
            let inside = t.frames.start <= t.frames.end
                && t.frames.step >= 1
                && t.frames.start >= frames.start
                && t.frames.end <= frames.end;
            if !inside {
                return Err(bad(format!(
                    "task {i} renders frames {} outside {frames}",
                    t.frames
                )));
            }
            // Cut as it goes: each task starts where the one before it ended, at the job's step.
            if self.cut_as_it_goes() {
                let start = match i.checked_sub(1) {
                    None => Some(frames.start),
                    Some(prev) => self.tasks[prev].frames.end.checked_add(frames.step),
                };
                if Some(t.frames.start) != start || t.frames.step != frames.step {
                    return Err(bad(format!(
                        "task {i} ({}) does not follow the task before it",
                        t.frames
                    )));
                }
            }
            match (t.tile, self.grid) {
                (None, None) => {}
                (Some(tile), Some(grid))
                    if tile.cols == grid.cols
                        && tile.rows == grid.rows
                        && tile.col < tile.cols
                        && tile.row < tile.rows
                        && t.frames.len() == 1 => {}
                _ => return Err(bad(format!("task {i}'s tile does not fit the job's grid"))),
            }
            if t.state == TaskState::Done {
                t.check_outputs(&t.outputs).map_err(bad)?;
            } else if !t.outputs.is_empty() {
                return Err(bad(format!("task {i} is not done but lists outputs")));
            }
            if t.backup.is_some() && (t.state != TaskState::Running || t.backup == t.worker) {
                return Err(bad(format!(
                    "task {i} has a backup while {:?}, or its backup is its worker",
                    t.state
                )));
            }
            if t.failures.len() > limits::MAX_FAILURES_KEPT
                || !t.failures.iter().all(|f| text_ok(&f.message))
            {
                return Err(bad(format!("task {i} keeps too many or too long failures")));
            }
        }
        let in_job = |o: &Output| o.frame >= frames.start && o.frame <= frames.end;
        if self.stitched.len() > frames.len() as usize
            || !self.stitched.iter().all(in_job)
            || (self.grid.is_none() && !self.stitched.is_empty())
        {
            return Err(bad("its stitched frames are not the job's".into()));
        }
        // Each task counts as many frames as it renders (a chunk holds several), each frame
        // with its thumbnail.
        let outputs: usize = self.tasks.iter().map(|t| t.frames.len() as usize).sum();
        if self.held_once.len() > 2 * (outputs + self.stitched.len()) {
            return Err(bad(
                "it lists more frames and thumbnails held once than it has".into(),
            ));
        }
        if self.removed_ms.is_some() && (!self.state.is_terminal() || self.ended_ms.is_none()) {
            return Err(bad("it is removed without having ended".into()));
        }
        if self.ended_ms.is_some() && !self.state.is_terminal() {
            return Err(bad(format!("it has an end time while {:?}", self.state)));
        }
        self.validate_checks().map_err(bad)?;
        if self.frame_ms.len() > limits::MAX_FRAME_TIMES {
            return Err(bad(format!(
                "it keeps {} frame times, more than {}",
                self.frame_ms.len(),
                limits::MAX_FRAME_TIMES
            )));
        }
        Ok(())
    }

    /// Checks the record's checks and suspects: bounded, each check one frame (or the tile) of
    /// a task of the job, numbered after the tasks, rendered by a node that may render it.
    fn validate_checks(&self) -> Result<(), String> {
        if self.checks.len() > limits::MAX_CHECKS || self.suspects.len() > limits::MAX_CHECKS {
            return Err(format!(
                "{} checks and {} suspects (at most {} each)",
                self.checks.len(),
                self.suspects.len(),
                limits::MAX_CHECKS
            ));
        }
        for (i, c) in self.checks.iter().enumerate() {
            let t = &c.task;
            let Some(of) = self.tasks.get(c.of as usize) else {
                return Err(format!("check {i} checks task {}, which it has not", c.of));
            };
            let fits = t.index as usize == FIRST_CHECK as usize + i
                && t.frames.len() == 1
                && of.frames.iter().any(|f| f == t.frames.start)
                && t.tile == of.tile;
            if !fits {
                return Err(format!("check {i} is not a frame of task {}", c.of));
            }
            if t.worker.as_ref().is_some_and(|w| !c.may_check(w)) {
                return Err(format!("check {i} is rendered by a node it checks"));
            }
            if t.backup.is_some() {
                return Err(format!("check {i} has a backup (checks have none)"));
            }
            if t.state == TaskState::Done {
                t.check_outputs(&t.outputs)?;
            } else if !t.outputs.is_empty() {
                return Err(format!("check {i} is not done but lists outputs"));
            }
            if t.failures.len() > limits::MAX_FAILURES_KEPT
                || !t
                    .failures
                    .iter()
                    .all(|f| f.message.len() <= limits::MAX_FAILURE_TEXT)
            {
                return Err(format!("check {i} keeps too many or too long failures"));
            }
        }
        Ok(())
    }

    /// Whether it was removed: its record is a tombstone.
    pub fn is_removed(&self) -> bool {
        self.removed_ms.is_some()
    }

    /// Notes, at `wall_ms`, that the job has ended, once. Returns whether that changed the
    /// record.
    pub fn note_ended(&mut self, wall_ms: u64, term: Term) -> bool {
        if !self.state.is_terminal() || self.ended_ms.is_some() {
            return false;
        }
        self.ended_ms = Some(wall_ms);
        self.touch(term);
        true
    }

    /// Removes the job at `wall_ms`, asked by node `by`: cancelled first if it has not ended,
    /// then a tombstone. Returns whether that changed the record.
    pub fn remove(&mut self, wall_ms: u64, term: Term, by: &NodeId) -> bool {
        if self.is_removed() {
            return false;
        }
        self.cancel(term, by);
        self.ended_ms.get_or_insert(wall_ms);
        self.removed_ms = Some(wall_ms);
        self.held_once.clear();
        self.touch(term);
        true
    }

    /// Every blob the job uses while it is kept: its inputs, its rendered frames and tiles,
    /// and its stitched frames, with their thumbnails. Nothing once it is removed.
    pub fn blobs(&self) -> impl Iterator<Item = BlobHash> + '_ {
        let kept = !self.is_removed();
        self.all_blobs().filter(move |_| kept)
    }

    /// Every blob the job uses or used, removed or not.
    pub fn all_blobs(&self) -> impl Iterator<Item = BlobHash> + '_ {
        let inputs = std::iter::once(self.spec.blend).chain(self.spec.deps.iter().map(|d| d.blob));
        let outputs = self
            .all_tasks()
            .flat_map(|t| t.outputs.iter())
            .chain(self.stitched.iter())
            .flat_map(Output::blobs);
        inputs.chain(outputs)
    }

    /// Keeps a measured time per frame (the latest [`limits::MAX_FRAME_TIMES`]), with the write
    /// that counts its task.
    pub fn note_frame_time(&mut self, ms: u64) {
        if self.frame_ms.len() >= limits::MAX_FRAME_TIMES {
            self.frame_ms.remove(0);
        }
        self.frame_ms.push(ms);
    }

    /// The median of [`Job::frame_ms`], once a frame has been timed.
    pub fn median_frame_ms(&self) -> Option<u64> {
        let mut times = self.frame_ms.clone();
        times.sort_unstable();
        times.get(times.len() / 2).copied()
    }

    /// Records a finished task. Only the current assignment counts: a result from an older
    /// attempt or another node is refused, so no frame ever counts twice.
    pub fn complete(
        &mut self,
        index: u32,
        attempt: u32,
        node: &NodeId,
        outputs: Vec<Output>,
        term: Term,
    ) -> Result<(), Stale> {
        let task = self.current_mut(index, attempt, node)?;
        task.state = TaskState::Done;
        // The first of a task and its backup to report rendered it; the other's run ends.
        task.worker = Some(node.clone());
        task.backup = None;
        task.outputs = outputs;
        self.finish_if_complete();
        self.touch(term);
        Ok(())
    }

    fn finish_if_complete(&mut self) {
        if self.state.is_terminal() {
            return;
        }
        let rendered = self.uncut() == 0 && self.tasks.iter().all(|t| t.state == TaskState::Done);
        let stitched = self.grid.is_none() || self.stitched.len() as u32 == self.spec.frames.len();
        let checked = self.checks.iter().all(|c| c.verdict.is_some());
        if rendered && stitched && checked {
            self.state = JobState::Done;
        }
    }

    /// Tiled jobs: the frames whose tiles are all rendered but which are not stitched yet.
    pub fn frames_to_stitch(&self) -> Vec<u32> {
        if self.grid.is_none() || self.state.is_terminal() {
            return Vec::new();
        }
        let mut ready: Vec<u32> = Vec::new();
        for frame in self.spec.frames.iter() {
            if self.stitched.iter().any(|o| o.frame == frame) {
                continue;
            }
            let mut tiles = self.tiles_of(frame).peekable();
            if tiles.peek().is_some() && tiles.all(|t| t.state == TaskState::Done) {
                ready.push(frame);
            }
        }
        ready
    }

    /// Tiled jobs: the tasks rendering tiles of `frame`.
    pub fn tiles_of(&self, frame: u32) -> impl Iterator<Item = &Task> {
        self.tasks
            .iter()
            .filter(move |t| t.tile.is_some() && t.frames.start == frame)
    }

    /// Records a stitched frame of a tiled job; the job is done once every frame is.
    /// Recording a frame twice changes nothing.
    pub fn add_stitched(&mut self, output: Output, term: Term) -> Result<(), Stale> {
        if self.state.is_terminal() {
            return Err(Stale::Finished(self.state));
        }
        if self.grid.is_none() || self.stitched.iter().any(|o| o.frame == output.frame) {
            return Ok(());
        }
        let at = self.stitched.partition_point(|o| o.frame < output.frame);
        self.stitched.insert(at, output);
        self.finish_if_complete();
        self.touch(term);
        Ok(())
    }

    /// Records that `blob`, a counted frame, is held on `holder` alone.
    pub fn note_held_once(&mut self, blob: BlobHash, holder: NodeId, term: Term) {
        if !self.held_once.iter().any(|(b, _)| *b == blob) {
            self.held_once.push((blob, holder));
            self.touch(term);
        }
    }

    /// Records that `blob` is now held on a second node.
    pub fn held_twice(&mut self, blob: &BlobHash, term: Term) {
        let before = self.held_once.len();
        self.held_once.retain(|(b, _)| b != blob);
        if self.held_once.len() != before {
            self.touch(term);
        }
    }

    /// Fails the whole job with `message` (a problem no retry can fix).
    pub fn abort(&mut self, message: String, term: Term) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        self.finish(JobState::Failed, message);
        self.touch(term);
        true
    }

    /// Records a failed attempt. The task goes back to the queue unless it has now failed on
    /// `give_up_after` distinct nodes, in which case the whole job fails with the message.
    pub fn fail(
        &mut self,
        index: u32,
        attempt: u32,
        node: &NodeId,
        message: String,
        give_up_after: usize,
        term: Term,
    ) -> Result<(), Stale> {
        self.record_failure(index, attempt, node, message, false, give_up_after, term)
    }

    /// Records an attempt that ran past its timeout. The task goes back to the queue (the same
    /// node may try it again), unless it has now timed out [`limits::MAX_TIMEOUTS`] times, in
    /// which case the whole job fails with the message.
    pub fn time_out(
        &mut self,
        index: u32,
        attempt: u32,
        node: &NodeId,
        message: String,
        term: Term,
    ) -> Result<(), Stale> {
        self.record_failure(index, attempt, node, message, true, usize::MAX, term)
    }

    /// How many times task `index` timed out.
    pub fn timeouts(&self, index: u32) -> usize {
        self.task(index)
            .map_or(0, |t| t.failures.iter().filter(|f| f.timed_out).count())
    }

    #[allow(clippy::too_many_arguments)]
    fn record_failure(
        &mut self,
        index: u32,
        attempt: u32,
        node: &NodeId,
        message: String,
        timed_out: bool,
        give_up_after: usize,
        term: Term,
    ) -> Result<(), Stale> {
        let message = bounded_text(message);
        let room = limits::MAX_JOB_FAILURE_TEXT.saturating_sub(self.failure_text());
        let task = self.current_mut(index, attempt, node)?;
        if task.failures.len() < limits::MAX_FAILURES_KEPT {
            task.failures.push(Failure {
                node: node.clone(),
                message: truncated(message.clone(), room),
                timed_out,
            });
        }
        if task.drop_runner(node) {
            // The task's other runner carries the attempt on: nothing to requeue or give up.
            self.touch(term);
            return Ok(());
        }
        let distinct: BTreeSet<&NodeId> = task
            .failures
            .iter()
            .filter(|f| !f.timed_out)
            .map(|f| &f.node)
            .collect();
        let timeouts = task.failures.iter().filter(|f| f.timed_out).count();
        let what = match task.tile {
            Some(tile) => format!("{tile} of frame {}", task.frames),
            None => format!("frames {}", task.frames),
        };
        let n = distinct.len();
        let give_up = if timeouts >= limits::MAX_TIMEOUTS {
            Some(format!(
                "{what} timed out {timeouts} times; the last: {message}"
            ))
        } else if n >= give_up_after.max(1) {
            let s = if n == 1 { "" } else { "s" };
            Some(format!("{what} failed on {n} node{s}: {message}"))
        } else {
            None
        };
        match give_up {
            // A check that cannot be rendered is skipped: the render it checks stands.
            Some(_) if self.check(index).is_some() => self.skip_check(index, term),
            Some(why) => self.finish(JobState::Failed, why),
            None => {}
        }
        self.touch(term);
        Ok(())
    }

    /// Puts one assignment back in the queue without counting a failure (the worker refused it,
    /// could not be reached, or lost it).
    pub fn release(
        &mut self,
        index: u32,
        attempt: u32,
        node: &NodeId,
        term: Term,
    ) -> Result<(), Stale> {
        let task = self.current_mut(index, attempt, node)?;
        task.drop_runner(node);
        self.touch(term);
        Ok(())
    }

    /// Gives a running task a backup: `node` renders the same attempt too (an idle node at the
    /// end of a job, when it would end the task sooner than its worker). Returns the attempt.
    pub fn back_up(&mut self, index: u32, node: NodeId, term: Term) -> Result<u32, Stale> {
        if self.state.is_terminal() {
            return Err(Stale::Finished(self.state));
        }
        // A check is not backed up: who may render it is restricted, and it is one frame.
        let task = self
            .tasks
            .get_mut(index as usize)
            .ok_or(Stale::NoSuchTask(index))?;
        if task.state != TaskState::Running || task.backup.is_some() || task.runs_on(&node) {
            return Err(Stale::NotCurrent {
                task: index,
                attempt: task.attempt,
                node,
            });
        }
        task.backup = Some(node);
        let attempt = task.attempt;
        self.backups = self.backups.saturating_add(1);
        self.touch(term);
        Ok(attempt)
    }

    /// Puts every task running on `node` back in the queue (the node is gone). Returns how many.
    pub fn requeue_node(&mut self, node: &NodeId, term: Term) -> usize {
        if self.state.is_terminal() {
            return 0;
        }
        let mut n = 0;
        for task in self.all_tasks_mut() {
            if task.state == TaskState::Running && task.runs_on(node) {
                task.drop_runner(node);
                n += 1;
            }
        }
        if n > 0 {
            self.touch(term);
        }
        n
    }

    /// Pauses or resumes it, or sets its priority, as its submitter asks: `Ok(true)` when that
    /// changed it, `Ok(false)` when it was so already. A job that has ended, or a priority out
    /// of range, is refused with the reason.
    pub fn steer(&mut self, steer: Steer, term: Term) -> Result<bool, String> {
        if let Steer::Rerender(frame) = steer {
            return self.rerender(frame, term).map(|()| true);
        }
        if self.state.is_terminal() || self.is_removed() {
            return Err(format!(
                "job {} has ended: nothing left to {steer}",
                self.id
            ));
        }
        let changed = match steer {
            Steer::Pause | Steer::Resume => {
                let paused = steer == Steer::Pause;
                std::mem::replace(&mut self.paused, paused) != paused
            }
            Steer::Priority(p) if p > limits::MAX_PRIORITY => {
                return Err(format!(
                    "priority {p} is out of range: 0 (lowest) to {} (highest)",
                    limits::MAX_PRIORITY
                ));
            }
            Steer::Priority(p) => std::mem::replace(&mut self.priority, p) != p,
            Steer::Rerender(_) => unreachable!("handled above"),
        };
        if changed {
            self.touch(term);
        }
        Ok(changed)
    }

    /// Renders `frame` again, as its submitter asks (a frame that came out wrong, or whose
    /// file was lost): the task that rendered it goes back to the queue (a chunk: every frame
    /// of it; a tiled frame: each of its tiles, and the stitched frame is dropped), its
    /// renders' open checks are skipped, and a job that was done runs again until the new
    /// render is in. Refused, with the reason, for a frame outside the job, a frame not
    /// rendered yet (it will be), and a job that failed, was cancelled or removed.
    pub fn rerender(&mut self, frame: u32, term: Term) -> Result<(), String> {
        let ended = if self.is_removed() {
            Some("was removed")
        } else {
            match self.state {
                JobState::Failed => Some("failed"),
                JobState::Cancelled => Some("was cancelled"),
                _ => None,
            }
        };
        if let Some(ended) = ended {
            return Err(format!(
                "job {} {ended}: submit it again to render its frames again",
                self.id
            ));
        }
        if !self.spec.frames.iter().any(|f| f == frame) {
            return Err(format!(
                "frame {frame} is not one of job {}'s frames ({})",
                self.id, self.spec.frames
            ));
        }
        let holds = |t: &Task| t.frames.iter().any(|f| f == frame);
        let mut tasks = self.tasks.iter().filter(|t| holds(t)).peekable();
        if tasks.peek().is_none() || !tasks.all(|t| t.state == TaskState::Done) {
            return Err(format!(
                "frame {frame} of job {} is not rendered yet: it will be",
                self.id
            ));
        }
        let mut redo = BTreeSet::new();
        for task in self.tasks.iter_mut().filter(|t| holds(t)) {
            redo.insert(task.index);
            task.state = TaskState::Queued;
            task.worker = None;
            task.backup = None;
            task.outputs.clear();
        }
        for check in &mut self.checks {
            if check.verdict.is_none() && redo.contains(&check.of) {
                check.verdict = Some(Verdict::Skipped);
                if check.task.state != TaskState::Done {
                    check.task.state = TaskState::Failed;
                }
                check.task.worker = None;
                check.task.backup = None;
            }
        }
        self.stitched.retain(|o| o.frame != frame);
        let kept: BTreeSet<BlobHash> = self.all_blobs().collect();
        self.held_once.retain(|(b, _)| kept.contains(b));
        self.state = JobState::Running;
        self.ended_ms = None;
        self.touch(term);
        Ok(())
    }

    /// Cancels the job; running tasks are abandoned.
    pub fn cancel(&mut self, term: Term, by: &NodeId) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        self.finish(
            JobState::Cancelled,
            format!("cancelled by a user on node {}", by.short()),
        );
        self.touch(term);
        true
    }

    fn finish(&mut self, state: JobState, message: String) {
        self.state = state;
        self.message = Some(bounded_text(message));
        for task in self.all_tasks_mut() {
            task.backup = None;
            if task.state != TaskState::Done {
                task.state = TaskState::Failed;
            }
        }
    }

    /// Every finished frame, in frame order: the stitched frames of a tiled job, else the
    /// frames its tasks rendered.
    pub fn outputs(&self) -> Vec<&Output> {
        if self.grid.is_some() {
            return self.stitched.iter().collect();
        }
        let mut out: Vec<&Output> = self.tasks.iter().flat_map(|t| &t.outputs).collect();
        out.sort_by_key(|o| o.frame);
        out
    }
}

/// `text` cut to at most [`limits::MAX_FAILURE_TEXT`] bytes, on a character boundary.
fn bounded_text(text: String) -> String {
    truncated(text, limits::MAX_FAILURE_TEXT)
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Job {
    /// Bytes of every failure message its tasks keep.
    fn failure_text(&self) -> usize {
        self.all_tasks()
            .flat_map(|t| &t.failures)
            .map(|f| f.message.len())
            .sum()
    }
}

/// What changed in a job record since a version its puller holds
/// ([`crate::Request::GetJobSince`]): the record without its tasks, and the tasks that differ
/// from that version's (changed in place, or cut since), in index order. A running job's record
/// holds up to thousands of tasks and changes many times a second, so a follower pulls this
/// instead of the whole record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChanges {
    /// The version the changes start from: the puller's copy must be at it.
    pub since: Version,
    /// The record, with no tasks.
    pub head: Job,
    /// How many tasks the record holds.
    pub task_count: u32,
    /// The tasks that differ from version `since`, in index order.
    pub tasks: Vec<Task>,
}

impl JobChanges {
    /// What changed from `old` to `new`: `None` when they are not two versions of one record
    /// (another job, or tasks that went away). The tests' reference: a node works changes out
    /// from the versions it served (`core::table`), without keeping whole records.
    #[cfg(test)]
    pub fn between(old: &Job, new: &Job) -> Option<Self> {
        if old.id != new.id || old.tasks.len() > new.tasks.len() {
            return None;
        }
        let tasks = new
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| old.tasks.get(*i) != Some(*t))
            .map(|(_, t)| t.clone())
            .collect();
        Some(Self {
            since: old.version,
            head: new.without_tasks(),
            task_count: u32::try_from(new.tasks.len()).ok()?,
            tasks,
        })
    }

    /// The record these changes make of `base`, the puller's copy. Refused when `base` is not
    /// at version `since`, or the changes do not describe a record of `task_count` tasks (a
    /// head with tasks, fewer tasks than `base` holds, more than a record may hold, a task
    /// out of order or leaving a gap). The record made is not validated here
    /// ([`Job::validate`] is the receiver's next step, as for a whole record).
    pub fn apply(&self, base: &Job) -> Result<Job, Error> {
        let bad = |reason: String| Error::BadRecord {
            job: self.head.id,
            reason,
        };
        if base.id != self.head.id {
            return Err(bad(format!("changes applied to job {}", base.id)));
        }
        if base.version != self.since {
            return Err(bad(format!(
                "changes since {:?} applied to version {:?}",
                self.since, base.version
            )));
        }
        if !self.head.tasks.is_empty() {
            return Err(bad("the changes' head holds tasks".into()));
        }
        let count = self.task_count as usize;
        let most = limits::MAX_JOB_FRAMES.max(limits::MAX_TILED_TASKS) as usize;
        if count < base.tasks.len() || count > most || self.tasks.len() > count {
            return Err(bad(format!(
                "{} tasks, {} changed, from {}",
                count,
                self.tasks.len(),
                base.tasks.len()
            )));
        }
        let mut tasks = base.tasks.clone();
        let mut last = None;
        for t in &self.tasks {
            let i = t.index as usize;
            if last.is_some_and(|l| i <= l) {
                return Err(bad(format!("changed task {i} out of order")));
            }
            last = Some(i);
            match i.cmp(&tasks.len()) {
                std::cmp::Ordering::Less => tasks[i] = t.clone(),
                std::cmp::Ordering::Equal => tasks.push(t.clone()),
                std::cmp::Ordering::Greater => {
                    return Err(bad(format!("changed task {i} leaves a gap")));
                }
            }
        }
        if tasks.len() != count {
            return Err(bad(format!("{} tasks made, {count} said", tasks.len())));
        }
        let mut job = self.head.clone();
        job.tasks = tasks;
        Ok(job)
    }
}

impl Job {
    /// This record with no tasks (the rest is small: checks, stitched frames and frame times
    /// are bounded).
    pub fn without_tasks(&self) -> Job {
        Job {
            id: self.id,
            spec: self.spec.clone(),
            origin: self.origin.clone(),
            state: self.state,
            message: self.message.clone(),
            tasks: Vec::new(),
            grid: self.grid,
            stitched: self.stitched.clone(),
            version: self.version,
            created_ms: self.created_ms,
            held_once: self.held_once.clone(),
            frame_ms: self.frame_ms.clone(),
            ended_ms: self.ended_ms,
            removed_ms: self.removed_ms,
            checks: self.checks.clone(),
            suspects: self.suspects.clone(),
            backups: self.backups,
            priority: self.priority,
            paused: self.paused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: u32, b: u32) -> FrameRange {
        FrameRange::new(a, b).unwrap()
    }

    fn node(s: &str) -> NodeId {
        NodeId::from_bytes(s.as_bytes()).expect("a node id")
    }

    fn spec(frames: FrameRange) -> JobSpec {
        JobSpec::new("a.blend", BlobHash::of(b"a"), 1, frames)
    }

    /// A job planned in fixed chunks of about a quarter of each worker's share (at most 16
    /// frames), as `plan_chunks` sizes them when asked to.
    fn job(frames: FrameRange, workers: usize) -> Job {
        let mut spec = spec(frames);
        let per = (workers.max(1) as u32) * 4;
        spec.chunk = Some(frames.len().div_ceil(per).clamp(1, 16));
        let plan = plan(&spec, workers);
        Job::new(JobId([0; 16]), spec, node("o"), plan, Term(1), 0)
    }

    /// A new job of `spec` planned for three workers.
    fn new_job(spec: &JobSpec) -> Job {
        Job::new(
            JobId([0; 16]),
            spec.clone(),
            node("o"),
            plan(spec, 3),
            Term(1),
            0,
        )
    }

    /// Issue 13: a follower pulled a running job's whole record, thousands of tasks, at every
    /// version. What changed between two versions (tasks changed in place and tasks cut since)
    /// makes the newer from the older, and nothing else: not another version, nor changes that
    /// leave a gap, go out of order or shrink the record.
    #[test]
    fn changes_between_two_versions_make_the_newer_from_the_older_and_nothing_else() {
        let spec = spec(range(1, 100));
        let mut old = new_job(&spec);
        for size in [1, 2, 3] {
            old.carve(size, Term(1));
        }
        let mut new = old.clone();
        let attempt = new.assign(1, node("w"), Term(1)).unwrap();
        let outputs = [2, 3]
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&[frame as u8]),
                size: 1,
                thumb: None,
            })
            .to_vec();
        new.complete(1, attempt, &node("w"), outputs, Term(1))
            .unwrap();
        new.carve(4, Term(2));
        new.carve(5, Term(2));
        let changes = JobChanges::between(&old, &new).expect("two versions of one record");
        let changed: Vec<u32> = changes.tasks.iter().map(|t| t.index).collect();
        assert_eq!(changed, [1, 3, 4], "task 1 done, tasks 3 and 4 cut");
        assert!(changes.head.tasks.is_empty());
        assert_eq!(changes.apply(&old).expect("applies"), new);
        // Nothing changed: no task, the same record.
        let none = JobChanges::between(&new, &new).unwrap();
        assert!(none.tasks.is_empty());
        assert_eq!(none.apply(&new).unwrap(), new);

        // Only to the version they start from.
        let err = changes.apply(&new).unwrap_err().to_string();
        assert!(err.contains("changes since"), "{err}");
        let refused = |edit: &dyn Fn(&mut JobChanges)| {
            let mut bad = changes.clone();
            edit(&mut bad);
            bad.apply(&old).unwrap_err().to_string()
        };
        assert!(refused(&|c| c.tasks.swap(0, 1)).contains("out of order"));
        assert!(
            refused(&|c| {
                c.tasks.remove(1);
            })
            .contains("leaves a gap")
        );
        assert!(refused(&|c| c.task_count = 2).contains("2 tasks"));
        assert!(refused(&|c| c.task_count = 20_001).contains("20001 tasks"));
        assert!(refused(&|c| c.task_count = 6).contains("5 tasks made, 6 said"));
        assert!(refused(&|c| c.head.tasks = old.tasks.clone()).contains("head holds tasks"));
        assert!(refused(&|c| c.head.id = JobId([1; 16])).contains("applied to job"));
        // Tasks that went away are no change of one record.
        assert_eq!(JobChanges::between(&new, &old), None);
    }

    /// Issue 13: with no chunk size given, a job's frames are cut into tasks as it goes, each
    /// of the size the coordinator asks for, in order, at the job's step, until none is left;
    /// the job is done only once every frame is in a task and every task is done.
    #[test]
    fn a_job_cut_as_it_goes_takes_tasks_of_any_size_in_order_until_no_frame_is_left() {
        let spec = spec(FrameRange::with_step(1, 19, 2).unwrap());
        let mut j = new_job(&spec);
        assert!(j.cut_as_it_goes());
        assert_eq!((j.tasks.len(), j.uncut()), (0, 10));
        j.validate().expect("a record with no task yet is valid");
        assert_eq!(j.carve(1, Term(1)), Some(0));
        assert_eq!(j.carve(4, Term(1)), Some(1));
        assert_eq!(j.carve(0, Term(1)), Some(2), "at least one frame");
        assert_eq!(j.carve(100, Term(1)), Some(3), "at most what is left");
        assert_eq!(j.carve(1, Term(1)), None, "nothing left");
        let cut: Vec<String> = j.tasks.iter().map(|t| t.frames.to_string()).collect();
        assert_eq!(cut, ["1", "3-9x2", "11", "13-19x2"]);
        assert_eq!(j.uncut(), 0);
        j.validate().expect("valid");
        // Done only once every task is.
        let mut j = new_job(&spec);
        let index = j.carve(3, Term(1)).unwrap();
        let attempt = j.assign(index, node("w"), Term(1)).unwrap();
        let outputs = [1, 3, 5]
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&[frame as u8]),
                size: 1,
                thumb: None,
            })
            .to_vec();
        j.complete(index, attempt, &node("w"), outputs, Term(1))
            .unwrap();
        assert_eq!(j.state, JobState::Running, "frames are left to cut");
        // A record whose tasks do not follow one another is refused.
        let mut forged = j.clone();
        forged.carve(2, Term(1));
        forged.tasks[1].frames.start = 9;
        assert!(
            forged
                .validate()
                .unwrap_err()
                .to_string()
                .contains("does not follow")
        );
        // A job whose submitter fixed the chunk size, or that is tiled, is planned whole.
        let mut fixed = spec.clone();
        fixed.chunk = Some(4);
        let mut j = Job::new(
            JobId([0; 16]),
            fixed.clone(),
            node("o"),
            plan(&fixed, 3),
            Term(1),
            0,
        );
        assert_eq!(
            (j.tasks.len(), j.uncut(), j.carve(1, Term(1))),
            (3, 0, None)
        );
    }

    #[test]
    fn frame_ranges_parse_and_refuse_nonsense() {
        assert_eq!("1-250".parse::<FrameRange>().unwrap(), range(1, 250));
        assert_eq!("12".parse::<FrameRange>().unwrap(), range(12, 12));
        assert_eq!(" 3 - 4 ".trim().parse::<FrameRange>().unwrap(), range(3, 4));
        for bad in ["5-3", "a-b", "-3", "1-", "", "1-2-3", "1.5-2", "0-99999999"] {
            let err = bad.parse::<FrameRange>().unwrap_err().to_string();
            assert!(err.contains("bad frame range"), "{bad}: {err}");
        }
        let err = "5-3".parse::<FrameRange>().unwrap_err().to_string();
        assert!(err.contains("after the last"), "{err}");
    }

    #[test]
    fn a_frame_step_renders_every_nth_frame_and_ends_on_a_frame() {
        let r: FrameRange = "1-10x4".parse().unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [1, 5, 9]);
        assert_eq!((r.end, r.len(), r.to_string()), (9, 3, "1-9x4".to_owned()));
        assert!(r.is_valid());
        assert_eq!(
            "2-2x3".parse::<FrameRange>().unwrap(),
            FrameRange::single(2)
        );
        for bad in ["1-9x0", "9x2", "1-9x", "1-9xx2"] {
            let err = bad.parse::<FrameRange>().unwrap_err().to_string();
            assert!(err.contains("bad frame range"), "{bad}: {err}");
        }
        // Chunks keep the step and never render a frame off it.
        let chunks = plan_chunks(r, 1, Some(2));
        assert_eq!(
            chunks
                .iter()
                .map(|c| c.iter().collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            [vec![1, 5], vec![9]]
        );
        // A record from elsewhere whose end is off its step, or whose step is 0, is refused,
        // and never panics.
        let off = FrameRange {
            start: 1,
            end: 8,
            step: 4,
        };
        let zero = FrameRange {
            start: 9,
            end: 1,
            step: 0,
        };
        assert!(!off.is_valid() && !zero.is_valid());
        assert_eq!((zero.len(), zero.iter().count()), (1, 0));
        let mut s = spec(range(1, 2));
        s.frames = off;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("not reached")
        );
        // A record without a step (an older node's) reads as every frame.
        let old: FrameRange = serde_json::from_str(r#"{"start": 3, "end": 5}"#).unwrap();
        assert_eq!(old, range(3, 5));
    }

    #[test]
    fn chunks_cover_every_frame_once_in_order() {
        for (frames, workers, chunk) in [
            (range(1, 250), 3, None),
            (range(1, 12), 3, None),
            (range(7, 7), 5, None),
            (range(0, 99), 1, Some(7)),
            (range(1, 24), 1, None),
            (range(1, 10_000), 40, None),
        ] {
            let chunks = plan_chunks(frames, workers, chunk);
            let all: Vec<u32> = chunks.iter().flat_map(|c| c.iter()).collect();
            assert_eq!(all, frames.iter().collect::<Vec<_>>());
            if let Some(size) = chunk {
                assert!(chunks.iter().all(|c| c.len() <= size));
            }
        }
    }

    #[test]
    fn chunks_give_each_worker_several_and_stay_small() {
        // 12 frames on 3 workers: one frame each, 12 tasks (4 per worker).
        assert_eq!(plan_chunks(range(1, 12), 3, None).len(), 12);
        // 250 frames on 3 workers: 21 frames would be a 12th each; capped at 16.
        let c = plan_chunks(range(1, 250), 3, None);
        assert!(c.iter().all(|c| c.len() <= 16));
        assert!(c.len() >= 12);
        // 24 frames on 1 worker: 4 chunks of 6.
        assert_eq!(
            plan_chunks(range(1, 24), 1, None),
            vec![range(1, 6), range(7, 12), range(13, 18), range(19, 24)]
        );
    }

    #[test]
    fn a_stale_report_never_counts() {
        let mut j = job(range(1, 4), 1);
        let a = j.assign(0, node("w1"), Term(1)).unwrap();
        // w1 vanishes; its task is queued again and handed to w2.
        assert_eq!(j.requeue_node(&node("w1"), Term(1)), 1);
        let b = j.assign(0, node("w2"), Term(2)).unwrap();
        assert_eq!(b, a + 1);
        // w1's late report is refused; w2's is accepted exactly once.
        let out = vec![Output {
            frame: 1,
            blob: BlobHash::of(b"f"),
            size: 1,
            thumb: None,
        }];
        assert!(j.complete(0, a, &node("w1"), out.clone(), Term(2)).is_err());
        j.complete(0, b, &node("w2"), out.clone(), Term(2)).unwrap();
        assert!(j.complete(0, b, &node("w2"), out, Term(2)).is_err());
        assert_eq!(j.tasks[0].worker, Some(node("w2")));
    }

    #[test]
    fn a_task_that_timed_out_may_be_retried_by_its_node_and_fails_the_job_the_third_time() {
        let mut j = job(range(1, 1), 1);
        for round in 1..=3 {
            // Alone, the node that timed out gets the task again (a Blender error would not).
            assert_eq!(j.next_task_for(&node("w")), Some(0), "round {round}");
            let a = j.assign(0, node("w"), Term(1)).unwrap();
            j.time_out(
                0,
                a,
                &node("w"),
                format!("timed out, round {round}"),
                Term(1),
            )
            .unwrap();
            assert_eq!(j.timeouts(0), round);
        }
        assert_eq!(j.state, JobState::Failed);
        let message = j.message.clone().unwrap_or_default();
        assert!(message.contains("timed out 3 times"), "{message}");
        // A timeout is no failure on a distinct node: one node that timed out once does not
        // fail a job that only it can render.
        let mut k = job(range(1, 1), 1);
        let a = k.assign(0, node("w"), Term(1)).unwrap();
        k.time_out(0, a, &node("w"), "timed out".into(), Term(1))
            .unwrap();
        assert_eq!(
            (k.state, k.tasks[0].state),
            (JobState::Running, TaskState::Queued)
        );
    }

    /// Found by the simulator: a chunk counted with no peer in view lists each of its frames
    /// as held once, and its record was refused everywhere as listing more frames than tasks,
    /// so the job never left the node that had coordinated it alone.
    #[test]
    fn a_chunk_counted_alone_lists_each_frame_held_once_and_stays_valid() {
        let spec = JobSpec {
            chunk: Some(3),
            ..spec(range(1, 3))
        };
        let plan = plan(&spec, 1);
        let mut j = Job::new(JobId([0; 16]), spec, node("o"), plan, Term(1), 0);
        assert_eq!(j.tasks.len(), 1);
        let a = j.assign(0, node("w"), Term(1)).unwrap();
        let outputs: Vec<Output> = (1..=3)
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&[frame as u8]),
                size: 1,
                thumb: Some(BlobHash::of(&[frame as u8, b't'])),
            })
            .collect();
        j.complete(0, a, &node("w"), outputs.clone(), Term(1))
            .unwrap();
        // Each frame and its thumbnail.
        for blob in outputs.iter().flat_map(Output::blobs) {
            j.note_held_once(blob, node("w"), Term(1));
        }
        assert_eq!(j.held_once.len(), 6);
        j.validate().unwrap();
        j.held_once.push((BlobHash::of(b"extra"), node("w")));
        assert!(j.validate().is_err());
    }

    /// A job keeps its frames' thumbnails as it keeps its frames: they are its blobs, and
    /// an output holds both.
    #[test]
    fn a_jobs_blobs_are_its_inputs_its_frames_and_their_thumbnails() {
        let mut j = job(range(1, 2), 1);
        let a = j.assign(0, node("w"), Term(1)).unwrap();
        let out = |frame: u32, thumb: Option<BlobHash>| Output {
            frame,
            blob: BlobHash::of(&[frame as u8]),
            size: 1,
            thumb,
        };
        let thumb = BlobHash::of(b"thumbnail of 1");
        j.complete(0, a, &node("w"), vec![out(1, Some(thumb))], Term(1))
            .unwrap();
        let a = j.assign(1, node("w"), Term(1)).unwrap();
        j.complete(1, a, &node("w"), vec![out(2, None)], Term(1))
            .unwrap();
        let blobs: Vec<BlobHash> = j.blobs().collect();
        assert_eq!(
            blobs,
            [j.spec.blend, BlobHash::of(&[1]), thumb, BlobHash::of(&[2])]
        );
        let first = out(1, Some(thumb));
        assert!(first.holds(&thumb) && first.holds(&first.blob));
        assert!(!out(2, None).holds(&thumb));
    }

    #[test]
    fn a_removed_job_is_a_tombstone_that_ended_and_uses_no_blob() {
        let mut j = job(range(1, 2), 1);
        assert!(!j.note_ended(5, Term(1)), "a queued job has not ended");
        assert_eq!(j.blobs().collect::<Vec<_>>(), [j.spec.blend]);
        let before = j.version;
        // Removing a job that has not ended cancels it first.
        assert!(j.remove(9, Term(1), &node("o")));
        assert_eq!(
            (j.state, j.ended_ms, j.removed_ms),
            (JobState::Cancelled, Some(9), Some(9))
        );
        assert!(j.version > before);
        assert_eq!(j.blobs().count(), 0);
        assert!(!j.remove(10, Term(1), &node("o")), "removed once");
        j.validate().unwrap();
        // A finished job keeps the time it ended.
        let mut done = job(range(1, 1), 1);
        done.abort("broken".into(), Term(1));
        assert!(done.note_ended(20, Term(1)));
        assert!(!done.note_ended(30, Term(1)));
        done.remove(40, Term(1), &node("o"));
        assert_eq!((done.state, done.ended_ms), (JobState::Failed, Some(20)));
        // A record that says otherwise is not one a coordinator writes.
        let mut forged = job(range(1, 1), 1);
        forged.removed_ms = Some(1);
        assert!(forged.validate().is_err());
        forged.removed_ms = None;
        forged.ended_ms = Some(1);
        assert!(forged.validate().is_err());
    }

    #[test]
    fn a_job_keeps_its_latest_frame_times_and_their_median() {
        let mut j = job(range(1, 4), 1);
        assert_eq!(j.median_frame_ms(), None);
        for ms in [500, 100, 300] {
            j.note_frame_time(ms);
        }
        assert_eq!(j.median_frame_ms(), Some(300));
        for ms in 0..limits::MAX_FRAME_TIMES as u64 {
            j.note_frame_time(ms);
        }
        assert_eq!(j.frame_ms.len(), limits::MAX_FRAME_TIMES);
        assert_eq!(j.frame_ms.first(), Some(&0));
        j.validate().unwrap();
    }

    #[test]
    fn a_record_revokes_an_assignment_only_once_it_has_moved_on() {
        let mut j = job(range(1, 4), 1);
        let older = j.clone();
        let a = j.assign(0, node("w1"), Term(1)).unwrap();
        let since = j.version;
        // The record from before the assignment does not take it away; the current one does
        // not either. A task past the record's (a check queued after it was written) is not
        // taken away; once the record names it, it is when given to another node.
        assert!(!older.revoked(0, a, &node("w1"), since));
        assert!(!j.revoked(0, a, &node("w1"), since));
        assert!(j.revoked(0, a, &node("w2"), since));
        let check = FIRST_CHECK;
        assert!(!j.revoked(check, 1, &node("w1"), since));
        let mut checked = j.clone();
        checked.add_check(0, node("w2"), None, Term(1)).unwrap();
        checked.assign(check, node("w3"), Term(1)).unwrap();
        assert!(checked.revoked(check, 1, &node("w1"), since));
        assert!(!checked.revoked(check, 1, &node("w3"), since));
        // Put back in the queue: revoked; handed to w2 under a new attempt: still revoked for
        // w1, and w2's own assignment stands.
        j.release(0, a, &node("w1"), Term(1)).unwrap();
        assert!(j.revoked(0, a, &node("w1"), since));
        let b = j.assign(0, node("w2"), Term(1)).unwrap();
        assert!(j.revoked(0, a, &node("w1"), since));
        assert!(!j.revoked(0, b, &node("w2"), since));
        let out = vec![Output {
            frame: 1,
            blob: BlobHash::of(b"f"),
            size: 1,
            thumb: None,
        }];
        j.complete(0, b, &node("w2"), out, Term(1)).unwrap();
        assert!(!j.revoked(0, b, &node("w2"), since));
    }

    /// Issue 13: a backup runs the same attempt on a second node; the first report renders
    /// the task and ends the other's run; a backup that fails, vanishes or turns suspect, or
    /// a worker that does so while its backup runs, leaves the task running on the other
    /// node.
    #[test]
    fn a_backup_runs_the_same_attempt_and_the_first_report_counts() {
        let out = |frame| {
            vec![Output {
                frame,
                blob: BlobHash::of(b"f"),
                size: 1,
                thumb: None,
            }]
        };
        let mut j = job(range(1, 2), 1);
        let a = j.assign(0, node("w1"), Term(1)).unwrap();
        let assigned = j.version;
        // Only a running task, once, and never on its own worker.
        assert!(j.back_up(1, node("w2"), Term(1)).is_err());
        assert!(j.back_up(0, node("w1"), Term(1)).is_err());
        let before_backup = j.clone();
        assert_eq!(j.back_up(0, node("w2"), Term(1)), Ok(a));
        let backed = j.version;
        assert!(j.back_up(0, node("w3"), Term(1)).is_err());
        j.validate().unwrap();
        assert!(j.check_current(0, a, &node("w1")).is_ok());
        assert!(j.check_current(0, a, &node("w2")).is_ok());
        assert!(j.check_current(0, a, &node("w3")).is_err());
        // The record from before the backup does not take it away from its node.
        assert!(!before_backup.revoked(0, a, &node("w2"), backed));
        assert!(!j.revoked(0, a, &node("w2"), backed));
        // The backup reports first: it rendered the task, the worker's run is taken away.
        let mut first = j.clone();
        first.complete(0, a, &node("w2"), out(1), Term(1)).unwrap();
        assert_eq!(first.tasks[0].worker, Some(node("w2")));
        assert_eq!(first.tasks[0].backup, None);
        assert!(first.revoked(0, a, &node("w1"), assigned));
        assert!(!first.revoked(0, a, &node("w2"), backed));
        assert!(first.complete(0, a, &node("w1"), out(1), Term(1)).is_err());
        // The worker reports first: the backup's run is taken away.
        let mut second = j.clone();
        second.complete(0, a, &node("w1"), out(1), Term(1)).unwrap();
        assert!(second.revoked(0, a, &node("w2"), backed));
        // The worker fails: the backup carries the attempt on, no requeue.
        let mut failed = j.clone();
        failed
            .fail(0, a, &node("w1"), "boom".into(), 3, Term(1))
            .unwrap();
        assert_eq!(failed.tasks[0].state, TaskState::Running);
        assert_eq!(failed.tasks[0].worker, Some(node("w2")));
        assert_eq!(failed.tasks[0].failures.len(), 1);
        failed.validate().unwrap();
        // The backup's node is gone: the worker carries on; then it is gone too: requeued.
        let mut gone = j.clone();
        assert_eq!(gone.requeue_node(&node("w2"), Term(1)), 1);
        assert_eq!(gone.tasks[0].worker, Some(node("w1")));
        assert_eq!(gone.tasks[0].backup, None);
        assert!(gone.revoked(0, a, &node("w2"), backed));
        assert_eq!(gone.requeue_node(&node("w1"), Term(1)), 1);
        assert_eq!(gone.tasks[0].state, TaskState::Queued);
        // The backup's node turns suspect: its copy is dropped, its report refused, and the
        // worker carries on; a suspect worker leaves the task to its backup.
        for (suspect, other) in [("w2", "w1"), ("w1", "w2")] {
            let mut distrusted = j.clone();
            distrusted.distrust(node(suspect), Term(1));
            let task = &distrusted.tasks[0];
            assert_eq!(task.state, TaskState::Running, "{suspect}");
            assert_eq!(task.worker, Some(node(other)), "{suspect}");
            assert_eq!(task.backup, None, "{suspect}");
            let report = distrusted.complete(0, a, &node(suspect), out(1), Term(1));
            assert!(report.is_err(), "{suspect}");
            distrusted.validate().unwrap();
        }
        // A record whose task is done has no backup; one that says otherwise is refused.
        let mut forged = second.clone();
        forged.tasks[0].backup = Some(node("w2"));
        assert!(forged.validate().is_err());
    }

    #[test]
    fn a_job_is_done_when_every_task_is_and_versions_only_grow() {
        let mut j = job(range(1, 3), 3);
        let mut last = j.version;
        for i in 0..j.tasks.len() as u32 {
            let a = j.assign(i, node("w"), Term(1)).unwrap();
            assert!(j.version > last);
            last = j.version;
            let f = j.tasks[i as usize].frames.start;
            let out = vec![Output {
                frame: f,
                blob: BlobHash::of(&f.to_le_bytes()),
                size: 1,
                thumb: None,
            }];
            j.complete(i, a, &node("w"), out, Term(1)).unwrap();
            assert!(j.version > last);
            last = j.version;
        }
        assert_eq!(j.state, JobState::Done);
        assert_eq!(j.outputs().len(), 3);
        assert_eq!(j.frames_done(), 3);
    }

    /// Renders every queued task of `j` on `w`, one blob per frame named by `tag`.
    fn render_queued(j: &mut Job, w: &str, tag: &str) {
        for i in 0..j.tasks.len() as u32 {
            if j.tasks[i as usize].state != TaskState::Queued {
                continue;
            }
            let a = j.assign(i, node(w), Term(1)).unwrap();
            let out = j.tasks[i as usize]
                .frames
                .iter()
                .map(|frame| Output {
                    frame,
                    blob: BlobHash::of(format!("{tag}{frame}").as_bytes()),
                    size: 1,
                    thumb: None,
                })
                .collect();
            j.complete(i, a, &node(w), out, Term(1)).unwrap();
        }
    }

    /// Issue 14: a frame rendered again puts the task that rendered it (its chunk) back in
    /// the queue and the done job runs again until the new render is in; a frame outside the
    /// job, one not rendered yet, and a job cancelled are refused with the reason.
    #[test]
    fn a_frame_rendered_again_requeues_its_task_and_the_job_runs_until_it_is_in() {
        let mut j = job(range(1, 6), 2);
        render_queued(&mut j, "w", "old");
        assert!(j.note_ended(1_000, Term(1)));
        let outside = j.rerender(7, Term(1)).unwrap_err();
        assert!(outside.contains("frame 7 is not one of job"), "{outside}");
        let before = j.version;
        j.rerender(4, Term(1)).unwrap();
        assert!(j.version > before);
        assert_eq!((j.state, j.ended_ms), (JobState::Running, None));
        j.validate().unwrap();
        let again: Vec<&Task> = j
            .tasks
            .iter()
            .filter(|t| t.state != TaskState::Done)
            .collect();
        let [task] = again[..] else {
            panic!("one task queued again: {again:?}");
        };
        assert!(task.frames.iter().any(|f| f == 4), "{task:?}");
        assert_eq!((task.state, task.outputs.len()), (TaskState::Queued, 0));
        let chunk = task.frames.len() as usize;
        assert_eq!(j.outputs().len(), 6 - chunk);
        let not_yet = j.rerender(4, Term(1)).unwrap_err();
        assert!(not_yet.contains("not rendered yet"), "{not_yet}");

        render_queued(&mut j, "v", "new");
        assert_eq!(j.state, JobState::Done);
        let four = j.outputs().into_iter().find(|o| o.frame == 4).unwrap().blob;
        assert_eq!(four, BlobHash::of(b"new4"));
        let one = j.outputs().into_iter().find(|o| o.frame == 1).unwrap().blob;
        assert_eq!(one, BlobHash::of(b"old1"), "the other chunks are kept");

        let mut cancelled = job(range(1, 6), 2);
        cancelled.cancel(Term(1), &node("o"));
        let refused = cancelled.rerender(1, Term(1)).unwrap_err();
        assert!(refused.contains("was cancelled"), "{refused}");
    }

    #[test]
    fn a_task_failing_on_every_node_fails_the_job_with_blenders_words() {
        let mut j = job(range(1, 2), 2);
        let a = j.assign(0, node("w1"), Term(1)).unwrap();
        j.fail(0, a, &node("w1"), "no camera".into(), 2, Term(1))
            .unwrap();
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.tasks[0].state, TaskState::Queued);
        // w1 is not given the task it failed again; w2 is.
        assert_eq!(j.next_task_for(&node("w1")), Some(1));
        assert_eq!(j.next_task_for(&node("w2")), Some(0));
        let b = j.assign(0, node("w2"), Term(1)).unwrap();
        j.fail(0, b, &node("w2"), "no camera".into(), 2, Term(1))
            .unwrap();
        assert_eq!(j.state, JobState::Failed);
        let msg = j.message.clone().unwrap();
        assert!(
            msg.contains("no camera") && msg.contains("2 nodes"),
            "{msg}"
        );
        assert_eq!(j.next_task_for(&node("w3")), None);
    }

    /// Issue 12: a node that fails every task of a job kept being given more of them.
    #[test]
    fn a_node_that_failed_three_tasks_of_a_job_gets_no_more_of_it() {
        let mut one_each = spec(range(1, 6));
        one_each.chunk = Some(1);
        let plan = plan(&one_each, 2);
        let mut j = Job::new(JobId([0; 16]), one_each, node("o"), plan, Term(1), 0);
        let broken = node("broken");
        for index in 0..3 {
            assert!(!j.blocklisted(&broken));
            assert!(j.blocklist().is_empty());
            let attempt = j.assign(index, broken.clone(), Term(1)).unwrap();
            j.fail(index, attempt, &broken, "segfault".into(), 3, Term(1))
                .unwrap();
        }
        assert!(j.blocklisted(&broken));
        // The whole list, in one pass, says the same; a suspect is on it too.
        assert_eq!(j.blocklist(), BTreeSet::from([&broken]));
        let liar = node("liar");
        j.suspects.push(liar.clone());
        assert_eq!(j.blocklist(), BTreeSet::from([&broken, &liar]));
        assert!(j.blocklisted(&liar));
        assert_eq!(
            j.next_task_for(&broken),
            None,
            "tasks 3-5 are queued, but not for it"
        );
        assert_eq!(j.next_task_for(&node("good")), Some(0));
        assert_eq!(j.state, JobState::Running, "no task failed on 3 nodes");
    }

    #[test]
    fn cancel_stops_hand_out() {
        let mut j = job(range(1, 8), 2);
        assert!(j.cancel(Term(1), &j.origin.clone()));
        assert_eq!(j.state, JobState::Cancelled);
        assert!(j.assign(0, node("w"), Term(1)).is_err());
        assert!(!j.cancel(Term(1), &j.origin.clone()));
    }

    #[test]
    fn specs_name_the_bad_field() {
        let mut s = spec(range(1, 2));
        s.samples = Some(0);
        assert!(s.validate().unwrap_err().to_string().contains("samples"));
        let mut s = spec(range(1, 2));
        s.resolution_percent = Some(101);
        assert!(s.validate().unwrap_err().to_string().contains("resolution"));
        let mut s = spec(range(1, 2));
        s.chunk = Some(0);
        assert!(s.validate().unwrap_err().to_string().contains("chunk"));
        assert!(spec(range(1, 2)).validate().is_ok());
    }

    #[test]
    fn a_spec_that_ships_files_says_where_its_blend_was() {
        let dep = Dependency {
            path: "/p/tex/a.png".into(),
            named: "//tex/a.png".into(),
            blob: BlobHash::of(b"a"),
            size: 1,
        };
        let mut s = spec(range(1, 2));
        s.deps = vec![dep.clone()];
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("blend-path") && e.contains("where its .blend was"),
            "{e}"
        );
        s.blend_path = Some("/p/shot.blend".into());
        s.validate().unwrap();
        s.deps.push(Dependency {
            path: "/p/../etc/passwd".into(),
            ..dep
        });
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("/p/../etc/passwd")
        );
        let mut s = spec(range(1, 2));
        s.missing = vec!["x".repeat(1 << 10); (limits::MAX_DEPENDENCY_TEXT >> 10) + 1];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("bad missing")
        );
    }

    #[test]
    fn tilings_parse_and_refuse_nonsense() {
        assert_eq!("auto".parse::<Tiling>().unwrap(), Tiling::Auto);
        assert_eq!(
            "4x3".parse::<Tiling>().unwrap(),
            Tiling::Grid(TileGrid { cols: 4, rows: 3 })
        );
        assert_eq!("2X2".parse::<Tiling>().unwrap().to_string(), "2x2");
        for bad in [
            "", "4", "4x", "x4", "0x4", "4x0", "65x1", "4*4", "a x b", "-1x2",
        ] {
            let err = bad.parse::<Tiling>().unwrap_err().to_string();
            assert!(err.contains("bad tile grid"), "{bad}: {err}");
        }
    }

    #[test]
    fn auto_grids_give_each_node_two_tiles_or_more() {
        assert_eq!(TileGrid::auto(1), None);
        assert_eq!(TileGrid::auto(0), None);
        for workers in 2..200 {
            let grid = TileGrid::auto(workers).unwrap();
            assert!(
                grid.count() as usize >= 2 * workers.min(2048),
                "{workers}: {grid}"
            );
            assert!(grid.cols >= grid.rows && grid.cols <= limits::MAX_TILE_SIDE);
        }
        assert_eq!(TileGrid::auto(3), Some(TileGrid { cols: 3, rows: 2 }));
    }

    #[test]
    fn a_tiled_plan_has_one_task_per_tile_per_frame() {
        let mut s = spec(range(5, 6));
        s.tiles = Some(Tiling::Grid(TileGrid { cols: 4, rows: 4 }));
        let p = plan(&s, 3);
        assert_eq!(p.grid, Some(TileGrid { cols: 4, rows: 4 }));
        assert_eq!(p.tasks.len(), 32);
        assert!(p.tasks[..16].iter().all(|(f, _)| *f == range(5, 5)));
        let tiles: BTreeSet<Tile> = p.tasks[16..].iter().filter_map(|(_, t)| *t).collect();
        assert_eq!(tiles.len(), 16);
        // Auto on one node and a 1x1 grid render whole frames.
        s.tiles = Some(Tiling::Auto);
        assert_eq!(plan(&s, 1).grid, None);
        assert!(plan(&s, 1).tasks.iter().all(|(_, tile)| tile.is_none()));
        s.tiles = Some(Tiling::Grid(TileGrid { cols: 1, rows: 1 }));
        assert_eq!(plan(&s, 3).grid, None);
    }

    #[test]
    fn a_tiled_job_is_done_only_when_every_frame_is_stitched() {
        let mut s = spec(range(1, 2));
        s.tiles = Some(Tiling::Grid(TileGrid { cols: 2, rows: 1 }));
        let p = plan(&s, 2);
        let mut j = Job::new(JobId([1; 16]), s, node("o"), p, Term(1), 0);
        assert!(j.frames_to_stitch().is_empty());
        let out = |frame: u32, tag: &[u8]| Output {
            frame,
            blob: BlobHash::of(tag),
            size: 1,
            thumb: None,
        };
        for i in 0..4 {
            let a = j.assign(i, node("w"), Term(1)).unwrap();
            let frame = j.tasks[i as usize].frames.start;
            j.complete(i, a, &node("w"), vec![out(frame, &[i as u8])], Term(1))
                .unwrap();
            let expect: Vec<u32> = match i {
                0 => vec![],
                1 | 2 => vec![1],
                _ => vec![1, 2],
            };
            assert_eq!(j.frames_to_stitch(), expect, "after task {i}");
        }
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.frames_done(), 0);
        j.add_stitched(out(2, b"two"), Term(1)).unwrap();
        j.add_stitched(out(2, b"again"), Term(1)).unwrap();
        assert_eq!(j.frames_to_stitch(), vec![1]);
        j.add_stitched(out(1, b"one"), Term(1)).unwrap();
        assert_eq!(j.state, JobState::Done);
        let frames: Vec<(u32, BlobHash)> = j.outputs().iter().map(|o| (o.frame, o.blob)).collect();
        assert_eq!(
            frames,
            vec![(1, BlobHash::of(b"one")), (2, BlobHash::of(b"two"))]
        );
        assert!(j.add_stitched(out(1, b"late"), Term(1)).is_err());
    }

    /// A job of `frames` in one task.
    fn one_task(frames: FrameRange) -> Job {
        let spec = JobSpec {
            chunk: Some(frames.len()),
            ..spec(frames)
        };
        let plan = plan(&spec, 1);
        Job::new(JobId([0; 16]), spec, node("o"), plan, Term(1), 0)
    }

    /// Renders task `index` of `j` on `w`, its frames named after `tag`.
    fn render(j: &mut Job, index: u32, w: &str, tag: &str) {
        let a = j.assign(index, node(w), Term(1)).unwrap();
        let task = j.task(index).unwrap();
        let outputs = task
            .frames
            .iter()
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(format!("{tag} {frame}").as_bytes()),
                size: 1,
                thumb: None,
            })
            .collect();
        j.complete(index, a, &node(w), outputs, Term(1)).unwrap();
    }

    /// Issue 12: a node rendering wrong pixels was believed. A check renders one frame of a
    /// task again on another node, and the job is done only once it is compared.
    #[test]
    fn a_check_renders_one_frame_elsewhere_and_the_job_waits_for_its_verdict() {
        let mut j = one_task(range(1, 4));
        assert_eq!(j.tasks.len(), 1);
        let check = j.add_check(0, node("w1"), None, Term(1)).unwrap();
        assert_eq!(
            check, FIRST_CHECK,
            "checks are numbered apart from the tasks"
        );
        assert_eq!(j.task(check).unwrap().frames, range(1, 1));
        // The checked node never checks itself; another node takes the check first.
        assert_eq!(j.next_task_for(&node("w1")), Some(0));
        assert_eq!(j.next_task_for(&node("w2")), Some(check));
        render(&mut j, 0, "w1", "right");
        assert_eq!(j.state, JobState::Running, "waits for its check");
        assert_eq!(j.to_compare(check), None, "nothing to compare yet");
        render(&mut j, check, "w2", "again");
        assert_eq!(
            j.to_compare(check),
            Some((BlobHash::of(b"right 1"), BlobHash::of(b"again 1")))
        );
        assert_eq!(
            j.counts(),
            (0, 0, 1),
            "a check is not one of the job's tasks"
        );
        assert_eq!(j.frames_done(), 4);
        j.validate().unwrap();
        assert_eq!(j.judge(check, true, Term(1)), Some(Judgement::Agree));
        assert_eq!(j.state, JobState::Done);
        assert_eq!(j.judge(check, false, Term(1)), None, "judged once");
        assert!(j.all_blobs().any(|b| b == BlobHash::of(b"again 1")));
    }

    /// A check that differs goes to a third node; the render it disagrees with is wrong, and
    /// its node renders nothing more of the job, and all it rendered is rendered again.
    #[test]
    fn a_check_that_differs_is_decided_by_a_third_node() {
        for liar in ["w1", "w2"] {
            let mut j = job(range(1, 4), 4);
            assert_eq!(j.tasks.len(), 4);
            render(
                &mut j,
                0,
                "w1",
                if liar == "w1" { "wrong" } else { "right" },
            );
            render(
                &mut j,
                1,
                "w1",
                if liar == "w1" { "wrong" } else { "right" },
            );
            render(
                &mut j,
                2,
                "w2",
                if liar == "w2" { "wrong" } else { "right" },
            );
            let check = j.add_check(0, node("w1"), None, Term(1)).unwrap();
            render(&mut j, check, "w2", "again");
            let Some(Judgement::Disputed(Some(tie))) = j.judge(check, false, Term(1)) else {
                panic!("a tie-break expected");
            };
            // Neither node of the dispute decides it.
            assert_eq!(j.next_task_for(&node("w1")), Some(3));
            assert_eq!(j.next_task_for(&node("w2")), Some(3));
            assert_eq!(j.next_task_for(&node("w3")), Some(tie));
            render(&mut j, tie, "w3", "third");
            let suspect = j.judge(tie, liar == "w2", Term(1));
            assert_eq!(suspect, Some(Judgement::Suspect(node(liar))), "{liar}");
            assert_eq!(j.suspects, [node(liar)]);
            assert!(j.blocklisted(&node(liar)));
            assert_eq!(j.next_task_for(&node(liar)), None);
            // Every task of the liar is queued again; the others stand.
            let redo: Vec<u32> = j
                .tasks
                .iter()
                .filter(|t| t.state == TaskState::Queued)
                .map(|t| t.index)
                .collect();
            let expect: &[u32] = if liar == "w1" { &[0, 1, 3] } else { &[2, 3] };
            assert_eq!(redo, expect, "{liar}");
            assert!(
                j.tasks
                    .iter()
                    .all(|t| t.state != TaskState::Queued || t.outputs.is_empty())
            );
            j.validate().unwrap();
        }
    }

    /// A suspect's tiles take their stitched frames with them, and the open checks of its
    /// renders are skipped.
    #[test]
    fn a_suspects_tiles_unstitch_their_frames_and_its_open_checks_are_skipped() {
        let mut s = spec(range(1, 2));
        s.tiles = Some(Tiling::Grid(TileGrid { cols: 2, rows: 1 }));
        let p = plan(&s, 2);
        let mut j = Job::new(JobId([1; 16]), s, node("o"), p, Term(1), 0);
        for (i, w) in [(0, "w1"), (1, "w2"), (2, "w2"), (3, "w2")] {
            render(&mut j, i, w, w);
        }
        for frame in [1, 2] {
            let blob = BlobHash::of(format!("frame {frame}").as_bytes());
            j.add_stitched(
                Output {
                    frame,
                    blob,
                    size: 1,
                    thumb: None,
                },
                Term(1),
            )
            .unwrap();
        }
        let open = j.add_check(1, node("w2"), None, Term(1)).unwrap();
        assert_eq!(j.task(open).unwrap().tile, j.tasks[1].tile);
        j.distrust(node("w1"), Term(1));
        assert_eq!(j.tasks[0].state, TaskState::Queued);
        assert_eq!(j.stitched.iter().map(|o| o.frame).collect::<Vec<_>>(), [2]);
        assert_eq!(j.check(open).unwrap().verdict, None, "w2's check stands");
        j.distrust(node("w2"), Term(1));
        assert_eq!(j.check(open).unwrap().verdict, Some(Verdict::Skipped));
        assert!(j.stitched.is_empty());
        j.validate().unwrap();
    }

    /// A check failing wherever it runs is skipped; the render it checks stands.
    #[test]
    fn a_check_that_cannot_be_rendered_is_skipped_and_fails_nothing() {
        let mut j = one_task(range(1, 2));
        render(&mut j, 0, "w1", "right");
        let check = j.add_check(0, node("w1"), None, Term(1)).unwrap();
        for w in ["w2", "w3", "w4"] {
            let a = j.assign(check, node(w), Term(1)).unwrap();
            j.fail(check, a, &node(w), "out of memory".into(), 3, Term(1))
                .unwrap();
        }
        assert_eq!(j.check(check).unwrap().verdict, Some(Verdict::Skipped));
        assert_eq!(j.state, JobState::Done);
        assert_eq!(j.message, None);
    }

    /// A record whose checks are not the coordinator's kind is refused.
    #[test]
    fn a_record_with_forged_checks_is_refused() {
        let mut j = one_task(range(1, 4));
        render(&mut j, 0, "w1", "right");
        let check = j.add_check(0, node("w1"), None, Term(1)).unwrap();
        j.validate().unwrap();
        let mut own = j.clone();
        own.assign(check, node("w2"), Term(1)).unwrap();
        own.checks[0].task.worker = Some(node("w1"));
        let mut wide = j.clone();
        wide.checks[0].task.frames = range(1, 4);
        let mut numbered = j.clone();
        numbered.checks[0].task.index = 0;
        let mut elsewhere = j.clone();
        elsewhere.checks[0].of = 9;
        let mut many = j.clone();
        many.suspects = vec![node("w1"); limits::MAX_CHECKS + 1];
        for (what, bad) in [
            ("rendered by a node it checks", own),
            ("not a frame of task", wide),
            ("not a frame of task", numbered),
            ("which it has not", elsewhere),
            ("suspects", many),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn too_many_tiles_are_refused_by_name() {
        let mut s = spec(range(1, 1000));
        s.tiles = Some(Tiling::Grid(TileGrid { cols: 4, rows: 4 }));
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("tiles") && err.contains("16000"), "{err}");
    }

    #[test]
    fn versions_and_terms_never_overflow() {
        let mut j = job(range(1, 2), 1);
        j.version.seq = u64::MAX;
        j.touch(Term(u64::MAX));
        let top = Version {
            term: Term(u64::MAX),
            seq: u64::MAX,
        };
        assert_eq!(j.version, top);
        let live = [node("a")];
        let lead = crate::elect(&node("a"), &live, &[], Term(u64::MAX));
        assert_eq!(lead, crate::Decision::Lead(Term(u64::MAX)));
    }

    #[test]
    fn a_record_a_coordinator_could_not_write_is_refused_by_what_is_wrong() {
        let good = job(range(1, 8), 2);
        good.validate().unwrap();
        // A stepped job's chunks keep the step, single frames included.
        let mut stepped = spec(FrameRange::with_step(1, 5, 2).unwrap());
        stepped.chunk = Some(1);
        let plan = plan(&stepped, 2);
        Job::new(JobId([1; 16]), stepped, node("o"), plan, Term(1), 0)
            .validate()
            .unwrap();
        let refused = |change: &dyn Fn(&mut Job), what: &str| {
            let mut j = good.clone();
            change(&mut j);
            let err = j.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
        };
        refused(
            &|j| {
                j.spec.frames = FrameRange {
                    start: 0,
                    end: u32::MAX,
                    step: 1,
                }
            },
            "frame",
        );
        refused(&|j| j.tasks[1].frames = range(5, 40), "outside");
        refused(&|j| j.tasks.clear(), "0 tasks");
        refused(
            &|j| j.frame_ms = vec![1; limits::MAX_FRAME_TIMES + 1],
            "65 frame times",
        );
        refused(&|j| j.tasks[0].index = 3, "says it is task 3");
        refused(&|j| j.priority = 101, "priority 101 (at most 100)");
        refused(
            &|j| {
                j.tasks[0].tile = Some(Tile {
                    col: 0,
                    row: 0,
                    cols: 2,
                    rows: 1,
                })
            },
            "tile",
        );
        refused(
            &|j| {
                j.tasks[0].state = TaskState::Done;
                j.tasks[0].outputs = vec![Output {
                    frame: 99,
                    blob: BlobHash::of(b"x"),
                    size: 1,
                    thumb: None,
                }];
            },
            "frame 99",
        );
        refused(
            &|j| j.message = Some("x".repeat(limits::MAX_FAILURE_TEXT + 1)),
            "too long",
        );
        refused(
            &|j| {
                j.stitched = vec![Output {
                    frame: 1,
                    blob: BlobHash::of(b"x"),
                    size: 1,
                    thumb: None,
                }]
            },
            "stitched",
        );
        // What a coordinator writes passes: a task done with its frames, a failure recorded.
        let mut j = good.clone();
        let a = j.assign(0, node("w"), Term(1)).unwrap();
        let outputs = j.tasks[0]
            .frames
            .iter()
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&frame.to_le_bytes()),
                size: 4,
                thumb: None,
            })
            .collect();
        j.complete(0, a, &node("w"), outputs, Term(1)).unwrap();
        let b = j.assign(1, node("w"), Term(1)).unwrap();
        j.fail(
            1,
            b,
            &node("w"),
            "é".repeat(limits::MAX_FAILURE_TEXT),
            3,
            Term(1),
        )
        .unwrap();
        j.validate().unwrap();
        assert!(j.tasks[1].failures[0].message.len() <= limits::MAX_FAILURE_TEXT);
    }

    /// Issue 11: failure texts were bounded one by one only, so a job whose tasks kept failing
    /// with long tracebacks grew a record too big for one message (and a forged one could be).
    #[test]
    fn a_job_failing_everywhere_with_long_messages_keeps_a_record_that_fits_one_message() {
        let mut one_each = spec(range(1, 400));
        one_each.chunk = Some(1);
        let plan = plan(&one_each, 2);
        let mut j = Job::new(JobId([0; 16]), one_each, node("o"), plan, Term(1), 0);
        let traceback = "Traceback: ".repeat(limits::MAX_FAILURE_TEXT);
        for index in 0..400 {
            for worker in ["w1", "w2"] {
                let attempt = j.assign(index, node(worker), Term(1)).unwrap();
                j.fail(index, attempt, &node(worker), traceback.clone(), 3, Term(1))
                    .unwrap();
            }
        }
        assert!(!j.state.is_terminal(), "no task failed on 3 nodes");
        assert!(j.failure_text() <= limits::MAX_JOB_FAILURE_TEXT);
        // The first failures are whole; the later ones are cut.
        assert_eq!(
            j.tasks[0].failures[0].message.len(),
            limits::MAX_FAILURE_TEXT
        );
        assert!(j.tasks[399].failures[1].message.is_empty());
        j.validate().unwrap();
        let bytes = crate::codec::encode(&j, limits::MAX_MESSAGE).expect("fits one message");
        assert!(bytes.len() < limits::MAX_MESSAGE);
        // A record claiming more failure text than that is refused.
        let mut forged = j.clone();
        for t in &mut forged.tasks {
            for f in &mut t.failures {
                f.message = "x".repeat(limits::MAX_FAILURE_TEXT);
            }
        }
        let err = forged.validate().unwrap_err().to_string();
        assert!(err.contains("bytes of text"), "{err}");
    }
}
