//! **Identical leaves and roots at equal sizes.** Whatever two nodes hold at index i is the same
//! leaf, and whenever any two nodes (at any two times) had the same size, they had the same root.
//! Checked against the first observation of each index and each size, so nodes need not be at
//! the same size at the same moment.

use std::collections::BTreeMap;

use stateledger_core::hash::{leaf_hash, Hash};

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "identical_prefixes";

#[derive(Debug, Default)]
pub struct IdenticalPrefixes {
    /// Index → (leaf hash, the node it was first seen on).
    leaves: BTreeMap<u64, (Hash, String)>,
    /// Size → (root, the node it was first seen on).
    roots: BTreeMap<u64, (Hash, String)>,
}

impl Invariant for IdenticalPrefixes {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_leaf(&mut self, _ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let lh = leaf_hash(leaf.bytes);
        let (first, on) = self
            .leaves
            .entry(leaf.index)
            .or_insert_with(|| (lh, node.name.clone()));
        if *first != lh {
            return vec![format!(
                "leaf {} differs: {on} holds leaf hash {first}, {} holds {lh}",
                leaf.index, node.name
            )];
        }
        Vec::new()
    }

    fn on_check(&mut self, _ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            let (first, on) = self
                .roots
                .entry(node.size)
                .or_insert_with(|| (node.root, node.name.clone()));
            if *first != node.root {
                out.push(format!(
                    "root at size {} differs: {on} had {first}, {} has {}",
                    node.size, node.name, node.root
                ));
            }
        }
        out
    }

    fn at_end(&mut self, _ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        // Converged members: same size and root (liveness waited for it; check it held).
        let mut out = Vec::new();
        if let Some(first) = nodes.first() {
            for node in &nodes[1..] {
                if (node.size, node.root) != (first.size, first.root) {
                    out.push(format!(
                        "after healing {} has size {} root {} but {} has size {} root {}",
                        first.name, first.size, first.root, node.name, node.size, node.root
                    ));
                }
            }
        }
        out
    }
}
