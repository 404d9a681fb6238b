//! Issue 11, the insider: a rogue node holding the mesh's key, built from rendermesh's own
//! network code (`rendermesh_node::net`), joins a two-node mesh while it renders a job, and
//! sends what only a coordinator or an assigned worker may: heartbeats that name a higher term
//! and u64::MAX without claiming, job digests with higher versions (and, to any node that asks,
//! forged records: outputs rewritten, the `.blend` swapped, frames 0..u32::MAX), `Assign`,
//! `Cancel`, `Replicate`, and reports of tasks it was never given. The job still finishes
//! pixel-identical to `blender -b`, no node stores a forged record or obeys the rogue, and the
//! mesh neither stalls nor lets the rogue's terms stick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rendermesh_node::MeshSecret;
use rendermesh_node::net::{self, NetConfig, NetEvent};
use rendermesh_node::store::BlobStore;
use rendermesh_protocol::{
    Assignment, BlobHash, Confinement, FrameRange, Gossip, Heartbeat, Job, JobDigest, JobId,
    Outcome, Output, Report, Request, Response, Role, Term, Version,
};
use rendermesh_tests::{
    Fixture, MeshNode, agreed_coordinator, assert_same_pixels, dump_logs, machine_home, wait_for,
    wait_render,
};
use tokio_util::sync::CancellationToken;

/// What the rogue did, and what it was answered.
#[derive(Debug, Default)]
struct Tally {
    heartbeats: usize,
    /// Requests sent, by kind.
    sent: BTreeMap<&'static str, usize>,
    /// Requests a node accepted: there must be none.
    obeyed: Vec<String>,
    /// Pulls of a forged record that nodes asked the rogue for.
    forged_served: usize,
}

/// A forged copy of `real`: the `n`th of its three kinds.
fn forge(real: &Job, n: usize) -> Job {
    let mut forged = real.clone();
    forged.version.seq = forged.version.seq.saturating_add(1_000);
    match n % 3 {
        0 => forged.spec.blend = BlobHash::of(b"the rogue's own .blend"),
        1 => {
            forged.spec.frames = FrameRange {
                start: 0,
                end: u32::MAX,
                step: 1,
            }
        }
        _ => {
            for task in &mut forged.tasks {
                for output in &mut task.outputs {
                    output.blob = BlobHash::of(b"the rogue's frame");
                }
            }
        }
    }
    forged
}

