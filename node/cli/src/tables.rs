//! What the listing subcommands print: the peers, jobs and job tables, and their small
//! helpers (ages, states, short ids), pure and tested.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Result, bail};
use rendermesh_node::Role;
use rendermesh_node::api::types::{PeerView, PeersView};
use rendermesh_protocol::{Confinement, printable};
use rendermesh_protocol::{Job, JobId, JobState, NodeId, TaskState};

/// `1 node`, `2 nodes`.
pub(crate) fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Left-aligned columns separated by two spaces; `right` lists the right-aligned ones.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            if right.contains(&i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The last characters of a peer id, as [`NodeId::short`] shows them in logs.
pub(crate) fn short_peer(id: &str) -> &str {
    let start = id.char_indices().rev().nth(5).map(|(i, _)| i).unwrap_or(0);
    &id[start..]
}

/// A peer's Blender version, and whether it renders in a sandbox when that is not the case.
fn blender_cell(p: &PeerView) -> String {
    let version = p
        .blender
        .as_deref()
        .map_or("-", |b| b.strip_prefix("Blender ").unwrap_or(b));
    match (p.confinement, p.blender.is_some()) {
        (Confinement::CannotSandbox, _) => format!("{version} (cannot sandbox)"),
        (Confinement::Unsandboxed, true) => format!("{version} (unsandboxed)"),
        _ => version.to_owned(),
    }
}

/// `rendermesh peers`' table: a coordinator line, then one row per node (`*` marks the
/// coordinator), then with `addrs` every node's multiaddrs.
pub fn peers_table(view: &PeersView, addrs: bool) -> String {
    let mut out = match &view.coordinator {
        Some(c) => {
            let name = view
                .peers
                .iter()
                .find(|p| &p.id == c)
                .map_or("?".to_owned(), |p| printable(&p.name));
            format!("coordinator: {name} ({c}) in term {}\n", view.term)
        }
        None => format!("no coordinator yet (term {})\n", view.term),
    };
    let rows: Vec<Vec<String>> = view
        .peers
        .iter()
        .map(|p| {
            let task = match (&p.current, p.role) {
                (Some(t), _) => match t.tile {
                    Some(tile) => format!("job {} frame {} {tile}", t.job.short(), t.frames),
                    None => format!(
                        "job {} frames {} ({}/{})",
                        t.job.short(),
                        t.frames,
                        t.frames_done,
                        t.frames.len()
                    ),
                },
                (None, Role::Bootstrap) => "bootstrap".into(),
                (None, Role::Worker) => "idle".into(),
            };
            let task = match (p.low_disk, p.disk_free) {
                (true, Some(free)) => format!(
                    "{task}; takes no work: low on disk ({:.1} GiB free)",
                    free as f64 / f64::from(1u32 << 30)
                ),
                (true, None) => format!("{task}; takes no work: low on disk"),
                (false, _) => task,
            };
            let task = match p.suspect_in.as_slice() {
                [] => task,
                jobs => {
                    let jobs: Vec<&str> = jobs.iter().map(|j| j.get(..8).unwrap_or(j)).collect();
                    format!(
                        "{task}; suspect: its pixels differed from two other nodes' in job {}",
                        jobs.join(", ")
                    )
                }
            };
            vec![
                format!(
                    "{} {}",
                    if p.coordinator { "*" } else { " " },
                    printable(&p.name)
                ),
                short_peer(&p.id).to_owned(),
                p.cores.to_string(),
                format!("{:.0}%", p.load * 100.0),
                blender_cell(p),
                if p.engines.is_empty() {
                    "-".to_owned()
                } else {
                    let names: Vec<&str> = p.engines.iter().map(|e| e.name()).collect();
                    names.join(",")
                },
                task,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "  NAME", "PEER ID", "CORES", "LOAD", "BLENDER", "ENGINES", "TASK",
        ],
        &rows,
        &[2, 3],
    ));
    if addrs {
        for p in &view.peers {
            out.push_str(&format!("{} ({}):\n", printable(&p.name), p.id));
            for a in &p.addrs {
                out.push_str(&format!("  {a}\n"));
            }
        }
    }
    out.push_str(&match &view.secret {
        Some(fingerprint) => format!("private mesh {fingerprint}\n"),
        None => "open mesh (--open): anyone who reaches it can join\n".to_owned(),
    });
    out
}

/// A lowercase name for a job state.
pub(crate) fn job_state(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// A lowercase name for a task state.
pub(crate) fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Done => "done",
        TaskState::Failed => "failed",
    }
}

