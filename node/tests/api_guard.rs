//! The local API's guard (`rendermesh_node::api::Guard`), against a real node: a web page must
//! not drive the API. Requests are written by hand on a TCP stream, so that `Host`, `Origin`,
//! `Content-Type` and `Authorization` are exactly what each test says.

use std::net::SocketAddr;
use std::time::Duration;

use rendermesh_node::api::ErrorBody;
use rendermesh_node::client::{Client, ClientError};
use rendermesh_node::{Config, Node, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A token long enough for the node to take.
const TOKEN: &str = "an-api-token-0123456789";

/// A hex job id: well-formed, held by nobody.
const JOB: &str = "000102030405060708090a0b0c0d0e0f";

/// A node on loopback (no mDNS, no secret, no Blender) serving its API at `api`.
fn config(dir: &tempfile::TempDir, api: SocketAddr, token: Option<&str>) -> Config {
    Config {
        data_dir: dir.path().join("node"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        api: Some(api),
        bootstrap: Vec::new(),
        mdns: false,
        name: "guarded".into(),
        threads: None,
        role: Role::Worker,
        blender: dir.path().join("no-blender-here"),
        secret: None,
        api_token: token.map(str::to_owned),
        sandbox: false,
        ..Config::default()
    }
}

/// Starts a node whose API listens at `api`; returns it with the address to connect to (the
/// bound port, on 127.0.0.1 when bound to every interface).
async fn start(api: &str, token: Option<&str>) -> (tempfile::TempDir, Node, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(config(&dir, api.parse().expect("addr"), token))
        .await
        .expect("node starts");
    let mut addr = node.api_addr().expect("the node serves its API");
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    (dir, node, addr)
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The JSON error's message (panics when the body is not one).
    fn error(&self) -> String {
        serde_json::from_str::<ErrorBody>(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON error ({e}): {self:?}"))
            .error
    }
}

/// Sends `request` as written and reads the whole answer (the request asks to close).
async fn send(addr: SocketAddr, request: String) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s")
        .expect("the exchange");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `METHOD path HTTP/1.1` with `headers` (each `Name: value`) and `body`.
fn request(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method != "GET" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// DNS rebinding: a page at `evil.example` whose name now resolves to 127.0.0.1 reaches the
/// API with `Host: evil.example`; every route, the page and blobs included, refuses it.
#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route() {
    let (_dir, node, addr) = start("127.0.0.1:0", None).await;
    let blob = format!("/api/v1/blobs/{}", "ab".repeat(32));
    let scene = format!("{blob}/scene");
    for path in [
        "/api/v1/node",
        "/api/v1/peers",
        "/",
        blob.as_str(),
        scene.as_str(),
        "/nothing",
    ] {
        for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
            let a = send(addr, request("GET", path, &[&format!("Host: {host}")], "")).await;
            assert_eq!(a.status, 403, "GET {path} with Host {host}: {a:?}");
            assert!(a.error().contains(host), "{a:?}");
        }
    }
    // No Host at all (HTTP/1.0 allows leaving it out) is refused too.
    let a = send(addr, "GET /api/v1/node HTTP/1.0\r\n\r\n".to_owned()).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.error().contains("Host"), "{a:?}");
    node.shutdown().await;
}

/// The CLI and the page reach the node as `127.0.0.1:PORT` or `localhost:PORT`: answered.
#[tokio::test]
async fn loopback_hosts_are_answered() {
    let (_dir, node, addr) = start("127.0.0.1:0", None).await;
    let port = addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let a = send(
            addr,
            request("GET", "/api/v1/node", &[&format!("Host: {host}")], ""),
        )
        .await;
        assert_eq!(a.status, 200, "Host {host}: {a:?}");
    }
    node.shutdown().await;
}

