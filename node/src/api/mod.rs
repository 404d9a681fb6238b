//! The local HTTP+JSON API: what the CLI ([`crate::client`]) and the progress page ([`PAGE`],
//! served at `/`) use to talk to a node. It listens on loopback by default (`--api HOST:PORT`).
//!
//! # Who may drive it
//!
//! A web page the user happens to visit can make their browser send requests to
//! `127.0.0.1:7411`, and by DNS rebinding can even read the answers. So one layer in front of
//! every route (the page, the API, blob routes and the 404 fallback alike: [`Guard`]) checks,
//! in this order:
//!
//! 1. **Host**: the `Host` header must name `localhost`, a loopback address (`127.0.0.0/8`,
//!    `[::1]`), or the address the API is bound to or was reached at (ip:port); anything else,
//!    and a request without one, is 403. A rebound name (`evil.example` resolving to
//!    127.0.0.1) arrives with its own name as `Host`, so it is refused.
//! 2. **Token**, when [`Config::api_token`](crate::Config::api_token) is set (which
//!    [`Node::start`](crate::Node::start) requires for an API that is not on loopback): every
//!    request needs `Authorization: Bearer <token>`, else 401; `GET /` and `GET
//!    /api/v1/events` may carry it as `?token=<token>` instead (a browser cannot add a header
//!    to the address it opens, nor to an `EventSource`), and the page sends the header on its
//!    other requests. Tokens are compared by their blake3
//!    hashes, whose equality takes the same time whatever the bytes.
//! 3. **Origin**: a POST, PUT, PATCH or DELETE with an `Origin` header other than the node's own
//!    (`http://<Host>`) is 403: another site's page cannot cancel or submit. The CLI sends no
//!    `Origin` and passes.
//! 4. **Body type**: a POST body must be JSON: `POST /jobs`, `/charts` and `/charts/check`
//!    need `Content-Type: application/json` (parameters allowed), and any other POST that
//!    declares a type must declare that one, else 415. Forms and `text/plain`, which a page
//!    can send to any site without asking, are thus refused. `PUT /blobs` takes raw bytes of any declared type (no
//!    page can send a cross-site PUT without the browser asking first).
//!
//! # Routes
//!
//! Every API path starts with `/api/v1`; `GET /` is the progress page. Ids are lowercase hex in
//! paths and in JSON.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/node` | | [`NodeInfo`]: id, name, addrs, term, coordinator, store counters |
//! | GET | `/events` | | `text/event-stream`: `job`, `gone` and `peers` events as they change (see `events`) |
//! | GET | `/peers` | | [`PeersView`]: every live node and who coordinates |
//! | GET | `/jobs` | | `[Job]`, newest first |
//! | POST | `/jobs` | `JobSpec` | 201 [`Submitted`] `{"id": "<hex>"}` once the coordinator accepted it |
//! | GET | `/jobs/{id}` | | `Job`, or 404 while this node holds no copy |
//! | POST | `/jobs/{id}/cancel` | | 200 `{}` |
//! | POST | `/jobs/{id}/pause` | | 200 `{}`: no new assignments; running tasks finish (only on the node it was submitted on) |
//! | POST | `/jobs/{id}/resume` | | 200 `{}` |
//! | PUT | `/jobs/{id}/priority` | `{"priority": 0..=100}` | 200 `{}`: the highest priority is handed out first (new jobs: 50) |
//! | POST | `/jobs/{id}/rerender` | `{"frame": N}` | 200 `{}`: the task that rendered frame N goes back to the queue; a done job runs again (400 for a frame outside the job or not rendered yet, a job failed or cancelled) |
//! | DELETE | `/jobs/{id}` | | 200 `{}`: removed for everyone (cancelled first if it runs) |
//! | PUT | `/blobs` | raw bytes (at most `--max-upload-mib`, [`limits::MAX_BLOB`] at most) | [`Uploaded`] `{"hash": "<hex>", "size": N}` |
//! | GET | `/jobs/{id}/contact.png` | | a contact sheet: the finished frames' thumbnails in one PNG (see [`sheet`]) |
//! | GET | `/jobs/{id}/preview.mp4?fps=N` | | a short H.264 video of the finished frames, made with ffmpeg (503 when this node has none; see [`preview`]) |
//! | GET | `/jobs/{id}/frames.zip` | | every finished frame, as `rendermesh download` names them, in one zip streamed as it is built (404 while none is finished) |
//! | HEAD | `/blobs/{hash}` | | 200 with the size when this node holds the blob (checked), 404 otherwise; nothing is fetched |
//! | GET | `/blobs/{hash}?hint=<peer id>&hint=...` | | the blob's bytes (`application/octet-stream`), fetched from the mesh first if not here; `hint`s are peers likely to hold it |
//! | POST | `/uploads` | `{"size": N}` | 201 [`uploads::UploadState`] `{"id", "size", "received": 0}`: a resumable upload opened (see [`uploads`]) |
//! | PUT | `/uploads/{id}?offset=R` | the next bytes | [`uploads::UploadState`]; with `"hash"` once every byte is in; 409 when `R` is not what the node holds |
//! | GET | `/uploads/{id}` | | [`uploads::UploadState`]: what the node holds, to resume from |
//! | DELETE | `/uploads/{id}` | | 200 `{}`: dropped |
//! | POST | `/charts/check` | `{"text"}` | [`ChartCheck`](crate::chart::ChartCheck) `{"ok", "summary", "diagnostics": [{"line", "column", "length", "message", "suggestion"}]}` (see `charts`) |
//! | POST | `/charts` | `{"text", "name"?, "samples"?, "resolution_percent"?, "tiles"?}` | 201 [`Submitted`]: the chart built into a `.blend` here and submitted as a one-frame job; 400 naming the first problem of a chart with any |
//!
//! A job's `.blend` must be uploaded (`PUT /blobs`) to the node it is submitted to; the job
//! spec names it by hash.
//!
//! # Errors
//!
//! Every error is JSON [`ErrorBody`] `{"error": "<message>"}`, the message carrying the whole
//! cause chain, with status 400 (bad input; the message names the field or id), 401 (no or a
//! wrong token), 403 (a refused `Host` or `Origin`), 404 (unknown job, blob or route), 413
//! (upload too large), 415 (a POST body that is not JSON), 503 (no coordinator reachable yet,
//! node shutting down) or 500 (anything else).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use rendermesh_protocol::{BlobHash, Job, JobId, JobSpec, Steer, limits};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use crate::Error;
use crate::chart::ChartBuilder;
use crate::mesh::Handle;
use crate::net;
use preview::Previews;
mod archive;
mod charts;
mod events;
pub mod preview;
pub mod scenes;
pub mod sheet;
pub mod types;
pub mod uploads;

