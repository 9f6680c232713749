//! [`ShardWriter`]: assigns rows to splits, rolls zstd Parquet shards, commits them atomically and
//! resumes an interrupted dataset without duplicating or losing rows.
//!
//! Commit protocol of one shard: write `.NAME.partial`, fsync it, rename it to `NAME`, fsync the
//! directory, then rewrite `manifest.json` atomically. A crash leaves at worst a `.partial` file
//! (deleted on the next open) or a complete shard that the manifest does not list yet (adopted on
//! the next open). Committed rows are known by `record_id`; the next writer skips them. Commits
//! run on a background thread ([`Committer`]) in the order the shards filled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Schema, SchemaRef};
use fs4::fs_std::FileExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::xxh3_128;

use super::assign::{is_key_type, key_hashes, SplitAssigner, SplitRatio, SPLIT_HASH_SEED};
use super::commit::{Committer, FinishedShard};
use super::encode::ShardFile;
use super::files::{
    hash_file, parse_shard_name, partial_name, shard_name, HashingFile, PARTIAL_SUFFIX,
};
use super::manifest::{
    describe_schema, schema_fingerprint, Manifest, ShardEntry, FORMAT, FORMAT_VERSION,
    MANIFEST_NAME,
};
use crate::error::{DataError, Result};

/// Name of the lock file that keeps a second writer out of a dataset directory.
pub const LOCK_NAME: &str = ".livo-shards.lock";

/// How a dataset is split and written. The split fields must match on resume.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub splits: Vec<SplitRatio>,
    /// Column whose value decides the split (rows of one group always share a split).
    pub group_key: String,
    /// String column identifying a record; writing is idempotent per id.
    pub record_id: String,
    /// Hash buckets per split; each bucket rolls its own shards.
    pub buckets: u32,
    /// A shard is closed once its encoded size reaches this many bytes.
    pub target_shard_bytes: u64,
    /// A row group is closed once its estimated encoded size reaches this many bytes.
    pub row_group_bytes: u64,
    pub zstd_level: i32,
    pub schema_version: String,
    /// Producer-supplied creation metadata stored in the manifest (a JSON object).
    pub metadata: serde_json::Value,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            splits: vec![
                SplitRatio {
                    name: "train".into(),
                    ratio: 0.98,
                },
                SplitRatio {
                    name: "val".into(),
                    ratio: 0.02,
                },
            ],
            group_key: "cluster_id".into(),
            record_id: "record_id".into(),
            buckets: 1,
            target_shard_bytes: 256 << 20,
            row_group_bytes: 32 << 20,
            zstd_level: 3,
            schema_version: "livo.pair/2".into(),
            metadata: serde_json::Value::Object(Default::default()),
        }
    }
}

/// What one `write` call did with its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub rows: u64,
    pub written: u64,
    /// Rows whose record_id was already committed or already written by this writer.
    pub skipped: u64,
}

struct OpenShard {
    name: String,
    split: usize,
    bucket: u32,
    file: ShardFile,
}

pub struct ShardWriter {
    dir: PathBuf,
    config: ShardConfig,
    assigner: SplitAssigner,
    /// Holds the manifest and commits filled shards in the background.
    committer: Committer,
    seen: HashSet<u128>,
    schema: Option<(SchemaRef, String)>,
    props: Option<WriterProperties>,
    next_seq: HashMap<(usize, u32), u32>,
    open: BTreeMap<(usize, u32), OpenShard>,
    failed: bool,
    _lock: File,
}

