//! Waiting for a cosigned checkpoint: what a receipt, a checkpoint or a state proof asked of
//! any node needs. A follower asks the leader for one over the cluster port; the leader wakes
//! its checkpointer (`checkpointer.rs`).

use std::sync::Arc;
use std::time::Duration;

use stateledger_proto::v1 as pb;

use tokio::sync::watch;

use crate::ledger::{Ledger, SignedCheckpoint};
use crate::raft::network::ClusterConnector;
use crate::raft::{NodeId, NodeInfo};

/// What waiting for a checkpoint needs of the node, and nothing more: the checkpoints it holds
/// and the ledger's published one, who leads, a way to wake its checkpointer, and a connection
/// to the leader. The node implements it (`node.rs`).
pub trait CheckpointSource: Send + Sync + 'static {
    /// The freshest quorum-cosigned checkpoint held, and its changes.
    fn held_checkpoints(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>>;
    /// The ledger, for its published checkpoint and its progress.
    fn ledger(&self) -> &Ledger;
    /// Leading, with a quorum's acknowledgement within the lease.
    fn is_leader(&self) -> bool;
    /// The current leader, if known, with its address record.
    fn leader(&self) -> Option<(NodeId, NodeInfo)>;
    /// Wakes the checkpointer for a checkpoint covering `time` (as leader).
    fn want_checkpoint_covering(&self, time: u64);
    /// Connections to the other nodes' cluster port.
    fn connector(&self) -> &ClusterConnector;
}

/// The checkpoint waited for did not come in time (`what` says which).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} within {wait:?}")]
pub struct NotInTime {
    pub what: String,
    pub wait: Duration,
}

/// Waits (up to `wait`) for a cosigned checkpoint with at least `min_size` leaves covering
/// `covering_time`, asking the leader for one if needed.
pub async fn wait_checkpoint(
    shared: &Arc<impl CheckpointSource>,
    min_size: u64,
    covering_time: u64,
    wait: Duration,
) -> Result<Arc<SignedCheckpoint>, NotInTime> {
    let mut rx = shared.held_checkpoints();
    let satisfies = |c: &Option<Arc<SignedCheckpoint>>| {
        c.as_ref()
            .filter(|k| k.checkpoint().size.0 >= min_size && k.checkpoint().time.0 >= covering_time)
            .cloned()
    };
    if let Some(note) = satisfies(&rx.borrow_and_update()) {
        return Ok(note);
    }
    ask_for_checkpoint(shared, min_size, covering_time, wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(note) = satisfies(&rx.borrow_and_update()) {
            return Ok(note);
        }
        match tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            rx.changed(),
        )
        .await
        {
            Ok(Ok(())) => {}
            _ => {
                return Err(NotInTime {
                    what: format!(
                    "no checkpoint with at least {min_size} leaves covering time {covering_time}"
                ),
                    wait,
                })
            }
        }
    }
}

/// Makes sure the leader cosigns (and publishes) a checkpoint covering `time`.
fn ask_for_checkpoint(
    shared: &Arc<impl CheckpointSource>,
    min_size: u64,
    covering_time: u64,
    wait: Duration,
) {
    if shared.is_leader() {
        shared.want_checkpoint_covering(covering_time);
        return;
    }
    if covering_time == 0 {
        return; // Publication follows new leaves on its own.
    }
    let Some((leader_id, leader)) = shared.leader() else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let Ok(mut client) = shared.connector().client(&leader.raft_addr, leader_id) else {
            return;
        };
        let request = pb::GetCheckpointRequest {
            min_size,
            covering_time,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
            at_size: 0,
        };
        if let Err(e) = tokio::time::timeout(wait, client.request_checkpoint(request)).await {
            tracing::debug!(error = %e, "leader did not provide a checkpoint in time");
        }
    });
}

/// Waits until the latest *published* checkpoint covers `time` (state proofs need the head map,
/// which advances with publication).
pub async fn wait_published_covering(
    shared: &Arc<impl CheckpointSource>,
    time: u64,
    wait: Duration,
) -> Result<(), NotInTime> {
    let covers = || {
        shared
            .ledger()
            .published_checkpoint()
            .is_some_and(|p| p.checkpoint().time.0 >= time)
    };
    if covers() {
        return Ok(());
    }
    ask_for_checkpoint(shared, 0, time, wait);
    let mut progress = shared.ledger().progress();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if covers() {
            return Ok(());
        }
        match tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            progress.changed(),
        )
        .await
        {
            Ok(Ok(())) => {}
            _ => {
                return Err(NotInTime {
                    what: format!("no published checkpoint covering time {time}"),
                    wait,
                })
            }
        }
    }
}
