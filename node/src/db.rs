//! The node's own database: its copy of the job table and the highest term it has seen, in
//! one `redb` file (`jobs.redb` in the data directory), so that a node killed or cut from power
//! carries on with every job when it starts again.
//!
//! The core says what to write ([`crate::core::Action::Persist`]) and the mesh actor writes it
//! here in one transaction, committed to disk (redb's default durability: fsync) before it
//! carries out any later action. At start, [`Database::load`] gives back what was written
//! ([`Saved`]) for [`crate::core::Core::restore`].

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rendermesh_protocol::{BlobHash, Job, Term, codec, limits};
use tracing::warn;

use crate::core::{Persist, Saved};

/// Job records by id: the id's 16 bytes to the record in the wire encoding.
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
/// Blobs found damaged and not fetched again yet: a hash's 32 bytes.
const REPAIRS: TableDefinition<&[u8], ()> = TableDefinition::new("repairs");
/// Single values: [`TERM`], [`FORMAT`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The highest term seen.
const TERM: &str = "term";
/// The layout of this file; another one is refused rather than misread.
const FORMAT: &str = "format";
/// 2: job records keep their measured frame times (`Job::frame_ms`). 3: checks and suspects.
/// 4: checks numbered from `FIRST_CHECK`, tasks cut as a job goes. 5: backup tasks
/// (`Task::backup`, `Job::backups`). 6: jobs paused, and their priorities (`Job::paused`,
/// `Job::priority`). 7: frames' thumbnails (`Output::thumb`).
const FORMAT_VERSION: u64 = 7;

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened, read or written.
    #[error("the job database `{path}`: {what}: {source}")]
    Redb {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file was written by another version of rendermesh.
    #[error(
        "the job database `{path}` has format {found}, and this rendermesh reads format \
         {FORMAT_VERSION}: move it aside to start with an empty job table"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u64,
    },
}

/// What wraps a redb failure of `what` on the file at `path`.
fn failed<E: Into<redb::Error>>(
    path: &Path,
    what: &'static str,
) -> impl FnOnce(E) -> DbError + use<E> {
    let path = path.to_path_buf();
    move |e| DbError::Redb {
        path,
        what,
        source: Box::new(e.into()),
    }
}

