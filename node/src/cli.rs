//! The `rendermesh` command line: clap types, one function per subcommand, and small pure
//! helpers (output naming, `.blend` magic, tables).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rendermesh_protocol::{FrameRange, Job, JobId, JobSpec, JobState, OutputFormat, TaskState};

use crate::client::{Client, ClientError};
use crate::config::{Config, DEFAULT_API};
use crate::view::PeersView;
use crate::{Multiaddr, Node, Role};

/// rendermesh: a peer-to-peer Blender render mesh.
#[derive(Debug, Parser)]
#[command(name = "rendermesh", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node on this machine.
    Node(NodeArgs),
    /// Render frames of a .blend on the mesh (an embedded node when none runs here).
    Render(RenderArgs),
    /// List the live nodes.
    Peers(ApiArgs),
    /// List the jobs.
    Jobs(ApiArgs),
    /// Show one job with every task.
    Job {
        /// The job id (or a unique prefix of it).
        id: String,
        /// API options.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job.
    Cancel {
        /// The job id (or a unique prefix of it).
        id: String,
        /// API options.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the example scene (a small 24-frame animation) to a .blend.
    ExampleScene {
        /// Where to write it.
        out: PathBuf,
        /// The Blender executable.
        #[arg(long, default_value = "blender")]
        blender: PathBuf,
    },
    /// Render the same frames with `blender -b` and through a one-node mesh; print the ratio.
    Bench(BenchArgs),
}

/// Options of commands that talk to a node.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The node's API address.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `rendermesh node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Where the identity key and the blob store live.
    #[arg(long, default_value = "rendermesh-data")]
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on (repeatable; default: TCP and QUIC on every interface).
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// Where to serve the local API.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// A node to join through, with `/p2p/<peer id>` (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover LAN peers by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// A name for `rendermesh peers` (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Blender render threads (default: every core).
    #[arg(long)]
    pub threads: Option<u32>,
    /// The Blender executable.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
}

/// `rendermesh render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The .blend file.
    pub file: PathBuf,
    /// Frames: `A-B` or a single frame `N`.
    #[arg(long)]
    pub frames: FrameRange,
    /// Cycles samples per pixel (default: the file's).
    #[arg(long)]
    pub samples: Option<u32>,
    /// Resolution percentage 1..=100 (default: the file's).
    #[arg(long)]
    pub resolution_percent: Option<u32>,
    /// Output format: png, jpg, bmp or exr.
    #[arg(long, default_value = "png")]
    pub format: OutputFormat,
    /// Frames per task (default: about four tasks per node, at most 16 frames each).
    #[arg(long)]
    pub chunk: Option<u32>,
    /// Where the frames go.
    #[arg(long)]
    pub out: PathBuf,
    /// The node to submit to; an embedded node starts when nothing answers there.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// The embedded node's data directory (default: under the system's temp directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The Blender executable (for the embedded node).
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
    /// The embedded node does not look for LAN peers by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
}

/// `rendermesh bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scene (default: the example scene, built fresh).
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
    /// The Blender executable.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Node(args) => node(args).await,
        Command::Render(args) => render(args).await,
        Command::Peers(api) => peers(api).await,
        Command::Jobs(api) => jobs(api).await,
        Command::Job { id, api } => job(&id, api).await,
        Command::Cancel { id, api } => cancel(&id, api).await,
        Command::ExampleScene { out, blender } => {
            crate::render::Blender::new(blender, None)
                .make_example_scene(&out)
                .await
                .with_context(|| format!("cannot build the example scene at {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Bench(args) => bench(args).await,
    }
}

async fn node(args: NodeArgs) -> Result<()> {
    let mut config = Config {
        data_dir: args.data_dir,
        api: Some(args.api),
        bootstrap: args.bootstrap,
        mdns: !args.no_mdns,
        threads: args.threads,
        blender: args.blender,
        role: Role::Worker,
        ..Config::default()
    };
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if let Some(name) = args.name {
        config.name = name;
    }
    let node = Node::start(config).await.context("cannot start the node")?;
    let info = node.wait_listening().await?;
    println!("peer id: {}", info.id);
    for addr in &info.addrs {
        println!("listening: {addr}");
    }
    if let Some(api) = node.api_addr() {
        println!("api: http://{api}/api/v1/");
    }
    match &info.blender {
        Some(v) => println!("renders with {v}"),
        None => println!("Blender does not run here: this node coordinates and relays only"),
    }
    crate::shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Checks that `bytes` (a file's start) look like a `.blend` (plain, gzip or zstd).
pub fn check_blend_magic(path: &Path, bytes: &[u8]) -> Result<()> {
    let ok = bytes.starts_with(b"BLENDER")
        || bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if !ok {
        let shown: String = bytes
            .iter()
            .take(8)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '.'
                }
            })
            .collect();
        bail!(
            "{} is not a Blender file (it starts with `{shown}`, a .blend starts with `BLENDER`)",
            path.display()
        );
    }
    Ok(())
}

