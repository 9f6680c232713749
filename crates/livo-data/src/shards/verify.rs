//! `verify`: recompute every shard's hash and row count and compare with the manifest.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;

use super::files::{hash_file, PARTIAL_SUFFIX};
use super::manifest::{Manifest, ShardEntry, MANIFEST_NAME};
use crate::error::{DataError, Result};
use crate::progress::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// Listed in the manifest, absent on disk.
    Missing,
    /// A `.parquet` file on disk that the manifest does not list.
    Extra,
    /// Shorter than the manifest says.
    Truncated,
    /// Present with the right length or longer, but its bytes, footer or row count disagree.
    Corrupt,
    /// A `.partial` file left by a writer that did not finish.
    Incomplete,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Extra => "extra",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Incomplete => "incomplete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub shard: String,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub shards: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Sorted by shard name.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every shard the manifest of `dir` lists (in parallel) and looks for files it does not.
pub fn verify(dir: &Path, progress: &dyn Progress) -> Result<VerifyReport> {
    let manifest = Manifest::load(dir)?;
    progress.stage("verify", manifest.shards.len() as u64);
    let checked: Vec<Option<Problem>> = manifest
        .shards
        .par_iter()
        .map(|entry| {
            if progress.cancelled() {
                return Err(DataError::Cancelled);
            }
            let problem = check_shard(dir, entry);
            progress.advance(1);
            Ok(problem)
        })
        .collect::<Result<_>>()?;
    let mut problems: Vec<Problem> = checked.into_iter().flatten().collect();

    let listed: HashSet<&str> = manifest.shards.iter().map(|s| s.name.as_str()).collect();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let name = entry.map_err(|e| DataError::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(PARTIAL_SUFFIX) {
            problems.push(Problem {
                shard: name.into_owned(),
                kind: ProblemKind::Incomplete,
                detail: "temporary file of a writer that is running or was interrupted".into(),
            });
        } else if name.ends_with(".parquet") && !listed.contains(name.as_ref()) {
            problems.push(Problem {
                shard: name.into_owned(),
                kind: ProblemKind::Extra,
                detail: format!("not listed in {MANIFEST_NAME}"),
            });
        }
    }
    problems.sort_by(|a, b| (&a.shard, a.kind).cmp(&(&b.shard, b.kind)));
    Ok(VerifyReport {
        shards: manifest.shards.len(),
        rows: manifest.rows(),
        bytes: manifest.shards.iter().map(|s| s.bytes).sum(),
        problems,
    })
}

fn check_shard(dir: &Path, entry: &ShardEntry) -> Option<Problem> {
    let path = dir.join(&entry.name);
    let problem = |kind, detail: String| {
        Some(Problem {
            shard: entry.name.clone(),
            kind,
            detail,
        })
    };
    let (bytes, blake3) = match hash_file(&path) {
        Ok(found) => found,
        Err(DataError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return problem(
                ProblemKind::Missing,
                "listed in the manifest, not on disk".into(),
            )
        }
        Err(e) => return problem(ProblemKind::Corrupt, format!("cannot be read: {e}")),
    };
    if bytes < entry.bytes {
        return problem(
            ProblemKind::Truncated,
            format!("{bytes} bytes, the manifest says {}", entry.bytes),
        );
    }
    if bytes != entry.bytes {
        return problem(
            ProblemKind::Corrupt,
            format!("{bytes} bytes, the manifest says {}", entry.bytes),
        );
    }
    if blake3 != entry.blake3 {
        return problem(
            ProblemKind::Corrupt,
            format!(
                "content hash {blake3} differs from the manifest's {}",
                entry.blake3
            ),
        );
    }
    let rows = File::open(&path)
        .map_err(|e| e.to_string())
        .and_then(|f| SerializedFileReader::new(f).map_err(|e| e.to_string()))
        .map(|r| r.metadata().file_metadata().num_rows() as u64);
    match rows {
        Err(e) => problem(
            ProblemKind::Corrupt,
            format!("not a readable Parquet file: {e}"),
        ),
        Ok(rows) if rows != entry.rows => problem(
            ProblemKind::Corrupt,
            format!("{rows} rows, the manifest says {}", entry.rows),
        ),
        Ok(_) => None,
    }
}
