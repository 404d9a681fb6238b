//! The mesh actor: a thin loop around the node's core ([`crate::core::Core`]). It turns
//! network, timer, command and render events into calls on the core, and the core's actions
//! into I/O: gossip, requests, blob transfers, stitching and renders. It owns the core, so no
//! lock guards the mesh state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rendermesh_protocol::{
    Assignment, BlobHash, Engine, Gossip, Job, JobDigest, JobId, JobSpec, NodeId, Outcome, Output,
    OutputFormat, Request, Response, Steer, TableDigest, Tile,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::Multiaddr;
use crate::api::types::{NodeInfo, PeerView, PeersView};
use crate::compare;
use crate::core::membership::Member;
use crate::core::{Action, Core, Millis, Policy, Profile, ReplyTo, Saved, StitchFailure, Ticket};
use crate::db::Database;
use crate::fetch::Fetcher;
use crate::net::{self, NetEvent, NetHandle};
use crate::store::BlobStore;
use crate::worker::{self, Renderer, WorkerContext};
use crate::{Error, now_ms};

/// How often the actor ticks the core.
const TICK: Duration = Duration::from_millis(100);
/// Blobs of removed jobs that landed or were stored again this recently are not collected.
const COLLECT_GRACE: Duration = Duration::from_secs(600);
/// How long a submit or cancel keeps looking for a coordinator.
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);
/// How long a leaving node waits for the coordinator it follows to answer its leaving
/// heartbeat, in core milliseconds.
const TOLD_WAIT: Millis = 1_500;

/// What the handle asks of the actor; each carries its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Info(oneshot::Sender<NodeInfo>),
    Peers(oneshot::Sender<PeersView>),
    Jobs(oneshot::Sender<Vec<Job>>),
    Job(JobId, oneshot::Sender<Option<Job>>),
    /// The id and version of every record held, tombstones included.
    Versions(oneshot::Sender<Vec<JobDigest>>),
    /// This node's Blender version.
    Blender(oneshot::Sender<Option<String>>),
    /// A request handled by this node as if it came from itself.
    Local(Box<Request>, oneshot::Sender<Response>),
    /// Leave the mesh; answered once the heartbeat saying so is handed to the network (a
    /// coordinator first hands its term over) and the coordinator followed has answered it:
    /// with whether the gossip is still worth a wait ([`Handle::leave`]).
    Leave(oneshot::Sender<bool>),
}

