//! Running Blender: the only module that starts it.
//!
//! A [`Blender`] is an executable plus a thread count. [`Blender::render_frames`] renders a
//! chunk of frames of a `.blend` in one Blender process (one start-up, about a second, per
//! chunk), streams its output line by line as [`Progress`] events, kills it when cancelled, and
//! on exit checks that every expected file `OUT_DIR/frame_NNNNN.EXT` exists: Blender often
//! exits 0 after a failure, so its exit status alone proves nothing. A failure is reported as
//! [`RenderError::Failed`] quoting Blender's own words (its `Error:` lines, Python tracebacks,
//! `rendermesh: error:` lines from the settings script, else its last lines).
//!
//! A [`Session`] ([`Blender::start_session`]) is what a worker uses: the same Blender command
//! without `-o`/`-s`/`-e`/`-a` and with `--serve`, so Blender loads the file and applies the
//! settings once and then renders each requested frame or tile (written to its stdin) with the
//! same checks, progress and errors; a job's tasks on one node share it.
//!
//! The per-call command ([`Blender::frames_command`], public so tests and benchmarks can run
//! exactly what a worker ran before sessions) is
//!
//! ```text
//! blender -b --factory-startup -Y FILE -E ENGINE [-t N] --python-exit-code 2 -P settings.py \
//!     -o OUT_DIR/frame_##### [-F FMT] -x 1 -s A -e B -j STEP -a -- [--samples N] \
//!     [--resolution-percent P] [--engine ENGINE] [--root ROOT] [--allow-missing]
//! ```
//!
//! (`-F` is left out to keep the file's own output format and its options.)
//!
//! - `-Y` (`--disable-autoexec`) stops a `.blend`'s embedded Python (text blocks registered to
//!   run on load, scripted drivers, the handlers they would install) from running: a job's file
//!   comes from another machine and must not run code here.
//! - `--factory-startup` ignores this machine's preferences and add-ons, so every node renders
//!   the same pixels from the same file.
//! - Arguments apply left to right: everything that sets up the render comes before `-a`.
//! - `settings.py` ([`rendermesh_scene::SETTINGS_PY`]) sets the job's engine (Cycles on the CPU
//!   with denoising off), applies the job's samples and resolution, re-roots every external
//!   path under the job's directory (`--root`), refuses a missing file, and fails fast on a
//!   scene with no camera; `--python-exit-code 2` makes any Python error in it end Blender with
//!   status 2.
//!
//! A worker's Blender runs in a sandbox ([`Sandbox::Bubblewrap`]): `bwrap ARGS -- blender ...`
//! ([`bubblewrap_args`]) gives it the system read-only (`/usr` and the few files of `/etc` a
//! program needs), an empty `/tmp`, the job's files read-only, the task's output directory as
//! the only writable path, no network, and neither the node's data directory nor anyone's home.
//! A `.blend` that aims a compositor File Output node or an absolute texture path elsewhere
//! finds nothing there. Commands run on the submitting machine for its own file (inspect, bake,
//! the example scene) are not sandboxed.
//!
//! The settings script is written on first use to a private directory of this process
//! (`$TMPDIR/rendermesh-<pid>-<random>/`, mode 0700; a new one if a temp cleaner removes it),
//! removed when the last clone of the [`Blender`] that made it is dropped.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rendermesh_protocol::{FrameRange, OutputFormat};
use rendermesh_scene::inspect::InspectError;
use rendermesh_scene::{
    BAKE_PY, ENGINES_PY, EXAMPLE_SCENE_PY, Engine, INSPECT_PY, Inspection, RenderSettings,
    SETTINGS_PY, Tile,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

/// How long `blender --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a scene-building script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a bake may take.
const BAKE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// How long a killed Blender may take to be reaped before we stop waiting for it.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Lines of output kept for error messages (progress lines excepted).
const TAIL_LINES: usize = 200;
/// Lines quoted from the tail when Blender printed no error line.
const QUOTED_TAIL: usize = 10;
/// Error and traceback lines kept for error messages.
const NOTABLE_LINES: usize = 40;
/// Longest line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;
/// Blender's exit status when a `-P` script raises.
const PYTHON_EXIT_CODE: &str = "2";
/// What the settings script prints once a session is ready for requests.
const SESSION_READY: &str = "rendermesh: ready";
/// What the settings script prints once a session saved a requested frame (then the frame).
const SESSION_DONE: &str = "rendermesh: done ";
/// What a spare prints, before it exits, when it cannot set a job's output format as `-F`
/// would (see settings.py `set_output_format`).
const SPARE_DECLINED: &str = "rendermesh: spare declined";

/// What can go wrong running Blender.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The executable does not exist.
    #[error(
        "Blender not found at `{}`: install it (apt-get install -y blender) or pass --blender PATH",
        exe.display()
    )]
    NotFound {
        /// The executable as given.
        exe: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Blender ran and failed, or wrote no file for some frames; the message quotes Blender.
    #[error("{message}")]
    Failed {
        /// Blender's own words and its exit status.
        message: String,
    },
    /// The render was cancelled and Blender killed.
    #[error("the render was cancelled")]
    Cancelled,
    /// Blender did not finish in time (only short runs have a time limit, never a render).
    #[error("{what} did not finish within {} s", after.as_secs())]
    Timeout {
        /// What was being run.
        what: &'static str,
        /// The time limit.
        after: Duration,
    },
    /// A path cannot be passed to Blender.
    #[error("cannot pass `{}` to Blender: {reason}", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// Blender's report on a `.blend` ([`Blender::inspect`]) does not read.
    #[error("Blender's report on `{}` does not read", blend.display())]
    Inspect {
        /// The `.blend` inspected.
        blend: PathBuf,
        /// What is wrong with the report.
        #[source]
        source: InspectError,
    },
    /// A file or directory could not be read or written, or Blender could not be started.
    #[error("{what} `{}`", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A progress event from a running render.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Blender started rendering a frame (its first `Fra:N` line for that frame).
    Started {
        /// The frame.
        frame: u32,
    },
    /// Blender wrote a frame's file (`Saved: 'PATH'`).
    Saved {
        /// The frame.
        frame: u32,
        /// The file, as Blender named it.
        path: PathBuf,
    },
}

/// A frame a render produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedFrame {
    /// The frame number.
    pub frame: u32,
    /// The image file.
    pub path: PathBuf,
}

/// What a render of `file` (at the absolute path `blend`) reads: the job's root, or the
/// directory the file is in.
fn blend_root(file: &BlendFile<'_>, blend: &Path) -> Result<PathBuf, RenderError> {
    match file.root {
        Some(root) => absolute(root),
        None => Ok(blend.parent().unwrap_or(Path::new("/")).to_owned()),
    }
}

/// The file a render writes for `frame` in `out_dir`: `frame_00042.png` (at least five digits).
pub fn frame_path(out_dir: &Path, frame: u32, format: OutputFormat) -> PathBuf {
    out_dir.join(format!("frame_{frame:05}.{}", format.extension()))
}

/// A `.blend` to render, and the directory its job's files are laid out under, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlendFile<'a> {
    /// The `.blend`.
    pub path: &'a Path,
    /// The job's root (`settings.py --root`): every external path the file names is pointed at
    /// `root` + its original absolute path before rendering, so Blender reads no file outside
    /// it (see `rendermesh_protocol::files`). `None`: paths are used as they are, as
    /// `blender -b` does with a file in place.
    pub root: Option<&'a Path>,
    /// The directory every output of the job's renders on this node goes under (a session's
    /// writable directory in the sandbox); `None`: each render's own output directory.
    pub outputs: Option<&'a Path>,
}

impl<'a> From<&'a Path> for BlendFile<'a> {
    fn from(path: &'a Path) -> Self {
        Self {
            path,
            root: None,
            outputs: None,
        }
    }
}

impl<'a> From<&'a PathBuf> for BlendFile<'a> {
    fn from(path: &'a PathBuf) -> Self {
        Self::from(path.as_path())
    }
}

impl BlendFile<'_> {
    /// `--root ROOT` for the settings script, when there is a root.
    fn script_args(&self) -> Result<Vec<std::ffi::OsString>, RenderError> {
        match self.root {
            None => Ok(Vec::new()),
            Some(root) => Ok(vec!["--root".into(), absolute(root)?.into_os_string()]),
        }
    }
}

/// How a worker's Blender is confined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sandbox {
    /// Unconfined: a plain child process (`--no-sandbox`; commands on the submitting machine).
    #[default]
    Off,
    /// Inside bubblewrap, run from this executable ([`bubblewrap_args`]).
    Bubblewrap(PathBuf),
}

impl Sandbox {
    /// Bubblewrap from the `PATH` (`bwrap`), as Debian's `bubblewrap` package installs it.
    pub fn bubblewrap() -> Self {
        Self::Bubblewrap(PathBuf::from("bwrap"))
    }

    /// The sandbox's executable; `None` when unconfined.
    pub fn exe(&self) -> Option<&Path> {
        match self {
            Self::Off => None,
            Self::Bubblewrap(bwrap) => Some(bwrap),
        }
    }
}

/// What a sandboxed Blender sees besides the read-only system: directories it may read, and the
/// ones it may write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Read-only.
    pub read: Vec<PathBuf>,
    /// Read-write.
    pub write: Vec<PathBuf>,
}

/// The system directories a sandboxed Blender reads, and the files of `/etc` it needs (fonts,
/// the dynamic loader's cache, Debian's alternatives, the time zone).
const SANDBOX_SYSTEM: &[&str] = &["/usr"];
const SANDBOX_TOP_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
const SANDBOX_ETC: &[&str] = &[
    "/etc/fonts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
];

