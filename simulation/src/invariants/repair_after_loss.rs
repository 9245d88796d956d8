//! **A node repairs exactly when it lost state.** A node whose synced state was lost in a way it
//! can see (a deleted, truncated or rolled-back Raft log, a deleted ledger) starts in repair mode:
//! it must not vote or cosign until it has caught up (`recovery.rs`, `repair.rs`). And a node that
//! lost nothing — no state-loss fault, no flipped bit — never starts in repair mode (except as a
//! brand-new node): a false alarm would take a healthy voter out of every quorum.
//!
//! What the node must *not* do while repairing (vote, cosign) is judged by its effects, through
//! the other invariants (acknowledged records, unique checkpoint roots); this file checks the
//! decision itself.

use std::collections::BTreeSet;

use super::{Ctx, Invariant};
use crate::world::NodeView;

pub const NAME: &str = "repair_after_loss";

#[derive(Debug, Default)]
pub struct RepairAfterLoss {
    /// (server, incarnation) already judged.
    judged: BTreeSet<(usize, u64)>,
}

impl Invariant for RepairAfterLoss {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            if !self.judged.insert((node.index, node.incarnation)) {
                continue;
            }
            let server = &ctx.cluster.servers[node.index];
            let began = node.shared.repair.began_with();
            if let Some(r) = began.filter(|r| !r.new_node) {
                if server.losses.is_empty() && !server.corrupted {
                    out.push(format!(
                        "{} (start {}) repairs although no fault touched its storage: {}",
                        node.name, node.incarnation, r.reason
                    ));
                }
            }
            if let Some((from, what)) = &server.must_detect {
                // Only the first start after the loss can be judged: a later one may follow a
                // repair that already ended.
                if node.incarnation == *from && began.is_none_or(|r| r.new_node) {
                    out.push(format!(
                        "{} lost synced state ({what}) but started without repairing",
                        node.name
                    ));
                }
            }
        }
        out
    }
}
