//! One `async fn` per subcommand that is not about submitting and following a job: `node`,
//! `peers`, `jobs`, `job`, `cancel`, `example-scene`, `bench`, `secret`; and [`run`], which
//! dispatches every subcommand.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rendermesh_node::{JoinToken, MeshSecret, Multiaddr, Node, now_ms};
use rendermesh_protocol::printable;
use rendermesh_protocol::{Confinement, Steer};

use crate::args::{
    ApiAddr, BenchArgs, CancelArgs, Cli, Command, ExampleSceneArgs, JobArgs, ListArgs, NodeArgs,
    PeersArgs, SecretCommand,
};
use crate::submit::{INTERRUPTED, download, resolve_job, submit_and_follow};
use crate::tables::{job_details, job_state, jobs_table, peers_table, plural};

/// Runs a parsed command line. Errors are reported by the caller; the exit code is 0, or 130
/// after ctrl-c.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Node(args) => node(args).await,
        Command::Render(args) => submit_and_follow(args.into()).await,
        Command::Peers(args) => peers(args).await,
        Command::Jobs(args) => jobs(args).await,
        Command::Job(args) => job(args).await,
        Command::Cancel(args) => cancel(args).await,
        Command::Pause(args) => steer(args.id, args.api, Steer::Pause).await,
        Command::Resume(args) => steer(args.id, args.api, Steer::Resume).await,
        Command::Priority(args) => steer(args.id, args.api, Steer::Priority(args.priority)).await,
        Command::Rerender(args) => steer(args.id, args.api, Steer::Rerender(args.frame)).await,
        Command::Download(args) => download(args).await,
        Command::Chart(args) => crate::chart::run(args).await,
        Command::ExampleScene(args) => example_scene(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Secret(cmd) => secret(cmd),
    }
}

fn secret(cmd: SecretCommand) -> Result<ExitCode> {
    let (file, secret) = match cmd {
        SecretCommand::New { file } => {
            let secret = MeshSecret::generate();
            secret.create_file(&file)?;
            (file, secret)
        }
        SecretCommand::Fingerprint { file } => {
            let secret = MeshSecret::load(&file)?;
            (file, secret)
        }
    };
    println!("{}: fingerprint {}", file.display(), secret.fingerprint());
    Ok(ExitCode::SUCCESS)
}

async fn node(args: NodeArgs) -> Result<ExitCode> {
    let config = args.config()?;
    let secret = config.secret;
    let token = config.api_token.is_some();
    let node = Node::start(config).await.context("cannot start the node")?;
    let info = node.wait_listening().await?;
    println!("peer id: {}", info.id);
    for addr in &info.addrs {
        println!("listening on {addr}");
    }
    if let Some(api) = node.api_addr() {
        println!("api: http://{api}{}", rendermesh_node::api::PREFIX);
        if token {
            println!("progress page: http://{api}/?token=<the token in --api-token's file>");
        } else {
            println!("progress page: http://{api}/");
        }
    }
    // An open mesh was announced with its warning when the key was chosen.
    if let (Some(fingerprint), Some(secret)) = (&info.secret, secret) {
        println!("private mesh {fingerprint}: only machines holding its key can join");
        let addrs: Vec<Multiaddr> = info.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if let Some(token) = JoinToken::new(secret, &addrs) {
            println!("to add a machine, run there:\n  rendermesh node --join {token}");
        }
    }
    match (&info.blender, info.confinement) {
        (Some(v), Confinement::Sandboxed) => println!("renders with {v}, in a sandbox"),
        (Some(v), _) => eprintln!(
            "warning: renders with {v} unconfined (--no-sandbox): a .blend can write wherever \
             this node may write, and read files of this machine into its frames"
        ),
        (None, Confinement::CannotSandbox) => eprintln!(
            "warning: Blender cannot run in a sandbox here (see the log), so this node will not \
             render: install bubblewrap (apt-get install bubblewrap), or start it with \
             --no-sandbox; it coordinates and relays only"
        ),
        (None, _) => println!("Blender does not run here: this node coordinates and relays only"),
    }
    rendermesh_node::shutdown_signal().await;
    eprintln!("shutting down (ctrl-c again to quit at once)");
    tokio::select! {
        () = node.shutdown() => Ok(ExitCode::SUCCESS),
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(INTERRUPTED)),
    }
}

async fn peers(args: PeersArgs) -> Result<ExitCode> {
    let view = args.api.client()?.peers().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", peers_table(&view, args.addrs));
    }
    Ok(ExitCode::SUCCESS)
}