/// Bubblewrap's arguments, before `--` and Blender's own: new namespaces of every kind (no
/// network), a fresh session, death with the node, a cleared environment (`PATH=/usr/bin:/bin`,
/// `HOME=TMPDIR=/tmp`), the system read-only ([`SANDBOX_SYSTEM`], the top-level links to it,
/// [`SANDBOX_ETC`], the CPU topology in `/sys`), `/proc`, a minimal `/dev`, an empty `/tmp`,
/// then `mounts`: read-only, then read-write (a later mount covers an earlier one). Nothing
/// else exists inside: not the node's data directory, not `/home`, not `/root`.
pub fn bubblewrap_args(mounts: &Mounts) -> Vec<std::ffi::OsString> {
    use std::ffi::OsString;
    let mut args: Vec<OsString> = [
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "TMPDIR",
        "/tmp",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    fn push(args: &mut Vec<OsString>, flag: &str, from: &Path, to: &Path) {
        args.push(flag.into());
        args.push(from.into());
        args.push(to.into());
    }
    for dir in SANDBOX_SYSTEM {
        push(&mut args, "--ro-bind", Path::new(dir), Path::new(dir));
    }
    for top in SANDBOX_TOP_LINKS {
        let top = Path::new(top);
        match std::fs::read_link(top) {
            Ok(target) => push(&mut args, "--symlink", &target, top),
            Err(_) if top.is_dir() => push(&mut args, "--ro-bind", top, top),
            Err(_) => {}
        }
    }
    for etc in SANDBOX_ETC {
        push(&mut args, "--ro-bind-try", Path::new(etc), Path::new(etc));
    }
    let cpu = Path::new("/sys/devices/system/cpu");
    push(&mut args, "--ro-bind-try", cpu, cpu);
    args.extend(
        ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
            .into_iter()
            .map(OsString::from),
    );
    for dir in &mounts.read {
        push(&mut args, "--ro-bind", dir, dir);
    }
    for dir in &mounts.write {
        push(&mut args, "--bind", dir, dir);
    }
    args.extend(["--chdir", "/tmp"].into_iter().map(OsString::from));
    args
}

/// A Blender executable and how to run it. Cheap to clone; clones share the scripts directory.
#[derive(Clone, Debug)]
pub struct Blender {
    /// The executable; a bare name is looked up on the `PATH`.
    exe: PathBuf,
    /// Blender's `-t`: render threads; `None` lets Blender use every core.
    threads: Option<u32>,
    /// Where the scripts passed with `-P` are written; private to this process.
    scripts: Arc<ScriptDir>,
    /// How renders are confined.
    sandbox: Sandbox,
}

impl Blender {
    /// A runner for `exe` (e.g. `blender`); nothing is checked or written until it is used.
    pub fn new(exe: impl Into<PathBuf>, threads: Option<u32>) -> Self {
        Self {
            exe: exe.into(),
            threads,
            scripts: Arc::new(ScriptDir::default()),
            sandbox: Sandbox::Off,
        }
    }

    /// Renders (frames, sessions, the version and engines probes) run confined by `sandbox`.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// How renders are confined.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The same Blender, unconfined (to tell a broken sandbox from a missing Blender).
    pub fn unconfined(&self) -> Self {
        Self {
            sandbox: Sandbox::Off,
            ..self.clone()
        }
    }

    /// The executable as given.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// A command that runs this Blender (its arguments to follow), confined to `mounts` when
    /// sandboxed; and the program it starts, for messages. The scripts directory is always
    /// readable; an executable given by path outside `/usr` has its directory mounted too.
    fn command(&self, mut mounts: Mounts) -> Result<(Command, PathBuf), RenderError> {
        match &self.sandbox {
            Sandbox::Off => Ok((Command::new(&self.exe), self.exe.clone())),
            Sandbox::Bubblewrap(bwrap) => {
                mounts.read.insert(0, self.scripts.dir()?);
                if self.exe.is_absolute()
                    && !self.exe.starts_with("/usr")
                    && let Some(dir) = self.exe.parent()
                {
                    mounts.read.insert(0, dir.to_owned());
                }
                let mut cmd = Command::new(bwrap);
                cmd.args(bubblewrap_args(&mounts)).arg("--").arg(&self.exe);
                Ok((cmd, bwrap.clone()))
            }
        }
    }

    /// The first line of `blender --version`, e.g. `Blender 3.4.1`.
    ///
    /// [`RenderError::NotFound`] if the executable is missing; bounded by a 30 s time limit.
    pub async fn version(&self) -> Result<String, RenderError> {
        let (mut cmd, program) = self.command(Mounts::default())?;
        cmd.arg("--version");
        piped(&mut cmd);
        let work = async {
            let mut run = Running::spawn(&program, cmd)?;
            let mut version = None;
            while let Some((_, line)) = run.next_line().await {
                let line = line.trim();
                if version.is_none() && line.starts_with("Blender") {
                    version = Some(line.to_owned());
                }
            }
            let status = run.wait().await?;
            match version {
                Some(version) if status.success() => Ok(version),
                _ => Err(run.failed(format!(
                    "`{} --version` printed no version ({status})",
                    self.exe.display()
                ))),
            }
        };
        tokio::time::timeout(VERSION_TIMEOUT, work)
            .await
            .map_err(|_| RenderError::Timeout {
                what: "blender --version",
                after: VERSION_TIMEOUT,
            })?
    }

    /// The exact command a worker runs to render `frames` of `blend` into `out_dir` (see the
    /// module docs for the argument list). Writes the settings script if it is not written yet.
    ///
    /// The command pipes stdout and stderr and kills Blender when dropped. The [`Blender`] (or a
    /// clone) must outlive it: the settings script goes when the last clone does.
    pub fn frames_command<'a>(
        &self,
        blend: impl Into<BlendFile<'a>>,
        out_dir: &Path,
        frames: FrameRange,
        format: OutputFormat,
        settings: &RenderSettings,
    ) -> Result<Command, RenderError> {
        let file = blend.into();
        // Absolute paths: Blender reads a leading `-` as an option and `//` as "next to the file".
        let blend = absolute(file.path)?;
        let out_dir = absolute(out_dir)?;
        if out_dir.as_os_str().as_encoded_bytes().contains(&b'#') {
            return Err(RenderError::BadPath {
                path: out_dir,
                reason: "Blender reads `#` in an output path as a frame number",
            });
        }
        let settings_py = self.scripts.settings()?;
        let mounts = Mounts {
            read: vec![blend_root(&file, &blend)?],
            write: vec![out_dir.clone()],
        };
        let mut output = out_dir.into_os_string();
        output.push("/frame_#####");

        let mut cmd = self.render_command(&blend, settings, mounts)?;
        cmd.args(["--python-exit-code", PYTHON_EXIT_CODE, "-P"])
            .arg(settings_py)
            .arg("-o")
            .arg(output);
        output_format(&mut cmd, format, settings);
        cmd.arg("-s")
            .arg(frames.start.to_string())
            .arg("-e")
            .arg(frames.end.to_string())
            .arg("-j")
            .arg(frames.step.max(1).to_string())
            .arg("-a")
            .arg("--")
            .args(settings.script_args())
            .args(file.script_args()?);
        piped(&mut cmd);
        Ok(cmd)
    }

    /// Renders `frames` of `blend` into `out_dir` (created if missing; any old file for these
    /// frames is removed first) and returns the frames in order.
    ///
    /// Sends a [`Progress`] event when a frame starts and when it is saved (waiting for room in
    /// `progress`; a closed receiver is ignored). Cancelling `cancel` kills Blender and returns
    /// [`RenderError::Cancelled`] at once. Cancel-safe: dropping the future kills Blender too.
    #[tracing::instrument(level = "debug", skip_all, fields(frames = %frames))]
    #[allow(clippy::too_many_arguments)]
    pub async fn render_frames<'a>(
        &self,
        blend: impl Into<BlendFile<'a>>,
        out_dir: &Path,
        frames: FrameRange,
        format: OutputFormat,
        settings: &RenderSettings,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Vec<RenderedFrame>, RenderError> {
        if cancel.is_cancelled() {
            return Err(RenderError::Cancelled);
        }
        let expected = prepare(out_dir, frames, format).await?;
        let cmd = self.frames_command(blend, out_dir, frames, format, settings)?;
        let mut run = Running::spawn(self.program(), cmd)?;
        let mut current = None;
        run.forward(None, &mut current, &progress, &cancel).await?;
        let status = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(run.cancel().await),
            status = run.wait() => status?,
        };
        if !status.success() {
            return Err(run.failed(format!("Blender failed ({status})")));
        }
        let mut missing = Vec::new();
        for frame in &expected {
            if !written(&frame.path).await {
                missing.push(frame.frame);
            }
        }
        if !missing.is_empty() {
            let first = frame_path(out_dir, missing[0], format);
            return Err(run.failed(format!(
                "Blender wrote no file for frame{} {} (expected `{}`; {status})",
                if missing.len() == 1 { "" } else { "s" },
                frame_list(&missing),
                first.display(),
            )));
        }
        Ok(expected)
    }

    /// `blender -b --factory-startup -Y BLEND -E ENGINE [-t N]`: how every render starts
    /// (inside the sandbox, confined to `mounts`, when there is one).
    fn render_command(
        &self,
        blend: &Path,
        settings: &RenderSettings,
        mounts: Mounts,
    ) -> Result<Command, RenderError> {
        let (mut cmd, _) = self.command(mounts)?;
        cmd.args(["-b", "--factory-startup", "-Y"])
            .arg(blend)
            .args(["-E", settings.engine.blender_name()]);
        if let Some(threads) = self.threads {
            cmd.arg("-t").arg(threads.to_string());
        }
        Ok(cmd)
    }

    /// The program a render starts: bubblewrap when sandboxed, else Blender.
    fn program(&self) -> &Path {
        match &self.sandbox {
            Sandbox::Off => &self.exe,
            Sandbox::Bubblewrap(bwrap) => bwrap,
        }
    }

    /// The command of a render [`Session`]: [`Blender::frames_command`]'s, with `-F FMT -x 1`
    /// before the script and `--serve` after the settings, and no `-o`, `-s`, `-e`, `-a`.
    /// Blender loads `blend` and applies `settings` once, then renders whatever it is asked on
    /// stdin. `settings.tile` is ignored: tiles are asked per request.
    pub fn session_command<'a>(
        &self,
        blend: impl Into<BlendFile<'a>>,
        outputs: &Path,
        format: OutputFormat,
        settings: &RenderSettings,
    ) -> Result<Command, RenderError> {
        let file = blend.into();
        let blend = absolute(file.path)?;
        let settings_py = self.scripts.settings()?;
        let mounts = Mounts {
            read: vec![blend_root(&file, &blend)?],
            write: vec![absolute(outputs)?],
        };
        let mut cmd = self.render_command(&blend, settings, mounts)?;
        output_format(&mut cmd, format, settings);
        cmd.args(["--python-exit-code", PYTHON_EXIT_CODE, "-P"])
            .arg(settings_py)
            .arg("--")
            .args(
                RenderSettings {
                    tile: None,
                    ..*settings
                }
                .script_args(),
            )
            .args(file.script_args()?)
            .arg("--serve");
        piped(&mut cmd);
        cmd.stdin(Stdio::piped());
        Ok(cmd)
    }

    /// Starts a [`Session`] on `blend`: one Blender start-up and one file load for every task
    /// of a job on this node. Returns once Blender is ready; a file Blender cannot load, or a
    /// scene without a camera, fails here with Blender's (or the script's) words. Cancelling
    /// `cancel` kills Blender and returns [`RenderError::Cancelled`]. Every output it is asked
    /// for must be under `outputs` (in a sandbox, the only directory it may write).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn start_session<'a>(
        &self,
        blend: impl Into<BlendFile<'a>>,
        outputs: &Path,
        format: OutputFormat,
        settings: &RenderSettings,
        cancel: &CancellationToken,
    ) -> Result<Session, RenderError> {
        let cmd = self.session_command(blend, outputs, format, settings)?;
        let mut run = Running::spawn(self.program(), cmd)?;
        let stdin = run.take_stdin()?;
        run.until_ready(cancel).await?;
        debug!("Blender session ready");
        Ok(Session { run, stdin, format })
    }

    /// The command of a [`Spare`]: `blender -b --factory-startup -Y [-t N] --python-exit-code 2
    /// -P settings.py -- --spare`, with no file, confined (when sandboxed) to `root` read-only
    /// and `outputs` writable, as a session of a job laid out there would be.
    pub fn spare_command(&self, root: &Path, outputs: &Path) -> Result<Command, RenderError> {
        let settings_py = self.scripts.settings()?;
        let mounts = Mounts {
            read: vec![absolute(root)?],
            write: vec![absolute(outputs)?],
        };
        let (mut cmd, _) = self.command(mounts)?;
        cmd.args(["-b", "--factory-startup", "-Y"]);
        if let Some(threads) = self.threads {
            cmd.arg("-t").arg(threads.to_string());
        }
        cmd.args(["--python-exit-code", PYTHON_EXIT_CODE, "-P"])
            .arg(settings_py)
            .args(["--", "--spare"]);
        piped(&mut cmd);
        cmd.stdin(Stdio::piped());
        Ok(cmd)
    }

    /// Starts a [`Spare`] for a job to be laid out under `root` (its `.blend` and files) with
    /// its outputs under `outputs`: both directories must exist, and stay (their contents may
    /// change). Returns at once; Blender starts up in the background.
    pub fn start_spare(&self, root: &Path, outputs: &Path) -> Result<Spare, RenderError> {
        let cmd = self.spare_command(root, outputs)?;
        let mut run = Running::spawn(self.program(), cmd)?;
        let stdin = run.take_stdin()?;
        debug!(root = %root.display(), "spare Blender started");
        Ok(Spare {
            run,
            stdin,
            root: absolute(root)?,
            outputs: absolute(outputs)?,
        })
    }

    /// Builds the example scene ([`EXAMPLE_SCENE_PY`]) and saves it at `out`.
    pub async fn make_example_scene(&self, out: &Path) -> Result<(), RenderError> {
        let out = absolute(out)?;
        let arg = out.to_str().ok_or_else(|| RenderError::BadPath {
            path: out.clone(),
            reason: "not valid UTF-8",
        })?;
        let stdout = self.run_script(EXAMPLE_SCENE_PY, &[arg]).await?;
        if !tokio::fs::try_exists(&out).await.unwrap_or(false) {
            return Err(RenderError::Failed {
                message: format!(
                    "Blender did not save the example scene to `{}`: {}",
                    out.display(),
                    last_lines(stdout.lines())
                ),
            });
        }
        Ok(())
    }

    /// Runs a Python script in a factory-fresh Blender (`-b --factory-startup -Y -P SCRIPT --
    /// ARGS`) and returns its last 200 lines of stdout. A Python error ends Blender with
    /// status 2 and gives [`RenderError::Failed`] quoting the traceback. Bounded by 5 minutes.
    pub async fn run_script(
        &self,
        script_text: &str,
        args: &[&str],
    ) -> Result<String, RenderError> {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        self.run_script_on(None, script_text, &args, SCRIPT_TIMEOUT, &mut |_| {}, None)
            .await
    }

    /// [`Blender::run_script`] with `blend` opened first (`-b --factory-startup -Y BLEND -P
    /// SCRIPT -- ARGS`): the file's own Python does not run, ours does. Each line the script
    /// prints to stdout that starts with `rendermesh:` goes to `on_line` as it comes. In the
    /// sandbox (when this Blender has one) only with `confined`, seeing those mounts: a probe of
    /// what renders can do, or a file a node was sent. Unconfined, the scripts run on the
    /// submitting machine work on its own files, where they may write.
    async fn run_script_on(
        &self,
        blend: Option<&Path>,
        script_text: &str,
        args: &[&std::ffi::OsStr],
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
        confined: Option<Mounts>,
    ) -> Result<String, RenderError> {
        let script = self.scripts.write_script(script_text)?;
        let (runner, mounts) = match confined {
            Some(mounts) => (self.clone(), mounts),
            None => (self.unconfined(), Mounts::default()),
        };
        let (mut cmd, program) = runner.command(mounts)?;
        cmd.args(["-b", "--factory-startup", "-Y"]);
        if let Some(blend) = blend {
            cmd.arg(absolute(blend)?);
        }
        cmd.args(["--python-exit-code", PYTHON_EXIT_CODE, "-P"])
            .arg(&script)
            .arg("--")
            .args(args);
        piped(&mut cmd);
        let work = async {
            let mut run = Running::spawn(&program, cmd)?;
            let mut stdout = VecDeque::new();
            while let Some((stream, line)) = run.next_line().await {
                if stream == Stream::Stdout {
                    if line.starts_with("rendermesh:") {
                        on_line(&line);
                    }
                    if stdout.len() == TAIL_LINES {
                        stdout.pop_front();
                    }
                    stdout.push_back(line);
                }
            }
            let status = run.wait().await?;
            if !status.success() {
                return Err(run.failed(format!("Blender's script failed ({status})")));
            }
            Ok(Vec::from(stdout).join("\n"))
        };
        let result = tokio::time::timeout(limit, work).await;
        if let Err(e) = std::fs::remove_file(&script) {
            warn!(path = %script.display(), error = %e, "could not remove a script");
        }
        result.map_err(|_| RenderError::Timeout {
            what: "a Blender script",
            after: limit,
        })?
    }

    /// Bakes every unbaked simulation of `blend` ([`BAKE_PY`]) into the copy `out` (its
    /// directory must exist), with `cache_dir` (an empty directory) for what bakes only to disk
    /// (fluid domains; `out` names those files by absolute paths). `blend` is not changed and
    /// nothing is written beside it. Each `rendermesh: baking ...` line goes to `progress` as
    /// Blender prints it; returns how many simulations were baked. Bounded by 12 hours (a bake
    /// may take long; ctrl-c on the command stops it).
    #[tracing::instrument(level = "debug", skip_all, fields(blend = %blend.display()))]
    pub async fn bake(
        &self,
        blend: &Path,
        out: &Path,
        cache_dir: &Path,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<usize, RenderError> {
        let file = absolute(blend)?;
        let out = absolute(out)?;
        let cache_dir = absolute(cache_dir)?;
        // The script opens the file itself: opened by Blender before the script runs, a file's
        // unbaked disk caches beside it would be rewritten.
        let stdout = self
            .run_script_on(
                None,
                BAKE_PY,
                &[file.as_os_str(), out.as_os_str(), cache_dir.as_os_str()],
                BAKE_TIMEOUT,
                progress,
                None,
            )
            .await?;
        let baked = stdout
            .lines()
            .find_map(|l| l.strip_prefix("rendermesh: baked "))
            .and_then(|rest| rest.split(' ').next()?.parse().ok());
        match baked {
            Some(n) if out.is_file() => Ok(n),
            _ => Err(RenderError::Failed {
                message: format!(
                    "Blender did not save the baked copy of `{}`: {}",
                    blend.display(),
                    last_lines(stdout.lines())
                ),
            }),
        }
    }

    /// The engines this Blender renders with headless: Cycles wherever Blender runs, and
    /// EEVEE and Workbench when an 8x8 Workbench render works ([`ENGINES_PY`]: they need an
    /// OpenGL context, which headless Blender gets through surfaceless EGL where the drivers
    /// allow). Takes about a second; a Blender that does not run at all gives none.
    pub async fn engines(&self) -> Vec<Engine> {
        let probe = self
            .run_script_on(
                None,
                ENGINES_PY,
                &[],
                SCRIPT_TIMEOUT,
                &mut |_| {},
                Some(Mounts::default()),
            )
            .await;
        match probe {
            Ok(out)
                if out
                    .lines()
                    .any(|l| l == "rendermesh: engine BLENDER_WORKBENCH ok") =>
            {
                vec![Engine::Cycles, Engine::Eevee, Engine::Workbench]
            }
            Ok(out) => {
                let why = out
                    .lines()
                    .find(|l| l.contains("failed"))
                    .unwrap_or("no answer");
                info!("EEVEE and Workbench do not run headless here: {why}");
                vec![Engine::Cycles]
            }
            Err(e) => {
                warn!("cannot ask Blender which engines run here: {e}");
                Vec::new()
            }
        }
    }

    /// What this Blender says about `blend` ([`INSPECT_PY`]): its engine, frames, output
    /// format, every external file it uses and whether each exists, its unbaked simulations.
    /// The file's own Python never runs, and the file is not changed. A file Blender cannot
    /// read fails with Blender's words. Bounded by 5 minutes.
    #[tracing::instrument(level = "debug", skip_all, fields(blend = %blend.display()))]
    pub async fn inspect(&self, blend: &Path) -> Result<Inspection, RenderError> {
        let report = self.scripts.fresh_path("inspect", "json")?;
        self.inspect_into(blend, &report, None).await
    }

    /// [`Blender::inspect`] of a file this node was sent (an upload), in its sandbox when it
    /// has one: Blender may read `blend` alone, and write in `scratch` alone (an existing
    /// directory of the caller's, where its report goes).
    #[tracing::instrument(level = "debug", skip_all, fields(blend = %blend.display()))]
    pub async fn inspect_confined(
        &self,
        blend: &Path,
        scratch: &Path,
    ) -> Result<Inspection, RenderError> {
        let blend = absolute(blend)?;
        let scratch = absolute(scratch)?;
        let report = scratch.join("inspect.json");
        let mounts = Mounts {
            read: vec![blend.clone()],
            write: vec![scratch],
        };
        self.inspect_into(&blend, &report, Some(mounts)).await
    }

    async fn inspect_into(
        &self,
        blend: &Path,
        report: &Path,
        confined: Option<Mounts>,
    ) -> Result<Inspection, RenderError> {
        let result = self
            .run_script_on(
                Some(blend),
                INSPECT_PY,
                &[report.as_os_str()],
                SCRIPT_TIMEOUT,
                &mut |_| {},
                confined,
            )
            .await;
        inspection_from(result, report, blend)
    }

    /// [`Blender::run_script`] for a script that saves a `.blend` at `saved` and, handed
    /// `--inspect REPORT --inspect-script INSPECT` after `args`, then opens it again and runs
    /// [`INSPECT_PY`] on it in the same Blender (the chart builder does): what
    /// [`Blender::inspect`] says of `saved`, for one Blender start instead of two.
    #[tracing::instrument(level = "debug", skip_all, fields(blend = %saved.display()))]
    pub async fn run_script_then_inspect(
        &self,
        script_text: &str,
        args: &[&str],
        saved: &Path,
    ) -> Result<Inspection, RenderError> {
        let inspector = self.scripts.write_script(INSPECT_PY)?;
        let report = self.scripts.fresh_path("inspect", "json")?;
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.extend([
            std::ffi::OsStr::new("--inspect"),
            report.as_os_str(),
            std::ffi::OsStr::new("--inspect-script"),
            inspector.as_os_str(),
        ]);
        let result = self
            .run_script_on(None, script_text, &all, SCRIPT_TIMEOUT, &mut |_| {}, None)
            .await;
        let _ = std::fs::remove_file(&inspector);
        inspection_from(result, &report, saved)
    }
}

