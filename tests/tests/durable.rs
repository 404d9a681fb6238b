//! Issue 12: nothing is lost when the whole mesh loses power, a blob is damaged on disk, a
//! Blender hangs or a machine freezes. Three `rendermesh node` processes render a job; all
//! three are SIGKILLed at once mid-job and started again on the same data directories. The
//! job carries on from their job tables on disk and finishes with every frame equal to
//! `blender -b`, and a job finished before the cut can still be downloaded.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rendermesh_tests::{
    Fixture, MeshNode, agreed_coordinator, assert_same_pixels, cluster, descendants, dump_logs,
    fake_wrong_pixels_blender, frames_done, http_status, job_workers, kill_all, signal, wait_for,
};
use serde_json::Value;

const FRAMES: (u32, u32) = (1, 12);
const SAMPLES: u32 = 16;
const PERCENT: u32 = 25;

/// Submits frames `first..=last` through `node` and returns the job id at once (`--detach`).
fn submit(node: &MeshNode, fx: &Fixture, first: u32, last: u32) -> Result<String> {
    submit_as(node, fx, first, last, (SAMPLES, PERCENT))
}

/// [`submit`] at `(samples, resolution percent)`.
fn submit_as(
    node: &MeshNode,
    fx: &Fixture,
    first: u32,
    last: u32,
    (samples, percent): (u32, u32),
) -> Result<String> {
    let out = node.cli(&[
        "render",
        &fx.blend.display().to_string(),
        "--frames",
        &format!("{first}-{last}"),
        "--samples",
        &samples.to_string(),
        "--resolution-percent",
        &percent.to_string(),
        "--chunk",
        "1",
        "--detach",
        "--out",
        &fx.root.join("unused").display().to_string(),
    ])?;
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

/// Job `id` as `node` holds it.
fn job(node: &MeshNode, id: &str) -> Option<Value> {
    node.get(&format!("/api/v1/jobs/{id}"))
}

/// Waits until `node` holds job `id` done.
fn wait_done(nodes: &[MeshNode], via: usize, id: &str, timeout: Duration) -> Result<Value> {
    wait_for(&format!("job {id} to be done"), timeout, || {
        job(&nodes[via], id).filter(|j| j["state"] == "Done")
    })
    .with_context(|| dump_logs(nodes))
}

/// `rendermesh download ID` through `node` into `dir`, then every frame of `first..=last`
/// equals `blender -b`'s.
fn download_and_compare(
    node: &MeshNode,
    fx: &Fixture,
    id: &str,
    first: u32,
    last: u32,
) -> Result<()> {
    let dir = fx.root.join(format!("download-{id}"));
    let got = node.cli(&[
        "download",
        id,
        "--no-wait",
        "--out",
        &dir.display().to_string(),
    ])?;
    if !got.status.success() {
        bail!(
            "download {id} failed: {}{}",
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&got.stderr)
        );
    }
    for f in first..=last {
        assert_same_pixels(
            &dir.join(format!("scene_{f:04}.png")),
            &fx.reference_frame(f),
        )
        .with_context(|| format!("job {id}, frame {f}"))?;
    }
    Ok(())
}