pub use types::{ErrorBody, NodeInfo, PREFIX, PeerView, PeersView, Submitted, Uploaded};

/// An error answer: a status and a message.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self(StatusCode::FORBIDDEN, message.into())
    }

    /// A local I/O failure, naming what was done to which file.
    fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Self {
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} `{}`: {e}", path.display()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug!(status = self.0.as_u16(), error = %self.1, "error answer");
        let body = ErrorBody { error: self.1 };
        let mut response = (self.0, Json(body)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme it wants.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"rendermesh\""),
            );
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::UnknownJob(_) | Error::BlobUnavailable { .. } => StatusCode::NOT_FOUND,
            Error::Protocol(_) | Error::Rejected(_) => StatusCode::BAD_REQUEST,
            Error::NoCoordinator(_) | Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(crate::store::StoreError::NoRoom { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, chain(&e))
    }
}

/// An error and its sources joined by `: `, as anyhow's `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the API runs besides the mesh: the page's chart builds and preview videos, and the
/// largest upload it takes.
#[derive(Clone, Debug)]
pub struct Services {
    /// Builds the charts typed on the page.
    pub charts: ChartBuilder,
    /// Makes preview videos, when the node has ffmpeg.
    pub previews: Previews,
    /// Reads the scene of a `.blend` the node holds, for the page's form.
    pub scenes: scenes::SceneReader,
    /// The largest file `PUT /blobs` and an upload take, in bytes (at most
    /// [`limits::MAX_BLOB`]).
    pub max_upload: u64,
}