/// The inspection of `blend` that a script run (`result`) wrote to `report`, which is then
/// removed.
fn inspection_from(
    result: Result<String, RenderError>,
    report: &Path,
    blend: &Path,
) -> Result<Inspection, RenderError> {
    let text = result.and_then(|_| read_report(report, blend));
    let _ = std::fs::remove_file(report);
    Inspection::from_json(&text?).map_err(|source| RenderError::Inspect {
        blend: blend.to_owned(),
        source,
    })
}

/// The inspection report on `blend` at `path`, read only if it is not too large.
fn read_report(path: &Path, blend: &Path) -> Result<String, RenderError> {
    let too_large = |size: u64| RenderError::Inspect {
        blend: blend.to_owned(),
        source: InspectError::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
        },
    };
    let size = std::fs::metadata(path)
        .map_err(|e| io_error("reading Blender's report", path, e))?
        .len();
    if size > rendermesh_scene::inspect::MAX_REPORT as u64 {
        return Err(too_large(size));
    }
    std::fs::read_to_string(path).map_err(|e| io_error("reading Blender's report", path, e))
}

/// A Blender that has loaded one `.blend` with one job's settings and renders frames or tiles
/// of it on request ([`Blender::start_session`]): the ~1-2 s start-up and file load are paid
/// once per job on a node rather than once per task. The pixels are those of
/// [`Blender::render_frames`]. Dropping it kills Blender.
pub struct Session {
    run: Running,
    stdin: ChildStdin,
    format: OutputFormat,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pid", &self.run.child.id())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Renders `frames` (whole, or only `tile` of each) into `out_dir`, with the contract of
    /// [`Blender::render_frames`]: old files removed first, a [`Progress`] event per frame
    /// started and saved, every file checked, Blender's words on failure, Blender killed on
    /// cancel. After any error the session is spent: drop it.
    #[tracing::instrument(level = "debug", skip_all, fields(frames = %frames))]
    pub async fn render(
        &mut self,
        out_dir: &Path,
        frames: FrameRange,
        tile: Option<Tile>,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Vec<RenderedFrame>, RenderError> {
        if cancel.is_cancelled() {
            return Err(RenderError::Cancelled);
        }
        let expected = prepare(out_dir, frames, self.format).await?;
        // Quote only what Blender says about this task.
        self.run.log = OutputLog::default();
        let mut current = None;
        for want in &expected {
            let path = absolute(&want.path)?;
            let path = path
                .to_str()
                .filter(|p| !p.contains(['\n', '\r']))
                .ok_or_else(|| RenderError::BadPath {
                    path: path.clone(),
                    reason: "not valid UTF-8, or holds a line break",
                })?;
            let request = match tile {
                None => format!("frame {} {path}\n", want.frame),
                Some(t) => format!(
                    "tile {} {} {} {} {} {path}\n",
                    t.col, t.row, t.cols, t.rows, want.frame
                ),
            };
            self.run.send(&mut self.stdin, &request, &cancel).await?;
            let done = format!("{SESSION_DONE}{}", want.frame);
            let finished = self
                .run
                .forward(Some(&done), &mut current, &progress, &cancel)
                .await?;
            if !finished {
                let status = self.run.wait().await?;
                return Err(self.run.failed(format!(
                    "Blender stopped while rendering frame {} ({status})",
                    want.frame
                )));
            }
            if !written(&want.path).await {
                return Err(self.run.failed(format!(
                    "Blender wrote no file for frame {} (expected `{}`)",
                    want.frame,
                    want.path.display()
                )));
            }
        }
        Ok(expected)
    }
}

/// A sandboxed Blender started ahead with no file ([`Blender::start_spare`]), waiting for one
/// job: [`Spare::open`] turns it into that job's [`Session`] in milliseconds where starting
/// one takes a second or more (measured: `open_mainfile` in 8-9 ms against 1.3-3.4 s for a
/// Blender started with the file). Its sandbox is bound to the directories it was started
/// for, so it serves only a job laid out there. The file's own Python stays off: `-Y` holds
/// for every file a Blender started with it opens. Dropping it kills Blender.
pub struct Spare {
    run: Running,
    stdin: ChildStdin,
    root: PathBuf,
    outputs: PathBuf,
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spare")
            .field("pid", &self.run.child.id())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Spare {
    /// The directory the job's files must be laid out under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `blend` is laid out where this spare can open it: under its root, with its
    /// outputs in its output directory.
    pub fn serves(&self, blend: &BlendFile<'_>) -> Result<bool, RenderError> {
        let root = blend.root.map(absolute).transpose()?;
        let outputs = blend.outputs.map(absolute).transpose()?;
        Ok(root.as_ref() == Some(&self.root) && outputs.as_ref() == Some(&self.outputs))
    }

    /// What [`Blender::start_session`] would have returned for the same arguments, from this
    /// Blender: it opens `blend` and applies `settings` and `format` as the session's command
    /// line would have, and returns once ready; a file it cannot load, or a scene without a
    /// camera, fails with Blender's (or the script's) words. `Ok(None)` when it cannot serve
    /// them: `blend` is not laid out under its root and outputs, a path is not UTF-8, or the
    /// job's format would change the file's colour depth or mode where `-F` does not (the
    /// writers then write other pixels): start a session instead.
    pub async fn open(
        mut self,
        blend: BlendFile<'_>,
        format: OutputFormat,
        settings: &RenderSettings,
        cancel: &CancellationToken,
    ) -> Result<Option<Session>, RenderError> {
        if !self.serves(&blend)? {
            return Ok(None);
        }
        let path = absolute(blend.path)?;
        let mut args = RenderSettings {
            tile: None,
            ..*settings
        }
        .script_args();
        let (Some(path), Some(root)) = (path.to_str(), self.root.to_str()) else {
            return Ok(None);
        };
        args.extend(["--root".to_owned(), root.to_owned(), "--serve".to_owned()]);
        let request = serde_json::json!({
            "blend": path,
            "format": forced_format(format, settings),
            "args": args,
        });
        let line = format!("{request}\n");
        self.run.send(&mut self.stdin, &line, cancel).await?;
        match self.run.until_ready(cancel).await {
            Err(RenderError::Failed { .. }) if self.run.log.said(SPARE_DECLINED) => {
                return Ok(None);
            }
            ready => ready?,
        }
        debug!("spare Blender ready for its job");
        Ok(Some(Session {
            run: self.run,
            stdin: self.stdin,
            format,
        }))
    }
}

/// Whether Blender wrote `path` (a file, not empty).
async fn written(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// The files a render of `frames` writes in `out_dir`: creates `out_dir` and removes any old
/// file of these frames, so that a file found afterwards is this render's.
async fn prepare(
    out_dir: &Path,
    frames: FrameRange,
    format: OutputFormat,
) -> Result<Vec<RenderedFrame>, RenderError> {
    let expected: Vec<RenderedFrame> = frames
        .iter()
        .map(|frame| RenderedFrame {
            frame,
            path: frame_path(out_dir, frame, format),
        })
        .collect();
    tokio::fs::create_dir_all(out_dir)
        .await
        .map_err(|source| io_error("creating the output directory", out_dir, source))?;
    for old in &expected {
        match tokio::fs::remove_file(&old.path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("removing an old frame", &old.path, e));
            }
            _ => {}
        }
    }
    Ok(expected)
}

/// This process's directory for the scripts passed to Blender with `-P`.
#[derive(Debug, Default)]
struct ScriptDir {
    /// `$TMPDIR/rendermesh-<pid>-<random>`, once created.
    dir: Mutex<Option<PathBuf>>,
    /// Numbers the one-off scripts of [`Blender::run_script`].
    next: AtomicU64,
}

impl ScriptDir {
    /// The directory: created (mode 0700, a fresh random name) on first use, and again under a
    /// new name if something (a temp cleaner) removed it. Never reuses a name it did not create.
    fn dir(&self) -> Result<PathBuf, RenderError> {
        let mut dir = self
            .dir
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dir) = dir.as_ref().filter(|d| d.is_dir()) {
            return Ok(dir.clone());
        }
        let fresh = std::env::temp_dir().join(format!(
            "rendermesh-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&fresh)
            .map_err(|e| io_error("creating the Blender scripts directory", &fresh, e))?;
        *dir = Some(fresh.clone());
        Ok(fresh)
    }

    /// `settings.py`, written if it is missing.
    fn settings(&self) -> Result<PathBuf, RenderError> {
        let path = self.dir()?.join("settings.py");
        if !path.is_file() {
            write_new(&path, SETTINGS_PY)?;
        }
        Ok(path)
    }

    /// A one-off script under a fresh name.
    fn write_script(&self, text: &str) -> Result<PathBuf, RenderError> {
        let path = self.fresh_path("script", "py")?;
        write_new(&path, text)?;
        Ok(path)
    }

    /// A fresh name in the directory: `STEM-N.EXT`.
    fn fresh_path(&self, stem: &str, ext: &str) -> Result<PathBuf, RenderError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(self.dir()?.join(format!("{stem}-{n}.{ext}")))
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        let dir = self
            .dir
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dir) = dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Writes `text` to a temporary name beside `path`, then renames it, so a Blender starting
/// meanwhile never reads half a script.
fn write_new(path: &Path, text: &str) -> Result<(), RenderError> {
    let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
    std::fs::write(&tmp, text).map_err(|e| io_error("writing a Blender script", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("writing a Blender script", path, e))
}

/// Which of Blender's streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A running Blender whose output is read line by line into a bounded [`OutputLog`].
struct Running {
    /// The executable, for messages.
    exe: PathBuf,
    /// Killed on drop.
    child: Child,
    stdout: LineReader<ChildStdout>,
    stderr: LineReader<ChildStderr>,
    /// What Blender said, bounded.
    log: OutputLog,
}

impl Running {
    fn spawn(exe: &Path, mut cmd: Command) -> Result<Self, RenderError> {
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                RenderError::NotFound {
                    exe: exe.to_owned(),
                    source,
                }
            } else {
                io_error("starting Blender", exe, source)
            }
        })?;
        let not_piped = || {
            io_error(
                "reading Blender's output",
                exe,
                io::Error::other("not piped"),
            )
        };
        let stdout = child.stdout.take().ok_or_else(not_piped)?;
        let stderr = child.stderr.take().ok_or_else(not_piped)?;
        Ok(Self {
            exe: exe.to_owned(),
            child,
            stdout: LineReader::new(stdout),
            stderr: LineReader::new(stderr),
            log: OutputLog::default(),
        })
    }

