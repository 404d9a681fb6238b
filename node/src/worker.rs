//! The worker side of a task: stage the job's `.blend` and every file it uses (fetched by hash,
//! checked, laid out at their original paths under the job's root, once per job), render the
//! frames, store each frame as a blob, and say how it went.
//!
//! Rendering goes through the [`Renderer`] trait. The product uses [`BlenderRenderer`] (real
//! Blender, and nothing else is reachable from the CLI); tests of scheduling and failure
//! handling may plug in a fake through [`crate::Node::start_with_renderer`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use rendermesh_protocol::{
    Assignment, BlobHash, Confinement, JobId, JobSpec, NodeId, Outcome, Output, OutputFormat,
};
use rendermesh_scene::{Engine, RenderSettings};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::fetch::Fetcher;
use crate::probe_cache::{ProbeCache, Question};
use crate::render::{BlendFile, Blender, Progress, RenderError, Sandbox, Session, Spare};
use crate::store::BlobStore;

/// Why a render (or a task) produced no frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderFailure {
    /// It was cancelled (its job ended, or the node is stopping): there is nothing to report.
    Cancelled,
    /// It failed; the renderer's own words.
    Failed(String),
}

impl From<String> for RenderFailure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// Something that renders the frames of an assignment into a directory.
#[async_trait]
pub trait Renderer: Send + Sync + 'static {
    /// The renderer's version (`Blender 3.4.1`); `None` when it cannot run here.
    async fn version(&self) -> Option<String>;

    /// How its renders are confined; known once [`Renderer::version`] has answered. A renderer
    /// that starts no program (the tests' fakes) is not sandboxed.
    fn confinement(&self) -> Confinement {
        Confinement::Unsandboxed
    }

    /// The engines it renders with on this machine (asked once, when the node is first idle).
    async fn engines(&self) -> Vec<Engine> {
        vec![Engine::Cycles]
    }

    /// Renders `assignment.frames` of `blend` (laid out with its files by the worker) into
    /// `out_dir`; reports each finished frame on `progress`; returns every frame's file, in
    /// frame order, or a message quoting the renderer.
    async fn render(
        &self,
        blend: BlendFile<'_>,
        out_dir: &Path,
        assignment: &Assignment,
        progress: mpsc::Sender<u32>,
        cancel: CancellationToken,
    ) -> Result<Vec<(u32, PathBuf)>, RenderFailure>;

    /// Gets ready to render job `job` (`spec`, laid out at `blend`) before its first task
    /// comes, so that the task does not wait for it. By default, nothing.
    async fn prepare(&self, _blend: BlendFile<'_>, _job: JobId, _spec: &JobSpec) {}

    /// Keeps a renderer started ahead, with no job yet, in a directory of its own under
    /// `jobs` (where the worker lays out each job's files), from now on whenever this node has
    /// nothing open. By default, nothing.
    fn keep_spare(&self, _jobs: &Path) {}

    /// The directory of the renderer kept ahead, if there is one and it has no job or has
    /// `job`: job `job` is to be laid out there (`root/` and `out/`, as in any job directory),
    /// and it is now the spare's job. `None`: lay it out in a directory of its own.
    fn claim_spare(&self, _job: JobId) -> Option<PathBuf> {
        None
    }

    /// The directory of the renderer kept ahead, if any: not another job's to remove.
    fn spare_dir(&self) -> Option<PathBuf> {
        None
    }
}

/// A Blender session closes after this long without a task (its job is over, or this node
/// gets no more of it), freeing its memory.
const SESSION_IDLE: Duration = Duration::from_secs(30);

