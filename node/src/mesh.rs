//! The mesh actor: membership, election, the replicated job table, the coordinator and the
//! worker, in one event loop that owns all of that state (so no lock guards it).
//!
//! Each tick (every [`TICK`]) the actor
//! 1. forgets peers unheard for [`limits::PEER_TIMEOUT_MS`] (the coordinator requeues their
//!    tasks at once);
//! 2. runs the election rule ([`rendermesh_protocol::elect`]) over the live view;
//! 3. pulls every job record a peer holds in a newer version than this node (anti-entropy:
//!    the job table lives on every node);
//! 4. as coordinator: requeues tasks whose worker lost them, and hands queued tasks to idle
//!    workers whose Blender version matches;
//! 5. as worker: re-sends reports the coordinator has not acknowledged;
//! 6. publishes a heartbeat every second, or sooner after a job changed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rendermesh_protocol::{
    Assignment, BlobHash, Engine, Gossip, Heartbeat, Job, JobDigest, JobId, JobSpec, NodeId,
    Outcome, Output, OutputFormat, Report, Request, Response, Role, TaskRef, TaskState, Term, Tile,
    limits, plan,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::Multiaddr;
use crate::core::Millis;
use crate::core::membership::{Change, Member, Membership};
use crate::fetch::Fetcher;
use crate::net::{self, NetConfig, NetEvent, NetHandle};
use crate::render::Blender;
use crate::store::BlobStore;
use crate::view::{NodeInfo, PeerView, PeersView};
use crate::worker::{self, BlenderRenderer, Renderer, WorkerContext};
use crate::{Config, Error, now_ms};

/// How often the actor looks at its state.
const TICK: Duration = Duration::from_millis(100);
/// Shortest gap between two heartbeats (a job change sends one early).
const MIN_HEARTBEAT_GAP: Duration = Duration::from_millis(200);
/// A worker whose heartbeats, this long after an assignment, name another task has lost it.
const LOST_ASSIGNMENT_AFTER: Duration = Duration::from_secs(5);
/// After a refused or failed assignment, a worker is left alone this long.
const ASSIGN_COOLDOWN: Duration = Duration::from_secs(2);
/// Job records pulled at once.
const MAX_PULLS: usize = 8;
/// How long a coordinator waits before stitching a frame again after a passing failure.
const STITCH_RETRY: Duration = Duration::from_secs(2);
/// How long a submit or cancel keeps looking for a coordinator.
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);

/// What the handle asks of the actor; each carries its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Info(oneshot::Sender<NodeInfo>),
    Peers(oneshot::Sender<PeersView>),
    Jobs(oneshot::Sender<Vec<Job>>),
    Job(JobId, oneshot::Sender<Option<Job>>),
    /// Who coordinates, and this node's Blender version.
    Coordinator(oneshot::Sender<(Target, Option<String>)>),
    /// A request handled by this node as if it came from itself.
    Local(Box<Request>, oneshot::Sender<Response>),
}

/// Where a request for the coordinator goes.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Me,
    Peer(PeerId),
    Nobody,
}