/// Another site's page can make the browser POST to the node, and the browser says where
/// from: a cancel from `http://evil.example` is refused, one from the CLI (no Origin) or the
/// node's own page is not.
#[tokio::test]
async fn a_cross_origin_post_is_refused() {
    let (_dir, node, addr) = start("127.0.0.1:0", None).await;
    let host = format!("Host: {addr}");
    let path = format!("/api/v1/jobs/{JOB}/cancel");
    let a = send(
        addr,
        request("POST", &path, &[&host, "Origin: http://evil.example"], ""),
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.error().contains("evil.example"), "{a:?}");
    let a = send(addr, request("POST", &path, &[&host, "Origin: null"], "")).await;
    assert_eq!(a.status, 403, "{a:?}");
    // Not refused by the guard: the job is unknown, or no coordinator is known yet.
    let a = send(addr, request("POST", &path, &[&host], "")).await;
    assert_ne!(a.status, 403, "{a:?}");
    assert!([404, 503].contains(&a.status), "{a:?}");
    let own = format!("Origin: http://{addr}");
    let a = send(addr, request("POST", &path, &[&host, &own], "")).await;
    assert!([404, 503].contains(&a.status), "{a:?}");
    node.shutdown().await;
}

/// A page can POST `text/plain` or a form anywhere without the browser asking first; a job
/// spec must come as JSON.
#[tokio::test]
async fn a_job_spec_that_is_not_json_is_refused() {
    let (_dir, node, addr) = start("127.0.0.1:0", None).await;
    let host = format!("Host: {addr}");
    let body = r#"{"name": "x"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let ct = content_type.map(|c| format!("Content-Type: {c}"));
        let headers: Vec<&str> = std::iter::once(host.as_str())
            .chain(ct.as_deref())
            .collect();
        let a = send(addr, request("POST", "/api/v1/jobs", &headers, body)).await;
        assert_eq!(a.status, 415, "{content_type:?}: {a:?}");
        assert!(a.error().contains("application/json"), "{a:?}");
    }
    // JSON passes the guard and reaches the handler, which names what is missing.
    let a = send(
        addr,
        request(
            "POST",
            "/api/v1/jobs",
            &[&host, "Content-Type: application/json; charset=utf-8"],
            body,
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().contains("bad job spec"), "{a:?}");
    // A cancel carries no body; a form posted to it is refused all the same.
    let path = format!("/api/v1/jobs/{JOB}/cancel");
    let form = "Content-Type: application/x-www-form-urlencoded";
    let a = send(addr, request("POST", &path, &[&host, form], "a=b")).await;
    assert_eq!(a.status, 415, "{a:?}");
    node.shutdown().await;
}

/// An API other machines can reach, without a token, would let anyone on the network submit
/// and cancel jobs: the node refuses to start, saying what to pass.
#[tokio::test]
async fn a_public_api_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api: SocketAddr = "0.0.0.0:0".parse().expect("addr");
    let Err(e) = Node::start(config(&dir, api, None)).await else {
        panic!("a node served a public API without a token");
    };
    let message = e.to_string();
    assert!(message.contains("--api-token"), "{message}");
    assert!(message.contains("0.0.0.0:0"), "{message}");
    // Nor with a token anyone could guess.
    let Err(e) = Node::start(config(&dir, api, Some("short"))).await else {
        panic!("a node took a 5-character token");
    };
    assert!(e.to_string().contains("16"), "{e}");
}