/// The API's routes over `handle`, every one behind `guard`.
pub fn router(handle: Handle, guard: Guard, services: Services) -> Router {
    let api = Router::new()
        .route("/node", get(node))
        .route("/events", get(events::events))
        .route("/peers", get(peers))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/{id}", get(job).delete(remove))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/pause", post(pause))
        .route("/jobs/{id}/resume", post(resume))
        .route("/jobs/{id}/priority", put(priority))
        .route("/jobs/{id}/rerender", post(rerender))
        .route("/jobs/{id}/frames.zip", get(archive::frames_zip))
        .route("/jobs/{id}/contact.png", get(sheet::contact_sheet))
        .route("/jobs/{id}/preview.mp4", get(preview::preview))
        // Uploads are streamed to disk under our own limit, not buffered under axum's 2 MB one.
        .route("/blobs", put(upload).layer(DefaultBodyLimit::disable()))
        .route("/blobs/{hash}", get(download).head(held))
        .route("/blobs/{hash}/scene", get(scenes::scene))
        .route("/uploads", post(uploads::open))
        .route(
            "/uploads/{id}",
            get(uploads::state)
                .put(uploads::append)
                .delete(uploads::drop_upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/charts",
            post(charts::render_chart).layer(DefaultBodyLimit::max(charts::MAX_BODY)),
        )
        .route(
            "/charts/check",
            post(charts::check_chart).layer(DefaultBodyLimit::max(charts::MAX_BODY)),
        )
        .layer(axum::Extension(uploads::Uploads::new(services.max_upload)))
        .layer(axum::Extension(services.charts))
        .layer(axum::Extension(services.previews))
        .layer(axum::Extension(services.scenes));
    Router::new()
        .route("/", get(page))
        .nest(PREFIX, api)
        .fallback(no_route)
        // `Router::layer` wraps the fallback too: no request reaches anything unchecked. The
        // trace layer is outside, so refusals are logged like any answer.
        .layer(middleware::from_fn_with_state(guard, check))
        .layer(middleware::from_fn(trace))
        .with_state(handle)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets requests in flight
/// finish. Every request passes `guard` first.
pub async fn serve(
    listener: TcpListener,
    handle: Handle,
    guard: Guard,
    services: Services,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        debug!(%addr, token = guard.token.is_some(), "API listening");
    }
    let app = router(handle, guard, services).into_make_service_with_connect_info::<LocalAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// What every request is checked against before it reaches a route (see the module doc).
#[derive(Clone, Debug)]
pub struct Guard {
    /// The address the API is bound to, with its real port: a `Host` naming it is accepted
    /// (an API on a LAN address is reached under that address).
    bound: SocketAddr,
    /// The blake3 hash of the bearer token every request must carry, if there is one. Hashes
    /// are compared rather than the tokens: `blake3::Hash`'s `==` runs in constant time, so the
    /// time an answer takes says nothing about how much of a guess was right.
    token: Option<blake3::Hash>,
}

impl Guard {
    /// A guard for an API bound to `bound`, wanting `token` (if any) on every request.
    pub fn new(bound: SocketAddr, token: Option<&str>) -> Self {
        Self {
            bound,
            token: token.map(|t| blake3::hash(t.as_bytes())),
        }
    }

    /// Refuses a request the API must not answer; `local` is the address the connection came
    /// in on, when known.
    fn check(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        local: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        // 1. Host: stops DNS rebinding.
        let Some(host) = headers.get(header::HOST) else {
            return Err(ApiError::forbidden(
                "refused: the request has no Host header (this API answers only to requests \
                 addressed to localhost or to its own address)",
            ));
        };
        let host = host.to_str().unwrap_or_default();
        let own: Vec<SocketAddr> = std::iter::once(self.bound).chain(local).collect();
        if !host_allowed(host, &own) {
            return Err(ApiError::forbidden(format!(
                "refused Host `{}`: this API answers only to localhost, a loopback address, or \
                 its own address {} (a page under another name must not drive it)",
                host.escape_debug(),
                self.bound
            )));
        }
        // 2. The token, if this API has one.
        if let Some(expected) = self.token {
            let presented = bearer(headers).map(str::to_owned).or_else(|| {
                // The page and its event stream only: a browser opening the page, or an
                // `EventSource`, cannot send a header.
                let path = uri.path();
                let open = path == "/" || path == format!("{PREFIX}/events");
                (method == Method::GET && open)
                    .then(|| query_token(uri))
                    .flatten()
            });
            let matches = presented.is_some_and(|t| blake3::hash(t.as_bytes()) == expected);
            if !matches {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "this node's API wants its token: send `Authorization: Bearer <token>` \
                     (the CLI: --api-token FILE; the page: open /?token=<token>)"
                        .to_owned(),
                ));
            }
        }
        // 3. Origin: only the node's own page may change anything.
        let changes = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method);
        if changes && let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !same_origin(origin, host) {
                return Err(ApiError::forbidden(format!(
                    "refused a {method} from origin `{}`: only this node's own page \
                     (http://{host}) may change anything",
                    origin.escape_debug()
                )));
            }
        }
        // 4. A POST body is JSON: no form or text a page can send anywhere unasked.
        if method == Method::POST {
            let path = uri.path().strip_prefix(PREFIX).unwrap_or_default();
            let submit = path == "/jobs" || path == "/charts" || path == "/charts/check";
            match headers.get(header::CONTENT_TYPE) {
                Some(v) if is_json(v) => {}
                None if !submit => {}
                other => {
                    let given = other
                        .map(|v| format!("`{}`", v.to_str().unwrap_or("?").escape_debug()))
                        .unwrap_or_else(|| "none".to_owned());
                    return Err(ApiError(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "POST {} takes Content-Type: application/json, not {given}",
                            uri.path()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The guard's layer: refuses what [`Guard::check`] refuses, passes the rest on.
async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let local = request
        .extensions()
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|c| c.0.0);
    match guard.check(request.method(), request.uri(), request.headers(), local) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The address a connection came in on (for an API bound to `0.0.0.0`, the one the client
/// used), recorded for each connection by [`serve`].
#[derive(Clone, Copy, Debug)]
struct LocalAddr(Option<SocketAddr>);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for LocalAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self(stream.io().local_addr().ok())
    }
}

/// What a `Host` header names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostName {
    /// An IP address (`127.0.0.1`, `[::1]`).
    Ip(IpAddr),
    /// A name, lowercased.
    Name(String),
}

/// Splits a `Host` header (`name`, `name:port`, `1.2.3.4:port`, `[v6]:port`) into what it names
/// and its port; `None` when it is not a well-formed host.
fn parse_host(text: &str) -> Option<(HostName, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok();
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(port(p.strip_prefix(':')?)?),
        };
        return Some((HostName::Ip(IpAddr::V6(ip)), port));
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, p)) => (name, Some(port(p)?)),
        None => (text, None),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    if name.is_empty() || !name.chars().all(valid) {
        return None;
    }
    match name.parse() {
        Ok(ip) => Some((HostName::Ip(IpAddr::V4(ip)), port)),
        Err(_) => Some((HostName::Name(name.to_ascii_lowercase()), port)),
    }
}