/// The output file name of `frame`: `<stem>_<frame:04>.<ext>`.
pub fn output_name(blend: &Path, frame: u32, format: OutputFormat) -> String {
    let stem = blend
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "frame".into());
    format!("{stem}_{frame:04}.{}", format.extension())
}

async fn render(args: RenderArgs) -> Result<()> {
    let head = {
        use std::io::Read;
        let mut f = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let mut buf = [0u8; 16];
        let n = f.read(&mut buf).unwrap_or(0);
        buf[..n].to_vec()
    };
    check_blend_magic(&args.file, &head)?;
    let mut client = Client::new(args.api);
    let mut embedded = None;
    match client.node().await {
        Ok(_) => {}
        Err(ClientError::Unreachable { addr }) => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("rendermesh-embedded"));
            let config = Config {
                data_dir,
                api: Some("127.0.0.1:0".parse()?),
                mdns: !args.no_mdns,
                blender: args.blender.clone(),
                ..Config::default()
            };
            let node = Node::start(config)
                .await
                .context("cannot start an embedded node")?;
            let api = node.api_addr().context("the embedded node serves no API")?;
            eprintln!(
                "no node at {addr}: started an embedded node {} (it joins any mesh it finds on the LAN)",
                node.id().short()
            );
            client = Client::new(api);
            embedded = Some(node);
        }
        Err(e) => return Err(e.into()),
    }
    let result = render_on(&client, &args).await;
    if let Some(node) = embedded {
        node.shutdown().await;
    }
    result
}