impl ShardWriter {
    /// Opens `dir` for writing: creates it, or resumes it (deleting partial files, adopting
    /// complete shards the manifest missed, and loading the committed record ids).
    pub fn open(dir: &Path, config: ShardConfig) -> Result<Self> {
        let assigner = SplitAssigner::new(&config.splits, config.buckets)?;
        if config.target_shard_bytes == 0 {
            return Err(DataError::parameter(
                "target_shard_bytes",
                0,
                "must be positive",
            ));
        }
        if config.row_group_bytes == 0 {
            return Err(DataError::parameter(
                "row_group_bytes",
                0,
                "must be positive",
            ));
        }
        if !(1..=22).contains(&config.zstd_level) {
            return Err(DataError::parameter(
                "zstd_level",
                config.zstd_level,
                "must be 1-22",
            ));
        }
        if !config.metadata.is_object() {
            return Err(DataError::parameter(
                "metadata",
                &config.metadata,
                "must be a JSON object",
            ));
        }
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let lock = lock_dir(dir)?;
        remove_partials(dir)?;

        let fresh = new_manifest(&config);
        let manifest_path = dir.join(MANIFEST_NAME);
        let mut manifest = if manifest_path.exists() && holds_no_shard(dir)? {
            // A dataset without a single shard holds no rows (a writer that failed or was killed
            // before its first commit): this writer's settings replace it instead of being refused.
            fresh
        } else if manifest_path.exists() {
            let mut m = Manifest::load(dir)?;
            check_compatible(dir, &m, &fresh)?;
            if config.metadata.as_object().is_some_and(|o| !o.is_empty()) {
                m.metadata = config.metadata.clone();
            }
            m
        } else {
            fresh
        };

        let mut seen = HashSet::new();
        let mut next_seq = HashMap::new();
        let listed: HashSet<String> = manifest.shards.iter().map(|s| s.name.clone()).collect();
        let mut orphans = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
            let name = entry.map_err(|e| DataError::io(dir, e))?.file_name();
            let name = name.to_string_lossy();
            if !listed.contains(name.as_ref()) && parse_shard_name(&name).is_some() {
                orphans.push(name.into_owned());
            }
        }
        orphans.sort();
        for name in orphans {
            let entry = adopt(dir, &name, &assigner, &mut manifest)?;
            manifest.shards.push(entry);
        }
        for entry in &manifest.shards {
            let path = dir.join(&entry.name);
            if !path.exists() {
                return Err(DataError::Manifest {
                    path: dir.join(MANIFEST_NAME),
                    reason: format!(
                        "lists shard {} which is missing; run `livo shards verify` on the dataset",
                        entry.name
                    ),
                });
            }
            read_ids(&path, &config.record_id, &mut seen)?;
            let split = split_index(&assigner, &entry.split).expect("checked on load or adopt");
            let seq = parse_shard_name(&entry.name).map_or(0, |(_, _, s)| s + 1);
            let next = next_seq.entry((split, entry.bucket)).or_insert(0);
            *next = (*next).max(seq);
        }
        manifest.save(dir)?;
        let existing = manifest.shards.first().map(|s| dir.join(&s.name));
        let mut writer = Self {
            dir: dir.to_path_buf(),
            config,
            assigner,
            committer: Committer::start(dir, manifest)?,
            seen,
            schema: None,
            props: None,
            next_seq,
            open: BTreeMap::new(),
            failed: false,
            _lock: lock,
        };
        if let Some(path) = existing {
            writer.fix_schema(shard_schema(&path)?)?;
        }
        Ok(writer)
    }

    /// The manifest as committed so far (commits of filled shards may still be under way).
    pub fn manifest(&self) -> Manifest {
        self.committer.with_manifest(|m| m.clone())
    }

    /// True when a row with this record id is committed or was written by this writer.
    pub fn contains(&self, record_id: &str) -> bool {
        self.seen.contains(&xxh3_128(record_id.as_bytes()))
    }

    /// Writes the rows of `batch` whose record ids are new; rolls and commits shards as they fill.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<WriteStats> {
        self.write_rows(batch, 0)
    }

    /// [`ShardWriter::write`] for a batch that starts at row `first_row` (from 0) of a longer input
    /// (a stream of batches), so that an error names the input's row (from 1), not the batch's.
    pub fn write_rows(&mut self, batch: &RecordBatch, first_row: u64) -> Result<WriteStats> {
        if self.failed {
            return Err(DataError::parameter(
                "writer",
                "failed",
                "an earlier write failed; open the dataset again to resume",
            ));
        }
        let batch = self.conform(batch)?;
        let n = batch.num_rows();
        let column = |name: &str| batch.column(batch.schema().index_of(name).expect("checked"));
        let hashes = key_hashes(column(&self.config.group_key)).map_err(|row| {
            DataError::Schema(format!(
                "column {}: null group key at row {}",
                self.config.group_key,
                first_row + row as u64 + 1
            ))
        })?;
        let ids = column(&self.config.record_id);
        if let Some(row) = (0..n).find(|&i| ids.is_null(i)) {
            return Err(DataError::Schema(format!(
                "column {}: null record id at row {}",
                self.config.record_id,
                first_row + row as u64 + 1
            )));
        }
        let id_hashes = string_hashes(ids);

        let mut groups: BTreeMap<(usize, u32), Vec<u32>> = BTreeMap::new();
        let mut stats = WriteStats {
            rows: n as u64,
            ..Default::default()
        };
        for (row, (id, key)) in id_hashes.iter().zip(&hashes).enumerate() {
            if self.seen.insert(*id) {
                groups
                    .entry(self.assigner.assign(*key))
                    .or_default()
                    .push(row as u32);
            } else {
                stats.skipped += 1;
            }
        }
        stats.written = n as u64 - stats.skipped;
        let result = (|| {
            let row_bytes = (data_bytes(&batch) / n.max(1) as u64).max(1);
            for (group, rows) in groups {
                if rows.len() * 2 >= n {
                    // Most of the batch: zero-copy slices of its runs of consecutive rows.
                    for (start, len) in runs(&rows) {
                        self.write_group(group, &batch.slice(start, len), row_bytes)?;
                    }
                } else {
                    // A minority: copied, so the shard does not keep the whole batch alive.
                    let part =
                        arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                            .map_err(|e| DataError::Schema(e.to_string()))?;
                    self.write_group(group, &part, row_bytes)?;
                }
            }
            Ok(stats)
        })();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Commits every open shard, waits for all commits and saves the manifest; returns it.
    pub fn finish(mut self) -> Result<Manifest> {
        let groups: Vec<_> = self.open.keys().copied().collect();
        for group in groups {
            self.commit(group)?;
        }
        self.committer.finish()
    }

    /// Checks a batch against the dataset's columns (fixed by the first batch or the existing
    /// shards) and returns it under the dataset's schema. Columns whose types differ only in
    /// nested field names (`item` vs `element` list children) are cast; anything else is refused.
    fn conform(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let (schema, _) = match &self.schema {
            Some(fixed) => fixed.clone(),
            None => self.fix_schema(Arc::new(Schema::new(batch.schema().fields().clone())))?,
        };
        let given = batch.schema();
        let same_columns = given.fields().len() == schema.fields().len()
            && given.fields().iter().zip(schema.fields()).all(|(g, e)| {
                g.name() == e.name() && same_logical_type(g.data_type(), e.data_type())
            });
        if !same_columns {
            return Err(DataError::Schema(schema_difference(&schema, &given)));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    arrow_cast::cast(column, field.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| DataError::Schema(e.to_string()))?;
        RecordBatch::try_new(schema, columns).map_err(|e| DataError::Schema(e.to_string()))
    }

    fn fix_schema(&mut self, schema: SchemaRef) -> Result<(SchemaRef, String)> {
        self.check_key_columns(&schema)?;
        let doc = describe_schema(&schema);
        let key = schema_fingerprint(&doc);
        self.props = Some(writer_properties(&schema, &self.config));
        self.committer.with_manifest(|m| {
            m.schemas.entry(key.clone()).or_insert(doc);
        });
        self.schema = Some((schema.clone(), key.clone()));
        Ok((schema, key))
    }

    fn check_key_columns(&self, schema: &Schema) -> Result<()> {
        let (id, key) = (&self.config.record_id, &self.config.group_key);
        let id_type = schema
            .field_with_name(id)
            .map_err(|_| DataError::Schema(format!("no record id column {id}")))?
            .data_type();
        if !matches!(
            id_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Err(DataError::Schema(format!(
                "record id column {id} must be a string column, not {id_type}"
            )));
        }
        let key_type = schema
            .field_with_name(key)
            .map_err(|_| DataError::Schema(format!("no group key column {key}")))?
            .data_type();
        if !is_key_type(key_type) {
            return Err(DataError::Schema(format!(
                "group key column {key} must be an integer, string or binary column, not {key_type}"
            )));
        }
        Ok(())
    }

    /// `row_bytes` estimates one row's size (slices share their parent's buffers, so it is
    /// measured on the parent batch).
    fn write_group(
        &mut self,
        group: (usize, u32),
        part: &RecordBatch,
        row_bytes: u64,
    ) -> Result<()> {
        // Rows go to the shard in slices no bigger than a row group, so memory stays bounded.
        let chunk = (self.config.row_group_bytes / row_bytes).clamp(1, 1 << 20) as usize;
        let mut offset = 0;
        while offset < part.num_rows() {
            let len = chunk.min(part.num_rows() - offset);
            let dir = self.dir.clone();
            let shard = self.open_shard(group)?;
            shard
                .file
                .push(part.slice(offset, len), len as u64 * row_bytes)
                .map_err(|e| parquet_error(&dir, &partial_name(&shard.name), e))?;
            if shard.file.size() >= self.config.target_shard_bytes {
                self.commit(group)?;
            }
            offset += len;
        }
        Ok(())
    }

    fn open_shard(&mut self, group: (usize, u32)) -> Result<&mut OpenShard> {
        if !self.open.contains_key(&group) {
            let seq = self.next_seq.entry(group).or_insert(0);
            let name = shard_name(&self.assigner.splits()[group.0].name, group.1, *seq);
            *seq += 1;
            let partial = self.dir.join(partial_name(&name));
            let file = HashingFile::create(&partial)?;
            let (schema, _) = self.schema.as_ref().expect("conform ran first");
            let props = self.props.as_ref().expect("conform ran first");
            let file = ShardFile::new(file, schema.clone(), props, self.config.row_group_bytes)
                .map_err(|e| parquet_error(&self.dir, &partial_name(&name), e))?;
            self.open.insert(
                group,
                OpenShard {
                    name,
                    split: group.0,
                    bucket: group.1,
                    file,
                },
            );
        }
        Ok(self.open.get_mut(&group).expect("inserted above"))
    }

    fn commit(&mut self, group: (usize, u32)) -> Result<()> {
        let Some(shard) = self.open.remove(&group) else {
            return Ok(());
        };
        let partial = self.dir.join(partial_name(&shard.name));
        let sealed = shard
            .file
            .seal()
            .map_err(|e| parquet_error(&self.dir, &partial_name(&shard.name), e))?;
        let row_groups = sealed.row_groups().to_vec();
        let entry = ShardEntry {
            split: self.assigner.splits()[shard.split].name.clone(),
            bucket: shard.bucket,
            rows: row_groups.iter().sum(),
            bytes: 0,
            blake3: String::new(),
            schema: self
                .schema
                .as_ref()
                .expect("a shard implies a schema")
                .1
                .clone(),
            row_groups,
            name: shard.name,
        };
        let result = self.committer.submit(FinishedShard {
            shard: sealed,
            target: self.dir.join(&entry.name),
            partial,
            entry,
        });
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn discard_open_shards(&mut self) {
        for shard in std::mem::take(&mut self.open).into_values() {
            let _ = fs::remove_file(self.dir.join(partial_name(&shard.name)));
        }
    }
}

impl Drop for ShardWriter {
    /// A writer dropped without `finish` discards its open shards (their rows are not committed).
    fn drop(&mut self) {
        self.discard_open_shards();
    }
}

/// Bytes of the values a batch holds (its slice of every buffer, not the buffers' capacity, which
/// is unknown for data imported from Python).
fn data_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

/// (start, length) of each run of consecutive values in sorted `rows`.
fn runs(rows: &[u32]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &row in rows {
        match out.last_mut() {
            Some((start, len)) if *start + *len == row as usize => *len += 1,
            _ => out.push((row as usize, 1)),
        }
    }
    out
}

fn new_manifest(config: &ShardConfig) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        schema_version: config.schema_version.clone(),
        record_id_column: config.record_id.clone(),
        group_key_column: config.group_key.clone(),
        split_hash: format!(
            "xxh3_64(seed={SPLIT_HASH_SEED:#x}) of the group key; integers as 8-byte little-endian, strings as UTF-8"
        ),
        splits: config.splits.clone(),
        buckets: config.buckets,
        compression: format!("zstd({})", config.zstd_level),
        content_hash: "blake3".into(),
        metadata: config.metadata.clone(),
        schemas: BTreeMap::new(),
        shards: Vec::new(),
    }
}