/// True when `host` (a `Host` header) names this machine's loopback (`localhost`,
/// `127.0.0.0/8`, `[::1]`, any port) or one of `own` exactly (ip and port; no port means 80).
fn host_allowed(host: &str, own: &[SocketAddr]) -> bool {
    match parse_host(host) {
        None => false,
        Some((HostName::Name(name), _)) => name == "localhost",
        Some((HostName::Ip(ip), port)) => {
            ip.is_loopback()
                || own
                    .iter()
                    .any(|a| a.ip() == ip && a.port() == port.unwrap_or(80))
        }
    }
}

/// True when `origin` (an `Origin` header) is the page's own for a request to `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` query parameter of `uri`.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// True when a `Content-Type` is JSON (`application/json`, parameters allowed).
fn is_json(value: &header::HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// One span per request; logs the status and time taken at `debug`.
async fn trace(request: Request, next: Next) -> Response {
    let span = debug_span!("api", method = %request.method(), path = %request.uri().path());
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

/// The progress page: nodes, jobs, a cell per task, cancel buttons and download links, all
/// drawn in the browser from this API (one file, no dependencies).
pub const PAGE: &str = include_str!("../web/index.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn no_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {} (every API route starts with {PREFIX}; the page is at /)",
        request.method(),
        request.uri().path()
    ))
}

fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse()
        .map_err(|e: rendermesh_protocol::Error| ApiError::bad_request(e.to_string()))
}

async fn node(
    State(h): State<Handle>,
    axum::Extension(previews): axum::Extension<Previews>,
) -> Result<Json<NodeInfo>, ApiError> {
    let mut info = h.info().await?;
    info.ffmpeg = previews.version();
    Ok(Json(info))
}

async fn peers(State(h): State<Handle>) -> Result<Json<PeersView>, ApiError> {
    Ok(Json(h.peers().await?))
}

async fn jobs(State(h): State<Handle>) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(h.jobs().await?))
}

async fn job(State(h): State<Handle>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    match h.job(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

async fn submit(State(h): State<Handle>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    // Parsed by hand rather than with the `Json` extractor, so that a bad body gets a JSON
    // error naming the field (serde says "missing field `frames`").
    let spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad job spec: {e}")))?;
    spec.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = h.submit(spec).await.map_err(|e| match e {
        // The spec names a `.blend` this node does not hold: the request is at fault.
        Error::BlobUnavailable { .. } => ApiError::bad_request(format!("bad blend: {}", chain(&e))),
        e => e.into(),
    })?;
    debug!(job = %id.short(), "submitted");
    Ok(created(id))
}

/// 201 for a job the coordinator accepted: its id, and where its record is.
fn created(id: JobId) -> Response {
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("{PREFIX}/jobs/{id}"))],
        Json(Submitted { id }),
    )
        .into_response()
}

