//! The content-addressed blob store: files named by the blake3 hash of their bytes, kept under
//! `DIR/blobs/<hex>`, written through `DIR/tmp/` and renamed into place only once verified.
//!
//! # Verified chunks
//!
//! Blobs travel in [`limits::BLOB_CHUNK`] (1 MiB) chunks. 1 MiB is a power-of-two multiple of
//! blake3's 1 KiB chunk, so each 1 MiB chunk at offset `i * BLOB_CHUNK` is a complete subtree of
//! blake3's hash tree, with a *chaining value* (CV) computed by `blake3::hazmat`. A sender gives
//! the CVs of every chunk ([`BlobInfo`]); [`BlobStore::incoming`] merges them up the tree
//! (`left_subtree_len` decides every split, exactly as blake3 does) and refuses them unless the
//! root equals the hash asked for. Each arriving chunk is then checked against its CV before it is
//! written ([`Incoming::write_chunk`]). A blob of one chunk or less has no CV list; its single
//! chunk is checked against the root hash. [`Incoming::finish`] renames the file into place
//! without hashing it again: its chunks were each checked, and their CVs merge to its name.
//!
//! # Serving a blob still arriving
//!
//! The chunks of a blob still arriving are served as they are verified: each [`Incoming`] is
//! registered with its store as a partial blob (one per blob), and [`BlobStore::open_range`],
//! [`BlobStore::info`] and [`BlobStore::held`] answer from it, so that nodes fetching one blob at
//! once take chunks from each other (a swarm) and not all from its origin.
//!
//! # Power cuts
//!
//! Every blob lands the same way: its file is fsynced, renamed into `blobs/`, and the directory
//! fsynced, so a blob that is in the store after a power cut is whole, or was damaged by the
//! disk itself. A blob is trusted only once checked against its name since the store was
//! opened: written by this process, or hashed again on first use ([`BlobStore::ensure`]) or by
//! [`BlobStore::scrub`]. A damaged copy is removed when it is found, so that it is fetched again;
//! it is never served, and never counted as a copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use blake3::hazmat::{
    HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use rendermesh_protocol::{BlobHash, limits};
use serde::{Deserialize, Serialize};

/// Chunk CV lists cached in memory.
const INFO_CACHE: usize = 1024;
/// A blob being received is flushed to disk every this many chunks, so that the disk writes
/// while the network still brings the rest.
const SYNC_EVERY: u64 = 16;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{what} `{}`", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The disk holding the store has too little room left.
    #[error(
        "not enough disk space in `{}` for {need} bytes: {free} bytes free, and {reserve} kept \
         free (rendermesh node --min-free-disk)",
        path.display()
    )]
    NoRoom {
        /// The store's directory.
        path: PathBuf,
        /// The bytes to write.
        need: u64,
        /// The bytes free.
        free: u64,
        /// The bytes this node keeps free.
        reserve: u64,
    },
    /// A blob is larger than a node accepts.
    #[error("blob {hash} has {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// The blob (short hash).
        hash: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The chunk chaining values do not merge to the blob's hash.
    #[error("the chunk list offered for blob {hash} does not match its hash")]
    BadChainingValues {
        /// The blob (short hash).
        hash: String,
    },
    /// A chunk does not match its chaining value.
    #[error("chunk {index} of blob {hash} is corrupt (it does not match the blob's hash tree)")]
    ChunkMismatch {
        /// The blob (short hash).
        hash: String,
        /// The chunk.
        index: u64,
    },
    /// A chunk index is out of range.
    #[error("blob {hash} has no chunk {index} (it has {count})")]
    BadChunkIndex {
        /// The blob (short hash).
        hash: String,
        /// The index asked for.
        index: u64,
        /// How many chunks it has.
        count: u64,
    },
    /// A chunk has the wrong length.
    #[error("chunk {index} of blob {hash} has {got} bytes, expected {expected}")]
    BadChunkLength {
        /// The blob (short hash).
        hash: String,
        /// The chunk.
        index: u64,
        /// Its expected length.
        expected: u64,
        /// Its length.
        got: u64,
    },
    /// Chunks are missing at the end of a transfer.
    #[error("blob {hash} is incomplete: {missing} chunks missing")]
    Incomplete {
        /// The blob (short hash).
        hash: String,
        /// How many chunks are missing.
        missing: u64,
    },
}

/// Size and chunk chaining values of a blob: what a receiver needs to verify each chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Size in bytes.
    pub size: u64,
    /// One CV per [`limits::BLOB_CHUNK`] chunk; empty for a blob of one chunk or less.
    pub chunks: Vec<[u8; 32]>,
}

/// The chunks of a blob a node holds, and those on their way to it ([`BlobStore::held`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// One flag per chunk: verified and written.
    pub held: Vec<bool>,
    /// One flag per chunk: asked of a peer and not arrived yet.
    pub coming: Vec<bool>,
}

/// Store counters (shown by `GET /api/v1/node`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Whole blobs that arrived over the network.
    pub blobs_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Chunks that arrived and verified.
    pub chunks_received: u64,
    /// Chunks refused because they failed verification.
    pub chunks_rejected: u64,
    /// Chunks served to peers.
    pub chunks_served: u64,
    /// Bytes served to peers.
    pub bytes_served: u64,
    /// Per blob (hex hash): how many times it arrived over the network.
    pub received: BTreeMap<String, u32>,
}

#[derive(Default)]
struct Counters {
    blobs_received: AtomicU64,
    bytes_received: AtomicU64,
    chunks_received: AtomicU64,
    chunks_rejected: AtomicU64,
    chunks_served: AtomicU64,
    bytes_served: AtomicU64,
    received: Mutex<BTreeMap<String, u32>>,
}

struct Inner {
    blobs: PathBuf,
    tmp: PathBuf,
    counters: Counters,
    infos: Mutex<HashMap<BlobHash, BlobInfo>>,
    /// Blobs still arriving, whose verified chunks are served meanwhile.
    partials: Mutex<HashMap<BlobHash, Arc<Partial>>>,
    /// Blobs checked against their names since the store was opened.
    verified: Mutex<HashSet<BlobHash>>,
    next_tmp: AtomicU64,
    /// Bytes of disk this node keeps free: below that, it takes no work, and nothing is
    /// stored that would eat into them.
    reserve: AtomicU64,
}

/// The blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("blobs", &self.inner.blobs)
            .finish()
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io {
        what: "background task failed for",
        path: PathBuf::from("blob store"),
        source: std::io::Error::other(e),
    }
}

/// Number of [`limits::BLOB_CHUNK`] chunks of a blob of `size` bytes (1 for an empty blob).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(limits::BLOB_CHUNK).max(1)
}

fn chunk_cv(index: u64, data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index * limits::BLOB_CHUNK);
    h.update(data);
    h.finalize_non_root()
}