/// Real Blender Cycles, run headless by [`crate::render`].
///
/// Every task of a job on this node goes to one [`Session`]: Blender starts and loads the
/// `.blend` once per job, not once per task (the start-up costs about as much as a small
/// frame). A task of another job, an error, a cancel or [`SESSION_IDLE`] without work ends the
/// session. `sessions: false` ([`BlenderRenderer::one_process_per_task`]) starts a Blender per
/// task, as `blender -b -a` does; the bench compares both.
#[derive(Clone, Debug)]
pub struct BlenderRenderer {
    blender: Blender,
    /// Set by [`Renderer::version`]: Blender runs here, but not in its sandbox.
    cannot_sandbox: Arc<AtomicBool>,
    sessions: bool,
    /// The open session, if any: one task renders at a time on a node.
    session: Arc<Mutex<Option<Open>>>,
    /// Whether the task that closes idle sessions runs.
    reaping: Arc<AtomicBool>,
    /// Where the engines probe's answer is remembered, if anywhere.
    probe_cache: Option<ProbeCache>,
    /// Whether a spare Blender is kept ([`BlenderRenderer::with_spare`]).
    spares: bool,
    /// The spare Blender, and where to start the next one.
    spare: Arc<std::sync::Mutex<SpareSlot>>,
}

/// The spare Blender a node keeps ahead of its next job ([`Spare`]), if any.
#[derive(Debug, Default)]
struct SpareSlot {
    /// Where spares are made (`work/jobs`); `None` until [`Renderer::keep_spare`].
    jobs: Option<PathBuf>,
    /// Spares made so far: each has a directory of its own, `spare-N`.
    made: u64,
    held: Option<Held>,
}

/// A spare Blender and its directory.
#[derive(Debug)]
struct Held {
    spare: Spare,
    /// `jobs/spare-N`: `root/` and `out/` are bound in its sandbox.
    dir: PathBuf,
    /// The job laid out in `dir`, once one is, and since when.
    job: Option<(JobId, Instant)>,
}

