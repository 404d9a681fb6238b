//! The command line's grammar: the clap types of every subcommand and their flags, and how
//! `render`'s flags become a [`Submission`](crate::submit::Submission).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use rendermesh_node::client::Client;
use rendermesh_node::config::{Config, DEFAULT_API, load_api_token};
use rendermesh_node::core::Policy;
use rendermesh_node::core::coordinator::DAY_MS;
use rendermesh_node::secret::{choose, machine_key_path};
use rendermesh_node::{JoinToken, MeshSecret, Multiaddr, Role};
use rendermesh_protocol::{Engine, FrameRange, OutputFormat, Tiling};

use crate::submit::{NodeChoice, Submission};

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
    /// Pause a job: it gets no new tasks; the ones running finish.
    Pause(CancelArgs),
    /// Resume a paused job.
    Resume(CancelArgs),
    /// Set a job's priority (0 to 100; new jobs get 50): the highest goes first.
    Priority(PriorityArgs),
    /// Render one frame of a job again (the task that rendered it goes back to the queue; a
    /// done job runs again until it is in).
    Rerender(RerenderArgs),
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
    /// A file holding the node's API token (see `rendermesh node --api-token`).
    #[arg(long, value_name = "FILE")]
    pub api_token: Option<PathBuf>,
}

impl ApiAddr {
    /// A client of the node at `--api`, sending the token of `--api-token` if given.
    pub fn client(&self) -> Result<Client> {
        api_client(self.api, self.api_token.as_deref())
    }
}

/// A client of the node at `api`, sending the token read from `token_file` if given.
pub(crate) fn api_client(api: SocketAddr, token_file: Option<&Path>) -> Result<Client> {
    let token = token_file.map(load_api_token).transpose()?;
    Ok(Client::new(api).with_token(token))
}

/// `rendermesh node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Where the identity key and the blob store live.
    #[arg(long, value_name = "DIR", default_value = "rendermesh-data")]
    pub data_dir: PathBuf,
    /// A multiaddr to listen on, repeatable [default: TCP port 4700 on every interface,
    /// so the address others join through survives restarts].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Where to serve the local API. An address other machines can reach (not 127.x or ::1)
    /// needs `--api-token`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// A file holding the API's token (16+ visible characters, e.g. from `openssl rand -hex
    /// 32`): every API request must then carry it (`--api-token FILE` on the CLI; the page opens
    /// at `http://HOST:PORT/?token=<token>`) [default: no token; the API must stay on loopback].
    #[arg(long, value_name = "FILE")]
    pub api_token: Option<PathBuf>,
    /// A node to join through, with `/p2p/<peer id>`, repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover LAN peers by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Run Blender unconfined. By default it runs in a sandbox (bubblewrap: the system
    /// read-only, the task's directory the only writable path, no network), and a node that
    /// cannot sandbox does not render.
    #[arg(long)]
    pub no_sandbox: bool,
    /// Keep no spare Blender. By default a node keeps one started ahead, with no file, while it
    /// waits (about 240 MB), so that the next job's first frame does not wait for Blender to
    /// start.
    #[arg(long, overrides_with = "spare_blender")]
    pub no_spare_blender: bool,
    /// Keep a spare Blender (the default; undoes an earlier `--no-spare-blender`).
    #[arg(long, overrides_with = "no_spare_blender")]
    pub spare_blender: bool,
    /// A name for `rendermesh peers` [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Blender render threads [default: every core].
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// The Blender executable.
    #[arg(long, value_name = "PATH", default_value = "blender")]
    pub blender: PathBuf,
    /// The ffmpeg executable, for the page's preview videos (none when it does not run:
    /// `apt-get install ffmpeg`).
    #[arg(long, value_name = "PATH", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The largest file the API takes (the page's uploads, the CLI's `.blend` and the files it
    /// uses), in MiB; larger ones are refused before a byte is sent.
    #[arg(long, value_name = "MIB", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_upload_mib: u64,
    /// A file holding the mesh secret (a passphrase of 8+ characters, or a key written by
    /// `rendermesh secret new`), instead of this machine's key: only nodes with the same secret
    /// can connect [default: this machine's key, created on first use].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["open", "join"])]
    pub secret_file: Option<PathBuf>,
    /// Join the mesh of the node that printed TOKEN: this machine keeps its key from now on
    /// (for `node`, `render` and `chart` alike), and the node joins through its addresses.
    #[arg(long, value_name = "TOKEN", conflicts_with = "open")]
    pub join: Option<JoinToken>,
    /// Run an open mesh, without a key: any process that reaches this node can join it, read
    /// every job and send it work. For a network where everyone is trusted.
    #[arg(long)]
    pub open: bool,
    /// While this node coordinates: the shortest time a task may run before it is taken back
    /// and its Blender killed. A task's timeout is 5x its job's median frame time, at least
    /// this, and doubles with each failure of the task.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub min_task_timeout: u64,
    /// While this node coordinates: the timeout of a task of a job none of whose frames has
    /// been timed yet (its first tasks, or a job of one task).
    #[arg(long, value_name = "SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub first_task_timeout: u64,
    /// While this node coordinates: how many days a finished job is kept before it is removed
    /// for everyone and its frames collected (`rendermesh download` saves them until then).
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub keep_jobs: u64,
    /// Disk space to keep free, in GiB: below that, this node takes no work (`peers` says so)
    /// and refuses uploads and fetches that would eat into it.
    #[arg(long, value_name = "GIB", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(0..=MAX_FREE_DISK_GIB))]
    pub min_free_disk: u64,
    /// While this node coordinates: how many tasks of each worker, in each job, are checked.
    /// One frame of each is rendered again on another node and compared pixel for pixel; a
    /// node whose pixels differ from two others' is suspect, gets no more of the job, and all
    /// it rendered for it is rendered again.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=MAX_CHECKS_PER_WORKER))]
    pub verify: u64,
    /// Checks nothing: the same as `--verify 0`.
    #[arg(long, conflicts_with = "verify")]
    pub no_verify: bool,
}

