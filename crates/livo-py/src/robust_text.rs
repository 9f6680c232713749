//! `normalize_robust` and `KeywordMatcher` bindings: the keyword stage of value selection.

use livo_data::robust_text::{normalize_robust_batch, KeywordMatcher as Matcher, KeywordOptions};
use livo_data::DataError;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use crate::errors::to_py;
use crate::parallel;

/// The texts of a list, borrowed from the Python strings (no copy). A str that cannot be encoded
/// (a lone surrogate) keeps Python's own UnicodeEncodeError.
fn borrow_texts(texts: &Bound<'_, PyAny>) -> PyResult<Vec<PyBackedStr>> {
    texts.extract().map_err(|e: PyErr| {
        if e.is_instance_of::<PyTypeError>(texts.py()) {
            PyTypeError::new_err(format!(
                "texts: expected a list of str, got {}",
                type_name(texts)
            ))
        } else {
            e
        }
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |n| n.to_string())
}

/// One hit as Python sees it: (group, term as written, matched words, edit distance).
type Hit = (usize, String, String, usize);

/// The robust normal form of each text (the GIL is released; large batches run in parallel).
#[pyfunction]
fn normalize_robust(py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let texts = borrow_texts(texts)?;
    let parallel = parallel::allowed();
    Ok(py.detach(|| normalize_robust_batch(&texts, parallel)))
}

/// Groups of keyword terms matched on the robust normal form (see livo-data's `robust_text`).
#[pyclass(name = "KeywordMatcher", module = "livo._native", frozen)]
struct KeywordMatcher {
    matcher: Matcher,
}

#[pymethods]
impl KeywordMatcher {
    #[new]
    #[pyo3(signature = (groups, exceptions, protected, fuzzy_min_len=5, fuzzy2_min_len=8))]
    fn new(
        py: Python<'_>,
        groups: Vec<Vec<String>>,
        exceptions: Vec<Vec<String>>,
        protected: Vec<String>,
        fuzzy_min_len: i64,
        fuzzy2_min_len: i64,
    ) -> PyResult<Self> {
        let options = KeywordOptions {
            fuzzy_min_len: length("fuzzy_min_len", fuzzy_min_len)?,
            fuzzy2_min_len: length("fuzzy2_min_len", fuzzy2_min_len)?,
        };
        let matcher = py
            .detach(|| Matcher::new(&groups, &exceptions, &protected, options))
            .map_err(to_py)?;
        Ok(Self { matcher })
    }

    /// Per text, one (group, term as written, matched words, edit distance) per group it mentions.
    fn match_batch(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Hit>>> {
        let texts = borrow_texts(texts)?;
        let parallel = parallel::allowed();
        let hits = py.detach(|| self.matcher.match_batch(&texts, parallel));
        Ok(hits
            .into_iter()
            .map(|row| {
                let row = row.into_iter();
                row.map(|h| (h.group, h.term, h.matched, h.distance))
                    .collect()
            })
            .collect())
    }

    /// Number of groups.
    #[getter]
    fn group_count(&self) -> usize {
        self.matcher.groups()
    }
}

fn length(name: &'static str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| to_py(DataError::parameter(name, value, "must not be negative")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(normalize_robust, m)?)?;
    m.add_class::<KeywordMatcher>()?;
    Ok(())
}
