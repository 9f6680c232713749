//! Background commit of finished shards: last row group and footer, fsync, rename into place,
//! manifest rewrite.
//!
//! Why a thread: a commit is serial work (appending and hashing the last row group) and waits on
//! the disk several times (the shard's fsync, the directory's, the manifest's write, fsync and
//! rename), a few milliseconds to tens of milliseconds each. Done inline, it stalls the encoding of
//! the next shard. The [`Committer`] runs the same commit
//! protocol, shard by shard in submission order, on its own thread while the writer goes on.
//! The guarantees do not change: a shard is listed in the manifest only after it is durable under
//! its final name, so a crash still leaves at worst a `.partial` file or an unlisted complete shard.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::encode::SealedShard;
use super::files::publish;
use super::manifest::{Manifest, ShardEntry};
use crate::error::{DataError, Result};

/// Sealed shards waiting for their commit, beyond the one being committed. Each holds its last
/// encoded row group in memory, so this bounds the memory the committer adds: (1 + QUEUE) row groups.
const QUEUE: usize = 1;

/// A sealed shard, ready to be completed, made durable and listed.
pub struct FinishedShard {
    pub shard: SealedShard,
    pub partial: PathBuf,
    pub target: PathBuf,
    /// The entry to list; `bytes` and `blake3` are filled in by the commit.
    pub entry: ShardEntry,
}

struct Shared {
    manifest: Manifest,
    /// Set by the first commit that fails; no shard is committed after it.
    failed: bool,
    /// That commit's error, until it is reported.
    error: Option<DataError>,
}

/// Owns the dataset's manifest while a writer is open and commits shards on a worker thread.
pub struct Committer {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    jobs: Option<SyncSender<FinishedShard>>,
    worker: Option<JoinHandle<()>>,
}

impl Committer {
    pub fn start(dir: &Path, manifest: Manifest) -> Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            manifest,
            failed: false,
            error: None,
        }));
        let (jobs, queue) = sync_channel::<FinishedShard>(QUEUE);
        let worker = {
            let shared = shared.clone();
            let folder = dir.to_path_buf();
            std::thread::Builder::new()
                .name("livo-shard-commit".into())
                .spawn(move || {
                    for shard in queue {
                        if lock(&shared).failed {
                            continue; // its .partial file is removed when the dataset is reopened
                        }
                        if let Err(error) = commit(&folder, &shared, shard) {
                            let mut shared = lock(&shared);
                            shared.failed = true;
                            shared.error = Some(error);
                        }
                    }
                })
                .map_err(|e| DataError::io(dir, e))?
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            shared,
            jobs: Some(jobs),
            worker: Some(worker),
        })
    }

    /// Queues a finished shard; waits only if [`QUEUE`] shards are already waiting. Returns the
    /// error of an earlier commit, if one failed.
    pub fn submit(&mut self, shard: FinishedShard) -> Result<()> {
        self.take_error()?;
        let jobs = self.jobs.as_ref().expect("open until finish");
        if jobs.send(shard).is_err() {
            // The worker is gone: it can only have panicked.
            self.take_error()?;
            return Err(DataError::io(
                &self.dir,
                std::io::Error::other("the shard commit thread stopped"),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the manifest (for changes the next commit should save, e.g. a new schema).
    pub fn with_manifest<T>(&self, f: impl FnOnce(&mut Manifest) -> T) -> T {
        f(&mut lock(&self.shared).manifest)
    }

    /// Waits for every queued commit, saves the manifest once more and returns it.
    pub fn finish(&mut self) -> Result<Manifest> {
        self.join();
        self.take_error()?;
        let mut shared = lock(&self.shared);
        shared.manifest.save(&self.dir)?;
        Ok(shared.manifest.clone())
    }

    /// The failed commit's error the first time, then a reminder that one failed.
    fn take_error(&self) -> Result<()> {
        let mut shared = lock(&self.shared);
        match shared.error.take() {
            Some(error) => Err(error),
            None if shared.failed => Err(DataError::parameter(
                "writer",
                "failed",
                "an earlier shard commit failed; open the dataset again to resume",
            )),
            None => Ok(()),
        }
    }

    fn join(&mut self) {
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                let mut shared = lock(&self.shared);
                shared.failed = true;
                shared.error = Some(DataError::io(
                    &self.dir,
                    std::io::Error::other("the shard commit thread panicked"),
                ));
            }
        }
    }
}

impl Drop for Committer {
    /// Queued shards are complete, so they are still committed before the writer lets go.
    fn drop(&mut self) {
        self.join();
    }
}

/// Complete and fsync the shard, rename it into place (durably), then list it and rewrite the manifest.
fn commit(dir: &Path, shared: &Mutex<Shared>, shard: FinishedShard) -> Result<()> {
    let FinishedShard {
        shard,
        partial,
        target,
        mut entry,
    } = shard;
    let file = shard.complete().map_err(|source| DataError::Parquet {
        path: partial.clone(),
        source,
    })?;
    (entry.bytes, entry.blake3) = file.sync(&partial)?;
    publish(&partial, &target)?;
    let mut shared = lock(shared);
    shared.manifest.shards.push(entry);
    shared.manifest.save(dir)
}

/// The lock is never held across a panic, but a poisoned one still holds consistent data.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
