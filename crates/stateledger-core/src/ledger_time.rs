//! Ledger time: nanoseconds since the Unix epoch (UTC), assigned by the ledger, strictly
//! increasing along the log.

use std::fmt;

/// A ledger timestamp in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LedgerTime(pub u64);

impl LedgerTime {
    /// The time the state machine gives the next leaf: strictly after the previous leaf and the
    /// ledger clock, and no earlier than the leader's proposal (`ts_i = max(clock + 1, proposed)`).
    pub fn next_after(clock: LedgerTime, proposed: LedgerTime) -> LedgerTime {
        LedgerTime(clock.0.saturating_add(1).max(proposed.0))
    }
}

impl fmt::Debug for LedgerTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LedgerTime({})", self.0)
    }
}

impl fmt::Display for LedgerTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
