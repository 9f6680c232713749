//! Whether batched calls may use rayon's global pool.
//!
//! The pool's threads do not survive `fork()`: in a forked child (multiprocessing's default start
//! method on Linux, DataLoader workers) a pool the parent had started still looks alive, and a
//! parallel call would wait forever for threads that are gone. As in tokenizers, a child forked
//! from this process runs batched calls on its calling thread instead; processes started afresh
//! (spawn, Ray's workers) are not affected.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict};

static FORKED: AtomicBool = AtomicBool::new(false);

/// False in a process forked from one that loaded the extension.
pub fn allowed() -> bool {
    !FORKED.load(Ordering::Relaxed)
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
