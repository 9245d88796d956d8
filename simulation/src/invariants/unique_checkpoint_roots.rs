//! **Never two signed checkpoints of one size with different roots**, and every signed checkpoint
//! agrees with the replicated ledger: its root is the ledger's root at its size.
//!
//! Checkpoints come from everywhere they can be seen: what clients were served, what each node
//! holds for serving, what each node published through Raft (and, at the end, every published
//! checkpoint each node stored). A checkpoint a node holds or serves must meet the trust policy.

use std::collections::{BTreeMap, HashSet};

use stateledger_core::checkpoint::Checkpoint;
use stateledger_node::ledger::keys;
use stateledger_node::store::Tree;

use super::{Ctx, Invariant};
use crate::world::NodeView;

pub const NAME: &str = "unique_checkpoint_roots";

#[derive(Debug, Default)]
pub struct UniqueCheckpointRoots {
    notes: HashSet<String>,
    /// Size → (checkpoint, where it was seen first).
    by_size: BTreeMap<u64, (Checkpoint, String)>,
    /// Checkpoints not yet compared with a ledger that has reached their size.
    unmatched: Vec<(Checkpoint, String)>,
}

impl UniqueCheckpointRoots {
    fn offer(&mut self, ctx: &Ctx<'_>, note: &str, source: String, out: &mut Vec<String>) {
        if !self.notes.insert(note.to_string()) {
            return;
        }
        let cp = match ctx.policy.verify_checkpoint(note) {
            Ok(v) => v.checkpoint,
            Err(e) => {
                out.push(format!(
                    "{source} has a checkpoint that does not meet the trust policy: {e}"
                ));
                return;
            }
        };
        match self.by_size.get(&cp.size.0) {
            Some((first, first_source)) => {
                if first.root != cp.root || first.heads_root != cp.heads_root {
                    out.push(format!(
                        "two signed checkpoints of size {}: root {} heads {} ({first_source}) and root {} heads {} ({source})",
                        cp.size, first.root, first.heads_root, cp.root, cp.heads_root
                    ));
                }
            }
            None => {
                self.by_size.insert(cp.size.0, (cp.clone(), source.clone()));
                self.unmatched.push((cp, source));
            }
        }
    }

    fn match_ledgers(&mut self, nodes: &[NodeView], out: &mut Vec<String>) {
        self.unmatched.retain(|(cp, source)| {
            for node in nodes.iter().filter(|n| !n.corrupted && n.size >= cp.size.0) {
                if let Ok(root) = node.shared.ledger.root_of_prefix(cp.size.0) {
                    if root != cp.root {
                        out.push(format!(
                            "checkpoint of size {} ({source}) signs root {} but {}'s ledger has root {root} at that size",
                            cp.size, cp.root, node.name
                        ));
                    }
                    return false;
                }
            }
            true
        });
    }
}

impl Invariant for UniqueCheckpointRoots {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for seen in &ctx.history.checkpoints {
            self.offer(
                ctx,
                &seen.note,
                format!("served by {}", seen.from),
                &mut out,
            );
        }
        for node in nodes {
            let held = node.shared.checkpoints.borrow().clone();
            if let Some(held) = held {
                self.offer(ctx, held.text(), format!("held by {}", node.name), &mut out);
            }
            if let Some(published) = node.shared.ledger.published_checkpoint() {
                let note = published.text();
                self.offer(ctx, note, format!("published on {}", node.name), &mut out);
            }
        }
        self.match_ledgers(nodes, &mut out);
        out
    }

    fn at_end(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            let stored = node.store.scan(
                Tree::Ledger,
                &keys::checkpoint(0),
                &keys::checkpoint(u64::MAX),
                usize::MAX,
            );
            if let Ok(rows) = stored {
                for (_, note) in rows {
                    let note = String::from_utf8_lossy(&note).into_owned();
                    self.offer(ctx, &note, format!("stored by {}", node.name), &mut out);
                }
            }
        }
        self.match_ledgers(nodes, &mut out);
        for (cp, source) in &self.unmatched {
            out.push(format!(
                "checkpoint of size {} ({source}) is beyond every healed member's ledger",
                cp.size
            ));
        }
        out
    }
}