/// A cloneable handle on a running node. Every method fails with [`Error::Shutdown`] once the
/// node is gone; none panics.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    net: NetHandle,
    store: BlobStore,
    fetcher: Fetcher,
}

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// The node itself: id, addresses, term, store counters.
    pub async fn info(&self) -> Result<NodeInfo, Error> {
        self.ask(Command::Info).await
    }

    /// The live membership view.
    pub async fn peers(&self) -> Result<PeersView, Error> {
        self.ask(Command::Peers).await
    }

    /// Every job this node holds a copy of, newest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, Error> {
        self.ask(Command::Jobs).await
    }

    /// One job, if this node holds a copy.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, Error> {
        self.ask(|tx| Command::Job(id, tx)).await
    }

    /// Sends `request` to whoever coordinates, retrying through coordinator changes for up to
    /// [`COORDINATOR_WAIT`].
    async fn to_coordinator(&self, request: Request) -> Result<(), Error> {
        let deadline = Instant::now() + COORDINATOR_WAIT;
        let mut last = String::from("no coordinator has been elected");
        loop {
            let (target, _) = self.ask(Command::Coordinator).await?;
            let answer = match target {
                Target::Me => Ok(self
                    .ask(|tx| Command::Local(Box::new(request.clone()), tx))
                    .await?),
                Target::Peer(peer) => self
                    .net
                    .request(peer, request.clone())
                    .await
                    .map_err(|e| e.to_string()),
                Target::Nobody => Err(last.clone()),
            };
            match answer {
                Ok(Response::Accepted) => return Ok(()),
                Ok(Response::Rejected(reason)) => return Err(Error::Rejected(reason)),
                Ok(Response::NotCoordinator(_)) => last = "the coordinator changed".into(),
                Ok(Response::Busy(reason)) => last = reason,
                Ok(other) => last = format!("unexpected answer {other:?}"),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(Error::NoCoordinator(last));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Submits a job whose `.blend` and files are already in this node's store. Returns once the
    /// coordinator has accepted it. The job runs only on nodes with this node's Blender
    /// version unless `spec.blender_version` says otherwise.
    pub async fn submit(&self, mut spec: JobSpec) -> Result<JobId, Error> {
        let (_, version) = self.ask(Command::Coordinator).await?;
        if spec.blender_version.is_none() {
            spec.blender_version = version;
        }
        spec.validate()?;
        if !self.store.has(&spec.blend) {
            return Err(Error::BlobUnavailable {
                hash: spec.blend,
                reason: "upload the .blend to this node before submitting".into(),
            });
        }
        if let Some(dep) = spec.deps.iter().find(|d| !self.store.has(&d.blob)) {
            return Err(Error::BlobUnavailable {
                hash: dep.blob,
                reason: format!(
                    "upload `{}` to this node before submitting: every file a job uses must be \
                     here",
                    dep.path
                ),
            });
        }
        let id = JobId(rand::random());
        self.to_coordinator(Request::Submit { id, spec }).await?;
        Ok(id)
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: JobId) -> Result<(), Error> {
        self.to_coordinator(Request::Cancel(id)).await
    }

    /// This node's blob store.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The path of a blob in the local store, fetching it from the mesh first if it is not
    /// here (`hints` are nodes likely to have it, tried first).
    pub async fn fetch(&self, hash: BlobHash, hints: Vec<NodeId>) -> Result<PathBuf, Error> {
        self.fetcher.fetch(hash, hints).await
    }
}

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
pub struct Node {
    handle: Handle,
    id: NodeId,
    api: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Node {
    /// Starts a node that renders with real Blender (`config.blender`).
    pub async fn start(config: Config) -> Result<Self, Error> {
        let renderer = Arc::new(BlenderRenderer::new(Blender::new(
            config.blender.clone(),
            config.threads,
        )));
        Self::start_with_renderer(config, renderer).await
    }

    /// Starts a node with the given renderer. The CLI always passes real Blender; tests of
    /// scheduling and failure handling may pass a fake.
    pub async fn start_with_renderer(
        config: Config,
        renderer: Arc<dyn Renderer>,
    ) -> Result<Self, Error> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
            what: "cannot create the data directory",
            path: data_dir.clone(),
            source,
        })?;
        let key = net::load_identity(&data_dir).map_err(|e| Error::Network(e.to_string()))?;
        let peer_id = key.public().to_peer_id();
        let me = NodeId(peer_id.to_string());
        let store = BlobStore::open(&data_dir.join("store"))?;
        let work_dir = data_dir.join("work");
        if work_dir.exists() {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let (net, net_events, net_task) = net::start(
            &key,
            NetConfig {
                listen: config.listen.clone(),
                bootstrap: config.bootstrap.clone(),
                mdns: config.mdns,
                secret: config.secret,
            },
            store.clone(),
            shutdown.child_token(),
        )
        .map_err(|e| Error::Network(e.to_string()))?;
        tasks.spawn(async move {
            let _ = net_task.await;
        });

        let blender_version = match config.role {
            Role::Worker => renderer.version().await,
            Role::Bootstrap => None,
        };
        let fetcher = Fetcher::new(net.clone(), store.clone());
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (internal_tx, internal_rx) = mpsc::channel(256);
        // Cycles runs wherever Blender does; what else runs headless is probed in the
        // background (about a second), so that starting a node waits for nothing.
        let engines = if blender_version.is_some() {
            let probe = renderer.clone();
            let tx = internal_tx.clone();
            tasks.spawn(async move {
                let engines = probe.engines().await;
                let _ = tx.send(Internal::Engines(engines)).await;
            });
            vec![Engine::Cycles]
        } else {
            Vec::new()
        };
        let memory = match sysinfo::System::new() {
            Ok(mut sys) => {
                sys.refresh_memory();
                sys.total_memory()
            }
            Err(_) => 0,
        };
        let actor = Mesh {
            me: me.clone(),
            name: config.name.clone(),
            secret: config.secret.map(|s| s.fingerprint()),
            role: config.role,
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory,
            blender: blender_version.clone(),
            engines,
            net: net.clone(),
            store: store.clone(),
            ctx: WorkerContext {
                fetcher: fetcher.clone(),
                store: store.clone(),
                renderer,
                work_dir,
            },
            internal: internal_tx,
            origin: Instant::now(),
            membership: Membership::new(me.clone(), config.role, 0),
            jobs: HashMap::new(),
            pulling: HashSet::new(),
            running: None,
            reports: Vec::new(),
            assigning: HashSet::new(),
            assigned_at: HashMap::new(),
            cooldown: HashMap::new(),
            verifying: HashSet::new(),
            stitching: HashSet::new(),
            stitch_after: HashMap::new(),
            seq: 0,
            last_heartbeat: None,
            urgent: false,
            addrs: Vec::new(),
            tasks: JoinSet::new(),
        };
        let token = shutdown.child_token();
        tasks.spawn(
            actor
                .run(cmd_rx, net_events, internal_rx, token)
                .instrument(info_span!("node", id = %me.short())),
        );

        let handle = Handle {
            tx: cmd_tx,
            net,
            store,
            fetcher,
        };
        let mut api = None;
        if let Some(addr) = config.api {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Io {
                    what: "cannot listen for the API on",
                    path: PathBuf::from(addr.to_string()),
                    source,
                })?;
            api = listener.local_addr().ok();
            let h = handle.clone();
            let token = shutdown.child_token();
            tasks.spawn(async move {
                if let Err(e) = crate::api::serve(listener, h, token).await {
                    warn!("API stopped: {e}");
                }
            });
        }
        info!(id = %me, name = %config.name, blender = ?blender_version, "node started");
        Ok(Self {
            handle,
            id: me,
            api,
            shutdown,
            tasks,
        })
    }

    /// A handle on the node.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The node's peer id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Where its API listens (the bound address, with the real port), if it serves one.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api
    }

    /// Waits (up to 10 s) until the node listens on at least one address, then returns its
    /// info, so that what is printed can be used to join it.
    pub async fn wait_listening(&self) -> Result<NodeInfo, Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = self.handle.info().await?;
            if !info.addrs.is_empty() || Instant::now() >= deadline {
                return Ok(info);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the API, the mesh actor (cancelling a running render) and the swarm, and waits
    /// for them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A peer heard from recently.
/// The task this node is rendering.
struct Running {
    assignment: Assignment,
    cancel: CancellationToken,
    frames_done: u32,
}

/// A report waiting for the coordinator's acknowledgement.
struct PendingReport {
    report: Report,
    frames: rendermesh_protocol::FrameRange,
    tile: Option<rendermesh_protocol::Tile>,
    in_flight: bool,
}

/// Why a frame was not stitched.
#[derive(Debug)]
enum StitchFailure {
    /// A tile could not be fetched or the frame not copied: try again later.
    Retry(String),
    /// The tiles do not make a frame: no retry will help.
    Fatal(String),
}

/// What a worker renders with, as its heartbeats say.
#[derive(Clone, Debug)]
struct Capable {
    /// Its Blender version.
    blender: Option<String>,
    /// The engines it can run headless.
    engines: Vec<Engine>,
}

impl Capable {
    /// Whether it may render tasks of `spec`: the job's Blender version (when it names one) and
    /// engine.
    fn can_render(&self, spec: &JobSpec) -> bool {
        (spec.blender_version.is_none() || self.blender == spec.blender_version)
            && self.engines.contains(&spec.engine)
    }
}

/// Events from the actor's own spawned work.
enum Internal {
    /// The engines this node's renderer runs headless.
    Engines(Vec<Engine>),
    Progress {
        job: JobId,
        task: u32,
        frame: u32,
    },
    WorkerDone {
        /// Boxed: the spec inside makes it the largest event by far.
        assignment: Box<Assignment>,
        /// `None`: the task was cancelled, and there is nothing to report.
        outcome: Option<Outcome>,
    },
    AssignAnswered {
        node: NodeId,
        job: JobId,
        task: u32,
        attempt: u32,
        answer: Result<Response, String>,
    },
    ReportAnswered {
        job: JobId,
        task: u32,
        attempt: u32,
        answer: Result<Response, String>,
    },
    Pulled {
        id: JobId,
        job: Option<Box<Job>>,
    },
    Stitched {
        job: JobId,
        frame: u32,
        result: Result<Output, StitchFailure>,
    },
    OutputsHeld {
        from: NodeId,
        report: Report,
        result: Result<(), String>,
        reply: Option<oneshot::Sender<Response>>,
    },
}

struct Mesh {
    me: NodeId,
    name: String,
    /// The mesh secret's fingerprint, when there is one.
    secret: Option<String>,
    role: Role,
    cores: u32,
    memory: u64,
    /// This node's Blender version; `None`: it does not render.
    blender: Option<String>,
    /// The engines this node renders with headless (Cycles until the probe says more).
    engines: Vec<Engine>,
    net: NetHandle,
    store: BlobStore,
    ctx: WorkerContext,
    internal: mpsc::Sender<Internal>,
    /// What [`core::Millis`] count from: when the actor started.
    origin: Instant,
    /// Live peers, terms and the election ([`core::membership`]).
    membership: Membership,
    /// The replicated job table (the coordinator's is the one being written).
    jobs: HashMap<JobId, Job>,
    /// Job records being pulled.
    pulling: HashSet<JobId>,
    /// Worker: the task being rendered.
    running: Option<Running>,
    /// Worker: reports not yet acknowledged.
    reports: Vec<PendingReport>,
    /// Coordinator: workers with an assignment in flight.
    assigning: HashSet<NodeId>,
    /// Coordinator: when each running task was handed out (or inherited).
    assigned_at: HashMap<(JobId, u32), Instant>,
    /// Coordinator: workers left alone for a moment after refusing.
    cooldown: HashMap<NodeId, Instant>,
    /// Coordinator: reports whose outputs are being copied here.
    verifying: HashSet<(JobId, u32, u32)>,
    /// Coordinator: tiled frames being stitched.
    stitching: HashSet<(JobId, u32)>,
    /// Coordinator: tiled frames whose stitching failed for a passing reason, and when to retry.
    stitch_after: HashMap<(JobId, u32), Instant>,
    seq: u64,
    last_heartbeat: Option<Instant>,
    /// A job changed: send a heartbeat soon.
    urgent: bool,
    /// Our multiaddrs (with `/p2p`).
    addrs: Vec<String>,
    /// Spawned work: renders, transfers, requests.
    tasks: JoinSet<()>,
}

impl Mesh {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut net_events: mpsc::Receiver<NetEvent>,
        mut internal: mpsc::Receiver<Internal>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Every branch is cancel-safe: mpsc receivers, interval ticks, JoinSet::join_next.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(event) = internal.recv() => self.on_internal(event),
                Some(event) = net_events.recv() => self.on_net(event),
                _ = tick.tick() => self.on_tick().await,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        if let Some(r) = &self.running {
            r.cancel.cancel();
        }
        self.tasks.shutdown().await;
        debug!("mesh actor stopped");
    }

    // ---- views ---------------------------------------------------------------------------

    fn coordinator(&self) -> Option<NodeId> {
        self.membership.coordinator()
    }

    /// Now, on the core's clock.
    fn now(&self) -> Millis {
        self.millis(Instant::now())
    }

    /// `at` on the core's clock.
    fn millis(&self, at: Instant) -> Millis {
        at.saturating_duration_since(self.origin).as_millis() as Millis
    }

    /// `Some(term)` while this node coordinates.
    fn leading(&self) -> Option<Term> {
        self.membership.leading()
    }

    fn current_ref(&self) -> Option<TaskRef> {
        if let Some(r) = &self.running {
            return Some(TaskRef {
                job: r.assignment.job,
                task: r.assignment.task,
                attempt: r.assignment.attempt,
                frames: r.assignment.frames,
                tile: r.assignment.tile,
                frames_done: r.frames_done,
            });
        }
        self.reports.first().map(|p| TaskRef {
            job: p.report.job,
            task: p.report.task,
            attempt: p.report.attempt,
            frames: p.frames,
            tile: p.tile,
            frames_done: p.frames.len(),
        })
    }

    fn my_heartbeat(&self, load: f32) -> Heartbeat {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
        Heartbeat {
            seq: self.seq,
            name: self.name.clone(),
            role: self.role,
            cores: self.cores,
            memory: self.memory,
            blender: self.blender.clone(),
            engines: self.engines.clone(),
            load,
            current: self.current_ref(),
            term: self.membership.max_term(),
            coordinator: self.coordinator(),
            claims: self.leading().is_some(),
            jobs: jobs
                .into_iter()
                .take(limits::MAX_DIGESTS)
                .map(|j| JobDigest {
                    id: j.id,
                    version: j.version,
                })
                .collect(),
            addrs: self.addrs.clone(),
        }
    }

    fn load() -> f32 {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let one = sysinfo::System::load_average()
            .map(|l| l.one)
            .unwrap_or(0.0);
        (one / cores).clamp(0.0, 1.0) as f32
    }

    fn peers_view(&self) -> PeersView {
        let coordinator = self.coordinator();
        let me = self.my_heartbeat(Self::load());
        let mut peers = vec![PeerView {
            id: self.me.0.clone(),
            name: me.name,
            role: me.role,
            addrs: me.addrs,
            cores: me.cores,
            memory: me.memory,
            load: me.load,
            blender: me.blender,
            engines: me.engines,
            current: me.current,
            coordinator: coordinator.as_ref() == Some(&self.me),
            is_self: true,
            last_seen_ms: 0,
        }];
        let now = self.now();
        let mut others: Vec<(&NodeId, &Member)> = self.membership.members().collect();
        others.sort_by(|a, b| a.1.hb.name.cmp(&b.1.hb.name));
        for (id, m) in others {
            let id = id.clone();
            peers.push(PeerView {
                coordinator: coordinator.as_ref() == Some(&id),
                id: id.0,
                name: m.hb.name.clone(),
                role: m.hb.role,
                addrs: m.hb.addrs.clone(),
                cores: m.hb.cores,
                memory: m.hb.memory,
                load: m.hb.load,
                blender: m.hb.blender.clone(),
                engines: m.hb.engines.clone(),
                current: m.hb.current.clone(),
                is_self: false,
                last_seen_ms: now.saturating_sub(m.last_seen),
            });
        }
        PeersView {
            me: self.me.0.clone(),
            term: self.membership.max_term().0,
            coordinator: coordinator.map(|c| c.0),
            peers,
            secret: self.secret.clone(),
        }
    }

    // ---- inputs --------------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Info(tx) => {
                let _ = tx.send(NodeInfo {
                    id: self.me.0.clone(),
                    name: self.name.clone(),
                    role: self.role,
                    addrs: self.addrs.clone(),
                    blender: self.blender.clone(),
                    term: self.membership.max_term().0,
                    coordinator: self.coordinator().map(|c| c.0),
                    store: self.store.stats(),
                    secret: self.secret.clone(),
                });
            }
            Command::Peers(tx) => {
                let _ = tx.send(self.peers_view());
            }
            Command::Jobs(tx) => {
                let mut jobs: Vec<Job> = self.jobs.values().cloned().collect();
                jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
                let _ = tx.send(jobs);
            }
            Command::Job(id, tx) => {
                let _ = tx.send(self.jobs.get(&id).cloned());
            }
            Command::Coordinator(tx) => {
                let target = if self.leading().is_some() {
                    Target::Me
                } else {
                    match self.membership.following() {
                        Some(c) => match c.node.0.parse() {
                            Ok(p) => Target::Peer(p),
                            Err(_) => Target::Nobody,
                        },
                        None => Target::Nobody,
                    }
                };
                let _ = tx.send((target, self.blender.clone()));
            }
            Command::Local(request, tx) => {
                let me = self.me.clone();
                self.on_request(me, *request, tx);
            }
        }
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                from,
                msg: Gossip::Heartbeat(hb),
            } => self.on_heartbeat(from, hb),
            NetEvent::Request {
                from,
                request,
                reply,
            } => {
                let node = NodeId(from.to_string());
                self.on_request(node, request, reply);
            }
        }
    }

    fn on_heartbeat(&mut self, from: PeerId, hb: Heartbeat) {
        let id = NodeId(from.to_string());
        let addrs: Vec<Multiaddr> = hb.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let name = hb.name.clone();
        let now = self.now();
        if self.membership.heard(id.clone(), Arc::new(hb), now) {
            info!(peer = %id.short(), %name, "peer joined");
            let net = self.net.clone();
            self.tasks.spawn(async move {
                let _ = net.dial(from, addrs).await;
            });
        }
    }

    fn on_request(&mut self, from: NodeId, request: Request, reply: oneshot::Sender<Response>) {
        let answer = match request {
            Request::Submit { id, spec } => self.on_submit(id, spec, from),
            Request::Cancel(id) => self.on_cancel(id),
            Request::Assign(a) => self.on_assign(a, from),
            Request::Report(report) => {
                self.on_report(from, report, Some(reply));
                return;
            }
            Request::Replicate(blobs) => {
                if blobs.len() > limits::MAX_JOB_FRAMES as usize {
                    Response::Rejected(format!("{} blobs is more than one task holds", blobs.len()))
                } else {
                    let fetcher = self.ctx.fetcher.clone();
                    self.tasks.spawn(async move {
                        let answer = match fetcher.fetch_all(blobs, vec![from]).await {
                            Ok(()) => Response::Accepted,
                            Err(e) => Response::Rejected(e.to_string()),
                        };
                        let _ = reply.send(answer);
                    });
                    return;
                }
            }
            Request::GetJob(id) => match self.jobs.get(&id) {
                Some(job) => Response::Job(Box::new(job.clone())),
                None => Response::NotFound,
            },
            Request::BlobInfo(_) | Request::BlobChunk { .. } => {
                Response::Rejected("blob requests are served by the network layer".into())
            }
        };
        let _ = reply.send(answer);
    }

    // ---- coordinator ---------------------------------------------------------------------

    fn not_coordinator(&self) -> Response {
        Response::NotCoordinator(self.membership.following().map(|c| c.node.clone()))
    }

    /// Live nodes that render, with what they render with (this node included).
    fn workers(&self) -> Vec<(NodeId, Capable)> {
        let mut out: Vec<(NodeId, Capable)> = self
            .membership
            .members()
            .filter(|(_, m)| m.hb.role == Role::Worker && m.hb.blender.is_some())
            .map(|(id, m)| {
                let capable = Capable {
                    blender: m.hb.blender.clone(),
                    engines: m.hb.engines.clone(),
                };
                (id.clone(), capable)
            })
            .collect();
        if self.role == Role::Worker && self.blender.is_some() {
            let capable = Capable {
                blender: self.blender.clone(),
                engines: self.engines.clone(),
            };
            out.push((self.me.clone(), capable));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn matching_workers(&self, spec: &JobSpec) -> usize {
        self.workers()
            .iter()
            .filter(|(_, capable)| capable.can_render(spec))
            .count()
    }

    fn on_submit(&mut self, id: JobId, spec: JobSpec, from: NodeId) -> Response {
        let Some(term) = self.leading() else {
            return self.not_coordinator();
        };
        if self.jobs.contains_key(&id) {
            return Response::Accepted;
        }
        if from != self.me && !self.membership.is_member(&from) {
            return Response::Busy(format!(
                "unknown peer {from}: no heartbeat heard from it yet; retry once it has joined"
            ));
        }
        if let Err(e) = spec.validate() {
            return Response::Rejected(e.to_string());
        }
        let workers = self.matching_workers(&spec);
        let plan = plan(&spec, workers);
        let job = Job::new(id, spec, from, plan, term, now_ms());
        info!(job = %id.short(), name = %job.spec.name, frames = %job.spec.frames,
              tasks = job.tasks.len(), tiles = ?job.grid.map(|g| g.to_string()), workers,
              "job accepted");
        if workers == 0 {
            warn!(job = %id.short(), "no live node runs {:?}; the job waits for one",
                  job.spec.blender_version);
        }
        self.jobs.insert(id, job);
        self.urgent = true;
        Response::Accepted
    }

    fn on_cancel(&mut self, id: JobId) -> Response {
        let Some(term) = self.leading() else {
            return self.not_coordinator();
        };
        match self.jobs.get_mut(&id) {
            Some(job) => {
                if job.cancel(term) {
                    info!(job = %id.short(), "job cancelled");
                    self.urgent = true;
                }
                Response::Accepted
            }
            None => Response::Rejected(format!("no job {id}")),
        }
    }

    fn on_report(
        &mut self,
        from: NodeId,
        report: Report,
        reply: Option<oneshot::Sender<Response>>,
    ) {
        let respond = |reply: Option<oneshot::Sender<Response>>, r: Response| {
            if let Some(tx) = reply {
                let _ = tx.send(r);
            }
        };
        let Some(term) = self.leading() else {
            respond(reply, self.not_coordinator());
            return;
        };
        let Some(job) = self.jobs.get_mut(&report.job) else {
            // A new coordinator may not have pulled the job yet: the worker retries.
            return;
        };
        if let Err(stale) = job.check_current(report.task, report.attempt, &from) {
            debug!(job = %report.job.short(), task = report.task, "stale report: {stale}");
            respond(reply, Response::Rejected(stale.to_string()));
            return;
        }
        match &report.outcome {
            Outcome::Failed(message) => {
                let give_up = self
                    .jobs
                    .get(&report.job)
                    .map(|j| self.matching_workers(&j.spec))
                    .unwrap_or(1)
                    .clamp(1, 3);
                let Some(job) = self.jobs.get_mut(&report.job) else {
                    return;
                };
                warn!(job = %report.job.short(), task = report.task, node = %from.short(),
                      "task failed: {message}");
                let _ = job.fail(
                    report.task,
                    report.attempt,
                    &from,
                    message.clone(),
                    give_up,
                    term,
                );
                if job.state == rendermesh_protocol::JobState::Failed {
                    warn!(job = %report.job.short(), "job failed: {}", job.message.clone().unwrap_or_default());
                }
                self.assigned_at.remove(&(report.job, report.task));
                self.urgent = true;
                respond(reply, Response::Accepted);
            }
            Outcome::Done(outputs) => {
                let missing: Vec<BlobHash> = outputs
                    .iter()
                    .map(|o| o.blob)
                    .filter(|h| !self.store.has(h))
                    .collect();
                if missing.is_empty() {
                    self.replicate_then_done(from, report, reply);
                    return;
                }
                let key = (report.job, report.task, report.attempt);
                if !self.verifying.insert(key) {
                    return; // already being copied; the worker's retry will find it done
                }
                // Hold every frame here before the task counts as done: two copies exist.
                let fetcher = self.ctx.fetcher.clone();
                let internal = self.internal.clone();
                self.tasks.spawn(async move {
                    let result = fetcher
                        .fetch_all(missing, vec![from.clone()])
                        .await
                        .map_err(|e| e.to_string());
                    let _ = internal
                        .send(Internal::OutputsHeld {
                            from,
                            report,
                            result,
                            reply,
                        })
                        .await;
                });
            }
        }
    }

    /// Outputs are all here. If they were rendered here too, another node must hold a copy
    /// before the task counts: the origin when it is live, else any live peer.
    fn replicate_then_done(
        &mut self,
        from: NodeId,
        report: Report,
        reply: Option<oneshot::Sender<Response>>,
    ) {
        if from != self.me {
            self.apply_done(&from, report, reply);
            return;
        }
        let origin = self.jobs.get(&report.job).map(|j| j.origin.clone());
        let Some(target) = self.second_copy_target(origin) else {
            // A mesh of one: there is nobody to hold a second copy.
            self.apply_done(&from, report, reply);
            return;
        };
        let Outcome::Done(outputs) = &report.outcome else {
            return;
        };
        let key = (report.job, report.task, report.attempt);
        if !self.verifying.insert(key) {
            return;
        }
        let blobs: Vec<BlobHash> = outputs.iter().map(|o| o.blob).collect();
        let net = self.net.clone();
        let internal = self.internal.clone();
        self.tasks.spawn(async move {
            let result = replicate(&net, target, blobs).await;
            let _ = internal
                .send(Internal::OutputsHeld {
                    from,
                    report,
                    result,
                    reply,
                })
                .await;
        });
    }

    /// Where a second copy of something this node made should go: the job's origin when it is
    /// live and not this node, else the first live peer; `None` in a mesh of one.
    fn second_copy_target(&self, origin: Option<NodeId>) -> Option<PeerId> {
        let candidates: Vec<&NodeId> = self.membership.members().map(|(id, _)| id).collect();
        let target = match origin {
            Some(o) if o != self.me && self.membership.is_member(&o) => Some(o),
            _ => candidates.first().map(|n| (*n).clone()),
        };
        target.and_then(|t| t.0.parse::<PeerId>().ok())
    }

    /// Coordinator: stitches, in the background, every tiled frame whose tiles are all
    /// rendered, and copies it to a second node.
    fn stitch_ready(&mut self) {
        let now = Instant::now();
        self.stitch_after.retain(|_, after| *after > now);
        let mut ready = Vec::new();
        for job in self.jobs.values() {
            for frame in job.frames_to_stitch() {
                let key = (job.id, frame);
                if self.stitching.contains(&key) || self.stitch_after.contains_key(&key) {
                    continue;
                }
                let mut hints: Vec<NodeId> = Vec::new();
                let mut tiles = Vec::new();
                for task in job.tiles_of(frame) {
                    if let (Some(tile), Some(out)) = (task.tile, task.outputs.first()) {
                        tiles.push((tile, out.blob));
                    }
                    if let Some(w) = &task.worker
                        && !hints.contains(w)
                    {
                        hints.push(w.clone());
                    }
                }
                hints.push(job.origin.clone());
                let target = self.second_copy_target(Some(job.origin.clone()));
                ready.push((key, job.spec.format, tiles, hints, target));
            }
        }
        for ((id, frame), format, tiles, hints, target) in ready {
            self.stitching.insert((id, frame));
            let fetcher = self.ctx.fetcher.clone();
            let store = self.store.clone();
            let net = self.net.clone();
            let internal = self.internal.clone();
            let span = info_span!("stitch", job = %id.short(), frame);
            self.tasks.spawn(
                async move {
                    let result =
                        stitch_frame(fetcher, store, net, frame, format, tiles, hints, target)
                            .await;
                    let _ = internal
                        .send(Internal::Stitched {
                            job: id,
                            frame,
                            result,
                        })
                        .await;
                }
                .instrument(span),
            );
        }
    }

    fn on_stitched(&mut self, id: JobId, frame: u32, result: Result<Output, StitchFailure>) {
        self.stitching.remove(&(id, frame));
        let (Some(term), Some(job)) = (self.leading(), self.jobs.get_mut(&id)) else {
            return;
        };
        match result {
            Ok(output) => {
                if job.add_stitched(output, term).is_ok() {
                    info!(job = %id.short(), frame, done = job.frames_done(),
                          of = job.spec.frames.len(), "frame stitched");
                    if job.state == rendermesh_protocol::JobState::Done {
                        info!(job = %id.short(), "job done");
                    }
                    self.urgent = true;
                }
            }
            Err(StitchFailure::Retry(why)) => {
                warn!(job = %id.short(), frame, "frame not stitched yet: {why}");
                self.stitch_after
                    .insert((id, frame), Instant::now() + STITCH_RETRY);
            }
            Err(StitchFailure::Fatal(why)) => {
                let message = format!("frame {frame} cannot be stitched: {why}");
                warn!(job = %id.short(), "job failed: {message}");
                job.abort(message, term);
                self.urgent = true;
            }
        }
    }

    fn apply_done(
        &mut self,
        from: &NodeId,
        report: Report,
        reply: Option<oneshot::Sender<Response>>,
    ) {
        let answer = match (self.leading(), self.jobs.get_mut(&report.job)) {
            (Some(term), Some(job)) => {
                let Outcome::Done(outputs) = report.outcome else {
                    return;
                };
                match job.complete(report.task, report.attempt, from, outputs, term) {
                    Ok(()) => {
                        info!(job = %report.job.short(), task = report.task, node = %from.short(),
                              done = job.frames_done(), of = job.spec.frames.len(), "task done");
                        if job.state == rendermesh_protocol::JobState::Done {
                            info!(job = %report.job.short(), "job done");
                        }
                        self.assigned_at.remove(&(report.job, report.task));
                        self.urgent = true;
                        Response::Accepted
                    }
                    Err(stale) => Response::Rejected(stale.to_string()),
                }
            }
            (None, _) => self.not_coordinator(),
            (Some(_), None) => return,
        };
        if let Some(tx) = reply {
            let _ = tx.send(answer);
        }
    }

    /// Starts coordinating in `term` (the membership core decided so): the coordinator's
    /// bookkeeping starts afresh, every running task with a fresh grace period.
    fn become_coordinator(&mut self, term: Term) {
        info!(term = %term, "coordinating");
        self.assigning.clear();
        self.verifying.clear();
        self.stitching.clear();
        self.stitch_after.clear();
        self.assigned_at.clear();
        let now = Instant::now();
        for job in self.jobs.values() {
            for t in &job.tasks {
                if t.state == TaskState::Running {
                    self.assigned_at.insert((job.id, t.index), now);
                }
            }
        }
        self.urgent = true;
    }

    /// Requeues running tasks whose worker is gone or has visibly lost them.
    fn reconcile(&mut self, term: Term) {
        let now = Instant::now();
        let mut releases = Vec::new();
        for job in self.jobs.values() {
            if job.state.is_terminal() {
                continue;
            }
            for t in &job.tasks {
                if t.state != TaskState::Running {
                    continue;
                }
                let Some(worker) = &t.worker else { continue };
                let key = (job.id, t.index);
                let since = *self.assigned_at.entry(key).or_insert(now);
                let lost = if *worker == self.me {
                    since.elapsed() > LOST_ASSIGNMENT_AFTER
                        && !self.current_ref().is_some_and(|c| {
                            c.job == job.id && c.task == t.index && c.attempt == t.attempt
                        })
                        && !self.assigning.contains(worker)
                } else {
                    match self.membership.member(worker) {
                        None => true,
                        Some(m) => {
                            since.elapsed() > LOST_ASSIGNMENT_AFTER
                                && m.last_seen > self.millis(since) + 1500
                                && !m.hb.current.as_ref().is_some_and(|c| {
                                    c.job == job.id && c.task == t.index && c.attempt == t.attempt
                                })
                                && !self.assigning.contains(worker)
                                && !self.verifying.contains(&(job.id, t.index, t.attempt))
                        }
                    }
                };
                if lost {
                    releases.push((job.id, t.index, t.attempt, worker.clone()));
                }
            }
        }
        for (id, index, attempt, worker) in releases {
            if let Some(job) = self.jobs.get_mut(&id)
                && job.release(index, attempt, &worker, term).is_ok()
            {
                info!(job = %id.short(), task = index, node = %worker.short(), "task requeued: its worker is gone");
                self.assigned_at.remove(&(id, index));
                self.urgent = true;
            }
        }
    }

    fn schedule(&mut self, term: Term) {
        let mut busy: HashSet<NodeId> = self.assigning.clone();
        for job in self.jobs.values() {
            for t in &job.tasks {
                if t.state == TaskState::Running
                    && let Some(w) = &t.worker
                {
                    busy.insert(w.clone());
                }
            }
        }
        let now = Instant::now();
        self.cooldown.retain(|_, until| *until > now);
        let mut idle: Vec<(NodeId, Capable)> = self
            .workers()
            .into_iter()
            .filter(|(n, _)| !busy.contains(n) && !self.cooldown.contains_key(n))
            .collect();
        // A worker still rendering (or reporting) a task, per its own heartbeat, is not idle.
        idle.retain(|(n, _)| {
            if *n == self.me {
                self.running.is_none()
            } else {
                self.membership
                    .member(n)
                    .is_some_and(|m| m.hb.current.is_none())
            }
        });
        if idle.is_empty() {
            return;
        }
        let mut order: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| !j.state.is_terminal())
            .map(|j| j.id)
            .collect();
        order.sort_by_key(|id| self.jobs.get(id).map(|j| j.created_ms));
        let mut assignments = Vec::new();
        for id in order {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let mut i = 0;
            while i < idle.len() {
                let (node, capable) = &idle[i];
                if !capable.can_render(&job.spec) {
                    i += 1;
                    continue;
                }
                let Some(index) = job.next_task_for(node) else {
                    i += 1;
                    continue;
                };
                let Ok(attempt) = job.assign(index, node.clone(), term) else {
                    i += 1;
                    continue;
                };
                let task = &job.tasks[index as usize];
                assignments.push((
                    node.clone(),
                    Assignment {
                        term,
                        job: id,
                        task: index,
                        attempt,
                        frames: task.frames,
                        tile: task.tile,
                        spec: job.spec.clone(),
                        origin: job.origin.clone(),
                    },
                ));
                idle.remove(i);
            }
        }
        for (node, a) in assignments {
            self.urgent = true;
            self.assigned_at.insert((a.job, a.task), now);
            info!(job = %a.job.short(), task = a.task, frames = %a.frames, node = %node.short(),
                  attempt = a.attempt, "task assigned");
            if node == self.me {
                let answer = self.on_assign(a.clone(), self.me.clone());
                self.on_assign_answered(node, a.job, a.task, a.attempt, Ok(answer));
                continue;
            }
            let Ok(peer) = node.0.parse::<PeerId>() else {
                continue;
            };
            self.assigning.insert(node.clone());
            let (job, task, attempt) = (a.job, a.task, a.attempt);
            self.spawn_request(peer, Request::Assign(a), move |answer| {
                Internal::AssignAnswered {
                    node,
                    job,
                    task,
                    attempt,
                    answer,
                }
            });
        }
    }

    fn on_assign_answered(
        &mut self,
        node: NodeId,
        job: JobId,
        task: u32,
        attempt: u32,
        answer: Result<Response, String>,
    ) {
        self.assigning.remove(&node);
        if matches!(answer, Ok(Response::Accepted)) {
            return;
        }
        debug!(node = %node.short(), "assignment not taken: {answer:?}");
        self.cooldown
            .insert(node.clone(), Instant::now() + ASSIGN_COOLDOWN);
        if let (Some(term), Some(j)) = (self.leading(), self.jobs.get_mut(&job))
            && j.release(task, attempt, &node, term).is_ok()
        {
            self.assigned_at.remove(&(job, task));
            self.urgent = true;
        }
    }

    // ---- worker --------------------------------------------------------------------------

    fn on_assign(&mut self, a: Assignment, from: NodeId) -> Response {
        if self.role != Role::Worker || self.blender.is_none() {
            return Response::Rejected("this node does not render".into());
        }
        if a.term < self.membership.max_term() {
            return Response::Rejected(format!(
                "stale term {} (this node has seen term {})",
                a.term,
                self.membership.max_term()
            ));
        }
        self.membership.observe_term(a.term);
        if let Some(r) = &self.running {
            let same = r.assignment.job == a.job
                && r.assignment.task == a.task
                && r.assignment.attempt == a.attempt;
            return if same {
                Response::Accepted
            } else {
                Response::Rejected(format!(
                    "busy with job {} task {}",
                    r.assignment.job.short(),
                    r.assignment.task
                ))
            };
        }
        // The spec comes from a peer: it is checked here as the coordinator checked it (its
        // file paths above all, which name where files are laid out on this node).
        if let Err(e) = a.spec.validate() {
            return Response::Rejected(format!("the assignment's job is invalid: {e}"));
        }
        if a.spec.blender_version.is_some() && a.spec.blender_version != self.blender {
            return Response::Rejected(format!(
                "the job needs {:?}; this node runs {:?}",
                a.spec.blender_version, self.blender
            ));
        }
        if !self.engines.contains(&a.spec.engine) {
            return Response::Rejected(format!(
                "the job renders with {}; this node cannot run it headless",
                a.spec.engine
            ));
        }
        let cancel = CancellationToken::new();
        self.running = Some(Running {
            assignment: a.clone(),
            cancel: cancel.clone(),
            frames_done: 0,
        });
        let ctx = self.ctx.clone();
        let internal = self.internal.clone();
        let span = info_span!("task", job = %a.job.short(), task = a.task, frames = %a.frames, attempt = a.attempt);
        self.tasks.spawn(
            async move {
                info!("rendering");
                let (ptx, mut prx) = mpsc::channel(64);
                let (job, task) = (a.job, a.task);
                let progress_internal = internal.clone();
                let forward = async move {
                    while let Some(frame) = prx.recv().await {
                        let _ = progress_internal
                            .send(Internal::Progress { job, task, frame })
                            .await;
                    }
                };
                let work = worker::run_task(ctx, a.clone(), from, ptx, cancel);
                let (outcome, ()) = tokio::join!(work, forward);
                let _ = internal
                    .send(Internal::WorkerDone {
                        assignment: Box::new(a),
                        outcome,
                    })
                    .await;
            }
            .instrument(span),
        );
        Response::Accepted
    }

    /// Sends `request` to `peer` in the background; its answer comes back as `event(answer)`.
    fn spawn_request(
        &mut self,
        peer: PeerId,
        request: Request,
        event: impl FnOnce(Result<Response, String>) -> Internal + Send + 'static,
    ) {
        let net = self.net.clone();
        let internal = self.internal.clone();
        self.tasks.spawn(async move {
            let answer = net.request(peer, request).await.map_err(|e| e.to_string());
            let _ = internal.send(event(answer)).await;
        });
    }

    fn send_reports(&mut self) {
        let target = self.coordinator();
        let mut requests = Vec::new();
        for p in &mut self.reports {
            if p.in_flight {
                continue;
            }
            let Some(coordinator) = &target else { break };
            if *coordinator == self.me {
                continue; // handled below, synchronously
            }
            let Ok(peer) = coordinator.0.parse::<PeerId>() else {
                break;
            };
            p.in_flight = true;
            let report = p.report.clone();
            let (job, task, attempt) = (report.job, report.task, report.attempt);
            requests.push((peer, Request::Report(report), (job, task, attempt)));
        }
        for (peer, request, (job, task, attempt)) in requests {
            self.spawn_request(peer, request, move |answer| Internal::ReportAnswered {
                job,
                task,
                attempt,
                answer,
            });
        }
        if target.as_ref() == Some(&self.me) {
            let mine: Vec<Report> = self.reports.drain(..).map(|p| p.report).collect();
            let me = self.me.clone();
            for report in mine {
                let (tx, _rx) = oneshot::channel();
                self.on_report(me.clone(), report, Some(tx));
            }
        }
    }

    fn on_internal(&mut self, event: Internal) {
        match event {
            Internal::Engines(engines) => {
                info!(engines = ?engines, "render engines probed");
                self.engines = engines;
            }
            Internal::Progress { job, task, frame } => {
                if let Some(r) = &mut self.running
                    && r.assignment.job == job
                    && r.assignment.task == task
                {
                    r.frames_done += 1;
                    debug!(frame, "frame rendered");
                }
            }
            Internal::WorkerDone {
                assignment,
                outcome,
            } => {
                self.running = None;
                let Some(outcome) = outcome else {
                    return;
                };
                self.reports.push(PendingReport {
                    frames: assignment.frames,
                    tile: assignment.tile,
                    report: Report {
                        job: assignment.job,
                        task: assignment.task,
                        attempt: assignment.attempt,
                        outcome,
                    },
                    in_flight: false,
                });
                self.send_reports();
            }
            Internal::ReportAnswered {
                job,
                task,
                attempt,
                answer,
            } => {
                let pos = self.reports.iter().position(|p| {
                    p.report.job == job && p.report.task == task && p.report.attempt == attempt
                });
                let Some(pos) = pos else { return };
                match answer {
                    Ok(Response::Accepted) => {
                        self.reports.remove(pos);
                    }
                    Ok(Response::Rejected(reason)) => {
                        info!(job = %job.short(), task, "report refused: {reason}");
                        self.reports.remove(pos);
                    }
                    _ => self.reports[pos].in_flight = false,
                }
            }
            Internal::AssignAnswered {
                node,
                job,
                task,
                attempt,
                answer,
            } => self.on_assign_answered(node, job, task, attempt, answer),
            Internal::Stitched { job, frame, result } => self.on_stitched(job, frame, result),
            Internal::Pulled { id, job } => {
                self.pulling.remove(&id);
                if let Some(job) = job
                    && job.id == id
                {
                    let newer = self
                        .jobs
                        .get(&id)
                        .is_none_or(|mine| job.version > mine.version);
                    if newer {
                        debug!(job = %id.short(), version = ?job.version, "job record updated");
                        self.jobs.insert(id, *job);
                    }
                }
            }
            Internal::OutputsHeld {
                from,
                report,
                result,
                reply,
            } => {
                self.verifying
                    .remove(&(report.job, report.task, report.attempt));
                match result {
                    Ok(()) => self.apply_done(&from, report, reply),
                    Err(e) => {
                        warn!(job = %report.job.short(), task = report.task, "cannot copy frames from {}: {e}", from.short());
                    }
                }
            }
        }
    }

    // ---- the tick ------------------------------------------------------------------------

    async fn on_tick(&mut self) {
        let now = Instant::now();

        // 1. Membership.
        let at = self.now();
        for id in self.membership.expire(at) {
            info!(peer = %id.short(), "peer gone");
            if let Some(term) = self.leading() {
                for job in self.jobs.values_mut() {
                    let n = job.requeue_node(&id, term);
                    if n > 0 {
                        info!(job = %job.id.short(), tasks = n, "requeued the tasks of a vanished node");
                        self.urgent = true;
                    }
                }
            }
        }

        // 2. Election.
        match self.membership.elect(at) {
            Some(Change::Lead(term)) => self.become_coordinator(term),
            Some(Change::Follow {
                claim,
                stepped_down,
            }) => {
                if stepped_down {
                    info!(coordinator = %claim.node.short(), term = %claim.term, "stepping down");
                }
                info!(coordinator = %claim.node.short(), term = %claim.term, "following");
                // Reports go to the new coordinator.
                for p in &mut self.reports {
                    p.in_flight = false;
                }
            }
            Some(Change::Nobody { stepped_down: true }) => {
                info!("stepping down: no coordinator in view");
            }
            Some(Change::Nobody { .. }) | None => {}
        }

        // 3. Anti-entropy: pull newer job records.
        let mut wanted: Vec<(JobId, PeerId)> = Vec::new();
        for (id, m) in self.membership.members() {
            let Ok(peer) = id.0.parse::<PeerId>() else {
                continue;
            };
            for d in &m.hb.jobs {
                let newer = self.jobs.get(&d.id).is_none_or(|j| d.version > j.version);
                if newer
                    && !self.pulling.contains(&d.id)
                    && !wanted.iter().any(|(id, _)| *id == d.id)
                {
                    wanted.push((d.id, peer));
                }
            }
        }
        for (id, peer) in wanted {
            if self.pulling.len() >= MAX_PULLS {
                break;
            }
            self.pulling.insert(id);
            let net = self.net.clone();
            let internal = self.internal.clone();
            self.tasks.spawn(async move {
                let job = match net.request(peer, Request::GetJob(id)).await {
                    Ok(Response::Job(job)) => Some(job),
                    _ => None,
                };
                let _ = internal.send(Internal::Pulled { id, job }).await;
            });
        }

        // 4. Coordinator work.
        if let Some(term) = self.leading() {
            self.reconcile(term);
            self.schedule(term);
            self.stitch_ready();
        }

        // 5. Worker: stop a task whose job ended; re-send reports.
        if let Some(r) = &self.running
            && self
                .jobs
                .get(&r.assignment.job)
                .is_some_and(|j| j.state.is_terminal())
            && !r.cancel.is_cancelled()
        {
            info!(job = %r.assignment.job.short(), "job ended; stopping its task");
            r.cancel.cancel();
        }
        if !self.reports.is_empty() {
            self.send_reports();
        }

        // 6. Heartbeat.
        let due = match self.last_heartbeat {
            None => true,
            Some(t) => {
                let gap = now.duration_since(t);
                gap >= Duration::from_millis(limits::HEARTBEAT_MS)
                    || (self.urgent && gap >= MIN_HEARTBEAT_GAP)
            }
        };
        if due {
            if (self.addrs.is_empty() || self.seq.is_multiple_of(10))
                && let Ok(addrs) = self.net.addresses().await
            {
                self.addrs = addrs.iter().map(|a| a.to_string()).collect();
            }
            self.seq += 1;
            self.urgent = false;
            self.last_heartbeat = Some(now);
            let hb = self.my_heartbeat(Self::load());
            if let Err(e) = self.net.publish(&Gossip::Heartbeat(hb)).await {
                debug!("heartbeat: {e}");
            }
        }
    }
}