fn lock(slot: &std::sync::Mutex<SpareSlot>) -> std::sync::MutexGuard<'_, SpareSlot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a spare Blender in `slot` if it has a place for one and holds none.
fn start_spare(blender: &Blender, slot: &std::sync::Mutex<SpareSlot>) {
    let mut slot = lock(slot);
    let Some(jobs) = slot.jobs.clone() else {
        return;
    };
    if slot.held.is_some() {
        return;
    }
    slot.made += 1;
    let dir = jobs.join(format!("spare-{}", slot.made));
    let (root, out) = (dir.join("root"), dir.join("out"));
    let made = std::fs::create_dir_all(&root).and_then(|()| std::fs::create_dir_all(&out));
    if let Err(e) = made {
        warn!("no spare Blender: cannot create {}: {e}", dir.display());
        return;
    }
    match blender.start_spare(&root, &out) {
        Ok(spare) => {
            slot.held = Some(Held {
                spare,
                dir,
                job: None,
            });
        }
        Err(e) => {
            warn!("no spare Blender: {e}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Stops the spare in `slot` if a job claimed it and never opened it within [`SESSION_IDLE`]
/// (the job ended, or this node got none of it): the next job gets a new one.
fn drop_stale_spare(slot: &std::sync::Mutex<SpareSlot>) {
    let mut slot = lock(slot);
    if slot
        .held
        .as_ref()
        .is_some_and(|h| h.job.is_some_and(|(_, at)| at.elapsed() >= SESSION_IDLE))
    {
        slot.held = None;
        debug!("a spare Blender claimed but never used was stopped");
    }
}

/// An open session and what it was opened for.
#[derive(Debug)]
struct Open {
    key: SessionKey,
    session: Session,
    last_used: Instant,
}

/// What a session serves: one job's file, settings and format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SessionKey {
    job: JobId,
    format: OutputFormat,
    settings: RenderSettings,
}

impl BlenderRenderer {
    /// Renders with `blender`, one session per job.
    pub fn new(blender: Blender) -> Self {
        Self {
            blender,
            cannot_sandbox: Arc::new(AtomicBool::new(false)),
            sessions: true,
            session: Arc::new(Mutex::new(None)),
            reaping: Arc::new(AtomicBool::new(false)),
            probe_cache: None,
            spares: false,
            spare: Arc::default(),
        }
    }

    /// Keeps a spare Blender ([`Spare`]) started ahead with no file whenever no session is
    /// open, in its sandbox bound to a job directory of its own: the next job is laid out
    /// there, and its session starts in milliseconds rather than a second or more. It costs a
    /// Blender's memory (about 240 MB here) while the node waits.
    pub fn with_spare(mut self) -> Self {
        self.spares = true;
        self
    }

    /// Whether this renderer keeps a spare Blender.
    fn keeps_spares(&self) -> bool {
        self.sessions && self.spares
    }

    /// The spare claimed for `job`, taken to open its session.
    fn take_spare(&self, job: JobId) -> Option<Spare> {
        let mut slot = lock(&self.spare);
        match &slot.held {
            Some(held) if held.job.is_some_and(|(j, _)| j == job) => {
                slot.held.take().map(|h| h.spare)
            }
            _ => None,
        }
    }

    /// Starts `job`'s session on `blend`: in the spare laid out for it if there is one (and it
    /// can serve it), else in a Blender started for it.
    async fn open_session(
        &self,
        blend: BlendFile<'_>,
        outputs: &Path,
        key: SessionKey,
        cancel: &CancellationToken,
    ) -> Result<Session, RenderError> {
        if let Some(spare) = self.take_spare(key.job) {
            match spare.open(blend, key.format, &key.settings, cancel).await {
                Ok(Some(session)) => {
                    info!(job = %key.job, "Blender session started (the spare)");
                    return Ok(session);
                }
                Ok(None) => info!(job = %key.job, "the spare Blender cannot serve this job"),
                Err(RenderError::Cancelled) => return Err(RenderError::Cancelled),
                Err(e) => warn!(job = %key.job, "the spare Blender failed: {e}"),
            }
        }
        let session = self
            .blender
            .start_session(blend, outputs, key.format, &key.settings, cancel)
            .await?;
        info!(job = %key.job, "Blender session started");
        Ok(session)
    }

    /// Remembers Blender's version and the engines probe's answer in `cache`, and asks it
    /// first: a node restarted, or another node on the machine, knows them without starting
    /// Blender.
    pub fn with_probe_cache(mut self, cache: ProbeCache) -> Self {
        self.probe_cache = Some(cache);
        self
    }

    /// Renders with `blender`, one Blender process per task (`blender -b ... -a`).
    pub fn one_process_per_task(blender: Blender) -> Self {
        Self {
            sessions: false,
            ..Self::new(blender)
        }
    }

    /// Renders `a` in this job's session, opening one if needed.
    async fn render_in_session(
        &self,
        blend: BlendFile<'_>,
        out_dir: &Path,
        a: &Assignment,
        settings: RenderSettings,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Vec<crate::render::RenderedFrame>, RenderError> {
        let key = SessionKey {
            job: a.job,
            format: tile_format(a),
            settings,
        };
        let mut slot = self.session.lock().await;
        // A session for another job is closed (killed) before a new one starts: two Blenders
        // would share the cores and the memory.
        let open = match slot.take().filter(|open| open.key == key) {
            Some(open) => slot.insert(open),
            None => {
                let outputs = blend.outputs.unwrap_or(out_dir);
                let session = self.open_session(blend, outputs, key, &cancel).await?;
                self.reap_idle_sessions();
                slot.insert(Open {
                    key,
                    session,
                    last_used: Instant::now(),
                })
            }
        };
        let result = open
            .session
            .render(out_dir, a.frames, a.tile, progress, cancel)
            .await;
        match &result {
            Ok(_) => open.last_used = Instant::now(),
            Err(_) => *slot = None,
        }
        result
    }

    /// Starts, once, the task that closes a session idle for [`SESSION_IDLE`], and then (when
    /// spares are kept and no session is open) starts a spare Blender.
    fn reap_idle_sessions(&self) {
        if self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let session: Weak<Mutex<Option<Open>>> = Arc::downgrade(&self.session);
        let spare: Weak<std::sync::Mutex<SpareSlot>> = Arc::downgrade(&self.spare);
        // What starting a spare takes, and no strong handle on the renderer's own state: the
        // task ends once the renderer is dropped.
        let spares = self.keeps_spares().then(|| self.blender.clone());
        let cannot_sandbox = self.cannot_sandbox.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_IDLE / 6);
            loop {
                tick.tick().await;
                let (Some(session), Some(spare)) = (session.upgrade(), spare.upgrade()) else {
                    return;
                };
                // A locked slot is in use: not idle.
                let Ok(mut slot) = session.try_lock() else {
                    continue;
                };
                if slot
                    .as_ref()
                    .is_some_and(|open| open.last_used.elapsed() >= SESSION_IDLE)
                {
                    *slot = None;
                    debug!("idle Blender session closed");
                }
                if slot.is_none()
                    && let Some(blender) = &spares
                    && !cannot_sandbox.load(Ordering::Relaxed)
                {
                    drop_stale_spare(&spare);
                    start_spare(blender, &spare);
                }
            }
        });
    }
}

#[async_trait]
impl Renderer for BlenderRenderer {
    async fn version(&self) -> Option<String> {
        let exe = self.blender.exe();
        let bwrap = self.blender.sandbox().exe();
        let known = || {
            self.probe_cache
                .as_ref()
                .and_then(|c| c.version(exe, bwrap, SystemTime::now()))
        };
        // Nodes started together on this machine ask once: the others wait for its answer.
        let mut _turn = None;
        let mut version = known();
        if version.is_none()
            && let Some(cache) = &self.probe_cache
        {
            _turn = cache.turn(Question::Version, exe, bwrap).await;
            version = known();
        }
        if let Some(v) = version {
            info!(version = %v, "Blender's version known from an earlier run on this machine");
            return Some(v);
        }
        let error = match self.blender.version().await {
            Ok(v) => {
                if let Some(cache) = &self.probe_cache {
                    cache.put_version(exe, bwrap, &v, SystemTime::now());
                }
                return Some(v);
            }
            Err(e) => e,
        };
        if *self.blender.sandbox() != Sandbox::Off
            && let Ok(v) = self.blender.unconfined().version().await
        {
            self.cannot_sandbox.store(true, Ordering::Relaxed);
            tracing::error!(
                "{v} runs here, but not in its sandbox ({error}): this node will not render. \
                 Install bubblewrap (`apt-get install bubblewrap`), or start the node with \
                 --no-sandbox to render unconfined"
            );
            return None;
        }
        tracing::warn!("this node will not render: {error}");
        None
    }

    fn confinement(&self) -> Confinement {
        if self.cannot_sandbox.load(Ordering::Relaxed) {
            Confinement::CannotSandbox
        } else if *self.blender.sandbox() == Sandbox::Off {
            Confinement::Unsandboxed
        } else {
            Confinement::Sandboxed
        }
    }

    fn keep_spare(&self, jobs: &Path) {
        if !self.keeps_spares() {
            return;
        }
        lock(&self.spare).jobs = Some(jobs.to_owned());
        if !self.cannot_sandbox.load(Ordering::Relaxed) {
            start_spare(&self.blender, &self.spare);
        }
        self.reap_idle_sessions();
    }

    fn claim_spare(&self, job: JobId) -> Option<PathBuf> {
        let mut slot = lock(&self.spare);
        let held = slot.held.as_mut()?;
        match held.job {
            None => {
                held.job = Some((job, Instant::now()));
                Some(held.dir.clone())
            }
            Some((j, _)) if j == job => Some(held.dir.clone()),
            // Laid out for another job that never opened it: that job's files go (the
            // directory is another job's), and so does the spare.
            Some(_) => {
                slot.held = None;
                None
            }
        }
    }

    fn spare_dir(&self) -> Option<PathBuf> {
        lock(&self.spare).held.as_ref().map(|h| h.dir.clone())
    }

    async fn engines(&self) -> Vec<Engine> {
        let Some(cache) = &self.probe_cache else {
            return self.blender.engines().await;
        };
        let exe = self.blender.exe();
        let bwrap = self.blender.sandbox().exe();
        let known = || cache.get(exe, bwrap, SystemTime::now());
        // Nodes started together on this machine probe once: the others wait for its answer.
        let mut _turn = None;
        let mut engines = known();
        if engines.is_none() {
            _turn = cache.turn(Question::Engines, exe, bwrap).await;
            engines = known();
        }
        if let Some(engines) = engines {
            info!(
                ?engines,
                "engines known from an earlier probe on this machine"
            );
            return engines;
        }
        let engines = self.blender.engines().await;
        // A Blender that did not answer is asked again next time.
        if !engines.is_empty() {
            cache.put(exe, bwrap, &engines, SystemTime::now());
            info!(?engines, "engines probed, and remembered on this machine");
        }
        engines
    }

    /// Starts the job's Blender session (the file loaded), as its first task would: that task
    /// then finds it open. A tiled job's session is the one its tiles share (each tile is
    /// asked of it in turn).
    async fn prepare(&self, blend: BlendFile<'_>, job: JobId, spec: &JobSpec) {
        if !self.sessions {
            return;
        }
        let tiled = spec.tiles.is_some();
        let key = SessionKey {
            job,
            format: task_format(spec, tiled),
            settings: task_settings(spec, tiled),
        };
        let Some(outputs) = blend.outputs else {
            return;
        };
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|open| open.key == key) {
            return;
        }
        let never = CancellationToken::new();
        match self.open_session(blend, outputs, key, &never).await {
            Ok(session) => {
                debug!(job = %job, "session ready before the first task");
                self.reap_idle_sessions();
                *slot = Some(Open {
                    key,
                    session,
                    last_used: Instant::now(),
                });
            }
            Err(e) => debug!(job = %job, "no session ahead of the first task: {e}"),
        }
    }

    async fn render(
        &self,
        blend: BlendFile<'_>,
        out_dir: &Path,
        a: &Assignment,
        progress: mpsc::Sender<u32>,
        cancel: CancellationToken,
    ) -> Result<Vec<(u32, PathBuf)>, RenderFailure> {
        let settings = RenderSettings {
            // A session is asked each tile in turn.
            tile: if self.sessions { None } else { a.tile },
            ..task_settings(&a.spec, a.tile.is_some())
        };
        let (tx, mut rx) = mpsc::channel(64);
        let forward = async {
            while let Some(p) = rx.recv().await {
                if let Progress::Saved { frame, .. } = p {
                    let _ = progress.send(frame).await;
                }
            }
        };
        let render = async {
            if self.sessions {
                self.render_in_session(blend, out_dir, a, settings, tx, cancel)
                    .await
            } else {
                let format = tile_format(a);
                self.blender
                    .render_frames(blend, out_dir, a.frames, format, &settings, tx, cancel)
                    .await
            }
        };
        let (result, ()) = tokio::join!(render, forward);
        match result {
            Ok(frames) => Ok(frames.into_iter().map(|f| (f.frame, f.path)).collect()),
            Err(RenderError::Cancelled) => Err(RenderFailure::Cancelled),
            Err(e) => Err(RenderFailure::Failed(e.to_string())),
        }
    }
}

