//! Behaviour of the shard writer and verifier on real Parquet files in temporary directories.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray};
use livo_data::shards::{verify, Manifest, ProblemKind, ShardConfig, ShardWriter, SplitRatio};
use livo_data::{DataError, Silent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Rows `start..end`: ids `r{i}`, clusters of 3 consecutive rows, ~2 KB of payload each.
fn batch(start: usize, end: usize) -> RecordBatch {
    let ids: Vec<String> = (start..end).map(|i| format!("r{i}")).collect();
    let clusters: Vec<i64> = (start..end).map(|i| (i / 3) as i64).collect();
    let payload: Vec<Vec<u8>> = (start..end).map(noise).collect();
    RecordBatch::try_from_iter([
        ("record_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "cluster_id",
            Arc::new(Int64Array::from(clusters)) as ArrayRef,
        ),
        (
            "aligned_image",
            Arc::new(BinaryArray::from_iter_values(payload.iter())) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// 2 KB of incompressible bytes, a stand-in for PNG data.
fn noise(seed: usize) -> Vec<u8> {
    let mut state = seed as u64 ^ 0x9E37_79B9_7F4A_7C15;
    (0..2048)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn config() -> ShardConfig {
    ShardConfig {
        splits: vec![
            SplitRatio {
                name: "train".into(),
                ratio: 0.8,
            },
            SplitRatio {
                name: "val".into(),
                ratio: 0.2,
            },
        ],
        target_shard_bytes: 64 << 10,
        row_group_bytes: 16 << 10,
        ..ShardConfig::default()
    }
}

fn write_all(dir: &Path, batches: &[RecordBatch]) -> Manifest {
    let mut writer = ShardWriter::open(dir, config()).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap()
}

/// record_id -> (split, cluster) over every shard of a dataset, asserting each id appears once.
fn rows_by_id(dir: &Path) -> HashMap<String, (String, i64)> {
    let manifest = Manifest::load(dir).unwrap();
    let mut rows = HashMap::new();
    for shard in &manifest.shards {
        let file = fs::File::open(dir.join(&shard.name)).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let clusters = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                let old = rows.insert(
                    ids.value(i).to_owned(),
                    (shard.split.clone(), clusters.value(i)),
                );
                assert!(old.is_none(), "{} written twice", ids.value(i));
            }
        }
    }
    rows
}

fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_input_gives_byte_identical_shards_and_manifest() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let input = [batch(0, 300), batch(300, 600)];
    write_all(a.path(), &input);
    write_all(b.path(), &input);
    let (ca, cb) = (dir_contents(a.path()), dir_contents(b.path()));
    assert!(ca.len() > 3, "expected several shards, got {:?}", ca.keys());
    assert_eq!(ca, cb);
}

#[test]
fn every_row_is_written_once_and_groups_never_straddle_splits() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_all(dir.path(), &[batch(0, 600)]);
    let rows = rows_by_id(dir.path());
    assert_eq!(rows.len(), 600);
    assert_eq!(manifest.rows(), 600);
    let mut split_of_cluster: HashMap<i64, &str> = HashMap::new();
    for (split, cluster) in rows.values() {
        let first = split_of_cluster.entry(*cluster).or_insert(split);
        assert_eq!(*first, split, "cluster {cluster} in two splits");
    }
    let val = rows.values().filter(|(s, _)| s == "val").count();
    assert!(
        (60..=180).contains(&val),
        "val rows {val} far from 20% of 600"
    );
}

#[test]
fn appending_rows_never_moves_an_existing_row_to_another_split() {
    let (small, big) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_all(small.path(), &[batch(0, 300)]);
    write_all(big.path(), &[batch(0, 300)]);
    write_all(big.path(), &[batch(300, 900)]);
    let (before, after) = (rows_by_id(small.path()), rows_by_id(big.path()));
    assert_eq!(after.len(), 900);
    for (id, (split, _)) in &before {
        assert_eq!(&after[id].0, split, "{id} moved");
    }
}

#[test]
fn rewriting_committed_rows_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[batch(0, 400)]);
    let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
    assert!(writer.contains("r399") && !writer.contains("r400"));
    let stats = writer.write(&batch(0, 500)).unwrap();
    assert_eq!((stats.written, stats.skipped), (100, 400));
    writer.finish().unwrap();
    assert_eq!(rows_by_id(dir.path()).len(), 500);
}

#[test]
fn duplicate_ids_inside_one_input_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
    let stats = writer.write(&batch(0, 50)).unwrap();
    let again = writer.write(&batch(25, 75)).unwrap();
    assert_eq!((stats.written, again.written, again.skipped), (50, 25, 25));
    writer.finish().unwrap();
    assert_eq!(rows_by_id(dir.path()).len(), 75);
}

#[test]
fn shards_roll_near_the_target_size_and_record_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_all(dir.path(), &[batch(0, 600)]);
    let cfg = config();
    assert!(manifest.shards.len() >= 8);
    for s in &manifest.shards {
        assert!(
            s.bytes < cfg.target_shard_bytes * 2,
            "{} has {} bytes",
            s.name,
            s.bytes
        );
        assert_eq!(s.row_groups.iter().sum::<u64>(), s.rows);
    }
    // Only the last shard of each split may be too small for several row groups.
    let multi = manifest
        .shards
        .iter()
        .filter(|s| s.row_groups.len() >= 2)
        .count();
    assert!(multi >= manifest.shards.len() - 2, "{:?}", manifest.shards);
}