#[test]
fn a_whole_mesh_killed_at_once_carries_on_its_jobs_from_disk() -> Result<()> {
    let fx = Fixture::new(FRAMES, SAMPLES, PERCENT, &[])?;
    let mut nodes = cluster(&fx.root.join("mesh"), 3)?;
    // Idle, each node asks Blender which engines it renders with (or finds the answer of an
    // earlier node on this machine).
    wait_for(
        "every node to know its engines",
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .all(|n| {
                    let log = n.log_text();
                    log.contains("engines probed, and remembered on this machine")
                        || log.contains("engines known from an earlier probe on this machine")
                })
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;

    // A job finished before the power cut.
    let before = submit(&nodes[1], &fx, 1, 3)?;
    wait_done(&nodes, 1, &before, Duration::from_secs(120))?;

    // A job cut in the middle: every node is killed at once.
    let cut = submit(&nodes[1], &fx, FRAMES.0, FRAMES.1)?;
    wait_for(
        "a few frames of the job to be done",
        Duration::from_secs(120),
        || job(&nodes[1], &cut).filter(|j| (2..10).contains(&frames_done(j))),
    )
    .with_context(|| dump_logs(&nodes))?;
    kill_all(&mut nodes);

    // Back on the same data directories: the first alone, the others joining it.
    let (first, rest) = nodes.split_at_mut(1);
    first[0].restart(None)?;
    for node in rest.iter_mut() {
        node.restart(Some(&first[0]))?;
    }
    wait_for(
        "the restarted mesh to agree",
        Duration::from_secs(30),
        || agreed_coordinator(&nodes, 3),
    )
    .with_context(|| dump_logs(&nodes))?;
    // Each node took its table back from its own disk, before any peer could send it.
    for node in &nodes {
        let log = node.log_text();
        if !log.contains("job table restored from disk jobs=2") {
            bail!("{} did not restore both jobs:\n{log}", node.name);
        }
    }

    let done = wait_done(&nodes, 2, &cut, Duration::from_secs(300))?;
    assert_eq!(done["state"], "Done");
    download_and_compare(&nodes[2], &fx, &cut, FRAMES.0, FRAMES.1)?;
    download_and_compare(&nodes[0], &fx, &before, 1, 3)?;
    // Idle again, each restarted node knows its Blender's version and engines without
    // starting Blender to ask: the machine remembers them.
    wait_for(
        "the restarted nodes to know their engines",
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .all(|n| {
                    let log = n.log_text();
                    log.contains("engines known from an earlier probe on this machine")
                        && log.contains("version known from an earlier run on this machine")
                })
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    Ok(())
}

/// Issue 12: a power cut truncates one frame in a node's store and corrupts another. Back up,
/// the node finds both damaged, removes them, and fetches both again from its peer; with that
/// peer gone, it serves every frame of the job whole.
#[test]
fn damaged_blobs_are_found_after_a_restart_and_fetched_again() -> Result<()> {
    let fx = Fixture::new(FRAMES, SAMPLES, PERCENT, &[])?;
    let mut nodes = cluster(&fx.root.join("mesh"), 2)?;
    let id = submit(&nodes[1], &fx, 1, 3)?;
    let done = wait_done(&nodes, 1, &id, Duration::from_secs(120))?;
    let blobs: Vec<String> = done["tasks"]
        .as_array()
        .context("no tasks")?
        .iter()
        .flat_map(|t| t["outputs"].as_array().cloned().unwrap_or_default())
        .filter_map(|o| o["blob"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(blobs.len(), 3, "{done}");
    let store = nodes[1].data_dir.join("store/blobs");
    let path = |blob: &str| store.join(blob);
    // In a mesh of two, both nodes hold every frame once the job is done.
    let whole = wait_for(
        "node-2 to hold every frame",
        Duration::from_secs(30),
        || {
            blobs
                .iter()
                .map(|b| std::fs::read(path(b)).ok())
                .collect::<Option<Vec<Vec<u8>>>>()
        },
    )?;

    nodes[1].kill();
    let truncated = &whole[0][..whole[0].len() / 2];
    std::fs::write(path(&blobs[0]), truncated)?;
    let mut flipped = whole[1].clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(path(&blobs[1]), &flipped)?;

    let (first, rest) = nodes.split_at_mut(1);
    rest[0].restart(Some(&first[0]))?;
    wait_for(
        "both damaged frames to be fetched again",
        Duration::from_secs(60),
        || {
            let back =
                (0..2).all(|i| std::fs::read(path(&blobs[i])).ok().as_ref() == Some(&whole[i]));
            back.then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let log = nodes[1].log_text();
    assert_eq!(
        log.matches("a blob was damaged on disk").count(),
        2,
        "{log}"
    );

    // The only node left serves every frame, whole.
    nodes[0].kill();
    download_and_compare(&nodes[1], &fx, &id, 1, 3)
}

/// Frames of a second or two (samples, resolution percent), so that a render can be caught in
/// the middle.
const SLOW: (u32, u32) = (64, 50);
/// The last frame of the jobs at [`SLOW`] settings: six of them, so that each of three nodes
/// still holds a task once the first frames are done.
const SLOW_LAST: u32 = 6;

/// The scene and its frames `1..=SLOW_LAST` rendered by `blender -b` at [`SLOW`] settings,
/// made once for every test of this binary that needs them (under cargo's scratch directory
/// for tests, since it lives as long as the process). Each test keeps its nodes in a directory
/// of its own under it.
fn slow_fixture() -> Result<&'static Fixture> {
    static SLOW_FIXTURE: Mutex<Option<&'static Fixture>> = Mutex::new(None);
    let mut slot = SLOW_FIXTURE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(fx) = *slot {
        return Ok(fx);
    }
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let fx = Fixture::new_in(parent, (1, SLOW_LAST), SLOW.0, SLOW.1, &[])?;
    let fx: &'static Fixture = Box::leak(Box::new(fx));
    *slot = Some(fx);
    Ok(fx)
}

/// The index of the task of `job` (a record as JSON) running on node `id`, if any.
fn running_on(job: &Value, id: &str) -> Option<usize> {
    job["tasks"]
        .as_array()?
        .iter()
        .position(|t| t["state"] == "Running" && t["worker"] == id)
}

/// Whether `node` is rendering task `index` of `job` with nothing written yet: the task's work
/// directory (`work/jobs/<job>/out/<task>-<attempt>/out`, removed once the render ends) is
/// there and empty.
fn rendering(node: &MeshNode, job: &str, index: u64) -> bool {
    let outputs = node.data_dir.join("work/jobs").join(job).join("out");
    let prefix = format!("{index}-");
    let Ok(entries) = std::fs::read_dir(&outputs) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.file_name().to_string_lossy().starts_with(&prefix)
            && std::fs::read_dir(entry.path().join("out")).is_ok_and(|mut d| d.next().is_none())
    })
}

/// Issue 12: a hung Blender held its task for good (its node's heartbeat still named it), and
/// a frozen machine's result, once it woke, could have counted. Here one node's Blender is
/// SIGSTOPped mid-job: its task is taken back once it runs past its timeout (5x the job's
/// median frame time, at least 4 s here), or rendered first by a backup copy on an idle node
/// (issue 13), that Blender is killed, and the node renders on.
/// In a second job, another node is frozen whole mid-render (SIGSTOP of it and its Blender):
/// its task goes elsewhere, and once it is woken (SIGCONT) it stops that render or has its
/// result refused. Every frame of both jobs equals `blender -b`.
#[test]
fn a_hung_blender_and_a_frozen_node_lose_their_tasks_and_nothing_late_counts() -> Result<()> {
    // With four frames, the node to hang could be idle once the first frames are done.
    const LAST: u32 = SLOW_LAST;
    let fx = slow_fixture()?;
    let root = fx.root.join("hang");
    let args = ["--threads", "1", "--min-task-timeout", "4"];
    let mut nodes = vec![MeshNode::start_with(&root, "node-1", None, &args)?];
    for name in ["node-2", "node-3"] {
        let node = MeshNode::start_with(&root, name, Some(&nodes[0]), &args)?;
        nodes.push(node);
    }
    let coordinator = wait_for("the mesh to agree", Duration::from_secs(30), || {
        agreed_coordinator(&nodes, 3)
    })
    .with_context(|| dump_logs(&nodes))?;
    // Only the coordinator's node is asked anything: a frozen node's API does not answer.
    let via = nodes
        .iter()
        .position(|n| n.id == coordinator)
        .context("the coordinator is not one of ours")?;
    let others: Vec<usize> = (0..3).filter(|&i| i != via).collect();
    let (hangs, freezes) = (others[0], others[1]);

    // Once a frame is timed, the Blender of a node holding a task stops dead.
    let first = submit_as(&nodes[via], fx, 1, LAST, SLOW)?;
    let hangs_id = nodes[hangs].id.clone();
    let hangs_pid = nodes[hangs].pid().context("node runs")?;
    // The record says `Running` until the frame is copied, so a Blender may have finished
    // the task it names: it is stopped only while the task's work directory is still empty,
    // as seen once it is stopped (and woken to try again otherwise).
    let (stopped, hung_task, hung_attempt) = wait_for(
        "a frame done and a Blender rendering on the node to hang",
        Duration::from_secs(120),
        || {
            let job = job(&nodes[via], &first)?;
            let blender = descendants(hangs_pid);
            let task = running_on(&job, &hangs_id)?;
            if frames_done(&job) < 1 || blender.is_empty() {
                return None;
            }
            let index = job["tasks"][task]["index"].as_u64()?;
            let attempt = job["tasks"][task]["attempt"].as_u64()?;
            if !rendering(&nodes[hangs], &first, index) {
                return None;
            }
            signal(&blender, "STOP").ok()?;
            if rendering(&nodes[hangs], &first, index) {
                return Some((blender, task, attempt));
            }
            signal(&blender, "CONT").ok()?;
            None
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let done = wait_done(&nodes, via, &first, Duration::from_secs(300))?;
    let timed_out = done["tasks"].as_array().into_iter().flatten().any(|t| {
        t["failures"].as_array().is_some_and(|fs| {
            fs.iter().any(|f| {
                f["node"] == hangs_id.as_str()
                    && f["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("timed out"))
            })
        })
    });
    // The hung render never counted: the task was taken back after its timeout and rendered
    // again in a later attempt (by any node: the hung one too, once its Blender was killed),
    // or its backup copy on another node reported first (the job's last task, an idle node).
    let task = &done["tasks"][hung_task];
    assert_eq!(task["state"], "Done", "{done}");
    let again = task["attempt"].as_u64().is_some_and(|a| a > hung_attempt);
    assert!(
        again || task["worker"] != hangs_id.as_str(),
        "the hung render (attempt {hung_attempt}) counted: {done}"
    );
    let backed_up = done["backups"].as_u64().is_some_and(|n| n > 0);
    assert!(
        timed_out || backed_up,
        "the hung node's task neither timed out nor was backed up: {done}"
    );
    wait_for(
        "the hung Blender to be killed",
        Duration::from_secs(30),
        || {
            stopped
                .iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let log = nodes[hangs].log_text();
    if !log.contains("the coordinator took the task back") && !log.contains("job ended; stopping") {
        bail!(
            "{} did not stop its hung render:\n{}",
            nodes[hangs].name,
            dump_logs(&nodes)
        );
    }
    download_and_compare(&nodes[via], fx, &first, 1, LAST)?;

    // A whole machine freezes in the middle of a render, and wakes once the job is done.
    let second = submit_as(&nodes[via], fx, 1, LAST, SLOW)?;
    let freezes_pid = nodes[freezes].pid().context("node runs")?;
    let log_before = wait_for(
        "the node to freeze to be in the middle of a render",
        Duration::from_secs(120),
        || {
            let log = nodes[freezes].log_text();
            let last = log.lines().rev().find(|l| {
                l.contains(&second[..8])
                    && (l.contains("mesh: rendering") || l.contains("task rendered"))
            })?;
            if !last.contains("mesh: rendering") {
                return None;
            }
            // Frozen while that render runs: its work directory still empty once frozen (a
            // render that ended meanwhile may have reported; woken, try again).
            let task: u64 = last
                .split_whitespace()
                .find_map(|w| w.strip_prefix("task=")?.parse().ok())?;
            let mut frozen = vec![freezes_pid];
            frozen.extend(descendants(freezes_pid));
            signal(&frozen, "STOP").ok()?;
            if rendering(&nodes[freezes], &second, task) {
                return Some(nodes[freezes].log_text());
            }
            signal(&frozen, "CONT").ok()?;
            None
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let done = wait_done(&nodes, via, &second, Duration::from_secs(300))?;
    let mut frozen = vec![freezes_pid];
    frozen.extend(descendants(freezes_pid));
    signal(&frozen, "CONT")?;
    // Awake, it stops that render or has its result refused; nothing changes the record.
    let woke = wait_for(
        "the woken node to let its stale task go",
        Duration::from_secs(60),
        || {
            let log = nodes[freezes].log_text();
            let woken = log.get(log_before.len()..).unwrap_or_default().to_owned();
            (woken.contains("report refused") || woken.contains("stopping")).then_some(woken)
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let after = job(&nodes[via], &second).context("the job is still known")?;
    assert_eq!(
        after["tasks"], done["tasks"],
        "a late result changed the record: {woke}"
    );
    download_and_compare(&nodes[via], fx, &second, 1, LAST)
}

/// Issue 12: no code checked free space, and nothing was ever deleted.
///
/// A node that must keep more disk free than it has takes no work, says so in `peers`, and
/// refuses uploads (507); the jobs render on the other node alone, pixel-identical. Then
/// `DELETE /api/v1/jobs/{id}` and `rendermesh jobs --prune`, on the node the jobs were submitted
/// through, remove them for everyone: no node lists or serves them any more, and `download`
/// refuses them. Another node may not remove them.
#[test]
fn a_node_low_on_disk_takes_no_work_and_removed_jobs_are_gone_from_every_node() -> Result<()> {
    let fx = Fixture::new((1, 2), SAMPLES, PERCENT, &[])?;
    let root = fx.root.join("mesh");
    let roomy = MeshNode::start(&root, "node-1", None)?;
    // Keep 1 EiB free: no disk has that.
    let full = ["--threads", "1", "--min-free-disk", "1073741824"];
    let full = MeshNode::start_with(&root, "node-2", Some(&roomy), &full)?;
    let nodes = vec![roomy, full];
    wait_for(
        "node-1 to see node-2 low on disk",
        Duration::from_secs(30),
        || {
            let view = nodes[0].peers()?;
            let peers = view["peers"].as_array()?;
            peers
                .iter()
                .any(|p| p["id"] == nodes[1].id.as_str() && p["low_disk"] == true)
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let peers = nodes[0].cli(&["peers"])?;
    let text = String::from_utf8_lossy(&peers.stdout);
    assert!(text.contains("takes no work: low on disk"), "{text}");
    assert_eq!(http_status(nodes[1].api, "PUT", "/api/v1/blobs"), Some(507));

    let deleted = submit(&nodes[0], &fx, 1, 2)?;
    let pruned = submit(&nodes[0], &fx, 1, 1)?;
    let done = wait_done(&nodes, 0, &deleted, Duration::from_secs(120))?;
    wait_done(&nodes, 0, &pruned, Duration::from_secs(120))?;
    assert_eq!(job_workers(&done), [nodes[0].id.clone()], "{done}");
    download_and_compare(&nodes[0], &fx, &deleted, 1, 2)?;

    let path = format!("/api/v1/jobs/{deleted}");
    wait_for("node-2 to hold the job", Duration::from_secs(30), || {
        job(&nodes[1], &deleted).map(drop)
    })?;
    assert_eq!(
        http_status(nodes[1].api, "DELETE", &path),
        Some(400),
        "not its origin"
    );
    assert!(job(&nodes[0], &deleted).is_some());
    assert_eq!(http_status(nodes[0].api, "DELETE", &path), Some(200));
    // The removal comes back to this node with the coordinator's next write of the table.
    wait_for(
        "the deleted job to leave node-1's list",
        Duration::from_secs(30),
        || job(&nodes[0], &deleted).is_none().then_some(()),
    )
    .with_context(|| dump_logs(&nodes))?;
    let out = nodes[0].cli(&["jobs", "--prune"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("removed 1 finished job"), "{text}");

    for id in [&deleted, &pruned] {
        wait_for(
            &format!("job {id} to be gone everywhere"),
            Duration::from_secs(30),
            || {
                nodes
                    .iter()
                    .all(|n| {
                        job(n, id).is_none()
                            && n.get("/api/v1/jobs")
                                .and_then(|l| l.as_array().cloned())
                                .is_some_and(|l| l.iter().all(|j| j["id"] != id.as_str()))
                    })
                    .then_some(())
            },
        )
        .with_context(|| dump_logs(&nodes))?;
        let dir = fx.root.join("again").display().to_string();
        let got = nodes[0].cli(&["download", id, "--no-wait", "--out", &dir])?;
        assert!(!got.status.success(), "a removed job downloaded");
    }
    Ok(())
}

/// Issue 12: a node rendering wrong pixels (bad memory, a different library) was believed.
/// One of three nodes runs a test-only Blender that brightens every render. A check (one frame
/// of each worker's first task rendered again elsewhere) catches it, a third node decides, and
/// it is shown suspect; all it rendered is rendered again, and the job's frames equal
/// `blender -b`'s.
#[test]
fn a_node_rendering_wrong_pixels_is_caught_and_its_frames_are_rendered_again() -> Result<()> {
    const LAST: u32 = 6;
    let fx = Fixture::new((1, LAST), SAMPLES, PERCENT, &[])?;
    let root = fx.root.join("mesh");
    let honest = ["--threads", "1"];
    let mut nodes = vec![MeshNode::start_with(&root, "node-1", None, &honest)?];
    nodes.push(MeshNode::start_with(
        &root,
        "node-2",
        Some(&nodes[0]),
        &honest,
    )?);
    let fake = fake_wrong_pixels_blender(&fx.root.join("fake"))?
        .display()
        .to_string();
    let liar = ["--threads", "1", "--no-sandbox", "--blender", fake.as_str()];
    nodes.push(MeshNode::start_with(
        &root,
        "node-3",
        Some(&nodes[0]),
        &liar,
    )?);
    wait_for("the mesh to agree", Duration::from_secs(30), || {
        agreed_coordinator(&nodes, 3)
    })
    .with_context(|| dump_logs(&nodes))?;
    let liar = nodes[2].id.clone();

    let id = submit(&nodes[0], &fx, 1, LAST)?;
    let done = wait_done(&nodes, 0, &id, Duration::from_secs(180))?;
    assert_eq!(done["suspects"], serde_json::json!([liar]), "{done}");
    assert!(
        !job_workers(&done).contains(&liar),
        "no frame of the liar counts: {done}"
    );
    let verdicts: Vec<&str> = done["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["verdict"].as_str())
        .collect();
    assert!(verdicts.contains(&"Differs"), "{done}");
    download_and_compare(&nodes[0], &fx, &id, 1, LAST)?;

    let view = nodes[0].peers().context("node-1's peers")?;
    let shown = view["peers"].as_array().is_some_and(|peers| {
        peers
            .iter()
            .any(|p| p["id"] == liar.as_str() && p["suspect_in"] == serde_json::json!([id]))
    });
    assert!(shown, "{view}");
    let peers = nodes[0].cli(&["peers"])?;
    let text = String::from_utf8_lossy(&peers.stdout);
    assert!(text.contains("suspect: its pixels differed"), "{text}");
    Ok(())
}

/// Issue 12: a node stopped politely (SIGTERM, ctrl-c) was seen as dead: its task waited out
/// the peer timeout, and so did the election when it coordinated. A worker holding a task is
/// SIGTERMed: the coordinator drops it at once on its leaving heartbeat. Then the coordinator
/// is SIGTERMed: the last node drops it likewise, takes over, and finishes the job, every
/// frame equal to `blender -b`'s.
#[test]
fn nodes_stopped_politely_hand_back_their_task_and_their_term_at_once() -> Result<()> {
    // Frames of a second or two, so that a worker is caught holding a task.
    const LAST: u32 = SLOW_LAST;
    let fx = slow_fixture()?;
    let mut nodes = cluster(&fx.root.join("leave"), 3)?;
    let coordinator = agreed_coordinator(&nodes, 3).context("the mesh agrees")?;
    let via = nodes
        .iter()
        .position(|n| n.id == coordinator)
        .context("the coordinator is not one of ours")?;
    let id = submit_as(&nodes[via], fx, 1, LAST, SLOW)?;
    let worker = wait_for("a worker to hold a task", Duration::from_secs(60), || {
        let record = job(&nodes[via], &id)?;
        (0..nodes.len()).find(|&i| i != via && running_on(&record, &nodes[i].id).is_some())
    })
    .with_context(|| dump_logs(&nodes))?;
    let last = (0..nodes.len())
        .find(|&i| i != via && i != worker)
        .context("three nodes")?;

    // Peer ids as the logs print them.
    let short: Vec<String> = nodes
        .iter()
        .map(|n| n.id[n.id.len() - 6..].to_owned())
        .collect();
    nodes[worker].terminate(Duration::from_secs(20))?;
    assert!(
        nodes[worker].logged(&["leaving the mesh"]),
        "{}",
        dump_logs(&nodes)
    );
    wait_for(
        "the coordinator to drop the worker that left",
        Duration::from_secs(10),
        || {
            nodes[via]
                .logged(&["peer left the mesh", &short[worker]])
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;

    nodes[via].terminate(Duration::from_secs(20))?;
    wait_for(
        "the last node to drop the coordinator that left",
        Duration::from_secs(10),
        || {
            nodes[last]
                .logged(&["peer left the mesh", &short[via]])
                .then_some(())
        },
    )
    .with_context(|| dump_logs(&nodes))?;
    let survivor = std::slice::from_ref(&nodes[last]);
    wait_done(survivor, 0, &id, Duration::from_secs(180))?;
    download_and_compare(&nodes[last], fx, &id, 1, LAST)
}
