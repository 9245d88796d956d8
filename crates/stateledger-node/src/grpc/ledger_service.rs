//! The public ledger API (server-authenticated TLS).

use std::sync::Arc;
use std::time::Duration;

use stateledger_core::heads::HeadTerminal;
use stateledger_core::limits::RECORD_BYTES_MAX;
use stateledger_core::record::decode_record;
use stateledger_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{not_leader, redirect_to, ApiError, CallerError, Queue, RetryError};
use crate::batcher::{SubmitFailure, SubmitJob};
use crate::checkpoint_wait::{wait_checkpoint, wait_published_covering};
use crate::node::NodeShared;
use crate::raft::{GroupOutcome, SubmittedRecord};
use crate::sigcheck::SigJob;

/// Most leaves one ListSystemEntries answer holds.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Most names one ListSystemsNear answer holds.
pub const SYSTEMS_NEAR_MAX: usize = 20;

/// See the module comment.
#[derive(Debug, Clone)]
pub struct LedgerService {
    shared: Arc<NodeShared>,
}

impl LedgerService {
    pub fn new(shared: Arc<NodeShared>) -> LedgerService {
        LedgerService { shared }
    }

    fn wait(&self, wait_ms: u32) -> Duration {
        Duration::from_millis(u64::from(
            wait_ms.min(self.shared.config.limits.wait_ms_max),
        ))
    }

    /// Submit: checks the request, its signatures and the ledger's rules, then waits for the
    /// batcher's outcome.
    async fn submit_records(
        &self,
        records: Vec<pb::SignedRecord>,
    ) -> Result<pb::SubmitResponse, ApiError> {
        let limits = &self.shared.config.limits;
        if records.is_empty() {
            return Err(CallerError::NoRecords.into());
        }
        if records.len() > limits.request_records_max {
            return Err(CallerError::TooManyRecords {
                count: records.len(),
                max: limits.request_records_max,
            }
            .into());
        }
        if !self.shared.is_leader() {
            return Err(not_leader(&self.shared));
        }
        let voters: Vec<u64> = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if let Some(why) = self.shared.space.write_refusal(&voters) {
            return Err(RetryError::DiskSpace { why }.into());
        }
        let accepted = self
            .shared
            .space
            .accept(records.iter().map(|r| r.record.len() as u64).sum());
        let mut group = Vec::with_capacity(records.len());
        for (position, r) in records.into_iter().enumerate() {
            if r.record.len() > RECORD_BYTES_MAX {
                return Err(CallerError::RecordTooLong {
                    position,
                    len: r.record.len(),
                    max: RECORD_BYTES_MAX,
                }
                .into());
            }
            decode_record(&r.record)
                .map_err(|error| CallerError::InvalidRecord { position, error })?;
            let writer_key: [u8; 32] =
                r.writer_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| CallerError::WriterKeyLength {
                        position,
                        len: r.writer_key.len(),
                    })?;
            group.push(SubmittedRecord {
                record: r.record,
                writer_key,
                signature: r.signature,
            });
        }
        // Signatures are checked in batches across concurrent requests (sigcheck.rs).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .sig_tx
            .try_send(SigJob {
                records: group,
                reply: tx,
            })
            .map_err(|_| RetryError::QueueFull {
                queue: Queue::Signatures,
                max: limits.queue_requests_max,
            })?;
        let (group, verdict) = rx.await.map_err(|_| RetryError::ShuttingDown)?;
        // KNOWN-BAD (simulation only) when set: a record whose signature failed is proposed
        // anyway, and only the apply-time check of every node stands in its way.
        let verdict = if known_bad!(self.shared.known_bad, UnsignedRecordAccepted) {
            Ok(())
        } else {
            verdict
        };
        verdict.map_err(|bad| CallerError::BadSignature {
            position: bad.position,
            reason: bad.reason,
        })?;
        match self.shared.ledger.precheck(&group) {
            Err(e) => return Err(e.into()),
            Ok(Some(GroupOutcome::Refused { position, refusal })) => {
                return Err(CallerError::Refused { position, refusal }.into())
            }
            Ok(Some(GroupOutcome::AllDuplicates(indexes))) => {
                return Err(CallerError::AllDuplicates { indexes }.into())
            }
            Ok(_) => {}
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = std::time::Instant::now();
        self.shared
            .submit_tx
            .try_send(SubmitJob {
                records: group,
                reply: tx,
            })
            .map_err(|_| RetryError::QueueFull {
                queue: Queue::Proposals,
                max: limits.queue_requests_max,
            })?;
        // The batcher settles the bytes once they are in a log entry (or not).
        accepted.proposed();
        let outcome = rx.await.map_err(|_| RetryError::ShuttingDown)?;
        let metrics = &self.shared.metrics;
        if outcome.is_ok() {
            crate::metrics::observe_since(&metrics.commit_seconds, queued);
        }
        match outcome {
            Ok(GroupOutcome::Appended(appended)) => {
                metrics.records_appended.inc_by(appended.len() as u64);
                Ok(pb::SubmitResponse {
                    results: appended
                        .into_iter()
                        .map(|a| pb::SubmitResult {
                            leaf_index: a.index,
                            ledger_time: a.time,
                            leaf_hash: a.leaf_hash.to_vec(),
                        })
                        .collect(),
                })
            }
            Ok(GroupOutcome::AllDuplicates(indexes)) => {
                Err(CallerError::AllDuplicates { indexes }.into())
            }
            Ok(GroupOutcome::Refused { position, refusal }) => {
                Err(CallerError::Refused { position, refusal }.into())
            }
            Err(SubmitFailure::NotLeader(leader)) => Err(RetryError::NotLeader {
                node: self.shared.config.node.name.clone(),
                redirect: redirect_to(&self.shared, leader),
            }
            .into()),
            Err(SubmitFailure::Raft(reason)) => Err(RetryError::NotCommitted { reason }.into()),
        }
    }
}

