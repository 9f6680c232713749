//! `manifest.json`: what a dataset contains, written atomically after every committed shard.
//!
//! The manifest is deterministic (no clocks, shards sorted by name, fixed key order), so the same
//! input gives a byte-identical manifest. Creation metadata that a producer wants recorded goes in
//! `metadata`, a JSON object the producer supplies.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_schema::Schema;
use serde::{Deserialize, Serialize};

use super::assign::SplitRatio;
use super::files::write_atomic;
use crate::error::{DataError, Result};

pub const MANIFEST_NAME: &str = "manifest.json";
pub const FORMAT: &str = "livo-shards";
pub const FORMAT_VERSION: u32 = 1;

/// One column of a shard schema, as Arrow names its type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDoc {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// One committed shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the dataset directory.
    pub name: String,
    pub split: String,
    pub bucket: u32,
    pub rows: u64,
    pub bytes: u64,
    /// Hex BLAKE3 of the file's bytes.
    pub blake3: String,
    /// Key into [`Manifest::schemas`].
    pub schema: String,
    /// Rows of each Parquet row group, in file order (the unit readers distribute).
    pub row_groups: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Version of the record schema the producer writes (e.g. `livo.pair/2`).
    pub schema_version: String,
    pub record_id_column: String,
    pub group_key_column: String,
    /// How rows are assigned to splits (documents the hash and its seed).
    pub split_hash: String,
    pub splits: Vec<SplitRatio>,
    pub buckets: u32,
    pub compression: String,
    pub content_hash: String,
    /// Producer-supplied creation metadata (a JSON object; the writer adds no clock readings).
    pub metadata: serde_json::Value,
    /// Schemas by fingerprint; each shard names the one it was written with.
    pub schemas: BTreeMap<String, Vec<FieldDoc>>,
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// Reads `dir/manifest.json`; a malformed file is a `Manifest` error naming it.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_NAME);
        let text = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| DataError::Manifest {
                path: path.clone(),
                reason: format!("not a valid manifest: {e}"),
            })?;
        if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
            return Err(DataError::Manifest {
                path,
                reason: format!(
                    "format {} version {} is not {FORMAT} version <= {FORMAT_VERSION}",
                    manifest.format, manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically, shards sorted by name.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        self.shards.sort_by(|a, b| a.name.cmp(&b.name));
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        text.push(b'\n');
        write_atomic(&dir.join(MANIFEST_NAME), &text)
    }

    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// The columns of a schema as the manifest records them (schema-level metadata is not part of it).
pub fn describe_schema(schema: &Schema) -> Vec<FieldDoc> {
    schema
        .fields()
        .iter()
        .map(|f| FieldDoc {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// A short stable fingerprint of a schema description (16 hex digits of BLAKE3).
pub fn schema_fingerprint(fields: &[FieldDoc]) -> String {
    let mut hasher = blake3::Hasher::new();
    for f in fields {
        hasher.update(f.name.as_bytes());
        hasher.update(b"\x1f");
        hasher.update(f.data_type.as_bytes());
        hasher.update(if f.nullable {
            b"\x1fnull\n"
        } else {
            b"\x1fnotnull\n"
        });
    }
    hasher.finalize().to_hex()[..16].to_string()
}