fn check_compatible(dir: &Path, existing: &Manifest, wanted: &Manifest) -> Result<()> {
    let mismatch = |what: &str, have: String, want: String| DataError::Manifest {
        path: dir.join(MANIFEST_NAME),
        reason: format!("the dataset was written with {what} {have}, this writer asks for {want}"),
    };
    if existing.splits != wanted.splits {
        let show = |s: &[SplitRatio]| {
            s.iter()
                .map(|r| format!("{}={}", r.name, r.ratio))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(mismatch(
            "splits",
            show(&existing.splits),
            show(&wanted.splits),
        ));
    }
    let pairs = [
        (
            "group key",
            &existing.group_key_column,
            &wanted.group_key_column,
        ),
        (
            "record id column",
            &existing.record_id_column,
            &wanted.record_id_column,
        ),
        (
            "schema version",
            &existing.schema_version,
            &wanted.schema_version,
        ),
        ("compression", &existing.compression, &wanted.compression),
    ];
    for (what, have, want) in pairs {
        if have != want {
            return Err(mismatch(what, have.clone(), want.clone()));
        }
    }
    if existing.buckets != wanted.buckets {
        return Err(mismatch(
            "buckets",
            existing.buckets.to_string(),
            wanted.buckets.to_string(),
        ));
    }
    Ok(())
}

/// True when the manifest lists no shard and the folder has no shard file it does not list.
fn holds_no_shard(dir: &Path) -> Result<bool> {
    let manifest = Manifest::load(dir)?;
    if !manifest.shards.is_empty() {
        return Ok(false);
    }
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let name = entry.map_err(|e| DataError::io(dir, e))?.file_name();
        if parse_shard_name(&name.to_string_lossy()).is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DataError::io(&path, e))?;
    match file.try_lock_exclusive() {
        Ok(true) => Ok(file),
        Ok(false) => Err(DataError::Locked { path }),
        Err(e) => Err(DataError::io(&path, e)),
    }
}

