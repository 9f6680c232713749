//! Python bindings of livo-data, importable as `livo._native`. Private: the typed public API lives
//! in the `livo` Python package.

mod dedup;
mod errors;
mod progress;
mod shards;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    dedup::register(m)?;
    shards::register(m)?;
    Ok(())
}
