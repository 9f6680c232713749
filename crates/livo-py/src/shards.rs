//! `ShardWriter` and `verify_shards` bindings: Arrow data arrives through the PyCapsule interface
//! (no copy) and is written with the GIL released.

use std::path::PathBuf;
use std::sync::Mutex;

use livo_data::shards::{ShardConfig, ShardWriter, SplitRatio, WriteStats};
use livo_data::DataError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_arrow::input::AnyRecordBatch;

use crate::errors::to_py;
use crate::parallel;
use crate::progress::{run_interruptible, Bar};

/// The engine's shard writer. Private: `livo.data.shards.ShardWriter` is the typed API.
#[pyclass(module = "livo._native", name = "ShardWriter")]
struct PyShardWriter {
    inner: Mutex<Option<ShardWriter>>,
}

enum WriteError {
    Engine(DataError),
    Arrow(String),
}

#[pymethods]
impl PyShardWriter {
    #[new]
    #[pyo3(signature = (dir, *, splits, group_key, record_id, buckets, target_shard_bytes, row_group_bytes, zstd_level, schema_version, metadata_json))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        splits: Vec<(String, f64)>,
        group_key: String,
        record_id: String,
        buckets: u32,
        target_shard_bytes: u64,
        row_group_bytes: u64,
        zstd_level: i32,
        schema_version: String,
        metadata_json: &str,
    ) -> PyResult<Self> {
        let metadata = serde_json::from_str(metadata_json)
            .map_err(|e| PyValueError::new_err(format!("metadata: not valid JSON: {e}")))?;
        let config = ShardConfig {
            splits: splits
                .into_iter()
                .map(|(name, ratio)| SplitRatio { name, ratio })
                .collect(),
            group_key,
            record_id,
            buckets,
            target_shard_bytes,
            row_group_bytes,
            zstd_level,
            schema_version,
            metadata,
        };
        let writer = py
            .detach(|| ShardWriter::open(&dir, config))
            .map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(Some(writer)),
        })
    }

    /// Writes a record batch or a stream of them (anything with `__arrow_c_array__` or
    /// `__arrow_c_stream__`). Returns (rows, written, skipped).
    fn write(&self, py: Python<'_>, data: AnyRecordBatch) -> PyResult<(u64, u64, u64)> {
        let reader = data.into_reader()?;
        let bar = Bar::new(false);
        let result = run_interruptible(py, &bar, |bar| {
            let mut guard = self.inner.lock().expect("writer lock poisoned");
            let writer = guard
                .as_mut()
                .ok_or(WriteError::Arrow("the writer is closed".into()))?;
            let mut total = WriteStats::default();
            for batch in reader {
                if livo_data::Progress::cancelled(bar) {
                    return Err(WriteError::Engine(DataError::Cancelled));
                }
                let batch = batch.map_err(|e| WriteError::Arrow(e.to_string()))?;
                let stats = writer
                    .write_rows(&batch, total.rows)
                    .map_err(WriteError::Engine)?;
                total.rows += stats.rows;
                total.written += stats.written;
                total.skipped += stats.skipped;
            }
            Ok(total)
        })?;
        match result {
            Ok(s) => Ok((s.rows, s.written, s.skipped)),
            Err(WriteError::Engine(e)) => Err(to_py(e)),
            Err(WriteError::Arrow(m)) => Err(PyValueError::new_err(m)),
        }
    }

    /// For each record id, whether the dataset already holds it (committed or written here).
    /// The lock is waited for without the GIL: a `write` in another thread may hold it while it
    /// pulls batches from a Python stream, which needs the GIL.
    fn contains(&self, py: Python<'_>, record_ids: Vec<String>) -> PyResult<Vec<bool>> {
        py.detach(|| {
            let guard = self.inner.lock().expect("writer lock poisoned");
            let writer = guard
                .as_ref()
                .ok_or_else(|| PyRuntimeError::new_err("the writer is closed"))?;
            Ok(record_ids.iter().map(|id| writer.contains(id)).collect())
        })
    }

    /// Commits the open shards and the manifest; returns the manifest as JSON text.
    fn finish(&self, py: Python<'_>) -> PyResult<String> {
        let writer = py
            .detach(|| self.inner.lock().expect("writer lock poisoned").take())
            .ok_or_else(|| PyRuntimeError::new_err("the writer is closed"))?;
        // Finishing encodes the last row group on rayon's pool.
        let manifest = py
            .detach(|| parallel::in_working_pool(|| writer.finish()))?
            .map_err(to_py)?;
        Ok(serde_json::to_string(&manifest).expect("a manifest always serialises"))
    }

    /// Discards the open shards (their rows are not committed) and releases the dataset. Shards
    /// that filled before the call are still committed; the wait for that runs without the GIL.
    fn abort(&self, py: Python<'_>) {
        py.detach(|| drop(self.inner.lock().expect("writer lock poisoned").take()));
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().expect("writer lock poisoned").is_none())
    }
}

/// Recomputes hashes and row counts of every shard in `dir`; returns a dict with `shards`, `rows`,
/// `bytes` and `problems` (a list of (shard, kind, detail)).
#[pyfunction]
#[pyo3(signature = (dir, *, progress=false))]
fn verify_shards<'py>(
    py: Python<'py>,
    dir: PathBuf,
    progress: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let bar = Bar::new(progress);
    let report =
        run_interruptible(py, &bar, |bar| livo_data::shards::verify(&dir, bar))?.map_err(to_py)?;
    let problems = PyList::empty(py);
    for p in report.problems {
        problems.append((p.shard, p.kind.as_str(), p.detail))?;
    }
    let d = PyDict::new(py);
    d.set_item("shards", report.shards)?;
    d.set_item("rows", report.rows)?;
    d.set_item("bytes", report.bytes)?;
    d.set_item("problems", problems)?;
    Ok(d)
}

/// Benchmark baseline: the whole stream as one Parquet file written by parquet-rs's `ArrowWriter`
/// with the shards' settings (no split, hash or fsync). Returns the rows written.
#[pyfunction]
#[pyo3(signature = (path, data, *, zstd_level, row_group_bytes))]
fn _write_single_file(
    py: Python<'_>,
    path: PathBuf,
    data: AnyRecordBatch,
    zstd_level: i32,
    row_group_bytes: u64,
) -> PyResult<u64> {
    let reader = data.into_reader()?;
    let schema = reader.schema();
    let config = ShardConfig {
        zstd_level,
        row_group_bytes,
        ..ShardConfig::default()
    };
    py.detach(|| livo_data::shards::write_single_file(&path, reader, schema, &config))
        .map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShardWriter>()?;
    m.add_function(wrap_pyfunction!(verify_shards, m)?)?;
    m.add_function(wrap_pyfunction!(_write_single_file, m)?)?;
    Ok(())
}