/// A cloneable handle on a running node. Every method fails with [`Error::Shutdown`] once the
/// node is gone; none panics.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    store: BlobStore,
    fetcher: Fetcher,
    /// The digest of the node's job records, sent anew whenever one of them changes.
    changes: watch::Receiver<TableDigest>,
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

    /// The id and version of every job record this node holds, removed ones included, in id
    /// order: what tells which jobs changed since they were last read.
    pub async fn versions(&self) -> Result<Vec<JobDigest>, Error> {
        self.ask(Command::Versions).await
    }

    /// Wakes whenever one of the node's job records changes (its `changed()` fails once the
    /// node is gone): what the API's event stream waits on instead of polling.
    pub fn changes(&self) -> watch::Receiver<TableDigest> {
        self.changes.clone()
    }

    /// Sends `request` to whoever coordinates (through this node's core, which passes it on),
    /// retrying through coordinator changes for up to [`COORDINATOR_WAIT`].
    async fn to_coordinator(&self, request: Request) -> Result<(), Error> {
        let deadline = Instant::now() + COORDINATOR_WAIT;
        loop {
            let answer = self
                .ask(|tx| Command::Local(Box::new(request.clone()), tx))
                .await?;
            let last = match answer {
                Response::Accepted | Response::Job(_) => return Ok(()),
                Response::Rejected(reason) => return Err(Error::Rejected(reason)),
                Response::NotCoordinator(_) => "the coordinator changed".into(),
                Response::Busy(reason) => reason,
                other => format!("unexpected answer {other:?}"),
            };
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
        if spec.blender_version.is_none() {
            spec.blender_version = self.ask(Command::Blender).await?;
        }
        spec.validate()?;
        if !self.store.ensure(&spec.blend).await? {
            return Err(Error::BlobUnavailable {
                hash: spec.blend,
                reason: "upload the .blend to this node before submitting".into(),
            });
        }
        for dep in &spec.deps {
            if self.store.ensure(&dep.blob).await? {
                continue;
            }
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

    /// Leaves the mesh ([`Core::leave`]); returns, once the heartbeat saying so is handed to the
    /// network and the coordinator this node followed has answered it (or not within 1.5 s),
    /// whether the swarm should run on a little to gossip it: some peer was live and the
    /// coordinator did not answer.
    pub async fn leave(&self) -> Result<bool, Error> {
        self.ask(Command::Leave).await
    }

    /// Pauses, resumes or reprioritises a job (only on the node it was submitted on).
    pub async fn steer(&self, id: JobId, steer: Steer) -> Result<(), Error> {
        self.to_coordinator(Request::Steer { job: id, steer }).await
    }

    /// Removes a job for everyone (cancelled first if it runs).
    pub async fn remove(&self, id: JobId) -> Result<(), Error> {
        self.to_coordinator(Request::Remove(id)).await
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

/// What the mesh actor is made of, from the composition root ([`crate::node`]).
pub(crate) struct Parts {
    /// This node.
    pub me: NodeId,
    /// What it says of itself.
    pub profile: Profile,
    /// How it runs jobs while it coordinates.
    pub policy: Policy,
    /// Its Blender version (`None`: it does not render).
    pub blender: Option<String>,
    /// The mesh secret's fingerprint, when there is one.
    pub secret: Option<String>,
    pub net: NetHandle,
    pub net_events: mpsc::Receiver<NetEvent>,
    pub store: BlobStore,
    pub fetcher: Fetcher,
    pub renderer: Arc<dyn Renderer>,
    /// Where tasks stage their files.
    pub work_dir: PathBuf,
    /// Its database, and what was in it at start.
    pub db: Database,
    pub saved: Saved,
}

/// Starts the mesh actor (and the blob store's scrub) on `tasks`, stopping on `shutdown`;
/// returns the handle on it.
pub(crate) fn spawn(parts: Parts, tasks: &mut JoinSet<()>, shutdown: CancellationToken) -> Handle {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (internal_tx, internal_rx) = mpsc::channel(256);
    // Cycles runs wherever Blender does; what else runs headless is probed once the node is
    // idle (the core asks: `Action::ProbeEngines`), so that neither starting a node nor its
    // first render waits for it.
    let engines = if parts.blender.is_some() {
        vec![Engine::Cycles]
    } else {
        Vec::new()
    };
    // Every blob left by an earlier run is checked once, in the background: a damaged one is
    // removed and the core has it fetched again. Until checked, a blob is checked on first use.
    let scrub_store = parts.store.clone();
    let scrub_tx = internal_tx.clone();
    tasks.spawn(
        async move {
            match scrub_store.scrub().await {
                Ok(damaged) => {
                    info!(damaged = damaged.len(), "blob store checked");
                    let _ = scrub_tx.send(Internal::Damaged(damaged)).await;
                }
                Err(e) => warn!("the blob store could not be checked: {e}"),
            }
        }
        .instrument(info_span!("scrub")),
    );
    let me = parts.me;
    let mut core = Core::new(me.clone(), parts.profile, parts.blender, engines, 0)
        .with_policy(parts.policy)
        .probing_engines();
    core.restore(parts.saved);
    let (changes_tx, changes) = watch::channel(core.table().digest());
    let actor = Mesh {
        core,
        changes: changes_tx,
        db: parts.db,
        secret: parts.secret,
        net: parts.net,
        store: parts.store.clone(),
        ctx: WorkerContext {
            fetcher: parts.fetcher.clone(),
            store: parts.store.clone(),
            renderer: parts.renderer,
            work_dir: parts.work_dir,
            staging: Arc::new(tokio::sync::Mutex::new(())),
        },
        internal: internal_tx,
        origin: Instant::now(),
        replies: HashMap::new(),
        next_reply: 0,
        render: None,
        ticks: 0,
        load: 0.0,
        left: None,
        tasks: JoinSet::new(),
    };
    tasks.spawn(
        actor
            .run(cmd_rx, parts.net_events, internal_rx, shutdown)
            .instrument(info_span!("node", id = %me.short())),
    );
    Handle {
        tx: cmd_tx,
        store: parts.store,
        fetcher: parts.fetcher,
        changes,
    }
}

/// Events from the actor's own spawned work.
enum Internal {
    /// The engines this node's renderer runs headless.
    Engines(Vec<Engine>),
    /// Blobs found damaged on disk, and removed.
    Damaged(Vec<BlobHash>),
    Progress {
        job: JobId,
        task: u32,
        frame: u32,
    },
    Rendered {
        /// Boxed: the spec inside makes it the largest event by far.
        assignment: Box<Assignment>,
        /// `None`: the task was cancelled, and there is nothing to report.
        outcome: Option<Outcome>,
    },
    Answered {
        ticket: Ticket,
        answer: Result<Response, String>,
    },
    Fetched {
        ticket: Ticket,
        result: Result<(), String>,
    },
    Stitched {
        ticket: Ticket,
        result: Result<Output, StitchFailure>,
    },
    Compared {
        ticket: Ticket,
        result: Result<bool, String>,
    },
}

struct Mesh {
    /// The mesh's rules ([`crate::core`]).
    core: Core,
    /// Tells the handles when a job record changed ([`Handle::changes`]).
    changes: watch::Sender<TableDigest>,
    /// Where the core's records are written before it acts on them.
    db: Database,
    /// The mesh secret's fingerprint, when there is one.
    secret: Option<String>,
    net: NetHandle,
    store: BlobStore,
    ctx: WorkerContext,
    internal: mpsc::Sender<Internal>,
    /// What [`core::Millis`] count from: when the actor started.
    origin: Instant,
    /// Requests waiting for the core's answer, by the number the core knows them by.
    replies: HashMap<u64, oneshot::Sender<Response>>,
    next_reply: u64,
    /// Stops the render under way.
    render: Option<CancellationToken>,
    /// Ticks since the addresses were last asked for.
    ticks: u64,
    /// The CPU load, read about every second (for the heartbeat).
    load: f32,
    /// Answers [`Command::Leave`] once its heartbeat is handed to the network and the
    /// coordinator has answered it (or [`TOLD_WAIT`] has passed): when the leave began.
    left: Option<(oneshot::Sender<bool>, Millis)>,
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
            self.perform().await;
            let digest = self.core.table().digest();
            self.changes.send_if_modified(|last| {
                let changed = *last != digest;
                *last = digest;
                changed
            });
            let now = self.now();
            let told = self.core.has_told();
            if self.core.has_left()
                && let Some((tx, _)) = self
                    .left
                    .take_if(|(_, since)| told || now >= *since + TOLD_WAIT)
            {
                // Only the gossip is left to send: worth waiting for if anyone may hear it
                // and no coordinator accepted the leaving heartbeat (this node coordinated, or
                // its coordinator did not answer). Anyone: a member, or any connection (a node
                // that stood still, its process starved on a busy machine, may have dropped
                // live peers from its view; they still hear its gossip).
                let heard = self.core.was_heard_leaving();
                let anyone =
                    self.core.membership().members().next().is_some() || self.net.contacts() > 0;
                let _ = tx.send(!heard && anyone);
            }
        }
        if let Some(r) = &self.render {
            r.cancel();
        }
        self.tasks.shutdown().await;
        debug!("mesh actor stopped");
    }

    /// Now, on the core's clock.
    fn now(&self) -> Millis {
        self.origin.elapsed().as_millis() as Millis
    }

    /// The kept jobs in which `node` is suspect, by id.
    fn suspect_in(&self, node: &NodeId) -> Vec<String> {
        let jobs = self.core.table().suspected(node);
        jobs.iter().map(ToString::to_string).collect()
    }

    /// The one-minute load average over the cores (the cores counted once: the count reads
    /// several files).
    fn load() -> f32 {
        static CORES: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64
        });
        let one = sysinfo::System::load_average()
            .map(|l| l.one)
            .unwrap_or(0.0);
        (one / cores).clamp(0.0, 1.0) as f32
    }

    fn peers_view(&self) -> PeersView {
        let coordinator = self.core.coordinator();
        let me = self.core.heartbeat();
        let mut peers = vec![PeerView {
            id: self.core.me().to_string(),
            name: me.name,
            role: me.role,
            addrs: me.addrs,
            cores: me.cores,
            memory: me.memory,
            load: Self::load(),
            blender: me.blender,
            engines: me.engines,
            confinement: me.confinement,
            current: me.current,
            coordinator: coordinator.as_ref() == Some(self.core.me()),
            is_self: true,
            last_seen_ms: 0,
            disk_free: me.disk_free,
            low_disk: me.low_disk,
            suspect_in: self.suspect_in(self.core.me()),
        }];
        let now = self.now();
        let mut others: Vec<(&NodeId, &Member)> = self.core.membership().members().collect();
        others.sort_by(|a, b| a.1.hb.name.cmp(&b.1.hb.name));
        for (id, m) in others {
            let id = id.clone();
            peers.push(PeerView {
                coordinator: coordinator.as_ref() == Some(&id),
                id: id.to_string(),
                name: m.hb.name.clone(),
                role: m.hb.role,
                addrs: m.hb.addrs.clone(),
                cores: m.hb.cores,
                memory: m.hb.memory,
                load: m.hb.load,
                blender: m.hb.blender.clone(),
                engines: m.hb.engines.clone(),
                confinement: m.hb.confinement,
                current: m.hb.current.clone(),
                is_self: false,
                last_seen_ms: now.saturating_sub(self.core.membership().seen(m)),
                disk_free: m.hb.disk_free,
                low_disk: m.hb.low_disk,
                suspect_in: self.suspect_in(&id),
            });
        }
        PeersView {
            me: self.core.me().to_string(),
            term: self.core.membership().max_term().0,
            coordinator: coordinator.map(|c| c.to_string()),
            peers,
            secret: self.secret.clone(),
        }
    }

    // ---- inputs --------------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Info(tx) => {
                let profile = self.core.profile();
                let _ = tx.send(NodeInfo {
                    id: self.core.me().to_string(),
                    name: profile.name.clone(),
                    role: profile.role,
                    addrs: self.core.addrs().to_vec(),
                    blender: self.core.worker().blender().map(str::to_owned),
                    confinement: profile.confinement,
                    term: self.core.membership().max_term().0,
                    coordinator: self.core.coordinator().map(|c| c.to_string()),
                    store: self.store.stats(),
                    secret: self.secret.clone(),
                    // The API's to tell: it runs ffmpeg.
                    ffmpeg: None,
                });
            }
            Command::Peers(tx) => {
                let _ = tx.send(self.peers_view());
            }
            // A removed job's tombstone is no job for the user.
            Command::Jobs(tx) => {
                let jobs = self.core.table().newest_first();
                let kept = jobs.into_iter().filter(|j| !j.is_removed());
                let _ = tx.send(kept.cloned().collect());
            }
            Command::Job(id, tx) => {
                let job = self.core.table().get(&id).filter(|j| !j.is_removed());
                let _ = tx.send(job.cloned());
            }
            Command::Versions(tx) => {
                let _ = tx.send(self.core.table().versions());
            }
            Command::Blender(tx) => {
                let _ = tx.send(self.core.worker().blender().map(str::to_owned));
            }
            Command::Local(request, tx) => {
                let me = self.core.me().clone();
                self.request(me, *request, tx);
            }
            Command::Leave(tx) => {
                let now = self.now();
                self.core.leave(now);
                self.left = Some((tx, now));
            }
        }
    }

    /// Hands `request` to the core; its answer goes to `tx`.
    fn request(&mut self, from: NodeId, request: Request, tx: oneshot::Sender<Response>) {
        self.next_reply += 1;
        let n = self.next_reply;
        self.replies.insert(n, tx);
        let now = self.now();
        self.core.request(from, request, ReplyTo::Outside(n), now);
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Gossip {
                from,
                msg: Gossip::Heartbeat(hb),
            } => {
                let now = self.now();
                if let Some(node) = net::node_id(&from) {
                    self.core.heard(node, Arc::new(hb), now);
                }
            }
            NetEvent::Request {
                from,
                request,
                reply,
            } => match net::node_id(&from) {
                Some(node) => self.request(node, request, reply),
                None => {
                    let _ = reply.send(Response::Rejected(format!("{from} is not a node id")));
                }
            },
        }
    }

    fn on_internal(&mut self, event: Internal) {
        let now = self.now();
        match event {
            Internal::Engines(engines) => self.core.set_engines(engines),
            Internal::Damaged(blobs) => self.core.damaged(blobs, now),
            Internal::Progress { job, task, frame } => {
                debug!(frame, "frame rendered");
                self.core.progress(job, task);
            }
            Internal::Rendered {
                assignment,
                outcome,
            } => {
                self.render = None;
                self.core.rendered(&assignment, outcome, now);
            }
            Internal::Answered { ticket, answer } => self.core.answered(ticket, answer, now),
            Internal::Fetched { ticket, result } => self.core.fetched(ticket, result, now),
            Internal::Stitched { ticket, result } => self.core.stitched(ticket, result, now),
            Internal::Compared { ticket, result } => self.core.compared(ticket, result, now),
        }
    }

    async fn on_tick(&mut self) {
        // The addresses are asked for at start and about every second.
        if (self.core.addrs().is_empty() || self.ticks.is_multiple_of(10))
            && let Ok(addrs) = self.net.addresses().await
        {
            self.core
                .set_addrs(addrs.iter().map(|a| a.to_string()).collect());
        }
        // The disk is looked at about every second (one statvfs).
        if self.ticks.is_multiple_of(10) {
            let free = self.store.free_space();
            // A node low on disk takes work again only with a tenth of its reserve (and
            // 64 MiB) to spare, so that it does not flap around the line.
            let reserve = self.store.reserve();
            let margin = if self.core.worker().is_low_disk() {
                reserve / 10 + (64 << 20)
            } else {
                0
            };
            let low = free.is_some_and(|f| f < reserve.saturating_add(margin));
            self.core.set_disk(free, low);
        }
        self.ticks += 1;
        let now = self.now();
        self.core.set_contacts(self.net.contacts());
        if self.ticks % 10 == 1 {
            self.load = Self::load();
        }
        self.core.tick(now, now_ms(), self.load);
    }

    // ---- outputs -------------------------------------------------------------------------

    /// Carries out what the core asked for.
    async fn perform(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Persist(persist) => {
                    // On this task, before the next action: nothing is said or done about a
                    // record a power cut could take back. A failed write is loud; the node
                    // carries on (its peers hold the records too).
                    let started = Instant::now();
                    match self.db.write(&persist) {
                        Ok(()) => debug!(
                            jobs = persist.jobs.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "job table written"
                        ),
                        Err(e) => error!("the job table could not be written to disk: {e}"),
                    }
                }
                Action::Publish(hb) => {
                    if let Err(e) = self.net.publish(&Gossip::Heartbeat(hb)).await {
                        debug!("heartbeat: {e}");
                    }
                }
                Action::Dial { peer, addrs } => {
                    let Some(peer) = net::peer_id(&peer) else {
                        continue;
                    };
                    let addrs: Vec<Multiaddr> =
                        addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    let net = self.net.clone();
                    self.tasks.spawn(async move {
                        let _ = net.dial(peer, addrs).await;
                    });
                }
                Action::Send {
                    to,
                    request,
                    ticket,
                } => {
                    let net = self.net.clone();
                    let internal = self.internal.clone();
                    self.tasks.spawn(async move {
                        let answer = match net::peer_id(&to) {
                            Some(peer) => {
                                net.request(peer, request).await.map_err(|e| e.to_string())
                            }
                            None => Err(format!("{to} is not a peer id")),
                        };
                        let _ = internal.send(Internal::Answered { ticket, answer }).await;
                    });
                }
                Action::Reply { to, response } => {
                    if let Some(tx) = self.replies.remove(&to) {
                        let _ = tx.send(response);
                    }
                }
                Action::Fetch {
                    blobs,
                    hints,
                    ticket,
                } => {
                    let fetcher = self.ctx.fetcher.clone();
                    let internal = self.internal.clone();
                    self.tasks.spawn(async move {
                        let result = fetcher
                            .fetch_all(blobs, hints)
                            .await
                            .map_err(|e| e.to_string());
                        let _ = internal.send(Internal::Fetched { ticket, result }).await;
                    });
                }
                Action::Stitch {
                    job,
                    frame,
                    format,
                    tiles,
                    hints,
                    copy_to,
                    ticket,
                } => {
                    let fetcher = self.ctx.fetcher.clone();
                    let store = self.store.clone();
                    let net = self.net.clone();
                    let internal = self.internal.clone();
                    let target = copy_to.as_ref().and_then(net::peer_id);
                    let span = info_span!("stitch", job = %job.short(), frame);
                    self.tasks.spawn(
                        async move {
                            let result = stitch_frame(
                                fetcher, store, net, job, frame, format, tiles, hints, target,
                            )
                            .await;
                            let _ = internal.send(Internal::Stitched { ticket, result }).await;
                        }
                        .instrument(span),
                    );
                }
                Action::Compare {
                    checked,
                    check,
                    hints,
                    ticket,
                } => {
                    let fetcher = self.ctx.fetcher.clone();
                    let internal = self.internal.clone();
                    let span =
                        info_span!("compare", checked = %checked.short(), check = %check.short());
                    self.tasks.spawn(
                        async move {
                            let result = compare(fetcher, checked, check, hints).await;
                            let _ = internal.send(Internal::Compared { ticket, result }).await;
                        }
                        .instrument(span),
                    );
                }
                Action::Render { assignment, from } => self.start_render(*assignment, from),
                Action::CancelRender => {
                    if let Some(r) = &self.render {
                        r.cancel();
                    }
                }
                Action::Prepare { job, spec, origin } => {
                    let span = info_span!("prepare", job = %job.short());
                    let ctx = self.ctx.clone();
                    self.tasks
                        .spawn(worker::prepare(ctx, job, *spec, origin).instrument(span));
                }
                Action::ProbeEngines => {
                    let probe = self.ctx.renderer.clone();
                    let tx = self.internal.clone();
                    self.tasks.spawn(
                        async move {
                            let engines = probe.engines().await;
                            let _ = tx.send(Internal::Engines(engines)).await;
                        }
                        .instrument(info_span!("engines")),
                    );
                }
                Action::Collect(blobs) => {
                    let store = self.store.clone();
                    self.tasks.spawn(
                        async move {
                            match store.collect(blobs, COLLECT_GRACE).await {
                                Ok((count, bytes)) => {
                                    info!(blobs = count, bytes, "blobs of removed jobs collected");
                                }
                                Err(e) => warn!("blobs of removed jobs not collected: {e}"),
                            }
                        }
                        .instrument(info_span!("collect")),
                    );
                }
            }
        }
    }

    fn start_render(&mut self, a: Assignment, from: NodeId) {
        let cancel = CancellationToken::new();
        self.render = Some(cancel.clone());
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
                    .send(Internal::Rendered {
                        assignment: Box::new(a),
                        outcome,
                    })
                    .await;
            }
            .instrument(span),
        );
    }
}

