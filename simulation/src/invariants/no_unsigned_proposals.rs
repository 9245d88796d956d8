//! **No record reaches the Raft log unless its signature verified.** The leader checks every
//! record's signature before it proposes it (`sigcheck.rs`); every node checks again before it
//! applies, refuses a group that holds a bad signature and keeps the group as evidence
//! (`Ledger::evidence`). Evidence on any node therefore means that a leader proposed a record it
//! had not verified — a bug, even though the refusal kept the record out of the ledger.
//!
//! The refusal is checked as well: a record a client sent with a broken signature
//! (`History::forged`, only in the `unsigned-record-accepted` hunt) is never stored as a leaf —
//! so no checkpoint, which covers leaves only, covers it — and no client is told it was appended.

use std::collections::HashSet;

use super::{Ctx, Invariant, StoredLeaf};
use crate::world::NodeView;

pub const NAME: &str = "no_unsigned_proposals";

#[derive(Debug, Default)]
pub struct NoUnsignedProposals {
    /// (server index, log index, group) of evidence already reported.
    reported: HashSet<(usize, u64, u32)>,
    /// Forged records already reported as acknowledged.
    acked_reported: HashSet<[u8; 32]>,
}

impl Invariant for NoUnsignedProposals {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_leaf(&mut self, ctx: &Ctx<'_>, node: &NodeView, leaf: &StoredLeaf<'_>) -> Vec<String> {
        let Ok(decoded) = leaf.leaf else {
            return Vec::new();
        };
        let record = *blake3::hash(&decoded.record).as_bytes();
        if ctx.history.forged.contains(&record) {
            return vec![format!(
                "leaf {} on {} holds record {}, which a client sent with a broken signature",
                leaf.index,
                node.name,
                hex::encode(&record[..8])
            )];
        }
        Vec::new()
    }

    fn on_check(&mut self, ctx: &Ctx<'_>, nodes: &[NodeView]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            // Unreadable evidence is corrupt data, which `corruption_contained` judges.
            let Ok(evidence) = node.shared.ledger.evidence() else {
                continue;
            };
            for e in evidence {
                if !self.reported.insert((node.index, e.log_id.index, e.group)) {
                    continue;
                }
                out.push(format!(
                    "{} refused group {} of log entry {} for a bad signature (record {}: {}) and \
                     kept it as evidence: its leader, node-{}, proposed a record it had not \
                     verified",
                    node.name,
                    e.group,
                    e.log_id.index,
                    e.position,
                    e.reason,
                    e.log_id.leader_id.node_id
                ));
            }
        }
        for record in &ctx.history.forged {
            if let Some(index) = ctx.history.acked_by_record.get(record) {
                if self.acked_reported.insert(*record) {
                    out.push(format!(
                        "a client was told that record {}, sent with a broken signature, is at \
                         leaf {index}",
                        hex::encode(&record[..8])
                    ));
                }
            }
        }
        out
    }
}
