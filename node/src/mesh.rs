//! The mesh actor: membership, election, the replicated job table, the coordinator and the
//! worker, in one event loop that owns all of that state.

use std::net::SocketAddr;
use std::path::PathBuf;

use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, NodeId};
use tokio::sync::{mpsc, oneshot};

use crate::store::BlobStore;
use crate::view::{NodeInfo, PeersView};
use crate::{Config, Error};

/// What the handle asks of the actor; each carries its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    Info(oneshot::Sender<NodeInfo>),
    Peers(oneshot::Sender<PeersView>),
    Jobs(oneshot::Sender<Vec<Job>>),
    Job(JobId, oneshot::Sender<Option<Job>>),
    Submit(JobSpec, oneshot::Sender<Result<JobId, Error>>),
    Cancel(JobId, oneshot::Sender<Result<(), Error>>),
}

/// A cloneable handle on a running node. Every method fails with [`Error::Shutdown`] once the
/// node is gone; none panics.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    store: BlobStore,
    fetcher: crate::fetch::Fetcher,
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

    /// Submits a job whose `.blend` is already in this node's store. Returns once the
    /// coordinator has accepted it.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobId, Error> {
        self.ask(|tx| Command::Submit(spec, tx)).await?
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: JobId) -> Result<(), Error> {
        self.ask(|tx| Command::Cancel(id, tx)).await?
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
}

impl Node {
    /// Starts a node: opens the store, starts the swarm, the mesh actor and the API.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let _ = config;
        Err(Error::Network("not yet wired".into()))
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

    /// Stops the API, the actor and the swarm, in that order, and waits for them.
    pub async fn shutdown(self) {}
}