async fn render_on(client: &Client, args: &RenderArgs) -> Result<()> {
    let started = Instant::now();
    let (hash, size) = client.upload_file(&args.file).await?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scene.blend".into());
    let spec = JobSpec {
        name,
        blend: hash,
        blend_size: size,
        frames: args.frames,
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        format: args.format,
        chunk: args.chunk,
        blender_version: None,
    };
    spec.validate()?;
    let id = client.submit(&spec).await?;
    eprintln!("job {id}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let total = args.frames.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut written: HashSet<u32> = HashSet::new();
    let mut last_ok = Instant::now();
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let job = match client.job(id).await {
            Ok(job) => {
                last_ok = Instant::now();
                job
            }
            Err(e) if last_ok.elapsed() < Duration::from_secs(30) => {
                tracing::debug!("polling the job: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(job) = job {
            download_done(client, &job, args, &mut written).await?;
            bar.set_position(written.len() as u64);
            bar.set_message(working_on(&job));
            match job.state {
                JobState::Done if written.len() as u64 == total => {
                    bar.finish_and_clear();
                    let nodes: BTreeSet<_> =
                        job.tasks.iter().filter_map(|t| t.worker.clone()).collect();
                    println!(
                        "{total} frames in {} ({:.1} s, rendered by {} node{})",
                        args.out.display(),
                        started.elapsed().as_secs_f64(),
                        nodes.len(),
                        if nodes.len() == 1 { "" } else { "s" }
                    );
                    return Ok(());
                }
                JobState::Failed | JobState::Cancelled => {
                    bar.abandon();
                    bail!(
                        "job {} {}: {}",
                        id.short(),
                        if job.state == JobState::Failed {
                            "failed"
                        } else {
                            "was cancelled"
                        },
                        job.message.unwrap_or_default()
                    );
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = &mut stop => {
                bar.abandon();
                let _ = client.cancel(id).await;
                eprintln!("cancelled job {id}");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

fn working_on(job: &Job) -> String {
    let nodes: BTreeSet<&str> = job
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .filter_map(|t| t.worker.as_ref().map(|w| w.short()))
        .collect();
    if nodes.is_empty() {
        String::new()
    } else {
        format!("on {}", nodes.into_iter().collect::<Vec<_>>().join(", "))
    }
}

async fn download_done(
    client: &Client,
    job: &Job,
    args: &RenderArgs,
    written: &mut HashSet<u32>,
) -> Result<()> {
    for task in job.tasks.iter().filter(|t| t.state == TaskState::Done) {
        let mut hints = Vec::new();
        if let Some(w) = &task.worker {
            hints.push(w.clone());
        }
        hints.push(job.origin.clone());
        for out in &task.outputs {
            if written.contains(&out.frame) {
                continue;
            }
            let dest = args
                .out
                .join(output_name(&args.file, out.frame, job.spec.format));
            client.download(out.blob, &hints, &dest).await?;
            written.insert(out.frame);
        }
    }
    Ok(())
}

/// Formats the peers view as a table.
pub fn peers_table(view: &PeersView) -> String {
    let mut out = String::new();
    match view
        .peers
        .iter()
        .find(|p| Some(&p.id) == view.coordinator.as_ref())
    {
        Some(c) => out.push_str(&format!(
            "coordinator: {} ({}) in term {}\n",
            c.name, c.id, view.term
        )),
        None => out.push_str(&format!("no coordinator yet (term {})\n", view.term)),
    }
    out.push_str(&format!(
        "  {:<16} {:<12} {:>5} {:>5} {:<14} {}\n",
        "NAME", "PEER ID", "CORES", "LOAD", "BLENDER", "TASK"
    ));
    for p in &view.peers {
        let task = match &p.current {
            Some(t) => format!(
                "job {} frames {} ({}/{})",
                t.job.short(),
                t.frames,
                t.frames_done,
                t.frames.len()
            ),
            None if p.role == Role::Bootstrap => "bootstrap".into(),
            None => "idle".into(),
        };
        let short = &p.id[p.id.len().saturating_sub(12)..];
        out.push_str(&format!(
            "{} {:<16} {:<12} {:>5} {:>4.0}% {:<14} {}\n",
            if p.coordinator { "*" } else { " " },
            p.name,
            short,
            p.cores,
            p.load * 100.0,
            p.blender.as_deref().unwrap_or("-"),
            task
        ));
    }
    out.push_str("addresses:\n");
    for p in &view.peers {
        for a in &p.addrs {
            out.push_str(&format!("  {:<16} {a}\n", p.name));
        }
    }
    out
}

async fn peers(api: ApiArgs) -> Result<()> {
    let view = Client::new(api.api).peers().await?;
    if api.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", peers_table(&view));
    }
    Ok(())
}

async fn jobs(api: ApiArgs) -> Result<()> {
    let jobs = Client::new(api.api).jobs().await?;
    if api.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<24} {:<10} {:>10}",
        "ID", "NAME", "STATE", "FRAMES"
    );
    for j in jobs {
        println!(
            "{:<10} {:<24} {:<10} {:>10}",
            j.id.short(),
            j.spec.name,
            format!("{:?}", j.state),
            format!("{}/{}", j.frames_done(), j.spec.frames.len())
        );
    }
    Ok(())
}

/// The one job whose id starts with `prefix`.
pub fn match_job(jobs: &[Job], prefix: &str) -> Result<JobId> {
    let prefix = prefix.to_ascii_lowercase();
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

async fn job(prefix: &str, api: ApiArgs) -> Result<()> {
    let client = Client::new(api.api);
    let id = match_job(&client.jobs().await?, prefix)?;
    let job = client
        .job(id)
        .await?
        .with_context(|| format!("no job {id}"))?;
    if api.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    let names: HashMap<String, String> = client
        .peers()
        .await
        .map(|v| v.peers.into_iter().map(|p| (p.id, p.name)).collect())
        .unwrap_or_default();
    println!("job {} ({})", job.id, job.spec.name);
    println!(
        "state {:?}, frames {} ({}/{} done), format {}",
        job.state,
        job.spec.frames,
        job.frames_done(),
        job.spec.frames.len(),
        job.spec.format
    );
    if let Some(m) = &job.message {
        println!("message: {m}");
    }
    println!(
        "{:<6} {:<12} {:<8} {:>7} NODE",
        "TASK", "FRAMES", "STATE", "ATTEMPT"
    );
    for t in &job.tasks {
        let node = t
            .worker
            .as_ref()
            .map(|w| names.get(&w.0).cloned().unwrap_or_else(|| w.0.clone()))
            .unwrap_or_default();
        println!(
            "{:<6} {:<12} {:<8} {:>7} {node}",
            t.index,
            t.frames.to_string(),
            format!("{:?}", t.state),
            t.attempt
        );
    }
    Ok(())
}

async fn cancel(prefix: &str, api: ApiArgs) -> Result<()> {
    let client = Client::new(api.api);
    let id = match_job(&client.jobs().await?, prefix)?;
    client.cancel(id).await?;
    println!("cancelled job {id}");
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rendermesh-bench-{}", std::process::id()));
    let result = crate::bench::run(crate::bench::BenchConfig {
        blend: args.blend,
        frames: args.frames,
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        chunk: args.chunk,
        work_dir: dir.clone(),
        blender: args.blender,
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let r = result?;
    println!("{} frames, {}", r.frames, r.blender);
    println!("direct blender -b : {:>7.2} s", r.direct.as_secs_f64());
    println!("one-node mesh     : {:>7.2} s", r.mesh.as_secs_f64());
    println!("ratio mesh/direct : {:>7.2}", r.ratio());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::PeerView;
    use rendermesh_protocol::{BlobHash, NodeId, Term};

    #[test]
    fn blend_magic_accepts_plain_and_compressed_files_and_names_a_text_file() {
        let p = Path::new("shot.blend");
        assert!(check_blend_magic(p, b"BLENDER-v304").is_ok());
        assert!(check_blend_magic(p, &[0x1f, 0x8b, 8, 0]).is_ok());
        assert!(check_blend_magic(p, &[0x28, 0xb5, 0x2f, 0xfd, 0]).is_ok());
        let err = check_blend_magic(p, b"hello world")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shot.blend is not a Blender file"), "{err}");
        assert!(err.contains("hello wo"), "{err}");
    }

    #[test]
    fn outputs_are_named_after_the_file_and_frame() {
        let p = Path::new("/x/shot.blend");
        assert_eq!(output_name(p, 7, OutputFormat::Png), "shot_0007.png");
        assert_eq!(output_name(p, 12345, OutputFormat::Exr), "shot_12345.exr");
    }

    fn job_with(id: [u8; 16]) -> Job {
        let spec = JobSpec {
            name: "a.blend".into(),
            blend: BlobHash::of(b"a"),
            blend_size: 1,
            frames: FrameRange::new(1, 2).expect("range"),
            samples: None,
            resolution_percent: None,
            format: OutputFormat::Png,
            chunk: None,
            blender_version: None,
        };
        Job::new(JobId(id), spec, NodeId("o".into()), vec![], Term(1), 0)
    }

    #[test]
    fn job_prefixes_must_be_unique() {
        let mut a = [0u8; 16];
        a[0] = 0xab;
        let mut b = a;
        b[1] = 0x01;
        let jobs = vec![job_with(a), job_with(b)];
        assert_eq!(match_job(&jobs, "ab01").expect("unique"), JobId(b));
        assert!(
            match_job(&jobs, "ab")
                .unwrap_err()
                .to_string()
                .contains("matches 2")
        );
        assert!(match_job(&jobs, "ff").is_err());
    }

    #[test]
    fn the_peers_table_marks_the_coordinator() {
        let peer = |id: &str, name: &str, coordinator: bool| PeerView {
            id: id.into(),
            name: name.into(),
            role: Role::Worker,
            addrs: vec![format!("/ip4/127.0.0.1/tcp/1/p2p/{id}")],
            cores: 2,
            memory: 1 << 30,
            load: 0.5,
            blender: Some("Blender 3.4.1".into()),
            current: None,
            coordinator,
            is_self: false,
            last_seen_ms: 10,
        };
        let view = PeersView {
            me: "12D3KooWaaaa".into(),
            term: 3,
            coordinator: Some("12D3KooWbbbb".into()),
            peers: vec![
                peer("12D3KooWaaaa", "lab-1", false),
                peer("12D3KooWbbbb", "lab-2", true),
            ],
        };
        let table = peers_table(&view);
        assert!(
            table.starts_with("coordinator: lab-2 (12D3KooWbbbb) in term 3"),
            "{table}"
        );
        assert!(table.lines().any(|l| l.starts_with("* lab-2")), "{table}");
        assert!(table.lines().any(|l| l.starts_with("  lab-1")), "{table}");
        assert!(table.contains("50%"), "{table}");
    }
}
