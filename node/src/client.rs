//! A typed client of the local API ([`crate::api`]), used by the CLI.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, NodeId};
use serde::de::DeserializeOwned;

use crate::view::{NodeInfo, PeersView};

/// What a call to the API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answers at the address.
    #[error("no rendermesh node answers at {addr}")]
    Unreachable {
        /// The API address.
        addr: SocketAddr,
    },
    /// The node answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The node's `error` text.
        message: String,
    },
    /// The transfer failed.
    #[error("talking to the node: {0}")]
    Http(String),
    /// A local file could not be read or written.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A client of one node's API.
#[derive(Clone, Debug)]
pub struct Client {
    addr: SocketAddr,
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node whose API listens at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Self {
            addr,
            base: format!("http://{addr}/api/v1"),
            http,
        }
    }

    fn err(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable { addr: self.addr }
        } else {
            ClientError::Http(e.to_string())
        }
    }

    async fn check(&self, r: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(ClientError::Api { status, message })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// `GET /node`.
    pub async fn node(&self) -> Result<NodeInfo, ClientError> {
        self.get("/node").await
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<PeersView, ClientError> {
        self.get("/peers").await
    }

    /// `GET /jobs`.
    pub async fn jobs(&self) -> Result<Vec<Job>, ClientError> {
        self.get("/jobs").await
    }

    /// `GET /jobs/{id}`; `None` when the node holds no such job (yet).
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, ClientError> {
        match self.get(&format!("/jobs/{id}")).await {
            Ok(job) => Ok(Some(job)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /jobs`.
    pub async fn submit(&self, spec: &JobSpec) -> Result<JobId, ClientError> {
        let r = self
            .http
            .post(format!("{}/jobs", self.base))
            .json(spec)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let v: serde_json::Value = self
            .check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        v["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Http(format!("no job id in {v}")))
    }

    /// `POST /jobs/{id}/cancel`.
    pub async fn cancel(&self, id: JobId) -> Result<(), ClientError> {
        let r = self
            .http
            .post(format!("{}/jobs/{id}/cancel", self.base))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.check(r).await.map(|_| ())
    }

    /// `PUT /blobs` with a file's bytes; returns its hash and size.
    pub async fn upload_file(&self, path: &Path) -> Result<(BlobHash, u64), ClientError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| ClientError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
        let r = self
            .http
            .put(format!("{}/blobs", self.base))
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let v: serde_json::Value = self
            .check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let hash = v["hash"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Http(format!("no hash in {v}")))?;
        Ok((hash, v["size"].as_u64().unwrap_or(0)))
    }

    /// `GET /blobs/{hash}` into `dest` (written whole, then renamed into place).
    pub async fn download(
        &self,
        hash: BlobHash,
        hints: &[NodeId],
        dest: &Path,
    ) -> Result<(), ClientError> {
        let query: Vec<(&str, &str)> = hints.iter().map(|h| ("hint", h.0.as_str())).collect();
        let r = self
            .http
            .get(format!("{}/blobs/{hash}", self.base))
            .query(&query)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let bytes = self
            .check(r)
            .await?
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if BlobHash::of(&bytes) != hash {
            return Err(ClientError::Http(format!("blob {hash} arrived corrupt")));
        }
        let tmp = dest.with_extension("part");
        let io = |what| {
            move |source| ClientError::Io {
                what,
                path: dest.to_path_buf(),
                source,
            }
        };
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(io("cannot write"))?;
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(io("cannot write"))?;
        Ok(())
    }
}
