//! `rendermesh bench`: renders the same frames directly with `blender -b` and through a mesh of
//! embedded nodes on loopback (one by default; real Blender), in one run, and prints both times
//! and their ratio. Machines here are noisy: compare ratios measured in one run, not seconds.
//!
//! With `pin`, every Blender (the direct one and each node's) renders with one thread on a core
//! of its own (`taskset -c K`), so N nodes on one N-core machine stand for N one-core machines
//! and the ratio is the mesh's speed-up over one of them.
//!
//! `checks` is every node's [`Policy::checks`](crate::core::Policy::checks): with two nodes or
//! more, that many tasks of each worker have one frame rendered again on another node and
//! compared, inside the measured time; 0 measures the mesh without verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rendermesh_protocol::{FrameRange, JobSpec, JobState, OutputFormat, Tiling};
use rendermesh_scene::RenderSettings;
use tokio_util::sync::CancellationToken;

use crate::render::Blender;
use crate::worker::BlenderRenderer;
use crate::{Config, Error, Node};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The scene; `None` builds the example scene.
    pub blend: Option<PathBuf>,
    /// The frames.
    pub frames: FrameRange,
    /// Samples per pixel.
    pub samples: u32,
    /// Resolution percentage.
    pub resolution_percent: u32,
    /// Frames per mesh task (`None`: the coordinator's default).
    pub chunk: Option<u32>,
    /// Tiles for the mesh job (`None`: whole frames); the direct render is always whole frames,
    /// with the same exact settings tiles use.
    pub tiles: Option<Tiling>,
    /// Start a Blender per mesh task (`blender -b ... -a`, as before sessions) instead of one
    /// session per job.
    pub per_task: bool,
    /// Every node keeps a spare Blender ([`BlenderRenderer::with_spare`]), started with the
    /// node, before the job is submitted.
    pub spare: bool,
    /// Nodes in the mesh (at least 1).
    pub nodes: usize,
    /// One thread and one core per Blender (see the module docs).
    pub pin: bool,
    /// Tasks of each worker per job checked by a second render ([`Policy::checks`] of every
    /// node; 0: no verification). The node's default is 1.
    ///
    /// [`Policy::checks`]: crate::core::Policy::checks
    pub checks: usize,
    /// Scratch directory.
    pub work_dir: PathBuf,
    /// Blender.
    pub blender: PathBuf,
}

/// The measured figures.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Frames rendered each way.
    pub frames: u32,
    /// `blender -b` over all frames in one process.
    pub direct: Duration,
    /// Submit to last frame done, through the mesh.
    pub mesh: Duration,
    /// The nodes that rendered a task.
    pub workers: usize,
    /// Blender's version.
    pub blender: String,
}

impl BenchResult {
    /// mesh time / direct time.
    pub fn ratio(&self) -> f64 {
        self.mesh.as_secs_f64() / self.direct.as_secs_f64().max(1e-9)
    }
}

