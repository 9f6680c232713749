//! Progress reporting and cancellation hooks for long engine calls.
//!
//! The engine knows nothing of terminals or Python: callers pass an implementation that draws a
//! bar, and can ask a running call to stop (e.g. on Ctrl-C) through `cancelled`.

pub trait Progress: Sync {
    /// A new stage starts with `total` units of work.
    fn stage(&self, _name: &str, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn advance(&self, _n: u64) {}
    /// True when the caller wants the call to stop as soon as possible.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing and never cancels.
pub struct Silent;

impl Progress for Silent {}