/// How long ago `then_ms` was, at `now_ms` (both milliseconds since the Unix epoch).
pub(crate) fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..10 => "just now".into(),
        10..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A job's state as `jobs` and `job` show it: "paused" added while it is.
fn job_state_of(job: &Job) -> String {
    match job.paused && !job.state.is_terminal() {
        true => format!("{}, paused", job_state(job.state)),
        false => job_state(job.state).to_owned(),
    }
}

/// `rendermesh jobs`' table.
pub fn jobs_table(jobs: &[Job], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.short(),
                j.spec.name.clone(),
                job_state_of(j),
                format!("{}/{}", j.frames_done(), j.spec.frames.len()),
                ago(now_ms, j.created_ms),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STATE", "FRAMES", "CREATED"], &rows, &[3])
}

/// `rendermesh job`'s details: the job, then one row per task naming the node that ran it
/// (`names` maps peer ids to names; unknown ones show in full), then any failures.
pub fn job_details(job: &Job, names: &HashMap<String, String>, now_ms: u64) -> String {
    let spec = &job.spec;
    let node = |id: &NodeId| {
        let text = id.to_string();
        names.get(&text).cloned().unwrap_or(text)
    };
    let mut out = format!("job {}  {}\n", job.id, spec.name);
    out.push_str(&format!(
        "state:    {} ({}/{} frames), priority {}\n",
        job_state_of(job),
        job.frames_done(),
        spec.frames.len(),
        job.priority
    ));
    let setting = |v: Option<u32>, suffix: &str| {
        v.map_or("the file's".to_owned(), |v| format!("{v}{suffix}"))
    };
    out.push_str(&format!(
        "frames:   {}, {}{}, samples {}, resolution {}, {}\n",
        spec.frames,
        spec.format,
        if spec.keep_file_format {
            " (the file's own settings)"
        } else {
            ""
        },
        setting(spec.samples, ""),
        setting(spec.resolution_percent, "%"),
        match job.grid {
            Some(grid) => format!("{grid} tiles per frame"),
            None => format!(
                "chunk {}",
                spec.chunk.map_or("auto".to_owned(), |c| c.to_string())
            ),
        }
    ));
    out.push_str(&format!(
        "blend:    {} ({} bytes), submitted to {}\n",
        spec.blend,
        spec.blend_size,
        node(&job.origin)
    ));
    out.push_str(&format!(
        "engine:   {}{}\n",
        spec.engine,
        if spec.engine.tiles_exactly() {
            ""
        } else {
            " (whole frames only: its tiles would not match)"
        }
    ));
    if !spec.deps.is_empty() {
        let bytes = rendermesh_protocol::files::total_size(&spec.deps).unwrap_or(u64::MAX);
        out.push_str(&format!(
            "files:    {} ({})\n",
            plural(spec.deps.len(), "file"),
            mebibytes(bytes)
        ));
    }
    if !spec.missing.is_empty() {
        out.push_str(&format!(
            "missing:  rendered without {}: {}\n",
            plural(spec.missing.len(), "file"),
            spec.missing.join(", ")
        ));
    }
    out.push_str(&format!(
        "blender:  {}\n",
        spec.blender_version.as_deref().unwrap_or("any")
    ));
    out.push_str(&format!("created:  {}\n", ago(now_ms, job.created_ms)));
    if let Some(m) = &job.message {
        out.push_str(&format!("message:  {m}\n"));
    }
    if job.backups > 0 {
        out.push_str(&format!(
            "backups:  {} at the job's end (a second node rendered a task's frames too, \
             to end it sooner)\n",
            match job.backups {
                1 => "1 copy".to_owned(),
                n => format!("{n} copies"),
            }
        ));
    }
    let rows: Vec<Vec<String>> = job
        .tasks
        .iter()
        .map(|t| {
            let frames = match t.tile {
                Some(tile) => format!("{} tile {},{}", t.frames, tile.col, tile.row),
                None => t.frames.to_string(),
            };
            vec![
                t.index.to_string(),
                frames,
                task_state(t.state).to_owned(),
                t.attempt.to_string(),
                match (&t.worker, &t.backup) {
                    (Some(w), Some(b)) => format!("{} (backup {})", node(w), node(b)),
                    (Some(w), None) => node(w),
                    (None, _) => "-".to_owned(),
                },
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["TASK", "FRAMES", "STATE", "ATTEMPT", "NODE"],
        &rows,
        &[0, 3],
    ));
    for t in &job.tasks {
        for f in &t.failures {
            out.push_str(&format!(
                "task {} (frames {}) failed on {}: {}\n",
                t.index,
                t.frames,
                node(&f.node),
                f.message
            ));
        }
    }
    out
}

/// The one job whose id starts with `prefix` (hex, any case).
pub(crate) fn match_job(jobs: &[Job], prefix: &str) -> Result<JobId> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("bad job id `{prefix}`: expected hex digits (a whole id or its start)");
    }
    let found: Vec<JobId> = jobs
        .iter()
        .map(|j| j.id)
        .filter(|id| id.to_string().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no job id starts with `{prefix}`"),
        many => bail!("`{prefix}` matches {} jobs; give more digits", many.len()),
    }
}

