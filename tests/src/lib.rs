//! Helpers for rendermesh's multi-node tests: real `rendermesh` processes on loopback, each with
//! its own ports and data directory, killed when dropped; real Blender for reference renders;
//! pixel comparison of decoded images.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which `scripts/test`
//! does); set `RENDERMESH_BIN` to use another build.

pub mod browser;
pub mod chaos;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `rendermesh` binary under test.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("RENDERMESH_BIN") {
        return PathBuf::from(p);
    }
    built("rendermesh")
}

/// A command running the `rendermesh` binary under test, with this test process's own machine
/// key directory (`RENDERMESH_HOME`), so that every node a test starts shares one mesh key and
/// nothing is written to the user's home.
pub fn rendermesh() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("RENDERMESH_HOME", machine_home());
    cmd
}

/// The `rendermesh-bootstrap` binary under test, like [`rendermesh`].
pub fn rendermesh_bootstrap() -> Command {
    let mut cmd = Command::new(bootstrap_bin());
    cmd.env("RENDERMESH_HOME", machine_home());
    cmd
}

/// Starts `rendermesh render BLEND --frames 1-4 --samples 16 --resolution-percent 25 --chunk 1
/// --out OUT --api API`, its output in `log` (and `log` with extension `err`): the render the
/// tests of a small mesh submit.
pub fn start_small_render(blend: &Path, out: &Path, api: SocketAddr, log: &Path) -> Result<Child> {
    Ok(rendermesh()
        .arg("render")
        .arg(blend)
        .args([
            "--frames",
            "1-4",
            "--samples",
            "16",
            "--resolution-percent",
            "25",
        ])
        .args(["--chunk", "1", "--out"])
        .arg(out)
        .arg("--api")
        .arg(api.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

/// The machine key directory of this test process (one "machine"): under the temp directory,
/// named after the process.
pub fn machine_home() -> PathBuf {
    std::env::temp_dir().join(format!("rendermesh-test-home-{}", std::process::id()))
}

/// The `rendermesh-bootstrap` binary under test.
pub fn bootstrap_bin() -> PathBuf {
    built("rendermesh-bootstrap")
}

fn built(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> Result<T> {
    wait_for_every(what, timeout, Duration::from_millis(50), check)
}

/// How long a command run by [`run_bounded`] without a time of its own may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd` to its end with stdin closed and its output captured; kills it and fails, naming
/// it, if it takes longer than `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_for(&format!("{cmd:?} to finish"), timeout, || {
        child.try_wait().ok().flatten()
    });
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// A free TCP port on loopback (bound, then released for the child to take), below the
/// kernel's ephemeral range (32768 and up on Linux): a port the kernel handed out would be
/// handed out again to the next outgoing connection of any process (the nodes' dials, the
/// tests' API polls), which could hold it when the child binds it, or when a restarted node
/// binds it again.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..1_000)
        .map(|_| rng.random_range(20_000..32_000))
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .ok()
        })
        .unwrap_or(0)
}

/// A GET on a node's API; returns the JSON body (`None` when the node does not answer).
pub fn api_get(api: SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(api, path)?.1).ok()
}

/// A GET on a node's HTTP server; returns the headers and the body of a 200 answer.
pub fn http_get(api: SocketAddr, path: &str) -> Option<(String, String)> {
    let (head, body) = http_get_bytes(api, path)?;
    Some((head, String::from_utf8(body).ok()?))
}

/// [`http_get`], the body as bytes.
pub fn http_get_bytes(api: SocketAddr, path: &str) -> Option<(String, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {api}\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(answer[..end].to_vec()).ok()?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some((head, answer[end + 4..].to_vec()))
}

