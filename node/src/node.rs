//! The composition root: [`Node::start`] builds a node from a [`Config`] (data directory,
//! identity, blob store, swarm, mesh actor, local API) and [`Node::shutdown`] stops it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rendermesh_protocol::{Confinement, NodeId, Role};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::Services;
use crate::api::preview::Previews;
use crate::api::scenes::SceneReader;
use crate::api::types::NodeInfo;
use crate::chart::ChartBuilder;
use crate::core::Profile;
use crate::db::Database;
use crate::fetch::Fetcher;
use crate::mesh::{self, Handle, Parts};
use crate::net::{self, NetConfig};
use crate::probe_cache::ProbeCache;
use crate::render::{Blender, Sandbox};
use crate::store::BlobStore;
use crate::worker::{BlenderRenderer, Renderer};
use crate::{Config, Error};

/// How long a node stopping waits for its mesh actor to say it is leaving (a coordinator
/// hands its term over first, for up to `core::node::HANDOVER_MS`).
const LEAVE_WAIT: Duration = Duration::from_secs(5);
/// How long the swarm runs on to gossip the leaving heartbeat when no coordinator answered it
/// (a leaving coordinator, or one whose coordinator was silent): 250 ms was not always enough
/// on a machine busy with Blender, and the peers then waited out the timeout.
const LEAVE_LINGER: Duration = Duration::from_millis(500);

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
    ///
    /// Refuses ([`Error::ApiWithoutToken`]) to serve the API on an address that is not loopback
    /// unless `config.api_token` is set, and ([`Error::BadApiToken`]) a token too short to use.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let sandbox = sandbox_of(&config);
        let machine = crate::secret::machine_dir(&config.data_dir);
        let mut renderer = BlenderRenderer::new(
            Blender::new(config.blender.clone(), config.threads).with_sandbox(sandbox),
        )
        .with_probe_cache(ProbeCache::new(machine));
        if config.spare_blender {
            renderer = renderer.with_spare();
        }
        let renderer = Arc::new(renderer);
        Self::start_with_renderer(config, renderer).await
    }

    /// Starts a node with the given renderer. The CLI always passes real Blender; tests of
    /// scheduling and failure handling may pass a fake.
    pub async fn start_with_renderer(
        config: Config,
        renderer: Arc<dyn Renderer>,
    ) -> Result<Self, Error> {
        // Before anything is created: an API reachable from other machines needs a token.
        check_api(&config)?;
        let data_dir = config.data_dir.clone();
        // Every scene and frame lives under it: owner-only, whoever created it.
        crate::secret::create_private_dir(&data_dir)
            .and_then(|()| crate::secret::make_private(&data_dir))
            .map_err(|source| Error::Io {
                what: "cannot create the data directory",
                path: data_dir.clone(),
                source,
            })?;
        let key = net::load_identity(&data_dir).map_err(|e| Error::Network(e.to_string()))?;
        let peer_id = key.public().to_peer_id();
        let me = net::node_id(&peer_id)
            .ok_or_else(|| Error::Network(format!("peer id {peer_id} is too long")))?;
        let store = BlobStore::open(&data_dir.join("store"))?;
        store.set_reserve(config.min_free_disk);
        let db = Database::open(&data_dir.join("jobs.redb"))?;
        let saved = db.load()?;
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
        if blender_version.is_some() {
            renderer.keep_spare(&work_dir.join("jobs"));
        }
        let memory = match sysinfo::System::new() {
            Ok(mut sys) => {
                sys.refresh_memory();
                sys.total_memory()
            }
            Err(_) => 0,
        };
        let confinement = match blender_version {
            Some(_) => renderer.confinement(),
            None if renderer.confinement() == Confinement::CannotSandbox => {
                Confinement::CannotSandbox
            }
            None => Confinement::Unsandboxed,
        };
        let profile = Profile {
            name: config.name.clone(),
            role: config.role,
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory,
            confinement,
        };
        let parts = Parts {
            me: me.clone(),
            profile,
            policy: config.policy,
            blender: blender_version.clone(),
            secret: config.secret.map(|s| s.fingerprint()),
            net: net.clone(),
            net_events,
            store: store.clone(),
            fetcher: Fetcher::new(net, store),
            renderer,
            work_dir,
            db,
            saved,
        };
        let handle = mesh::spawn(parts, &mut tasks, shutdown.child_token());

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
            let guard = crate::api::Guard::new(api.unwrap_or(addr), config.api_token.as_deref());
            let h = handle.clone();
            let token = shutdown.child_token();
            let services = Services {
                // Charts typed on the page are built with the Blender this node renders with.
                charts: ChartBuilder::new(
                    blender_version
                        .is_some()
                        .then(|| Blender::new(config.blender.clone(), config.threads)),
                ),
                previews: Previews::probe(&config.ffmpeg).await,
                // Files sent to this node are read as its renders run: in its sandbox. A node
                // that renders nothing, or cannot sandbox, reads none.
                scenes: SceneReader::new(
                    (blender_version.is_some() && confinement != Confinement::CannotSandbox).then(
                        || {
                            Blender::new(config.blender.clone(), config.threads)
                                .with_sandbox(sandbox_of(&config))
                        },
                    ),
                ),
                max_upload: config.max_upload,
            };
            tasks.spawn(async move {
                if let Err(e) = crate::api::serve(listener, h, guard, services, token).await {
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

    /// Leaves the mesh politely ([`crate::core::Core::leave`]: the peers drop this node at
    /// once, requeue its task, and elect a new coordinator if it coordinated), then stops the
    /// API, the mesh actor (cancelling a running render) and the swarm, and waits for them.
    pub async fn shutdown(mut self) {
        let left = tokio::time::timeout(LEAVE_WAIT, self.handle.leave()).await;
        if let Ok(Ok(true)) = left {
            // The swarm writes the heartbeat to its connections as it runs on; a heartbeat
            // lost anyway is caught by the peers' own timeout. (A follower whose coordinator
            // answered has nothing to wait for: the coordinator requeues its task and its
            // membership record tells the rest.)
            tokio::time::sleep(LEAVE_LINGER).await;
        }
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Refuses an API that listens beyond loopback without a token, and a token too weak to use.
/// The sandbox `config` asks Blender to run in.
fn sandbox_of(config: &Config) -> Sandbox {
    if config.sandbox {
        Sandbox::bubblewrap()
    } else {
        Sandbox::Off
    }
}

fn check_api(config: &Config) -> Result<(), Error> {
    if let Some(token) = &config.api_token {
        crate::config::check_api_token(token)
            .map_err(|reason| Error::BadApiToken { file: None, reason })?;
    }
    match config.api {
        Some(addr) if !addr.ip().is_loopback() && config.api_token.is_none() => {
            Err(Error::ApiWithoutToken { addr })
        }
        _ => Ok(()),
    }
}