/// `12.5 MiB`.
pub(crate) fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The progress message: who renders right now.
pub(crate) fn working_on(job: &Job, names: &HashMap<String, String>) -> String {
    let nodes: BTreeSet<String> = job
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .filter_map(|t| t.worker.as_ref())
        .map(|w| display_name(w, names))
        .collect();
    if nodes.is_empty() {
        "queued: waiting for a node".into()
    } else {
        format!("on {}", nodes.into_iter().collect::<Vec<_>>().join(", "))
    }
}

/// A node's name if known, else its short id.
pub(crate) fn display_name(id: &NodeId, names: &HashMap<String, String>) -> String {
    names
        .get(&id.to_string())
        .cloned()
        .unwrap_or_else(|| id.short())
}

#[cfg(test)]
mod tests {
    /// The node whose peer id reads `text` (base58).
    fn node(text: &str) -> NodeId {
        text.parse().expect("a peer id in base58")
    }

    use super::*;
    use rendermesh_node::api::types::PeerView;
    use rendermesh_protocol::{BlobHash, Engine, FrameRange, JobSpec, Tiling};
    use rendermesh_protocol::{Output, TaskRef, Term};

    fn peer(id: &str, name: &str, coordinator: bool) -> PeerView {
        PeerView {
            id: id.into(),
            name: name.into(),
            role: Role::Worker,
            addrs: vec![format!("/ip4/10.0.0.1/tcp/4001/p2p/{id}")],
            cores: 8,
            memory: 1 << 30,
            load: 0.5,
            blender: Some("Blender 3.4.1".into()),
            engines: vec![Engine::Cycles, Engine::Eevee],
            confinement: rendermesh_protocol::Confinement::Sandboxed,
            current: None,
            coordinator,
            is_self: false,
            last_seen_ms: 10,
            disk_free: Some(100 << 30),
            low_disk: false,
            suspect_in: Vec::new(),
        }
    }

    fn spec() -> JobSpec {
        JobSpec {
            samples: Some(16),
            ..JobSpec::new(
                "a.blend",
                BlobHash::of(b"a"),
                1,
                FrameRange::new(1, 4).expect("range"),
            )
        }
    }

    fn job_with(id: [u8; 16]) -> Job {
        let plan = rendermesh_protocol::Plan {
            grid: None,
            tasks: vec![
                (FrameRange::new(1, 2).expect("range"), None),
                (FrameRange::new(3, 4).expect("range"), None),
            ],
        };
        Job::new(JobId(id), spec(), node("origin"), plan, Term(1), 0)
    }

    #[test]
    fn job_prefixes_must_be_unique() {
        let mut a = [0u8; 16];
        a[0] = 0xab;
        let mut b = a;
        b[1] = 0x01;
        let jobs = vec![job_with(a), job_with(b)];
        assert_eq!(match_job(&jobs, "AB01").expect("unique"), JobId(b));
        assert_eq!(
            match_job(&jobs, &JobId(a).to_string()).expect("whole"),
            JobId(a)
        );
        let err = match_job(&jobs, "ab").unwrap_err().to_string();
        assert!(err.contains("matches 2 jobs"), "{err}");
        let err = match_job(&jobs, "ff").unwrap_err().to_string();
        assert!(err.contains("no job id starts with `ff`"), "{err}");
        let err = match_job(&jobs, "zz").unwrap_err().to_string();
        assert!(err.contains("bad job id"), "{err}");
        assert!(match_job(&jobs, "").is_err());
    }

