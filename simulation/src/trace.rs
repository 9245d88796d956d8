//! The run's trace: what the harness did and saw, stamped with simulated time. Two runs of one
//! seed must produce identical traces (`tests/determinism.rs`); a failure prints the tail.

use std::sync::{Arc, Mutex};

use madsim::time::Instant;

/// Shared, append-only trace of one run.
#[derive(Clone, Debug)]
pub struct Trace {
    inner: Arc<Mutex<Vec<String>>>,
    start: Instant,
    echo: bool,
}

impl Trace {
    /// Starts a trace at the current simulated instant.
    pub fn new(echo: bool) -> Trace {
        Trace {
            inner: Arc::new(Mutex::new(Vec::new())),
            start: Instant::now(),
            echo,
        }
    }

    /// Simulated time since the run started.
    pub fn elapsed(&self) -> std::time::Duration {
        Instant::now().duration_since(self.start)
    }

    pub fn log(&self, line: impl AsRef<str>) {
        let line = format!("{:>10.3}s {}", self.elapsed().as_secs_f64(), line.as_ref());
        if self.echo {
            eprintln!("{line}");
        }
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// BLAKE3 of every line, as hex: equal traces have equal digests.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for line in self.lines() {
            h.update(line.as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex().to_string()
    }
}
