//! The `rendermesh` command line: the clap types, one `async fn` per subcommand, and small pure
//! helpers (the `.blend` magic check, output naming, tables) that the tests below cover.
//!
//! Every subcommand but `node`, `example-scene` and `bench` talks to a running node through its
//! local API ([`Client`]); `render` starts an embedded node when none answers.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rendermesh_protocol::{
    BlobHash, Dependency, Engine, FrameRange, Job, JobId, JobSpec, JobState, NodeId, Output,
    OutputFormat, TaskState, Tiling, limits,
};
use rendermesh_scene::Inspection;
use rendermesh_scene::inspect::ExternalFile;

use rendermesh_node::api::types::PeersView;
use rendermesh_node::client::{Client, ClientError};
use rendermesh_node::config::{Config, DEFAULT_API};
use rendermesh_node::render::Blender;
use rendermesh_node::{MeshSecret, Multiaddr, Node, Role, now_ms};

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
const INTERRUPTED: u8 = 130;

/// rendermesh: a peer-to-peer Blender render mesh.
#[derive(Debug, Parser)]
#[command(name = "rendermesh", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node on this machine until ctrl-c.
    Node(NodeArgs),
    /// Render frames of a .blend on the mesh, saving them as they arrive (starts an embedded
    /// node when none runs here).
    Render(RenderArgs),
    /// List the live nodes and who coordinates.
    Peers(PeersArgs),
    /// List the jobs.
    Jobs(ListArgs),
    /// Show one job and every task.
    Job(JobArgs),
    /// Cancel a job.
    Cancel(CancelArgs),
    /// Save a job's frames (from any node of the mesh), following it to its end unless
    /// `--no-wait`; frames already saved are kept.
    Download(DownloadArgs),
    /// Render a chart data file (3D histogram or cake) with Cycles, on the mesh; `chart check
    /// FILE` validates one.
    Chart(crate::chart::ChartArgs),
    /// Write the example scene (a small animation) to a .blend.
    ExampleScene(ExampleSceneArgs),
    /// Render the same frames with `blender -b` and through a one-node mesh; print the ratio.
    Bench(BenchArgs),
    /// Make or inspect a mesh secret file (`--secret-file` of `node`, `render` and `chart`).
    #[command(subcommand)]
    Secret(SecretCommand),
}

/// `rendermesh secret`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a new random mesh secret to FILE (owner-only; never overwrites) and print its
    /// fingerprint. Copy the file to every machine of the mesh.
    New {
        /// The file to create.
        file: PathBuf,
    },
    /// Print the fingerprint of the secret in FILE: machines whose fingerprints match are in
    /// the same mesh.
    Fingerprint {
        /// The secret file.
        file: PathBuf,
    },
}

/// The node to talk to.
#[derive(Debug, Args)]
pub struct ApiAddr {
    /// The node's API address.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_API)]
    pub api: SocketAddr,
}

/// `rendermesh node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Where the identity key and the blob store live.
    #[arg(long, value_name = "DIR", default_value = "rendermesh-data")]
    pub data_dir: PathBuf,
    /// A multiaddr to listen on, repeatable [default: TCP and QUIC port 4700 on every interface,
    /// so the address others join through survives restarts].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Where to serve the local API.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// A node to join through, with `/p2p/<peer id>`, repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover LAN peers by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// A name for `rendermesh peers` [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Blender render threads [default: every core].
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// The Blender executable.
    #[arg(long, value_name = "PATH", default_value = "blender")]
    pub blender: PathBuf,
    /// A file holding the mesh secret (a passphrase of 8+ characters, or a key written by
    /// `rendermesh secret new`): only nodes with the same secret can connect, and the mesh runs
    /// over TCP only [default: an open mesh].
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

/// Reads `--secret-file`, if given.
fn load_secret(file: Option<&Path>) -> Result<Option<MeshSecret>> {
    file.map(MeshSecret::load).transpose().map_err(Into::into)
}

impl NodeArgs {
    /// The node's settings; unset options keep [`Config::default`]'s. Fails when the secret
    /// file cannot be used.
    pub fn config(self) -> Result<Config> {
        let default = Config::default();
        Ok(Config {
            data_dir: self.data_dir,
            listen: if self.listen.is_empty() {
                rendermesh_node::config::node_listen_defaults()
            } else {
                self.listen
            },
            api: Some(self.api),
            bootstrap: self.bootstrap,
            mdns: !self.no_mdns,
            name: self.name.unwrap_or(default.name),
            threads: self.threads,
            role: Role::Worker,
            blender: self.blender,
            secret: load_secret(self.secret_file.as_deref())?,
        })
    }
}