/// Runs both renders and returns the figures.
pub async fn run(cfg: BenchConfig) -> Result<BenchResult, Error> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    std::fs::create_dir_all(&cfg.work_dir).map_err(io("cannot create", &cfg.work_dir))?;
    let nodes = cfg.nodes.max(1);
    // The Blender of each node, and of the direct render (the first core's).
    let blenders: Vec<Blender> = if cfg.pin {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if nodes > cores {
            return Err(Error::Rejected(format!(
                "cannot pin {nodes} nodes to a core each: this machine has {cores}"
            )));
        }
        (0..nodes)
            .map(|core| {
                pinned(&cfg.blender, core, &cfg.work_dir).map(|exe| Blender::new(exe, Some(1)))
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![Blender::new(cfg.blender.clone(), None); nodes]
    };
    let blender = blenders[0].clone();
    let version = blender.version().await?;
    let blend = match &cfg.blend {
        Some(b) => b.clone(),
        None => {
            let b = cfg.work_dir.join("example.blend");
            blender.make_example_scene(&b).await?;
            b
        }
    };
    let settings = RenderSettings {
        samples: Some(cfg.samples),
        resolution_percent: Some(cfg.resolution_percent),
        exact: cfg.tiles.is_some(),
        ..RenderSettings::default()
    };

    // Direct: one Blender process, every frame.
    let direct_dir = cfg.work_dir.join("direct");
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let started = Instant::now();
    blender
        .render_frames(
            &blend,
            &direct_dir,
            cfg.frames,
            OutputFormat::Png,
            &settings,
            tx,
            CancellationToken::new(),
        )
        .await?;
    let direct = started.elapsed();
    let _ = drain.await;

    // Mesh: embedded nodes on loopback, from submit to the last frame held.
    let mut mesh: Vec<Node> = Vec::with_capacity(nodes);
    let started_nodes = start_nodes(&cfg, &blenders, &mut mesh).await;
    let handle = mesh.first().map(Node::handle);
    let result = async {
        started_nodes?;
        let handle = handle.ok_or(Error::Shutdown)?;
        let (hash, size) = handle.store().put_file(&blend).await?;
        // The node may not coordinate yet (it waits for its election grace); time from submit.
        let spec = JobSpec {
            name: "bench.blend".into(),
            blend: hash,
            blend_size: size,
            frames: cfg.frames,
            samples: Some(cfg.samples),
            resolution_percent: Some(cfg.resolution_percent),
            format: OutputFormat::Png,
            chunk: cfg.chunk,
            tiles: cfg.tiles,
            blender_version: None,
            blend_path: None,
            deps: Vec::new(),
            missing: Vec::new(),
            engine: Default::default(),
            keep_file_format: false,
        };
        wait_mesh(&handle, nodes).await?;
        let started = Instant::now();
        let id = handle.submit(spec).await?;
        let deadline = started + Duration::from_secs(3600);
        loop {
            if Instant::now() > deadline {
                return Err(Error::Rejected(format!(
                    "job {id} did not finish within an hour"
                )));
            }
            if let Some(job) = handle.job(id).await? {
                match job.state {
                    JobState::Done => {
                        let workers: std::collections::BTreeSet<_> =
                            job.tasks.iter().filter_map(|t| t.worker.as_ref()).collect();
                        return Ok((started.elapsed(), workers.len()));
                    }
                    JobState::Failed | JobState::Cancelled => {
                        return Err(Error::Rejected(job.message.unwrap_or_default()));
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    .await;
    for node in mesh {
        node.shutdown().await;
    }
    let (mesh, workers) = result?;
    Ok(BenchResult {
        frames: cfg.frames.len(),
        direct,
        mesh,
        workers,
        blender: version,
    })
}

/// Starts `blenders.len()` nodes into `mesh` (so they are shut down even when a later one
/// fails): the first alone, the others joining it.
async fn start_nodes(
    cfg: &BenchConfig,
    blenders: &[Blender],
    mesh: &mut Vec<Node>,
) -> Result<(), Error> {
    let mut bootstrap = Vec::new();
    for (i, blender) in blenders.iter().enumerate() {
        let renderer = if cfg.per_task {
            BlenderRenderer::one_process_per_task(blender.clone())
        } else if cfg.spare {
            BlenderRenderer::new(blender.clone()).with_spare()
        } else {
            BlenderRenderer::new(blender.clone())
        };
        let config = Config {
            data_dir: cfg.work_dir.join(format!("node-{i}")),
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .map_err(|e| Error::Network(format!("{e}")))?,
            ],
            api: None,
            bootstrap: bootstrap.clone(),
            mdns: false,
            name: format!("bench-{i}"),
            threads: cfg.pin.then_some(1),
            role: rendermesh_protocol::Role::Worker,
            blender: blender.exe().to_owned(),
            secret: None,
            api_token: None,
            sandbox: false,
            policy: crate::core::Policy {
                checks: cfg.checks,
                ..crate::core::Policy::default()
            },
            ..Config::default()
        };
        let node = Node::start_with_renderer(config, Arc::new(renderer)).await?;
        if bootstrap.is_empty() {
            let info = node.wait_listening().await?;
            bootstrap = info.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        }
        mesh.push(node);
    }
    Ok(())
}

/// Waits until the first node sees all `nodes` and a coordinator.
async fn wait_mesh(handle: &crate::Handle, nodes: usize) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = handle.peers().await?;
        if view.coordinator.is_some() && view.peers.len() == nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NoCoordinator(format!(
                "the bench mesh did not form: {} of {nodes} nodes seen, coordinator {:?}",
                view.peers.len(),
                view.coordinator
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A wrapper that runs `blender` pinned to `core` (`taskset -c CORE blender ...`).
fn pinned(blender: &Path, core: usize, dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join(format!("blender-on-core-{core}"));
    let script = format!(
        "#!/bin/sh\nexec taskset -c {core} '{}' \"$@\"\n",
        blender.display().to_string().replace('\'', "'\\''")
    );
    let io = |source| Error::Io {
        what: "cannot write the pinned Blender wrapper",
        path: path.clone(),
        source,
    };
    std::fs::write(&path, script).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_wrapper_runs_the_program_on_its_core_with_every_argument() {
        let dir = tempfile::tempdir().unwrap();
        // A program whose path needs quoting, standing in for Blender.
        let program = dir.path().join("it's blender");
        std::fs::write(&program, "#!/bin/sh\ntaskset -p $$\nprintf '%s|' \"$@\"\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let wrapper = pinned(&program, 0, dir.path()).unwrap();
        let out = std::process::Command::new(&wrapper)
            .args(["-b", "two words", ""])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.ends_with("-b|two words||"), "{text}");
        // `taskset -p` prints the affinity mask: core 0 only.
        assert!(text.contains("current affinity mask: 1\n"), "{text}");
    }
}
