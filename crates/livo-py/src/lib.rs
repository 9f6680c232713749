//! Python bindings of livo-data, importable as `livo._native`. Private: the typed public API lives
//! in the `livo` Python package.

mod dedup;
mod errors;
mod parallel;
mod progress;
mod robust_text;
mod shards;

use pyo3::prelude::*;

/// The extension's Rust allocator. With glibc's malloc the Parquet encoder's megabyte page buffers
/// went back to the system after every row group (the worker threads' arenas are trimmed) and were
/// faulted in, zeroed, again for the next: a third of the CPU time of writing shards was page
/// faults. jemalloc keeps freed pages for reuse. Python's own allocations are not affected (the
/// extension's jemalloc symbols are prefixed).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    dedup::register(m)?;
    shards::register(m)?;
    robust_text::register(m)?;
    parallel::register(m)?;
    Ok(())
}
