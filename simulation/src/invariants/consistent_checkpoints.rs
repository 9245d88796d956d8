//! **Every pair of checkpoints a client saw is consistency-provable**: the older one's tree is a
//! prefix of the newer one's. Clients check the proofs nodes serve them as they go
//! (`served_proofs_verify`); here the checker proves each neighbouring pair (by size) of every
//! checkpoint clients saw from a node's ledger, which by transitivity covers every pair.

use std::collections::{BTreeMap, BTreeSet};

use stateledger_core::hash::Hash;
use stateledger_core::merkle::{verify_consistency, TreeSize};

use super::{Ctx, Invariant};
use crate::world::NodeView;

pub const NAME: &str = "consistent_checkpoints";

#[derive(Debug, Default)]
pub struct ConsistentCheckpoints {
    /// Pairs of sizes (old, new) already proven.
    proven: BTreeSet<(u64, u64)>,
}

/// Distinct client-seen checkpoints by size: size → (root, who served it).
fn by_size(ctx: &Ctx<'_>) -> BTreeMap<u64, (Hash, String)> {
    let mut m = BTreeMap::new();
    for cp in &ctx.history.checkpoints {
        m.entry(cp.size).or_insert((cp.root, cp.from.clone()));
    }
    m
}

impl ConsistentCheckpoints {
    fn prove(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView], at_end: bool) -> Vec<String> {
        let sizes = by_size(ctx);
        let mut out = Vec::new();
        let pairs: Vec<_> = sizes.iter().zip(sizes.iter().skip(1)).collect();
        for ((old, (old_root, old_from)), (new, (new_root, new_from))) in pairs {
            if self.proven.contains(&(*old, *new)) {
                continue;
            }
            let mut proven = false;
            for node in nodes.iter().filter(|n| !n.corrupted && n.size >= *new) {
                let Ok(proof) = node.shared.ledger.consistency_proof(*old, *new) else {
                    continue;
                };
                if let Err(e) =
                    verify_consistency(TreeSize(*old), TreeSize(*new), &proof, old_root, new_root)
                {
                    out.push(format!(
                        "checkpoint of size {old} (from {old_from}) is not a prefix of checkpoint of size {new} (from {new_from}) by {}'s ledger: {e}",
                        node.name
                    ));
                }
                proven = true;
                break;
            }
            if proven {
                self.proven.insert((*old, *new));
            } else if at_end {
                out.push(format!(
                    "no healed member could prove checkpoint of size {old} consistent with size {new}"
                ));
            }
        }
        out
    }
}

impl Invariant for ConsistentCheckpoints {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        self.prove(ctx, nodes, false)
    }

    fn at_end(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        self.prove(ctx, nodes, true)
    }
}
