//! The chaos run (issue 12): four real `rendermesh node` processes, each in a network namespace
//! of its own on one bridge ([`Lan`]), render a job of the example scene with real Blender while
//! faults drawn from one seeded RNG hit them: SIGKILL and restart of a worker or of the
//! coordinator, a whole-mesh power cut, a frozen machine (SIGSTOP of a node and its Blender,
//! then SIGCONT), a partition and its healing, and a frame blob corrupted on a node's disk while
//! it is down. After the last fault everything is healed and running; the job must then finish,
//! no node may be suspect, every node must be back in the mesh, every corrupted blob must be
//! whole again, and every frame (`rendermesh download`) must equal `blender -b`'s pixel for
//! pixel.
//!
//! The same job runs once without faults first, on a fresh mesh, so that one invocation
//! measures what the faults cost. `scripts/chaos` runs it (`tests/src/bin/chaos.rs`);
//! `tests/tests/chaos.rs` runs one short seed in CI.
//!
//! Every node's API listens on 127.0.0.1 inside its namespace and is reached through `ip netns
//! exec NS rendermesh ...`, so a partitioned node can still be asked, and nothing listens
//! outside the namespaces. Each node listens on TCP port 4700 of its namespace, so a restarted
//! node comes back at the same address. Faults come one at a time: each is applied, held for a
//! drawn time, and undone before the next gap. The seed fixes the kinds, targets, gaps and
//! durations; the mesh's own timing is not replayed, so a seed repeats the same storm, not
//! the same interleaving.
//!
//! Needs root (network namespaces), `ip`, `blender`, and the binaries built
//! (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::{
    Fixture, Lan, assert_same_pixels, bin, descendants, machine_home, require_root, run_bounded,
    signal, wait_for_every,
};

/// Resolution percentage of the chaos job.
const PERCENT: u32 = 50;
/// The TCP port every node listens on, in its own namespace.
const PORT: u16 = 4700;
/// Every node's API, inside its namespace.
const API: &str = "127.0.0.1:7411";
/// Nodes in the mesh.
const NODES: usize = 4;
/// How long a command asking a node something may take.
const ASK: Duration = Duration::from_secs(20);
/// How often the job is looked at.
const POLL: Duration = Duration::from_millis(1000);

/// What one chaos run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seeds every random choice: the faults' kinds, targets, times and durations.
    pub seed: u64,
    /// For how long faults keep coming, from the submission (they stop earlier if the job
    /// is done).
    pub minutes: f64,
    /// Frames of the job: 1 to `frames`.
    pub frames: u32,
    /// Render samples per pixel (at 50% resolution): 64 for a full run, so that a fault-free
    /// job takes about a minute on a machine of two cores and several faults fit in it.
    pub samples: u32,
    /// Whether to run the same job without faults first, to measure what they cost.
    pub baseline: bool,
}

impl Options {
    /// A full run: 40 frames, with a fault-free run first.
    pub fn new(seed: u64, minutes: f64) -> Self {
        Self {
            seed,
            minutes,
            frames: 40,
            samples: 64,
            baseline: true,
        }
    }

    /// The short run CI makes: 20 frames of 32 samples, faults for `minutes`, and no
    /// fault-free run (its summary has no ratio).
    pub fn short(seed: u64, minutes: f64) -> Self {
        Self {
            seed,
            minutes,
            frames: 20,
            samples: 32,
            baseline: false,
        }
    }

    /// The command that replays this run.
    pub fn replay(&self) -> String {
        let mut cmd = format!(
            "scripts/chaos --seed {} --minutes {}",
            self.seed, self.minutes
        );
        if self.frames != 40 {
            cmd.push_str(&format!(" --frames {}", self.frames));
        }
        if self.samples != 64 {
            cmd.push_str(&format!(" --samples {}", self.samples));
        }
        if !self.baseline {
            cmd.push_str(" --no-baseline");
        }
        cmd
    }
}

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// One node SIGKILLed (a worker or the coordinator) and started again.
    Kill,
    /// Every node SIGKILLed at once and started again.
    Blackout,
    /// A node and its Blender SIGSTOPped, then SIGCONTed.
    Freeze,
    /// One or two nodes cut off the LAN, each alone, then plugged back in.
    Partition,
    /// A frame blob flipped on a node's disk while it is down.
    Corrupt,
}

impl Kind {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [Kind; 5] = [
        Kind::Kill,
        Kind::Blackout,
        Kind::Freeze,
        Kind::Partition,
        Kind::Corrupt,
    ];

