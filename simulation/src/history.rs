//! The client oracle: what clients sent, what they were told, and which checkpoints they saw.
//! Invariants judge the cluster against it; it never looks inside a node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use stateledger_core::hash::Hash;

/// A broken invariant, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's file name under `invariants/`.
    pub invariant: &'static str,
    pub message: String,
    /// Simulated time since the run started.
    pub at: Duration,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] at {:.3}s: {}",
            self.invariant,
            self.at.as_secs_f64(),
            self.message
        )
    }
}

/// What a client was told about one record: it is at a leaf index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub record_hash: [u8; 32],
    /// The leaf hash the leader answered with (absent when learned from ALREADY_EXISTS).
    pub leaf_hash: Option<Hash>,
    pub client: String,
}

/// A quorum-signed checkpoint some client saw (already verified against the trust policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub heads_root: Hash,
    pub time: u64,
    pub note: String,
    /// Who served it.
    pub from: String,
}

/// A node's answer that said its stored data is corrupt (DATA_LOSS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLossReport {
    pub addr: String,
    pub message: String,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct History {
    /// BLAKE3 of every record bytes any client ever sent (acknowledged or not).
    pub submitted: HashSet<[u8; 32]>,
    /// BLAKE3 of the record bytes a client sent with a broken signature (only with the
    /// `unsigned-record-accepted` switch): none may ever be acknowledged or stored.
    pub forged: std::collections::BTreeSet<[u8; 32]>,
    /// Leaf index → the acknowledged record there.
    pub acked: BTreeMap<u64, Ack>,
    /// Record hash → its acknowledged index.
    pub acked_by_record: HashMap<[u8; 32], u64>,
    /// Distinct checkpoint notes clients saw, in the order they were seen.
    pub checkpoints: Vec<SeenCheckpoint>,
    seen_notes: HashSet<String>,
    pub data_loss: Vec<DataLossReport>,
    /// Violations found by the workload itself (bad proofs, conflicting acknowledgments).
    pub violations: Vec<Violation>,
    /// Operation counts by outcome, for the report.
    pub counters: BTreeMap<String, u64>,
}

impl History {
    pub fn count(&mut self, what: impl Into<String>) {
        *self.counters.entry(what.into()).or_default() += 1;
    }

    /// Records an acknowledgment; two different records acknowledged at one index, or one record
    /// at two indexes, is a lost write and a violation at once.
    pub fn ack(&mut self, index: u64, ack: Ack, at: Duration) {
        if let Some(other) = self.acked_by_record.get(&ack.record_hash) {
            if *other != index {
                self.violations.push(Violation {
                    invariant: "acknowledged_records",
                    message: format!(
                        "record {} was acknowledged at leaf {other} and again at leaf {index}",
                        hex::encode(&ack.record_hash[..8])
                    ),
                    at,
                });
            }
        }
        match self.acked.get(&index) {
            Some(existing) if existing.record_hash != ack.record_hash => {
                self.violations.push(Violation {
                    invariant: "acknowledged_records",
                    message: format!(
                        "leaf {index} was acknowledged to {} for record {} and to {} for record {}",
                        existing.client,
                        hex::encode(&existing.record_hash[..8]),
                        ack.client,
                        hex::encode(&ack.record_hash[..8])
                    ),
                    at,
                });
            }
            Some(existing) => {
                if let (Some(a), Some(b)) = (existing.leaf_hash, ack.leaf_hash) {
                    if a != b {
                        self.violations.push(Violation {
                            invariant: "acknowledged_records",
                            message: format!(
                                "leaf {index} was acknowledged with leaf hash {a} and later {b}"
                            ),
                            at,
                        });
                    }
                }
                if existing.leaf_hash.is_none() && ack.leaf_hash.is_some() {
                    self.acked.insert(index, ack);
                }
            }
            None => {
                self.acked_by_record.insert(ack.record_hash, index);
                self.acked.insert(index, ack);
            }
        }
    }

    /// Remembers a verified checkpoint; returns whether it was new.
    pub fn saw_checkpoint(&mut self, cp: SeenCheckpoint) -> bool {
        if !self.seen_notes.insert(cp.note.clone()) {
            return false;
        }
        self.checkpoints.push(cp);
        true
    }

    pub fn violate(&mut self, invariant: &'static str, message: String, at: Duration) {
        self.violations.push(Violation {
            invariant,
            message,
            at,
        });
    }
}

/// The history shared by the client tasks and the checker.
#[derive(Clone, Debug, Default)]
pub struct SharedHistory(Arc<Mutex<History>>);

impl SharedHistory {
    pub fn lock(&self) -> MutexGuard<'_, History> {
        // A panic while holding it already failed the run.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