/// The most checks `--verify` can ask for per worker and job.
const MAX_CHECKS_PER_WORKER: u64 = 16;

/// The most disk `--min-free-disk` can ask to keep free: 1 EiB.
const MAX_FREE_DISK_GIB: u64 = 1 << 30;

/// The longest task timeout that can be set: a week.
const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// The mesh key a node uses ([`rendermesh_node::secret::choose`], with this machine's key
/// file; under `data_dir` only when the user has no home); says where it came from when that is
/// news.
pub(crate) fn mesh_secret(
    secret_file: Option<&Path>,
    open: bool,
    join: Option<&JoinToken>,
    data_dir: &Path,
) -> Result<Option<MeshSecret>> {
    let (secret, source) = choose(secret_file, open, join, &machine_key_path(data_dir))?;
    if let Some(notice) = source.notice(secret.as_ref()) {
        eprintln!("{notice}");
    }
    Ok(secret)
}

impl NodeArgs {
    /// The node's settings; unset options keep [`Config::default`]'s. Fails when the secret
    /// file or the API token file cannot be used.
    pub fn config(self) -> Result<Config> {
        let default = Config::default();
        let api_token = self.api_token.as_deref().map(load_api_token).transpose()?;
        let secret = mesh_secret(
            self.secret_file.as_deref(),
            self.open,
            self.join.as_ref(),
            &self.data_dir,
        )?;
        Ok(Config {
            data_dir: self.data_dir,
            listen: if self.listen.is_empty() {
                rendermesh_node::config::node_listen_defaults()
            } else {
                self.listen
            },
            api: Some(self.api),
            bootstrap: self
                .bootstrap
                .into_iter()
                .chain(self.join.iter().flat_map(|t| t.addrs.clone()))
                .collect(),
            mdns: !self.no_mdns,
            name: self.name.unwrap_or(default.name),
            threads: self.threads,
            role: Role::Worker,
            blender: self.blender,
            ffmpeg: self.ffmpeg,
            max_upload: self.max_upload_mib << 20,
            secret,
            sandbox: !self.no_sandbox,
            spare_blender: !self.no_spare_blender,
            policy: Policy {
                min_task_timeout: self.min_task_timeout * 1000,
                unmeasured_task_timeout: self.first_task_timeout * 1000,
                keep_jobs_ms: self.keep_jobs * DAY_MS,
                checks: if self.no_verify {
                    0
                } else {
                    self.verify as usize
                },
                ..Policy::default()
            },
            min_free_disk: self.min_free_disk << 30,
            ..default
        }
        .with_api_token(api_token))
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
    /// Frames per task [default: cut as the job goes, each task sized by its node's measured
    /// speed, down to single frames at the end].
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
    /// The embedded node runs Blender unconfined (see `rendermesh node --no-sandbox`).
    #[arg(long)]
    pub no_sandbox: bool,
    /// The embedded node keeps no spare Blender (see `rendermesh node --no-spare-blender`).
    #[arg(long)]
    pub no_spare_blender: bool,
    /// The embedded node joins the mesh that has this secret instead of this machine's key
    /// (see `rendermesh node`).
    #[arg(long, value_name = "FILE", conflicts_with = "open")]
    pub secret_file: Option<PathBuf>,
    /// The embedded node runs an open mesh, without a key (see `rendermesh node --open`).
    #[arg(long)]
    pub open: bool,
    /// A file holding the API token of the node at `--api` (see `rendermesh node --api-token`).
    #[arg(long, value_name = "FILE")]
    pub api_token: Option<PathBuf>,
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
    /// Remove, for everyone, every finished job submitted through this node (its frames are
    /// then collected from every store). Finished jobs are removed anyway once they have been
    /// kept for `rendermesh node --keep-jobs` days.
    #[arg(long, conflicts_with = "json")]
    pub prune: bool,
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

/// `rendermesh cancel`, `pause` and `resume`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
}

/// `rendermesh priority`.
#[derive(Debug, Args)]
pub struct PriorityArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// 0 (lowest) to 100 (highest).
    #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
    pub priority: u8,
    /// The node to ask.
    #[command(flatten)]
    pub api: ApiAddr,
}

