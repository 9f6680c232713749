//! Running engine calls with the GIL released, a progress bar on stderr, and Ctrl-C honoured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use livo_data::Progress;
use pyo3::prelude::*;

use crate::parallel;

/// A bar that engine stages drive, plus the cancellation flag Ctrl-C sets.
pub struct Bar {
    bar: ProgressBar,
    cancel: AtomicBool,
}

impl Bar {
    pub fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        Self {
            bar,
            cancel: AtomicBool::new(false),
        }
    }
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.bar.reset();
        self.bar.set_length(total);
        self.bar.set_message(name.to_owned());
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Runs `work` on a helper thread with the GIL released. The calling thread wakes every 50 ms to
/// let Python handle signals; on Ctrl-C the engine is asked to stop and the KeyboardInterrupt is
/// raised once it has.
pub fn run_interruptible<T: Send>(
    py: Python<'_>,
    bar: &Bar,
    work: impl FnOnce(&Bar) -> T + Send,
) -> PyResult<T> {
    py.detach(|| {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| parallel::in_working_pool(|| work(bar)));
            let mut interrupt = None;
            while !handle.is_finished() {
                std::thread::sleep(Duration::from_millis(50));
                if interrupt.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        bar.cancel.store(true, Ordering::Relaxed);
                        interrupt = Some(e);
                    }
                }
            }
            let result = handle.join().expect("engine thread panicked");
            match interrupt {
                Some(e) => Err(e),
                None => result,
            }
        })
    })
}