/// The format Blender writes for an assignment: the job's, except that tiles are written
/// lossless (EXR for an EXR job, PNG otherwise) and encoded in the job's format once stitched.
pub fn tile_format(a: &Assignment) -> OutputFormat {
    task_format(&a.spec, a.tile.is_some())
}

/// The format a task of `spec` writes: the job's, but a tile's is lossless PNG unless the job
/// writes EXR (a tiled frame is encoded in the job's format once stitched).
fn task_format(spec: &JobSpec, tiled: bool) -> OutputFormat {
    match spec.format {
        OutputFormat::Exr => OutputFormat::Exr,
        format if !tiled => format,
        _ => OutputFormat::Png,
    }
}

/// The settings a task of `spec` renders with, whole frames or a tile (`tiled`; the tile
/// itself is left out: a session is asked each one in turn).
fn task_settings(spec: &JobSpec, tiled: bool) -> RenderSettings {
    RenderSettings {
        samples: spec.samples,
        resolution_percent: spec.resolution_percent,
        tile: None,
        exact: tiled,
        allow_missing: !spec.missing.is_empty(),
        engine: spec.engine,
        // Tiles are written lossless and encoded in the job's format once stitched.
        keep_file_format: spec.keep_file_format && !tiled,
    }
}

/// What a task needs from its node.
#[derive(Clone)]
pub(crate) struct WorkerContext {
    pub fetcher: Fetcher,
    pub store: BlobStore,
    pub renderer: Arc<dyn Renderer>,
    pub work_dir: PathBuf,
    /// Held while a job's files are staged: a task and the preparation of its job lay out the
    /// same files, one after the other.
    pub staging: Arc<Mutex<()>>,
}