async fn jobs(args: ListArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let jobs = client.jobs().await?;
    if args.prune {
        let me = client.node().await?.id;
        let mut removed = 0;
        for job in jobs
            .iter()
            .filter(|j| j.state.is_terminal() && j.origin.to_string() == me)
        {
            client
                .remove(job.id)
                .await
                .with_context(|| format!("cannot remove job {}", job.id))?;
            removed += 1;
        }
        println!(
            "removed {removed} finished job{} submitted through this node",
            if removed == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else if jobs.is_empty() {
        println!("no jobs");
    } else {
        print!("{}", jobs_table(&jobs, now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

async fn job(args: JobArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let id = resolve_job(&client, &args.id).await?;
    let job = client
        .job(id)
        .await?
        .with_context(|| format!("the node at {} holds no job {id}", client.addr()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(ExitCode::SUCCESS);
    }
    let names: HashMap<String, String> = client
        .peers()
        .await
        .map(|v| {
            v.peers
                .into_iter()
                .map(|p| (p.id, printable(&p.name)))
                .collect()
        })
        .unwrap_or_default();
    print!("{}", job_details(&job, &names, now_ms()));
    Ok(ExitCode::SUCCESS)
}

async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let id = resolve_job(&client, &args.id).await?;
    if let Some(job) = client.job(id).await?
        && job.state.is_terminal()
    {
        println!(
            "job {id} is already {}: nothing to cancel",
            job_state(job.state)
        );
        return Ok(ExitCode::SUCCESS);
    }
    client.cancel(id).await?;
    println!("cancelled job {id}");
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume`, `priority` and `rerender`: only the node the job was submitted on may.
async fn steer(id: String, api: ApiAddr, steer: Steer) -> Result<ExitCode> {
    let client = api.client()?;
    let id = resolve_job(&client, &id).await?;
    client.steer(id, steer).await?;
    match steer {
        Steer::Pause => println!("paused job {id}: it gets no new tasks; the running ones finish"),
        Steer::Resume => println!("resumed job {id}"),
        Steer::Priority(p) => println!("job {id} now has priority {p}"),
        Steer::Rerender(frame) => println!(
            "frame {frame} of job {id} goes back to the queue (with the rest of its task); \
             `rendermesh download {id}` saves it once rendered again"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn example_scene(args: ExampleSceneArgs) -> Result<ExitCode> {
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    rendermesh_node::render::Blender::new(args.blender, None)
        .make_example_scene(&args.out)
        .await
        .with_context(|| format!("cannot build the example scene at {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("rendermesh-bench-{}", std::process::id()));
    if let Some(mib) = args.transfer {
        let result = rendermesh_node::bench_transfer::run(mib, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = result?;
        let rate = |d| r.mib_per_s(d);
        println!("{mib} MiB on loopback, each way in one run");
        println!(
            "(a) plain TCP copy              : {:>7.3} s {:>8.1} MiB/s",
            r.tcp.as_secs_f64(),
            rate(r.tcp)
        );
        println!(
            "(d) written to disk and flushed : {:>7.3} s {:>8.1} MiB/s",
            r.disk.as_secs_f64(),
            rate(r.disk)
        );
        for (name, t) in [("keyed", r.keyed), ("open ", r.open)] {
            println!(
                "(b) bare stream, {name} mesh    : {:>7.3} s {:>8.1} MiB/s",
                t.stream.as_secs_f64(),
                rate(t.stream)
            );
            println!(
                "(c) blob fetch, {name} mesh     : {:>7.3} s {:>8.1} MiB/s (verified, on disk)",
                t.fetch.as_secs_f64(),
                rate(t.fetch)
            );
            println!(
                "    (c)/(b) {:.2}, (b)/(a) {:.2}",
                rate(t.fetch) / rate(t.stream),
                rate(t.stream) / rate(r.tcp)
            );
        }
        if let Some(n) = args.fetchers {
            let swarm = rendermesh_node::bench_transfer::swarm(mib, n as usize, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            let s = swarm?;
            println!(
                "(e) {n} nodes fetch it at once  : {:>7.3} s {:>8.1} MiB/s in all; the origin uploaded {:.2} times the file",
                s.took.as_secs_f64(),
                r.mib_per_s(s.took) * n as f64,
                s.origin_copies()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = rendermesh_node::bench::run(rendermesh_node::bench::BenchConfig {
        blend: args.blend,
        frames: args.frames,
        samples: args.samples,
        resolution_percent: args.resolution_percent,
        chunk: args.chunk,
        tiles: args.tiles,
        per_task: args.per_task_blender,
        spare: !args.no_spare_blender,
        nodes: args.nodes,
        pin: args.pin,
        checks: args.verify as usize,
        work_dir: dir.clone(),
        blender: args.blender,
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let r = result?;
    let threads = if args.pin {
        ", one thread on a core of its own"
    } else {
        ""
    };
    println!("{} frames, {}", r.frames, r.blender);
    println!(
        "direct blender -b : {:>7.2} s (one process{threads})",
        r.direct.as_secs_f64()
    );
    println!(
        "{:<18}: {:>7.2} s ({} rendered; {} per node{threads})",
        format!("mesh of {}", plural(args.nodes.max(1), "node")),
        r.mesh.as_secs_f64(),
        plural(r.workers, "node"),
        match (args.per_task_blender, args.no_spare_blender) {
            (true, _) => "a Blender per task",
            (false, true) => "one Blender session for the job, no spare",
            (false, false) => "one Blender session for the job, a spare kept",
        }
    );
    println!("ratio mesh/direct : {:>7.2}", r.ratio());
    println!(
        "checks per worker : {}{}",
        args.verify,
        if args.verify > 0 && args.nodes <= 1 {
            " (none made: a mesh of one has no other node)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