/// The chaining value of each chunk of `data`; empty when `data` fits in one chunk.
pub fn chaining_values(data: &[u8]) -> Vec<[u8; 32]> {
    if data.len() as u64 <= limits::BLOB_CHUNK {
        return Vec::new();
    }
    data.chunks(limits::BLOB_CHUNK as usize)
        .enumerate()
        .map(|(i, c)| chunk_cv(i as u64, c))
        .collect()
}

/// Merges the CVs of the subtree covering `len` bytes starting at chunk `first`.
fn merge(cvs: &[[u8; 32]], first: usize, len: u64) -> [u8; 32] {
    if len <= limits::BLOB_CHUNK {
        return cvs[first];
    }
    let left = left_subtree_len(len);
    let l = merge(cvs, first, left);
    let r = merge(
        cvs,
        first + (left / limits::BLOB_CHUNK) as usize,
        len - left,
    );
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// True when `cvs` are the chunk chaining values of a blob of `size` bytes hashing to `hash`.
pub fn verify_chaining_values(hash: &BlobHash, size: u64, cvs: &[[u8; 32]]) -> bool {
    if size <= limits::BLOB_CHUNK {
        return cvs.is_empty();
    }
    cvs.len() as u64 == chunk_count(size) && root_of(size, cvs) == *hash
}

/// The hash of a blob of `size` bytes, over one chunk, from its chunks' chaining values (one
/// per chunk).
fn root_of(size: u64, cvs: &[[u8; 32]]) -> BlobHash {
    let left = left_subtree_len(size);
    let l = merge(cvs, 0, left);
    let r = merge(cvs, (left / limits::BLOB_CHUNK) as usize, size - left);
    BlobHash(*merge_subtrees_root(&l, &r, Mode::Hash).as_bytes())
}

/// Reads into `buf` until it is full or the input ends; returns how many bytes it read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl BlobStore {
    /// Opens (creating) `dir/blobs/` and `dir/tmp/`, emptying `tmp/` of leftovers.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&blobs).map_err(io_err("cannot create", &blobs))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err("cannot empty", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err("cannot create", &tmp))?;
        Ok(Self {
            inner: Arc::new(Inner {
                blobs,
                tmp,
                counters: Counters::default(),
                infos: Mutex::new(HashMap::new()),
                partials: Mutex::new(HashMap::new()),
                verified: Mutex::new(HashSet::new()),
                next_tmp: AtomicU64::new(0),
                reserve: AtomicU64::new(0),
            }),
        })
    }

    /// Where blob `hash` lives (whether or not it is there).
    pub fn path(&self, hash: &BlobHash) -> PathBuf {
        self.inner.blobs.join(hash.to_string())
    }

    /// True when the blob is in the store and was checked against its name since the store
    /// was opened (written by this process, or hashed again). A blob left by an earlier run
    /// is not trusted before [`BlobStore::ensure`] or [`BlobStore::scrub`] checked it.
    pub fn has(&self, hash: &BlobHash) -> bool {
        self.is_verified(hash) && self.path(hash).is_file()
    }

    fn is_verified(&self, hash: &BlobHash) -> bool {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(hash)
    }

    fn set_verified(&self, hash: &BlobHash, whole: bool) {
        let mut verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if whole {
            verified.insert(*hash);
        } else {
            verified.remove(hash);
        }
    }

    /// Whether the blob is here and whole: [`BlobStore::has`], or else, when a file is there,
    /// hashed again ([`BlobStore::verify`]: a damaged copy is removed). What a node serves and
    /// what it counts as a copy goes through this.
    pub async fn ensure(&self, hash: &BlobHash) -> Result<bool, StoreError> {
        if self.has(hash) {
            return Ok(true);
        }
        self.verify(hash).await
    }

    /// Checks every blob in the store not checked yet since it was opened, one at a time;
    /// returns the blobs found damaged, which are removed (for the node to fetch again).
    /// Files whose names are not blob hashes are left alone.
    pub async fn scrub(&self) -> Result<Vec<BlobHash>, StoreError> {
        let dir = self.inner.blobs.clone();
        let names = tokio::task::spawn_blocking(move || -> Result<Vec<BlobHash>, StoreError> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
                let entry = entry.map_err(io_err("cannot list", &dir))?;
                if let Some(hash) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    names.push(hash);
                }
            }
            Ok(names)
        })
        .await
        .map_err(join_err)??;
        let mut damaged = Vec::new();
        for hash in names {
            if !self.is_verified(&hash) && !self.verify(&hash).await? {
                damaged.push(hash);
            }
        }
        Ok(damaged)
    }

    /// Moves the finished file `tmp`, whose content hashes to `hash`, into the store so that
    /// it survives a power cut: the file is fsynced (unless `synced`), renamed, and the
    /// directory fsynced. Blocking.
    fn land(&self, tmp: &Path, hash: &BlobHash, synced: bool) -> Result<PathBuf, StoreError> {
        if !synced {
            std::fs::File::open(tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err("cannot flush", tmp))?;
        }
        let dest = self.path(hash);
        std::fs::rename(tmp, &dest).map_err(io_err("cannot move a blob into", &dest))?;
        let dir = &self.inner.blobs;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot flush", dir))?;
        self.forget_info(hash);
        self.set_verified(hash, true);
        Ok(dest)
    }

    /// [`BlobStore::land`] on a blocking thread.
    async fn land_async(
        &self,
        tmp: PathBuf,
        hash: BlobHash,
        synced: bool,
    ) -> Result<PathBuf, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.land(&tmp, &hash, synced))
            .await
            .map_err(join_err)?
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.inner.tmp.join(format!("{}-{n}", std::process::id()))
    }

    /// Stores `bytes`; returns their hash. A blob already present is left as it is.
    pub async fn put_bytes(&self, bytes: &[u8]) -> Result<BlobHash, StoreError> {
        let size = bytes.len() as u64;
        let (hash, cvs) = if size <= limits::BLOB_CHUNK {
            (BlobHash::of(bytes), Vec::new())
        } else {
            let cvs = chaining_values(bytes);
            (root_of(size, &cvs), cvs)
        };
        if self.has(&hash) {
            self.touch(&hash);
            return Ok(hash);
        }
        let tmp = self.tmp_path();
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(io_err("cannot write", &tmp))?;
        let landed = self.land_async(tmp.clone(), hash, false).await;
        if landed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        landed?;
        self.remember_info(hash, BlobInfo { size, chunks: cvs });
        Ok(hash)
    }

    /// A fresh file in [`BlobStore::tmp_dir`] whose blake3 hash the caller computed while
    /// writing it: moves it into the store by rename, without copying or reading it again. A
    /// blob present already is replaced by the new copy, whose hash was just computed: this
    /// heals a copy damaged on disk (files linked from the old one keep their own inode).
    pub async fn adopt(&self, file: &Path, hash: BlobHash) -> Result<(), StoreError> {
        self.land_async(file.to_path_buf(), hash, false)
            .await
            .map(|_| ())
    }

    /// Keeps the chunk values of `hash`, just computed while it was written or checked, for
    /// [`BlobStore::info`].
    fn remember_info(&self, hash: BlobHash, info: BlobInfo) {
        if let Ok(mut cache) = self.inner.infos.lock() {
            if cache.len() >= INFO_CACHE {
                cache.clear();
            }
            cache.insert(hash, info);
        }
    }

    /// Drops the cached chunk values of `hash` (its file was replaced or removed).
    fn forget_info(&self, hash: &BlobHash) {
        if let Ok(mut cache) = self.inner.infos.lock() {
            cache.remove(hash);
        }
    }

    /// Where callers may write files to [`BlobStore::adopt`] (same file system as the blobs).
    pub fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }

    /// Copies a local file in (hashing while copying); returns its hash and size. A blob
    /// present already is replaced by the new copy, as in [`BlobStore::adopt`].
    pub async fn put_file(&self, path: &Path) -> Result<(BlobHash, u64), StoreError> {
        let src = path.to_path_buf();
        let tmp = self.tmp_path();
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let copy = || -> Result<(BlobHash, u64), StoreError> {
                let mut input = std::fs::File::open(&src).map_err(io_err("cannot open", &src))?;
                let mut out = std::fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
                // Chunk by chunk: the chunks' chaining values merge to the hash, and are what
                // a peer fetching the blob asks for first (`info`), so they are kept.
                let mut buf = vec![0u8; limits::BLOB_CHUNK as usize];
                let mut cvs = Vec::new();
                let mut first = None;
                let mut size = 0u64;
                loop {
                    let n = read_full(&mut input, &mut buf).map_err(io_err("cannot read", &src))?;
                    if n == 0 && size > 0 {
                        break;
                    }
                    out.write_all(&buf[..n])
                        .map_err(io_err("cannot write", &tmp))?;
                    if size == 0 {
                        first = Some(BlobHash::of(&buf[..n]));
                    }
                    if n > 0 {
                        cvs.push(chunk_cv(size / limits::BLOB_CHUNK, &buf[..n]));
                    }
                    size += n as u64;
                    if n < buf.len() {
                        break;
                    }
                }
                let (hash, cvs) = if size <= limits::BLOB_CHUNK {
                    (first.unwrap_or_else(|| BlobHash::of(&[])), Vec::new())
                } else {
                    (root_of(size, &cvs), cvs)
                };
                if store.has(&hash) {
                    store.touch(&hash);
                    return Ok((hash, size));
                }
                out.sync_all().map_err(io_err("cannot flush", &tmp))?;
                store.land(&tmp, &hash, true)?;
                store.remember_info(hash, BlobInfo { size, chunks: cvs });
                Ok((hash, size))
            };
            let result = copy();
            // Whatever happened, no copy is left behind in tmp/ (after a rename there is none).
            if tmp.exists() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
        .map_err(join_err)?
    }

    /// Deletes `hashes` from the store (blobs nothing kept uses any more), except those that
    /// landed or were stored again within `grace` (a new job may use the same file before its
    /// record reaches this node); returns how many were deleted and their bytes. Missing ones
    /// are skipped.
    pub async fn collect(
        &self,
        hashes: Vec<BlobHash>,
        grace: std::time::Duration,
    ) -> Result<(usize, u64), StoreError> {
        let paths: Vec<(BlobHash, PathBuf)> = hashes.iter().map(|h| (*h, self.path(h))).collect();
        let (gone, bytes) = tokio::task::spawn_blocking(move || collect_paths(&paths, grace))
            .await
            .map_err(join_err)??;
        for hash in &gone {
            self.forget_info(hash);
            self.set_verified(hash, false);
        }
        Ok((gone.len(), bytes))
    }

    /// Marks a blob stored again as fresh, so that it is not collected soon
    /// ([`BlobStore::collect`]); its bytes are left alone.
    fn touch(&self, hash: &BlobHash) {
        let _ = std::fs::File::options()
            .write(true)
            .open(self.path(hash))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    }

    /// Keeps `bytes` of its disk free from now on ([`BlobStore::check_room`]).
    pub fn set_reserve(&self, bytes: u64) {
        self.inner.reserve.store(bytes, Ordering::Relaxed);
    }

    /// The bytes of disk it keeps free.
    pub fn reserve(&self) -> u64 {
        self.inner.reserve.load(Ordering::Relaxed)
    }

    /// The bytes free on the disk holding the store, if they can be read.
    pub fn free_space(&self) -> Option<u64> {
        free_bytes(&self.inner.blobs)
    }

    /// Fails, saying how much is free, when storing `size` more bytes would leave less than
    /// the [reserve](BlobStore::set_reserve) free. A disk whose free space cannot be read
    /// passes.
    pub fn check_room(&self, size: u64) -> Result<(), StoreError> {
        let reserve = self.reserve();
        match self.free_space() {
            Some(free) if free < size.saturating_add(reserve) => Err(StoreError::NoRoom {
                path: self.inner.blobs.clone(),
                need: size,
                free,
                reserve,
            }),
            _ => Ok(()),
        }
    }

    /// Hashes a stored blob again. A blob whose content no longer matches its name (a disk
    /// error, a truncated write, a hand edit) is removed, so that it is fetched again, and
    /// `Ok(false)` is returned; an absent blob is `Ok(false)` too; `Ok(true)`: it is whole.
    pub async fn verify(&self, hash: &BlobHash) -> Result<bool, StoreError> {
        let path = self.path(hash);
        let want = *hash;
        let whole = tokio::task::spawn_blocking(move || -> Result<bool, StoreError> {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_err("cannot open", &path)(e)),
            };
            let mut hasher = blake3::Hasher::new();
            hasher
                .update_reader(&mut file)
                .map_err(io_err("cannot read", &path))?;
            if BlobHash(*hasher.finalize().as_bytes()) == want {
                return Ok(true);
            }
            std::fs::remove_file(&path).map_err(io_err("cannot remove a corrupt blob", &path))?;
            Ok(false)
        })
        .await
        .map_err(join_err)??;
        if !whole {
            self.forget_info(hash);
        }
        self.set_verified(hash, whole);
        Ok(whole)
    }

    /// Size and chunk chaining values of a stored blob (`None` if absent).
    pub async fn info(&self, hash: &BlobHash) -> Result<Option<BlobInfo>, StoreError> {
        if let Ok(cache) = self.inner.infos.lock()
            && let Some(info) = cache.get(hash)
        {
            return Ok(Some(info.clone()));
        }
        if !self.ensure(hash).await? {
            return Ok(self.partial(hash).map(|p| p.info.clone()));
        }
        let path = self.path(hash);
        let info = tokio::task::spawn_blocking(move || -> Result<BlobInfo, StoreError> {
            let mut file = std::fs::File::open(&path).map_err(io_err("cannot open", &path))?;
            let size = file.metadata().map_err(io_err("cannot read", &path))?.len();
            if size <= limits::BLOB_CHUNK {
                return Ok(BlobInfo {
                    size,
                    chunks: Vec::new(),
                });
            }
            let mut chunks = Vec::with_capacity(chunk_count(size) as usize);
            let mut buf = vec![0u8; limits::BLOB_CHUNK as usize];
            for index in 0..chunk_count(size) {
                let len = (size - index * limits::BLOB_CHUNK).min(limits::BLOB_CHUNK) as usize;
                file.read_exact(&mut buf[..len])
                    .map_err(io_err("cannot read", &path))?;
                chunks.push(chunk_cv(index, &buf[..len]));
            }
            Ok(BlobInfo { size, chunks })
        })
        .await
        .map_err(join_err)??;
        self.remember_info(*hash, info.clone());
        Ok(Some(info))
    }

    /// Chunk `index` of a stored blob (`None` if the blob is absent).
    pub async fn read_chunk(
        &self,
        hash: &BlobHash,
        index: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.ensure(hash).await? {
            return Ok(None);
        }
        let path = self.path(hash);
        let short = hash.short();
        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StoreError> {
            let mut file = std::fs::File::open(&path).map_err(io_err("cannot open", &path))?;
            let size = file.metadata().map_err(io_err("cannot read", &path))?.len();
            let count = chunk_count(size);
            if index >= count {
                return Err(StoreError::BadChunkIndex {
                    hash: short,
                    index,
                    count,
                });
            }
            let start = index * limits::BLOB_CHUNK;
            let len = (size - start).min(limits::BLOB_CHUNK) as usize;
            file.seek(SeekFrom::Start(start))
                .map_err(io_err("cannot read", &path))?;
            let mut buf = vec![0u8; len];
            file.read_exact(&mut buf)
                .map_err(io_err("cannot read", &path))?;
            Ok(buf)
        })
        .await
        .map_err(join_err)??;
        let c = &self.inner.counters;
        c.chunks_served.fetch_add(1, Ordering::Relaxed);
        c.bytes_served
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Some(data))
    }

    /// Opens blob `hash` to serve chunks `first..first + count`: the file, positioned at chunk
    /// `first`, and how many bytes the range holds. `None`: the blob is not held here, or, while
    /// it is still arriving, not every chunk of the range is. A range that is empty or reaches
    /// past the blob's end is refused ([`StoreError::BadChunkIndex`]).
    pub async fn open_range(
        &self,
        hash: &BlobHash,
        first: u64,
        count: u64,
    ) -> Result<Option<(std::fs::File, u64)>, StoreError> {
        if !self.ensure(hash).await? {
            let Some(partial) = self.partial(hash) else {
                return Ok(None);
            };
            // A range outside the blob goes on, to be refused as such.
            let missing = {
                let chunks = partial
                    .chunks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let (held, end) = (&chunks.held, first.saturating_add(count));
                end <= held.len() as u64 && held[first as usize..end as usize].contains(&false)
            };
            if missing {
                return Ok(None);
            }
            let (path, short) = (partial.tmp.clone(), hash.short());
            let opened = tokio::task::spawn_blocking(move || open_at(&path, short, first, count))
                .await
                .map_err(join_err)?;
            match opened {
                // Landed meanwhile: renamed into the store.
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    if !self.has(hash) {
                        return Ok(None);
                    }
                }
                opened => return opened.map(Some),
            }
        }
        let (path, short) = (self.path(hash), hash.short());
        let opened = tokio::task::spawn_blocking(move || open_at(&path, short, first, count))
            .await
            .map_err(join_err)??;
        Ok(Some(opened))
    }

    /// Which chunks of blob `hash` are here and verified, and which are on their way: all held
    /// for a whole blob; for one still arriving, those verified so far and those asked of a
    /// peer; `None` when the blob is neither held nor arriving.
    pub async fn held(&self, hash: &BlobHash) -> Result<Option<Holding>, StoreError> {
        if self.ensure(hash).await? {
            let path = self.path(hash);
            let size = std::fs::metadata(&path)
                .map_err(io_err("cannot read", &path))?
                .len();
            let count = chunk_count(size) as usize;
            return Ok(Some(Holding {
                held: vec![true; count],
                coming: vec![false; count],
            }));
        }
        Ok(self.partial(hash).map(|p| {
            p.chunks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }))
    }

    /// The partial blob `hash`, if it is arriving.
    fn partial(&self, hash: &BlobHash) -> Option<Arc<Partial>> {
        self.inner
            .partials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    /// Counts `chunks` chunks of `bytes` bytes in all as served to a peer.
    pub fn count_served(&self, chunks: u64, bytes: u64) {
        let c = &self.inner.counters;
        c.chunks_served.fetch_add(chunks, Ordering::Relaxed);
        c.bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Starts receiving blob `hash` described by `info`: refuses an oversized blob or a chunk
    /// list that does not merge to `hash`.
    pub fn incoming(&self, hash: BlobHash, info: &BlobInfo) -> Result<Incoming, StoreError> {
        if info.size > limits::MAX_BLOB {
            return Err(StoreError::TooLarge {
                hash: hash.short(),
                size: info.size,
                max: limits::MAX_BLOB,
            });
        }
        if !verify_chaining_values(&hash, info.size, &info.chunks) {
            return Err(StoreError::BadChainingValues { hash: hash.short() });
        }
        let tmp = self.tmp_path();
        let file = std::fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        file.set_len(info.size)
            .map_err(io_err("cannot size", &tmp))?;
        let partial = Arc::new(Partial {
            tmp,
            info: info.clone(),
            chunks: Mutex::new(Holding {
                held: vec![false; chunk_count(info.size) as usize],
                coming: vec![false; chunk_count(info.size) as usize],
            }),
        });
        // The first of two receptions of one blob at once is the one served.
        let shared = {
            let mut partials = self
                .inner
                .partials
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = partials.entry(hash).or_insert_with(|| partial.clone());
            Arc::ptr_eq(entry, &partial)
        };
        Ok(Incoming {
            store: self.clone(),
            hash,
            partial,
            shared,
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            blobs_received: c.blobs_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            chunks_received: c.chunks_received.load(Ordering::Relaxed),
            chunks_rejected: c.chunks_rejected.load(Ordering::Relaxed),
            chunks_served: c.chunks_served.load(Ordering::Relaxed),
            bytes_served: c.bytes_served.load(Ordering::Relaxed),
            received: c.received.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

/// A blob being received, chunk by verified chunk, into its own file under `tmp/` (so two
/// downloads of the same blob never collide), from one peer or several at once. Its verified
/// chunks are served meanwhile (the first reception of a blob only). Dropping it discards the
/// partial file.
pub struct Incoming {
    /// The store it lands in (and whose counters it bumps).
    store: BlobStore,
    /// The blob's name: the root of its hash tree.
    hash: BlobHash,
    /// The partial file, its size and chunk CVs (already checked to merge to `hash`), and the
    /// chunks verified and written.
    partial: Arc<Partial>,
    /// Whether `partial` is the one the store serves.
    shared: bool,
    /// The open partial file, shared with the blocking task writing a chunk; `None` once
    /// `finish` has closed it.
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("hash", &self.hash)
            .field("size", &self.partial.info.size)
            .field("chunks", &self.chunk_count())
            .field("missing", &self.missing())
            .finish()
    }
}

impl Incoming {
    /// How many chunks the blob has (1 for an empty blob, whose one chunk is empty).
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.partial.info.size)
    }

    /// How many chunks have not been verified and written yet.
    pub fn missing(&self) -> u64 {
        let chunks = self.chunks();
        chunks.held.iter().filter(|h| !**h).count() as u64
    }

    /// Whether chunk `index` has been verified and written.
    pub fn holds(&self, index: u64) -> bool {
        self.chunks().held.get(index as usize).is_some_and(|h| *h)
    }

    /// Marks chunks `first..first + count` as asked of a peer and on their way (`true`), or no
    /// longer (`false`), for peers asking what this node holds ([`BlobStore::held`]).
    pub fn expect(&self, first: u64, count: u64, coming: bool) {
        let mut chunks = self.chunks();
        let end = first.saturating_add(count).min(chunks.coming.len() as u64);
        for flag in chunks
            .coming
            .iter_mut()
            .take(end as usize)
            .skip(first as usize)
        {
            *flag = coming;
        }
    }

    fn chunks(&self) -> std::sync::MutexGuard<'_, Holding> {
        self.partial
            .chunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The blob being received.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index * limits::BLOB_CHUNK;
        self.partial
            .info
            .size
            .saturating_sub(start)
            .min(limits::BLOB_CHUNK)
    }

    /// Verifies chunk `index` against its CV (or, for a blob of one chunk, against the blob's
    /// hash) and only then writes it; a chunk that fails is refused with
    /// [`StoreError::ChunkMismatch`] and counted in [`Stats::chunks_rejected`]. Writing a chunk
    /// twice is harmless.
    ///
    /// Cancel-safe: if the future is dropped, the chunk is not marked as written and can simply
    /// be written again.
    pub async fn write_chunk(&self, index: u64, data: &[u8]) -> Result<(), StoreError> {
        self.write_owned_chunk(index, data.to_vec()).await.map(drop)
    }

    /// [`Incoming::write_chunk`] of a chunk the caller hands over (no copy is made); returns
    /// the buffer, for the next chunk.
    pub async fn write_owned_chunk(
        &self,
        index: u64,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let count = self.chunk_count();
        if index >= count {
            return Err(StoreError::BadChunkIndex {
                hash: self.hash.short(),
                index,
                count,
            });
        }
        let expected = self.chunk_len(index);
        if data.len() as u64 != expected {
            return Err(StoreError::BadChunkLength {
                hash: self.hash.short(),
                index,
                expected,
                got: data.len() as u64,
            });
        }
        let Some(file) = self.file.clone() else {
            return Err(StoreError::Incomplete {
                hash: self.hash.short(),
                missing: count,
            });
        };
        // `None`: a blob of one chunk, checked against the root hash itself.
        let chunks = &self.partial.info.chunks;
        let cv = if chunks.is_empty() {
            None
        } else {
            chunks.get(index as usize).copied()
        };
        let root = self.hash;
        let tmp = self.partial.tmp.clone();
        // Hashing a MiB and writing it are blocking work.
        let (verified, data) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let ok = match cv {
                None => BlobHash::of(&data) == root,
                Some(cv) => chunk_cv(index, &data) == cv,
            };
            if ok {
                // A panic while holding the lock cannot leave the file in a state that matters:
                // every write seeks first, and a chunk counts only once its write returned.
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                file.seek(SeekFrom::Start(index * limits::BLOB_CHUNK))
                    .and_then(|_| file.write_all(&data))
                    .map_err(io_err("cannot write", &tmp))?;
                // The disk takes the file as it comes, not all at once in `finish`.
                if index % SYNC_EVERY == SYNC_EVERY - 1 {
                    file.sync_data().map_err(io_err("cannot flush", &tmp))?;
                }
            }
            Ok((ok, data))
        })
        .await
        .map_err(join_err)??;
        let counters = &self.store.inner.counters;
        if !verified {
            counters.chunks_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::ChunkMismatch {
                hash: self.hash.short(),
                index,
            });
        }
        {
            let mut chunks = self.chunks();
            chunks.held[index as usize] = true;
            chunks.coming[index as usize] = false;
        }
        counters.chunks_received.fetch_add(1, Ordering::Relaxed);
        Ok(data)
    }

    /// Checks every chunk arrived, then moves the file into the store (replacing an identical
    /// copy if one landed meanwhile) and counts it in [`Stats::blobs_received`],
    /// [`Stats::bytes_received`] and [`Stats::received`]. Returns the blob's path. On error the
    /// partial file is discarded.
    ///
    /// The file is not hashed again: each of its chunks was verified against its chaining value
    /// as it was written, and the chaining values merge to the blob's hash (checked when this
    /// `Incoming` was made), so it hashes to the blob's name. The chaining values are kept, so
    /// this node serves the blob at once.
    pub async fn finish(mut self) -> Result<PathBuf, StoreError> {
        let missing = self.missing();
        if missing > 0 {
            return Err(StoreError::Incomplete {
                hash: self.hash.short(),
                missing,
            });
        }
        let file = self.file.take();
        let tmp = self.partial.tmp.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(file) = file {
                let file = file.lock().unwrap_or_else(PoisonError::into_inner);
                file.sync_all().map_err(io_err("cannot flush", &tmp))?;
            }
            Ok::<(), StoreError>(())
        })
        .await
        .map_err(join_err)??;
        let dest = self
            .store
            .land_async(self.partial.tmp.clone(), self.hash, true)
            .await?;
        self.store
            .remember_info(self.hash, self.partial.info.clone());
        let c = &self.store.inner.counters;
        c.blobs_received.fetch_add(1, Ordering::Relaxed);
        c.bytes_received
            .fetch_add(self.partial.info.size, Ordering::Relaxed);
        if let Ok(mut m) = c.received.lock() {
            *m.entry(self.hash.to_string()).or_default() += 1;
        }
        Ok(dest)
    }
}

