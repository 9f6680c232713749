//! `dedup` and `read_text_lines` bindings.

use arrow_array::{Array, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType;
use livo_data::dedup::TextColumn;
use livo_data::{DedupConfig, DedupResult};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_arrow::PyArray;

use crate::errors::to_py;
use crate::parallel;
use crate::progress::{run_interruptible, Bar};

/// Arrow string arrays read in place (no copy of the text).
enum ArrowText {
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    Utf8View(StringViewArray),
}

impl TextColumn for ArrowText {
    fn len(&self) -> usize {
        match self {
            ArrowText::Utf8(a) => a.len(),
            ArrowText::LargeUtf8(a) => a.len(),
            ArrowText::Utf8View(a) => a.len(),
        }
    }
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            ArrowText::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            ArrowText::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            ArrowText::Utf8View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

fn arrow_text(array: PyArray) -> PyResult<ArrowText> {
    let (array, _field) = array.into_inner();
    let data = array.to_data();
    Ok(match array.data_type() {
        DataType::Utf8 => ArrowText::Utf8(StringArray::from(data)),
        DataType::LargeUtf8 => ArrowText::LargeUtf8(LargeStringArray::from(data)),
        DataType::Utf8View => ArrowText::Utf8View(StringViewArray::from(data)),
        other => {
            return Err(PyTypeError::new_err(format!(
                "texts: expected an Arrow string array, got Arrow type {other}"
            )))
        }
    })
}

fn result_to_dict<'py>(py: Python<'py>, r: DedupResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("cluster_id", r.cluster_id.into_pyarray(py))?;
    d.set_item("keep", r.keep.into_pyarray(py))?;
    d.set_item("empty_rows", r.empty_rows.into_pyarray(py))?;
    d.set_item("rows", r.rows)?;
    d.set_item("exact_duplicates", r.exact_duplicates)?;
    d.set_item("near_duplicates", r.near_duplicates)?;
    d.set_item("clusters", r.clusters)?;
    d.set_item("candidate_pairs", r.candidate_pairs)?;
    d.set_item("verified_pairs", r.verified_pairs)?;
    d.set_item("bands", r.lsh.bands)?;
    d.set_item("rows_per_band", r.lsh.rows)?;
    d.set_item("seconds", r.seconds)?;
    Ok(d)
}

/// Clusters exact and near-duplicate texts. `texts` is a list of str or an Arrow string array
/// (any object with `__arrow_c_array__`). Returns a dict of numpy arrays and counts.
#[pyfunction]
#[pyo3(signature = (texts, *, threshold=0.8, num_perm=128, ngram=5, bands=None, verify=true, seed=1, threads=None, progress=false))]
#[allow(clippy::too_many_arguments)]
fn dedup<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    threshold: f64,
    num_perm: usize,
    ngram: usize,
    bands: Option<usize>,
    verify: bool,
    seed: u64,
    threads: Option<usize>,
    progress: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let config = DedupConfig {
        threshold,
        num_perm,
        ngram,
        bands,
        verify,
        seed,
        threads,
    };
    let bar = Bar::new(progress);
    let result = if let Ok(list) = texts.cast::<PyList>() {
        let owned: Vec<String> = list
            .extract()
            .map_err(|_| PyTypeError::new_err("texts: every element of the list must be a str"))?;
        run_interruptible(py, &bar, |bar| {
            livo_data::dedup(owned.as_slice(), &config, bar)
        })?
    } else if texts.hasattr("__arrow_c_array__")? {
        let column = arrow_text(texts.extract::<PyArray>()?)?;
        run_interruptible(py, &bar, |bar| livo_data::dedup(&column, &config, bar))?
    } else {
        return Err(PyTypeError::new_err(format!(
            "texts: expected a list of str or an Arrow string array, got {}",
            texts.get_type().name()?
        )));
    };
    result_to_dict(py, result.map_err(to_py)?)
}

/// Runs `work` on `threads` worker threads (all cores when `None`), with the GIL released.
fn on_threads<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    py.detach(|| match threads {
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(|pool| pool.install(work))
            .map_err(|e| PyValueError::new_err(format!("threads: {e}"))),
        None => parallel::in_working_pool(work),
    })
}

fn text_column_arg(name: &str, texts: &Bound<'_, PyAny>) -> PyResult<ArrowText> {
    if !texts.hasattr("__arrow_c_array__")? {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected an Arrow string array, got {}",
            texts.get_type().name()?
        )));
    }
    arrow_text(texts.extract::<PyArray>()?)
}