    /// The next line from either stream, or `None` once both are closed. Cancel-safe: a
    /// partial line stays buffered.
    async fn next_line(&mut self) -> Option<(Stream, String)> {
        loop {
            let (stream, line) = tokio::select! {
                line = self.stdout.next_line(), if !self.stdout.done => (Stream::Stdout, line),
                line = self.stderr.next_line(), if !self.stderr.done => (Stream::Stderr, line),
                else => return None,
            };
            let Some(line) = line else { continue };
            if line.starts_with("Fra:") {
                trace!(?stream, %line, "blender");
            } else {
                debug!(?stream, %line, "blender");
            }
            self.log.push(&line);
            return Some((stream, line));
        }
    }

    /// Waits for Blender to exit. Cancel-safe.
    /// The one render loop: forwards Blender's progress lines to `progress` (waiting for room;
    /// a closed receiver is ignored) until a line equals `until` (true) or Blender closes its
    /// output (false). Cancelling `cancel` kills Blender and returns
    /// [`RenderError::Cancelled`].
    async fn forward(
        &mut self,
        until: Option<&str>,
        current: &mut Option<u32>,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
    ) -> Result<bool, RenderError> {
        loop {
            let line = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(self.cancel().await),
                line = self.next_line() => line,
            };
            let Some((_, line)) = line else {
                return Ok(false);
            };
            if until == Some(line.as_str()) {
                return Ok(true);
            }
            let Some(event) = parse_progress(&line, current) else {
                continue;
            };
            match &event {
                Progress::Started { frame } => debug!(frame, "frame started"),
                Progress::Saved { frame, path } => {
                    info!(frame, path = %path.display(), "frame saved");
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(self.cancel().await),
                // An error means nobody listens any more: the render goes on regardless.
                _ = progress.send(event) => {}
            }
        }
    }