/// Fetches the tiles of one frame, stitches them, stores the frame as a blob and copies it to
/// `target` (a second node), so that the frame exists twice before it counts.
#[allow(clippy::too_many_arguments)]
async fn stitch_frame(
    fetcher: Fetcher,
    store: BlobStore,
    net: NetHandle,
    frame: u32,
    format: OutputFormat,
    tiles: Vec<(Tile, BlobHash)>,
    hints: Vec<NodeId>,
    target: Option<PeerId>,
) -> Result<Output, StitchFailure> {
    let retry = |e: &dyn std::fmt::Display| StitchFailure::Retry(e.to_string());
    let mut files = Vec::with_capacity(tiles.len());
    for (tile, hash) in tiles {
        let path = fetcher
            .fetch(hash, hints.clone())
            .await
            .map_err(|e| retry(&format_args!("cannot fetch {tile}: {e}")))?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| retry(&format_args!("cannot read {tile}: {e}")))?;
        files.push((tile, bytes));
    }
    let encoded = tokio::task::spawn_blocking(move || crate::stitch::stitch(&files, format))
        .await
        .map_err(|e| retry(&e))?
        .map_err(|e| StitchFailure::Fatal(e.to_string()))?;
    let size = encoded.len() as u64;
    let blob = store.put_bytes(&encoded).await.map_err(|e| retry(&e))?;
    if let Some(target) = target {
        replicate(&net, target, vec![blob])
            .await
            .map_err(StitchFailure::Retry)?;
    }
    debug!(size, "frame stitched");
    Ok(Output { frame, blob, size })
}

/// Asks `target` to fetch `blobs` from this node and keep them; `Ok` once it holds them all.
async fn replicate(net: &NetHandle, target: PeerId, blobs: Vec<BlobHash>) -> Result<(), String> {
    match net.request(target, Request::Replicate(blobs)).await {
        Ok(Response::Accepted) => Ok(()),
        Ok(other) => Err(format!("{target} did not take a copy: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
