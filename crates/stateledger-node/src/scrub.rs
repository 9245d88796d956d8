//! Background scrubbing: stored data is re-read and checked all the time, not only at start and
//! when a client asks for it, so that bit rot in data nobody reads is found while the other
//! nodes still hold good copies.
//!
//! One pass checks the checksum of every value in the ledger's storage (leaf blocks, published
//! checkpoints, metadata) and every record of the Raft log file, read back from storage; it is
//! rate-limited to `storage.scrub_bytes_per_second` and passes are `storage.scrub_pause_ms`
//! apart. What it finds is handled like the same finding on a read: corrupt ledger values are
//! reported in the status and never served; damage to the Raft log file, or the storage engine
//! failing, stops the node (exit status 3), which then repairs when restarted
//! (`crate::recovery`). Progress is in the node's status (`scrub_passes`, `scrub_bytes`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::StorageSection;
use crate::ledger::Ledger;
use crate::store::wal::WalKv;
use crate::store::{describe_key, StoreError, Tree};

/// Ledger keys read per step.
const KEYS_PER_STEP: usize = 256;

/// What scrubbing has done so far.
#[derive(Debug, Default)]
pub struct ScrubStats {
    passes: AtomicU64,
    bytes: AtomicU64,
    last_pass_unix_ms: AtomicU64,
    problems: AtomicU64,
}

impl ScrubStats {
    /// Completed passes.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
    /// Bytes checked, all passes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// When the last pass completed (ms since the Unix epoch; 0: none yet).
    pub fn last_pass_unix_ms(&self) -> u64 {
        self.last_pass_unix_ms.load(Ordering::Relaxed)
    }
    /// Corrupt values and damaged records found, all passes.
    pub fn problems(&self) -> u64 {
        self.problems.load(Ordering::Relaxed)
    }
}

/// What scrubbing needs of the node, and nothing more.
pub struct Scrubber {
    /// The rate and the pause between passes.
    pub storage: StorageSection,
    /// The ledger's storage, read and checked; corruption found is noted on the ledger.
    pub ledger: Arc<Ledger>,
    /// The Raft log file, read back whole.
    pub wal: WalKv,
    /// Where progress is counted (shown in the node's status).
    pub stats: Arc<ScrubStats>,
    pub clock: Clock,
    /// Stops the node as corrupt, with why: the Raft log file is damaged.
    pub stop: Box<dyn Fn(String) + Send + Sync>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

/// Sleeps long enough that `bytes` took `rate` per second; false on shutdown.
async fn pace(bytes: u64, rate: u64, shutdown: &mut watch::Receiver<bool>) -> bool {
    let wait = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}

/// Scrubs until shutdown (see the module comment).
pub async fn run(scrubber: Scrubber, mut shutdown: watch::Receiver<bool>) {
    let storage = &scrubber.storage;
    if storage.scrub_bytes_per_second == 0 {
        return;
    }
    let rate = storage.scrub_bytes_per_second;
    let stats = &scrubber.stats;
    loop {
        // The ledger: every stored value's checksum.
        let store = scrubber.ledger.store().clone();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let raw = match store.backend(Tree::Ledger).scan(
                Tree::Ledger,
                &from,
                &[0xff; 16],
                KEYS_PER_STEP,
            ) {
                Ok(rows) => rows,
                Err(e) => {
                    scrubber.ledger.note_corruption(&StoreError::Kv(e));
                    break;
                }
            };
            let Some((last, _)) = raw.last() else { break };
            let mut bytes = 0u64;
            for (key, value) in &raw {
                bytes += (key.len() + value.len()) as u64;
                if let Err(e) = crate::store::open_value(Tree::Ledger, key, value.clone()) {
                    stats.problems.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(key = %describe_key(key), error = %e, "scrub: a stored ledger value is corrupt");
                    scrubber.ledger.note_corruption(&e);
                }
            }
            from = last.clone();
            from.push(0);
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            if !pace(bytes, rate, &mut shutdown).await {
                return;
            }
        }
        // The Raft log file, read back whole.
        match scrubber.wal.scrub() {
            Ok(bytes) => {
                stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                if !pace(bytes, rate, &mut shutdown).await {
                    return;
                }
            }
            Err(damage) => {
                stats.problems.fetch_add(1, Ordering::Relaxed);
                (scrubber.stop)(format!(
                    "scrub: {damage}; restart the node to repair it from the cluster"
                ));
                return;
            }
        }
        stats.passes.fetch_add(1, Ordering::Relaxed);
        stats.last_pass_unix_ms.store(
            scrubber.clock.now_unix_nanos() / 1_000_000,
            Ordering::Relaxed,
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(storage.scrub_pause_ms)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
