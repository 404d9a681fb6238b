//! Submitting a job and following it to its frames: checking the `.blend`, asking Blender
//! which files it uses, baking, uploading, submitting to the node at `--api` (or an embedded
//! one), then saving each frame as it is done. `render` and `chart` submit a [`Submission`]
//! through [`submit_and_follow`]; `download` follows a job with the same [`Watch`].

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rendermesh_node::Node;
use rendermesh_node::client::{Client, ClientError};
use rendermesh_node::config::Config;
use rendermesh_node::render::Blender;
use rendermesh_protocol::printable;
use rendermesh_protocol::{
    BlobHash, Dependency, Engine, FrameRange, Job, JobId, JobSpec, JobState, NodeId, Output,
    OutputFormat, TaskState, Tiling, limits,
};
use rendermesh_scene::Inspection;
use rendermesh_scene::inspect::ExternalFile;

use crate::args::{DownloadArgs, TilesArg, api_client, mesh_secret};
use crate::tables::{job_state, match_job, mebibytes, plural, working_on};

/// How often `render` polls its job.
const POLL: Duration = Duration::from_millis(250);
/// How often `render` refreshes the peer names shown in its progress bar.
const NAMES_EVERY: Duration = Duration::from_secs(2);
/// How long `render` tolerates a node that does not answer, or frames it cannot download.
const TOLERANCE: Duration = Duration::from_secs(30);
/// How long `render` waits for its cancel to be accepted after ctrl-c.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// How long `download` waits for a just-submitted job to reach the node it asks.
const JOB_ARRIVAL: Duration = Duration::from_secs(10);
/// The exit code after ctrl-c (128 + SIGINT), as shells expect.
pub(crate) const INTERRUPTED: u8 = 130;

/// A job as the user asked for it, from `render`'s flags or built by `chart`: the file, what to
/// render of it, where its frames go and which node takes it.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The .blend file.
    pub file: PathBuf,
    /// Frames [default: the file's range and step].
    pub frames: Option<FrameRange>,
    /// Samples per pixel [default: the file's].
    pub samples: Option<u32>,
    /// Resolution percentage [default: the file's].
    pub resolution_percent: Option<u32>,
    /// Output format [default: the file's].
    pub format: Option<OutputFormat>,
    /// Render engine [default: the file's].
    pub engine: Option<Engine>,
    /// Frames per task [default: the coordinator chooses].
    pub chunk: Option<u32>,
    /// Tiles [default: `auto` for one frame, else whole frames].
    pub tiles: Option<TilesArg>,
    /// Where the frames go.
    pub out: PathBuf,
    /// Submit and exit.
    pub detach: bool,
    /// Refuse unbaked simulations rather than bake them.
    pub no_bake: bool,
    /// Render with missing files.
    pub allow_missing: bool,
    /// The node to use.
    pub node: NodeChoice,
    /// What Blender already said about `file` (`chart` asks the Blender that built it);
    /// `None`: ask it.
    pub inspection: Option<Inspection>,
}

/// The node a job goes to: the one at `api`, or, when nothing answers there, an embedded node
/// started for the job with these settings.
#[derive(Clone, Debug)]
pub struct NodeChoice {
    /// The node's API address.
    pub api: SocketAddr,
    /// The embedded node's data directory [default: in the user's cache directory].
    pub data_dir: Option<PathBuf>,
    /// The Blender executable.
    pub blender: PathBuf,
    /// The embedded node does not look for LAN peers by mDNS.
    pub no_mdns: bool,
    /// The embedded node runs Blender unconfined.
    pub no_sandbox: bool,
    /// The embedded node keeps no spare Blender.
    pub no_spare_blender: bool,
    /// The mesh secret's file.
    pub secret_file: Option<PathBuf>,
    /// An open mesh, without a key.
    pub open: bool,
    /// The file holding the API token of the node at `api`.
    pub api_token: Option<PathBuf>,
}

/// Submits `args` and follows the job to its last frame (`rendermesh render`, and `rendermesh
/// chart` for the `.blend` it built); ctrl-c cancels the job.
pub async fn submit_and_follow(args: Submission) -> Result<ExitCode> {
    check_blend_file(&args.file)?;
    // Check the settings given before uploading anything or starting a node.
    let given = Resolved {
        frames: args.frames.unwrap_or(FrameRange::single(1)),
        format: args.format.unwrap_or_default(),
        keep_file_format: false,
        engine: args.engine.unwrap_or_default(),
        tiles: None,
        notes: Vec::new(),
    };
    job_spec(&args, &given, BlobHash([0; 32]), 0).validate()?;
    if args.detach {
        return detached(&args).await;
    }
    let bar = frames_bar(args.frames.map_or(1, |f| f.len()));
    // Blender reads the file while the node starts: each takes about a second.
    let (connected, inspected) = tokio::select! {
        both = async { tokio::join!(connect_or_embed(&args.node), inspect(&args, &bar)) } => both,
        () = rendermesh_node::shutdown_signal() => {
            bar.abandon();
            interrupted(None, None).await;
            return Ok(ExitCode::from(INTERRUPTED));
        }
    };
    let (client, embedded) = connected?;
    let submitted = OnceLock::new();
    let outcome = match inspected {
        Err(e) => Err(e),
        Ok(report) => tokio::select! {
            r = render_on(&client, &args, report, &bar, &submitted) => r.map(|()| ExitCode::SUCCESS),
            () = rendermesh_node::shutdown_signal() => {
                bar.abandon();
                interrupted(Some(&client), submitted.get().copied()).await;
                Ok(ExitCode::from(INTERRUPTED))
            }
        },
    };
    if outcome.is_err() {
        bar.abandon();
    }
    if let Some(embedded) = embedded {
        embedded.node.shutdown().await;
        drop(embedded.dir);
    }
    outcome
}

