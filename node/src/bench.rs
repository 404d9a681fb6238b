//! `rendermesh bench`: renders the same frames directly with `blender -b` and through a one-node
//! mesh (an embedded node on loopback, real Blender), in one run, and prints both times and
//! their ratio. Machines here are noisy: compare ratios measured in one run, not seconds.

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
    /// Submit to last frame done, through a one-node mesh.
    pub mesh: Duration,
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
    let blender = Blender::new(cfg.blender.clone(), None);
    let version = blender
        .version()
        .await
        .map_err(|e| Error::Network(e.to_string()))?;
    let blend = match &cfg.blend {
        Some(b) => b.clone(),
        None => {
            let b = cfg.work_dir.join("example.blend");
            blender
                .make_example_scene(&b)
                .await
                .map_err(|e| Error::Network(e.to_string()))?;
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
        .await
        .map_err(|e| Error::Network(e.to_string()))?;
    let direct = started.elapsed();
    let _ = drain.await;

    // Mesh: an embedded one-node mesh, from upload to the last frame held.
    let renderer = if cfg.per_task {
        BlenderRenderer::one_process_per_task(blender.clone())
    } else {
        BlenderRenderer::new(blender.clone())
    };
    let config = Config {
        data_dir: cfg.work_dir.join("node"),
        listen: vec![
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .map_err(|e| Error::Network(format!("{e}")))?,
        ],
        api: None,
        bootstrap: Vec::new(),
        mdns: false,
        name: "bench".into(),
        threads: None,
        role: rendermesh_protocol::Role::Worker,
        blender: cfg.blender.clone(),
        secret: None,
    };
    let node = Node::start_with_renderer(config, Arc::new(renderer)).await?;
    let handle = node.handle();
    let result = async {
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
        };
        wait_coordinator(&handle).await?;
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
                    JobState::Done => break,
                    JobState::Failed | JobState::Cancelled => {
                        return Err(Error::Rejected(job.message.unwrap_or_default()));
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(started.elapsed())
    }
    .await;
    node.shutdown().await;
    Ok(BenchResult {
        frames: cfg.frames.len(),
        direct,
        mesh: result?,
        blender: version,
    })
}

async fn wait_coordinator(handle: &crate::Handle) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.info().await?.coordinator.is_none() {
        if Instant::now() > deadline {
            return Err(Error::NoCoordinator(
                "the bench node never coordinated".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