fn hashes(proof: Vec<stateledger_core::hash::Hash>) -> Vec<Vec<u8>> {
    proof.into_iter().map(|h| h.0.to_vec()).collect()
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        match self.submit_records(request.into_inner().records).await {
            Ok(response) => Ok(Response::new(response)),
            Err(e) => {
                self.shared.metrics.refused(e.code().1.as_str_name());
                Err(e.into())
            }
        }
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::GetEntryResponse>, Status> {
        let index = request.into_inner().leaf_index;
        let leaf = self.shared.ledger.leaf(index).map_err(ApiError::from)?;
        Ok(Response::new(pb::GetEntryResponse { leaf }))
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        let r = request.into_inner();
        let size = self.shared.ledger.current_progress().size;
        if r.leaf_index >= size {
            return Err(ApiError::from(crate::ledger::ReadError::OutOfRange {
                index: r.leaf_index,
                size,
            })
            .into());
        }
        let held = wait_checkpoint(&self.shared, r.leaf_index + 1, 0, self.wait(r.wait_ms)).await?;
        let cp = held.checkpoint();
        let leaf = self
            .shared
            .ledger
            .leaf(r.leaf_index)
            .map_err(ApiError::from)?;
        let proof = self
            .shared
            .ledger
            .inclusion_proof(r.leaf_index, cp.size.0)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetReceiptResponse {
            leaf,
            inclusion_proof: hashes(proof),
            checkpoint: held.text().to_string(),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let r = request.into_inner();
        if r.at_size != 0 {
            return match self.shared.ledger.checkpoint_at(r.at_size) {
                Ok(Some(note)) => Ok(Response::new(pb::GetCheckpointResponse {
                    checkpoint: note,
                })),
                Ok(None) => Err(ApiError::from(CallerError::NoCheckpointAt {
                    size: r.at_size,
                    near: self
                        .shared
                        .ledger
                        .checkpoint_sizes_near(r.at_size)
                        .map_err(ApiError::from)?,
                })
                .into()),
                Err(e) => Err(ApiError::from(e).into()),
            };
        }
        let held = wait_checkpoint(
            &self.shared,
            r.min_size,
            r.covering_time,
            self.wait(r.wait_ms),
        )
        .await?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: held.text().to_string(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let r = request.into_inner();
        if r.old_size > r.new_size {
            return Err(ApiError::invalid(
                format!(
                    "old_size {} is larger than new_size {}",
                    r.old_size, r.new_size
                ),
                "",
            )
            .into());
        }
        let proof = self
            .shared
            .ledger
            .consistency_proof(r.old_size, r.new_size)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            proof: hashes(proof),
        }))
    }

    async fn list_system_entries(
        &self,
        request: Request<pb::ListSystemEntriesRequest>,
    ) -> Result<Response<pb::ListSystemEntriesResponse>, Status> {
        let r = request.into_inner();
        stateledger_core::record::validate::check_system_name(&r.system)
            .map_err(|e| ApiError::invalid("", e))?;
        let limit = if r.limit == 0 {
            LIST_LIMIT_MAX
        } else {
            (r.limit as usize).min(LIST_LIMIT_MAX)
        };
        let (leaves, more) = self
            .shared
            .ledger
            .system_leaves(&r.system, r.from_index, limit)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListSystemEntriesResponse {
            leaves,
            more,
        }))
    }

    async fn get_system_history(
        &self,
        request: Request<pb::GetSystemHistoryRequest>,
    ) -> Result<Response<pb::GetSystemHistoryResponse>, Status> {
        let r = request.into_inner();
        stateledger_core::record::validate::check_system_name(&r.system)
            .map_err(|e| ApiError::invalid("", e))?;
        wait_published_covering(&self.shared, r.at_time, self.wait(r.wait_ms)).await?;
        let history = self
            .shared
            .ledger
            .system_history(&r.system, r.at_time)
            .map_err(ApiError::from)?;
        let proven = |(leaf, proof): (Vec<u8>, Vec<stateledger_core::hash::Hash>)| pb::ProvenLeaf {
            leaf,
            inclusion_proof: hashes(proof),
        };
        let head_proof = history.head_proof.map(|p| pb::HeadProof {
            siblings: p.siblings.iter().map(|h| h.0.to_vec()).collect(),
            terminal: Some(match p.terminal {
                HeadTerminal::Empty => pb::head_proof::Terminal::Empty(true),
                HeadTerminal::Leaf { key, head } => pb::head_proof::Terminal::Leaf(pb::HeadLeaf {
                    key: key.0 .0.to_vec(),
                    head_index: head.index.0,
                    count: head.count,
                }),
            }),
        });
        Ok(Response::new(pb::GetSystemHistoryResponse {
            checkpoint: history.checkpoint.into_text(),
            leaves: history.leaves.into_iter().map(proven).collect(),
            next: history.next.map(proven),
            head_proof,
        }))
    }

    async fn list_systems_near(
        &self,
        request: Request<pb::ListSystemsNearRequest>,
    ) -> Result<Response<pb::ListSystemsNearResponse>, Status> {
        let r = request.into_inner();
        let limit = (r.limit as usize).clamp(1, SYSTEMS_NEAR_MAX);
        Ok(Response::new(pb::ListSystemsNearResponse {
            systems: self.shared.ledger.systems_near(&r.name, limit),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let shared = &self.shared;
        let metrics = shared.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let role = role_name(
            metrics.state,
            membership.learner_ids().any(|id| id == shared.id),
            shared.quorum_lease.is_lost(),
        );
        let leader = shared.leader();
        let progress = shared.ledger.current_progress();
        let checkpoint_size = shared
            .checkpoints
            .borrow()
            .as_ref()
            .map_or(0, |c| c.checkpoint().size.0);
        Ok(Response::new(pb::StatusResponse {
            node_id: shared.id,
            name: shared.config.node.name.clone(),
            role: role.to_string(),
            leader_id: leader.as_ref().map_or(0, |(id, _)| *id),
            leader_public_addr: leader.map(|(_, i)| i.public_addr).unwrap_or_default(),
            term: metrics.current_term,
            applied_log_index: metrics.last_applied.map_or(0, |l| l.index),
            tree_size: progress.size,
            root: shared.ledger.root().0.to_vec(),
            ledger_time: progress.clock,
            checkpoint_size,
            members: membership
                .nodes()
                .map(|(id, info)| pb::Member {
                    node_id: *id,
                    name: info.name.clone(),
                    public_addr: info.public_addr.clone(),
                    raft_addr: info.raft_addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            corruption: shared.ledger.corruption().unwrap_or_default(),
            repair: shared.repair.reason().unwrap_or_default(),
            scrub_passes: shared.scrub.passes(),
            scrub_bytes: shared.scrub.bytes(),
            scrub_last_pass_unix_ms: shared.scrub.last_pass_unix_ms(),
            scrub_problems: shared.scrub.problems(),
            disk_free_bytes: shared.space.measurement().free,
            disk_reserve_bytes: shared.space.measurement().reserve,
            disk_alarm: shared.space.write_refusal(&voters).unwrap_or_default(),
            origin: shared.ledger.origin().unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            security: Some(pb::SecurityCounters {
                permission_denied: shared.denials.count(),
                last_permission_denied: shared.denials.last(),
                bad_signature_groups: shared.ledger.bad_signature_groups(),
                ..connection_counters(shared)
            }),
        }))
    }
}

/// The listeners' connection counters (none in the simulation, which has no sockets).
fn connection_counters(shared: &crate::node::NodeShared) -> pb::SecurityCounters {
    #[cfg(not(madsim))]
    {
        use std::sync::atomic::Ordering;
        let l = &shared.listeners;
        let (refused, evicted, idle_closed) = l.totals();
        pb::SecurityCounters {
            public_connections: l.public.stats.open.load(Ordering::Relaxed),
            cluster_connections: l.cluster.stats.open.load(Ordering::Relaxed),
            connections_refused: refused,
            connections_evicted: evicted,
            connections_idle_closed: idle_closed,
            ..Default::default()
        }
    }
    #[cfg(madsim)]
    {
        let _ = shared;
        pb::SecurityCounters::default()
    }
}

/// The role a node reports. openraft calls every node a learner until it has received a
/// membership, and a voter that has not yet heard from the cluster looks exactly like one: it is
/// reported as "starting" until the membership names it a learner. A leader that has lost its
/// quorum lease says so.
fn role_name(
    state: openraft::ServerState,
    listed_as_learner: bool,
    quorum_lost: bool,
) -> &'static str {
    match state {
        openraft::ServerState::Leader if quorum_lost => "leader-without-quorum",
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner if listed_as_learner => "learner",
        openraft::ServerState::Learner => "starting",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

#[cfg(test)]
mod tests {
    use openraft::ServerState;

    use super::role_name;

    #[test]
    fn a_node_outside_the_membership_is_starting_not_a_learner() {
        assert_eq!(role_name(ServerState::Learner, false, false), "starting");
        assert_eq!(role_name(ServerState::Learner, true, false), "learner");
        assert_eq!(role_name(ServerState::Follower, false, false), "follower");
        assert_eq!(role_name(ServerState::Leader, false, false), "leader");
        assert_eq!(
            role_name(ServerState::Leader, false, true),
            "leader-without-quorum"
        );
    }
}
