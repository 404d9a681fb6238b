//! Which engines this machine's Blender renders with headless, remembered across runs.
//!
//! The probe ([`crate::render::Blender::engines`]) starts Blender and renders a Workbench
//! image: about 2.5 s of a core. Its answer depends on the machine (its OpenGL drivers) and on
//! the Blender executable, not on the node, so every node on a machine shares it: it is kept in
//! the machine's directory (beside its mesh key, [`crate::secret::machine_dir`]), one file per
//! executable and confinement, named by a hash of the executable's resolved path, size and
//! modification time. An answer older than [`PROBE_CACHE_TTL`] is probed again, so a driver
//! installed since is seen within a day; a Blender replaced by another is probed at once.
//!
//! A file that cannot be read or parsed is ignored and probed over; one that cannot be written
//! costs only the next probe.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rendermesh_scene::Engine;
use serde::{Deserialize, Serialize};
use tracing::debug;

/// How long a probe's answer is trusted.
pub const PROBE_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the answers are kept (a directory), and for which Blender.
#[derive(Clone, Debug)]
pub struct ProbeCache {
    dir: PathBuf,
}

/// One remembered answer.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The executable, resolved, for a person reading the file.
    blender: PathBuf,
    /// When it was probed, in seconds since the Unix epoch.
    probed: u64,
    engines: Vec<Engine>,
}

impl ProbeCache {
    /// Answers kept in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The engines `exe` (sandboxed or not) was found to render with within the last
    /// [`PROBE_CACHE_TTL`], as of `now`; `None` when unknown, stale or unreadable.
    pub fn get(&self, exe: &Path, sandboxed: bool, now: SystemTime) -> Option<Vec<Engine>> {
        let (path, resolved) = self.file(exe, sandboxed)?;
        let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let age = now.checked_sub(entry.probed)?;
        if entry.blender != resolved || age > PROBE_CACHE_TTL.as_secs() {
            return None;
        }
        Some(entry.engines)
    }

    /// Remembers that `exe` (sandboxed or not) renders with `engines`, probed at `now`.
    /// Written to a temporary file and renamed, so that a reader never sees half of it.
    pub fn put(&self, exe: &Path, sandboxed: bool, engines: &[Engine], now: SystemTime) {
        let Some((path, resolved)) = self.file(exe, sandboxed) else {
            return;
        };
        let entry = Entry {
            blender: resolved,
            probed: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            engines: engines.to_vec(),
        };
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&partial, serde_json::to_vec(&entry)?))
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            debug!(
                "cannot remember the engines probe in {}: {e}",
                path.display()
            );
        }
    }

    /// The file holding `exe`'s answer, and `exe` resolved; `None` when `exe` is not found.
    fn file(&self, exe: &Path, sandboxed: bool) -> Option<(PathBuf, PathBuf)> {
        let resolved = resolve(exe)?;
        let meta = std::fs::metadata(&resolved).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let mut hasher = blake3::Hasher::new();
        hasher.update(resolved.as_os_str().as_encoded_bytes());
        hasher.update(&meta.len().to_le_bytes());
        hasher.update(&modified.to_le_bytes());
        hasher.update(&[u8::from(sandboxed)]);
        let name = format!("engines-{}.json", &hasher.finalize().to_hex()[..16]);
        Some((self.dir.join(name), resolved))
    }
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
        let path = dir.join("blender");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn an_answer_is_kept_per_executable_and_confinement_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let t0 = SystemTime::now();
        assert_eq!(cache.get(&blender, true, t0), None, "nothing probed yet");
        let all = [Engine::Cycles, Engine::Eevee, Engine::Workbench];
        cache.put(&blender, true, &all, t0);
        assert_eq!(cache.get(&blender, true, t0), Some(all.to_vec()));
        assert_eq!(cache.get(&blender, false, t0), None, "another confinement");
        let day = t0 + PROBE_CACHE_TTL;
        assert_eq!(cache.get(&blender, true, day), Some(all.to_vec()));
        let later = day + Duration::from_secs(1);
        assert_eq!(cache.get(&blender, true, later), None, "stale");
    }

    #[test]
    fn a_replaced_executable_is_probed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        let blender = exe(dir.path(), b"one");
        let now = SystemTime::now();
        cache.put(&blender, false, &[Engine::Cycles], now);
        exe(dir.path(), b"another build");
        assert_eq!(cache.get(&blender, false, now), None);
    }

    #[test]
    fn a_damaged_file_or_a_missing_executable_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path().join("machine"));
        let blender = exe(dir.path(), b"one");
        let now = SystemTime::now();
        cache.put(&blender, false, &[Engine::Cycles], now);
        let (file, _) = cache.file(&blender, false).unwrap();
        std::fs::write(&file, b"{\"blender\":").unwrap();
        assert_eq!(cache.get(&blender, false, now), None);
        let gone = dir.path().join("no-such-blender");
        cache.put(&gone, false, &[Engine::Cycles], now);
        assert_eq!(cache.get(&gone, false, now), None);
    }
}
