//! The time seam. Ledger times come from the leader's clock; the simulation skews and jumps
//! per-node clocks through [`Clock::adjust`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in nanoseconds since the Unix epoch, plus an adjustable skew. Under madsim,
/// `SystemTime` itself is simulated.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew_nanos: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Clock {
        Clock::default()
    }

    pub fn now_unix_nanos(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let skew = self.skew_nanos.load(Ordering::Relaxed);
        if skew >= 0 {
            now.saturating_add(skew as u64)
        } else {
            now.saturating_sub(skew.unsigned_abs())
        }
    }

    /// Shifts this clock by `delta` nanoseconds (simulated skew or jump).
    pub fn adjust(&self, delta_nanos: i64) {
        self.skew_nanos.fetch_add(delta_nanos, Ordering::Relaxed);
    }
}