/// Fetches the tiles of one frame, stitches them, stores the frame as a blob and copies it to
/// `target` (a second node), so that the frame exists twice before it counts.
#[allow(clippy::too_many_arguments)]
async fn stitch_frame(
    fetcher: Fetcher,
    store: BlobStore,
    net: NetHandle,
    job: JobId,
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
    // The frame, and its thumbnail from the same pixels.
    let (encoded, thumb) = tokio::task::spawn_blocking(move || {
        let pixels = crate::stitch::stitch_pixels(&files)?;
        let thumb = crate::thumb::png(&crate::thumb::thumbnail(&pixels, None));
        Ok::<_, crate::stitch::StitchError>((crate::stitch::encode(pixels, format)?, thumb))
    })
    .await
    .map_err(|e| retry(&e))?
    .map_err(|e| StitchFailure::Fatal(e.to_string()))?;
    let size = encoded.len() as u64;
    let blob = store.put_bytes(&encoded).await.map_err(|e| retry(&e))?;
    let thumb = match thumb {
        Ok(png) => Some(store.put_bytes(&png).await.map_err(|e| retry(&e))?),
        Err(e) => {
            warn!("no thumbnail: {e}");
            None
        }
    };
    if let Some(target) = target {
        let blobs = std::iter::once(blob).chain(thumb).collect();
        replicate(&net, target, job, blobs)
            .await
            .map_err(StitchFailure::Retry)?;
    }
    debug!(size, "frame stitched");
    Ok(Output {
        frame,
        blob,
        size,
        thumb,
    })
}