    /// Its name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Blackout => "blackout",
            Kind::Freeze => "freeze",
            Kind::Partition => "partition",
            Kind::Corrupt => "corrupt",
        }
    }
}

/// One fault injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Seconds from the submission.
    pub at: f64,
    /// Its kind.
    pub kind: Kind,
    /// What it did, for the log.
    pub what: String,
}

/// What a passing run measured.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The run's options.
    pub options: Options,
    /// Every fault injected, in order.
    pub faults: Vec<Fault>,
    /// The sum over the final record's tasks of `attempt - 1`.
    pub requeued: u64,
    /// Frames downloaded and equal to `blender -b`'s.
    pub verified: u32,
    /// Seconds from submission to done, with faults.
    pub chaos_secs: f64,
    /// The same without faults, when measured.
    pub baseline_secs: Option<f64>,
}

impl Summary {
    /// Faults injected of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.faults.iter().filter(|f| f.kind == kind).count()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .map(|&k| format!("{} {}", self.count(k), k.name()))
            .collect();
        write!(
            f,
            "chaos seed={}: {} faults ({}), {} tasks requeued, {}/{} frames verified",
            self.options.seed,
            self.faults.len(),
            kinds.join(", "),
            self.requeued,
            self.verified,
            self.options.frames
        )?;
        match self.baseline_secs {
            Some(base) => write!(
                f,
                ", {:.1}x a fault-free run ({:.0} s against {:.0} s)",
                self.chaos_secs / base,
                self.chaos_secs,
                base
            ),
            None => write!(f, ", {:.0} s (no fault-free run)", self.chaos_secs),
        }
    }
}

/// Runs the chaos run `options` describes. On failure the error holds the seed, the command
/// that replays it, and the tail of every node's log; the run's directory is kept.
pub fn run(options: &Options) -> Result<Summary> {
    require_root()?;
    let dir = tempfile::Builder::new()
        .prefix("rendermesh-chaos-")
        .tempdir()?;
    match run_in(options, dir.path()) {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let kept = dir.keep();
            Err(e.context(format!("(the run's logs are kept in {})", kept.display())))
        }
    }
}

/// [`run`], with everything under `dir`.
fn run_in(options: &Options, dir: &Path) -> Result<Summary> {
    let fx = Fixture::new((1, options.frames), options.samples, PERCENT, &[])
        .context("cannot render the reference frames with blender -b")?;
    let lan = Lan::new(NODES)?;
    let baseline_secs = match options.baseline {
        true => {
            let mut mesh = Mesh::start(&lan, &dir.join("baseline"))?;
            let started = Instant::now();
            let id = mesh.submit(&fx.blend, options, &dir.join("unused"))?;
            mesh.wait_done(&id, Duration::from_secs(1800))
                .map_err(|e| mesh.failure(options, e))?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!("chaos: the fault-free run took {secs:.0} s");
            Some(secs)
        }
        false => None,
    };
    let mut mesh = Mesh::start(&lan, &dir.join("chaos"))?;
    let mut summary = mesh.storm(options, &fx, baseline_secs)?;
    summary.baseline_secs = baseline_secs;
    Ok(summary)
}

/// One node of the mesh.
struct Node {
    /// Its index: its namespace's.
    index: usize,
    name: String,
    data_dir: PathBuf,
    /// Its log, appended to across restarts.
    log: PathBuf,
    /// The process, while it runs.
    child: Option<Child>,
    /// Its peer id.
    id: String,
    /// The processes it froze (itself and its Blender), while it is frozen.
    frozen: Vec<u32>,
}

impl Node {
    /// SIGKILLs the node and everything it started (a machine losing power).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            let _ = signal(&pids, "KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen.clear();
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `n` lines of its log.
    fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.frozen.is_empty() {
            let _ = signal(&self.frozen, "CONT");
        }
        self.kill();
    }
}

/// Four nodes on the LAN.
struct Mesh<'a> {
    nodes: Vec<Node>,
    lan: &'a Lan,
    root: PathBuf,
    /// Ports cut off the LAN.
    cut: Vec<usize>,
    /// Which node to ask next.
    next: usize,
}

impl Drop for Mesh<'_> {
    fn drop(&mut self) {
        for &i in &self.cut {
            let _ = self.lan.heal(i);
        }
    }
}

