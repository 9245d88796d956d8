//! The node's own record of itself — which node and cluster the data directory belongs to, a copy
//! of its Raft vote, and whether it is repairing — kept in *both* storages (the Raft log file and
//! the ledger), so that losing either one is noticed and the vote survives it.
//!
//! Why a copy of the vote: a node that lost its Raft log but kept voting could vote twice in one
//! term, or for a candidate that lacks records it had acknowledged; both break Raft's guarantee
//! that an acknowledged record is never lost. The copy is written (and synced) every time the vote
//! changes, after the log's own copy, so the newest of the two is never older than any vote the
//! node has sent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::kv::{Kv, Tree};
use super::{open_value, seal_value, StoreError};
use crate::raft::codec;
use crate::raft::Vote;

/// The key of the record in [`Tree::Node`].
pub const KEY: &[u8] = b"node-state";
const FORMAT: u32 = 1;

/// Why a node is repairing: it must not vote, campaign or cosign until it has caught up with a
/// leader that was elected without it (`crate::repair`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// What was found, for the operator.
    pub reason: String,
    /// The node never held state: it may still vote in the cluster's very first election
    /// (when every candidate's log holds only the initial membership).
    pub new_node: bool,
    /// Milliseconds since the Unix epoch when repair began (for status; never for decisions).
    pub since_ms: u64,
}

/// See the module comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub format: u32,
    pub node_id: u64,
    pub origin: String,
    /// Bumped by every write: the copy with the highest wins.
    pub sequence: u64,
    /// The Raft vote as last saved.
    pub vote: Option<Vote>,
    pub repair: Option<Repair>,
}

impl NodeState {
    pub fn new(node_id: u64, origin: &str) -> NodeState {
        NodeState {
            format: FORMAT,
            node_id,
            origin: origin.to_string(),
            sequence: 0,
            vote: None,
            repair: None,
        }
    }
}

/// One storage's copy: absent, present, or unreadable (why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copy {
    Absent,
    Present(NodeState),
    Unreadable(String),
}

impl Copy {
    pub fn state(&self) -> Option<&NodeState> {
        match self {
            Copy::Present(s) => Some(s),
            _ => None,
        }
    }
}

/// Reads the copy kept in `kv`.
pub fn read(kv: &dyn Kv) -> Copy {
    let stored = match kv.get(Tree::Node, KEY) {
        Ok(None) => return Copy::Absent,
        Ok(Some(v)) => v,
        Err(e) => return Copy::Unreadable(e.to_string()),
    };
    match open_value(Tree::Node, KEY, stored).and_then(|v| {
        codec::decode("node state", &v).map_err(|e| StoreError::corrupt(Tree::Node, KEY, e))
    }) {
        Ok(s) => Copy::Present(s),
        Err(e) => Copy::Unreadable(e.to_string()),
    }
}

/// Writes `state` into `kv` (not synced).
pub fn write(kv: &dyn Kv, state: &NodeState) -> Result<(), StoreError> {
    let bytes =
        codec::encode("node state", state).map_err(|e| StoreError::corrupt(Tree::Node, KEY, e))?;
    kv.write(
        Tree::Node,
        vec![(KEY.to_vec(), Some(seal_value(Tree::Node, KEY, &bytes)))],
    )?;
    Ok(())
}

/// How long an update waits for the ledger's copy to be synced before it goes on without it.
pub const SPARE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The node's record, shared by whatever changes it (the log store's vote, repair), written to
/// both storages on every change.
pub struct NodeStateHandle {
    log: Arc<dyn Kv>,
    ledger: Arc<dyn Kv>,
    state: tokio::sync::Mutex<NodeState>,
    /// Serialises writes of the ledger's copy; holds the sequence last written there.
    spare: Arc<tokio::sync::Mutex<u64>>,
    /// A write of the ledger's copy outlasted [`SPARE_WAIT`] and has not finished yet.
    spare_stuck: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for NodeStateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeStateHandle")
    }
}

impl NodeStateHandle {
    pub fn new(log: Arc<dyn Kv>, ledger: Arc<dyn Kv>, state: NodeState) -> NodeStateHandle {
        NodeStateHandle {
            log,
            ledger,
            spare: Arc::new(tokio::sync::Mutex::new(state.sequence)),
            state: tokio::sync::Mutex::new(state),
            spare_stuck: Default::default(),
        }
    }

