//! Sharded Parquet datasets: deterministic split assignment, atomic resumable writing, verification.
//!
//! A dataset is a directory of zstd Parquet shards plus `manifest.json`. Each row goes to a split
//! (e.g. train 0.98 / val 0.02) chosen by a stable hash of its group key (by default the dedup
//! `cluster_id`), so near-duplicates never straddle splits and a row's split never changes when
//! more data is appended. Shards roll at a target size and become visible only once complete; the
//! manifest records each shard's rows, bytes, schema and BLAKE3 content hash, so `verify` can name
//! any missing, extra, truncated or corrupt file. Writing is idempotent per `record_id`: a writer
//! that was killed and restarted skips the rows already in committed shards.
//!
//! - `assign`: the split and bucket of a group key;
//! - `manifest`: the manifest's format and its atomic update;
//! - `commit`: shards made durable and listed on a background thread;
//! - `writer`: the [`ShardWriter`];
//! - `verify`: the [`verify()`] check.

pub mod assign;
mod commit;
mod encode;
mod files;
pub mod manifest;
pub mod verify;
pub mod writer;

pub use assign::{SplitAssigner, SplitRatio};
pub use manifest::{Manifest, ShardEntry, MANIFEST_NAME};
pub use verify::{verify, Problem, ProblemKind, VerifyReport};
pub use writer::{write_single_file, ShardConfig, ShardWriter, WriteStats};