#[test]
fn a_dropped_writer_leaves_no_partial_files_and_commits_nothing_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
        writer.write(&batch(0, 10)).unwrap();
    }
    let names: Vec<String> = dir_contents(dir.path()).into_keys().collect();
    assert_eq!(names, vec!["manifest.json".to_string()]);
    assert!(!fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".partial")));
}

#[test]
fn reopening_deletes_partial_files_and_adopts_unlisted_complete_shards() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_all(dir.path(), &[batch(0, 300)]);
    // A crash after a shard's rename but before the manifest update, plus a half-written file.
    let mut short = full.clone();
    let dropped = short.shards.pop().unwrap();
    short.save(dir.path()).unwrap();
    fs::write(
        dir.path().join(".train-000-00099.parquet.partial"),
        b"PAR1 half",
    )
    .unwrap();
    let writer = ShardWriter::open(dir.path(), config()).unwrap();
    assert!(writer.manifest().shards.iter().any(|s| s == &dropped));
    writer.finish().unwrap();
    assert_eq!(Manifest::load(dir.path()).unwrap(), full);
    assert!(!dir.path().join(".train-000-00099.parquet.partial").exists());
}

#[test]
fn a_second_writer_on_the_same_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ShardWriter::open(dir.path(), config()).unwrap();
    let second = ShardWriter::open(dir.path(), config());
    assert!(matches!(second, Err(DataError::Locked { .. })));
}

#[test]
fn resuming_with_other_splits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &[batch(0, 30)]);
    let mut other = config();
    other.splits[0].ratio = 0.7;
    other.splits[1].ratio = 0.3;
    let err = ShardWriter::open(dir.path(), other).err().unwrap();
    assert!(matches!(err, DataError::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("splits"));
}

#[test]
fn a_dataset_without_shards_is_taken_over_by_a_writer_with_other_splits() {
    let dir = tempfile::tempdir().unwrap();
    // A writer that stopped before its first commit leaves a manifest that lists no shard.
    drop(ShardWriter::open(dir.path(), config()).unwrap());
    let mut other = config();
    other.splits[0].ratio = 0.7;
    other.splits[1].ratio = 0.3;
    let mut writer = ShardWriter::open(dir.path(), other).unwrap();
    writer.write(&batch(0, 30)).unwrap();
    let manifest = writer.finish().unwrap();
    assert_eq!(manifest.splits[0].ratio, 0.7);
    assert_eq!(manifest.rows(), 30);
}

#[test]
fn a_batch_with_other_columns_is_refused_with_the_column_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
    writer.write(&batch(0, 10)).unwrap();
    let other = batch(10, 20).project(&[0, 1]).unwrap();
    let err = writer.write(&other).unwrap_err();
    assert!(matches!(err, DataError::Schema(_)), "{err}");
}

#[test]
fn a_missing_record_id_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
    let err = writer
        .write(&batch(0, 10).project(&[1, 2]).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("record_id"), "{err}");
}

#[test]
fn verify_passes_a_complete_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_all(dir.path(), &[batch(0, 300)]);
    let report = verify(dir.path(), &Silent).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.shards, report.rows), (manifest.shards.len(), 300));
}

#[test]
fn verify_names_missing_extra_truncated_and_corrupt_shards() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_all(dir.path(), &[batch(0, 300)]);
    let names: Vec<&str> = manifest.shards.iter().map(|s| s.name.as_str()).collect();
    let path = |n: &str| dir.path().join(n);
    fs::remove_file(path(names[0])).unwrap();
    let bytes = fs::read(path(names[1])).unwrap();
    fs::write(path(names[1]), &bytes[..bytes.len() - 100]).unwrap();
    let mut flipped = fs::read(path(names[2])).unwrap();
    flipped[100] ^= 0xFF;
    fs::write(path(names[2]), flipped).unwrap();
    fs::write(path("train-000-09999.parquet"), b"not listed").unwrap();
    let report = verify(dir.path(), &Silent).unwrap();
    let found: Vec<(&str, ProblemKind)> = report
        .problems
        .iter()
        .map(|p| (p.shard.as_str(), p.kind))
        .collect();
    let mut expected = vec![
        (names[0], ProblemKind::Missing),
        (names[1], ProblemKind::Truncated),
        (names[2], ProblemKind::Corrupt),
        ("train-000-09999.parquet", ProblemKind::Extra),
    ];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn a_failed_background_commit_is_reported_and_nothing_after_it_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::open(dir.path(), config()).unwrap();
    // The first train shard cannot be renamed into place: a non-empty directory holds its name.
    let blocker = dir.path().join("train-000-00000.parquet");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("keep"), b"x").unwrap();
    let mut error = None;
    for start in (0..600).step_by(50) {
        if let Err(e) = writer.write(&batch(start, start + 50)) {
            error = Some(e);
            break;
        }
    }
    let error = match error {
        Some(e) => e,
        None => writer.finish().unwrap_err(),
    };
    assert!(
        matches!(&error, DataError::Io { path, .. } if path == &blocker),
        "{error}"
    );
    let listed = Manifest::load(dir.path()).unwrap();
    assert!(
        listed.shards.iter().all(|s| s.split == "val"),
        "{:?}",
        listed.shards
    );
}
