//! **No phantom or duplicate records.** Every stored leaf carries a record some client actually
//! submitted, and no record is stored at two indexes (retries must not duplicate).

use std::collections::HashMap;

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "no_phantom_records";

/// Record hash → the first index it was seen at.
#[derive(Debug, Default)]
pub struct NoPhantomRecords {
    first: HashMap<[u8; 32], u64>,
}

impl Invariant for NoPhantomRecords {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_leaf(&mut self, ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let Ok(decoded) = leaf.leaf else {
            return Vec::new();
        };
        let record = *blake3::hash(&decoded.record).as_bytes();
        let mut out = Vec::new();
        if !ctx.history.submitted.contains(&record) {
            out.push(format!(
                "leaf {} on {} holds record {} that no client submitted",
                leaf.index,
                node.name,
                hex::encode(&record[..8])
            ));
        }
        let first = *self.first.entry(record).or_insert(leaf.index);
        if first != leaf.index {
            out.push(format!(
                "record {} is stored at leaf {first} and again at leaf {} (on {})",
                hex::encode(&record[..8]),
                leaf.index,
                node.name
            ));
        }
        out
    }
}