/// Fetches two renders of one frame and says whether they hold the same pixels: a render that
/// is not an image differs. `Err`: they could not be fetched or read.
async fn compare(
    fetcher: Fetcher,
    checked: BlobHash,
    check: BlobHash,
    hints: Vec<NodeId>,
) -> Result<bool, String> {
    let read = |what: &'static str, hash: BlobHash| {
        let (fetcher, hints) = (fetcher.clone(), hints.clone());
        async move {
            let path = fetcher
                .fetch(hash, hints)
                .await
                .map_err(|e| format!("cannot fetch {what}: {e}"))?;
            tokio::fs::read(&path)
                .await
                .map_err(|e| format!("cannot read {what}: {e}"))
        }
    };
    let first = read("the render checked", checked).await?;
    let second = read("the check", check).await?;
    let found = tokio::task::spawn_blocking(move || compare::same_pixels(&first, &second))
        .await
        .map_err(|e| e.to_string())?;
    match found {
        Ok(c) if c.is_same() => Ok(true),
        Ok(c) => {
            warn!("the renders differ: {c}");
            Ok(false)
        }
        Err(e) => {
            warn!("the renders differ: {e}");
            Ok(false)
        }
    }
}

/// Asks `target` to fetch `blobs` of `job` from this node and keep them; `Ok` once it holds
/// them all.
async fn replicate(
    net: &NetHandle,
    target: PeerId,
    job: JobId,
    blobs: Vec<BlobHash>,
) -> Result<(), String> {
    match net.request(target, Request::Replicate { job, blobs }).await {
        Ok(Response::Accepted) => Ok(()),
        Ok(other) => Err(format!("{target} did not take a copy: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