/// Runs one assignment to its end. Never panics: every failure becomes [`Outcome::Failed`],
/// and a cancelled task gives `None` (nothing to report).
pub(crate) async fn run_task(
    ctx: WorkerContext,
    a: Assignment,
    coordinator: NodeId,
    progress: mpsc::Sender<u32>,
    cancel: CancellationToken,
) -> Option<Outcome> {
    let hints = vec![a.origin.clone(), coordinator];
    let staged = tokio::select! {
        biased;
        _ = cancel.cancelled() => return None,
        staged = stage(&ctx, a.job, &a.spec, hints) => staged,
    };
    let staged = match staged {
        Ok(staged) => staged,
        Err(message) => return Some(Outcome::Failed(message)),
    };
    let dir = staged.outputs.join(format!("{}-{}", a.task, a.attempt));
    let result = render_into(&ctx, &a, &staged, &dir, progress, cancel).await;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        debug!("work dir {} not removed: {e}", dir.display());
    }
    match result {
        Ok(outputs) => Some(Outcome::Done(outputs)),
        Err(RenderFailure::Failed(message)) => Some(Outcome::Failed(message)),
        Err(RenderFailure::Cancelled) => None,
    }
}

/// Blobs fetched at once while a job's files are staged.
const FETCHES_IN_FLIGHT: usize = 8;
/// Written in a job's directory once all its files are laid out and verified.
const STAGED_MARK: &str = ".staged";

