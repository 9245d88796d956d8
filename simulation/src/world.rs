//! What the checker sees of the cluster at one instant: every node that is up (running or
//! paused). Leaves are read through the ledger's own read path (`Ledger::leaf`, the one that serves
//! clients), so the checker follows whatever storage layout the node uses; like any reader, a
//! read that meets corrupt data makes the node flag itself corrupt.

use std::collections::BTreeMap;
use std::sync::Arc;

use stateledger_core::hash::Hash;
use stateledger_node::ledger::ReadError;
use stateledger_node::node::NodeShared;
use stateledger_node::store::Store;

use crate::cluster::Cluster;

/// One node that is up.
#[derive(Debug)]
pub struct NodeView {
    pub index: usize,
    pub id: u64,
    pub name: String,
    pub incarnation: u64,
    pub shared: Arc<NodeShared>,
    /// A checksumming reader over the server's store (what the node itself would read).
    pub store: Store,
    /// A stored byte of this server was flipped by a fault.
    pub corrupted: bool,
    pub size: u64,
    pub root: Hash,
}

/// Every node that is up, in server order.
pub fn views(cluster: &Cluster) -> Vec<NodeView> {
    cluster
        .servers
        .iter()
        .filter_map(|s| {
            let shared = s.shared_even_paused()?;
            let progress = shared.ledger.current_progress();
            Some(NodeView {
                index: s.index,
                id: s.id,
                name: s.name.clone(),
                incarnation: s.incarnation(),
                root: shared.ledger.root(),
                size: progress.size,
                store: shared.ledger.store().clone(),
                corrupted: s.corrupted,
                shared,
            })
        })
        .collect()
}

/// Leaves a node holds that the checker has not seen yet.
#[derive(Debug, Default)]
pub struct NewLeaves {
    /// The node's leaves restarted (new incarnation or a smaller ledger): per-node state resets.
    pub reset: bool,
    pub leaves: Vec<(u64, Vec<u8>)>,
    /// Leaves below the node's size that it could not read (corrupt or missing).
    pub unreadable: Vec<(u64, ReadError)>,
}

/// Hands each node's leaves to the checker once per incarnation, in index order.
#[derive(Debug, Default)]
pub struct LeafFeed {
    /// Server index → (incarnation, next index to read).
    marks: BTreeMap<usize, (u64, u64)>,
}

/// Most leaves read from one node per check (bounds the cost of one check).
const LEAVES_PER_CHECK_MAX: u64 = 4096;

impl LeafFeed {
    /// Forgets every mark: the next reads rescan every node from leaf 0.
    pub fn rescan(&mut self) {
        self.marks.clear();
    }

    pub fn next(&mut self, view: &NodeView) -> NewLeaves {
        let mut out = NewLeaves::default();
        let mark = self
            .marks
            .entry(view.index)
            .or_insert((view.incarnation, 0));
        if mark.0 != view.incarnation || mark.1 > view.size {
            *mark = (view.incarnation, 0);
            out.reset = true;
        }
        let start = mark.1;
        let end = view.size.min(start + LEAVES_PER_CHECK_MAX);
        for i in start..end {
            match view.shared.ledger.leaf(i) {
                Ok(bytes) => out.leaves.push((i, bytes)),
                Err(e) => out.unreadable.push((i, e)),
            }
        }
        mark.1 = end;
        out
    }
}
