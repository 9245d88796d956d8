//! Repair mode: a node that lost durable state (`crate::recovery`) — or a new node — runs, takes
//! replication from the leader, and serves reads, but does not vote, does not campaign and does
//! not cosign checkpoints until it has caught up with a leader elected without it.
//!
//! "Caught up" means: it accepted an AppendEntries (or a snapshot) from a leader, and it has
//! applied the commit index that leader sent the first time. That leader was elected by nodes
//! that did not lose their state, so its log holds every committed record — including any this
//! node had acknowledged and then lost — and once this node holds them too, its vote is as good
//! as anyone's. Acknowledgements the node sends while repairing are of entries it has made
//! durable again; they are true, so counting them is safe. What is never counted is a vote or a
//! cosignature from a node that may have forgotten what it acknowledged.
//!
//! A *new* node (no state at all) may vote in the cluster's very first election: every candidate
//! there holds only the initial membership (log index 0), so there is nothing it could lose.
//!
//! The repair flag is part of the node record (`crate::store::node_state`), so a node that
//! restarts before it is repaired keeps repairing.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::raft::LogId;
use crate::store::node_state::{NodeStateHandle, Repair};
use crate::store::StoreError;

#[derive(Debug)]
struct Active {
    repair: Repair,
    /// The commit index of the first leader heard from (`Some(None)`: it had committed nothing).
    target: Option<Option<u64>>,
}

/// See the module comment.
/// Why a repairing node refuses to vote or cosign: it may have forgotten what it acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{node} is repairing ({reason}); it {refuses} until it has caught up with a leader")]
pub struct Repairing {
    /// This node's name.
    pub node: String,
    /// What it lost (from recovery).
    pub reason: String,
    /// What it refuses: "does not vote" or "cosigns nothing".
    pub refuses: &'static str,
}

#[derive(Debug)]
pub struct RepairMode {
    name: String,
    /// Why this start began in repair mode, if it did; kept after repair ends (the simulation
    /// checks that only nodes that lost state repair, and that those do).
    began: Option<Repair>,
    active: Mutex<Option<Active>>,
    node_state: Arc<NodeStateHandle>,
    /// Simulation only: see [`crate::known_bad::Switch::LostStateVotes`].
    #[cfg(madsim)]
    votes_anyway: bool,
}

impl RepairMode {
    pub fn new(name: &str, repair: Option<Repair>, node_state: Arc<NodeStateHandle>) -> RepairMode {
        RepairMode {
            name: name.to_string(),
            began: repair.clone(),
            active: Mutex::new(repair.map(|repair| Active {
                repair,
                target: None,
            })),
            node_state,
            #[cfg(madsim)]
            votes_anyway: false,
        }
    }