/// `render`'s progress bar, over `frames` frames to begin with.
fn frames_bar(frames: u32) -> ProgressBar {
    let bar = ProgressBar::new(u64::from(frames));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {prefix} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("frames");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `render --detach`: upload and submit to the running node, print the id, leave.
async fn detached(args: &Submission) -> Result<ExitCode> {
    let client = api_client(args.node.api, args.node.api_token.as_deref())?;
    if let Err(e) = client.node().await {
        bail!(
            "--detach needs a running node at {}: {e} (start one with `rendermesh node`; without --detach, render starts its own)",
            args.node.api
        );
    }
    let bar = ProgressBar::hidden();
    let report = inspect(args, &bar).await?;
    let spec = upload_job(&client, args, report, &bar).await?;
    let id = client
        .submit(&spec)
        .await
        .context("cannot submit the job")?;
    println!("submitted job {id}");
    println!(
        "follow it and save its frames with: rendermesh download {} --out {}",
        id.short(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `rendermesh download`: saves a job's frames; follows it to its end unless `--no-wait`.
/// Ctrl-c stops the download, not the job.
pub(crate) async fn download(args: DownloadArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let id = resolve_job(&client, &args.id).await?;
    // A job submitted elsewhere a moment ago may not have reached this node's copy yet.
    let deadline = Instant::now() + JOB_ARRIVAL;
    let job = loop {
        match client.job(id).await? {
            Some(job) => break job,
            None if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            None => bail!(
                "no job {id} on the mesh of the node at {} (its copy of the job table has none after {} s)",
                args.api.api,
                JOB_ARRIVAL.as_secs()
            ),
        }
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let file = PathBuf::from(&job.spec.name);
    let bar = frames_bar(job.spec.frames.len());
    let mut watch = Watch::new(&client, &file, &args.out, &bar);
    if args.no_wait {
        watch.save_frames(&job).await;
        bar.finish_and_clear();
        let rendered = job.outputs().len();
        if let Some((_, why)) = &watch.failing {
            bail!(
                "saved {} of the {rendered} frames rendered so far; the others cannot be downloaded: {why}",
                watch.saved.len()
            );
        }
        println!(
            "{} in {} ({} of {} frames rendered so far; job {})",
            plural(watch.saved.len(), "frame"),
            args.out.display(),
            rendered,
            job.spec.frames.len(),
            job_state(job.state)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let followed = tokio::select! {
        r = watch.follow(id) => r,
        () = rendermesh_node::shutdown_signal() => {
            bar.abandon();
            eprintln!(
                "interrupted: stopped downloading after {}; job {} goes on (run download again to resume)",
                plural(watch.saved.len(), "frame"),
                id.short()
            );
            return Ok(ExitCode::from(INTERRUPTED));
        }
    };
    if followed.is_err() {
        bar.abandon();
    }
    followed?;
    bar.finish_and_clear();
    println!(
        "{} in {}",
        plural(watch.saved.len(), "frame"),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// After ctrl-c: cancels the job if it was submitted, and says so.
async fn interrupted(client: Option<&Client>, job: Option<JobId>) {
    let (Some(client), Some(id)) = (client, job) else {
        eprintln!("interrupted before the job was submitted");
        return;
    };
    match tokio::time::timeout(CANCEL_WAIT, client.cancel(id)).await {
        Ok(Ok(())) => eprintln!("interrupted: cancelled job {id}"),
        Ok(Err(e)) => eprintln!(
            "interrupted, but job {id} could not be cancelled: {:#}",
            anyhow::Error::new(e)
        ),
        Err(_) => eprintln!(
            "interrupted, but job {id} could not be cancelled: no answer in {} s",
            CANCEL_WAIT.as_secs()
        ),
    }
}

/// A node started by `render` because none answered, and what keeps its data directory.
struct Embedded {
    node: Node,
    dir: EmbeddedDir,
}

/// Talks to the node at `--api`, or starts an embedded one when nothing listens there.
async fn connect_or_embed(args: &NodeChoice) -> Result<(Client, Option<Embedded>)> {
    let client = api_client(args.api, args.api_token.as_deref())?;
    match client.node().await {
        Ok(_) => Ok((client, None)),
        Err(ClientError::Unreachable { addr }) => {
            let dir = EmbeddedDir::choose(args.data_dir.clone())?;
            let config = Config {
                data_dir: dir.path.clone(),
                api: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                mdns: !args.no_mdns,
                sandbox: !args.no_sandbox,
                spare_blender: !args.no_spare_blender,
                blender: args.blender.clone(),
                secret: mesh_secret(args.secret_file.as_deref(), args.open, None, &dir.path)?,
                ..Config::default()
            };
            let node = Node::start(config).await.with_context(|| {
                format!("no node at {addr}, and an embedded node could not start")
            })?;
            let api = node.api_addr().context("the embedded node serves no API")?;
            eprintln!(
                "no node at {addr}: started an embedded node {} (it joins any mesh it finds on the LAN)",
                node.id().short()
            );
            Ok((Client::new(api), Some(Embedded { node, dir })))
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("cannot use the node at {}", args.api)))
        }
    }
}

/// The embedded node's data directory. The default one is locked (`.lock` holds the pid) so
/// that two `render`s at once never run two nodes with the same identity: the second one uses a
/// scratch directory of its own, removed when it ends.
struct EmbeddedDir {
    path: PathBuf,
    /// The lock file to remove, for the default directory.
    lock: Option<PathBuf>,
    /// True for a scratch directory, removed at the end.
    scratch: bool,
}

impl EmbeddedDir {
    fn choose(explicit: Option<PathBuf>) -> Result<Self> {
        if let Some(path) = explicit {
            return Ok(Self {
                path,
                lock: None,
                scratch: false,
            });
        }
        let base = cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("rendermesh-embedded");
        std::fs::create_dir_all(&base)
            .with_context(|| format!("cannot create {}", base.display()))?;
        let lock = base.join(".lock");
        if take_lock(&lock) {
            return Ok(Self {
                path: base,
                lock: Some(lock),
                scratch: false,
            });
        }
        let mut name = base.clone().into_os_string();
        name.push(format!("-{}", std::process::id()));
        Ok(Self {
            path: PathBuf::from(name),
            lock: None,
            scratch: true,
        })
    }
}

impl Drop for EmbeddedDir {
    fn drop(&mut self) {
        if let Some(lock) = &self.lock {
            let _ = std::fs::remove_file(lock);
        }
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Creates `lock` holding this process's id; takes over a lock whose process is gone (where
/// that can be told: on Linux, by `/proc`).
fn take_lock(lock: &Path) -> bool {
    use std::io::Write;
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
        {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(lock).unwrap_or_default();
                let gone = Path::new("/proc/self").exists()
                    && holder
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
                if !gone || std::fs::remove_file(lock).is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// The user's cache directory: `$XDG_CACHE_HOME` or `~/.cache` (Linux and other Unix),
/// `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows).
fn cache_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if cfg!(windows) {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Caches"))
    } else {
        env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
    }
}

/// Opens `path` and checks that it starts like a `.blend`.
fn check_blend_file(path: &Path) -> Result<()> {
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_blend_magic(path, &head)
}

/// Checks that `head` (the start of the file at `path`) is a `.blend`'s: `BLENDER` for a plain
/// file, or the gzip (`1f 8b`) or zstd (`28 b5 2f fd`) magic of a compressed one.
pub(crate) fn check_blend_magic(path: &Path, head: &[u8]) -> Result<()> {
    const MAGICS: [&[u8]; 3] = [b"BLENDER", &[0x1f, 0x8b], &[0x28, 0xb5, 0x2f, 0xfd]];
    if MAGICS.iter().any(|m| head.starts_with(m)) {
        return Ok(());
    }
    if head.is_empty() {
        bail!("{} is not a Blender file (it is empty)", path.display());
    }
    bail!(
        "{} is not a Blender file (it starts with {}; a .blend starts with `BLENDER`, or is \
         gzip or zstd compressed)",
        path.display(),
        describe_start(head)
    )
}

/// The first 8 bytes, as text in backquotes if they are printable (escaping line breaks),
/// else as hex.
fn describe_start(head: &[u8]) -> String {
    let head = &head[..head.len().min(8)];
    let texty = |b: &u8| b.is_ascii_graphic() || b" \t\r\n".contains(b);
    if head.iter().all(texty) {
        format!("`{}`", head.escape_ascii())
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("the bytes {}", hex.join(" "))
    }
}

/// The file `frame` is saved as: `<stem of the .blend>_<frame, 4 digits at least>.<ext>`.
pub(crate) fn output_name(blend: &Path, frame: u32, format: OutputFormat) -> String {
    let stem = blend
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "frame".into());
    format!("{stem}_{frame:04}.{}", format.extension())
}

/// Uploads at once, while a job's files go to its node.
const UPLOADS_IN_FLIGHT: usize = 4;

/// Asks this machine's Blender what `args.file` is and which files it uses.
async fn inspect(args: &Submission, bar: &ProgressBar) -> Result<Inspection> {
    if let Some(known) = &args.inspection {
        return Ok(known.clone());
    }
    bar.set_message(format!(
        "asking Blender which files {} uses",
        args.file.display()
    ));
    Blender::new(&args.node.blender, None)
        .inspect(&args.file)
        .await
        .with_context(|| format!("cannot read {} with Blender", args.file.display()))
}

/// With what Blender said about `args.file` (`report`): refuses the job, naming every missing
/// file, unless `--allow-missing`; uploads the `.blend` and every file it uses to the node
/// (each its own blob, `bar` counting them); returns the job to submit.
async fn upload_job(
    client: &Client,
    args: &Submission,
    report: Inspection,
    bar: &ProgressBar,
) -> Result<JobSpec> {
    let resolved = resolve(args, &report)?;
    for note in &resolved.notes {
        bar.suspend(|| eprintln!("note: {note}"));
    }
    let missing = refuse_missing(args, &report, bar)?;
    let baked = bake_if_needed(args, &report, bar).await?;
    // What goes to the node: every file found, and the fluid caches a bake wrote.
    let mut files: Vec<(String, String, String)> = report
        .files
        .iter()
        .filter(|f| f.exists && f.path != report.blend)
        .map(|f| (f.path.clone(), f.named.clone(), f.describe()))
        .collect();
    if let Some(baked) = &baked {
        for path in baked.cache_files()? {
            files.push((
                path.clone(),
                path.clone(),
                format!("{path} (a baked cache)"),
            ));
        }
    }
    let mut total = 0u64;
    for (path, _, what) in &files {
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {what}"))?
            .len();
        if size > limits::MAX_BLOB {
            bail!(
                "{what} is {size} bytes; a file may be at most {} bytes",
                limits::MAX_BLOB
            );
        }
        total = total.saturating_add(size);
    }
    bar.set_prefix("files");
    bar.set_length(files.len() as u64 + 1);
    bar.set_position(0);
    bar.set_message(format!(
        "uploading {} and {} ({})",
        args.file.display(),
        plural(files.len(), "file"),
        mebibytes(total)
    ));
    // A baked job renders the baked copy, laid out where the user's file is.
    let blend_file = baked
        .as_ref()
        .map_or(args.file.as_path(), |b| b.blend.as_path());
    let (blend, blend_size) = client
        .upload_file(blend_file)
        .await
        .with_context(|| format!("cannot upload {}", blend_file.display()))?;
    bar.inc(1);
    let deps: Vec<Dependency> = futures::stream::iter(files)
        .map(|(path, named, what)| async move {
            let (blob, size) = client
                .upload_file(Path::new(&path))
                .await
                .with_context(|| format!("cannot upload {what}"))?;
            bar.inc(1);
            Ok::<_, anyhow::Error>(Dependency {
                path,
                named,
                blob,
                size,
            })
        })
        .buffered(UPLOADS_IN_FLIGHT)
        .try_collect()
        .await?;
    drop(baked);
    let mut spec = job_spec(args, &resolved, blend, blend_size);
    spec.blend_path = Some(report.blend.clone());
    spec.deps = deps;
    spec.missing = missing;
    spec.validate()
        .with_context(|| format!("cannot render {}", args.file.display()))?;
    Ok(spec)
}

/// The files `report` lists as missing: an error naming each (and the datablock that uses
/// it), unless `--allow-missing`, which warns and returns their paths for the job to list.
fn refuse_missing(
    args: &Submission,
    report: &Inspection,
    bar: &ProgressBar,
) -> Result<Vec<String>> {
    let missing: Vec<&ExternalFile> = report.missing().collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|f| format!("  {}", f.describe()))
        .collect();
    let them = if missing.len() == 1 { "it" } else { "them" };
    if !args.allow_missing {
        bail!(
            "{} uses {} missing on this machine:\n{}\nput {them} back, or render without {them} \
             (--allow-missing: Blender draws a missing image magenta)",
            args.file.display(),
            plural(missing.len(), "file"),
            list.join("\n"),
        );
    }
    bar.suspend(|| {
        eprintln!(
            "warning: rendering without {} missing on this machine (--allow-missing):\n{}",
            plural(missing.len(), "file"),
            list.join("\n")
        );
    });
    Ok(missing.iter().map(|f| f.path.clone()).collect())
}

/// A baked copy of the user's `.blend` and the caches its bake wrote, in a private temporary
/// directory removed when this is dropped (after the upload).
struct Baked {
    dir: PathBuf,
    /// The baked copy.
    blend: PathBuf,
    /// What bakes only to disk (fluid domains) went here.
    cache: PathBuf,
}

impl Baked {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "rendermesh-bake-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot create {}", cache.display()))?;
        Ok(Self {
            blend: dir.join("baked.blend"),
            cache,
            dir,
        })
    }

    /// Every file the bake wrote to disk, by absolute path.
    fn cache_files(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut dirs = vec![self.cache.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path.display().to_string());
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

impl Drop for Baked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scene with unbaked simulations renders wrong on a mesh (each node renders its frames in
/// a fresh Blender, out of order, so the steps before them never run): bakes them here, with
/// this machine's Blender, into a copy (the user's file is not changed), showing each bake on
/// `bar`, and says so. `--no-bake` refuses instead, naming each simulation.
async fn bake_if_needed(
    args: &Submission,
    report: &Inspection,
    bar: &ProgressBar,
) -> Result<Option<Baked>> {
    if report.unbaked.is_empty() {
        return Ok(None);
    }
    let file = args.file.display();
    let list: Vec<String> = report
        .unbaked
        .iter()
        .map(|s| format!("{} \"{}\"", s.kind, s.name))
        .collect();
    let what = format!(
        "{} ({})",
        plural(report.unbaked.len(), "unbaked simulation"),
        list.join(", ")
    );
    if args.no_bake {
        bail!(
            "{file} has {what}; each node renders its frames in a Blender of its own, so an \
             unbaked simulation comes out wrong. Bake it in Blender (Physics > Bake All \
             Dynamics), or leave out --no-bake and rendermesh bakes it on this machine"
        );
    }
    let baked = Baked::new()?;
    bar.set_message(format!("baking {what}"));
    let started = Instant::now();
    let count = Blender::new(&args.node.blender, None)
        .bake(&args.file, &baked.blend, &baked.cache, &mut |line| {
            bar.set_message(line.trim_start_matches("rendermesh: ").to_owned());
        })
        .await
        .with_context(|| format!("cannot bake the simulations of {file}"))?;
    bar.suspend(|| {
        eprintln!(
            "note: baked {what} of {file} on this machine in {:.1} s ({count} baked): the mesh \
             renders the baked copy; {file} itself is unchanged",
            started.elapsed().as_secs_f64()
        );
    });
    Ok(Some(baked))
}

/// What a job renders, settled: the user's choices, else the file's own.
#[derive(Clone, Debug, PartialEq)]
struct Resolved {
    frames: FrameRange,
    format: OutputFormat,
    keep_file_format: bool,
    engine: Engine,
    tiles: Option<Tiling>,
    /// What the user should know about the choices made (printed as notes).
    notes: Vec<String>,
}

/// Settles what a job renders, as `blender -b FILE -a` would where the user said nothing: the
/// file's frame range and step, its output format with its options (PNG, with a note, for a
/// format rendermesh cannot write), its engine (an engine rendermesh cannot run is an error);
/// tiles only for an engine whose tiles stitch exactly (with a note otherwise).
fn resolve(args: &Submission, report: &Inspection) -> Result<Resolved> {
    let file = args.file.display();
    let mut notes = Vec::new();
    let frames = match args.frames {
        Some(frames) => frames,
        None => {
            let number = |n: i64, what: &str| {
                u32::try_from(n).with_context(|| {
                    format!(
                        "{file}'s scene \"{}\" has {what} {n}, which rendermesh cannot render; \
                         choose frames with --frames",
                        report.scene
                    )
                })
            };
            let start = number(report.frame_start, "its first frame at")?;
            let end = number(report.frame_end, "its last frame at")?;
            let step = number(report.frame_step, "a frame step of")?;
            FrameRange::with_step(start, end, step)
                .with_context(|| format!("{file}'s own frame range does not render"))?
        }
    };
    let (format, keep_file_format) = match args.format {
        Some(format) => (format, false),
        None => match report.output.file_format.as_str() {
            "PNG" => (OutputFormat::Png, true),
            "JPEG" => (OutputFormat::Jpg, true),
            "BMP" => (OutputFormat::Bmp, true),
            "OPEN_EXR" => (OutputFormat::Exr, true),
            other => {
                let movie = ["FFMPEG", "AVI_JPEG", "AVI_RAW"].contains(&other);
                notes.push(format!(
                    "{file} writes {}{other}, which rendermesh does not write: frames are \
                     png (choose with --format)",
                    if movie { "a movie, " } else { "" }
                ));
                (OutputFormat::Png, false)
            }
        },
    };
    let engine = match args.engine {
        Some(engine) => {
            if Engine::from_blender_name(&report.engine) != Some(engine) {
                notes.push(format!(
                    "rendering with {engine}; {file} renders with {}",
                    report.engine
                ));
            }
            engine
        }
        None => Engine::from_blender_name(&report.engine).with_context(|| {
            format!(
                "{file} renders with {}, which rendermesh does not run; choose an engine with \
                 --engine cycles|eevee|workbench",
                report.engine
            )
        })?,
    };
    let mut tiles = TilesArg::tiling(args.tiles, frames);
    if tiles.is_some() && !engine.tiles_exactly() {
        notes.push(format!(
            "{engine} looks past a tile's edge, so its tiles would not match: rendering whole \
             frames"
        ));
        tiles = None;
    }
    Ok(Resolved {
        frames,
        format,
        keep_file_format,
        engine,
        tiles,
        notes,
    })
}

/// The job `render` submits; `blender_version` is left for the node to fill in, the files for
/// [`upload_job`].
fn job_spec(args: &Submission, resolved: &Resolved, blend: BlobHash, blend_size: u64) -> JobSpec {
    JobSpec {
        name: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scene.blend".into()),
        blend,
        blend_size,
        frames: resolved.frames,
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        format: resolved.format,
        chunk: args.chunk,
        tiles: resolved.tiles,
        blender_version: None,
        blend_path: None,
        deps: Vec::new(),
        missing: Vec::new(),
        engine: resolved.engine,
        keep_file_format: resolved.keep_file_format,
    }
}

/// Uploads, submits (recording the id in `submitted` for ctrl-c), then follows the job to its
/// end, saving frames as they are rendered.
async fn render_on(
    client: &Client,
    args: &Submission,
    report: Inspection,
    bar: &ProgressBar,
    submitted: &OnceLock<JobId>,
) -> Result<()> {
    let started = Instant::now();
    let spec = upload_job(client, args, report, bar).await?;
    bar.set_message("submitting (waiting for a coordinator)");
    let id = client
        .submit(&spec)
        .await
        .context("cannot submit the job")?;
    let _ = submitted.set(id);
    bar.suspend(|| eprintln!("submitted job {id}"));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut watch = Watch::new(client, &args.file, &args.out, bar);
    let job = watch.follow(id).await?;
    bar.finish_and_clear();
    let workers: BTreeSet<&NodeId> = job
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .filter_map(|t| t.worker.as_ref())
        .collect();
    println!(
        "{} frames in {} ({:.1} s, rendered by {})",
        watch.saved.len(),
        args.out.display(),
        started.elapsed().as_secs_f64(),
        plural(workers.len(), "node")
    );
    Ok(())
}

/// `render`'s (and `download`'s) view of its job while it runs.
struct Watch<'a> {
    client: &'a Client,
    /// The `.blend` the frames are named after.
    file: &'a Path,
    /// Where frames are saved.
    out: &'a Path,
    bar: &'a ProgressBar,
    /// Frames saved in `--out`.
    saved: BTreeSet<u32>,
    /// Peer id to name, for the progress message.
    names: HashMap<String, String>,
    /// When `names` was last refreshed.
    names_at: Option<Instant>,
    /// Since when, and why, frames fail to download.
    failing: Option<(Instant, String)>,
}

impl<'a> Watch<'a> {
    fn new(client: &'a Client, file: &'a Path, out: &'a Path, bar: &'a ProgressBar) -> Self {
        Self {
            client,
            file,
            out,
            bar,
            saved: BTreeSet::new(),
            names: HashMap::new(),
            names_at: None,
            failing: None,
        }
    }

    /// Polls the job until it ends; returns it once done with every frame saved.
    async fn follow(&mut self, id: JobId) -> Result<Job> {
        let mut answered = Instant::now();
        loop {
            match self.client.job(id).await {
                Ok(Some(job)) => {
                    answered = Instant::now();
                    self.refresh_names().await;
                    self.save_frames(&job).await;
                    self.show_progress(&job);
                    match job.state {
                        JobState::Done => {
                            if job.outputs().iter().all(|o| self.saved.contains(&o.frame)) {
                                return Ok(job);
                            }
                            if let Some((since, why)) = &self.failing
                                && since.elapsed() > TOLERANCE
                            {
                                bail!(
                                    "job {} is done, but frames {} could not be downloaded for {} s: {why}",
                                    id.short(),
                                    self.missing(&job),
                                    TOLERANCE.as_secs()
                                );
                            }
                            self.bar.set_message("downloading the last frames");
                        }
                        JobState::Failed | JobState::Cancelled => {
                            bail!(
                                "job {} {} after {} of {} frames: {}",
                                id.short(),
                                if job.state == JobState::Failed {
                                    "failed"
                                } else {
                                    "was cancelled"
                                },
                                job.frames_done(),
                                job.spec.frames.len(),
                                job.message.as_deref().unwrap_or("no reason given")
                            );
                        }
                        JobState::Queued | JobState::Running => {
                            self.bar.set_message(working_on(&job, &self.names));
                        }
                    }
                }
                // The node holds no copy yet: right after a submit, or while the coordinator
                // changes. The job lives on; keep looking.
                Ok(None) => {
                    answered = Instant::now();
                    self.bar
                        .set_message("waiting for the job record to reach this node");
                }
                Err(e) if answered.elapsed() < TOLERANCE => {
                    tracing::debug!("polling job {}: {e}", id.short());
                    self.bar
                        .set_message(format!("the node does not answer: {e}"));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "lost the node at {} for {} s while following job {id}",
                        self.client.addr(),
                        TOLERANCE.as_secs()
                    )));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Frames done; for a tiled job, tiles rendered until every frame is stitched.
    fn show_progress(&self, job: &Job) {
        let tiles = job.tasks.len() as u64;
        let (_, _, tiles_done) = job.counts();
        if job.grid.is_some() && (tiles_done as u64) < tiles {
            self.bar.set_prefix("tiles");
            self.bar.set_length(tiles);
            self.bar.set_position(tiles_done as u64);
        } else {
            self.bar.set_prefix("frames");
            self.bar.set_length(u64::from(job.spec.frames.len()));
            self.bar.set_position(u64::from(job.frames_done()));
        }
    }

    async fn refresh_names(&mut self) {
        if self.names_at.is_some_and(|t| t.elapsed() < NAMES_EVERY) {
            return;
        }
        self.names_at = Some(Instant::now());
        if let Ok(view) = self.client.peers().await {
            for p in view.peers {
                self.names.insert(p.id, printable(&p.name));
            }
        }
    }

    /// Downloads every rendered frame not saved yet. Failures are remembered, not returned:
    /// the frame is tried again at the next poll.
    async fn save_frames(&mut self, job: &Job) {
        let mut failed = None;
        for (out, hints) in finished_frames(job) {
            if self.saved.contains(&out.frame) {
                continue;
            }
            let name = output_name(self.file, out.frame, job.spec.format);
            let dest = self.out.join(&name);
            if holds(&dest, out.blob) {
                self.saved.insert(out.frame);
                continue;
            }
            match self.client.download(out.blob, &hints, &dest).await {
                Ok(()) => {
                    self.saved.insert(out.frame);
                }
                Err(e) => {
                    let why = format!("{:#}", anyhow::Error::new(e));
                    tracing::debug!(frame = out.frame, "cannot download yet: {why}");
                    failed = Some(format!("{name}: {why}"));
                }
            }
        }
        self.failing = match (failed, self.failing.take()) {
            (None, _) => None,
            (Some(why), Some((since, _))) => Some((since, why)),
            (Some(why), None) => Some((Instant::now(), why)),
        };
    }

    /// The rendered frames not saved yet, as text.
    fn missing(&self, job: &Job) -> String {
        let missing: Vec<String> = job
            .outputs()
            .iter()
            .filter(|o| !self.saved.contains(&o.frame))
            .map(|o| o.frame.to_string())
            .collect();
        missing.join(", ")
    }
}

/// Whether `path` already holds exactly the blob `hash` (a frame saved by an earlier run).
fn holds(path: &Path, hash: BlobHash) -> bool {
    std::fs::read(path).is_ok_and(|bytes| BlobHash::of(&bytes) == hash)
}

/// Every finished frame with the nodes likely to hold it: a task's frames are on its worker
/// and (copied there) the coordinator; a stitched frame is on the coordinator and the origin.
fn finished_frames(job: &Job) -> Vec<(&Output, Vec<NodeId>)> {
    if job.grid.is_some() {
        return job
            .stitched
            .iter()
            .map(|o| (o, vec![job.origin.clone()]))
            .collect();
    }
    let mut frames = Vec::new();
    for task in job.tasks.iter().filter(|t| t.state == TaskState::Done) {
        let mut hints: Vec<NodeId> = task.worker.iter().cloned().collect();
        if !hints.contains(&job.origin) {
            hints.push(job.origin.clone());
        }
        for out in &task.outputs {
            frames.push((out, hints.clone()));
        }
    }
    frames
}

/// A whole job id as given, or the one job a prefix matches on the node.
pub(crate) async fn resolve_job(client: &Client, text: &str) -> Result<JobId> {
    if let Ok(id) = text.trim().parse::<JobId>() {
        return Ok(id);
    }
    match_job(&client.jobs().await?, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::args::{Cli, Command};

    #[test]
    fn blend_magic_accepts_plain_and_compressed_files() {
        let p = Path::new("shot.blend");
        assert!(check_blend_magic(p, b"BLENDER-v304RENDH").is_ok());
        assert!(check_blend_magic(p, &[0x1f, 0x8b, 8, 0]).is_ok());
        assert!(check_blend_magic(p, &[0x28, 0xb5, 0x2f, 0xfd, 0]).is_ok());
    }

    #[test]
    fn blend_magic_names_the_file_and_shows_what_it_starts_with() {
        let p = Path::new("notes.blend");
        let err = check_blend_magic(p, b"hello world\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("notes.blend is not a Blender file"),
            "{err}"
        );
        assert!(err.contains("it starts with `hello wo`"), "{err}");
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0];
        let err = check_blend_magic(p, &png).unwrap_err().to_string();
        assert!(err.contains("89 50 4e 47 0d 0a 1a 0a"), "{err}");
        let err = check_blend_magic(p, b"hi\n").unwrap_err().to_string();
        assert!(err.contains("it starts with `hi\\n`"), "{err}");
        let err = check_blend_magic(p, b"").unwrap_err().to_string();
        assert!(err.contains("it is empty"), "{err}");
        // A truncated magic is not a magic.
        assert!(check_blend_magic(p, b"BLEND").is_err());
    }

    #[test]
    fn a_text_file_on_disk_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.blend");
        std::fs::write(&path, "not a scene").expect("write");
        let err = check_blend_file(&path).unwrap_err().to_string();
        assert!(err.contains("x.blend is not a Blender file"), "{err}");
        let err = format!(
            "{:#}",
            check_blend_file(&dir.path().join("gone.blend")).unwrap_err()
        );
        assert!(
            err.contains("cannot read") && err.contains("gone.blend"),
            "{err}"
        );
    }

    #[test]
    fn outputs_are_named_after_the_file_and_frame() {
        let p = Path::new("/x/shot.blend");
        assert_eq!(output_name(p, 7, OutputFormat::Png), "shot_0007.png");
        assert_eq!(output_name(p, 12345, OutputFormat::Exr), "shot_12345.exr");
        assert_eq!(
            output_name(Path::new("a.b.blend"), 0, OutputFormat::Jpg),
            "a.b_0000.jpg"
        );
    }

    /// What Blender would say about a file with no external files.
    fn report(engine: &str, (start, end, step): (i64, i64, i64), format: &str) -> Inspection {
        Inspection {
            blend: "/p/shot.blend".into(),
            scene: "Scene".into(),
            engine: engine.into(),
            frame_start: start,
            frame_end: end,
            frame_step: step,
            output: rendermesh_scene::inspect::OutputSettings {
                file_format: format.into(),
                color_depth: "16".into(),
                color_mode: "RGBA".into(),
                exr_codec: "ZIP".into(),
                extension: ".png".into(),
            },
            files: Vec::new(),
            unbaked: Vec::new(),
        }
    }

    fn render_args(argv: &[&str]) -> Submission {
        let mut all = vec!["rendermesh", "render", "shot.blend", "--out", "o"];
        all.extend(argv);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Render(args) => args.into(),
            _ => panic!("not the render command"),
        }
    }

    #[test]
    fn flags_override_the_files_settings() {
        let args = render_args(&["--frames", "1-24", "--format", "exr"]);
        let resolved = resolve(&args, &report("CYCLES", (1, 250, 1), "PNG")).expect("resolves");
        assert_eq!(resolved.frames, FrameRange::new(1, 24).expect("range"));
        assert_eq!(resolved.format, OutputFormat::Exr);
        assert!(!resolved.keep_file_format, "--format overrides the file's");
        let spec = job_spec(&args, &resolved, BlobHash::of(b"x"), 1);
        assert_eq!(spec.name, "shot.blend");
        assert!(spec.blender_version.is_none());
        assert_eq!(spec.tiles, None, "many frames render whole by default");
    }

    #[test]
    fn without_flags_a_job_renders_what_the_file_says_as_blender_does() {
        let plain = render_args(&[]);
        let r = resolve(&plain, &report("CYCLES", (1, 9, 2), "OPEN_EXR")).expect("resolves");
        assert_eq!(r.frames.iter().collect::<Vec<_>>(), [1, 3, 5, 7, 9]);
        assert_eq!((r.format, r.keep_file_format), (OutputFormat::Exr, true));
        assert_eq!(r.engine, Engine::Cycles);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        // A range the step does not end on stops at the last frame reached, as Blender does.
        let r = resolve(&plain, &report("CYCLES", (2, 11, 4), "PNG")).expect("resolves");
        assert_eq!(r.frames.iter().collect::<Vec<_>>(), [2, 6, 10]);

        // The flags win.
        let flags = render_args(&["--frames", "3-4", "--format", "jpg", "--engine", "cycles"]);
        let r = resolve(&flags, &report("BLENDER_EEVEE", (1, 9, 2), "PNG")).expect("resolves");
        assert_eq!(r.frames, FrameRange::new(3, 4).expect("range"));
        assert_eq!((r.format, r.keep_file_format), (OutputFormat::Jpg, false));
        assert_eq!(r.engine, Engine::Cycles);
        assert_eq!(
            r.notes,
            ["rendering with cycles; shot.blend renders with BLENDER_EEVEE"]
        );

        // EEVEE renders whole frames, and says so.
        let r = resolve(&plain, &report("BLENDER_EEVEE", (5, 5, 1), "PNG")).expect("resolves");
        assert_eq!((r.engine, r.tiles), (Engine::Eevee, None));
        assert!(
            r.notes.iter().any(|n| n.contains("whole frames")),
            "{:?}",
            r.notes
        );

        // A format rendermesh cannot write falls back to PNG, and says so.
        let r = resolve(&plain, &report("CYCLES", (1, 2, 1), "FFMPEG")).expect("resolves");
        assert_eq!((r.format, r.keep_file_format), (OutputFormat::Png, false));
        assert!(r.notes[0].contains("a movie, FFMPEG"), "{:?}", r.notes);

        // What cannot be rendered is an error naming it.
        let e = resolve(&plain, &report("LUXCORE", (1, 2, 1), "PNG")).unwrap_err();
        assert!(format!("{e:#}").contains("LUXCORE"), "{e:#}");
        let e = resolve(&plain, &report("CYCLES", (-5, 2, 1), "PNG")).unwrap_err();
        assert!(format!("{e:#}").contains("-5"), "{e:#}");
    }

    #[test]
    fn one_frame_is_tiled_automatically_unless_told_otherwise() {
        let tiles = |argv: &[&str]| {
            resolve(&render_args(argv), &report("CYCLES", (1, 250, 1), "PNG"))
                .expect("resolves")
                .tiles
        };
        assert_eq!(tiles(&["--frames", "7"]), Some(Tiling::Auto));
        assert_eq!(tiles(&["--frames", "7", "--tiles", "none"]), None);
        assert_eq!(
            tiles(&["--frames", "1-9", "--tiles", "auto"]),
            Some(Tiling::Auto)
        );
        assert_eq!(
            tiles(&["--frames", "7", "--tiles", "4x2"]),
            Some(Tiling::Grid(rendermesh_protocol::TileGrid {
                cols: 4,
                rows: 2
            }))
        );
    }
}