/// `rendermesh rerender`.
#[derive(Debug, Args)]
pub struct RerenderArgs {
    /// The job id, or a unique prefix of it.
    pub id: String,
    /// The frame to render again.
    pub frame: u32,
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
    /// The mesh's nodes keep no spare Blender (see `rendermesh node --no-spare-blender`).
    #[arg(long)]
    pub no_spare_blender: bool,
    /// Nodes in the mesh (embedded, on loopback).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Give every Blender one thread on a core of its own (`taskset`): N pinned nodes stand for
    /// N one-core machines, against one of them rendering alone.
    #[arg(long)]
    pub pin: bool,
    /// Tasks of each worker per job whose frame is rendered again on another node and compared,
    /// as `rendermesh node --verify`; 0 turns verification off (one node checks nothing).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=MAX_CHECKS_PER_WORKER))]
    pub verify: u64,
    /// The Blender executable.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
    /// Measure blob transfer instead of rendering: MIB mebibytes moved on loopback by a plain
    /// TCP copy, by a bare stream on the mesh's transport (under a mesh key), and by a blob
    /// fetch between two nodes, in one run.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub transfer: Option<u64>,
    /// With `--transfer`: also have N nodes fetch the same bytes from one origin at once, and
    /// report what the origin uploaded.
    #[arg(long, value_name = "N", requires = "transfer",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub fetchers: Option<u64>,
}

impl From<RenderArgs> for Submission {
    fn from(a: RenderArgs) -> Self {
        Self {
            file: a.file,
            frames: a.frames,
            samples: a.samples,
            resolution_percent: a.resolution_percent,
            format: a.format,
            engine: a.engine,
            chunk: a.chunk,
            tiles: a.tiles,
            out: a.out,
            detach: a.detach,
            no_bake: a.no_bake,
            allow_missing: a.allow_missing,
            node: a.node.into(),
            inspection: None,
        }
    }
}