    #[test]
    fn the_peers_table_marks_the_coordinator_and_shows_tasks() {
        let mut busy = peer("12D3KooWaaaaaaaa111111", "lab-1", false);
        busy.current = Some(TaskRef {
            job: JobId([0xab; 16]),
            task: 0,
            attempt: 1,
            frames: FrameRange::new(1, 6).expect("range"),
            tile: None,
            frames_done: 2,
        });
        let mut boot = peer("12D3KooWcccccccc333333", "boot", false);
        boot.role = Role::Bootstrap;
        boot.blender = None;
        boot.engines.clear();
        boot.load = 0.0;
        let view = PeersView {
            me: "12D3KooWaaaaaaaa111111".into(),
            term: 3,
            coordinator: Some("12D3KooWbbbbbbbb222222".into()),
            peers: vec![busy, peer("12D3KooWbbbbbbbb222222", "lab-2", true), boot],
            secret: None,
        };
        let table = peers_table(&view, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "coordinator: lab-2 (12D3KooWbbbbbbbb222222) in term 3"
        );
        assert_eq!(
            lines[1],
            "  NAME   PEER ID  CORES  LOAD  BLENDER  ENGINES       TASK"
        );
        assert_eq!(
            lines[2],
            "  lab-1  111111       8   50%  3.4.1    cycles,eevee  job abababab frames 1-6 (2/6)"
        );
        assert_eq!(
            lines[3],
            "* lab-2  222222       8   50%  3.4.1    cycles,eevee  idle"
        );
        assert_eq!(
            lines[4],
            "  boot   333333       8    0%  -        -             bootstrap"
        );
        assert_eq!(
            lines[5],
            "open mesh (--open): anyone who reaches it can join"
        );
        assert_eq!(lines.len(), 6);
        let with_addrs = peers_table(&view, true);
        assert!(
            with_addrs.contains("  /ip4/10.0.0.1/tcp/4001/p2p/12D3KooWbbbbbbbb222222\n"),
            "{with_addrs}"
        );
    }

    #[test]
    fn peer_names_are_printed_without_control_characters() {
        let evil = peer("12D3KooWeeeeeeee444444", "\x1b[2J\x1b[31mevil", true);
        let view = PeersView {
            me: "x".into(),
            term: 1,
            coordinator: Some(evil.id.clone()),
            peers: vec![evil],
            secret: None,
        };
        let table = peers_table(&view, true);
        assert!(!table.contains('\x1b'), "{table:?}");
        assert!(table.contains("?[2J?[31mevil"), "{table:?}");
    }