/// `rendermesh render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The .blend file.
    pub file: PathBuf,
    /// Frames: `A-B`, `A-BxSTEP` (every STEPth frame) or a single frame `N` [default: the
    /// file's frame range and frame step, as `blender -b FILE -a` renders].
    #[arg(long, value_name = "A-B")]
    pub frames: Option<FrameRange>,
    /// Samples per pixel [default: the file's].
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Resolution percentage, 1 to 100 [default: the file's].
    #[arg(long, value_name = "P")]
    pub resolution_percent: Option<u32>,
    /// Output format: png, jpg, bmp or exr [default: the file's, with its own options (colour
    /// depth, codec, quality); png when the file writes another format].
    #[arg(long)]
    pub format: Option<OutputFormat>,
    /// Render engine: cycles, eevee or workbench [default: the file's]. EEVEE and Workbench
    /// render whole frames only (their screen-space effects make tiles differ).
    #[arg(long)]
    pub engine: Option<Engine>,
    /// Frames per task [default: about four tasks per node, at most 16 frames each].
    #[arg(long, value_name = "N")]
    pub chunk: Option<u32>,
    /// Cut each frame into tiles rendered on different nodes and stitched: `CxR` (e.g. `4x4`),
    /// `auto` (a grid sized to the live nodes) or `none` [default: `auto` for a one-frame job,
    /// else `none`].
    #[arg(long, value_name = "CxR|auto|none")]
    pub tiles: Option<TilesArg>,
    /// Where the frames go, as `<file stem>_<frame>.<ext>` (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Submit and exit: print the job id and leave the job to the running node (fetch the
    /// frames later with `rendermesh download ID`). Needs a running node, not an embedded one.
    #[arg(long)]
    pub detach: bool,
    /// Refuse a file with unbaked simulations (naming them) rather than bake them on this
    /// machine before submitting. Baking leaves the file itself unchanged.
    #[arg(long)]
    pub no_bake: bool,
    /// Render even if files the .blend uses (textures, libraries, ...) are missing on this
    /// machine; the job lists them. Without it, such a file is refused before anything is
    /// uploaded, naming every missing file.
    #[arg(long)]
    pub allow_missing: bool,
    /// The node to use, or the embedded one.
    #[command(flatten)]
    pub node: NodeOrEmbedded,
}

/// The node a job goes to: the one at `--api`, or, when nothing answers there, an embedded node
/// started for the job.
#[derive(Clone, Debug, Args)]
pub struct NodeOrEmbedded {
    /// The node to submit to; an embedded node starts when nothing answers there.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// The embedded node's data directory [default: `rendermesh-embedded` in the user's cache
    /// directory, else the temp directory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The Blender executable (of the embedded node, and for building chart scenes).
    #[arg(long, value_name = "PATH", default_value = "blender")]
    pub blender: PathBuf,
    /// The embedded node does not look for LAN peers by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// The embedded node joins the mesh that has this secret (see `rendermesh node`).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

/// The `--tiles` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilesArg {
    /// `none`: whole frames.
    Off,
    /// `auto` or `CxR`.
    On(Tiling),
}

impl TilesArg {
    /// What a job of `frames` asks for; not given (`None`) means `auto` for a one-frame job and
    /// whole frames otherwise.
    pub fn tiling(given: Option<Self>, frames: FrameRange) -> Option<Tiling> {
        match given {
            None => (frames.len() == 1).then_some(Tiling::Auto),
            Some(Self::Off) => None,
            Some(Self::On(tiling)) => Some(tiling),
        }
    }
}

impl std::str::FromStr for TilesArg {
    type Err = rendermesh_protocol::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse().map(Self::On)
    }
}

/// `rendermesh peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
    /// Print the view as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also list every node's multiaddrs (to join the mesh with `--bootstrap`).
    #[arg(long)]
    pub addrs: bool,
}

/// `rendermesh jobs`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
    /// Print the jobs as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rendermesh job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rendermesh cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
}

/// `rendermesh download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// Where the frames go, as `<file stem>_<frame>.<ext>` (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Save the frames rendered so far and exit, instead of following the job to its end.
    #[arg(long)]
    pub no_wait: bool,
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
}

/// `rendermesh example-scene`.
#[derive(Debug, Args)]
pub struct ExampleSceneArgs {
    /// Where to write the .blend.
    pub out: PathBuf,
    /// The Blender executable.
    #[arg(long, value_name = "PATH", default_value = "blender")]
    pub blender: PathBuf,
}

/// `rendermesh bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scene [default: the example scene, built fresh].
    #[arg(long)]
    pub blend: Option<PathBuf>,
    /// Frames.
    #[arg(long, default_value = "1-24")]
    pub frames: FrameRange,
    /// Samples.
    #[arg(long, default_value_t = 16)]
    pub samples: u32,
    /// Resolution percentage.
    #[arg(long, default_value_t = 50)]
    pub resolution_percent: u32,
    /// Frames per mesh task.
    #[arg(long)]
    pub chunk: Option<u32>,
    /// Tiles for the mesh job: `CxR` or `auto` (the direct render stays whole).
    #[arg(long, value_name = "CxR|auto")]
    pub tiles: Option<Tiling>,
    /// The mesh starts a Blender per task, as before Blender sessions (one per job per node).
    #[arg(long)]
    pub per_task_blender: bool,
    /// Nodes in the mesh (embedded, on loopback).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Give every Blender one thread on a core of its own (`taskset`): N pinned nodes stand for
    /// N one-core machines, against one of them rendering alone.
    #[arg(long)]
    pub pin: bool,
    /// The Blender executable.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
}