fn remove_partials(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) {
            fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
        }
    }
    Ok(())
}

fn split_index(assigner: &SplitAssigner, name: &str) -> Option<usize> {
    assigner.splits().iter().position(|s| s.name == name)
}

/// A complete shard renamed into place before the manifest was updated becomes part of it.
fn adopt(
    dir: &Path,
    name: &str,
    assigner: &SplitAssigner,
    manifest: &mut Manifest,
) -> Result<ShardEntry> {
    let (split, bucket, _) = parse_shard_name(name).expect("filtered by the caller");
    if split_index(assigner, &split).is_none() || bucket >= assigner.buckets() {
        return Err(DataError::Manifest {
            path: dir.join(name),
            reason: format!("split {split} bucket {bucket} is not part of this dataset"),
        });
    }
    let path = dir.join(name);
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(dir, name, e))?;
    let doc = describe_schema(builder.schema());
    let key = schema_fingerprint(&doc);
    manifest.schemas.entry(key.clone()).or_insert(doc);
    let row_groups: Vec<u64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows() as u64)
        .collect();
    let (bytes, blake3) = hash_file(&path)?;
    Ok(ShardEntry {
        name: name.to_owned(),
        split,
        bucket,
        rows: row_groups.iter().sum(),
        bytes,
        blake3,
        schema: key,
        row_groups,
    })
}

