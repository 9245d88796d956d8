//! The invariants, one file each. The checker runs them continuously (every check interval of
//! the safety and liveness phases) and once more at the end over every leaf of every node.
//! `reconstruction` needs gRPC round trips and runs from the liveness phase instead.
//!
//! Each invariant sees leaves as the [`LeafFeed`] hands them out (once per node incarnation, in
//! index order) and the whole observed state at each check. A violation carries the evidence.

use std::time::Duration;

use stateledger_core::leaf::{Leaf, LeafError};
use stateledger_core::trust::TrustPolicy;

use crate::cluster::Cluster;
use crate::history::{History, Violation};
use crate::world::{LeafFeed, NodeView};

pub mod acknowledged_records;
pub mod consistent_checkpoints;
pub mod corruption_contained;
pub mod identical_prefixes;
pub mod monotone_time;
pub mod no_phantom_records;
pub mod no_unsigned_proposals;
pub mod reconstruction;
pub mod repair_after_loss;
pub mod served_proofs_verify;
pub mod unique_checkpoint_roots;
pub mod valid_leaf_signatures;

/// What every invariant may look at.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub history: &'a History,
    pub policy: &'a TrustPolicy,
    pub cluster: &'a Cluster,
    /// Simulated time since the run started.
    pub at: Duration,
}

/// One leaf as stored by one node.
#[derive(Debug)]
pub struct StoredLeaf<'a> {
    pub index: u64,
    pub bytes: &'a [u8],
    pub leaf: &'a Result<Leaf, LeafError>,
}

/// An invariant. Every method returns the violations it found (usually none).
pub trait Invariant {
    /// The file name under `invariants/`.
    fn name(&self) -> &'static str;

    /// The node's leaves restart from 0 (it restarted or installed a snapshot).
    fn reset_node(&mut self, _node: usize) {}

    fn on_leaf(&mut self, _ctx: &Ctx<'_>, _node: &NodeView, _leaf: &StoredLeaf<'_>) -> Vec<String> {
        Vec::new()
    }

    fn on_check(&mut self, _ctx: &Ctx<'_>, _nodes: &[NodeView]) -> Vec<String> {
        Vec::new()
    }

    /// After the liveness phase, with `nodes` the members that must have converged.
    fn at_end(&mut self, _ctx: &Ctx<'_>, _nodes: &[NodeView]) -> Vec<String> {
        Vec::new()
    }
}

/// Runs every invariant.
pub struct Checker {
    invariants: Vec<Box<dyn Invariant>>,
    feed: LeafFeed,
    /// Violations the workload reported that were already returned.
    history_reported: usize,
    /// Leaves checked, for the report.
    pub leaves_checked: u64,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checker({} invariants)", self.invariants.len())
    }
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    pub fn new() -> Checker {
        Checker {
            invariants: vec![
                Box::new(acknowledged_records::AcknowledgedRecords::default()),
                Box::new(no_phantom_records::NoPhantomRecords::default()),
                Box::new(identical_prefixes::IdenticalPrefixes::default()),
                Box::new(unique_checkpoint_roots::UniqueCheckpointRoots::default()),
                Box::new(consistent_checkpoints::ConsistentCheckpoints::default()),
                Box::new(monotone_time::MonotoneTime::default()),
                Box::new(valid_leaf_signatures::ValidLeafSignatures),
                Box::new(no_unsigned_proposals::NoUnsignedProposals::default()),
                Box::new(corruption_contained::CorruptionContained::default()),
                Box::new(repair_after_loss::RepairAfterLoss::default()),
            ],
            feed: LeafFeed::default(),
            history_reported: 0,
            leaves_checked: 0,
        }
    }

    /// One continuous check: new leaves of every node, then every invariant's state check.
    pub fn check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<Violation> {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        for node in nodes {
            let new = self.feed.next(node);
            if new.reset {
                for inv in &mut self.invariants {
                    inv.reset_node(node.index);
                }
            }
            for (index, error) in &new.unreadable {
                found.extend(corruption_contained::unreadable_leaf(node, *index, error));
            }
            for (index, bytes) in &new.leaves {
                let leaf = Leaf::decode(bytes);
                let stored = StoredLeaf {
                    index: *index,
                    bytes,
                    leaf: &leaf,
                };
                self.leaves_checked += 1;
                for inv in &mut self.invariants {
                    let name = inv.name();
                    found.extend(
                        inv.on_leaf(ctx, node, &stored)
                            .into_iter()
                            .map(|m| (name, m)),
                    );
                }
            }
        }
        for inv in &mut self.invariants {
            let name = inv.name();
            found.extend(inv.on_check(ctx, nodes).into_iter().map(|m| (name, m)));
        }
        let mut violations: Vec<Violation> =
            ctx.history.violations[self.history_reported..].to_vec();
        self.history_reported = ctx.history.violations.len();
        violations.extend(found.into_iter().map(|(invariant, message)| Violation {
            invariant,
            message,
            at: ctx.at,
        }));
        violations
    }

    /// The final check: every leaf of every node again, then every invariant's end check over
    /// the members that must have converged.
    pub fn finish(
        &mut self,
        ctx: &Ctx<'_>,
        nodes: &[NodeView],
        converged: &[NodeView],
    ) -> Vec<Violation> {
        self.feed.rescan();
        for inv in &mut self.invariants {
            for node in nodes {
                inv.reset_node(node.index);
            }
        }
        let mut violations = Vec::new();
        // The feed reads a bounded number of leaves per call; drain it.
        loop {
            let before = self.leaves_checked;
            violations.extend(self.check(ctx, nodes));
            if self.leaves_checked == before {
                break;
            }
        }
        for inv in &mut self.invariants {
            let name = inv.name();
            violations.extend(
                inv.at_end(ctx, converged)
                    .into_iter()
                    .map(|message| Violation {
                        invariant: name,
                        message,
                        at: ctx.at,
                    }),
            );
        }
        violations
    }
}