/// Runs a parsed command line. Errors are reported by the caller; the exit code is 0, or 130
/// after ctrl-c.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Node(args) => node(args).await,
        Command::Render(args) => render(args).await,
        Command::Peers(args) => peers(args).await,
        Command::Jobs(args) => jobs(args).await,
        Command::Job(args) => job(args).await,
        Command::Cancel(args) => cancel(args).await,
        Command::Download(args) => download(args).await,
        Command::Chart(args) => crate::chart::run(args).await,
        Command::ExampleScene(args) => example_scene(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Secret(cmd) => secret(cmd),
    }
}

fn secret(cmd: SecretCommand) -> Result<ExitCode> {
    let (file, secret) = match cmd {
        SecretCommand::New { file } => {
            let secret = MeshSecret::generate();
            secret.create_file(&file)?;
            (file, secret)
        }
        SecretCommand::Fingerprint { file } => {
            let secret = MeshSecret::load(&file)?;
            (file, secret)
        }
    };
    println!("{}: fingerprint {}", file.display(), secret.fingerprint());
    Ok(ExitCode::SUCCESS)
}

async fn node(args: NodeArgs) -> Result<ExitCode> {
    let node = Node::start(args.config()?)
        .await
        .context("cannot start the node")?;
    let info = node.wait_listening().await?;
    println!("peer id: {}", info.id);
    for addr in &info.addrs {
        println!("listening on {addr}");
    }
    if let Some(api) = node.api_addr() {
        println!("api: http://{api}{}", rendermesh_node::api::PREFIX);
    }
    match &info.secret {
        Some(fingerprint) => println!("private mesh: secret fingerprint {fingerprint}"),
        None => println!(
            "open mesh: no --secret-file, so any rendermesh node that reaches this one can join"
        ),
    }
    match &info.blender {
        Some(v) => println!("renders with {v}"),
        None => println!("Blender does not run here: this node coordinates and relays only"),
    }
    rendermesh_node::shutdown_signal().await;
    eprintln!("shutting down (ctrl-c again to quit at once)");
    tokio::select! {
        () = node.shutdown() => Ok(ExitCode::SUCCESS),
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(INTERRUPTED)),
    }
}

