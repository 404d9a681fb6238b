//! A typed client of a node's local API ([`crate::api`]), used by the CLI and by tests.
//!
//! ```no_run
//! # async fn f() -> Result<(), rendermesh_node::client::ClientError> {
//! let client = rendermesh_node::client::Client::new("127.0.0.1:7411".parse().unwrap());
//! for peer in client.peers().await?.peers {
//!     println!("{} {}", peer.name, peer.id);
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, NodeId, Steer};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::api::types::{ErrorBody, PREFIX, Submitted, Uploaded};
use crate::api::types::{NodeInfo, PeersView};

/// How long to wait for a TCP connection: the node is local, so a slow connect means none runs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a call to the API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing accepts connections at the address (no node runs there).
    #[error("no rendermesh node answers at {addr}")]
    Unreachable {
        /// The API address.
        addr: SocketAddr,
    },
    /// The node wants an API token and none was sent, or not the one it holds (HTTP 401).
    #[error(
        "the node at {addr} wants an API token: pass --api-token FILE{}",
        if *.sent { " (the token given is not this node's)" } else { "" }
    )]
    Unauthorized {
        /// The API address.
        addr: SocketAddr,
        /// True when a token was sent (and refused).
        sent: bool,
    },
    /// The node answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The node's `error` text (or its raw body if that was not an error object).
        message: String,
    },
    /// The connection failed after it was made.
    #[error("talking to the node at {addr}")]
    Transport {
        /// The API address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The node's answer is not what the API documents.
    #[error("cannot decode the node's answer to {what}")]
    Decode {
        /// The request answered.
        what: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A downloaded or uploaded blob does not hash to the name it was given.
    #[error("blob {expected} arrived as bytes hashing to {got}")]
    Corrupt {
        /// The hash asked for (or computed locally, for an upload).
        expected: BlobHash,
        /// What the bytes hashed to.
        got: BlobHash,
    },
    /// A local file could not be read or written.
    #[error("{what} `{}`", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// True when the node answered, or could not be reached, in a way that may pass: nothing
    /// listening, a broken connection, or a 503 (no coordinator yet, shutting down).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            _ => false,
        }
    }
}

