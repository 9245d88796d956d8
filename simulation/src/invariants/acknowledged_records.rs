//! **No acknowledged record is ever lost.** When a client was told "your record is leaf i", then
//! leaf i of every node that holds i leaves carries exactly that record (and the leaf hash the
//! client was given), and after the liveness phase every member holds it.

use std::collections::{BTreeMap, BTreeSet};

use stateledger_core::hash::{leaf_hash, Hash};

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "acknowledged_records";

/// First leaf content seen at each index: (record hash, leaf hash, node).
#[derive(Debug, Default)]
pub struct AcknowledgedRecords {
    seen: BTreeMap<u64, ([u8; 32], Hash, String)>,
    checked: BTreeSet<u64>,
}

fn compare(index: u64, record: &[u8; 32], lh: &Hash, node: &str, ctx: &Ctx<'_>) -> Option<String> {
    let ack = ctx.history.acked.get(&index)?;
    if ack.record_hash != *record {
        return Some(format!(
            "leaf {index} on {node} holds record {} but {} was told it holds record {}",
            hex::encode(&record[..8]),
            ack.client,
            hex::encode(&ack.record_hash[..8])
        ));
    }
    if let Some(expected) = ack.leaf_hash {
        if expected != *lh {
            return Some(format!(
                "leaf {index} on {node} has leaf hash {lh} but {} was told {expected}",
                ack.client
            ));
        }
    }
    None
}

impl Invariant for AcknowledgedRecords {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_leaf(&mut self, ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let Ok(decoded) = leaf.leaf else {
            return Vec::new();
        };
        let record = *blake3::hash(&decoded.record).as_bytes();
        let lh = leaf_hash(leaf.bytes);
        self.seen
            .entry(leaf.index)
            .or_insert_with(|| (record, lh, node.name.clone()));
        compare(leaf.index, &record, &lh, &node.name, ctx)
            .into_iter()
            .collect()
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, _nodes: &[NodeView]) -> Vec<String> {
        // Acknowledgments that arrived after their leaf was read.
        let mut out = Vec::new();
        for index in ctx.history.acked.keys() {
            if self.checked.contains(index) {
                continue;
            }
            if let Some((record, lh, node)) = self.seen.get(index) {
                self.checked.insert(*index);
                out.extend(compare(*index, record, lh, node, ctx));
            }
        }
        out
    }

    fn at_end(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            for (index, ack) in &ctx.history.acked {
                if *index >= node.size {
                    out.push(format!(
                        "leaf {index} was acknowledged to {} but {} holds only {} leaves after the cluster healed",
                        ack.client, node.name, node.size
                    ));
                    continue;
                }
                match node.shared.ledger.leaf(*index) {
                    Ok(bytes) => {
                        let record = stateledger_core::leaf::Leaf::decode(&bytes)
                            .map(|l| *blake3::hash(&l.record).as_bytes())
                            .unwrap_or_default();
                        out.extend(compare(
                            *index,
                            &record,
                            &leaf_hash(&bytes),
                            &node.name,
                            ctx,
                        ));
                    }
                    // Unreadable leaves are judged by corruption_contained.
                    Err(_) => {}
                }
            }
        }
        out
    }
}
