//! What this machine's Blender is and renders with headless, remembered across runs: its
//! version (`blender --version`, about 0.6 s of a core at every node start) and its engines.
//!
//! The engines probe ([`crate::render::Blender::engines`]) starts Blender and renders a
//! Workbench image: about 2.5 s of a core. Both answers depend on the machine (its OpenGL
//! drivers, its sandbox) and on the Blender executable, not on the node, so every node on a
//! machine shares them: they are kept in the machine's directory (beside its mesh key,
//! [`crate::secret::machine_dir`]), one file per question, executable and confinement, named by
//! a hash of the executable's resolved path, size and modification time. An answer older than
//! [`PROBE_CACHE_TTL`] is asked again, so a driver installed since is seen within a day; a
//! Blender replaced by another is asked at once.
//!
//! A file that cannot be read or parsed is ignored and probed over; one that cannot be written
//! costs only the next probe.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rendermesh_scene::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

/// How long a probe's answer is trusted.
pub const PROBE_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the answers are kept (a directory), and for which Blender.
#[derive(Clone, Debug)]
pub struct ProbeCache {
    dir: PathBuf,
}

/// What is asked of Blender.
#[derive(Clone, Copy, Debug)]
pub enum Question {
    /// The engines it renders with headless.
    Engines,
    /// `blender --version`.
    Version,
}

/// One remembered answer.
#[derive(Debug, Serialize, Deserialize)]
struct Entry<T> {
    /// The executable, resolved, for a person reading the file.
    blender: PathBuf,
    /// When it was asked, in seconds since the Unix epoch.
    probed: u64,
    answer: T,
}

impl ProbeCache {
    /// Answers kept in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The engines `exe` (in the sandbox `bwrap` runs, or unconfined) was found to render with within the last
    /// [`PROBE_CACHE_TTL`], as of `now`; `None` when unknown, stale or unreadable.
    pub fn get(&self, exe: &Path, bwrap: Option<&Path>, now: SystemTime) -> Option<Vec<Engine>> {
        self.answer(Question::Engines, exe, bwrap, now)
    }

    /// Remembers that `exe` (in the sandbox `bwrap` runs, or unconfined) renders with `engines`, probed at `now`.
    pub fn put(&self, exe: &Path, bwrap: Option<&Path>, engines: &[Engine], now: SystemTime) {
        self.remember(Question::Engines, exe, bwrap, &engines, now);
    }

    /// The version `exe` (in the sandbox `bwrap` runs, or unconfined) printed within the last [`PROBE_CACHE_TTL`], as of
    /// `now`; `None` when unknown, stale or unreadable.
    pub fn version(&self, exe: &Path, bwrap: Option<&Path>, now: SystemTime) -> Option<String> {
        self.answer(Question::Version, exe, bwrap, now)
    }

    /// Remembers that `exe` (in the sandbox `bwrap` runs, or unconfined) printed `version` at `now`.
    pub fn put_version(&self, exe: &Path, bwrap: Option<&Path>, version: &str, now: SystemTime) {
        self.remember(Question::Version, exe, bwrap, &version, now);
    }

    /// Waits until no other process on this machine is asking `exe` (in the sandbox `bwrap`
    /// runs, or unconfined) `question`, and keeps that turn until the returned file is
    /// dropped: nodes started together on one machine ask once, and the others find the
    /// answer here (an advisory lock, which the kernel releases with the process). `None`
    /// when no lock can be had (no directory, no executable): the caller asks anyway.
    pub async fn turn(
        &self,
        question: Question,
        exe: &Path,
        bwrap: Option<&Path>,
    ) -> Option<std::fs::File> {
        let (path, _) = self.file(question, exe, bwrap)?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).ok()?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path.with_extension("lock"))
                .ok()?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
            Some(file)
        })
        .await
        .ok()?
    }

    fn answer<T: DeserializeOwned>(
        &self,
        question: Question,
        exe: &Path,
        bwrap: Option<&Path>,
        now: SystemTime,
    ) -> Option<T> {
        let (path, resolved) = self.file(question, exe, bwrap)?;
        let entry: Entry<T> = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let age = now.checked_sub(entry.probed)?;
        if entry.blender != resolved || age > PROBE_CACHE_TTL.as_secs() {
            return None;
        }
        Some(entry.answer)
    }

    /// Written to a temporary file and renamed, so that a reader never sees half of it.
    fn remember<T: Serialize>(
        &self,
        question: Question,
        exe: &Path,
        bwrap: Option<&Path>,
        answer: &T,
        now: SystemTime,
    ) {
        let Some((path, resolved)) = self.file(question, exe, bwrap) else {
            return;
        };
        let entry = Entry {
            blender: resolved,
            probed: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            answer,
        };
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&partial, serde_json::to_vec(&entry)?))
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            debug!(
                "cannot remember Blender's answer in {}: {e}",
                path.display()
            );
        }
    }

    /// The file holding `exe`'s answer to `question`, and `exe` resolved; `None` when `exe` is
    /// not found.
    fn file(
        &self,
        question: Question,
        exe: &Path,
        bwrap: Option<&Path>,
    ) -> Option<(PathBuf, PathBuf)> {
        let mut hasher = blake3::Hasher::new();
        let resolved = identify(exe, &mut hasher)?;
        // The sandbox's own executable counts too: an answer got in a sandbox that is gone
        // or replaced since is asked again.
        match bwrap {
            Some(bwrap) => {
                hasher.update(&[1]);
                identify(bwrap, &mut hasher)?;
            }
            None => {
                hasher.update(&[0]);
            }
        }
        let kind = match question {
            Question::Engines => "engines",
            Question::Version => "version",
        };
        let name = format!("{kind}-{}.json", &hasher.finalize().to_hex()[..16]);
        Some((self.dir.join(name), resolved))
    }
}