/// Opens the file at `path` (a blob's, `short` its name) positioned at chunk `first`, and the
/// bytes chunks `first..first + count` hold; an empty range, or one past the end, is refused.
fn open_at(
    path: &Path,
    short: String,
    first: u64,
    count: u64,
) -> Result<(std::fs::File, u64), StoreError> {
    let mut file = std::fs::File::open(path).map_err(io_err("cannot open", path))?;
    let size = file.metadata().map_err(io_err("cannot read", path))?.len();
    let chunks = chunk_count(size);
    let end = first
        .checked_add(count)
        .filter(|&end| count > 0 && end <= chunks);
    let Some(end) = end else {
        return Err(StoreError::BadChunkIndex {
            hash: short,
            index: first.saturating_add(count).saturating_sub(1).max(first),
            count: chunks,
        });
    };
    let start = first * limits::BLOB_CHUNK;
    let len = size.min(end * limits::BLOB_CHUNK) - start;
    file.seek(SeekFrom::Start(start))
        .map_err(io_err("cannot read", path))?;
    Ok((file, len))
}

/// A blob being received, as the store serves it meanwhile: its partial file, its chunk
/// values (checked against its name), the chunks verified and written so far, and those on
/// their way.
#[derive(Debug)]
struct Partial {
    tmp: PathBuf,
    info: BlobInfo,
    chunks: Mutex<Holding>,
}

