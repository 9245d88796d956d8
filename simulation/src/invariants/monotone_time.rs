//! **Ledger timestamps are monotone**: on every node, each leaf's ledger time is strictly greater
//! than the previous leaf's, whatever the leaders' wall clocks did (they are skewed and jump in
//! the simulation). And every signed checkpoint keeps its time promise: the leaf at its size, if
//! any, is strictly later than its time, and the leaf before it is not later.

use std::collections::{BTreeMap, BTreeSet};

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "monotone_time";

#[derive(Debug, Default)]
pub struct MonotoneTime {
    /// Server index → (index, time) of the last leaf read.
    last: BTreeMap<usize, (u64, u64)>,
    /// Index → ledger time, first seen.
    times: BTreeMap<u64, u64>,
    /// (size, time) of checkpoints whose promise was checked on both sides.
    kept: BTreeSet<(u64, u64)>,
}

impl Invariant for MonotoneTime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reset_node(&mut self, node: usize) {
        self.last.remove(&node);
    }

    fn on_leaf(&mut self, _ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let Ok(decoded) = leaf.leaf else {
            return Vec::new();
        };
        let time = decoded.ledger_time.0;
        let mut out = Vec::new();
        if let Some((prev_index, prev_time)) = self.last.get(&node.index) {
            if *prev_index + 1 == leaf.index && time <= *prev_time {
                out.push(format!(
                    "on {}, leaf {} has ledger time {time}, not after leaf {prev_index}'s {prev_time}",
                    node.name, leaf.index
                ));
            }
        }
        self.last.insert(node.index, (leaf.index, time));
        self.times.entry(leaf.index).or_insert(time);
        out
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut checkpoints: Vec<(u64, u64, String)> = ctx
            .history
            .checkpoints
            .iter()
            .map(|c| (c.size, c.time, format!("served by {}", c.from)))
            .collect();
        for node in nodes {
            if let Some(held) = node.shared.checkpoints.borrow().as_ref() {
                checkpoints.push((
                    held.checkpoint().size.0,
                    held.checkpoint().time.0,
                    format!("held by {}", node.name),
                ));
            }
        }
        let mut out = Vec::new();
        for (size, time, source) in checkpoints {
            if self.kept.contains(&(size, time)) {
                continue;
            }
            let before = size.checked_sub(1).and_then(|i| self.times.get(&i));
            let after = self.times.get(&size);
            if let Some(t) = before {
                if *t > time {
                    out.push(format!(
                        "checkpoint of size {size} time {time} ({source}) is older than its own last leaf's time {t}"
                    ));
                }
            }
            if let Some(t) = after {
                if *t <= time {
                    out.push(format!(
                        "checkpoint of size {size} time {time} ({source}) promised later leaves are later, but leaf {size} has time {t}"
                    ));
                }
            }
            if (before.is_some() || size == 0) && after.is_some() {
                self.kept.insert((size, time));
            }
        }
        out
    }
}