/// With a token, every route wants it; the page opens with it in its address and then sends
/// it itself.
#[tokio::test]
async fn a_token_guards_every_route_and_opens_the_page() {
    let (_dir, node, addr) = start("0.0.0.0:0", Some(TOKEN)).await;
    let host = format!("Host: {addr}");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let blob = format!("/api/v1/blobs/{}", "ab".repeat(32));
    let scene = format!("{blob}/scene");
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/v1/node"),
        ("GET", "/api/v1/jobs"),
        ("GET", blob.as_str()),
        ("GET", scene.as_str()),
        ("PUT", "/api/v1/blobs"),
        ("GET", "/nothing"),
    ] {
        let a = send(addr, request(method, path, &[&host], "")).await;
        assert_eq!(a.status, 401, "{method} {path}: {a:?}");
        assert!(a.error().contains("token"), "{a:?}");
        assert!(a.head.contains("www-authenticate: bearer"), "{a:?}");
        let wrong = "Authorization: Bearer an-api-token-0123456780";
        let a = send(addr, request(method, path, &[&host, wrong], "")).await;
        assert_eq!(a.status, 401, "{method} {path} with a wrong token: {a:?}");
    }
    let a = send(addr, request("GET", "/api/v1/node", &[&host, &bearer], "")).await;
    assert_eq!(a.status, 200, "{a:?}");
    // The page: with the token in its address, or as a header.
    let page = format!("/?token={TOKEN}");
    let a = send(addr, request("GET", &page, &[&host], "")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.head.contains("content-type: text/html"), "{a:?}");
    assert!(
        a.body.contains("Authorization: `Bearer"),
        "the page sends the token"
    );
    let a = send(addr, request("GET", "/", &[&host, &bearer], "")).await;
    assert_eq!(a.status, 200, "{a:?}");
    // The address token opens the page only.
    let a = send(
        addr,
        request("GET", &format!("/api/v1/node?token={TOKEN}"), &[&host], ""),
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");
    // The token does not lift the Host check.
    let a = send(
        addr,
        request("GET", &page, &["Host: evil.example", &bearer], ""),
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    node.shutdown().await;
}

/// The CLI's client sends its token on every call (an upload of raw bytes included); without
/// one it says which flag is missing.
#[tokio::test]
async fn the_client_sends_its_token() {
    let (dir, node, addr) = start("0.0.0.0:0", Some(TOKEN)).await;
    let client = Client::new(addr).with_token(Some(TOKEN.to_owned()));
    let view = client.peers().await.expect("peers, with the token");
    assert_eq!(view.me, node.id().to_string());
    let file = dir.path().join("scene.blend");
    std::fs::write(&file, b"not really a blend").expect("write");
    let (hash, size) = client.upload_file(&file).await.expect("an upload");
    assert_eq!(size, 18);
    let back = dir.path().join("back.blend");
    client.download(hash, &[], &back).await.expect("a download");
    // A cancel passes the guard (no Origin, no body type): the job is just unknown.
    match client
        .cancel("000102030405060708090a0b0c0d0e0f".parse().expect("id"))
        .await
    {
        Err(ClientError::Api { status, .. }) => assert!([404, 503].contains(&status)),
        other => panic!("a cancel of no job: {other:?}"),
    }

    let e = Client::new(addr).peers().await.expect_err("no token");
    assert!(
        matches!(e, ClientError::Unauthorized { sent: false, .. }),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.contains("--api-token"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
    let e = Client::new(addr)
        .with_token(Some("an-api-token-9999999999".to_owned()))
        .peers()
        .await
        .expect_err("a wrong token");
    assert!(
        matches!(e, ClientError::Unauthorized { sent: true, .. }),
        "{e:?}"
    );
    node.shutdown().await;
}

/// An address of this machine other machines can reach, if it has one (none: `None`). A UDP
/// "connect" sends nothing: it only asks the kernel which local address routes there.
fn lan_ip() -> Option<std::net::IpAddr> {
    ["192.0.2.1:9", "10.255.255.1:9", "8.8.8.8:9"]
        .iter()
        .find_map(|target| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect(target).ok()?;
            let ip = socket.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

/// Reached from the network at its own address, a public API (with its token) answers to that
/// address as `Host`, whether bound to it or to every interface; to other names it does not.
#[tokio::test]
async fn a_public_api_answers_to_its_own_address() {
    let Some(ip) = lan_ip() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for bind in [format!("{ip}:0"), "0.0.0.0:0".to_owned()] {
        let (_dir, node, local) = start(&bind, Some(TOKEN)).await;
        let addr = SocketAddr::new(ip, local.port());
        let own = format!("Host: {addr}");
        let a = send(addr, request("GET", "/api/v1/node", &[&own, &bearer], "")).await;
        assert_eq!(a.status, 200, "bound to {bind}, Host {addr}: {a:?}");
        let other = format!("Host: {ip}:{}", local.port().wrapping_add(1));
        let a = send(addr, request("GET", "/api/v1/node", &[&other, &bearer], "")).await;
        assert_eq!(a.status, 403, "bound to {bind}, {other}: {a:?}");
        node.shutdown().await;
    }
}
