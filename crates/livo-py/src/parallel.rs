//! Whether calls may use rayon's global pool.
//!
//! The pool's threads do not survive `fork()`: in a forked child (multiprocessing's default start
//! method on Linux, DataLoader workers) a pool the parent had started still looks alive, and a
//! parallel call would wait forever for threads that are gone. In a child forked from this process,
//! the robust-text batches run on the calling thread, as tokenizers' do (they are short), and the
//! heavy calls (dedup, shard writing and verification) on a fresh pool built for the call (see
//! [`in_working_pool`]); processes started afresh (spawn, Ray's workers) are not affected.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict};

static FORKED: AtomicBool = AtomicBool::new(false);

/// False in a process forked from one that loaded the extension.
pub fn allowed() -> bool {
    !FORKED.load(Ordering::Relaxed)
}

/// Runs `work` where rayon's parallel calls inside it have threads to run on: rayon's global pool,
/// or, in a forked child, a fresh pool as wide as the machine, built for this call (the global
/// pool's threads stayed behind in the parent).
pub fn in_working_pool<T: Send>(work: impl FnOnce() -> T + Send) -> PyResult<T> {
    if allowed() {
        return Ok(work());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map(|pool| pool.install(work))
        .map_err(|e| PyRuntimeError::new_err(format!("could not start worker threads: {e}")))
}

/// Registers the fork hook with Python (`os.register_at_fork`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let in_child = PyCFunction::new_closure(py, Some(c"_rayon_off_after_fork"), None, |_, _| {
        FORKED.store(true, Ordering::Relaxed);
    })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", in_child)?;
    py.import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
}