    async fn wait(&mut self) -> Result<ExitStatus, RenderError> {
        self.child
            .wait()
            .await
            .map_err(|e| io_error("waiting for Blender", &self.exe, e))
    }

    /// Kills Blender, reaps it, and returns [`RenderError::Cancelled`].
    async fn cancel(&mut self) -> RenderError {
        if let Err(e) = self.child.start_kill() {
            warn!(error = %e, "could not kill Blender");
        }
        if tokio::time::timeout(KILL_WAIT, self.child.wait())
            .await
            .is_err()
        {
            warn!("Blender did not exit within 5 s of being killed");
        }
        debug!("render cancelled; Blender killed");
        RenderError::Cancelled
    }

    /// Blender's stdin (piped by the command), to write requests to.
    fn take_stdin(&mut self) -> Result<ChildStdin, RenderError> {
        self.child.stdin.take().ok_or_else(|| {
            io_error(
                "writing to Blender",
                &self.exe,
                io::Error::other("stdin not piped"),
            )
        })
    }

    /// Writes `line` to `stdin`. Blender no longer reading is not an error here: what it said
    /// before it stopped is read next. Cancelling `cancel` kills Blender.
    async fn send(
        &mut self,
        stdin: &mut ChildStdin,
        line: &str,
        cancel: &CancellationToken,
    ) -> Result<(), RenderError> {
        let sent = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(self.cancel().await),
            sent = async {
                stdin.write_all(line.as_bytes()).await?;
                stdin.flush().await
            } => sent,
        };
        if let Err(e) = sent {
            debug!(error = %e, "Blender stopped reading requests");
        }
        Ok(())
    }

    /// Reads Blender's output until the settings script says it is ready for requests; a
    /// Blender that exits first fails with its words. Cancelling `cancel` kills Blender.
    async fn until_ready(&mut self, cancel: &CancellationToken) -> Result<(), RenderError> {
        loop {
            let line = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(self.cancel().await),
                line = self.next_line() => line,
            };
            match line {
                Some((_, line)) if line == SESSION_READY => return Ok(()),
                Some(_) => {}
                None => {
                    let status = self.wait().await?;
                    return Err(
                        self.failed(format!("Blender could not start rendering ({status})"))
                    );
                }
            }
        }
    }

    /// [`RenderError::Failed`]: `summary` and Blender's own words.
    fn failed(&self, summary: String) -> RenderError {
        RenderError::Failed {
            message: self.log.message(&summary),
        }
    }
}

/// Reads lines of at most [`MAX_LINE`] bytes; the rest of a longer line is dropped.
struct LineReader<R> {
    reader: BufReader<R>,
    /// The line read so far; kept across cancelled reads.
    line: Vec<u8>,
    /// True after end of file or a read error.
    done: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R) -> Self {
        Self {
            reader: BufReader::new(reader),
            line: Vec::new(),
            done: false,
        }
    }

    /// The next line without its line ending, `None` at the end. Cancel-safe.
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let chunk = match self.reader.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) => {
                    warn!(error = %e, "reading Blender's output");
                    self.done = true;
                    return self.take();
                }
            };
            if chunk.is_empty() {
                self.done = true;
                return self.take();
            }
            let (used, complete) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..used.min(room)]);
            self.reader.consume(used);
            if complete {
                return self.take().or(Some(String::new()));
            }
        }
    }

    fn take(&mut self) -> Option<String> {
        if self.line.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.line)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        self.line.clear();
        Some(text)
    }
}

/// What Blender said, bounded: the last lines, and the lines that explain a failure.
#[derive(Debug, Default)]
struct OutputLog {
    /// The last [`TAIL_LINES`] lines, progress (`Fra:`) lines excepted: there are hundreds per
    /// frame and they would push out what matters.
    tail: VecDeque<String>,
    /// Error lines and tracebacks, the first [`NOTABLE_LINES`] of them, each once.
    notable: Vec<String>,
    /// Inside a Python traceback (indented lines until the exception line).
    in_traceback: bool,
}

impl OutputLog {
    /// Whether a line kept in the tail starts with `prefix`.
    fn said(&self, prefix: &str) -> bool {
        self.tail.iter().any(|l| l.starts_with(prefix))
    }

    fn push(&mut self, line: &str) {
        if line.starts_with("Fra:") {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());

        let mut notable = is_error_line(line);
        if line.contains("Traceback (most recent call last)") {
            self.in_traceback = true;
            notable = true;
        } else if self.in_traceback {
            notable = true;
            // The exception line ends the traceback: the first one not indented.
            if !line.starts_with(char::is_whitespace) {
                self.in_traceback = false;
            }
        }
        if notable && self.notable.len() < NOTABLE_LINES && !self.notable.iter().any(|l| l == line)
        {
            self.notable.push(line.to_owned());
        }
    }

    /// `summary`, then Blender's error lines, or its last lines when it printed none.
    fn message(&self, summary: &str) -> String {
        let quoted = if self.notable.is_empty() {
            last_lines(self.tail.iter().map(String::as_str))
        } else {
            self.notable.join("\n")
        };
        match (quoted.is_empty(), quoted.contains('\n')) {
            (true, _) => format!("{summary}; it printed nothing"),
            (false, false) => format!("{summary}: {quoted}"),
            (false, true) => format!("{summary}:\n{quoted}"),
        }
    }
}

/// A line in which Blender, or our settings script, names a failure.
fn is_error_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("Error")
        || line.starts_with("ERROR")
        || line.contains("rendermesh: error:")
        || line.contains("Unable to open")
        || line.contains("Failed to read blend file")
        || line.contains("Cannot read file")
        // Blender's crash handler: "Writing: /tmp/x.crash.txt".
        || line.contains(".crash.txt")
}

/// The last [`QUOTED_TAIL`] non-blank lines, minus Blender's closing "Blender quit".
fn last_lines<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> String {
    let mut last: Vec<&str> = lines
        .rev()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && *l != "Blender quit")
        .take(QUOTED_TAIL)
        .collect();
    last.reverse();
    last.join("\n")
}

/// Reads a progress event from a line; `current` is the frame of the last `Fra:` line.
fn parse_progress(line: &str, current: &mut Option<u32>) -> Option<Progress> {
    if let Some(rest) = line.strip_prefix("Fra:") {
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        let frame = digits.parse().ok()?;
        if *current == Some(frame) {
            return None;
        }
        *current = Some(frame);
        return Some(Progress::Started { frame });
    }
    let path = line.strip_prefix("Saved: '")?.strip_suffix('\'')?;
    let path = PathBuf::from(path);
    // The file name is exact; the last `Fra:` line is the fallback for other names.
    let from_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("frame_"))
        .and_then(|n| n.parse().ok());
    let frame = from_name.or(*current)?;
    Some(Progress::Saved { frame, path })
}

/// `1, 2, 5` or `1, 2, 3, ... (12 frames)`.
fn frame_list(frames: &[u32]) -> String {
    const SHOWN: usize = 8;
    let shown: Vec<String> = frames.iter().take(SHOWN).map(u32::to_string).collect();
    if frames.len() > SHOWN {
        format!("{}, ... ({} frames)", shown.join(", "), frames.len())
    } else {
        shown.join(", ")
    }
}

/// `-F FMT -x 1`, or only `-x 1` to keep the file's own format and its options (the job
/// checked at submit that the file's format is `format`).
fn output_format(cmd: &mut Command, format: OutputFormat, settings: &RenderSettings) {
    if let Some(name) = forced_format(format, settings) {
        cmd.args(["-F", name]);
    }
    cmd.args(["-x", "1"]);
}

/// The format `-F` forces for a render with `settings`, or `None` to keep the file's own.
fn forced_format(format: OutputFormat, settings: &RenderSettings) -> Option<&'static str> {
    (!settings.keep_file_format || settings.tile.is_some()).then(|| format.blender_name())
}

/// Pipes stdout and stderr, closes stdin, and kills the child when the handle is dropped.
fn piped(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
}

fn absolute(path: &Path) -> Result<PathBuf, RenderError> {
    std::path::absolute(path).map_err(|e| io_error("resolving the path", path, e))
}