/// The rogue's run until `stop`: joins through `bootstrap` with `secret`, then every 100 ms
/// publishes a lying heartbeat and sends every node one forbidden request.
async fn rogue(
    secret: MeshSecret,
    bootstrap: Vec<rendermesh_node::Multiaddr>,
    dir: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> Result<Tally> {
    let key = net::load_identity(&dir)?;
    let store = BlobStore::open(&dir.join("store"))?;
    let shutdown = CancellationToken::new();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        bootstrap,
        mdns: false,
        secret: Some(secret),
    };
    let (net, mut events, task) = net::start(&key, config, store, shutdown.clone())?;
    let mut tally = Tally::default();
    // What the rogue learns from the nodes' heartbeats: their ids, the coordinator's claim,
    // the jobs they hold; and the real records, pulled from the coordinator.
    let mut nodes = BTreeMap::new();
    let mut claim: Option<(rendermesh_protocol::NodeId, Term)> = None;
    let mut records: BTreeMap<JobId, Job> = BTreeMap::new();
    let mut digests: Vec<JobDigest> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut round = 0usize;
    // It goes on until the job is done and it has sent enough of everything to prove something.
    let enough = |t: &Tally| {
        t.heartbeats >= 10
            && ["Assign", "Cancel", "Replicate", "Report"]
                .iter()
                .all(|k| t.sent.get(k).copied().unwrap_or(0) >= 4)
    };
    while !(stop.load(Ordering::Relaxed) && enough(&tally)) {
        tokio::select! {
            event = events.recv() => match event {
                Some(NetEvent::Gossip { from, msg: Gossip::Heartbeat(hb) }) => {
                    if let Some(id) = net::node_id(&from) {
                        if hb.claims {
                            claim = Some((id.clone(), hb.term));
                        }
                        for d in &hb.jobs {
                            if !digests.iter().any(|x| x.id == d.id) {
                                digests.push(d.clone());
                            }
                        }
                        nodes.insert(id, from);
                    }
                }
                Some(NetEvent::Request { request, reply, .. }) => {
                    let answer = match request {
                        Request::GetJob(id) => match records.get(&id) {
                            Some(real) => {
                                tally.forged_served += 1;
                                Response::Job(Box::new(forge(real, tally.forged_served)))
                            }
                            None => Response::NotFound,
                        },
                        _ => Response::Rejected("the rogue does no work".into()),
                    };
                    let _ = reply.send(answer);
                }
                None => break,
            },
            _ = tick.tick() => {
                round += 1;
                let term = match (round % 2, &claim) {
                    (0, _) => Term(u64::MAX),
                    (_, Some((_, t))) => Term(t.0.saturating_add(3)),
                    (_, None) => Term(1_000),
                };
                let hb = Heartbeat {
                    seq: round as u64,
                    name: "rogue".into(),
                    role: Role::Worker,
                    cores: 64,
                    memory: 1 << 40,
                    blender: None,
                    engines: Vec::new(),
                    confinement: Confinement::Unsandboxed,
                    load: 0.0,
                    current: None,
                    held: Vec::new(),
                    term,
                    coordinator: None,
                    claims: false,
                    jobs: digests
                        .iter()
                        .map(|d| JobDigest {
                            id: d.id,
                            version: Version { term: d.version.term, seq: d.version.seq.saturating_add(1_000) },
                        })
                        .collect(),
                    addrs: Vec::new(),
                    disk_free: None,
                    low_disk: false,
                    leaving: false,
                    table: Default::default(),
                    members: None,
                };
                if net.publish(&Gossip::Heartbeat(hb)).await.is_ok() {
                    tally.heartbeats += 1;
                }
                // The real records, to forge from and to aim requests at.
                if let Some((coordinator, _)) = &claim
                    && let Some(peer) = nodes.get(coordinator)
                {
                    for d in digests.clone() {
                        if let Ok(Response::Job(job)) = net.request(*peer, Request::GetJob(d.id)).await {
                            records.insert(job.id, *job);
                        }
                    }
                }
                let Some(job) = records.values().next().cloned() else { continue };
                let task = &job.tasks[round % job.tasks.len()];
                let coordinator_term = claim.as_ref().map_or(Term(1), |c| c.1);
                let request = match round % 4 {
                    0 => Request::Assign(Assignment {
                        term: coordinator_term,
                        job: job.id,
                        task: task.index,
                        attempt: task.attempt.saturating_add(1),
                        version: Default::default(),
                        frames: task.frames,
                        tile: task.tile,
                        spec: job.spec.clone(),
                        origin: job.origin.clone(),
                    }),
                    1 => Request::Cancel(job.id),
                    2 => Request::Replicate { job: job.id, blobs: vec![BlobHash::of(b"the rogue's frame")] },
                    _ => Request::Report(Report {
                        job: job.id,
                        task: task.index,
                        attempt: task.attempt,
                        outcome: Outcome::Done(
                            task.frames
                                .iter()
                                .map(|frame| Output { frame, blob: BlobHash::of(b"the rogue's frame"), size: 17, thumb: None })
                                .collect(),
                        ),
                    }),
                };
                let kind = match &request {
                    Request::Assign(_) => "Assign",
                    Request::Cancel(_) => "Cancel",
                    Request::Replicate { .. } => "Replicate",
                    _ => "Report",
                };
                for (id, peer) in &nodes {
                    *tally.sent.entry(kind).or_default() += 1;
                    if let Ok(Response::Accepted) = net.request(*peer, request.clone()).await {
                        tally.obeyed.push(format!("{id} took the rogue's {kind}"));
                    }
                }
            }
        }
    }
    shutdown.cancel();
    let _ = task.await;
    Ok(tally)
}