/// A request with no body (`method` such as `DELETE`) on a node's HTTP server; returns the
/// status code.
pub fn http_status(api: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let text = http_exchange(api, &format!("{method} {path}"), "", b"")?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A request with a body on a node's HTTP server; returns the status code and the body.
pub fn http_send(
    api: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let text = http_exchange(
        api,
        &format!("{method} {path}"),
        &format!("Content-Type: {content_type}\r\n"),
        body,
    )?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// Sends `line` (method and path) with `headers` (each ending in CRLF) and `body` over
/// HTTP/1.0, and reads the whole answer (within 30 s).
fn http_exchange(api: SocketAddr, line: &str, headers: &str, body: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{line} HTTP/1.0\r\nHost: {api}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// One `rendermesh node` process.
pub struct MeshNode {
    child: Option<Child>,
    /// Its API address.
    pub api: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its peer id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its multiaddrs (with `/p2p/<id>`).
    pub addrs: Vec<String>,
    /// Where its log goes.
    pub log: PathBuf,
}

impl MeshNode {
    /// Starts a node named `name` under `root/name`, on loopback, without mDNS, joining
    /// `bootstrap` (if any). Waits until its API answers and it listens.
    pub fn start(root: &Path, name: &str, bootstrap: Option<&MeshNode>) -> Result<Self> {
        Self::start_with(root, name, bootstrap, &["--threads", "1"])
    }

    /// Like [`MeshNode::start`], with extra arguments.
    pub fn start_with(
        root: &Path,
        name: &str,
        bootstrap: Option<&MeshNode>,
        extra: &[&str],
    ) -> Result<Self> {
        Self::start_at_home(root, name, bootstrap, extra, &machine_home())
    }

    /// Like [`MeshNode::start_with`], on a machine of its own: its machine key directory
    /// (`RENDERMESH_HOME`) is `home`.
    pub fn start_at_home(
        root: &Path,
        name: &str,
        bootstrap: Option<&MeshNode>,
        extra: &[&str],
        home: &Path,
    ) -> Result<Self> {
        Self::start_with_env(root, name, bootstrap, extra, &[("RENDERMESH_HOME", home)])
    }

    /// Like [`MeshNode::start_with`], with environment variables set for the node (after
    /// `RENDERMESH_HOME`, which they may override).
    pub fn start_with_env(
        root: &Path,
        name: &str,
        bootstrap: Option<&MeshNode>,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Self> {
        let data_dir = root.join(name);
        let log = root.join(format!("{name}.log"));
        Self::start_in(data_dir, log, name, bootstrap, extra, env)
    }

    /// SIGKILLs the node if it runs, then starts it again on its data directory (its
    /// identity, blobs and job table), with its machine key, joining `bootstrap`. Its log
    /// goes on in `NAME.again.log`.
    pub fn restart(&mut self, bootstrap: Option<&MeshNode>) -> Result<()> {
        self.kill();
        let log = self.log.with_extension("again.log");
        let again = Self::start_in(
            self.data_dir.clone(),
            log,
            &self.name.clone(),
            bootstrap,
            &["--threads", "1"],
            &[("RENDERMESH_HOME", &machine_home())],
        )?;
        *self = again;
        Ok(())
    }

    fn start_in(
        data_dir: PathBuf,
        log: PathBuf,
        name: &str,
        bootstrap: Option<&MeshNode>,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<Self> {
        std::fs::create_dir_all(&data_dir)?;
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = rendermesh();
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .arg("--api")
            .arg(api.to_string())
            .arg("--no-mdns")
            .args(["--name", name])
            .args(extra);
        // A spare Blender per node costs every test a Blender start-up per node at once: only
        // the tests that ask for one (`--spare-blender`) keep it.
        if !extra.contains(&"--spare-blender") {
            cmd.arg("--no-spare-blender");
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        if let Some(b) = bootstrap {
            let addr = b
                .addrs
                .iter()
                .find(|a| a.contains("/tcp/"))
                .context("bootstrap node has no TCP address")?;
            cmd.arg("--bootstrap").arg(addr);
        }
        Self::launch(cmd, api, data_dir, name, log)
    }

    /// Starts `rendermesh-bootstrap` named `name` under `root/name` on loopback TCP `port`
    /// (fixed, so a restart keeps its address).
    pub fn start_bootstrap(root: &Path, name: &str, port: u16) -> Result<Self> {
        Self::start_bootstrap_with(root, name, port, &[])
    }

    /// Like [`MeshNode::start_bootstrap`], with extra arguments.
    pub fn start_bootstrap_with(
        root: &Path,
        name: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<Self> {
        let data_dir = root.join(name);
        std::fs::create_dir_all(&data_dir)?;
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let log = root.join(format!("{name}.log"));
        let mut cmd = rendermesh_bootstrap();
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(format!("/ip4/127.0.0.1/tcp/{port}"))
            .arg("--api")
            .arg(api.to_string())
            .arg("--no-mdns")
            .args(["--name", name])
            .args(extra);
        Self::launch(cmd, api, data_dir, name, log)
    }

    fn launch(
        mut cmd: Command,
        api: SocketAddr,
        data_dir: PathBuf,
        name: &str,
        log: PathBuf,
    ) -> Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        let out_file = std::fs::File::create(log.with_extension("out"))?;
        let child = cmd
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(out_file)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let mut node = Self {
            child: Some(child),
            api,
            data_dir,
            id: String::new(),
            name: name.to_owned(),
            addrs: Vec::new(),
            log,
        };
        let info = wait_for(
            &format!("node {name} to listen"),
            Duration::from_secs(30),
            || {
                let v = api_get(api, "/api/v1/node")?;
                let addrs = v["addrs"].as_array()?;
                (!addrs.is_empty()).then_some(v)
            },
        )
        .map_err(|e| anyhow!("{e}\n--- log of {name} ---\n{}", node.log_text()))?;
        node.id = info["id"].as_str().unwrap_or_default().to_owned();
        node.addrs = info["addrs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(node)
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails unless the node's session for its first job was the spare Blender it kept
    /// (`--spare-blender`).
    pub fn assert_session_from_spare(&self) {
        let log = self.log_text();
        assert!(
            log.contains("Blender session started (the spare)"),
            "{} rendered its first job without its spare Blender",
            self.name
        );
    }

    /// Fails unless the node started Blender once at most for the one job it rendered, however
    /// many tasks: one session serves them all; only a render stopped mid-task (a backup whose
    /// task its worker ended first) kills it, and the next task starts another.
    pub fn assert_one_blender_start(&self) {
        let log = self.log_text();
        let starts = log.matches("Blender session started").count();
        let stopped = log
            .matches("the coordinator took the task back; stopping it")
            .count();
        assert!(
            starts <= 1 + stopped,
            "{} started Blender {starts} times for one job, with {stopped} renders stopped",
            self.name
        );
    }

    /// What the node printed on its standard output so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERMs the node, as a person stopping it does, and waits (up to `timeout`) for it to
    /// exit; fails when it does not.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the node is not running")?;
        signal(&[child.id()], "TERM")?;
        let exited = wait_for(&format!("{} to exit", self.name), timeout, || {
            child.try_wait().ok().flatten()
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited
    }

    /// Whether this node's log has a line holding every one of `words`.
    pub fn logged(&self, words: &[&str]) -> bool {
        std::fs::read_to_string(&self.log)
            .is_ok_and(|log| log.lines().any(|l| words.iter().all(|w| l.contains(w))))
    }

    /// SIGKILLs the node (no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A GET on this node's API.
    pub fn get(&self, path: &str) -> Option<Value> {
        api_get(self.api, path)
    }

    /// The node's live peers view.
    pub fn peers(&self) -> Option<Value> {
        self.get("/api/v1/peers")
    }

    /// Runs `rendermesh ARGS --api <this node>` and returns its output (bounded by
    /// [`COMMAND_TIMEOUT`]).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        run_bounded(
            rendermesh()
                .args(args)
                .arg("--api")
                .arg(self.api.to_string()),
            COMMAND_TIMEOUT,
        )
    }
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every process descended from `pid` (its children, theirs, and so on), read from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`, where COMM may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Sends `signal` (a name such as `STOP` or `CONT`) to every process of `pids` still there.
pub fn signal(pids: &[u32], signal: &str) -> Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    // `kill` fails for a process gone meanwhile, and still signals the others.
    run_bounded(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string)),
        Duration::from_secs(10),
    )?;
    Ok(())
}

/// SIGKILLs every node of `nodes` at once (a power cut): every signal is sent before any
/// node is waited for.
pub fn kill_all(nodes: &mut [MeshNode]) {
    for node in nodes.iter_mut() {
        if let Some(c) = &mut node.child {
            let _ = c.kill();
        }
    }
    for node in nodes.iter_mut() {
        node.kill();
    }
}

/// Starts `n` nodes: the first alone, the others bootstrapping to it. Waits until every node
/// sees all `n` and they agree on one coordinator.
pub fn cluster(root: &Path, n: usize) -> Result<Vec<MeshNode>> {
    cluster_with(root, n, &["--threads", "1"])
}

/// [`cluster`], each node started with `extra` arguments.
pub fn cluster_with(root: &Path, n: usize, extra: &[&str]) -> Result<Vec<MeshNode>> {
    let mut nodes = vec![MeshNode::start_with(root, "node-1", None, extra)?];
    for i in 2..=n {
        let node = MeshNode::start_with(root, &format!("node-{i}"), Some(&nodes[0]), extra)?;
        nodes.push(node);
    }
    wait_for(
        "every node to see the whole mesh and one coordinator",
        Duration::from_secs(30),
        || agreed_coordinator(&nodes, n),
    )
    .map_err(|e| {
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log_text()))
            .collect();
        anyhow!("{e}\n{}", logs.join("\n"))
    })?;
    Ok(nodes)
}

/// The coordinator every live node in `nodes` agrees on, once each sees `n` peers.
pub fn agreed_coordinator(nodes: &[MeshNode], n: usize) -> Option<String> {
    let mut coordinator = None;
    for node in nodes.iter().filter(|n| n.child.is_some()) {
        let peers = node.peers()?;
        if peers["peers"].as_array()?.len() != n {
            return None;
        }
        let c = peers["coordinator"].as_str()?.to_owned();
        match &coordinator {
            None => coordinator = Some(c),
            Some(prev) if *prev == c => {}
            Some(_) => return None,
        }
    }
    coordinator
}

/// Makes the example scene (via `rendermesh example-scene`) at `path`.
pub fn example_scene(path: &Path) -> Result<()> {
    let out = run_bounded(
        rendermesh()
            .arg("example-scene")
            .arg(path)
            .stdin(Stdio::null()),
        COMMAND_TIMEOUT,
    )?;
    if !out.status.success() || !path.exists() {
        bail!(
            "example-scene failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Renders `start..=end` of `blend` directly with `blender -b` (no mesh), with the same settings
/// script and values a worker uses, plus `settings` for the script (e.g. `--exact`: the settings
/// every tile is rendered with, applied to the whole frame). Files land in `out` as
/// `ref_NNNNN.png`.
pub fn blender_direct(
    blend: &Path,
    out: &Path,
    (start, end): (u32, u32),
    samples: u32,
    percent: u32,
    settings: &[&str],
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let script = out.join("settings.py");
    std::fs::write(&script, rendermesh_scene::SETTINGS_PY)?;
    let output = run_bounded(
        Command::new("blender")
            .args(["-b", "--factory-startup", "-Y"])
            .arg(blend)
            .args(["-E", "CYCLES", "-t", "2", "--python-exit-code", "2", "-P"])
            .arg(&script)
            .arg("-o")
            .arg(out.join("ref_#####"))
            .args(["-F", "PNG", "-x", "1", "-s"])
            .arg(start.to_string())
            .arg("-e")
            .arg(end.to_string())
            .arg("-a")
            .arg("--")
            .args(["--samples", &samples.to_string()])
            .args(["--resolution-percent", &percent.to_string()])
            .args(settings),
        COMMAND_TIMEOUT,
    )?;
    if !output.status.success() {
        bail!(
            "blender -b failed with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The fixture builder for scenes with external files (`scripts/deps_scene.py`).
pub const DEPS_SCENE_PY: &str = include_str!("scripts/deps_scene.py");

/// A scene that uses every kind of external file the mesh must ship, built by
/// [`DEPS_SCENE_PY`] under `dir` (which it may not outlive): `proj/main.blend` (frames 1-3)
/// with a relative texture, an absolute one outside its directory, one that climbs
/// (`//../shared/b.png`), a linked library with its own texture, an image sequence and a font;
/// and `proj/missing.blend`, whose texture `//tex/gone.png` does not exist.
pub struct DepsScene {
    /// The directory everything is under.
    pub dir: PathBuf,
    /// `proj/main.blend`.
    pub main: PathBuf,
    /// `proj/missing.blend`.
    pub missing: PathBuf,
}

impl DepsScene {
    /// Builds the scene under `dir`.
    pub fn build(dir: &Path) -> Result<Self> {
        let main = dir.join("proj/main.blend");
        build_fixture(dir, "deps_scene.py", DEPS_SCENE_PY, dir, &main)?;
        Ok(Self {
            dir: dir.to_owned(),
            missing: dir.join("proj/missing.blend"),
            main,
        })
    }
}

/// The example scene changed by `python` (lines run with `scene` bound to its scene), saved
/// as `dir/NAME.blend`: a fixture for what the example scene does not show.
pub fn example_variant(dir: &Path, name: &str, python: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let example = dir.join(format!("{name}-example.blend"));
    example_scene(&example)?;
    let out = dir.join(format!("{name}.blend"));
    let script = format!(
        "import bpy\nscene = bpy.context.scene\n{python}\n\
         bpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        out.display().to_string()
    );
    let output = run_bounded(
        Command::new("blender")
            .args(["-b", "--factory-startup", "-Y"])
            .arg(&example)
            .args(["--python-exit-code", "2", "--python-expr", &script]),
        COMMAND_TIMEOUT,
    )?;
    if !output.status.success() || !out.is_file() {
        bail!(
            "cannot make {}: {}{}",
            out.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(out)
}

/// Renders `blend` as `blender -b FILE -o OUT/ref_#### -a` does, with nothing else: the file's
/// own engine, frames, step and output format.
pub fn blender_plain(blend: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let output = run_bounded(
        Command::new("blender")
            .args(["-b", "--factory-startup", "-Y"])
            .arg(blend)
            .arg("-o")
            .arg(out.join("ref_####"))
            .arg("-a"),
        COMMAND_TIMEOUT,
    )?;
    if !output.status.success() {
        bail!(
            "blender -b -a failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

/// The fixture builder of an unbaked rigid-body animation (`scripts/sim_scene.py`).
pub const SIM_SCENE_PY: &str = include_str!("scripts/sim_scene.py");

/// Builds [`SIM_SCENE_PY`]'s scene at `path`: frames 1-8 of a cube falling onto a slab, its
/// rigid-body simulation not baked.
pub fn sim_scene(path: &Path) -> Result<()> {
    let dir = path.parent().context("no parent")?;
    build_fixture(dir, "sim_scene.py", SIM_SCENE_PY, path, path)
}

/// A fake renderer for tests only (`scripts/fake-wrong-pixels-blender`): a shell script that
/// runs the real `blender` (`$RENDERMESH_REAL_BLENDER`, else the one on `PATH`) with every
/// argument unchanged, except that every render (a command with `-E ENGINE`) has each scene
/// brightened before rendermesh's settings script runs, so its pixels differ from a true
/// render's, as on a machine with bad memory. `--version` and the other probes work as with
/// Blender itself.
pub const FAKE_WRONG_PIXELS_BLENDER: &str = include_str!("scripts/fake-wrong-pixels-blender");

/// Writes [`FAKE_WRONG_PIXELS_BLENDER`], the fake renderer for tests only, as
/// `dir/fake-wrong-pixels-blender` (mode 0755) and returns its path, for a node's `--blender`
/// (with `--no-sandbox`: the sandbox does not mount `dir`).
pub fn fake_wrong_pixels_blender(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fake-wrong-pixels-blender");
    std::fs::write(&path, FAKE_WRONG_PIXELS_BLENDER)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))?;
    Ok(path)
}

/// Runs the fixture builder `text` (saved as `dir/name`) in a factory-fresh Blender with `arg`
/// after `--`; fails, quoting Blender, unless it exits 0 and `made` exists.
fn build_fixture(dir: &Path, name: &str, text: &str, arg: &Path, made: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join(name);
    std::fs::write(&script, text)?;
    let output = run_bounded(
        Command::new("blender")
            .args([
                "-b",
                "--factory-startup",
                "-Y",
                "--python-exit-code",
                "2",
                "-P",
            ])
            .arg(&script)
            .arg("--")
            .arg(arg),
        COMMAND_TIMEOUT,
    )?;
    if !output.status.success() || !made.is_file() {
        bail!(
            "{name} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Copies `blend` to `out` baked in place by Blender's own `ptcache.bake_all` (the way a person
/// bakes a scene before sending it to a farm): the reference for a baked render.
pub fn bake_with_blender(blend: &Path, out: &Path) -> Result<()> {
    let script = format!(
        "import bpy\nscene = bpy.context.scene\n\
         with bpy.context.temp_override(scene=scene, point_cache=scene.rigidbody_world.point_cache):\n\
         \x20   bpy.ops.ptcache.bake_all(bake=True)\n\
         bpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        out.display().to_string()
    );
    let output = run_bounded(
        Command::new("blender")
            .args(["-b", "--factory-startup", "-Y"])
            .arg(blend)
            .args(["--python-exit-code", "2", "--python-expr", &script]),
        COMMAND_TIMEOUT,
    )?;
    if !output.status.success() || !out.is_file() {
        bail!(
            "baking {} failed: {}",
            blend.display(),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

/// Decoded RGBA pixels and size of an image file.
pub fn pixels(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let img = image::open(path)
        .with_context(|| format!("cannot decode {}", path.display()))?
        .to_rgba8();
    Ok((img.width(), img.height(), img.into_raw()))
}

/// Asserts two image files hold the same decoded pixels.
pub fn assert_same_pixels(a: &Path, b: &Path) -> Result<()> {
    let (wa, ha, pa) = pixels(a)?;
    let (wb, hb, pb) = pixels(b)?;
    if (wa, ha) != (wb, hb) {
        bail!(
            "{} is {wa}x{ha} but {} is {wb}x{hb}",
            a.display(),
            b.display()
        );
    }
    if pa != pb {
        let differing = pa
            .chunks(4)
            .zip(pb.chunks(4))
            .filter(|(x, y)| x != y)
            .count();
        bail!(
            "{} and {} differ in {differing} of {} pixels",
            a.display(),
            b.display(),
            wa * ha
        );
    }
    Ok(())
}

/// Every node's log, each under its name: the context of a failed multi-node test.
pub fn dump_logs(nodes: &[MeshNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The distinct nodes that rendered a task of `job` (a job record as JSON), sorted.
pub fn job_workers(job: &Value) -> Vec<String> {
    let mut ids: Vec<String> = job["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["worker"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Frames counted done in a job record (as JSON).
pub fn frames_done(job: &Value) -> usize {
    job["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["state"] == "Done")
                .map(|t| t["outputs"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

/// The newest job as `node` sees it (`GET /api/v1/jobs`, newest first).
pub fn newest_job(node: &MeshNode) -> Option<Value> {
    node.get("/api/v1/jobs")?.as_array()?.first().cloned()
}

/// Waits up to `timeout` for a `rendermesh render` started with its stdout in `log` (and its
/// stderr next to it, `.err`) to succeed; on failure the error holds both and `nodes`' logs.
pub fn wait_render(
    child: &mut Child,
    timeout: Duration,
    log: &Path,
    nodes: &[MeshNode],
) -> Result<()> {
    let status = wait_for("the render command to finish", timeout, || {
        child.try_wait().ok().flatten()
    })
    .with_context(|| dump_logs(nodes))?;
    if !status.success() {
        bail!(
            "render exited with {status}:\n{}\n{}\n{}",
            std::fs::read_to_string(log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default(),
            dump_logs(nodes)
        );
    }
    Ok(())
}

/// Who takes part in a kill test on three nodes: the node to submit through (never the
/// victim, never the coordinator), the node to kill (the coordinator, or the remaining
/// worker), and the coordinator's id before the kill.
pub struct KillPlan {
    /// Index of the node the job is submitted to.
    pub via: usize,
    /// Index of the node to kill.
    pub victim: usize,
    /// The coordinator before the kill.
    pub coordinator: String,
    /// Whether the victim is the coordinator.
    pub kills_coordinator: bool,
}

impl KillPlan {
    /// Plans a kill among three agreed `nodes`.
    pub fn new(nodes: &[MeshNode], kill_coordinator: bool) -> Result<Self> {
        let coordinator = agreed_coordinator(nodes, nodes.len()).context("no coordinator")?;
        let coord = nodes
            .iter()
            .position(|n| n.id == coordinator)
            .context("coordinator is not one of ours")?;
        let others: Vec<usize> = (0..nodes.len()).filter(|&i| i != coord).collect();
        let (via, victim) = if kill_coordinator {
            (others[0], coord)
        } else {
            (others[0], others[1])
        };
        Ok(Self {
            via,
            victim,
            coordinator,
            kills_coordinator: kill_coordinator,
        })
    }

    /// Waits until the newest job seen by the `via` node satisfies `ready` (e.g. "some work is
    /// done, not all"), then SIGKILLs the victim.
    pub fn kill_when(
        &self,
        nodes: &mut [MeshNode],
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        wait_for(what, Duration::from_secs(120), || {
            newest_job(&nodes[self.via]).filter(|job| ready(job))
        })
        .with_context(|| dump_logs(nodes))?;
        nodes[self.victim].kill();
        Ok(())
    }

    /// After the job: if the victim died in the middle of a task (its log shows the task
    /// started and not rendered), that task was handed out again: `job` (the finished record)
    /// holds it done by another node. A victim that finished its task just before the kill
    /// leaves nothing to requeue.
    pub fn check_requeued(&self, nodes: &[MeshNode], job: &Value) -> Result<()> {
        let log = nodes[self.victim].log_text();
        let field = |line: &str, name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.parse().ok())
        };
        let Some(last) = log.lines().rev().find(|l| l.contains("mesh: rendering ")) else {
            return Ok(());
        };
        let (Some(task), Some(attempt)) = (field(last, "task="), field(last, "attempt=")) else {
            bail!("cannot read the task in `{last}`");
        };
        let rendered = log.lines().any(|l| {
            l.contains("task rendered")
                && field(l, "task=") == Some(task)
                && field(l, "attempt=") == Some(attempt)
        });
        if rendered {
            return Ok(());
        }
        // Handed out again means rendered by another node: the attempt number alone does not
        // tell (a new coordinator whose copy of the job never saw the first assignment starts
        // the task at attempt 1 again, in its own term).
        // The task may be a check, kept past the job's own tasks (`checks[].task`).
        let victim = &nodes[self.victim];
        let tasks = job["tasks"].as_array().into_iter().flatten();
        let checks = job["checks"].as_array().into_iter().flatten();
        let record = tasks
            .chain(checks.map(|check| &check["task"]))
            .find(|t| t["index"].as_u64() == Some(task))
            .unwrap_or(&Value::Null);
        if record["state"] != "Done" || record["worker"].as_str() == Some(victim.id.as_str()) {
            bail!(
                "task {task} of the killed {} (attempt {attempt}) was never handed out again: {job}",
                victim.name
            );
        }
        Ok(())
    }

    /// After the kill: the survivors agree on a coordinator, a new one if the old was killed.
    pub fn check_survivors(&self, nodes: Vec<MeshNode>) -> Result<String> {
        let survivors: Vec<MeshNode> = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != self.victim)
            .map(|(_, n)| n)
            .collect();
        let n = survivors.len();
        let now = wait_for("the survivors to agree", Duration::from_secs(30), || {
            agreed_coordinator(&survivors, n)
        })?;
        if self.kills_coordinator && now == self.coordinator {
            bail!("the killed coordinator {now} is still followed");
        }
        Ok(now)
    }
}

/// A temporary directory holding the example scene and its frames rendered by `blender -b`.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The directory.
    pub root: PathBuf,
    /// The example scene.
    pub blend: PathBuf,
    /// The reference frames, `ref_NNNNN.png` (read only: shared with other tests when the
    /// suite shares its fixtures).
    pub reference: PathBuf,
}

/// The file [`blender_direct`] writes `frame` to in `dir`.
fn reference_file(dir: &Path, frame: u32) -> PathBuf {
    dir.join(format!("ref_{frame:05}.png"))
}

/// The directory `scripts/test` gives every test binary of one run of the suite
/// (`RENDERMESH_TEST_CACHE`), where [`Fixture`]s share the example scene and the reference
/// frames `blender -b` rendered: each is made once per run, by whichever test needs it first.
/// None when unset: each fixture then makes its own.
fn suite_cache() -> Option<PathBuf> {
    std::env::var_os("RENDERMESH_TEST_CACHE")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// Holds `dir/NAME.lock` (an exclusive file lock) while `fill` runs: test binaries running at
/// once fill a shared entry one at a time, and each finds what the others made.
fn with_cache_lock<T>(dir: &Path, name: &str, fill: impl FnOnce() -> Result<T>) -> Result<T> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    fill()
}

/// The example scene, made once per run of the suite under `cache`.
fn shared_example_scene(cache: &Path) -> Result<PathBuf> {
    let blend = cache.join("example.blend");
    with_cache_lock(cache, "example", || {
        if !blend.is_file() {
            let made = cache.join("example.partial.blend");
            example_scene(&made)?;
            std::fs::rename(&made, &blend)?;
        }
        Ok(blend.clone())
    })
}

/// The directory under `cache` holding `blend`'s frames `frames` as `blender -b` renders them
/// at these settings (see [`blender_direct`]): the frames no test of this run rendered yet
/// are rendered now, in one run of Blender.
fn shared_reference(
    cache: &Path,
    blend: &Path,
    frames: (u32, u32),
    samples: u32,
    percent: u32,
    settings: &[&str],
) -> Result<PathBuf> {
    let name = format!("reference-{samples}-{percent}{}", settings.concat());
    let dir = cache.join(&name);
    with_cache_lock(cache, &name, || {
        let missing: Vec<u32> = (frames.0..=frames.1)
            .filter(|&f| !reference_file(&dir, f).is_file())
            .collect();
        if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
            let fresh = cache.join(format!("{name}.partial"));
            if fresh.exists() {
                std::fs::remove_dir_all(&fresh)?;
            }
            blender_direct(blend, &fresh, (first, last), samples, percent, settings)?;
            std::fs::create_dir_all(&dir)?;
            for f in missing {
                let made = reference_file(&fresh, f);
                std::fs::rename(&made, reference_file(&dir, f))
                    .with_context(|| format!("blender -b did not write {}", made.display()))?;
            }
            std::fs::remove_dir_all(&fresh)?;
        }
        Ok(dir.clone())
    })
}

impl Fixture {
    /// Makes the example scene and renders `frames` of it directly (see [`blender_direct`]).
    pub fn new(frames: (u32, u32), samples: u32, percent: u32, settings: &[&str]) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), frames, samples, percent, settings)
    }

    /// [`Fixture::new`] in a fresh directory under `parent`.
    pub fn new_in(
        parent: &Path,
        frames: (u32, u32),
        samples: u32,
        percent: u32,
        settings: &[&str],
    ) -> Result<Self> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::tempdir_in(parent)?;
        let root = dir.path().to_path_buf();
        let blend = root.join("scene.blend");
        let reference = match suite_cache() {
            Some(cache) => {
                let example = shared_example_scene(&cache)?;
                std::fs::copy(&example, &blend)
                    .with_context(|| format!("cannot copy {}", example.display()))?;
                shared_reference(&cache, &example, frames, samples, percent, settings)?
            }
            None => {
                example_scene(&blend)?;
                let reference = root.join("reference");
                blender_direct(&blend, &reference, frames, samples, percent, settings)?;
                reference
            }
        };
        Ok(Self {
            _dir: dir,
            root,
            blend,
            reference,
        })
    }

    /// The reference file of `frame`.
    pub fn reference_frame(&self, frame: u32) -> PathBuf {
        reference_file(&self.reference, frame)
    }
}

/// Like [`wait_for`], polling every `every` rather than every 50 ms: for checks that cost a
/// process each (a command run inside a network namespace).
pub fn wait_for_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Fails unless this process runs as root (network namespaces need it; CI runs as root).
pub fn require_root() -> Result<()> {
    let euid = run_bounded(Command::new("id").arg("-u"), COMMAND_TIMEOUT)?;
    if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
        bail!("this test builds network namespaces and must run as root (CI does)");
    }
    Ok(())
}

/// Runs `ip ARGS` (iproute2); fails quoting its error output.
pub fn ip(args: &[&str]) -> Result<()> {
    let out =
        run_bounded(Command::new("ip").args(args), COMMAND_TIMEOUT).context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A small LAN made for a test: a bridge, and `n` network namespaces each joined to it by a
/// veth pair, namespace `i` at `10.213.S.(i+1)/24`. It reaches nothing else (the host has no
/// address on the bridge). Removed on drop; stop the processes running inside first.
///
/// Needs root and `ip` from iproute2 (`scripts/install-deps` installs it).
pub struct Lan {
    bridge: String,
    namespaces: Vec<String>,
    /// The bridge side of each namespace's veth pair.
    ports: Vec<String>,
    /// The third byte of the LAN's addresses.
    subnet: u32,
}

impl Lan {
    /// Builds the bridge and `n` namespaces.
    pub fn new(n: usize) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        // Unique per LAN: interface names are global, and a deleted namespace's veths vanish
        // asynchronously, so a second LAN in this process must not reuse the first one's names.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = (std::process::id() % 10_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed) % 10;
        let mut lan = Self {
            bridge: format!("rmbr{tag}"),
            namespaces: Vec::new(),
            ports: Vec::new(),
            subnet: tag % 250,
        };
        ip(&["link", "add", "name", &lan.bridge, "type", "bridge"])?;
        ip(&[
            "link",
            "set",
            &lan.bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("rm{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            lan.namespaces.push(ns.clone());
            let inside = format!("rm{tag}i{i}");
            let outside = format!("rm{tag}o{i}");
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "master", &lan.bridge])?;
            lan.ports.push(outside.clone());
            ip(&["link", "set", &outside, "up"])?;
            let addr = format!("{}/24", lan.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inside])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    /// The name of namespace `i`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// The address of namespace `i` on the LAN.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, i + 1)
    }

    /// A command running `program` inside namespace `i` (`ip netns exec NS program`, which
    /// execs it: the child's pid is the program's).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[i]])
            .arg(program);
        cmd
    }

    /// Cuts namespace `i` off the LAN (its cable is pulled).
    pub fn cut(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.ports[i], "down"])
    }

    /// Plugs namespace `i` back in.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.ports[i], "up"])
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for port in &self.ports {
            let _ = ip(&["link", "del", port]);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