/// Opens a shard for reading; also returns its file name for error messages.
fn open_shard(path: &Path) -> Result<(ParquetRecordBatchReaderBuilder<File>, String)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(dir, &name, e))?;
    Ok((builder, name))
}

/// The Arrow schema a shard was written with (without schema-level metadata).
fn shard_schema(path: &Path) -> Result<SchemaRef> {
    let (builder, _) = open_shard(path)?;
    Ok(Arc::new(Schema::new(builder.schema().fields().clone())))
}

/// Adds the record ids of one shard to `seen`, reading only that column.
fn read_ids(path: &Path, column: &str, seen: &mut HashSet<u128>) -> Result<()> {
    let (builder, name) = open_shard(path)?;
    let index = builder
        .schema()
        .index_of(column)
        .map_err(|_| DataError::Schema(format!("shard {name} has no record id column {column}")))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(path.parent().unwrap_or(Path::new(".")), &name, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| DataError::Schema(format!("shard {name}: {e}")))?;
        seen.extend(string_hashes(batch.column(0)));
    }
    Ok(())
}

fn string_hashes(ids: &dyn Array) -> Vec<u128> {
    let hash = |v: Option<&str>| xxh3_128(v.unwrap_or_default().as_bytes());
    match ids.data_type() {
        DataType::Utf8 => ids.as_string::<i32>().iter().map(hash).collect(),
        DataType::LargeUtf8 => ids.as_string::<i64>().iter().map(hash).collect(),
        DataType::Utf8View => ids.as_string_view().iter().map(hash).collect(),
        other => unreachable!("record id type {other} was checked"),
    }
}