    /// The record as last written.
    pub async fn get(&self) -> NodeState {
        self.state.lock().await.clone()
    }

    /// Changes the record and writes it to both storages, synced, before returning — except
    /// that the ledger's copy (the spare) is waited for at most [`SPARE_WAIT`]: on a full or
    /// failing disk sled's flush can fail or never return, and that must not stop Raft from
    /// voting. The spare is then older until a later write of it completes (writes of the spare
    /// go on in order in the background; a newer one replaces an older one not yet written).
    pub async fn update(&self, change: impl FnOnce(&mut NodeState)) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        change(&mut next);
        next.sequence = state.sequence + 1;
        write(&*self.log, &next)?;
        self.log.sync().await?;
        if !Arc::ptr_eq(&self.log, &self.ledger) {
            let (spare, ledger, copy) = (self.spare.clone(), self.ledger.clone(), next.clone());
            let stuck = self.spare_stuck.clone();
            let task = tokio::spawn(async move {
                let mut written = spare.lock().await;
                let result = if *written >= copy.sequence {
                    Ok(())
                } else {
                    match write(&*ledger, &copy) {
                        Ok(()) => ledger.sync().await.map_err(StoreError::from),
                        Err(e) => Err(e),
                    }
                };
                if result.is_ok() {
                    *written = copy.sequence;
                }
                stuck.store(false, Ordering::Relaxed);
                result
            });
            // While an earlier write is stuck, this one queues behind it: do not wait at all.
            let wait = if self.spare_stuck.load(Ordering::Relaxed) {
                std::time::Duration::ZERO
            } else {
                SPARE_WAIT
            };
            match tokio::time::timeout(wait, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::error!(error = %e, "cannot update the ledger's copy of the node record")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "the ledger's copy of the node record: task failed")
                }
                Err(_) => {
                    if !self.spare_stuck.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            waited_ms = SPARE_WAIT.as_millis() as u64,
                            "the ledger's copy of the node record is not synced yet (a full or \
                             failing disk?); Raft goes on with the Raft log's copy"
                        );
                    }
                }
            }
        }
        *state = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;

    #[tokio::test]
    async fn both_copies_follow_every_update_and_a_lost_one_leaves_the_other() {
        let log = Arc::new(MemKv::new());
        let ledger = Arc::new(MemKv::new());
        let handle = NodeStateHandle::new(log.clone(), ledger.clone(), NodeState::new(2, "o"));
        handle
            .update(|s| s.vote = Some(Vote::new(3, 1)))
            .await
            .expect("update");
        let expected = handle.get().await;
        assert_eq!(expected.sequence, 1);
        assert_eq!(read(&*log), Copy::Present(expected.clone()));
        assert_eq!(read(&*ledger), Copy::Present(expected.clone()));
        log.crash();
        assert_eq!(read(&*log), Copy::Present(expected.clone()), "synced");
        log.clear(Tree::Node).expect("lose the log's copy");
        assert_eq!(read(&*log), Copy::Absent);
        assert_eq!(read(&*ledger).state(), Some(&expected));
        assert!(ledger.corrupt(Tree::Node, KEY, 20));
        assert!(matches!(read(&*ledger), Copy::Unreadable(_)));
    }

    #[tokio::test]
    async fn a_ledger_copy_that_never_syncs_does_not_hold_up_votes() {
        let log = Arc::new(MemKv::new());
        let ledger = Arc::new(MemKv::new());
        // sled's flush on a full disk can fail to return at all.
        ledger.set_sync_delay(std::time::Duration::from_secs(24 * 3600));
        let handle = NodeStateHandle::new(log.clone(), ledger.clone(), NodeState::new(2, "o"));
        tokio::time::timeout(
            SPARE_WAIT * 3,
            handle.update(|s| s.vote = Some(Vote::new(3, 1))),
        )
        .await
        .expect("the vote is saved after waiting for the spare at most SPARE_WAIT")
        .expect("update");
        tokio::time::timeout(
            SPARE_WAIT / 2,
            handle.update(|s| s.vote = Some(Vote::new(4, 1))),
        )
        .await
        .expect("no second wait behind the stuck write")
        .expect("update");
        log.crash();
        let durable = read(&*log);
        assert_eq!(durable.state().and_then(|s| s.vote), Some(Vote::new(4, 1)));
    }
}