/// A client of one node's API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// The API address, for errors.
    addr: SocketAddr,
    /// `http://ADDR/api/v1`.
    base: String,
    /// The connection pool.
    http: reqwest::Client,
    /// The bearer token sent with every request, for a node started with one.
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    /// Everything but the token, which must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the node whose API listens at `addr`. Connecting times out after 1 s;
    /// requests themselves do not (a download may wait for a fetch across the mesh).
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The node is local: an `http_proxy` in the environment must not be used.
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            addr,
            base: format!("http://{addr}{PREFIX}"),
            http,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request (`None`: no header), as a node
    /// started with [`Config::api_token`](crate::Config::api_token) wants.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable { addr: self.addr }
        } else {
            ClientError::Transport {
                addr: self.addr,
                source: e,
            }
        }
    }

    /// Sends a request; turns a non-2xx answer into [`ClientError::Api`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized {
                addr: self.addr,
                sent: self.token.is_some(),
            });
        }
        let text = response.text().await.map_err(|e| self.transport(e))?;
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => body.error,
            Err(_) if text.trim().is_empty() => status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned(),
            Err(_) => text,
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        response.json().await.map_err(|source| {
            if source.is_decode() {
                ClientError::Decode {
                    what: what.to_owned(),
                    source,
                }
            } else {
                self.transport(source)
            }
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.http.get(self.url(path))).await?;
        self.decode(&format!("GET {path}"), response).await
    }

    /// `GET /node`: the node itself.
    pub async fn node(&self) -> Result<NodeInfo, ClientError> {
        self.get("/node").await
    }

    /// `GET /peers`: the live membership view.
    pub async fn peers(&self) -> Result<PeersView, ClientError> {
        self.get("/peers").await
    }

    /// `GET /jobs`: every job the node holds, newest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, ClientError> {
        self.get("/jobs").await
    }

    /// `GET /jobs/{id}`; `None` while the node holds no copy of the job (it may not have
    /// replicated yet, right after a submit or a coordinator change).
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, ClientError> {
        match self.get(&format!("/jobs/{id}")).await {
            Ok(job) => Ok(Some(job)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /jobs`: submits a job whose `.blend` was uploaded to this node; returns once the
    /// coordinator accepted it.
    pub async fn submit(&self, spec: &JobSpec) -> Result<JobId, ClientError> {
        let response = self
            .send(self.http.post(self.url("/jobs")).json(spec))
            .await?;
        let submitted: Submitted = self.decode("POST /jobs", response).await?;
        Ok(submitted.id)
    }

    /// `POST /jobs/{id}/cancel`.
    pub async fn cancel(&self, id: JobId) -> Result<(), ClientError> {
        self.send(self.http.post(self.url(&format!("/jobs/{id}/cancel"))))
            .await
            .map(drop)
    }

    /// `POST /jobs/{id}/pause`, `POST /jobs/{id}/resume`, `PUT /jobs/{id}/priority` or
    /// `POST /jobs/{id}/rerender`.
    pub async fn steer(&self, id: JobId, steer: Steer) -> Result<(), ClientError> {
        let request = match steer {
            Steer::Pause => self.http.post(self.url(&format!("/jobs/{id}/pause"))),
            Steer::Resume => self.http.post(self.url(&format!("/jobs/{id}/resume"))),
            Steer::Priority(priority) => self
                .http
                .put(self.url(&format!("/jobs/{id}/priority")))
                .json(&serde_json::json!({ "priority": priority })),
            Steer::Rerender(frame) => self
                .http
                .post(self.url(&format!("/jobs/{id}/rerender")))
                .json(&serde_json::json!({ "frame": frame })),
        };
        self.send(request).await.map(drop)
    }

    /// `DELETE /jobs/{id}`: removes the job for everyone.
    pub async fn remove(&self, id: JobId) -> Result<(), ClientError> {
        self.send(self.http.delete(self.url(&format!("/jobs/{id}"))))
            .await
            .map(drop)
    }

    /// `PUT /blobs` with a file's bytes; returns its hash and size, checked against the hash
    /// of what was sent.
    ///
    /// The file is read into memory first: streaming a request body needs reqwest's `stream`
    /// feature, which this build does not enable.
    pub async fn upload_file(&self, path: &Path) -> Result<(BlobHash, u64), ClientError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| ClientError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
        let expected = BlobHash::of(&bytes);
        let response = self
            .send(
                self.http
                    .put(self.url("/blobs"))
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(bytes),
            )
            .await?;
        let uploaded: Uploaded = self.decode("PUT /blobs", response).await?;
        if uploaded.hash != expected {
            return Err(ClientError::Corrupt {
                expected,
                got: uploaded.hash,
            });
        }
        Ok((uploaded.hash, uploaded.size))
    }

    /// `GET /blobs/{hash}` into `dest`: streamed to `dest.part` while hashing, checked, then
    /// renamed into place, so `dest` only ever holds a whole, verified file. `hints` are peers
    /// likely to hold the blob, tried first if the node must fetch it.
    pub async fn download(
        &self,
        hash: BlobHash,
        hints: &[NodeId],
        dest: &Path,
    ) -> Result<(), ClientError> {
        let hints: Vec<String> = hints.iter().map(NodeId::to_string).collect();
        let query: Vec<(&str, &str)> = hints.iter().map(|h| ("hint", h.as_str())).collect();
        let mut response = self
            .send(
                self.http
                    .get(self.url(&format!("/blobs/{hash}")))
                    .query(&query),
            )
            .await?;
        let part = PartFile::new(dest);
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Io { what, path, source }
        };
        let mut file = tokio::fs::File::create(&part.0)
            .await
            .map_err(io("cannot create", &part.0))?;
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(io("cannot write", &part.0))?;
        }
        file.flush().await.map_err(io("cannot write", &part.0))?;
        drop(file);
        let got = BlobHash(*hasher.finalize().as_bytes());
        if got != hash {
            return Err(ClientError::Corrupt {
                expected: hash,
                got,
            });
        }
        tokio::fs::rename(&part.0, dest)
            .await
            .map_err(io("cannot write", dest))?;
        Ok(())
    }
}

/// `<dest>.part`, removed when dropped unless it was renamed away: a failed or abandoned
/// download leaves nothing behind.
struct PartFile(PathBuf);

impl PartFile {
    fn new(dest: &Path) -> Self {
        let mut name = dest.as_os_str().to_owned();
        name.push(".part");
        Self(PathBuf::from(name))
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        // A socket bound but never listening holds its port: nothing else can take it (as a
        // test running beside this one could once the port is free), and a connection to it
        // is refused.
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind");
        let addr = socket.local_addr().expect("its address");
        let err = Client::new(addr).node().await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert!(err.is_transient());
    }

    #[test]
    fn part_files_sit_next_to_their_destination() {
        let p = PartFile::new(Path::new("/out/shot_0001.png"));
        assert_eq!(p.0, Path::new("/out/shot_0001.png.part"));
    }
}