/// Runs `rendermesh render` (also used by `rendermesh chart` for the built `.blend`).
pub(crate) async fn render(args: RenderArgs) -> Result<ExitCode> {
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
    let (client, embedded) = connect_or_embed(&args.node).await?;
    let bar = frames_bar(args.frames.map_or(1, |f| f.len()));
    let submitted = OnceLock::new();
    let outcome = tokio::select! {
        r = render_on(&client, &args, &bar, &submitted) => r.map(|()| ExitCode::SUCCESS),
        () = rendermesh_node::shutdown_signal() => {
            bar.abandon();
            interrupted(&client, submitted.get().copied()).await;
            Ok(ExitCode::from(INTERRUPTED))
        }
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
async fn detached(args: &RenderArgs) -> Result<ExitCode> {
    let client = Client::new(args.node.api);
    if let Err(e) = client.node().await {
        bail!(
            "--detach needs a running node at {}: {e} (start one with `rendermesh node`; without --detach, render starts its own)",
            args.node.api
        );
    }
    let bar = ProgressBar::hidden();
    let spec = upload_job(&client, args, &bar).await?;
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
async fn download(args: DownloadArgs) -> Result<ExitCode> {
    let client = Client::new(args.api.api);
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
async fn interrupted(client: &Client, job: Option<JobId>) {
    let Some(id) = job else {
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
async fn connect_or_embed(args: &NodeOrEmbedded) -> Result<(Client, Option<Embedded>)> {
    let client = Client::new(args.api);
    match client.node().await {
        Ok(_) => Ok((client, None)),
        Err(ClientError::Unreachable { addr }) => {
            let dir = EmbeddedDir::choose(args.data_dir.clone())?;
            let config = Config {
                data_dir: dir.path.clone(),
                api: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                mdns: !args.no_mdns,
                blender: args.blender.clone(),
                secret: load_secret(args.secret_file.as_deref())?,
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
pub fn check_blend_magic(path: &Path, head: &[u8]) -> Result<()> {
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
pub fn output_name(blend: &Path, frame: u32, format: OutputFormat) -> String {
    let stem = blend
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "frame".into());
    format!("{stem}_{frame:04}.{}", format.extension())
}

/// Uploads at once, while a job's files go to its node.
const UPLOADS_IN_FLIGHT: usize = 4;

/// Asks this machine's Blender which files `args.file` uses; refuses the job, naming every
/// missing file, unless `--allow-missing`; uploads the `.blend` and every file it uses to the
/// node (each its own blob, `bar` counting them); returns the job to submit.
async fn upload_job(client: &Client, args: &RenderArgs, bar: &ProgressBar) -> Result<JobSpec> {
    bar.set_message(format!(
        "asking Blender which files {} uses",
        args.file.display()
    ));
    let report = Blender::new(&args.node.blender, None)
        .inspect(&args.file)
        .await
        .with_context(|| format!("cannot read {} with Blender", args.file.display()))?;
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
    args: &RenderArgs,
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
    args: &RenderArgs,
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

/// `12.5 MiB`.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
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
fn resolve(args: &RenderArgs, report: &Inspection) -> Result<Resolved> {
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
fn job_spec(args: &RenderArgs, resolved: &Resolved, blend: BlobHash, blend_size: u64) -> JobSpec {
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
    args: &RenderArgs,
    bar: &ProgressBar,
    submitted: &OnceLock<JobId>,
) -> Result<()> {
    let started = Instant::now();
    let spec = upload_job(client, args, bar).await?;
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
                self.names.insert(p.id, p.name);
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

/// The progress message: who renders right now.
fn working_on(job: &Job, names: &HashMap<String, String>) -> String {
    let nodes: BTreeSet<String> = job
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .filter_map(|t| t.worker.as_ref())
        .map(|w| display_name(w, names))
        .collect();
    if nodes.is_empty() {
        "queued: waiting for a node".into()
    } else {
        format!("on {}", nodes.into_iter().collect::<Vec<_>>().join(", "))
    }
}

/// A node's name if known, else its short id.
fn display_name(id: &NodeId, names: &HashMap<String, String>) -> String {
    names
        .get(&id.0)
        .cloned()
        .unwrap_or_else(|| id.short().to_owned())
}

/// `1 node`, `2 nodes`.
fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Left-aligned columns separated by two spaces; `right` lists the right-aligned ones.
fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            if right.contains(&i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The last characters of a peer id, as [`NodeId::short`] shows them in logs.
fn short_peer(id: &str) -> &str {
    let start = id.char_indices().rev().nth(5).map(|(i, _)| i).unwrap_or(0);
    &id[start..]
}

/// `rendermesh peers`' table: a coordinator line, then one row per node (`*` marks the
/// coordinator), then with `addrs` every node's multiaddrs.
pub fn peers_table(view: &PeersView, addrs: bool) -> String {
    let mut out = match &view.coordinator {
        Some(c) => {
            let name = view
                .peers
                .iter()
                .find(|p| &p.id == c)
                .map_or("?", |p| p.name.as_str());
            format!("coordinator: {name} ({c}) in term {}\n", view.term)
        }
        None => format!("no coordinator yet (term {})\n", view.term),
    };
    let rows: Vec<Vec<String>> = view
        .peers
        .iter()
        .map(|p| {
            let task = match (&p.current, p.role) {
                (Some(t), _) => match t.tile {
                    Some(tile) => format!("job {} frame {} {tile}", t.job.short(), t.frames),
                    None => format!(
                        "job {} frames {} ({}/{})",
                        t.job.short(),
                        t.frames,
                        t.frames_done,
                        t.frames.len()
                    ),
                },
                (None, Role::Bootstrap) => "bootstrap".into(),
                (None, Role::Worker) => "idle".into(),
            };
            vec![
                format!("{} {}", if p.coordinator { "*" } else { " " }, p.name),
                short_peer(&p.id).to_owned(),
                p.cores.to_string(),
                format!("{:.0}%", p.load * 100.0),
                p.blender
                    .as_deref()
                    .map_or("-", |b| b.strip_prefix("Blender ").unwrap_or(b))
                    .to_owned(),
                if p.engines.is_empty() {
                    "-".to_owned()
                } else {
                    let names: Vec<&str> = p.engines.iter().map(|e| e.name()).collect();
                    names.join(",")
                },
                task,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "  NAME", "PEER ID", "CORES", "LOAD", "BLENDER", "ENGINES", "TASK",
        ],
        &rows,
        &[2, 3],
    ));
    if addrs {
        for p in &view.peers {
            out.push_str(&format!("{} ({}):\n", p.name, p.id));
            for a in &p.addrs {
                out.push_str(&format!("  {a}\n"));
            }
        }
    }
    out.push_str(&match &view.secret {
        Some(fingerprint) => format!("private mesh: secret fingerprint {fingerprint}\n"),
        None => "open mesh: no secret\n".to_owned(),
    });
    out
}

/// A lowercase name for a job state.
fn job_state(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// A lowercase name for a task state.
fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Done => "done",
        TaskState::Failed => "failed",
    }
}

/// How long ago `then_ms` was, at `now_ms` (both milliseconds since the Unix epoch).
fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..10 => "just now".into(),
        10..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// `rendermesh jobs`' table.
pub fn jobs_table(jobs: &[Job], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.short(),
                j.spec.name.clone(),
                job_state(j.state).to_owned(),
                format!("{}/{}", j.frames_done(), j.spec.frames.len()),
                ago(now_ms, j.created_ms),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STATE", "FRAMES", "CREATED"], &rows, &[3])
}

/// `rendermesh job`'s details: the job, then one row per task naming the node that ran it
/// (`names` maps peer ids to names; unknown ones show in full), then any failures.
pub fn job_details(job: &Job, names: &HashMap<String, String>, now_ms: u64) -> String {
    let spec = &job.spec;
    let node = |id: &NodeId| names.get(&id.0).cloned().unwrap_or_else(|| id.0.clone());
    let mut out = format!("job {}  {}\n", job.id, spec.name);
    out.push_str(&format!(
        "state:    {} ({}/{} frames)\n",
        job_state(job.state),
        job.frames_done(),
        spec.frames.len()
    ));
    let setting = |v: Option<u32>, suffix: &str| {
        v.map_or("the file's".to_owned(), |v| format!("{v}{suffix}"))
    };
    out.push_str(&format!(
        "frames:   {}, {}{}, samples {}, resolution {}, {}\n",
        spec.frames,
        spec.format,
        if spec.keep_file_format {
            " (the file's own settings)"
        } else {
            ""
        },
        setting(spec.samples, ""),
        setting(spec.resolution_percent, "%"),
        match job.grid {
            Some(grid) => format!("{grid} tiles per frame"),
            None => format!(
                "chunk {}",
                spec.chunk.map_or("auto".to_owned(), |c| c.to_string())
            ),
        }
    ));
    out.push_str(&format!(
        "blend:    {} ({} bytes), submitted to {}\n",
        spec.blend,
        spec.blend_size,
        node(&job.origin)
    ));
    out.push_str(&format!(
        "engine:   {}{}\n",
        spec.engine,
        if spec.engine.tiles_exactly() {
            ""
        } else {
            " (whole frames only: its tiles would not match)"
        }
    ));
    if !spec.deps.is_empty() {
        let bytes = rendermesh_protocol::files::total_size(&spec.deps).unwrap_or(u64::MAX);
        out.push_str(&format!(
            "files:    {} ({})\n",
            plural(spec.deps.len(), "file"),
            mebibytes(bytes)
        ));
    }
    if !spec.missing.is_empty() {
        out.push_str(&format!(
            "missing:  rendered without {}: {}\n",
            plural(spec.missing.len(), "file"),
            spec.missing.join(", ")
        ));
    }
    out.push_str(&format!(
        "blender:  {}\n",
        spec.blender_version.as_deref().unwrap_or("any")
    ));
    out.push_str(&format!("created:  {}\n", ago(now_ms, job.created_ms)));
    if let Some(m) = &job.message {
        out.push_str(&format!("message:  {m}\n"));
    }
    let rows: Vec<Vec<String>> = job
        .tasks
        .iter()
        .map(|t| {
            let frames = match t.tile {
                Some(tile) => format!("{} tile {},{}", t.frames, tile.col, tile.row),
                None => t.frames.to_string(),
            };
            vec![
                t.index.to_string(),
                frames,
                task_state(t.state).to_owned(),
                t.attempt.to_string(),
                t.worker.as_ref().map_or("-".to_owned(), node),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["TASK", "FRAMES", "STATE", "ATTEMPT", "NODE"],
        &rows,
        &[0, 3],
    ));
    for t in &job.tasks {
        for f in &t.failures {
            out.push_str(&format!(
                "task {} (frames {}) failed on {}: {}\n",
                t.index,
                t.frames,
                node(&f.node),
                f.message
            ));
        }
    }
    out
}

/// The one job whose id starts with `prefix` (hex, any case).
pub fn match_job(jobs: &[Job], prefix: &str) -> Result<JobId> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("bad job id `{prefix}`: expected hex digits (a whole id or its start)");
    }
    let found: Vec<JobId> = jobs
        .iter()
        .map(|j| j.id)
        .filter(|id| id.to_string().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no job id starts with `{prefix}`"),
        many => bail!("`{prefix}` matches {} jobs; give more digits", many.len()),
    }
}

/// A whole job id as given, or the one job a prefix matches on the node.
async fn resolve_job(client: &Client, text: &str) -> Result<JobId> {
    if let Ok(id) = text.trim().parse::<JobId>() {
        return Ok(id);
    }
    match_job(&client.jobs().await?, text)
}

async fn peers(args: PeersArgs) -> Result<ExitCode> {
    let view = Client::new(args.api.api).peers().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", peers_table(&view, args.addrs));
    }
    Ok(ExitCode::SUCCESS)
}

async fn jobs(args: ListArgs) -> Result<ExitCode> {
    let jobs = Client::new(args.api.api).jobs().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        print!("{}", jobs_table(&jobs, now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

async fn job(args: JobArgs) -> Result<ExitCode> {
    let client = Client::new(args.api.api);
    let id = resolve_job(&client, &args.id).await?;
    let job = client
        .job(id)
        .await?
        .with_context(|| format!("the node at {} holds no job {id}", client.addr()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(ExitCode::SUCCESS);
    }
    let names: HashMap<String, String> = client
        .peers()
        .await
        .map(|v| v.peers.into_iter().map(|p| (p.id, p.name)).collect())
        .unwrap_or_default();
    print!("{}", job_details(&job, &names, now_ms()));
    Ok(ExitCode::SUCCESS)
}

async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let client = Client::new(args.api.api);
    let id = resolve_job(&client, &args.id).await?;
    if let Some(job) = client.job(id).await?
        && job.state.is_terminal()
    {
        println!(
            "job {id} is already {}: nothing to cancel",
            job_state(job.state)
        );
        return Ok(ExitCode::SUCCESS);
    }
    client.cancel(id).await?;
    println!("cancelled job {id}");
    Ok(ExitCode::SUCCESS)
}

async fn example_scene(args: ExampleSceneArgs) -> Result<ExitCode> {
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    rendermesh_node::render::Blender::new(args.blender, None)
        .make_example_scene(&args.out)
        .await
        .with_context(|| format!("cannot build the example scene at {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("rendermesh-bench-{}", std::process::id()));
    let result = rendermesh_node::bench::run(rendermesh_node::bench::BenchConfig {
        blend: args.blend,
        frames: args.frames,
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        chunk: args.chunk,
        tiles: args.tiles,
        per_task: args.per_task_blender,
        nodes: args.nodes,
        pin: args.pin,
        work_dir: dir.clone(),
        blender: args.blender,
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let r = result?;
    let threads = if args.pin {
        ", one thread on a core of its own"
    } else {
        ""
    };
    println!("{} frames, {}", r.frames, r.blender);
    println!(
        "direct blender -b : {:>7.2} s (one process{threads})",
        r.direct.as_secs_f64()
    );
    println!(
        "{:<18}: {:>7.2} s ({} rendered; {} per node{threads})",
        format!("mesh of {}", plural(args.nodes.max(1), "node")),
        r.mesh.as_secs_f64(),
        plural(r.workers, "node"),
        if args.per_task_blender {
            "a Blender per task"
        } else {
            "one Blender session for the job"
        }
    );
    println!("ratio mesh/direct : {:>7.2}", r.ratio());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_node::api::types::PeerView;
    use rendermesh_protocol::{Output, TaskRef, Term};

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

    fn spec() -> JobSpec {
        JobSpec {
            name: "a.blend".into(),
            blend: BlobHash::of(b"a"),
            blend_size: 1,
            frames: FrameRange::new(1, 4).expect("range"),
            samples: Some(16),
            resolution_percent: None,
            format: OutputFormat::Png,
            chunk: None,
            tiles: None,
            blender_version: None,
            blend_path: None,
            deps: Vec::new(),
            missing: Vec::new(),
            engine: Default::default(),
            keep_file_format: false,
        }
    }

    fn job_with(id: [u8; 16]) -> Job {
        let plan = rendermesh_protocol::Plan {
            grid: None,
            tasks: vec![
                (FrameRange::new(1, 2).expect("range"), None),
                (FrameRange::new(3, 4).expect("range"), None),
            ],
        };
        Job::new(JobId(id), spec(), NodeId("origin".into()), plan, Term(1), 0)
    }

    #[test]
    fn job_prefixes_must_be_unique() {
        let mut a = [0u8; 16];
        a[0] = 0xab;
        let mut b = a;
        b[1] = 0x01;
        let jobs = vec![job_with(a), job_with(b)];
        assert_eq!(match_job(&jobs, "AB01").expect("unique"), JobId(b));
        assert_eq!(
            match_job(&jobs, &JobId(a).to_string()).expect("whole"),
            JobId(a)
        );
        let err = match_job(&jobs, "ab").unwrap_err().to_string();
        assert!(err.contains("matches 2 jobs"), "{err}");
        let err = match_job(&jobs, "ff").unwrap_err().to_string();
        assert!(err.contains("no job id starts with `ff`"), "{err}");
        let err = match_job(&jobs, "zz").unwrap_err().to_string();
        assert!(err.contains("bad job id"), "{err}");
        assert!(match_job(&jobs, "").is_err());
    }

    fn peer(id: &str, name: &str, coordinator: bool) -> PeerView {
        PeerView {
            id: id.into(),
            name: name.into(),
            role: Role::Worker,
            addrs: vec![format!("/ip4/10.0.0.1/tcp/4001/p2p/{id}")],
            cores: 8,
            memory: 1 << 30,
            load: 0.5,
            blender: Some("Blender 3.4.1".into()),
            engines: vec![Engine::Cycles, Engine::Eevee],
            current: None,
            coordinator,
            is_self: false,
            last_seen_ms: 10,
        }
    }

    #[test]
    fn the_peers_table_marks_the_coordinator_and_shows_tasks() {
        let mut busy = peer("12D3KooWaaaaaaaa111111", "lab-1", false);
        busy.current = Some(TaskRef {
            job: JobId([0xab; 16]),
            task: 0,
            attempt: 1,
            frames: FrameRange::new(1, 6).expect("range"),
            tile: None,
            frames_done: 2,
        });
        let mut boot = peer("12D3KooWcccccccc333333", "boot", false);
        boot.role = Role::Bootstrap;
        boot.blender = None;
        boot.engines.clear();
        boot.load = 0.0;
        let view = PeersView {
            me: "12D3KooWaaaaaaaa111111".into(),
            term: 3,
            coordinator: Some("12D3KooWbbbbbbbb222222".into()),
            peers: vec![busy, peer("12D3KooWbbbbbbbb222222", "lab-2", true), boot],
            secret: None,
        };
        let table = peers_table(&view, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "coordinator: lab-2 (12D3KooWbbbbbbbb222222) in term 3"
        );
        assert_eq!(
            lines[1],
            "  NAME   PEER ID  CORES  LOAD  BLENDER  ENGINES       TASK"
        );
        assert_eq!(
            lines[2],
            "  lab-1  111111       8   50%  3.4.1    cycles,eevee  job abababab frames 1-6 (2/6)"
        );
        assert_eq!(
            lines[3],
            "* lab-2  222222       8   50%  3.4.1    cycles,eevee  idle"
        );
        assert_eq!(
            lines[4],
            "  boot   333333       8    0%  -        -             bootstrap"
        );
        assert_eq!(lines[5], "open mesh: no secret");
        assert_eq!(lines.len(), 6);
        let with_addrs = peers_table(&view, true);
        assert!(
            with_addrs.contains("  /ip4/10.0.0.1/tcp/4001/p2p/12D3KooWbbbbbbbb222222\n"),
            "{with_addrs}"
        );
    }

    #[test]
    fn the_peers_table_says_when_nobody_coordinates() {
        let view = PeersView {
            me: "x".into(),
            term: 0,
            coordinator: None,
            peers: vec![],
            secret: Some("0123abcd".into()),
        };
        let table = peers_table(&view, false);
        assert!(
            table.starts_with("no coordinator yet (term 0)\n"),
            "{table}"
        );
        assert!(
            table.ends_with("private mesh: secret fingerprint 0123abcd\n"),
            "{table}"
        );
    }

    #[test]
    fn the_jobs_table_shows_progress_and_age() {
        let mut j = job_with([0x12; 16]);
        j.created_ms = 1_000;
        let a = j.assign(0, NodeId("w".into()), Term(1)).expect("assign");
        let out = (1..=2)
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&[frame as u8]),
                size: 1,
            })
            .collect();
        j.complete(0, a, &NodeId("w".into()), out, Term(1))
            .expect("complete");
        let table = jobs_table(&[j], 1_000 + 5 * 60_000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ID        NAME     STATE    FRAMES  CREATED");
        assert_eq!(lines[1], "12121212  a.blend  running     2/4  5 min ago");
    }

    #[test]
    fn job_details_name_the_nodes_and_the_failures() {
        let mut j = job_with([1; 16]);
        let w1 = NodeId("12D3KooWworker1".into());
        let w2 = NodeId("12D3KooWworker2".into());
        let a = j.assign(0, w1.clone(), Term(1)).expect("assign");
        j.fail(0, a, &w1, "no camera".into(), 3, Term(1))
            .expect("fail");
        j.assign(1, w2.clone(), Term(1)).expect("assign");
        let names = HashMap::from([(w1.0.clone(), "lab-1".to_owned())]);
        let text = job_details(&j, &names, 0);
        assert!(text.contains("state:    running (0/4 frames)"), "{text}");
        assert!(
            text.contains("samples 16, resolution the file's, chunk auto"),
            "{text}"
        );
        assert!(
            text.contains("   1  3-4     running        1  12D3KooWworker2"),
            "{text}"
        );
        assert!(text.contains("   0  1-2     queued         1  -"), "{text}");
        assert!(
            text.contains("task 0 (frames 1-2) failed on lab-1: no camera"),
            "{text}"
        );
    }

    #[test]
    fn job_details_show_the_tiles() {
        let mut spec = spec();
        spec.frames = FrameRange::new(7, 7).expect("range");
        spec.tiles = Some(Tiling::Grid(rendermesh_protocol::TileGrid {
            cols: 2,
            rows: 2,
        }));
        let plan = rendermesh_protocol::plan(&spec, 2);
        let j = Job::new(JobId([2; 16]), spec, NodeId("o".into()), plan, Term(1), 0);
        let text = job_details(&j, &HashMap::new(), 0);
        assert!(text.contains("2x2 tiles per frame"), "{text}");
        assert!(text.contains("7 tile 1,1"), "{text}");
        assert!(text.contains("state:    queued (0/1 frames)"), "{text}");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(5_000, 1_000), "just now");
        assert_eq!(ago(1_000, 5_000), "just now");
        assert_eq!(ago(61_000, 0), "61 s ago");
        assert_eq!(ago(3 * 3_600_000, 0), "3 h ago");
        assert_eq!(ago(3 * 86_400_000, 0), "3 days ago");
    }

    #[test]
    fn peer_ids_shorten_like_node_ids() {
        assert_eq!(short_peer("12D3KooWabcdef123456"), "123456");
        assert_eq!(short_peer("abc"), "abc");
        let id = NodeId("12D3KooWabcdef123456".into());
        assert_eq!(short_peer(&id.0), id.short());
    }

    #[test]
    fn working_on_names_the_busy_nodes() {
        let mut j = job_with([2; 16]);
        let names = HashMap::from([("w1".to_owned(), "lab-1".to_owned())]);
        assert_eq!(working_on(&j, &names), "queued: waiting for a node");
        j.assign(0, NodeId("w1".into()), Term(1)).expect("assign");
        j.assign(1, NodeId("12D3KooWunknown9".into()), Term(1))
            .expect("assign");
        assert_eq!(working_on(&j, &names), "on known9, lab-1");
    }

    #[test]
    fn node_options_fill_the_config() {
        let cli = Cli::try_parse_from([
            "rendermesh",
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/4001",
            "--no-mdns",
            "--name",
            "lab-9",
            "--threads",
            "4",
        ])
        .expect("parses");
        let Command::Node(args) = cli.command else {
            panic!("not the node command");
        };
        let config = args.config().expect("config");
        assert_eq!(config.listen.len(), 1);
        assert!(!config.mdns);
        // Without --listen, a node listens on its well-known port, so restarts keep its address.
        let Command::Node(args) = Cli::try_parse_from(["rendermesh", "node"])
            .expect("parses")
            .command
        else {
            panic!("not the node command");
        };
        let listen: Vec<String> = args
            .config()
            .expect("config")
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            listen,
            ["/ip4/0.0.0.0/tcp/4700", "/ip4/0.0.0.0/udp/4700/quic-v1"]
        );
        assert_eq!(config.name, "lab-9");
        assert_eq!(config.threads, Some(4));
        assert_eq!(config.api, Some(DEFAULT_API.parse().expect("addr")));
    }

    #[test]
    fn render_options_parse_and_bad_values_are_usage_errors() {
        let cli = Cli::try_parse_from([
            "rendermesh",
            "render",
            "a.blend",
            "--frames",
            "1-24",
            "--format",
            "exr",
            "--out",
            "o",
        ])
        .expect("parses");
        let Command::Render(args) = cli.command else {
            panic!("not the render command");
        };
        assert_eq!(args.frames, Some(FrameRange::new(1, 24).expect("range")));
        assert_eq!(args.format, Some(OutputFormat::Exr));
        let resolved = resolve(&args, &report("CYCLES", (1, 250, 1), "PNG")).expect("resolves");
        assert_eq!(resolved.frames, FrameRange::new(1, 24).expect("range"));
        assert_eq!(resolved.format, OutputFormat::Exr);
        assert!(!resolved.keep_file_format, "--format overrides the file's");
        let spec = job_spec(&args, &resolved, BlobHash::of(b"x"), 1);
        assert_eq!(spec.name, "a.blend");
        assert!(spec.blender_version.is_none());
        assert_eq!(spec.tiles, None, "many frames render whole by default");
        for bad in [
            ["--frames", "5-1"],
            ["--format", "tiff"],
            ["--tiles", "4"],
            ["--tiles", "0x2"],
            ["--frames", "1-9x0"],
            ["--frames", "9x2"],
            ["--engine", "luxcore"],
        ] {
            let mut argv = vec!["rendermesh", "render", "a.blend", "--out", "o"];
            if bad[0] != "--frames" {
                argv.extend(["--frames", "1"]);
            }
            argv.extend(bad);
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
        }
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

    fn render_args(argv: &[&str]) -> RenderArgs {
        let mut all = vec!["rendermesh", "render", "shot.blend", "--out", "o"];
        all.extend(argv);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Render(args) => args,
            _ => panic!("not the render command"),
        }
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
            let mut all = vec!["rendermesh", "render", "a.blend", "--out", "o"];
            all.extend(argv);
            let Command::Render(args) = Cli::try_parse_from(all).expect("parses").command else {
                panic!("not the render command");
            };
            resolve(&args, &report("CYCLES", (1, 250, 1), "PNG"))
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

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_owned(), "1".to_owned()],
            vec!["long".to_owned(), "100".to_owned()],
        ];
        assert_eq!(
            table(&["X", "N"], &rows, &[1]),
            "X       N\na       1\nlong  100\n"
        );
    }
}
