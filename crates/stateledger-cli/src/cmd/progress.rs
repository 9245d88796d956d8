//! Progress for anything that can take more than a second: a spinner saying what is awaited, or
//! a bar with a count. Drawn on standard error only when it is a terminal (indicatif hides it
//! otherwise), so pipes, files and tests see nothing of it.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a wait runs before its spinner appears (quick answers show nothing).
const SHOW_AFTER: Duration = Duration::from_millis(400);

/// A spinner or a bar on standard error; cleared when dropped.
#[derive(Debug)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A spinner with a message, ticking on its own.
    pub fn spinner(message: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    /// A bar of `len` steps.
    pub fn bar(len: u64, message: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({elapsed}, about {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        Progress(bar)
    }

    pub fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }

    pub fn set_position(&self, pos: u64) {
        self.0.set_position(pos);
    }

    pub fn inc(&self) {
        self.0.inc(1);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Awaits `work`, showing a spinner with `message` if it takes longer than [`SHOW_AFTER`].
pub async fn spinner_while<T>(message: &str, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    tokio::select! {
        v = &mut work => return v,
        () = tokio::time::sleep(SHOW_AFTER) => {}
    }
    let _spinner = Progress::spinner(message);
    work.await
}