/// Prepares job `job` before its first task comes ([`crate::core::Action::Prepare`]): stages
/// its files (from `origin` first) and lets the renderer get ready (Blender started with the
/// file loaded). A failure is only logged: the first task stages the files again, and says why
/// if it cannot.
pub(crate) async fn prepare(ctx: WorkerContext, job: JobId, spec: JobSpec, origin: NodeId) {
    let staged = match stage(&ctx, job, &spec, vec![origin]).await {
        Ok(staged) => staged,
        Err(e) => {
            debug!("not prepared: {e}");
            return;
        }
    };
    let blend = BlendFile {
        path: &staged.blend,
        root: Some(&staged.root),
        outputs: Some(&staged.outputs),
    };
    ctx.renderer.prepare(blend, job, &spec).await;
}

/// A job's `.blend` laid out on this node, with the files it uses.
#[derive(Debug)]
struct Staged {
    /// The `.blend` to open.
    blend: PathBuf,
    /// The root it and its files are laid out under: Blender reads nothing outside it.
    root: PathBuf,
    /// Where its tasks' frames are written, each task in a directory of its own: the only
    /// directory a sandboxed Blender may write.
    outputs: PathBuf,
}

/// Fetches the job's `.blend` and every file it uses (from the origin first, then the
/// coordinator, then anyone), checks each against its hash, and lays them out in the job's
/// directory `work/jobs/<job>/`: the `.blend` and its files at `root/` + the path each had on
/// the submitting machine, so that the relative paths the file holds resolve (see
/// `rendermesh_protocol::files`; a spec without `blend_path` puts the `.blend` at
/// `root/scene.blend`). Done once per job on a node (the directory is marked once
/// complete); the directories of other jobs are removed first, since a node works on one job
/// at a time. Files are hard links to the store's blobs where the file system allows.
///
/// The first job a node stages while its renderer keeps a spare ([`Renderer::claim_spare`])
/// is laid out in the spare's directory (`work/jobs/spare-N`, bound in the spare's sandbox),
/// and `work/jobs/<job>` is a link to it.
async fn stage(
    ctx: &WorkerContext,
    job: JobId,
    spec: &JobSpec,
    hints: Vec<NodeId>,
) -> Result<Staged, String> {
    let _one_at_a_time = ctx.staging.lock().await;
    let jobs = ctx.work_dir.join("jobs");
    let named = jobs.join(job.to_string());
    let dir = match tokio::fs::read_link(&named).await {
        Ok(spare) => spare,
        Err(_) if tokio::fs::try_exists(&named).await.unwrap_or(false) => named.clone(),
        Err(_) => match ctx.renderer.claim_spare(job) {
            Some(spare) => {
                tokio::fs::symlink(&spare, &named)
                    .await
                    .map_err(|e| format!("cannot write in {}: {e}", jobs.display()))?;
                spare
            }
            None => named.clone(),
        },
    };
    let root = dir.join("root");
    let blend_path = spec.blend_path.as_deref().unwrap_or("/scene.blend");
    let staged = Staged {
        blend: under(&root, blend_path)?,
        root,
        outputs: dir.join("out"),
    };
    if tokio::fs::try_exists(dir.join(STAGED_MARK))
        .await
        .unwrap_or(false)
    {
        return Ok(staged);
    }
    remove_other_jobs(&jobs, &[&named, &dir], ctx.renderer.as_ref()).await;

    let blend = (
        spec.blend,
        spec.blend_size,
        staged.blend.clone(),
        "the .blend".to_owned(),
    );
    let mut wanted: Vec<(BlobHash, u64, PathBuf, String)> = vec![blend];
    for d in &spec.deps {
        let what = if d.named == d.path {
            format!("`{}`", d.path)
        } else {
            format!("`{}` (named `{}`)", d.path, d.named)
        };
        wanted.push((d.blob, d.size, under(&staged.root, &d.path)?, what));
    }
    let total = wanted.len();
    let mut laid = futures::stream::iter(wanted)
        .map(|(hash, size, dest, what)| {
            let hints = hints.clone();
            async move {
                lay_out(ctx, hash, size, &dest, hints)
                    .await
                    .map_err(|e| format!("{what}: {e}"))
            }
        })
        .buffer_unordered(FETCHES_IN_FLIGHT);
    while let Some(result) = laid.next().await {
        result.map_err(|e| format!("cannot stage the job's files: {e}"))?;
    }
    tokio::fs::write(dir.join(STAGED_MARK), b"")
        .await
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    info!(files = total, "job files staged");
    Ok(staged)
}