fn io_error(what: &'static str, path: &Path, source: io::Error) -> RenderError {
    RenderError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    //! Most of these run the real Blender (`blender` on the PATH) on tiny renders.

    use std::time::Instant;

    use rendermesh_scene::NO_CAMERA_SCENE_PY;

    use super::*;

    fn blender() -> Blender {
        Blender::new("blender", None)
    }

    fn range(a: u32, b: u32) -> FrameRange {
        FrameRange::new(a, b).unwrap()
    }

    const TINY: RenderSettings = RenderSettings {
        samples: Some(2),
        resolution_percent: Some(10),
        tile: None,
        exact: false,
        allow_missing: false,
        engine: rendermesh_scene::Engine::Cycles,
        keep_file_format: false,
    };

    /// Renders with a progress receiver that collects every event.
    async fn render(
        blender: &Blender,
        blend: &Path,
        out: &Path,
        frames: FrameRange,
    ) -> (Result<Vec<RenderedFrame>, RenderError>, Vec<Progress>) {
        render_with(blender, blend, out, frames, &TINY).await
    }

    /// [`render`] with `settings`.
    async fn render_with(
        blender: &Blender,
        blend: &Path,
        out: &Path,
        frames: FrameRange,
        settings: &RenderSettings,
    ) -> (Result<Vec<RenderedFrame>, RenderError>, Vec<Progress>) {
        let (tx, mut rx) = mpsc::channel(8);
        let collect = async {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                events.push(event);
            }
            events
        };
        let run = blender.render_frames(
            blend,
            out,
            frames,
            OutputFormat::Png,
            settings,
            tx,
            CancellationToken::new(),
        );
        tokio::join!(run, collect)
    }

    #[test]
    fn progress_lines_become_one_started_per_frame_and_saved() {
        let mut current = None;
        let lines = [
            "Read blend: /x.blend",
            "Fra:1 Mem:9.60M (Peak 10.98M) | Time:00:00.00 | Synchronizing object | Cube",
            "Fra:1 Mem:9.66M (Peak 10.98M) | Time:00:00.10 | Sample 1/2",
            "Saved: '/out/frame_00001.png'",
            " Time: 00:00.40 (Saving: 00:00.31)",
            "Fra:2 Mem:9.60M | Time:00:00.00 | Initializing",
            "Saved: '/out/other.png'",
        ];
        let events: Vec<Progress> = lines
            .iter()
            .filter_map(|l| parse_progress(l, &mut current))
            .collect();
        assert_eq!(
            events,
            vec![
                Progress::Started { frame: 1 },
                Progress::Saved {
                    frame: 1,
                    path: "/out/frame_00001.png".into()
                },
                Progress::Started { frame: 2 },
                Progress::Saved {
                    frame: 2,
                    path: "/out/other.png".into()
                },
            ]
        );
    }

    #[test]
    fn failure_messages_quote_errors_and_tracebacks_and_stay_bounded() {
        let mut log = OutputLog::default();
        for i in 0..1000 {
            log.push(&format!("Fra:1 line {i}"));
            log.push(&format!("chatter {i}"));
        }
        log.push("Error: Python: Traceback (most recent call last):");
        log.push("  File \"/s.py\", line 1, in <module>");
        log.push("RuntimeError: boom");
        log.push("after the traceback");
        log.push("Blender quit");
        assert_eq!(log.tail.len(), TAIL_LINES);
        assert_eq!(
            log.message("Blender failed (exit status: 2)"),
            "Blender failed (exit status: 2):\nError: Python: Traceback (most recent call last):\n  \
             File \"/s.py\", line 1, in <module>\nRuntimeError: boom"
        );

        let mut quiet = OutputLog::default();
        for i in 0..30 {
            quiet.push(&format!("line {i}"));
        }
        quiet.push("");
        quiet.push("Blender quit");
        let message = quiet.message("Blender wrote no file");
        assert!(
            message.starts_with("Blender wrote no file:\nline 20\n"),
            "{message}"
        );
        assert!(message.ends_with("line 29"), "{message}");
        assert_eq!(OutputLog::default().message("x"), "x; it printed nothing");
    }

    #[test]
    fn frame_paths_have_five_digits_and_the_format_extension() {
        let dir = Path::new("/out");
        assert_eq!(
            frame_path(dir, 7, OutputFormat::Png),
            Path::new("/out/frame_00007.png")
        );
        assert_eq!(
            frame_path(dir, 123_456, OutputFormat::Jpg),
            Path::new("/out/frame_123456.jpg")
        );
        assert_eq!(frame_list(&[1, 2, 5]), "1, 2, 5");
        assert_eq!(
            frame_list(&(1..=12).collect::<Vec<_>>()),
            "1, 2, 3, 4, 5, 6, 7, 8, ... (12 frames)"
        );
    }

    #[test]
    fn a_sandboxed_command_sees_the_system_read_only_the_job_and_writes_only_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blender::new("blender", None).with_sandbox(Sandbox::bubblewrap());
        let root = dir.path().join("job").join("root");
        let out = dir.path().join("job").join("out").join("0-1");
        let file = BlendFile {
            path: &root.join("scene.blend"),
            root: Some(&root),
            outputs: None,
        };
        let cmd = b
            .frames_command(file, &out, range(1, 1), OutputFormat::Png, &TINY)
            .unwrap();
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "bwrap");
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for needed in [
            "--unshare-all",
            "--die-with-parent",
            "--clearenv",
            "--ro-bind /usr /usr",
            "--tmpfs /tmp",
            &format!("--ro-bind {0} {0}", root.display()),
            &format!("--bind {0} {0}", out.display()),
            &format!("--ro-bind {0} {0}", b.scripts.dir().unwrap().display()),
            "-- blender -b --factory-startup -Y",
        ] {
            assert!(joined.contains(needed), "{needed:?} missing from {joined}");
        }
        // The only writable mount is the output; nothing of the home or the data directory.
        let writable: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(flag, _)| *flag == "--bind")
            .map(|(_, path)| path)
            .collect();
        assert_eq!(writable, [&out.display().to_string()]);
        for hidden in ["/home", "/root", "/etc/passwd", "/etc/shadow"] {
            assert!(
                !args.iter().any(|a| a == hidden),
                "{hidden} is mounted: {joined}"
            );
        }
    }

    /// A scene that tries to leave its job: an image texture read from an absolute path (a
    /// file of the node's), and a compositor File Output node writing to an absolute path.
    const ESCAPING_SCENE_PY: &str = r#"