/// A node's database.
pub struct Database {
    db: redb::Database,
    path: PathBuf,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Opens the database at `path`, creating it when there is none. A file left by a crash
    /// is repaired by redb on open. Fails when another process holds it (two nodes on one data
    /// directory) or it is not a rendermesh job database.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = redb::Database::create(path).map_err(failed(
            path,
            "cannot open it (is another node using this data directory?)",
        ))?;
        let me = Self {
            db,
            path: path.to_path_buf(),
        };
        let txn = me.db.begin_write().map_err(failed(path, "cannot write"))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(failed(path, "cannot open its meta table"))?;
            let found = meta
                .get(FORMAT)
                .map_err(failed(path, "cannot read its format"))?
                .map(|v| v.value());
            match found {
                Some(FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(DbError::Format {
                        path: path.to_path_buf(),
                        found,
                    });
                }
                None => {
                    meta.insert(FORMAT, FORMAT_VERSION)
                        .map_err(failed(path, "cannot write its format"))?;
                }
            }
            txn.open_table(JOBS)
                .map_err(failed(path, "cannot open its job table"))?;
            txn.open_table(REPAIRS)
                .map_err(failed(path, "cannot open its repair list"))?;
        }
        txn.commit().map_err(failed(path, "cannot commit"))?;
        Ok(me)
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err<E: Into<redb::Error>>(&self, what: &'static str) -> impl FnOnce(E) -> DbError + use<E> {
        failed(&self.path, what)
    }

    /// Everything written so far. A record that cannot be decoded (written by a build with
    /// another record layout, or damaged) is left out with a warning naming it: the node
    /// pulls it again from its peers.
    pub fn load(&self) -> Result<Saved, DbError> {
        let txn = self.db.begin_read().map_err(self.err("cannot read"))?;
        let term = txn
            .open_table(META)
            .map_err(self.err("cannot open its meta table"))?
            .get(TERM)
            .map_err(self.err("cannot read the term"))?
            .map_or(0, |v| v.value());
        let table = txn
            .open_table(JOBS)
            .map_err(self.err("cannot open its job table"))?;
        let mut jobs = Vec::new();
        for row in table.iter().map_err(self.err("cannot list its jobs"))? {
            let (key, value) = row.map_err(self.err("cannot read a job"))?;
            match codec::decode::<Job>(value.value(), limits::MAX_MESSAGE) {
                Ok(job) if job.id.0.as_slice() == key.value() => jobs.push(job),
                Ok(job) => warn!(
                    db = %self.path.display(), key = %hex::encode(key.value()), job = %job.id,
                    "a job record is filed under another id: left out"
                ),
                Err(e) => warn!(
                    db = %self.path.display(), key = %hex::encode(key.value()),
                    "a job record cannot be decoded, left out (peers still hold it): {e}"
                ),
            }
        }
        let mut repairs = Vec::new();
        let table = txn
            .open_table(REPAIRS)
            .map_err(self.err("cannot open its repair list"))?;
        for row in table.iter().map_err(self.err("cannot list its repairs"))? {
            let (key, _) = row.map_err(self.err("cannot read a repair"))?;
            match <[u8; 32]>::try_from(key.value()) {
                Ok(hash) => repairs.push(BlobHash(hash)),
                Err(_) => {
                    warn!(db = %self.path.display(), "a repair that is not a blob hash: left out")
                }
            }
        }
        Ok(Saved {
            term: Term(term),
            jobs,
            repairs,
        })
    }

    /// Writes `persist` in one transaction, committed durably before this returns.
    pub fn write(&self, persist: &Persist) -> Result<(), DbError> {
        let txn = self.db.begin_write().map_err(self.err("cannot write"))?;
        {
            if let Some(term) = persist.term {
                txn.open_table(META)
                    .map_err(self.err("cannot open its meta table"))?
                    .insert(TERM, term.0)
                    .map_err(self.err("cannot write the term"))?;
            }
            let mut table = txn
                .open_table(JOBS)
                .map_err(self.err("cannot open its job table"))?;
            if let Some(repairs) = &persist.repairs {
                let mut table = txn
                    .open_table(REPAIRS)
                    .map_err(self.err("cannot open its repair list"))?;
                table
                    .retain(|_, ()| false)
                    .map_err(self.err("cannot clear its repair list"))?;
                for blob in repairs {
                    table
                        .insert(blob.0.as_slice(), ())
                        .map_err(self.err("cannot write a repair"))?;
                }
            }
            for id in &persist.forget {
                table
                    .remove(id.0.as_slice())
                    .map_err(self.err("cannot delete a job"))?;
            }
            for job in &persist.jobs {
                // A record always fits one message (its failure text is bounded).
                let bytes = match codec::encode(job, limits::MAX_MESSAGE) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        warn!(job = %job.id, "a job record cannot be encoded, not written: {e}");
                        continue;
                    }
                };
                table
                    .insert(job.id.0.as_slice(), bytes.as_slice())
                    .map_err(self.err("cannot write a job"))?;
            }
        }
        txn.commit().map_err(self.err("cannot commit"))
    }
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{FrameRange, JobId, JobSpec, NodeId, plan};

    use super::*;

    fn job(id: u8) -> Job {
        let spec = JobSpec::new(
            "shot.blend",
            BlobHash::of(b"shot"),
            4,
            FrameRange::new(1, 6).expect("a range"),
        );
        let origin = NodeId::from_bytes(*b"origin").expect("a node id");
        let plan = plan(&spec, 2);
        Job::new(JobId([id; 16]), spec, origin, plan, Term(3), 7)
    }

    #[test]
    fn what_is_written_is_there_after_a_reopen() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("jobs.redb");
        let mut a = job(1);
        {
            let db = Database::open(&path).expect("a new database");
            assert_eq!(db.load().expect("loads"), Saved::default());
            db.write(&Persist {
                term: Some(Term(4)),
                jobs: vec![a.clone(), job(2), job(5)],
                repairs: Some(vec![BlobHash::of(b"x"), BlobHash::of(b"y")]),
                forget: Vec::new(),
            })
            .expect("written");
            a.touch(Term(4));
            db.write(&Persist {
                term: None,
                jobs: vec![a.clone()],
                repairs: Some(vec![BlobHash::of(b"y")]),
                forget: vec![JobId([5; 16])],
            })
            .expect("written again");
        }
        let db = Database::open(&path).expect("reopened");
        let saved = db.load().expect("loads");
        assert_eq!(saved.term, Term(4));
        // Job 5 was forgotten.
        assert_eq!(saved.jobs, vec![a, job(2)]);
        assert_eq!(saved.repairs, vec![BlobHash::of(b"y")]);
    }

    #[test]
    fn a_damaged_record_is_left_out_and_the_rest_loads() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("jobs.redb");
        let db = Database::open(&path).expect("a new database");
        db.write(&Persist {
            jobs: vec![job(1)],
            ..Persist::default()
        })
        .expect("written");
        let txn = db.db.begin_write().expect("a transaction");
        {
            let mut t = txn.open_table(JOBS).expect("the table");
            t.insert([9u8; 16].as_slice(), [0xffu8, 0xff, 0xff].as_slice())
                .expect("garbage in");
            let other = codec::encode(&job(3), limits::MAX_MESSAGE).expect("encodes");
            t.insert([4u8; 16].as_slice(), other.as_slice())
                .expect("a record under another id");
        }
        txn.commit().expect("committed");
        let saved = db.load().expect("loads");
        assert_eq!(saved.jobs, vec![job(1)]);
    }

    #[test]
    fn another_format_and_a_second_opener_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("jobs.redb");
        {
            let db = Database::open(&path).expect("a new database");
            let busy = Database::open(&path).expect_err("the file is in use");
            assert!(busy.to_string().contains("jobs.redb"), "{busy}");
            let txn = db.db.begin_write().expect("a transaction");
            txn.open_table(META)
                .expect("meta")
                .insert(FORMAT, 99)
                .expect("a format from the future");
            txn.commit().expect("committed");
        }
        let err = Database::open(&path).expect_err("format 99 is refused");
        assert!(matches!(err, DbError::Format { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }
}
