//! File-level building blocks: shard names, hashing while writing, durable atomic replacement.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{DataError, Result};

/// Suffix of a shard that is still being written; such files are never part of the dataset.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// `{split}-{bucket:03}-{seq:05}.parquet`.
pub fn shard_name(split: &str, bucket: u32, seq: u32) -> String {
    format!("{split}-{bucket:03}-{seq:05}.parquet")
}

/// The temporary name a shard is written under before it is renamed into place.
pub fn partial_name(name: &str) -> String {
    format!(".{name}{PARTIAL_SUFFIX}")
}

/// (split, bucket, seq) of a file name made by [`shard_name`].
pub fn parse_shard_name(name: &str) -> Option<(String, u32, u32)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.rsplitn(3, '-');
    let seq = parts.next()?;
    let bucket = parts.next()?;
    let split = parts.next()?;
    if seq.len() < 5 || bucket.len() < 3 || split.is_empty() {
        return None;
    }
    Some((split.to_owned(), bucket.parse().ok()?, seq.parse().ok()?))
}

/// Written bytes after which [`HashingFile`] asks the kernel to start writing them back.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// A file that hashes (BLAKE3) and counts every byte written to it.
///
/// Every [`WRITEBACK_BYTES`] it starts the write-back of what was written (`sync_file_range`, on
/// Linux; it does not wait), so the disk works while later row groups are encoded and the `fsync`
/// at the end has little left to do.
pub struct HashingFile {
    file: File,
    hasher: blake3::Hasher,
    bytes: u64,
    /// Bytes whose write-back was started.
    flushed: u64,
}

impl HashingFile {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            file,
            hasher: blake3::Hasher::new(),
            bytes: 0,
            flushed: 0,
        })
    }

    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on an open descriptor; it only starts write-back. Errors
            // are ignored: this is an optimisation, and `sync` reports any write-back error.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.bytes - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.flushed = self.bytes;
    }

    /// Flushes to stable storage and returns (bytes, hex BLAKE3 of the content).
    pub fn sync(self, path: &Path) -> Result<(u64, String)> {
        self.file.sync_all().map_err(|e| DataError::io(path, e))?;
        Ok((self.bytes, self.hasher.finalize().to_hex().to_string()))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if self.bytes - self.flushed >= WRITEBACK_BYTES {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// (bytes, hex BLAKE3) of a file's content.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}

/// Makes a rename or deletion in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DataError::io(dir, e))
}

/// Moves a fully written and synced file into place, durably.
pub fn publish(partial: &Path, target: &Path) -> Result<()> {
    fs::rename(partial, target).map_err(|e| DataError::io(target, e))?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `content` so that readers see either the old or the new file, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(partial_name(&name));
    let mut file = File::create(&partial).map_err(|e| DataError::io(&partial, e))?;
    file.write_all(content)
        .and_then(|_| file.sync_all())
        .map_err(|e| DataError::io(&partial, e))?;
    publish(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip() {
        let name = shard_name("train_b", 3, 12);
        assert_eq!(name, "train_b-003-00012.parquet");
        assert_eq!(parse_shard_name(&name), Some(("train_b".into(), 3, 12)));
    }

    #[test]
    fn other_parquet_names_are_not_shard_names() {
        assert_eq!(parse_shard_name("data.parquet"), None);
        assert_eq!(parse_shard_name("train-1-2.parquet"), None);
        assert_eq!(parse_shard_name("train-000-00001.parquet.partial"), None);
    }
}