    #[test]
    fn peers_show_how_each_node_is_confined() {
        let boxed = peer("12D3KooWaaaaaaaa111111", "boxed", true);
        let mut open = peer("12D3KooWbbbbbbbb222222", "open", false);
        open.confinement = Confinement::Unsandboxed;
        let mut stuck = peer("12D3KooWcccccccc333333", "stuck", false);
        stuck.confinement = Confinement::CannotSandbox;
        stuck.blender = None;
        let view = PeersView {
            me: "x".into(),
            term: 1,
            coordinator: Some(boxed.id.clone()),
            peers: vec![boxed, open, stuck],
            secret: None,
        };
        let table = peers_table(&view, false);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.get(2..).is_some_and(|r| r.starts_with(name)))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            row("boxed").contains("3.4.1 ") && !row("boxed").contains('('),
            "{table}"
        );
        assert!(row("open").contains("3.4.1 (unsandboxed)"), "{table}");
        assert!(row("stuck").contains("- (cannot sandbox)"), "{table}");
    }

    #[test]
    fn the_peers_table_says_why_a_node_low_on_disk_takes_no_work() {
        let mut full = peer("12D3KooWaaaaaaaa111111", "lab-1", true);
        full.low_disk = true;
        full.disk_free = Some(3 << 29);
        let view = PeersView {
            me: full.id.clone(),
            term: 1,
            coordinator: Some(full.id.clone()),
            peers: vec![full],
            secret: None,
        };
        let table = peers_table(&view, false);
        assert!(
            table.contains("idle; takes no work: low on disk (1.5 GiB free)"),
            "{table}"
        );
    }

    #[test]
    fn the_peers_table_says_which_jobs_found_a_node_rendering_wrong_pixels() {
        let mut liar = peer("12D3KooWaaaaaaaa111111", "lab-1", false);
        liar.suspect_in = vec!["0123456789abcdef0123456789abcdef".into()];
        let view = PeersView {
            me: liar.id.clone(),
            term: 1,
            coordinator: None,
            peers: vec![liar],
            secret: None,
        };
        let table = peers_table(&view, false);
        assert!(
            table.contains(
                "idle; suspect: its pixels differed from two other nodes' in job 01234567"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_peers_table_says_when_nobody_coordinates() {
        let view = PeersView {
            me: "x".into(),
            term: 0,
            coordinator: None,
            peers: vec![],
            secret: Some("0123abcd".into()),
        };
        let table = peers_table(&view, false);
        assert!(
            table.starts_with("no coordinator yet (term 0)\n"),
            "{table}"
        );
        assert!(table.ends_with("private mesh 0123abcd\n"), "{table}");
    }

    #[test]
    fn the_jobs_table_shows_progress_and_age() {
        let mut j = job_with([0x12; 16]);
        j.created_ms = 1_000;
        let a = j.assign(0, node("w"), Term(1)).expect("assign");
        let out = (1..=2)
            .map(|frame| Output {
                frame,
                blob: BlobHash::of(&[frame as u8]),
                size: 1,
                thumb: None,
            })
            .collect();
        j.complete(0, a, &node("w"), out, Term(1))
            .expect("complete");
        let table = jobs_table(&[j], 1_000 + 5 * 60_000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ID        NAME     STATE    FRAMES  CREATED");
        assert_eq!(lines[1], "12121212  a.blend  running     2/4  5 min ago");
    }

    #[test]
    fn job_details_name_the_nodes_and_the_failures() {
        let mut j = job_with([1; 16]);
        let w1 = node("12D3KooWworker1");
        let w2 = node("12D3KooWworker2");
        let a = j.assign(0, w1.clone(), Term(1)).expect("assign");
        j.fail(0, a, &w1, "no camera".into(), 3, Term(1))
            .expect("fail");
        j.assign(1, w2.clone(), Term(1)).expect("assign");
        let names = HashMap::from([(w1.to_string(), "lab-1".to_owned())]);
        let text = job_details(&j, &names, 0);
        assert!(text.contains("state:    running (0/4 frames)"), "{text}");
        assert!(
            text.contains("samples 16, resolution the file's, chunk auto"),
            "{text}"
        );
        assert!(
            text.contains("   1  3-4     running        1  12D3KooWworker2"),
            "{text}"
        );
        assert!(text.contains("   0  1-2     queued         1  -"), "{text}");
        assert!(
            text.contains("task 0 (frames 1-2) failed on lab-1: no camera"),
            "{text}"
        );
        assert!(!text.contains("backups:"), "{text}");
        j.back_up(1, w1.clone(), Term(1)).expect("back up");
        let text = job_details(&j, &names, 0);
        assert!(
            text.contains("   1  3-4     running        1  12D3KooWworker2 (backup lab-1)"),
            "{text}"
        );
        assert!(text.contains("backups:  1 copy at the job's end"), "{text}");
    }

    #[test]
    fn job_details_show_the_tiles() {
        let mut spec = spec();
        spec.frames = FrameRange::new(7, 7).expect("range");
        spec.tiles = Some(Tiling::Grid(rendermesh_protocol::TileGrid {
            cols: 2,
            rows: 2,
        }));
        let plan = rendermesh_protocol::plan(&spec, 2);
        let j = Job::new(JobId([2; 16]), spec, node("o"), plan, Term(1), 0);
        let text = job_details(&j, &HashMap::new(), 0);
        assert!(text.contains("2x2 tiles per frame"), "{text}");
        assert!(text.contains("7 tile 1,1"), "{text}");
        assert!(text.contains("state:    queued (0/1 frames)"), "{text}");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(5_000, 1_000), "just now");
        assert_eq!(ago(1_000, 5_000), "just now");
        assert_eq!(ago(61_000, 0), "61 s ago");
        assert_eq!(ago(3 * 3_600_000, 0), "3 h ago");
        assert_eq!(ago(3 * 86_400_000, 0), "3 days ago");
    }

    #[test]
    fn peer_ids_shorten_like_node_ids() {
        assert_eq!(short_peer("12D3KooWabcdef123456"), "123456");
        assert_eq!(short_peer("abc"), "abc");
        let id = node("12D3KooWabcdef123456");
        assert_eq!(short_peer(&id.to_string()), id.short());
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_owned(), "1".to_owned()],
            vec!["long".to_owned(), "100".to_owned()],
        ];
        assert_eq!(
            table(&["X", "N"], &rows, &[1]),
            "X       N\na       1\nlong  100\n"
        );
    }

    #[test]
    fn working_on_names_the_busy_nodes() {
        let mut j = job_with([2; 16]);
        let names = HashMap::from([("w1".to_owned(), "lab-1".to_owned())]);
        assert_eq!(working_on(&j, &names), "queued: waiting for a node");
        j.assign(0, node("w1"), Term(1)).expect("assign");
        j.assign(1, node("12D3KooWunknown9"), Term(1))
            .expect("assign");
        assert_eq!(working_on(&j, &names), "on known9, lab-1");
    }
}