async fn cancel(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_job_id(&id)?;
    match h.cancel(id).await {
        Ok(()) => {
            debug!(job = %id.short(), "cancelled");
            Ok(Json(serde_json::json!({})))
        }
        // The coordinator refuses jobs it does not know; so do we, if we hold no copy either.
        Err(Error::Rejected(reason)) if h.job(id).await?.is_none() => {
            debug!(job = %id.short(), %reason, "cancel refused");
            Err(ApiError::not_found(format!("no job {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn pause(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    steer(h, &id, Steer::Pause).await
}

async fn resume(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    steer(h, &id, Steer::Resume).await
}

/// `PUT /jobs/{id}/priority`'s body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Priority {
    priority: u8,
}

async fn priority(
    State(h): State<Handle>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shape = format!("{{\"priority\": 0 to {}}}", limits::MAX_PRIORITY);
    let Priority { priority } = json_body(&body, &shape)?;
    steer(h, &id, Steer::Priority(priority)).await
}

/// `POST /jobs/{id}/rerender`'s body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rerender {
    frame: u32,
}

async fn rerender(
    State(h): State<Handle>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Rerender { frame } = json_body(&body, "{\"frame\": <a frame of the job>}")?;
    steer(h, &id, Steer::Rerender(frame)).await
}

/// Reads a JSON body, or answers 400 naming the `shape` it must have.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be {shape}: {e}")))
}

/// Asks the coordinator to steer job `id`: 404 for a job neither it nor this node knows.
async fn steer(h: Handle, id: &str, steer: Steer) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_job_id(id)?;
    match h.steer(id, steer).await {
        Ok(()) => {
            debug!(job = %id.short(), "steered: {steer}");
            Ok(Json(serde_json::json!({})))
        }
        Err(Error::Rejected(reason)) if h.job(id).await?.is_none() => {
            debug!(job = %id.short(), %reason, "{steer} refused");
            Err(ApiError::not_found(format!("no job {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn remove(
    State(h): State<Handle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_job_id(&id)?;
    if h.job(id).await?.is_none() {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    h.remove(id).await?;
    debug!(job = %id.short(), "removed");
    Ok(Json(serde_json::json!({})))
}

/// A file removed when dropped: an upload's temporary copy, whether the upload finished,
/// failed, or was abandoned by the client mid-way (which drops the handler's future).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where uploads are spooled: the store's own `tmp/` (same disk as the blobs, so a finished
/// upload is renamed into place; emptied when the store opens).
fn upload_dir(h: &Handle) -> PathBuf {
    h.store().tmp_dir().to_path_buf()
}

/// 413 for a file of `size` bytes (0: not known yet) over this node's `max`.
fn too_large(size: u64, max: u64) -> ApiError {
    let size = if size == 0 {
        "over the limit".to_owned()
    } else {
        format!("{size} bytes")
    };
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "upload too large ({size}): this node takes files of at most {max} bytes ({} MiB; \
             rendermesh node --max-upload-mib)",
            max >> 20
        ),
    )
}

async fn upload(
    State(h): State<Handle>,
    axum::Extension(uploads): axum::Extension<uploads::Uploads>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<Uploaded>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > uploads.max()) {
        return Err(too_large(n, uploads.max()));
    }
    h.store()
        .check_room(declared.unwrap_or(0))
        .map_err(|e| ApiError::from(Error::from(e)))?;
    let tmp = TempFile(upload_dir(&h).join(format!(
        "upload-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )));
    let mut file = tokio::fs::File::create(&tmp.0)
        .await
        .map_err(|e| ApiError::io("cannot create", &tmp.0, e))?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    let mut hasher = blake3::Hasher::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("the upload broke off: {}", chain(&e))))?;
        size += chunk.len() as u64;
        if size > uploads.max() {
            return Err(too_large(0, uploads.max()));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::io("cannot write", &tmp.0, e))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::io("cannot write", &tmp.0, e))?;
    drop(file);
    // Hashed while it arrived: moved into the store, not copied.
    let hash = BlobHash(*hasher.finalize().as_bytes());
    h.store()
        .adopt(&tmp.0, hash)
        .await
        .map_err(|e| ApiError::from(Error::from(e)))?;
    debug!(blob = %hash.short(), size, "uploaded");
    Ok(Json(Uploaded { hash, size }))
}

/// `HEAD /blobs/{hash}`: 200 (with the size) when this node holds the blob, checked; 404
/// otherwise. Nothing is fetched: the page asks before uploading a file it sent before.
async fn held(State(h): State<Handle>, Path(hash): Path<String>) -> Result<Response, ApiError> {
    let hash = held_here(&h, &hash).await?;
    let path = h.store().path(&hash);
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| ApiError::io("cannot read", &path, e))?
        .len();
    Ok(([(header::CONTENT_LENGTH, size.to_string())], Body::empty()).into_response())
}

/// The blob `hash` names, which this node must hold (checked against its hash): 400 for a
/// bad hash, 404 when it is not here.
async fn held_here(h: &Handle, hash: &str) -> Result<BlobHash, ApiError> {
    let hash: BlobHash = hash
        .parse()
        .map_err(|e: rendermesh_protocol::Error| ApiError::bad_request(e.to_string()))?;
    if !h.store().ensure(&hash).await.map_err(Error::from)? {
        return Err(ApiError::not_found(format!(
            "this node holds no blob {hash}"
        )));
    }
    Ok(hash)
}

async fn download(
    State(h): State<Handle>,
    Path(hash): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let hash: BlobHash = hash
        .parse()
        .map_err(|e: rendermesh_protocol::Error| ApiError::bad_request(e.to_string()))?;
    let mut hints = Vec::new();
    for (key, value) in query {
        if key != "hint" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{key}`: expected `hint`"
            )));
        }
        let Some(node) = value
            .parse::<libp2p::PeerId>()
            .ok()
            .and_then(|p| net::node_id(&p))
        else {
            return Err(ApiError::bad_request(format!(
                "bad hint `{value}`: expected a peer id"
            )));
        };
        hints.push(node);
    }
    let path = h.fetch(hash, hints).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::io("cannot open", &path, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::io("cannot read", &path, e))?
        .len();
    debug!(blob = %hash.short(), size, "serving");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> HostName {
        HostName::Ip(text.parse().expect("an ip"))
    }

    #[test]
    fn host_headers_parse_into_name_and_port() {
        let name = |n: &str| HostName::Name(n.to_owned());
        assert_eq!(parse_host("localhost"), Some((name("localhost"), None)));
        assert_eq!(
            parse_host("LocalHost:7411"),
            Some((name("localhost"), Some(7411)))
        );
        assert_eq!(parse_host("127.0.0.1"), Some((ip("127.0.0.1"), None)));
        assert_eq!(
            parse_host("127.3.4.5:80"),
            Some((ip("127.3.4.5"), Some(80)))
        );
        assert_eq!(parse_host("[::1]"), Some((ip("::1"), None)));
        assert_eq!(parse_host("[::1]:7411"), Some((ip("::1"), Some(7411))));
        assert_eq!(
            parse_host("evil.example:7411"),
            Some((name("evil.example"), Some(7411)))
        );
        // A name that only starts like an address is a name.
        assert_eq!(
            parse_host("127.0.0.1.evil.example"),
            Some((name("127.0.0.1.evil.example"), None))
        );
        for bad in [
            "",
            ":7411",
            "localhost:",
            "localhost:99999",
            "localhost:x",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[127.0.0.1]",
            "a b",
            "user@localhost",
            "localhost/evil",
        ] {
            assert_eq!(parse_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_loopback_and_own_hosts_are_allowed() {
        let own: Vec<SocketAddr> = vec!["192.168.1.5:7411".parse().expect("addr")];
        for good in [
            "localhost",
            "localhost:7411",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:7411",
            "127.255.0.9:8080",
            "[::1]",
            "[::1]:7411",
            "192.168.1.5:7411",
        ] {
            assert!(host_allowed(good, &own), "{good:?} should be allowed");
        }
        for bad in [
            "evil.example",
            "evil.example:7411",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "192.168.1.5",
            "192.168.1.5:7412",
            "192.168.1.6:7411",
            "0.0.0.0:7411",
            "[::]:7411",
            "",
        ] {
            assert!(!host_allowed(bad, &own), "{bad:?} should be refused");
        }
    }

    #[test]
    fn origins_bearers_and_content_types() {
        assert!(same_origin("http://127.0.0.1:7411", "127.0.0.1:7411"));
        assert!(same_origin("http://LOCALHOST:7411", "localhost:7411"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:7411"));
        assert!(!same_origin("https://127.0.0.1:7411", "127.0.0.1:7411"));
        assert!(!same_origin("null", "127.0.0.1:7411"));
        assert!(!same_origin("http://127.0.0.1:7412", "127.0.0.1:7411"));

        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("value"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            "bearer  abc ".parse().expect("value"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&headers), None);

        let json = |v: &'static str| is_json(&header::HeaderValue::from_static(v));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(!json("text/plain"));
        assert!(!json("application/jsonp"));
        assert!(!json("application/x-www-form-urlencoded"));
    }

    /// The guard's rules on their own, without a server: each check refuses what it should.
    #[test]
    fn the_guard_refuses_in_order() {
        let bound: SocketAddr = "127.0.0.1:7411".parse().expect("addr");
        let open = Guard::new(bound, None);
        let locked = Guard::new(bound, Some("0123456789abcdef"));
        let uri = |u: &'static str| axum::http::Uri::from_static(u);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, header::HeaderValue::from_static(v));
            }
            h
        };
        let status = |r: Result<(), ApiError>| r.err().map(|e| e.0.as_u16());
        let host = ("host", "127.0.0.1:7411");
        let node = uri("/api/v1/node");
        assert_eq!(
            status(open.check(&Method::GET, &node, &headers(&[host]), None)),
            None
        );
        assert_eq!(
            status(open.check(&Method::GET, &node, &headers(&[]), None)),
            Some(403)
        );
        assert_eq!(
            status(open.check(
                &Method::GET,
                &node,
                &headers(&[("host", "evil.example:7411")]),
                None
            )),
            Some(403)
        );
        // Reached at a LAN address of an API bound to 0.0.0.0: that address is its own.
        let any = Guard::new("0.0.0.0:7411".parse().expect("addr"), None);
        let lan = headers(&[("host", "10.1.2.3:7411")]);
        assert_eq!(
            status(any.check(&Method::GET, &node, &lan, None)),
            Some(403)
        );
        let local = Some("10.1.2.3:7411".parse().expect("addr"));
        assert_eq!(status(any.check(&Method::GET, &node, &lan, local)), None);

        let cancel = uri("/api/v1/jobs/00/cancel");
        let evil = ("origin", "http://evil.example");
        let own = ("origin", "http://127.0.0.1:7411");
        assert_eq!(
            status(open.check(&Method::POST, &cancel, &headers(&[host, evil]), None)),
            Some(403)
        );
        assert_eq!(
            status(open.check(&Method::POST, &cancel, &headers(&[host, own]), None)),
            None
        );
        // A cross-origin GET cannot read the answer (no CORS headers): it is not refused.
        assert_eq!(
            status(open.check(&Method::GET, &node, &headers(&[host, evil]), None)),
            None
        );

        let submit = uri("/api/v1/jobs");
        let text = ("content-type", "text/plain");
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(
            status(open.check(&Method::POST, &submit, &headers(&[host, text]), None)),
            Some(415)
        );
        assert_eq!(
            status(open.check(&Method::POST, &submit, &headers(&[host]), None)),
            Some(415)
        );
        assert_eq!(
            status(open.check(&Method::POST, &submit, &headers(&[host, json]), None)),
            None
        );
        assert_eq!(
            status(open.check(&Method::POST, &cancel, &headers(&[host, text]), None)),
            Some(415)
        );
        let octets = ("content-type", "application/octet-stream");
        assert_eq!(
            status(open.check(
                &Method::PUT,
                &uri("/api/v1/blobs"),
                &headers(&[host, octets]),
                None
            )),
            None
        );

        let right = ("authorization", "Bearer 0123456789abcdef");
        let wrong = ("authorization", "Bearer 0123456789abcdeX");
        assert_eq!(
            status(locked.check(&Method::GET, &node, &headers(&[host]), None)),
            Some(401)
        );
        assert_eq!(
            status(locked.check(&Method::GET, &node, &headers(&[host, wrong]), None)),
            Some(401)
        );
        assert_eq!(
            status(locked.check(&Method::GET, &node, &headers(&[host, right]), None)),
            None
        );
        // The query token opens the page and its event stream (GET), and nothing else.
        for open in [
            "/?token=0123456789abcdef",
            "/api/v1/events?token=0123456789abcdef",
        ] {
            assert_eq!(
                status(locked.check(&Method::GET, &uri(open), &headers(&[host]), None)),
                None,
                "{open}"
            );
        }
        let api = uri("/api/v1/node?token=0123456789abcdef");
        assert_eq!(
            status(locked.check(&Method::GET, &api, &headers(&[host]), None)),
            Some(401)
        );
        let posted = uri("/api/v1/events?token=0123456789abcdef");
        assert_eq!(
            status(locked.check(&Method::POST, &posted, &headers(&[host]), None)),
            Some(401)
        );
        let wrong_query = uri("/api/v1/events?token=0123456789abcdeX");
        assert_eq!(
            status(locked.check(&Method::GET, &wrong_query, &headers(&[host]), None)),
            Some(401)
        );
        // The Host check comes first, token or not.
        assert_eq!(
            status(locked.check(
                &Method::GET,
                &node,
                &headers(&[("host", "evil.example"), right]),
                None
            )),
            Some(403)
        );
    }
}
