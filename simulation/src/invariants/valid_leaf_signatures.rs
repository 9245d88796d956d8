//! **Every stored leaf carries a valid writer signature** over a valid record, in the fixed leaf
//! layout, at the index its key says.

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "valid_leaf_signatures";

#[derive(Debug)]
pub struct ValidLeafSignatures;

impl Invariant for ValidLeafSignatures {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_leaf(&mut self, _ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let decoded = match leaf.leaf {
            Ok(l) => l,
            Err(e) => {
                return vec![format!(
                    "leaf {} on {} does not decode: {e}",
                    leaf.index, node.name
                )]
            }
        };
        if decoded.index.0 != leaf.index {
            return vec![format!(
                "leaf stored at {} on {} says it is leaf {}",
                leaf.index, node.name, decoded.index
            )];
        }
        match decoded.verify() {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!(
                "leaf {} on {} fails verification: {e}",
                leaf.index, node.name
            )],
        }
    }
}