    /// Simulation only: re-introduces the known-bad behaviours of repair mode.
    #[cfg(madsim)]
    pub fn with_known_bad(mut self, known_bad: crate::known_bad::KnownBad) -> RepairMode {
        self.votes_anyway = known_bad.is_on(crate::known_bad::Switch::LostStateVotes);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the node is repairing, if it is.
    pub fn reason(&self) -> Option<String> {
        self.lock().as_ref().map(|a| a.repair.reason.clone())
    }

    /// Why this start of the node began in repair mode (even after repair ended), if it did.
    pub fn began_with(&self) -> Option<&Repair> {
        self.began.as_ref()
    }

    pub fn is_repairing(&self) -> bool {
        self.lock().is_some()
    }

    /// Whether this node may grant a vote (or pre-vote) to a candidate whose log ends at
    /// `candidate_last`; the refusal says why.
    pub fn check_vote(&self, candidate_last: Option<&LogId>) -> Result<(), Repairing> {
        #[cfg(madsim)]
        if self.votes_anyway {
            // KNOWN-BAD, simulation only: votes as if its state were intact.
            return Ok(());
        }
        match &*self.lock() {
            None => Ok(()),
            Some(a) if a.repair.new_node && candidate_last.is_none_or(|l| l.index == 0) => Ok(()),
            Some(a) => Err(Repairing {
                node: self.name.clone(),
                reason: a.repair.reason.clone(),
                refuses: "does not vote",
            }),
        }
    }

    /// Whether this node may stand for election with its log ending at `own_last`.
    pub fn may_campaign(&self, own_last: Option<&LogId>) -> bool {
        #[cfg(madsim)]
        if self.votes_anyway {
            return true;
        }
        match &*self.lock() {
            None => true,
            Some(a) => a.repair.new_node && own_last.is_none_or(|l| l.index == 0),
        }
    }

    /// Whether this node may cosign a checkpoint; the refusal says why.
    pub fn check_cosign(&self) -> Result<(), Repairing> {
        match &*self.lock() {
            None => Ok(()),
            Some(a) => Err(Repairing {
                node: self.name.clone(),
                reason: a.repair.reason.clone(),
                refuses: "cosigns nothing",
            }),
        }
    }

    /// A leader's AppendEntries or snapshot was accepted; `leader_commit` is the commit index it
    /// sent. The first one sets the index to catch up to.
    pub fn heard_from_leader(&self, leader_commit: Option<u64>) {
        if let Some(a) = &mut *self.lock() {
            if a.target.is_none() {
                tracing::info!(
                    node = %self.name,
                    catch_up_to = ?leader_commit,
                    "repairing: heard from a leader"
                );
                a.target = Some(leader_commit);
            }
        }
    }

    /// Called as the node applies entries (and when it becomes leader, which only a new node at
    /// the first election can while repairing). Ends repair once caught up, recording it durably
    /// first. Returns true when repair ended now.
    pub async fn progress(
        &self,
        applied: Option<u64>,
        is_leader: bool,
    ) -> Result<bool, StoreError> {
        let done = match &*self.lock() {
            None => return Ok(false),
            Some(a) => {
                is_leader
                    || match a.target {
                        None => false,
                        Some(None) => true,
                        Some(Some(t)) => applied.is_some_and(|x| x >= t),
                    }
            }
        };
        if !done {
            return Ok(false);
        }
        self.node_state.update(|s| s.repair = None).await?;
        if let Some(a) = self.lock().take() {
            tracing::info!(
                node = %self.name,
                was = %a.repair.reason,
                applied = ?applied,
                "repaired: caught up with the leader; this node votes and cosigns again"
            );
        }
        Ok(true)
    }
}

/// Ends repair as soon as the node has caught up (see [`RepairMode::progress`]).
pub async fn run(
    raft: crate::raft::Raft,
    repair: Arc<RepairMode>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    while repair.is_repairing() {
        let (applied, leader) = {
            let m = metrics.borrow_and_update();
            (
                m.last_applied.map(|l| l.index),
                m.state == openraft::ServerState::Leader,
            )
        };
        if let Err(e) = repair.progress(applied, leader).await {
            tracing::error!(error = %e, "cannot record the end of repair; still repairing");
        }
        if !repair.is_repairing() {
            return;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::node_state::NodeState;
    use crate::store::{Kv, MemKv};

    fn mode(new_node: bool) -> (RepairMode, Arc<MemKv>) {
        let kv = Arc::new(MemKv::new());
        let handle = Arc::new(NodeStateHandle::new(
            kv.clone(),
            kv.clone() as Arc<dyn Kv>,
            NodeState::new(1, "o"),
        ));
        let repair = Repair {
            reason: "the Raft log is gone".into(),
            new_node,
            since_ms: 0,
        };
        (RepairMode::new("node-1", Some(repair), handle), kv)
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    #[tokio::test]
    async fn a_damaged_node_neither_votes_nor_campaigns_nor_cosigns_until_caught_up() {
        let (m, kv) = mode(false);
        let refusal = m.check_vote(Some(&log_id(0))).expect_err("no vote");
        assert_eq!(refusal.node, "node-1");
        assert!(
            refusal
                .to_string()
                .contains("node-1 is repairing (the Raft log is gone)"),
            "{refusal}"
        );
        assert!(m.check_vote(None).is_err());
        assert!(!m.may_campaign(None));
        assert!(m.check_cosign().is_err());
        // Applying before hearing from a leader repairs nothing.
        assert!(!m.progress(Some(50), false).await.expect("progress"));
        m.heard_from_leader(Some(40));
        m.heard_from_leader(Some(90)); // only the first counts
        assert!(!m.progress(Some(39), false).await.expect("progress"));
        assert!(m.is_repairing());
        assert!(m.progress(Some(40), false).await.expect("progress"));
        assert!(!m.is_repairing());
        assert!(m.check_vote(Some(&log_id(7))).is_ok());
        assert!(m.check_cosign().is_ok());
        // Recorded durably.
        kv.crash();
        let stored = crate::store::node_state::read(&*kv);
        assert_eq!(stored.state().map(|s| s.repair.is_none()), Some(true));
    }

    #[tokio::test]
    async fn a_new_node_votes_only_in_the_first_election() {
        let (m, _) = mode(true);
        assert!(m.check_vote(None).is_ok());
        assert!(m.check_vote(Some(&log_id(0))).is_ok());
        assert!(m.check_vote(Some(&log_id(1))).is_err());
        assert!(m.may_campaign(Some(&log_id(0))));
        assert!(!m.may_campaign(Some(&log_id(3))));
        assert!(m.check_cosign().is_err());
        assert!(m.progress(None, true).await.expect("leader at genesis"));
    }
}