#[test]
fn a_rogue_insider_is_obeyed_by_nobody_and_the_job_still_matches_blender() -> Result<()> {
    let fx = Fixture::new((1, 4), 16, 25, &[])?;
    let root = fx.root.join("mesh");
    std::fs::create_dir_all(&root)?;
    let a = MeshNode::start(&root, "a", None)?;
    let b = MeshNode::start(&root, "b", Some(&a))?;
    let members = [a, b];
    wait_for("the two nodes to agree", Duration::from_secs(30), || {
        agreed_coordinator(&members, 2)
    })
    .with_context(|| dump_logs(&members))?;

    // The rogue has the machine's key: it is an insider.
    let secret = MeshSecret::load(&machine_home().join("mesh.key"))?;
    let bootstrap = members
        .iter()
        .filter_map(|n| n.addrs.iter().find(|a| a.contains("/tcp/")))
        .filter_map(|a| a.parse().ok())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let rogue_dir = root.join("rogue");
    let rogue_stop = stop.clone();
    let rogue = std::thread::spawn(move || -> Result<Tally> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(rogue(secret, bootstrap, rogue_dir, rogue_stop))
    });

    let out = fx.root.join("out");
    let log = fx.root.join("render.log");
    let mut child = rendermesh_tests::start_small_render(&fx.blend, &out, members[0].api, &log)?;
    let rendered = wait_render(&mut child, Duration::from_secs(300), &log, &members);
    stop.store(true, Ordering::Relaxed);
    let tally = rogue
        .join()
        .map_err(|_| anyhow::anyhow!("the rogue panicked"))??;
    rendered?;
    eprintln!("the rogue: {tally:?}");

    for f in 1..=4 {
        assert_same_pixels(
            &out.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("frame {f}"))?;
    }
    assert!(tally.obeyed.is_empty(), "{:?}", tally.obeyed);
    for kind in ["Assign", "Cancel", "Replicate", "Report"] {
        assert!(
            tally.sent.get(kind).copied().unwrap_or(0) >= 4,
            "the rogue sent too few {kind}s to prove anything: {tally:?}"
        );
    }
    assert!(tally.heartbeats >= 10, "{tally:?}");

    // Both nodes hold the real record: the spec the CLI submitted, each frame's hash the hash
    // of the frame saved; every task was rendered by one of them.
    let ids: Vec<&str> = members.iter().map(|n| n.id.as_str()).collect();
    let mut specs = Vec::new();
    for node in &members {
        // A follower's copy may be a version behind the coordinator's for a moment (it pulls
        // the record once a heartbeat advertises the new version): wait for it to say done.
        let job = wait_for(
            &format!("{}'s copy of the job to say it is done", node.name),
            Duration::from_secs(10),
            || {
                let jobs = node.get("/api/v1/jobs")?;
                jobs.as_array()
                    .and_then(|j| j.first())
                    .filter(|j| j["state"] == "Done")
                    .cloned()
            },
        )
        .with_context(|| dump_logs(&members))?;
        assert_eq!(job["spec"]["frames"]["start"], 1);
        assert_eq!(job["spec"]["frames"]["end"], 4);
        for task in job["tasks"].as_array().context("tasks")? {
            let worker = task["worker"].as_str().unwrap_or_default();
            assert!(ids.contains(&worker), "task rendered by {worker}");
            for output in task["outputs"].as_array().context("outputs")? {
                let frame = output["frame"].as_u64().context("frame")?;
                let saved = std::fs::read(out.join(format!("scene_{frame:04}.png")))?;
                assert_eq!(
                    output["blob"].as_str(),
                    Some(blake3::hash(&saved).to_hex().as_str()),
                    "{}: frame {frame}'s hash is not the saved frame's",
                    node.name
                );
            }
        }
        specs.push(job["spec"].clone());
        // The rogue's terms did not stick: the coordinator is a member, in a small term.
        let peers = node.peers().context("peers")?;
        let coordinator = peers["coordinator"].as_str().unwrap_or_default();
        assert!(ids.contains(&coordinator), "{peers}");
        assert!(
            peers["term"].as_u64().unwrap_or(u64::MAX) < 1_000,
            "{peers}"
        );
    }
    assert_eq!(specs[0], specs[1], "the nodes hold different specs");
    let blend = std::fs::read(&fx.blend)?;
    assert_eq!(
        specs[0]["blend"].as_str(),
        Some(blake3::hash(&blend).to_hex().as_str()),
        "the .blend in the record is not the one submitted"
    );
    Ok(())
}
