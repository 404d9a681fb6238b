//! The command line's grammar: the clap types of every subcommand and their flags, and how
//! `render`'s flags become a [`Submission`](crate::submit::Submission).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use rendermesh_node::config::{Config, DEFAULT_API};
use rendermesh_node::{MeshSecret, Multiaddr, Role};
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
pub(crate) fn load_secret(file: Option<&Path>) -> Result<Option<MeshSecret>> {
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
            secret_file: a.secret_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