/// The Parquet settings of every shard (also used by the benchmark's single-file baseline).
pub fn writer_properties(schema: &Schema, config: &ShardConfig) -> WriterProperties {
    let level = ZstdLevel::try_new(config.zstd_level).expect("level checked on open");
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "livo.schema_version".into(),
            config.schema_version.clone(),
        )]));
    // Image bytes neither repeat nor sort usefully: no dictionary, no min/max statistics.
    for field in schema.fields() {
        if matches!(
            field.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            let path = ColumnPath::from(field.name().as_str());
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    builder.build()
}

/// Writes `batches` to one Parquet file with `ArrowWriter` and the shards' settings, without
/// splitting, hashing or syncing: the baseline that `benchmarks/shard_write.py` measures the
/// sharding overhead against. Returns the rows written.
pub fn write_single_file(
    path: &Path,
    batches: impl Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>,
    schema: SchemaRef,
    config: &ShardConfig,
) -> Result<u64> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let props = writer_properties(&schema, config)
        .into_builder()
        .set_max_row_group_bytes(Some(config.row_group_bytes as usize))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| parquet_error(dir, &name, e))?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch.map_err(|e| DataError::Schema(e.to_string()))?;
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .map_err(|e| parquet_error(dir, &name, e))?;
    }
    writer.close().map_err(|e| parquet_error(dir, &name, e))?;
    Ok(rows)
}

fn field_list(fields: &[super::manifest::FieldDoc]) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.name, f.data_type))
        .collect();
    format!("[{}]", items.join(", "))
}

fn schema_difference(expected: &Schema, got: &Schema) -> String {
    for (i, (e, g)) in expected.fields().iter().zip(got.fields()).enumerate() {
        if e != g {
            return format!(
                "column {i}: expected {}: {} (nullable={}), got {}: {} (nullable={})",
                e.name(),
                e.data_type(),
                e.is_nullable(),
                g.name(),
                g.data_type(),
                g.is_nullable()
            );
        }
    }
    format!(
        "expected {} columns {}, got {} columns {}",
        expected.fields().len(),
        field_list(&describe_schema(expected)),
        got.fields().len(),
        field_list(&describe_schema(got))
    )
}

fn parquet_error(dir: &Path, name: &str, source: parquet::errors::ParquetError) -> DataError {
    DataError::Parquet {
        path: dir.join(name),
        source,
    }
}

/// Whether a column of type `given` holds what the dataset's `expected` column holds, in another
/// Arrow layout: text as `Utf8`, `LargeUtf8` or `Utf8View` (Parquet files written by pyarrow hold
/// the first, JSON Lines and CSV read through polars the second), bytes likewise, and lists of
/// such items. The batch is then cast to the dataset's layout; other differences are refused.
fn same_logical_type(given: &DataType, expected: &DataType) -> bool {
    use DataType::{Binary, BinaryView, LargeBinary, LargeList, LargeUtf8, List, Utf8, Utf8View};
    match (given, expected) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (List(a) | LargeList(a), List(b) | LargeList(b)) => {
            same_logical_type(a.data_type(), b.data_type())
        }
        _ => given.equals_datatype(expected),
    }
}
