//! What the node's parts see of it: `NodeShared` as the narrow traits that the checkpoint
//! waiters (`checkpoint_wait.rs`), the checkpointer and the metrics listener (`metrics.rs`)
//! define, so that none of them imports the node.

use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use super::NodeShared;
use crate::checkpointer;
use crate::ledger::{Ledger, SignedCheckpoint};
use crate::raft::network::ClusterConnector;
use crate::raft::{NodeId, NodeInfo};

impl crate::checkpoint_wait::CheckpointSource for NodeShared {
    fn held_checkpoints(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.checkpoints.subscribe()
    }
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    fn is_leader(&self) -> bool {
        NodeShared::is_leader(self)
    }
    fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        NodeShared::leader(self)
    }
    fn want_checkpoint_covering(&self, time: u64) {
        NodeShared::want_checkpoint_covering(self, time)
    }
    fn connector(&self) -> &ClusterConnector {
        &self.connector
    }
}

impl checkpointer::CheckpointHolder for NodeShared {
    fn is_leader(&self) -> bool {
        NodeShared::is_leader(self)
    }
    fn checkpoint_wanted(&self) -> &Notify {
        &self.checkpoint_wanted
    }
    fn wanted_time(&self) -> &Mutex<u64> {
        &self.wanted_time
    }
    fn offer_checkpoint(&self, known: SignedCheckpoint) {
        NodeShared::offer_checkpoint(self, known)
    }
}

impl crate::metrics::Probe for NodeShared {
    fn sample(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), crate::metrics::NotReady>> + Send + '_>,
    > {
        Box::pin(async move {
            let ready = self.sample_metrics().await;
            self.metrics.ready.set(i64::from(ready.is_ok()));
            ready
        })
    }
}

/// A gauge's value from an index or count (saturating: gauges are signed).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NodeShared {
    /// Brings the sampled metrics up to date; `Err` says why the node is not ready: it does not
    /// hear from a leader, its applied index is more than `[metrics] ready_lag_entries_max`
    /// behind its own log, or it is corrupt or repairing.
    async fn sample_metrics(&self) -> Result<(), crate::metrics::NotReady> {
        use crate::metrics::NotReady;
        let m = &self.metrics;
        let raft = self.raft.metrics().borrow().clone();
        let is_leader = self.is_leader();
        let last_log = raft.last_log_index.unwrap_or(0);
        let applied = raft.last_applied.map_or(0, |l| l.index);
        m.raft_term.set(gauge_value(raft.current_term));
        m.leader_id
            .set(gauge_value(raft.current_leader.unwrap_or(0)));
        m.is_leader.set(i64::from(is_leader));
        m.last_log_index.set(gauge_value(last_log));
        m.applied_index.set(gauge_value(applied));
        m.follower_lag.clear();
        if let (true, Some(replication)) = (is_leader, &raft.replication) {
            for (follower, matched) in replication.iter() {
                if *follower == self.id {
                    continue;
                }
                let lag = last_log.saturating_sub(matched.map_or(0, |l| l.index));
                m.follower_lag
                    .get_or_create(&vec![("follower", follower.to_string())])
                    .set(gauge_value(lag));
            }
        }
        if let Some(held) = self.checkpoints.borrow().clone() {
            let c = held.checkpoint();
            m.checkpoint_size.set(gauge_value(c.size.0));
            let age_nanos = self.clock.now_unix_nanos().saturating_sub(c.time.0);
            m.checkpoint_age_seconds.set(age_nanos as f64 / 1e9);
            m.checkpoint_cosigners
                .set(gauge_value(held.note().signatures.len() as u64));
        }
        let corruption = self.ledger.corruption().or_else(|| {
            self.ledger
                .engine_failed()
                .then(|| "the storage engine failed".to_string())
        });
        m.corrupt.set(i64::from(corruption.is_some()));
        let repairing = self.repair.is_repairing();
        m.repairing.set(i64::from(repairing));
        let disk_alarm = self.space.measurement().alarm;
        m.disk_space_alarm.set(i64::from(disk_alarm.is_some()));

        if let Some(why) = corruption {
            return Err(NotReady::Corrupt(why));
        }
        if repairing {
            return Err(NotReady::Repairing);
        }
        if !crate::election::hears_leader(&self.elector).await {
            return Err(NotReady::NoLeader);
        }
        let behind = last_log.saturating_sub(applied);
        let max = self.config.metrics.ready_lag_entries_max;
        if behind > max {
            return Err(NotReady::Behind {
                applied,
                behind,
                max,
            });
        }
        Ok(())
    }
}