import bpy, sys
texture, escape, out = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.render.resolution_x = scene.render.resolution_y = 160
bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.object
material = bpy.data.materials.new("leak")
material.use_nodes = True
nodes = material.node_tree.nodes
emission = nodes.new("ShaderNodeEmission")
image = nodes.new("ShaderNodeTexImage")
image.image = bpy.data.images.load(texture, check_existing=False)
material.node_tree.links.new(image.outputs["Color"], emission.inputs["Color"])
material.node_tree.links.new(emission.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
plane.data.materials.append(material)
bpy.ops.object.camera_add(location=(0, 0, 3))
scene.camera = bpy.context.object
scene.use_nodes = True
tree = scene.node_tree
layers = tree.nodes.get("Render Layers") or tree.nodes.new("CompositorNodeRLayers")
composite = tree.nodes.get("Composite") or tree.nodes.new("CompositorNodeComposite")
tree.links.new(layers.outputs["Image"], composite.inputs["Image"])
leak = tree.nodes.new("CompositorNodeOutputFile")
leak.base_path = escape
tree.links.new(layers.outputs["Image"], leak.inputs[0])
bpy.ops.wm.save_as_mainfile(filepath=out)
"#;

    /// The red of the texture at the frame's centre, as 0..=255.
    fn centre_red(frame: &Path) -> (u8, u8, u8) {
        let image = image::open(frame).unwrap().to_rgb8();
        let p = image.get_pixel(image.width() / 2, image.height() / 2);
        (p[0], p[1], p[2])
    }

    /// Issue 11: a `.blend` could write wherever the node may write (a compositor File Output
    /// node) and read the node's files into its frames (an absolute texture path). Unconfined
    /// (the control) it does both; in the sandbox it does neither, and the frame still renders.
    #[tokio::test]
    async fn in_the_sandbox_a_scene_neither_writes_outside_its_output_nor_reads_the_nodes_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node-data");
        std::fs::create_dir_all(&data).unwrap();
        let texture = data.join("secret.png");
        image::RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 0]))
            .save(&texture)
            .unwrap();
        let job = dir.path().join("job");
        std::fs::create_dir_all(&job).unwrap();
        let blend = job.join("scene.blend");
        let escape = dir.path().join("escaped");
        let b = blender();
        let args = [
            texture.to_str().unwrap(),
            escape.to_str().unwrap(),
            blend.to_str().unwrap(),
        ];
        b.run_script(ESCAPING_SCENE_PY, &args).await.unwrap();

        let open = dir.path().join("open");
        let (frames, _) = render(&b, &blend, &open, range(1, 1)).await;
        let frame = &frames.unwrap()[0].path;
        let (r, g, bl) = centre_red(frame);
        assert!(
            r > 200 && g < 60 && bl < 60,
            "the control read no texture: {r},{g},{bl}"
        );
        let escaped = std::fs::read_dir(&escape).map(|d| d.count()).unwrap_or(0);
        assert!(
            escaped > 0,
            "the control wrote nothing outside: the test proves nothing"
        );
        std::fs::remove_dir_all(&escape).unwrap();

        let sandboxed = b.clone().with_sandbox(Sandbox::bubblewrap());
        let boxed = dir.path().join("boxed");
        // The node's file is not there: the render fails, naming it...
        let (refused, _) = render(&sandboxed, &blend, &boxed, range(1, 1)).await;
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("missing file") && message.contains("secret.png"),
            "{message}"
        );
        assert!(!escape.exists(), "the scene wrote outside its output");
        // ...and with missing files allowed (`render --allow-missing`), it renders without it.
        let allowed = RenderSettings {
            allow_missing: true,
            ..TINY
        };
        let (frames, _) = render_with(&sandboxed, &blend, &boxed, range(1, 1), &allowed).await;
        let frame = &frames.unwrap()[0].path;
        let (r, g, bl) = centre_red(frame);
        assert!(
            !(r > 200 && g < 60 && bl < 60),
            "the node's file shows in the frame: {r},{g},{bl}"
        );
        assert!(!escape.exists(), "the scene wrote outside its output");
    }

    #[test]
    fn the_command_is_the_documented_argv() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blender::new("blender", Some(2));
        let settings = RenderSettings {
            samples: Some(4),
            ..RenderSettings::default()
        };
        let out = dir.path().join("out");
        let blend = Path::new("/x/a.blend");
        let cmd = b
            .frames_command(blend, &out, range(3, 7), OutputFormat::Exr, &settings)
            .unwrap();
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let script = b.scripts.dir().unwrap().join("settings.py");
        let expected = [
            "-b",
            "--factory-startup",
            "-Y",
            "/x/a.blend",
            "-E",
            "CYCLES",
            "-t",
            "2",
            "--python-exit-code",
            "2",
            "-P",
            script.to_str().unwrap(),
            "-o",
            &format!("{}/frame_#####", out.display()),
            "-F",
            "OPEN_EXR",
            "-x",
            "1",
            "-s",
            "3",
            "-e",
            "7",
            "-j",
            "1",
            "-a",
            "--",
            "--samples",
            "4",
        ];
        assert_eq!(args, expected);
        // Another engine, the file's own format, a frame step and a job root.
        let eevee = RenderSettings {
            engine: Engine::Eevee,
            keep_file_format: true,
            ..settings
        };
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let file = BlendFile {
            path: blend,
            root: Some(&root),
            outputs: None,
        };
        let stepped = FrameRange::with_step(1, 9, 4).unwrap();
        let cmd = b
            .frames_command(file, &out, stepped, OutputFormat::Exr, &eevee)
            .unwrap();
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = args.join(" ");
        assert!(text.contains("-E BLENDER_EEVEE"), "{text}");
        assert!(!args.contains(&"-F".to_owned()), "{text}");
        assert!(text.contains("-x 1 -s 1 -e 9 -j 4 -a"), "{text}");
        assert!(
            text.ends_with(&format!(
                "-- --samples 4 --engine BLENDER_EEVEE --root {}",
                root.display()
            )),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&script).unwrap(), SETTINGS_PY);
        let err = b
            .frames_command(
                Path::new("a.blend"),
                &dir.path().join("#1"),
                range(1, 1),
                OutputFormat::Png,
                &settings,
            )
            .unwrap_err();
        assert!(matches!(err, RenderError::BadPath { .. }), "{err}");
        // A directory removed behind our back (a temp cleaner) is replaced under a new name.
        let first = b.scripts.dir().unwrap();
        std::fs::remove_dir_all(&first).unwrap();
        b.frames_command(blend, &out, range(1, 1), OutputFormat::Png, &settings)
            .unwrap();
        let second = b.scripts.dir().unwrap();
        assert_ne!(first, second);
        assert_eq!(
            std::fs::read_to_string(second.join("settings.py")).unwrap(),
            SETTINGS_PY
        );
        // The scripts directory goes with the last clone.
        let scripts = b.scripts.dir().unwrap();
        let clone = b.clone();
        drop(b);
        assert!(scripts.is_dir());
        drop(clone);
        assert!(!scripts.exists());
    }

    // Blender often exits 0 after failing: a render that wrote nothing must still fail.
    #[cfg(unix)]
    #[tokio::test]
    async fn exit_zero_without_files_fails_naming_the_frames() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-blender");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Fra:1 Mem:1M | Sample 1/1'\necho 'Error: something odd' >&2\n\
             echo 'Blender quit'\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (result, events) = render(
            &Blender::new(&fake, None),
            Path::new("/x.blend"),
            &dir.path().join("out"),
            range(1, 2),
        )
        .await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("Blender wrote no file for frames 1, 2 (expected `")
                && message.ends_with("exit status: 0): Error: something odd"),
            "{message}"
        );
        assert_eq!(events, vec![Progress::Started { frame: 1 }]);
    }

    #[tokio::test]
    async fn a_missing_executable_is_not_found() {
        let b = Blender::new("/nonexistent/blender", None);
        let err = b.version().await.unwrap_err();
        assert!(matches!(err, RenderError::NotFound { .. }), "{err:?}");
        assert!(
            err.to_string().contains("apt-get install -y blender"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let (result, _) = render(&b, Path::new("/x.blend"), dir.path(), range(1, 1)).await;
        assert!(matches!(result, Err(RenderError::NotFound { .. })));
    }

    #[tokio::test]
    async fn inspection_reads_a_scenes_settings_and_files_and_names_a_file_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        let b = blender();
        b.make_example_scene(&blend).await.unwrap();
        let report = b.inspect(&blend).await.unwrap();
        assert_eq!(report.blend, blend.display().to_string());
        assert_eq!(report.engine, "CYCLES");
        assert_eq!(
            (report.frame_start, report.frame_end, report.frame_step),
            (1, 24, 1)
        );
        assert_eq!(report.output.extension, ".png");
        assert!(report.files.is_empty(), "{:?}", report.files);
        assert!(report.unbaked.is_empty(), "{:?}", report.unbaked);

        // A texture saved beside the file, then removed: listed, and missing.
        let textured = dir.path().join("textured.blend");
        let build = "import bpy, sys\n\
                     img = bpy.data.images.new('wood', 4, 4)\n\
                     img.filepath_raw = sys.argv[-1] + '.png'\n\
                     img.file_format = 'PNG'\n\
                     img.save()\n\
                     img.filepath = '//' + sys.argv[-1].rsplit('/', 1)[-1] + '.png'\n\
                     img.use_fake_user = True\n\
                     bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])\n";
        b.run_script(build, &[textured.to_str().unwrap()])
            .await
            .unwrap();
        let texture = dir.path().join("textured.blend.png");
        let report = b.inspect(&textured).await.unwrap();
        assert_eq!(report.files.len(), 1, "{:?}", report.files);
        assert_eq!(report.files[0].path, texture.display().to_string());
        assert_eq!(report.files[0].named, "//textured.blend.png");
        assert!(report.files[0].exists);
        std::fs::remove_file(&texture).unwrap();
        let report = b.inspect(&textured).await.unwrap();
        let missing: Vec<String> = report.missing().map(|f| f.describe()).collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].contains("image \"wood\""), "{missing:?}");

        let text = dir.path().join("notes.blend");
        std::fs::write(&text, "not a blend file").unwrap();
        let err = b.inspect(&text).await.unwrap_err();
        assert!(matches!(err, RenderError::Failed { .. }), "{err:?}");
    }

    /// A file a node was sent is read in the sandbox: Blender sees that file and the scratch
    /// directory alone, so a texture that exists beside the file is reported missing.
    #[tokio::test]
    async fn a_sent_file_is_inspected_seeing_nothing_but_itself() {
        let dir = tempfile::tempdir().unwrap();
        let b = blender();
        // An upload is stored under its hash, without an extension.
        let blend = dir.path().join("8f3a");
        let build = "import bpy, sys\n\
                     bpy.context.scene.frame_start = 3\n\
                     bpy.context.scene.frame_end = 37\n\
                     bpy.context.scene.render.engine = 'CYCLES'\n\
                     img = bpy.data.images.new('wood', 4, 4)\n\
                     img.filepath_raw = sys.argv[-1] + '.png'\n\
                     img.file_format = 'PNG'\n\
                     img.save()\n\
                     img.use_fake_user = True\n\
                     bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])\n";
        b.run_script(build, &[blend.to_str().unwrap()])
            .await
            .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let sandboxed = b.clone().with_sandbox(Sandbox::bubblewrap());
        let report = sandboxed
            .inspect_confined(&blend, scratch.path())
            .await
            .unwrap();
        assert_eq!((report.frame_start, report.frame_end), (3, 37));
        assert_eq!(report.engine, "CYCLES");
        assert_eq!(report.files.len(), 1, "{:?}", report.files);
        assert!(
            !report.files[0].exists,
            "the sandboxed Blender saw {}",
            report.files[0].path
        );
        assert!(b.inspect(&blend).await.unwrap().files[0].exists);

        let text = dir.path().join("c0de");
        std::fs::write(&text, "not a blend file").unwrap();
        let err = sandboxed
            .inspect_confined(&text, scratch.path())
            .await
            .unwrap_err();
        assert!(matches!(err, RenderError::Failed { .. }), "{err:?}");
    }

    /// What the settings script leaves Blender set to, read back from Blender itself (a
    /// second `-P` script prints it as JSON) rather than from the script's text.
    async fn settings_after(blend: &Path, args: &[&str]) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("settings.py");
        std::fs::write(&settings, SETTINGS_PY).unwrap();
        let probe = dir.path().join("probe.py");
        std::fs::write(
            &probe,
            "import bpy, json\n\
             s = bpy.context.scene\n\
             r = s.render\n\
             print('SETTINGS ' + json.dumps({\n\
             'engine': r.engine, 'device': s.cycles.device, 'samples': s.cycles.samples,\n\
             'eevee_samples': s.eevee.taa_render_samples, 'percent': r.resolution_percentage,\n\
             'denoise': s.cycles.use_denoising,\n\
             'layer_denoise': any(v.cycles.use_denoising for v in s.view_layers),\n\
             'overwrite': r.use_overwrite, 'placeholder': r.use_placeholder,\n\
             'multiview': r.use_multiview, 'compositing': r.use_compositing,\n\
             'sequencer': r.use_sequencer, 'dither': r.dither_intensity,\n\
             'adaptive': s.cycles.use_adaptive_sampling, 'border': r.use_border}))\n",
        )
        .unwrap();
        let run = Command::new("blender")
            .args(["-b", "--factory-startup", "-Y"])
            .arg(blend)
            .args(["--python-exit-code", "2", "-P"])
            .arg(&settings)
            .arg("-P")
            .arg(&probe)
            .arg("--")
            .args(args)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("Blender answers within 2 minutes")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("SETTINGS "))
            .unwrap_or_else(|| panic!("no settings printed: {text}"));
        serde_json::from_str(line).unwrap()
    }

    #[tokio::test]
    async fn the_settings_script_leaves_blender_set_as_the_job_asks() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        blender().make_example_scene(&blend).await.unwrap();
        let v = settings_after(&blend, &["--samples", "3", "--resolution-percent", "20"]).await;
        assert_eq!(v["engine"], "CYCLES");
        assert_eq!(v["device"], "CPU");
        assert_eq!(
            (v["samples"].as_u64(), v["percent"].as_u64()),
            (Some(3), Some(20))
        );
        for off in [
            "denoise",
            "layer_denoise",
            "placeholder",
            "multiview",
            "border",
        ] {
            assert_eq!(v[off], false, "{off}: {v}");
        }
        assert_eq!(v["overwrite"], true);
        // The file's own compositing and adaptive sampling stay for whole frames...
        let file = settings_after(&blend, &[]).await;
        // ...and `--exact` (every tile) turns off what keeps tiles from stitching.
        let exact = settings_after(&blend, &["--exact"]).await;
        for off in ["compositing", "sequencer", "adaptive"] {
            assert_eq!(exact[off], false, "{off}: {exact}");
        }
        assert_eq!(exact["dither"].as_f64(), Some(0.0));
        assert_ne!(
            file["dither"].as_f64(),
            Some(0.0),
            "the example scene dithers"
        );
        assert_eq!(file["samples"], 16, "the file's own samples stay");
        let eevee = settings_after(&blend, &["--engine", "BLENDER_EEVEE", "--samples", "5"]).await;
        assert_eq!(eevee["engine"], "BLENDER_EEVEE");
        assert_eq!(eevee["eevee_samples"], 5);
    }

    #[tokio::test]
    async fn version_is_the_first_line() {
        let version = blender().version().await.unwrap();
        assert!(version.starts_with("Blender 3."), "{version}");
    }

    #[tokio::test]
    async fn the_example_scene_renders_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        let b = blender();
        b.make_example_scene(&blend).await.unwrap();
        let out = dir.path().join("out");
        let (result, events) = render(&b, &blend, &out, range(1, 2)).await;
        let frames = result.unwrap();
        assert_eq!(
            frames,
            vec![
                RenderedFrame {
                    frame: 1,
                    path: out.join("frame_00001.png")
                },
                RenderedFrame {
                    frame: 2,
                    path: out.join("frame_00002.png")
                },
            ]
        );
        for frame in &frames {
            assert!(std::fs::metadata(&frame.path).unwrap().len() > 0);
        }
        let out = absolute(&out).unwrap();
        assert_eq!(
            events,
            vec![
                Progress::Started { frame: 1 },
                Progress::Saved {
                    frame: 1,
                    path: out.join("frame_00001.png")
                },
                Progress::Started { frame: 2 },
                Progress::Saved {
                    frame: 2,
                    path: out.join("frame_00002.png")
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_scene_without_a_camera_fails_fast_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("no-camera.blend");
        let b = blender();
        b.run_script(NO_CAMERA_SCENE_PY, &[blend.to_str().unwrap()])
            .await
            .unwrap();
        let (result, events) = render(&b, &blend, &dir.path().join("out"), range(1, 2)).await;
        let message = result.unwrap_err().to_string();
        assert_eq!(
            message,
            "Blender failed (exit status: 2): rendermesh: error: scene \"Scene\" has no camera"
        );
        assert!(events.is_empty(), "{events:?}");
        // A session fails as it starts, with the same words.
        let started = b
            .start_session(
                &blend,
                dir.path(),
                OutputFormat::Png,
                &TINY,
                &CancellationToken::new(),
            )
            .await;
        let message = started.unwrap_err().to_string();
        assert_eq!(
            message,
            "Blender could not start rendering (exit status: 2): rendermesh: error: scene \"Scene\" has no camera"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_fails_with_blenders_words() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("x.blend");
        // Fixed pseudo-random bytes (an LCG), so the test never meets a real file header.
        let mut x: u32 = 12345;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        std::fs::write(&blend, bytes).unwrap();
        let (result, _) = render(&blender(), &blend, &dir.path().join("out"), range(1, 1)).await;
        let message = result.unwrap_err().to_string();
        // Blender 3.4.1: "Error: File format is not supported in file '/tmp/.../x.blend'".
        assert!(
            message.starts_with(
                "Blender failed (exit status: 1): Error: File format is not supported in file"
            ) && message.contains("x.blend"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn embedded_python_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("autorun.blend");
        let marker = dir.path().join("marker");
        let b = blender();
        // A text block registered to run on load, and a scripted driver, each writing a marker.
        let build = r#"
import sys
import bpy

out, marker = sys.argv[sys.argv.index("--") + 1 :]
text = bpy.data.texts.new("autorun.py")
text.write(f"open({marker + '.module'!r}, 'w').write('ran')\n")
text.use_module = True
cube = bpy.data.objects["Cube"]
fcurve = cube.driver_add("location", 0)
fcurve.driver.type = "SCRIPTED"
fcurve.driver.expression = f"len(open({marker + '.driver'!r}, 'w').write('ran')) * 0"
bpy.ops.wm.save_as_mainfile(filepath=out)
"#;
        b.run_script(build, &[blend.to_str().unwrap(), marker.to_str().unwrap()])
            .await
            .unwrap();
        let module_marker = marker.with_extension("module");
        let driver_marker = marker.with_extension("driver");
        assert!(!module_marker.exists() && !driver_marker.exists());

        let (result, _) = render(&b, &blend, &dir.path().join("out"), range(1, 1)).await;
        result.unwrap();
        assert!(!module_marker.exists(), "the text block ran");
        assert!(!driver_marker.exists(), "the driver ran");
        // Nor when a spare Blender (started with `-Y` and no file) opens it later.
        let out = dir.path().join("spare-out");
        std::fs::create_dir_all(&out).unwrap();
        let spare = b.start_spare(dir.path(), &out).unwrap();
        let file = BlendFile {
            path: &blend,
            root: Some(dir.path()),
            outputs: Some(&out),
        };
        let cancel = CancellationToken::new();
        let session = spare.open(file, OutputFormat::Png, &TINY, &cancel).await;
        let mut session = session.unwrap().expect("the spare serves it");
        let (tx, _rx) = mpsc::channel(8);
        session
            .render(&out.join("t"), range(1, 1), None, tx, cancel)
            .await
            .unwrap();
        assert!(!module_marker.exists(), "the text block ran in a spare");
        assert!(!driver_marker.exists(), "the driver ran in a spare");

        // The control: the same file loaded with `-y` (--enable-autoexec) runs both, so the
        // absence above is -Y's doing. (Checked by hand too: rendering it with `-y` instead of
        // `-Y` writes both markers; factory preferences alone also leave autoexec off in 3.4,
        // so -Y guards against a machine whose preferences turn it on.)
        let status = tokio::process::Command::new("blender")
            .args(["-b", "--factory-startup", "-y"])
            .arg(&blend)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());
        assert!(module_marker.exists() && driver_marker.exists());
    }

    #[tokio::test]
    async fn cancel_kills_blender_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        let b = blender();
        b.make_example_scene(&blend).await.unwrap();
        let out = dir.path().join("out");
        let (tx, rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        // Full size and samples: each frame takes seconds, so the cancel lands mid-render.
        let settings = RenderSettings::default();
        let run = b.render_frames(
            &blend,
            &out,
            range(1, 24),
            OutputFormat::Png,
            &settings,
            tx,
            cancel.clone(),
        );
        assert_cancel_is_prompt(run, rx, &cancel, &out).await;
    }

    /// Cancels `run` (rendering frames 1-24 into `out`) once its first event arrives on `rx`:
    /// it must stop within 2 s, cancelled, before the last frame.
    async fn assert_cancel_is_prompt(
        run: impl std::future::Future<Output = Result<Vec<RenderedFrame>, RenderError>>,
        mut rx: mpsc::Receiver<Progress>,
        cancel: &CancellationToken,
        out: &Path,
    ) {
        let watch = async {
            let first = rx.recv().await;
            cancel.cancel();
            let at = Instant::now();
            // Keep draining so the renderer is never blocked on the channel.
            while rx.recv().await.is_some() {}
            (first, at)
        };
        let (result, (first, cancelled_at)) = tokio::join!(run, watch);
        let took = cancelled_at.elapsed();
        assert_eq!(first, Some(Progress::Started { frame: 1 }));
        assert!(matches!(result, Err(RenderError::Cancelled)), "{result:?}");
        assert!(took < Duration::from_secs(2), "cancel took {took:?}");
        assert!(!out.join("frame_00024.png").exists());
    }

    /// Decoded RGBA pixels of a PNG.
    fn decoded(path: &Path) -> image::RgbaImage {
        image::open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgba8()
    }

    /// A spare started before its job exists opens the job once it is laid out in its
    /// directory, and renders the pixels a Blender started with the file does, tiles included;
    /// a job laid out elsewhere, or whose format `-F` would set differently, it declines.
    #[tokio::test]
    async fn a_spare_serves_the_job_laid_out_in_its_directory_with_a_sessions_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("root"), dir.path().join("out"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let b = blender().with_sandbox(Sandbox::bubblewrap());
        let spare = b.start_spare(&root, &out).unwrap();
        // The job comes after the spare started.
        let blend = root.join("home/u/example.blend");
        std::fs::create_dir_all(blend.parent().unwrap()).unwrap();
        b.make_example_scene(&blend).await.unwrap();
        let file = BlendFile {
            path: &blend,
            root: Some(&root),
            outputs: Some(&out),
        };
        let exact = RenderSettings {
            exact: true,
            ..TINY
        };
        let tile = Tile {
            col: 1,
            row: 0,
            cols: 2,
            rows: 2,
        };
        // Laid out elsewhere: not its job.
        let (other_root, other_out) = (dir.path().join("other"), dir.path().join("other-out"));
        let elsewhere = BlendFile {
            root: Some(&other_root),
            ..file
        };
        assert!(!spare.serves(&elsewhere).unwrap());
        let elsewhere = BlendFile {
            outputs: Some(&other_out),
            ..file
        };
        assert!(!spare.serves(&elsewhere).unwrap());
        let cancel = CancellationToken::new();
        let spared = spare.open(file, OutputFormat::Png, &exact, &cancel).await;
        let mut spared = spared
            .unwrap()
            .expect("the spare serves a job laid out in it");
        let started = b.start_session(file, &out, OutputFormat::Png, &exact, &cancel);
        let mut started = started.await.unwrap();
        for (task, frames, tile) in [("a", range(1, 2), None), ("b", range(3, 3), Some(tile))] {
            let (spare_dir, session_dir) = (
                out.join(format!("spare-{task}")),
                out.join(format!("session-{task}")),
            );
            let (tx, _rx) = mpsc::channel(8);
            let ours = spared.render(&spare_dir, frames, tile, tx, cancel.clone());
            let ours = ours.await.unwrap();
            let (tx, _rx) = mpsc::channel(8);
            let theirs = started.render(&session_dir, frames, tile, tx, cancel.clone());
            let theirs = theirs.await.unwrap();
            assert_eq!(ours.len(), frames.len() as usize);
            for (ours, theirs) in ours.iter().zip(&theirs) {
                let (a, b) = (decoded(&ours.path), decoded(&theirs.path));
                assert_eq!(a.dimensions(), b.dimensions(), "frame {}", ours.frame);
                assert!(a == b, "frame {}: pixels differ", ours.frame);
            }
        }

        // JPEG would drop the example scene's alpha channel from its settings, where `-F JPEG`
        // keeps it: the spare declines rather than write other pixels.
        let spare = b.start_spare(&root, &out).unwrap();
        let declined = spare.open(file, OutputFormat::Jpg, &exact, &cancel).await;
        assert!(declined.unwrap().is_none());
        // A spare whose file does not load fails with Blender's words.
        let broken = root.join("broken.blend");
        std::fs::write(&broken, b"not a blend").unwrap();
        let spare = b.start_spare(&root, &out).unwrap();
        let file = BlendFile {
            path: &broken,
            ..file
        };
        let message = spare.open(file, OutputFormat::Png, &exact, &cancel).await;
        let message = message.unwrap_err().to_string();
        assert!(
            message.contains("cannot open") && message.contains("broken.blend"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_session_renders_the_frames_and_tiles_of_several_tasks_as_separate_runs_do() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        let b = blender();
        b.make_example_scene(&blend).await.unwrap();
        let exact = RenderSettings {
            exact: true,
            ..TINY
        };
        let tile = Tile {
            col: 1,
            row: 0,
            cols: 2,
            rows: 2,
        };
        let cancel = CancellationToken::new();
        let mut session = b
            .start_session(&blend, dir.path(), OutputFormat::Png, &exact, &cancel)
            .await
            .unwrap();
        // Two tasks in one session: frames 1-2 whole, then one tile of frame 3.
        let (tx, mut rx) = mpsc::channel(8);
        let s1 = dir.path().join("s1");
        let whole = session.render(&s1, range(1, 2), None, tx, cancel.clone());
        let collect = async {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                events.push(event);
            }
            events
        };
        let (whole, events) = tokio::join!(whole, collect);
        let whole = whole.unwrap();
        let started: Vec<&Progress> = events
            .iter()
            .filter(|e| matches!(e, Progress::Started { .. }))
            .collect();
        assert_eq!(
            started,
            [
                &Progress::Started { frame: 1 },
                &Progress::Started { frame: 2 }
            ]
        );
        assert_eq!(events.len(), 4, "{events:?}");
        let (tx, _rx) = mpsc::channel(8);
        let tiled = session
            .render(
                &dir.path().join("s2"),
                range(3, 3),
                Some(tile),
                tx,
                cancel.clone(),
            )
            .await
            .unwrap();

        // The same work in separate `blender -b -a` runs.
        let apart = |out: &str, frames, settings| {
            let (b, blend, out) = (&b, &blend, dir.path().join(out));
            async move {
                let (tx, _rx) = mpsc::channel(8);
                let cancel = CancellationToken::new();
                b.render_frames(
                    blend,
                    &out,
                    frames,
                    OutputFormat::Png,
                    &settings,
                    tx,
                    cancel,
                )
                .await
                .unwrap()
            }
        };
        let apart_whole = apart("r1", range(1, 2), exact).await;
        let tile_settings = RenderSettings {
            tile: Some(tile),
            ..exact
        };
        let apart_tile = apart("r2", range(3, 3), tile_settings).await;
        let theirs = apart_whole.iter().chain(&apart_tile);
        for (ours, theirs) in whole.iter().chain(&tiled).zip(theirs) {
            assert_eq!(ours.frame, theirs.frame);
            let (a, b) = (decoded(&ours.path), decoded(&theirs.path));
            assert_eq!(a.dimensions(), b.dimensions(), "frame {}", ours.frame);
            assert!(a == b, "frame {}: pixels differ", ours.frame);
        }
        // The tile is the tile, not the frame.
        let frame = decoded(&whole[0].path);
        let tile_img = decoded(&tiled[0].path);
        let rect = tile.rect(frame.width(), frame.height());
        assert_eq!(
            tile_img.dimensions(),
            (rect.x1 - rect.x0, rect.y1 - rect.y0)
        );
    }

    #[tokio::test]
    async fn cancelling_a_session_render_kills_blender_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let blend = dir.path().join("example.blend");
        let b = blender();
        b.make_example_scene(&blend).await.unwrap();
        let cancel = CancellationToken::new();
        // Full size and samples: each frame takes seconds, so the cancel lands mid-render.
        let mut session = b
            .start_session(
                &blend,
                dir.path(),
                OutputFormat::Png,
                &RenderSettings::default(),
                &cancel,
            )
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let out = dir.path().join("out");
        let run = session.render(&out, range(1, 24), None, tx, cancel.clone());
        assert_cancel_is_prompt(run, rx, &cancel, &out).await;
    }
}