/// Per-row deduplication features of one block of a corpus: the normal form's 128-bit hash (as high
/// and low uint64 arrays), an empty flag and the LSH band hashes (rows × bands), computed exactly as
/// `dedup` computes them, so that blocks deduplicated apart reach the single-process result.
#[pyfunction]
#[pyo3(signature = (texts, *, threshold=0.8, num_perm=128, ngram=5, bands=None, verify=true, seed=1, threads=None))]
#[allow(clippy::too_many_arguments)]
fn dedup_block_features<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    threshold: f64,
    num_perm: usize,
    ngram: usize,
    bands: Option<usize>,
    verify: bool,
    seed: u64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let config = DedupConfig {
        threshold,
        num_perm,
        ngram,
        bands,
        verify,
        seed,
        threads,
    };
    let column = text_column_arg("texts", texts)?;
    let features = on_threads(py, threads, || {
        livo_data::dedup::block_features(&column, &config)
    })?
    .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("hash_high", features.hash_high.into_pyarray(py))?;
    d.set_item("hash_low", features.hash_low.into_pyarray(py))?;
    d.set_item("empty", features.empty.into_pyarray(py))?;
    d.set_item("band_hashes", features.band_hashes.into_pyarray(py))?;
    d.set_item("bands", features.lsh.bands)?;
    d.set_item("rows_per_band", features.lsh.rows)?;
    Ok(d)
}

/// For each pair `(left[i], right[i])` of Arrow string arrays, whether the Jaccard similarity of the
/// normalised texts' character n-gram sets reaches `threshold` (dedup's verification step).
#[pyfunction]
#[pyo3(signature = (left, right, *, ngram=5, threshold=0.8, threads=None))]
fn dedup_verify_pairs<'py>(
    py: Python<'py>,
    left: &Bound<'py, PyAny>,
    right: &Bound<'py, PyAny>,
    ngram: usize,
    threshold: f64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let (left, right) = (
        text_column_arg("left", left)?,
        text_column_arg("right", right)?,
    );
    if left.len() != right.len() {
        return Err(PyValueError::new_err(format!(
            "left and right: lengths differ ({} and {})",
            left.len(),
            right.len()
        )));
    }
    if ngram == 0 {
        return Err(PyValueError::new_err("ngram: must be at least 1"));
    }
    let verdicts = on_threads(py, threads, || {
        livo_data::dedup::verify_pairs(&left, &right, ngram, threshold)
    })?;
    Ok(verdicts.into_pyarray(py))
}

type NodeRoots<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Connected components of the edges `(a[i], b[i])` (int64 arrays): the nodes in edges, sorted, and
/// each one's smallest connected node.
#[pyfunction]
fn dedup_components<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, i64>,
    b: PyReadonlyArray1<'py, i64>,
) -> PyResult<NodeRoots<'py>> {
    let (a, b) = (a.as_slice()?.to_vec(), b.as_slice()?.to_vec());
    if a.len() != b.len() {
        return Err(PyValueError::new_err(format!(
            "a and b: lengths differ ({} and {})",
            a.len(),
            b.len()
        )));
    }
    let (nodes, roots) = py.detach(|| livo_data::dedup::components(&a, &b));
    Ok((nodes.into_pyarray(py), roots.into_pyarray(py)))
}

/// Reads a UTF-8 text file as a list of lines; invalid UTF-8 raises with the line number.
#[pyfunction]
fn read_text_lines(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Vec<String>> {
    py.detach(|| livo_data::text_file::read_lines(&path))
        .map_err(to_py)
}

/// The normalised form of one text (what deduplication compares).
#[pyfunction]
fn normalize(text: &str) -> String {
    livo_data::normalize(text)
}

/// LSH (bands, rows) chosen for a threshold and number of permutations, with or without verification.
#[pyfunction]
#[pyo3(signature = (threshold, num_perm, verify=true))]
fn lsh_params(threshold: f64, num_perm: usize, verify: bool) -> PyResult<(usize, usize)> {
    let config = DedupConfig {
        threshold,
        num_perm,
        verify,
        ..DedupConfig::default()
    };
    let p = config.lsh_params().map_err(to_py)?;
    Ok((p.bands, p.rows))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The cluster stage of `dedup --ray` proposes the same candidate pairs as the engine.
    m.add("DEDUP_ALL_PAIRS_BUCKET", livo_data::dedup::ALL_PAIRS_BUCKET)?;
    m.add_function(wrap_pyfunction!(dedup, m)?)?;
    m.add_function(wrap_pyfunction!(read_text_lines, m)?)?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_params, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_block_features, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_verify_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_components, m)?)?;
    Ok(())
}