/// Bytes free for an unprivileged writer on the file system holding `path`, if they can be
/// read.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// [`BlobStore::collect`]'s deletions, blocking: the blobs deleted and their bytes.
fn collect_paths(
    paths: &[(BlobHash, PathBuf)],
    grace: std::time::Duration,
) -> Result<(Vec<BlobHash>, u64), StoreError> {
    let (mut gone, mut bytes) = (Vec::new(), 0);
    for (hash, path) in paths {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot read", path)(e)),
        };
        let fresh = meta
            .modified()
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_none_or(|age| age < grace);
        if fresh {
            continue;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot remove", path)(e)),
        }
        gone.push(*hash);
        bytes += meta.len();
    }
    Ok((gone, bytes))
}

impl Drop for Incoming {
    /// Stops serving the partial blob (landed, or given up), then removes its file if it is
    /// still there: a peer reading from it keeps its open file to the end.
    fn drop(&mut self) {
        if self.shared {
            let mut partials = self
                .store
                .inner
                .partials
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if partials
                .get(&self.hash)
                .is_some_and(|p| Arc::ptr_eq(p, &self.partial))
            {
                partials.remove(&self.hash);
            }
        }
        let tmp = &self.partial.tmp;
        if tmp.exists() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: usize = limits::BLOB_CHUNK as usize;

    /// Whatever its size, a blob put from bytes or from a file is named by the blake3 hash of
    /// its bytes (computed chunk by chunk, then merged), and its chunk values are kept for the
    /// first peer that asks, equal to those computed from the file.
    #[tokio::test]
    async fn a_blob_put_is_named_by_its_blake3_hash_and_its_chunk_values_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 17] {
            let blob = data(len);
            let want = BlobHash(*blake3::hash(&blob).as_bytes());
            let by_bytes = BlobStore::open(&dir.path().join(format!("b{len}"))).unwrap();
            assert_eq!(by_bytes.put_bytes(&blob).await.unwrap(), want, "len {len}");
            let src = dir.path().join(format!("src{len}"));
            std::fs::write(&src, &blob).unwrap();
            let by_file = BlobStore::open(&dir.path().join(format!("f{len}"))).unwrap();
            assert_eq!(
                by_file.put_file(&src).await.unwrap(),
                (want, len as u64),
                "len {len}"
            );
            for store in [&by_bytes, &by_file] {
                let kept = store.inner.infos.lock().unwrap().get(&want).cloned();
                let kept = kept.expect("chunk values kept");
                assert_eq!(kept.size, len as u64);
                assert_eq!(kept.chunks, chaining_values(&blob), "len {len}");
            }
        }
    }

    /// A range is served from the first chunk's start, as many bytes as its chunks hold (the
    /// last one short); an empty range, one past the end, or one whose end overflows is refused.
    #[tokio::test]
    async fn a_range_opens_at_its_first_chunk_and_stays_inside_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let blob = data(3 * C + 17);
        let hash = store.put_bytes(&blob).await.unwrap();
        let (mut file, len) = store.open_range(&hash, 1, 3).await.unwrap().unwrap();
        assert_eq!(len, (2 * C + 17) as u64);
        let mut served = Vec::new();
        file.read_to_end(&mut served).unwrap();
        assert_eq!(served, &blob[C..]);
        let (_, len) = store.open_range(&hash, 0, 1).await.unwrap().unwrap();
        assert_eq!(len, C as u64);
        for (first, count) in [(0, 0), (3, 2), (4, 1), (1, u64::MAX)] {
            let refused = store.open_range(&hash, first, count).await;
            assert!(
                matches!(refused, Err(StoreError::BadChunkIndex { count: 4, .. })),
                "{first}+{count}: {refused:?}"
            );
        }
        let unknown = BlobHash::of(b"not here");
        assert!(store.open_range(&unknown, 0, 1).await.unwrap().is_none());
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn chaining_values_verify_against_blake3_for_every_shape_of_tree() {
        for len in [
            0,
            1,
            1024,
            C - 1,
            C,
            C + 1,
            2 * C,
            3 * C + 17,
            4 * C,
            5 * C,
            7 * C + 3,
        ] {
            let d = data(len);
            let hash = BlobHash::of(&d);
            let cvs = chaining_values(&d);
            assert!(verify_chaining_values(&hash, len as u64, &cvs), "len {len}");
            if !cvs.is_empty() {
                let mut bad = cvs.clone();
                bad[cvs.len() / 2][0] ^= 1;
                assert!(
                    !verify_chaining_values(&hash, len as u64, &bad),
                    "len {len}"
                );
                assert!(
                    !verify_chaining_values(&hash, len as u64, &cvs[1..]),
                    "len {len}"
                );
            }
            // A size that needs a different number of CVs never verifies.
            assert!(
                !verify_chaining_values(&hash, (len + 2 * C) as u64, &cvs),
                "len {len}"
            );
            if len > 0 && len <= C {
                assert!(
                    !verify_chaining_values(&hash, len as u64, &[[0; 32]]),
                    "len {len}: a one-chunk blob has no CV list"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_lie_about_the_size_is_caught_by_the_last_chunk() {
        // The chunk list fixes the tree's shape, not the exact size; the last chunk's chaining
        // value does: a size one byte off makes the last chunk fail.
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(dir.path()).expect("open");
        let d = data(C + 1);
        let hash = BlobHash::of(&d);
        let info = BlobInfo {
            size: d.len() as u64 + 1,
            chunks: chaining_values(&d),
        };
        let incoming = s.incoming(hash, &info).expect("shape matches");
        incoming
            .write_chunk(0, &d[..C])
            .await
            .expect("first chunk is genuine");
        let err = incoming.write_chunk(1, &d[C..]).await.unwrap_err();
        assert!(matches!(err, StoreError::BadChunkLength { .. }), "{err}");
        let padded = [&d[C..], &[0u8]].concat();
        let err = incoming.write_chunk(1, &padded).await.unwrap_err();
        assert!(matches!(err, StoreError::ChunkMismatch { .. }), "{err}");
    }

    /// Reads `len` bytes from what `open_range` opened.
    fn read_opened(opened: Option<(std::fs::File, u64)>) -> Vec<u8> {
        let (mut file, len) = opened.expect("the range is served");
        let mut bytes = vec![0; len as usize];
        file.read_exact(&mut bytes).expect("read");
        bytes
    }

    #[tokio::test]
    async fn a_blob_still_arriving_serves_the_chunks_verified_so_far() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BlobStore::open(&dir.path().join("a")).expect("open");
        let b = BlobStore::open(&dir.path().join("b")).expect("open");
        let d = data(2 * C + 5);
        let hash = a.put_bytes(&d).await.expect("put");
        let info = a.info(&hash).await.expect("info").expect("held");
        assert_eq!(b.held(&hash).await.expect("held"), None);
        assert_eq!(b.info(&hash).await.expect("info"), None);

        let incoming = b.incoming(hash, &info).expect("incoming");
        incoming.expect(1, 2, true);
        incoming
            .write_chunk(1, &d[C..2 * C])
            .await
            .expect("chunk 1");
        let holding = b.held(&hash).await.expect("held").expect("arriving");
        assert_eq!(holding.held, vec![false, true, false]);
        assert_eq!(holding.coming, vec![false, false, true], "chunk 1 came");
        // Its chunk values, for others to verify what they take from it.
        assert_eq!(b.info(&hash).await.expect("info"), Some(info.clone()));
        // A range of held chunks is served; one with a chunk missing is not; one outside the
        // blob is refused.
        let opened = b.open_range(&hash, 1, 1).await.expect("open");
        assert_eq!(read_opened(opened), &d[C..2 * C]);
        assert!(b.open_range(&hash, 0, 2).await.expect("open").is_none());
        assert!(b.open_range(&hash, 1, 2).await.expect("open").is_none());
        let err = b.open_range(&hash, 2, 2).await.unwrap_err();
        assert!(matches!(err, StoreError::BadChunkIndex { .. }), "{err}");

        // A range opened before the blob lands reads whole after it landed.
        incoming.write_chunk(0, &d[..C]).await.expect("chunk 0");
        incoming.write_chunk(2, &d[2 * C..]).await.expect("chunk 2");
        let opened = b.open_range(&hash, 0, 3).await.expect("open");
        incoming.finish().await.expect("landed");
        assert_eq!(read_opened(opened), d);
        let holding = b.held(&hash).await.expect("held").expect("whole");
        assert_eq!(holding.held, vec![true; 3]);
        assert_eq!(holding.coming, vec![false; 3]);

        // A reception given up is served no more.
        let c = BlobStore::open(&dir.path().join("c")).expect("open");
        let incoming = c.incoming(hash, &info).expect("incoming");
        incoming.write_chunk(0, &d[..C]).await.expect("chunk 0");
        assert!(c.open_range(&hash, 0, 1).await.expect("open").is_some());
        drop(incoming);
        assert_eq!(c.held(&hash).await.expect("held"), None);
        assert!(c.open_range(&hash, 0, 1).await.expect("open").is_none());
    }

    async fn transfer(a: &BlobStore, b: &BlobStore, hash: BlobHash) -> Result<PathBuf, StoreError> {
        let info = a.info(&hash).await?.expect("present");
        let incoming = b.incoming(hash, &info)?;
        for i in 0..incoming.chunk_count() {
            let chunk = a.read_chunk(&hash, i).await?.expect("present");
            incoming.write_chunk(i, &chunk).await?;
        }
        incoming.finish().await
    }

    #[tokio::test]
    async fn a_damaged_blob_is_dropped_when_checked_and_healed_by_a_new_upload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(dir.path()).expect("open");
        let d = data(C + 7);
        let hash = s.put_bytes(&d).await.expect("put");
        assert!(s.verify(&hash).await.expect("verify"));

        // A truncated file (a power cut, a disk error) is found out and removed.
        std::fs::write(s.path(&hash), &d[..C]).expect("truncate");
        assert!(!s.verify(&hash).await.expect("verify"));
        assert!(!s.has(&hash), "a corrupt blob stays in the store");
        assert!(!s.verify(&hash).await.expect("verify absent"));

        // A damaged copy present when the genuine file is added again is replaced by it.
        std::fs::write(s.path(&hash), b"damaged").expect("damage");
        let src = dir.path().join("genuine");
        std::fs::write(&src, &d).expect("write");
        assert_eq!(
            s.put_file(&src).await.expect("put_file"),
            (hash, d.len() as u64)
        );
        assert!(s.verify(&hash).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_blob_crosses_from_store_to_store_intact_and_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BlobStore::open(&dir.path().join("a")).expect("open");
        let b = BlobStore::open(&dir.path().join("b")).expect("open");
        for len in [0, 10, 3 * C + 17] {
            let d = data(len);
            let hash = a.put_bytes(&d).await.expect("put");
            let path = transfer(&a, &b, hash).await.expect("transfer");
            assert_eq!(std::fs::read(path).expect("read"), d);
            assert!(b.has(&hash));
            assert_eq!(b.stats().received.get(&hash.to_string()), Some(&1));
        }
        assert_eq!(b.stats().blobs_received, 3);
        assert!(a.stats().chunks_served >= 6);
    }

    #[tokio::test]
    async fn a_corrupt_chunk_is_refused_before_it_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BlobStore::open(&dir.path().join("a")).expect("open");
        let b = BlobStore::open(&dir.path().join("b")).expect("open");
        for len in [100, 2 * C + 5] {
            let d = data(len);
            let hash = a.put_bytes(&d).await.expect("put");
            let info = a.info(&hash).await.expect("info").expect("present");
            let incoming = b.incoming(hash, &info).expect("incoming");
            let mut chunk = a
                .read_chunk(&hash, 0)
                .await
                .expect("read")
                .expect("present");
            chunk[3] ^= 0xff;
            let err = incoming.write_chunk(0, &chunk).await.unwrap_err();
            assert!(
                matches!(err, StoreError::ChunkMismatch { index: 0, .. }),
                "{err}"
            );
            let err = incoming.finish().await.unwrap_err();
            assert!(matches!(err, StoreError::Incomplete { .. }), "{err}");
            assert!(!b.has(&hash));
        }
        assert_eq!(b.stats().chunks_rejected, 2);
        assert_eq!(b.stats().blobs_received, 0);
    }

    #[tokio::test]
    async fn wrong_chunk_lists_and_oversized_blobs_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(dir.path()).expect("open");
        let d = data(2 * C + 1);
        let hash = BlobHash::of(&d);
        let mut cvs = chaining_values(&d);
        cvs.swap(0, 1);
        let err = s
            .incoming(
                hash,
                &BlobInfo {
                    size: d.len() as u64,
                    chunks: cvs,
                },
            )
            .expect_err("refused");
        assert!(matches!(err, StoreError::BadChainingValues { .. }), "{err}");
        let err = s
            .incoming(
                hash,
                &BlobInfo {
                    size: limits::MAX_BLOB + 1,
                    chunks: vec![],
                },
            )
            .expect_err("refused");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        let absent = s.read_chunk(&BlobHash::of(b"absent"), 0).await.expect("ok");
        assert!(absent.is_none());
    }

    #[tokio::test]
    async fn putting_a_present_file_again_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(&dir.path().join("s")).expect("open");
        let src = dir.path().join("x.blend");
        std::fs::write(&src, b"BLENDER-v304 hello").expect("write");
        let (hash, size) = s.put_file(&src).await.expect("put");
        assert_eq!(size, 18);
        let before = std::fs::metadata(s.path(&hash)).expect("meta");
        let (again, _) = s.put_file(&src).await.expect("put again");
        assert_eq!(again, hash);
        // Not written again (the same file), only marked fresh against collection.
        let after = std::fs::metadata(s.path(&hash)).expect("meta");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino());
        assert!(after.modified().expect("mtime") >= before.modified().expect("mtime"));
        assert_eq!(hash, BlobHash::of(b"BLENDER-v304 hello"));
    }

    #[tokio::test]
    async fn two_downloads_of_the_same_blob_do_not_collide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BlobStore::open(&dir.path().join("a")).expect("open");
        let b = BlobStore::open(&dir.path().join("b")).expect("open");
        let d = data(2 * C + 9);
        let hash = a.put_bytes(&d).await.expect("put");
        let info = a.info(&hash).await.expect("info").expect("present");
        let first = b.incoming(hash, &info).expect("incoming");
        let second = b.incoming(hash, &info).expect("incoming");
        for i in 0..first.chunk_count() {
            let chunk = a
                .read_chunk(&hash, i)
                .await
                .expect("read")
                .expect("present");
            first.write_chunk(i, &chunk).await.expect("write");
            second.write_chunk(i, &chunk).await.expect("write");
        }
        first.finish().await.expect("first");
        let path = second.finish().await.expect("second");
        assert_eq!(std::fs::read(path).expect("read"), d);
        assert_eq!(b.stats().received.get(&hash.to_string()), Some(&2));
        assert_eq!(b.stats().chunks_received, 6);
        assert_eq!(
            std::fs::read_dir(dir.path().join("b/tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn chunks_of_the_wrong_index_or_length_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = BlobStore::open(&dir.path().join("a")).expect("open");
        let b = BlobStore::open(&dir.path().join("b")).expect("open");
        let d = data(C + 10);
        let hash = a.put_bytes(&d).await.expect("put");
        let info = a.info(&hash).await.expect("info").expect("present");
        assert_eq!(info.chunks.len(), 2);
        let incoming = b.incoming(hash, &info).expect("incoming");
        assert_eq!(
            (incoming.chunk_len(0), incoming.chunk_len(1)),
            (C as u64, 10)
        );
        let err = incoming.write_chunk(2, &d[C..]).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BadChunkIndex {
                    index: 2,
                    count: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = incoming.write_chunk(1, &d[..C]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::BadChunkLength { index: 1, .. }),
            "{err}"
        );
        // The right bytes at the wrong index have the wrong CV.
        let err = incoming.write_chunk(0, &d[1..C + 1]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::ChunkMismatch { index: 0, .. }),
            "{err}"
        );
        let err = a.read_chunk(&hash, 2).await.unwrap_err();
        assert!(matches!(err, StoreError::BadChunkIndex { .. }), "{err}");
        assert_eq!(b.stats().chunks_rejected, 1);
    }

    #[tokio::test]
    async fn opening_empties_tmp_and_keeps_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(dir.path()).expect("open");
        let hash = s.put_bytes(b"kept").await.expect("put");
        std::fs::write(dir.path().join("tmp/leftover"), b"x").expect("write");
        let s = BlobStore::open(dir.path()).expect("reopen");
        assert!(
            !s.has(&hash),
            "a blob of an earlier run is not trusted before it is checked"
        );
        assert!(s.ensure(&hash).await.expect("ensure"));
        assert!(s.has(&hash));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
        assert_eq!(
            s.info(&hash).await.expect("info"),
            Some(BlobInfo {
                size: 4,
                chunks: vec![]
            })
        );
    }

    /// Issue 12: after a power cut, a truncated blob and a corrupt one are found by the scrub
    /// (or on first use), removed, and neither served nor taken as present; whole ones are
    /// kept.
    /// Issue 12: nothing was ever deleted.
    #[tokio::test]
    async fn collected_blobs_are_deleted_unless_stored_within_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = BlobStore::open(dir.path()).expect("open");
        let old = s.put_bytes(b"a frame of a removed job").await.expect("put");
        let fresh = s.put_bytes(b"a .blend uploaded again").await.expect("put");
        let hour = std::time::Duration::from_secs(3600);
        // Both landed just now: within an hour's grace, neither goes.
        assert_eq!(
            s.collect(vec![old, fresh], hour).await.expect("collect"),
            (0, 0)
        );
        assert!(s.has(&old) && s.has(&fresh));
        let (count, bytes) = s
            .collect(
                vec![old, BlobHash::of(b"never here")],
                std::time::Duration::ZERO,
            )
            .await
            .expect("collect");
        assert_eq!((count, bytes), (1, 24));
        assert!(!s.has(&old) && !s.path(&old).exists());
        assert!(s.has(&fresh));
    }

    #[tokio::test]
    async fn damaged_blobs_of_an_earlier_run_are_found_removed_and_never_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (whole, truncated, flipped, served) = {
            let s = BlobStore::open(dir.path()).expect("open");
            (
                s.put_bytes(&data(C + 5)).await.expect("put"),
                s.put_bytes(&data(2 * C + 1)).await.expect("put"),
                s.put_bytes(b"a small frame").await.expect("put"),
                s.put_bytes(&data(3 * C)).await.expect("put"),
            )
        };
        let s = BlobStore::open(dir.path()).expect("reopen");
        std::fs::write(s.path(&truncated), &data(2 * C + 1)[..C]).expect("truncate");
        let mut bytes = std::fs::read(s.path(&flipped)).expect("read");
        bytes[3] ^= 0x20;
        std::fs::write(s.path(&flipped), bytes).expect("flip a bit");
        let mut bytes = std::fs::read(s.path(&served)).expect("read");
        bytes[C + 9] ^= 1;
        std::fs::write(s.path(&served), bytes).expect("flip a bit");
        std::fs::write(s.path(&served).with_file_name("not-a-hash"), b"x").expect("stray");

        // Asked for by a peer before any scrub: checked, found damaged, not served.
        assert_eq!(s.info(&served).await.expect("info"), None);
        assert_eq!(s.read_chunk(&served, 0).await.expect("chunk"), None);
        assert!(!s.path(&served).exists(), "the damaged copy is removed");

        let mut damaged = s.scrub().await.expect("scrub");
        damaged.sort();
        let mut want = vec![truncated, flipped];
        want.sort();
        assert_eq!(damaged, want);
        for hash in [truncated, flipped, served] {
            assert!(!s.has(&hash));
            assert!(!s.ensure(&hash).await.expect("ensure"));
        }
        assert!(s.has(&whole), "a whole blob is trusted once scrubbed");
        assert!(s.path(&whole).with_file_name("not-a-hash").exists());
        assert!(s.scrub().await.expect("scrub again").is_empty());
    }
}