/// Feeds `exe`'s resolved path, size and modification time to `hasher`; returns the path,
/// `None` when `exe` is not found.
fn identify(exe: &Path, hasher: &mut blake3::Hasher) -> Option<PathBuf> {
    let resolved = resolve(exe)?;
    let meta = std::fs::metadata(&resolved).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    hasher.update(resolved.as_os_str().as_encoded_bytes());
    hasher.update(&meta.len().to_le_bytes());
    hasher.update(&modified.to_le_bytes());
    Some(resolved)
}

/// `exe` as the system runs it: looked up on the `PATH` when it is a bare name, with every
/// symbolic link resolved (Debian's `/usr/bin/blender` is a link).
fn resolve(exe: &Path) -> Option<PathBuf> {
    if exe.components().count() > 1 {
        return std::fs::canonicalize(exe).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(exe))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in executable: any file will do, the cache only looks at its metadata.
    fn exe(dir: &Path, bytes: &[u8]) -> PathBuf {
        stand_in(dir, "blender", bytes)
    }

    fn stand_in(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn an_answer_is_kept_per_executable_and_confinement_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let bwrap = stand_in(dir.path(), "bwrap", b"a sandbox");
        let t0 = SystemTime::now();
        assert_eq!(
            cache.get(&blender, Some(&bwrap), t0),
            None,
            "nothing probed yet"
        );
        let all = [Engine::Cycles, Engine::Eevee, Engine::Workbench];
        cache.put(&blender, Some(&bwrap), &all, t0);
        assert_eq!(cache.get(&blender, Some(&bwrap), t0), Some(all.to_vec()));
        assert_eq!(cache.get(&blender, None, t0), None, "another confinement");
        let day = t0 + PROBE_CACHE_TTL;
        assert_eq!(cache.get(&blender, Some(&bwrap), day), Some(all.to_vec()));
        let later = day + Duration::from_secs(1);
        assert_eq!(cache.get(&blender, Some(&bwrap), later), None, "stale");
    }

    #[test]
    fn a_version_is_kept_apart_from_the_engines_and_asked_again_for_another_build() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let bwrap = stand_in(dir.path(), "bwrap", b"a sandbox");
        let now = SystemTime::now();
        assert_eq!(
            cache.version(&blender, Some(&bwrap), now),
            None,
            "never asked"
        );
        cache.put_version(&blender, Some(&bwrap), "Blender 3.4.1", now);
        cache.put(&blender, Some(&bwrap), &[Engine::Cycles], now);
        assert_eq!(
            cache.version(&blender, Some(&bwrap), now).as_deref(),
            Some("Blender 3.4.1")
        );
        assert_eq!(
            cache.get(&blender, Some(&bwrap), now),
            Some(vec![Engine::Cycles])
        );
        assert_eq!(cache.version(&blender, None, now), None, "unconfined");
        assert_eq!(
            cache.version(
                &blender,
                Some(&bwrap),
                now + PROBE_CACHE_TTL + Duration::from_secs(1)
            ),
            None,
            "stale"
        );
        // Another sandbox, or none any more: asked again.
        stand_in(dir.path(), "bwrap", b"another sandbox");
        assert_eq!(cache.version(&blender, Some(&bwrap), now), None);
        cache.put_version(&blender, Some(&bwrap), "Blender 3.4.1", now);
        std::fs::remove_file(&bwrap).unwrap();
        assert_eq!(cache.version(&blender, Some(&bwrap), now), None);
        cache.put_version(&blender, None, "Blender 3.4.1", now);
        exe(dir.path(), b"another build");
        assert_eq!(cache.version(&blender, None, now), None);
    }

    #[tokio::test]
    async fn one_process_at_a_time_has_its_turn_to_ask() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let first = cache.turn(Question::Engines, &blender, None).await;
        assert!(first.is_some(), "a turn");
        let waiting = {
            let (cache, blender) = (cache.clone(), blender.clone());
            tokio::spawn(async move { cache.turn(Question::Engines, &blender, None).await })
        };
        // Another question is not held up by this one.
        let version = cache.turn(Question::Version, &blender, None).await;
        assert!(version.is_some());
        assert!(
            tokio::time::timeout(Duration::from_millis(300), async {
                while !waiting.is_finished() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .is_err(),
            "the second asker waits for the first"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("its turn came")
            .unwrap();
        assert!(second.is_some());
    }

    #[test]
    fn a_replaced_executable_is_probed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        let blender = exe(dir.path(), b"one");
        let now = SystemTime::now();
        cache.put(&blender, None, &[Engine::Cycles], now);
        exe(dir.path(), b"another build");
        assert_eq!(cache.get(&blender, None, now), None);
    }

    #[test]
    fn a_damaged_file_or_a_missing_executable_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let now = SystemTime::now();
        cache.put(&blender, None, &[Engine::Cycles], now);
        let (file, _) = cache.file(Question::Engines, &blender, None).unwrap();
        std::fs::write(&file, b"{\"blender\":").unwrap();
        assert_eq!(cache.get(&blender, None, now), None);
        let gone = dir.path().join("no-such-blender");
        cache.put(&gone, None, &[Engine::Cycles], now);
        assert_eq!(cache.get(&gone, None, now), None);
    }
}
