//! **Corruption stays where it was injected, and nothing else breaks a node.** Only the server
//! whose stored bit was flipped may find corrupt data, answer DATA_LOSS, refuse to start, flag
//! itself corrupt or stop Raft with a fatal error. Any of these on another server is a bug (a
//! storage error, a panic-free crash of the Raft core, or a real divergence the node noticed).

use stateledger_node::ledger::ReadError;

use super::{Ctx, Invariant};
use crate::world::NodeView;

pub const NAME: &str = "corruption_contained";

#[derive(Debug, Default)]
pub struct CorruptionContained {
    data_loss_seen: usize,
}

/// A leaf below the node's size that the checker could not read (a failed checksum, or a leaf
/// missing from the store).
pub fn unreadable_leaf(
    node: &NodeView,
    index: u64,
    error: &ReadError,
) -> Option<(&'static str, String)> {
    (!node.corrupted).then(|| {
        (
            NAME,
            format!(
                "leaf {index} on {} cannot be read although no fault touched its storage: {error}",
                node.name
            ),
        )
    })
}

impl Invariant for CorruptionContained {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for report in &ctx.history.data_loss[self.data_loss_seen..] {
            let corrupted = ctx
                .cluster
                .servers
                .iter()
                .any(|s| s.public_addr == report.addr && s.corrupted);
            if !corrupted {
                out.push(format!(
                    "{} answered DATA_LOSS although no fault touched its storage: {}",
                    report.addr, report.message
                ));
            }
        }
        self.data_loss_seen = ctx.history.data_loss.len();
        for node in nodes.iter().filter(|n| !n.corrupted) {
            if let Some(reason) = node.shared.ledger.corruption() {
                out.push(format!("{} flags itself corrupt: {reason}", node.name));
            }
            let running = node.shared.raft.metrics().borrow().running_state.clone();
            if let Err(fatal) = running {
                out.push(format!("{}'s Raft stopped: {fatal}", node.name));
            }
        }
        for s in ctx
            .cluster
            .servers
            .iter()
            .filter(|s| !s.corrupted && !s.is_down())
        {
            if let Some(e) = s.start_failure() {
                out.push(format!("{} failed to start: {e}", s.name));
            }
        }
        out
    }
}