/// Where a job file that was at `path` on the submitting machine goes under `root`: refused
/// unless `path` is absolute and normalised (`protocol::files::check_path`), so that nothing
/// from the wire (an assignment from a peer) can name a place outside the job's directory.
fn under(root: &Path, path: &str) -> Result<PathBuf, String> {
    rendermesh_protocol::files::check_path("file path", path)
        .map_err(|e| format!("refusing the job's files: {e}"))?;
    Ok(root.join(path.trim_start_matches('/')))
}

/// Fetches `hash` (`size` bytes) if it is not here, checks the stored copy against its hash (a copy that no
/// longer matches is dropped and fetched again, once), and links it at `dest`.
async fn lay_out(
    ctx: &WorkerContext,
    hash: BlobHash,
    size: u64,
    dest: &Path,
    hints: Vec<NodeId>,
) -> Result<(), String> {
    let mut blob = None;
    for _ in 0..2 {
        let path = ctx
            .fetcher
            .fetch_sized(hash, Some(size), hints.clone())
            .await
            .map_err(|e| format!("cannot fetch it: {e}"))?;
        match ctx.store.verify(&hash).await {
            Ok(true) => {
                blob = Some(path);
                break;
            }
            Ok(false) => warn!(blob = %hash.short(), "a stored copy was corrupt and is dropped"),
            Err(e) => return Err(format!("cannot check this node's copy: {e}")),
        }
    }
    let blob = blob.ok_or("this node's copy was corrupt, and so was the one fetched again")?;
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match tokio::fs::remove_file(dest).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot replace {}: {e}", dest.display()));
        }
        _ => {}
    }
    if tokio::fs::hard_link(&blob, dest).await.is_err() {
        tokio::fs::copy(&blob, dest)
            .await
            .map_err(|e| format!("cannot copy it to {}: {e}", dest.display()))?;
    }
    Ok(())
}

