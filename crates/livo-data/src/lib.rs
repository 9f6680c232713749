//! livo-data: the data engine of LiVO, pure Rust with no Python dependency.
//!
//! - [`normalize`]: Unicode-aware prompt normalisation;
//! - [`dedup`]: exact and MinHash-LSH near-duplicate clustering;
//! - [`robust_text`]: the robust normal form and keyword matching of value selection;
//! - [`text_file`]: line-oriented prompt files with exact error locations;
//! - [`shards`]: sharded Parquet datasets with a manifest, atomic resumable writing and verification.

pub mod dedup;
pub mod error;
pub mod normalize;
pub mod progress;
pub mod robust_text;
pub mod shards;
pub mod text_file;
mod union_find;

pub use dedup::{dedup, DedupConfig, DedupResult, LshParams};
pub use error::{DataError, Result};
pub use normalize::normalize;
pub use progress::{Progress, Silent};
pub use robust_text::{normalize_robust, KeywordHit, KeywordMatcher, KeywordOptions};