impl From<NodeOrEmbedded> for NodeChoice {
    fn from(a: NodeOrEmbedded) -> Self {
        Self {
            api: a.api,
            data_dir: a.data_dir,
            blender: a.blender,
            no_mdns: a.no_mdns,
            no_sandbox: a.no_sandbox,
            no_spare_blender: a.no_spare_blender,
            secret_file: a.secret_file,
            open: a.open,
            api_token: a.api_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's policy of `rendermesh node ARGS`.
    fn node_policy(args: &[&str]) -> Result<Policy, clap::Error> {
        let argv = ["rendermesh", "node", "--open"].iter().chain(args);
        let Command::Node(args) = Cli::try_parse_from(argv)?.command else {
            panic!("not the node command");
        };
        Ok(args.config().expect("config").policy)
    }

    #[test]
    fn verification_is_on_by_default_and_set_or_turned_off_by_flag() {
        assert_eq!(node_policy(&[]).expect("parses").checks, 1);
        assert_eq!(node_policy(&["--verify", "3"]).expect("parses").checks, 3);
        assert_eq!(node_policy(&["--no-verify"]).expect("parses").checks, 0);
        assert!(node_policy(&["--verify", "2", "--no-verify"]).is_err());
        assert!(node_policy(&["--verify", "17"]).is_err());
    }

    #[test]
    fn api_token_files_reach_the_node_config_and_the_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("api.token");
        std::fs::write(&file, "0123456789abcdef0123\n").expect("write");
        let path = file.to_str().expect("utf-8 path");
        let Command::Node(args) = Cli::try_parse_from([
            "rendermesh",
            "node",
            "--open",
            "--api",
            "0.0.0.0:7411",
            "--api-token",
            path,
        ])
        .expect("parses")
        .command
        else {
            panic!("not the node command");
        };
        let config = args.config().expect("config");
        assert_eq!(config.api_token.as_deref(), Some("0123456789abcdef0123"));
        // A short token is an error naming its file, not a weak API.
        std::fs::write(&file, "tiny").expect("write");
        let Command::Node(args) =
            Cli::try_parse_from(["rendermesh", "node", "--open", "--api-token", path])
                .expect("parses")
                .command
        else {
            panic!("not the node command");
        };
        let e = format!("{:#}", args.config().expect_err("too short"));
        assert!(e.contains("api.token"), "{e}");
        // The client-side commands take it too.
        for cmd in ["peers", "jobs"] {
            let Ok(cli) = Cli::try_parse_from(["rendermesh", cmd, "--api-token", path]) else {
                panic!("{cmd} takes --api-token");
            };
            let api = match cli.command {
                Command::Peers(a) => a.api,
                Command::Jobs(a) => a.api,
                _ => panic!("not {cmd}"),
            };
            assert_eq!(api.api_token.as_deref(), Some(file.as_path()));
            assert!(api.client().is_err(), "{cmd}: a short token is refused");
        }
        for argv in [
            vec!["rendermesh", "job", "ab", "--api-token", path],
            vec!["rendermesh", "cancel", "ab", "--api-token", path],
            vec![
                "rendermesh",
                "render",
                "a.blend",
                "--out",
                "o",
                "--api-token",
                path,
            ],
        ] {
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn a_node_uses_the_machines_key_a_join_replaces_it_and_open_means_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("home").join("mesh.key");
        let secret = |open, join| choose(None, open, join, &key).expect("a key").0;
        let first = secret(false, None);
        assert!(first.is_some() && key.exists());
        assert_eq!(secret(false, None), first);
        assert_eq!(secret(true, None), None);
        let addr: Multiaddr =
            "/ip4/10.0.0.2/tcp/4700/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                .parse()
                .expect("an address");
        let other = MeshSecret::generate();
        let token = JoinToken::new(other, &[addr]).expect("a token");
        assert_eq!(secret(false, Some(&token)), Some(other));
        assert_eq!(secret(false, None), Some(other));
        // A token on the command line parses, and a mistyped one is refused by clap.
        let text = token.to_string();
        let Command::Node(args) = Cli::try_parse_from(["rendermesh", "node", "--join", &text])
            .expect("parses")
            .command
        else {
            panic!("not the node command");
        };
        assert_eq!(args.join, Some(token));
        // The last character changed (to another: a random token may end in `x` already).
        let other_last = if text.ends_with('x') { 'y' } else { 'x' };
        let typo = format!("{}{other_last}", &text[..text.len() - 1]);
        let e = Cli::try_parse_from(["rendermesh", "node", "--join", &typo])
            .expect_err("a mistyped token")
            .to_string();
        assert!(
            e.contains("mistyped") || e.contains("cannot be part"),
            "{e}"
        );
        assert!(Cli::try_parse_from(["rendermesh", "node", "--join", &text, "--open"]).is_err());
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
            "--open",
        ])
        .expect("parses");
        let Command::Node(args) = cli.command else {
            panic!("not the node command");
        };
        let config = args.config().expect("config");
        assert_eq!(config.listen.len(), 1);
        assert!(!config.mdns);
        // Without --listen, a node listens on its well-known port, so restarts keep its address.
        let Command::Node(args) = Cli::try_parse_from(["rendermesh", "node", "--open"])
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
        assert_eq!(listen, ["/ip4/0.0.0.0/tcp/4700"]);
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
}