/// Removes every job directory (or link to one) under `jobs` but those in `keep` and the
/// renderer's spare's (asked for each, since one may start meanwhile).
async fn remove_other_jobs(jobs: &Path, keep: &[&Path], renderer: &dyn Renderer) {
    let Ok(mut entries) = tokio::fs::read_dir(jobs).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if !keep.contains(&path.as_path())
            && renderer.spare_dir().as_deref() != Some(path.as_path())
            && let Err(e) = tokio::fs::remove_dir_all(&path).await
        {
            debug!("job dir {} not removed: {e}", path.display());
        }
    }
}

async fn render_into(
    ctx: &WorkerContext,
    a: &Assignment,
    staged: &Staged,
    dir: &Path,
    progress: mpsc::Sender<u32>,
    cancel: CancellationToken,
) -> Result<Vec<Output>, RenderFailure> {
    let out_dir = dir.join("out");
    tokio::fs::create_dir_all(&out_dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let blend = BlendFile {
        path: &staged.blend,
        root: Some(&staged.root),
        outputs: Some(&staged.outputs),
    };
    let frames = ctx
        .renderer
        .render(blend, &out_dir, a, progress, cancel)
        .await?;
    let mut outputs = Vec::with_capacity(frames.len());
    for (frame, path) in frames {
        let (blob, size) = ctx
            .store
            .put_file(&path)
            .await
            .map_err(|e| format!("cannot store frame {frame}: {e}"))?;
        let thumb = store_thumb(&ctx.store, path, a.tile).await;
        outputs.push(Output {
            frame,
            blob,
            size,
            thumb,
        });
    }
    info!(frames = %a.frames, "task rendered");
    Ok(outputs)
}

/// Makes the thumbnail of the frame (or tile) at `path` on a blocking thread and stores it;
/// `None`, and a warning, when it cannot be made (the frame counts all the same).
pub(crate) async fn store_thumb(
    store: &BlobStore,
    path: PathBuf,
    tile: Option<rendermesh_protocol::Tile>,
) -> Option<BlobHash> {
    let made = tokio::task::spawn_blocking(move || crate::thumb::of_file(&path, tile)).await;
    let result = match made {
        Ok(Ok(png)) => store.put_bytes(&png).await.map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    };
    result.inspect_err(|e| warn!("no thumbnail: {e}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_file_is_laid_out_under_the_root_or_refused() {
        let root = Path::new("/data/work/jobs/j/root");
        assert_eq!(
            under(root, "/home/u/tex/a.png").unwrap(),
            Path::new("/data/work/jobs/j/root/home/u/tex/a.png")
        );
        for bad in [
            "/../../etc/cron.d/x",
            "relative/a.png",
            "/a/./b",
            "//etc/passwd",
            "",
        ] {
            let e = under(root, bad).unwrap_err();
            assert!(
                e.starts_with("refusing the job's files: bad file path"),
                "{bad}: {e}"
            );
        }
    }
}