impl<'a> Mesh<'a> {
    /// Starts four nodes under `root`: the first alone, the others joining it; waits until all
    /// four see each other and agree on a coordinator.
    fn start(lan: &'a Lan, root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        let mut mesh = Self {
            nodes: Vec::new(),
            lan,
            root: root.to_owned(),
            cut: Vec::new(),
            next: 0,
        };
        for index in 0..NODES {
            let name = format!("chaos-{index}");
            mesh.nodes.push(Node {
                index,
                data_dir: root.join(&name),
                log: root.join(format!("{name}.log")),
                name,
                child: None,
                id: String::new(),
                frozen: Vec::new(),
            });
            mesh.launch(index)?;
        }
        mesh.wait_whole(Duration::from_secs(60))?;
        Ok(mesh)
    }

    /// Starts node `i` on its data directory, joining every other node whose id is known;
    /// waits until its API answers.
    fn launch(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        use std::io::Write;
        writeln!(log, "=== chaos: starting {} ===", node.name)?;
        let mut cmd = self.lan.command(i, bin());
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen", &format!("/ip4/0.0.0.0/tcp/{PORT}")])
            .args(["--api", API])
            .args(["--name", &node.name])
            .args(["--threads", "1"])
            // A task is taken back once it runs 5x the median frame time, at least this.
            .args(["--min-task-timeout", "10"])
            // Four nodes share this machine's disk.
            .args(["--min-free-disk", "1"]);
        for other in self
            .nodes
            .iter()
            .filter(|o| o.index != i && !o.id.is_empty())
        {
            let addr = format!(
                "/ip4/{}/tcp/{PORT}/p2p/{}",
                self.lan.addr(other.index),
                other.id
            );
            cmd.arg("--bootstrap").arg(addr);
        }
        let child = cmd
            .env("RENDERMESH_HOME", machine_home())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        self.nodes[i].child = Some(child);
        let id = wait_for_every(
            &format!("{} to answer", self.nodes[i].name),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let v = self.ask(i, &["peers", "--json"])?;
                v["me"].as_str().map(str::to_owned)
            },
        )
        .with_context(|| self.nodes[i].tail(40))?;
        self.nodes[i].id = id;
        Ok(())
    }

    /// Runs `rendermesh ARGS --api API` inside node `i`'s namespace, bounded by `timeout`.
    fn cli(&self, i: usize, args: &[&str], timeout: Duration) -> Result<Output> {
        run_bounded(
            self.lan
                .command(i, bin())
                .args(args)
                .args(["--api", API])
                .env("RENDERMESH_HOME", machine_home()),
            timeout,
        )
    }

    /// The JSON a `--json` command prints on node `i`, if it answers.
    fn ask(&self, i: usize, args: &[&str]) -> Option<Value> {
        let out = self.cli(i, args, ASK).ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Job `id` as the next running node holds it.
    fn job(&mut self, id: &str) -> Option<Value> {
        for _ in 0..NODES {
            let i = self.next;
            self.next = (self.next + 1) % NODES;
            if self.nodes[i].child.is_none() || !self.nodes[i].frozen.is_empty() {
                continue;
            }
            if let Some(job) = self.ask(i, &["job", id, "--json"]) {
                return Some(job);
            }
        }
        None
    }

    /// The coordinator all four agree on, once each sees all four.
    fn agreed(&self) -> Option<String> {
        let mut agreed: Option<String> = None;
        for i in 0..NODES {
            let v = self.ask(i, &["peers", "--json"])?;
            if v["peers"].as_array()?.len() != NODES {
                return None;
            }
            let c = v["coordinator"].as_str()?.to_owned();
            if agreed.get_or_insert_with(|| c.clone()) != &c {
                return None;
            }
        }
        agreed
    }

    /// Waits until all four see each other and agree on a coordinator.
    fn wait_whole(&self, timeout: Duration) -> Result<String> {
        wait_for_every(
            "all four nodes to see each other and agree on a coordinator",
            timeout,
            POLL,
            || self.agreed(),
        )
        .with_context(|| self.tails(30))
    }

    /// The coordinator as some running node sees it.
    fn coordinator(&self) -> Option<usize> {
        (0..NODES)
            .filter(|&i| self.nodes[i].child.is_some() && self.nodes[i].frozen.is_empty())
            .find_map(|i| {
                let v = self.ask(i, &["peers", "--json"])?;
                let c = v["coordinator"].as_str()?.to_owned();
                self.nodes.iter().position(|n| n.id == c)
            })
    }

    /// Submits the job `options` describe, of `blend`, through node 0 and returns its id.
    fn submit(&self, blend: &Path, options: &Options, out: &Path) -> Result<String> {
        let out = self.cli(
            0,
            &[
                "render",
                &blend.display().to_string(),
                "--frames",
                &format!("1-{}", options.frames),
                "--samples",
                &options.samples.to_string(),
                "--resolution-percent",
                &PERCENT.to_string(),
                "--chunk",
                "1",
                "--detach",
                "--out",
                &out.display().to_string(),
            ],
            Duration::from_secs(120),
        )?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "submit failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        text.lines()
            .find_map(|l| l.strip_prefix("submitted job "))
            .map(|id| id.trim().to_owned())
            .with_context(|| format!("no job id printed: {text}"))
    }

    /// Waits until some node holds job `id` done; fails at once if it failed.
    fn wait_done(&mut self, id: &str, timeout: Duration) -> Result<Value> {
        let mut failed = None;
        let done = wait_for_every(&format!("job {id} to be done"), timeout, POLL, || {
            let job = self.job(id)?;
            match job["state"].as_str() {
                Some("Done") => Some(job),
                Some("Failed") | Some("Cancelled") => {
                    failed = Some(job.clone());
                    Some(job)
                }
                _ => None,
            }
        })?;
        if let Some(job) = failed {
            bail!("job {id} ended {}: {job}", job["state"]);
        }
        Ok(done)
    }

    /// Whether some node holds job `id` ended.
    fn ended(&mut self, id: &str) -> bool {
        self.job(id).is_some_and(|j| {
            matches!(
                j["state"].as_str(),
                Some("Done") | Some("Failed") | Some("Cancelled")
            )
        })
    }

    /// Every node's log tail, under its name.
    fn tails(&self, n: usize) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {} (last {n} lines) ---\n{}", node.name, node.tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `e` with the seed, the command that replays it and the nodes' log tails.
    fn failure(&self, options: &Options, e: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "chaos seed={} FAILED: {e:#}\nreplay: {}\nlogs under {}\n{}",
            options.seed,
            options.replay(),
            self.root.display(),
            self.tails(40)
        )
    }

    /// The run with faults: submit, inject faults until `minutes` are up or the job is done,
    /// then check everything.
    fn storm(&mut self, options: &Options, fx: &Fixture, baseline: Option<f64>) -> Result<Summary> {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let started = Instant::now();
        let id = self
            .submit(&fx.blend, options, &self.root.join("unused"))
            .map_err(|e| self.failure(options, e))?;
        eprintln!("chaos seed={}: job {id} submitted", options.seed);
        let mut faults = Vec::new();
        let mut corrupted = Vec::new();
        let result = self.faults(&mut rng, options, &id, started, &mut faults, &mut corrupted);
        // Whatever happened, nothing stays frozen or cut off.
        self.heal_all();
        let result = result.and_then(|()| {
            let generous =
                Duration::from_secs(900) + Duration::from_secs_f64(baseline.unwrap_or(120.0) * 4.0);
            let done = self.wait_done(&id, generous)?;
            let chaos_secs = started.elapsed().as_secs_f64();
            self.check(options, fx, &id, &done, &corrupted)?;
            Ok(Summary {
                options: options.clone(),
                requeued: requeued(&done),
                verified: options.frames,
                faults: faults.clone(),
                chaos_secs,
                baseline_secs: None,
            })
        });
        result.map_err(|e| {
            let list: Vec<String> = faults
                .iter()
                .map(|f| format!("  {:6.1} s  {}", f.at, f.what))
                .collect();
            self.failure(options, e.context(format!("faults:\n{}", list.join("\n"))))
        })
    }

    /// Injects faults one after another, each undone before the next, until `minutes` are up
    /// or the job has ended.
    fn faults(
        &mut self,
        rng: &mut StdRng,
        options: &Options,
        id: &str,
        started: Instant,
        faults: &mut Vec<Fault>,
        corrupted: &mut Vec<(usize, String)>,
    ) -> Result<()> {
        let until = Duration::from_secs_f64(options.minutes * 60.0);
        loop {
            let gap = Duration::from_secs_f64(rng.random_range(1.0..5.0));
            // The draws of one fault, made before anything about the mesh is known, so
            // that a seed always draws the same storm.
            let roll = rng.random_range(0..100u32);
            let target = rng.random_range(0..NODES);
            let second = rng.random_range(0..NODES);
            let hold = rng.random_range(0.0..1.0f64);
            let pick = rng.random_range(0..u32::MAX);
            let gap_end = Instant::now() + gap;
            while Instant::now() < gap_end {
                if self.ended(id) {
                    return Ok(());
                }
                std::thread::sleep(POLL.min(gap_end.saturating_duration_since(Instant::now())));
            }
            if started.elapsed() >= until || self.ended(id) {
                return Ok(());
            }
            let at = started.elapsed().as_secs_f64();
            let (kind, what) = match roll {
                0..30 => self.kill(target, roll < 12, hold)?,
                30..40 => self.blackout(hold)?,
                40..62 => self.freeze(target, hold)?,
                62..82 => self.partition(target, second, hold)?,
                _ => self.corrupt(id, target, pick, corrupted)?,
            };
            eprintln!("chaos: {at:6.1} s  {what}");
            faults.push(Fault { at, kind, what });
        }
    }

    /// SIGKILLs node `target` (or the coordinator), keeps it down 0.5 to 4 s, starts it again.
    fn kill(&mut self, target: usize, coordinator: bool, hold: f64) -> Result<(Kind, String)> {
        let (victim, role) = match self.coordinator().filter(|_| coordinator) {
            Some(c) => (c, "the coordinator"),
            None if self.coordinator() == Some(target) => (target, "the coordinator"),
            None => (target, "a worker"),
        };
        let down = 0.5 + hold * 3.5;
        self.nodes[victim].kill();
        std::thread::sleep(Duration::from_secs_f64(down));
        self.launch(victim)?;
        Ok((
            Kind::Kill,
            format!(
                "kill {} ({role}), down {down:.1} s",
                self.nodes[victim].name
            ),
        ))
    }

    /// SIGKILLs every node at once, keeps them down 1 to 4 s, starts them again.
    fn blackout(&mut self, hold: f64) -> Result<(Kind, String)> {
        let down = 1.0 + hold * 3.0;
        let mut pids = Vec::new();
        for node in &self.nodes {
            if let Some(pid) = node.pid() {
                pids.push(pid);
                pids.extend(descendants(pid));
            }
        }
        signal(&pids, "KILL")?;
        for node in &mut self.nodes {
            node.kill();
        }
        std::thread::sleep(Duration::from_secs_f64(down));
        for i in 0..NODES {
            self.launch(i)?;
        }
        Ok((Kind::Blackout, format!("blackout, down {down:.1} s")))
    }

    /// SIGSTOPs node `target` and its Blender for 3 to 12 s, then SIGCONTs them.
    fn freeze(&mut self, target: usize, hold: f64) -> Result<(Kind, String)> {
        let held = 3.0 + hold * 9.0;
        let role = if self.coordinator() == Some(target) {
            "the coordinator"
        } else {
            "a worker"
        };
        let pid = self.nodes[target]
            .pid()
            .context("the node is not running")?;
        let mut pids = vec![pid];
        pids.extend(descendants(pid));
        signal(&pids, "STOP")?;
        self.nodes[target].frozen = pids.clone();
        std::thread::sleep(Duration::from_secs_f64(held));
        pids.extend(descendants(pid));
        signal(&pids, "CONT")?;
        self.nodes[target].frozen.clear();
        Ok((
            Kind::Freeze,
            format!(
                "freeze {} ({role}, {} processes) for {held:.1} s",
                self.nodes[target].name,
                pids.len()
            ),
        ))
    }

    /// Cuts node `target` off the LAN, and node `second` too when it differs (each alone),
    /// for 4 to 15 s, then plugs them back in.
    fn partition(&mut self, target: usize, second: usize, hold: f64) -> Result<(Kind, String)> {
        let held = 4.0 + hold * 11.0;
        let mut cut = vec![target];
        if second != target {
            cut.push(second);
        }
        for &i in &cut {
            self.lan.cut(i)?;
            self.cut.push(i);
        }
        std::thread::sleep(Duration::from_secs_f64(held));
        for &i in &cut {
            self.lan.heal(i)?;
            self.cut.retain(|&c| c != i);
        }
        let names: Vec<&str> = cut.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        Ok((
            Kind::Partition,
            format!(
                "partition {} (each alone) for {held:.1} s",
                names.join(" and ")
            ),
        ))
    }

    /// Kills node `target` (or the next node holding a frame of job `id`), flips bytes in one
    /// of the job's frame blobs in its store, and starts it again. With no frame stored
    /// anywhere yet, it is a kill and restart.
    fn corrupt(
        &mut self,
        id: &str,
        target: usize,
        pick: u32,
        corrupted: &mut Vec<(usize, String)>,
    ) -> Result<(Kind, String)> {
        let job = self.job(id).context("no node answers for the job")?;
        let blobs: Vec<String> = job["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["outputs"].as_array().cloned().unwrap_or_default())
            .filter_map(|o| o["blob"].as_str().map(str::to_owned))
            .collect();
        for step in 0..NODES {
            let i = (target + step) % NODES;
            let store = self.nodes[i].data_dir.join("store/blobs");
            let held: Vec<&String> = blobs.iter().filter(|b| store.join(b).is_file()).collect();
            if held.is_empty() {
                continue;
            }
            let blob = held[pick as usize % held.len()].clone();
            self.nodes[i].kill();
            let path = store.join(&blob);
            let mut bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let middle = bytes.len() / 2;
            for b in bytes.iter_mut().skip(middle).take(16) {
                *b ^= 0x55;
            }
            std::fs::write(&path, &bytes)?;
            self.launch(i)?;
            corrupted.push((i, blob.clone()));
            return Ok((
                Kind::Corrupt,
                format!(
                    "corrupt frame blob {} on {}",
                    &blob[..12],
                    self.nodes[i].name
                ),
            ));
        }
        let (_, what) = self.kill(target, false, 0.0)?;
        Ok((
            Kind::Kill,
            format!("{what} (no frame stored yet to corrupt)"),
        ))
    }

    /// Wakes every frozen node, plugs every cut one back in, starts every stopped one.
    fn heal_all(&mut self) {
        for node in &mut self.nodes {
            if !node.frozen.is_empty() {
                let _ = signal(&node.frozen, "CONT");
                node.frozen.clear();
            }
        }
        for i in std::mem::take(&mut self.cut) {
            let _ = self.lan.heal(i);
        }
        for i in 0..NODES {
            if self.nodes[i].child.is_some() {
                continue;
            }
            if let Err(e) = self.launch(i) {
                eprintln!("chaos: cannot restart {}: {e:#}", self.nodes[i].name);
            }
        }
    }

    /// After the job: no suspect, every node back in the mesh, every corrupted blob whole
    /// again, every frame equal to `blender -b`'s.
    fn check(
        &mut self,
        options: &Options,
        fx: &Fixture,
        id: &str,
        done: &Value,
        corrupted: &[(usize, String)],
    ) -> Result<()> {
        let suspects = done["suspects"].as_array().map_or(0, Vec::len);
        if suspects != 0 {
            bail!("honest nodes were found suspect: {}", done["suspects"]);
        }
        self.wait_whole(Duration::from_secs(60))
            .context("a node did not rejoin the mesh")?;
        for (i, blob) in corrupted {
            let path = self.nodes[*i].data_dir.join("store/blobs").join(blob);
            wait_for_every(
                &format!(
                    "{} to hold frame blob {blob} whole again",
                    self.nodes[*i].name
                ),
                Duration::from_secs(60),
                POLL,
                || {
                    let bytes = std::fs::read(&path).ok()?;
                    (blake3::hash(&bytes).to_hex().as_str() == blob).then_some(())
                },
            )?;
        }
        let out = self.root.join(format!("download-{id}"));
        let got = self.cli(
            0,
            &[
                "download",
                id,
                "--no-wait",
                "--out",
                &out.display().to_string(),
            ],
            Duration::from_secs(300),
        )?;
        if !got.status.success() {
            bail!(
                "download {id} failed: {}{}",
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&got.stderr)
            );
        }
        let mut differ = BTreeMap::new();
        for f in 1..=options.frames {
            if let Err(e) = assert_same_pixels(
                &out.join(format!("scene_{f:04}.png")),
                &fx.reference_frame(f),
            ) {
                differ.insert(f, format!("{e:#}"));
            }
        }
        if !differ.is_empty() {
            bail!(
                "{} of {} frames are not blender -b's: {differ:#?}",
                differ.len(),
                options.frames
            );
        }
        Ok(())
    }
}

/// The sum over a job record's tasks of `attempt - 1`: how often tasks were handed out again.
pub fn requeued(job: &Value) -> u64 {
    job["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["attempt"].as_u64())
        .map(|a| a.saturating_sub(1))
        .sum()
}
