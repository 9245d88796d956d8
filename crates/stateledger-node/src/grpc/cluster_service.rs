//! The cluster service (mutual TLS only): Raft RPCs, snapshot transfer, checkpoint cosigning and
//! membership administration. Every call first checks who is calling (`super::authz`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::ChangeMembers;
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::note::NoteVerifier;
use stateledger_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::authz::{authorize, check_sender, Allowed};
use super::{not_leader, ApiError, CallerError, RetryError};
use crate::election::{self, PreVoteRequest};
use crate::ledger::CheckpointError;
use crate::node::NodeShared;
use crate::raft::codec;
use crate::raft::network::{
    AppendReply, FinishReply, InstallRefused, SnapshotBegin, SnapshotBeginReply, SnapshotFinish,
    VoteReply,
};
use crate::raft::{NodeId, NodeInfo, TypeConfig};

/// How long a cosigner waits to apply the checkpoint's size itself.
const COSIGN_APPLY_WAIT: Duration = Duration::from_secs(2);

/// See the module comment.
#[derive(Debug, Clone)]
pub struct ClusterService {
    shared: Arc<NodeShared>,
}

impl ClusterService {
    /// Proposes a membership change and waits for it to commit; returns its log index. A node
    /// that stopped leading meanwhile answers NOT_LEADER with the new leader.
    async fn change_members(&self, change: ChangeMembers<NodeId, NodeInfo>) -> Result<u64, Status> {
        let resp = self
            .shared
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| {
                let forward = e.forward_to_leader().is_some();
                admin_error(&self.shared, e, forward)
            })?;
        Ok(resp.log_id.index)
    }
    pub fn new(shared: Arc<NodeShared>) -> ClusterService {
        ClusterService { shared }
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, data: &[u8]) -> Result<T, Status> {
    codec::decode(what, data).map_err(|e| ApiError::invalid("", e).into())
}

fn reply<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Response<pb::RaftPayload>, Status> {
    codec::encode(what, value)
        .map(|data| Response::new(pb::RaftPayload { data }))
        .map_err(|e| ApiError::internal(e).into())
}

fn admin_error<E: std::fmt::Display>(shared: &NodeShared, e: E, forward: bool) -> Status {
    if forward {
        not_leader(shared).into()
    } else {
        CallerError::Precondition(e.to_string()).into()
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        const CALL: &str = "AppendEntries";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode("append entries", &request.into_inner().data)?;
        check_sender(
            &self.shared,
            &caller,
            rpc.vote.leader_id().voted_for(),
            CALL,
        )?;
        let leader_commit = rpc.leader_commit.map(|l| l.index);
        let result: AppendReply = self.shared.raft.append_entries(rpc).await;
        if matches!(
            result,
            Ok(AppendEntriesResponse::Success
                | AppendEntriesResponse::PartialSuccess(_)
                | AppendEntriesResponse::Conflict)
        ) {
            self.shared.repair.heard_from_leader(leader_commit);
        }
        reply("append entries reply", &result)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        const CALL: &str = "Vote";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let rpc: VoteRequest<NodeId> = decode("vote", &request.into_inner().data)?;
        check_sender(
            &self.shared,
            &caller,
            rpc.vote.leader_id().voted_for(),
            CALL,
        )?;
        if let Err(why) = self.shared.repair.check_vote(rpc.last_log_id.as_ref()) {
            tracing::warn!(
                candidate = rpc.vote.leader_id().voted_for().unwrap_or_default(),
                "vote refused: {why}"
            );
            return Err(RetryError::from(why).into());
        }
        let result: VoteReply = self.shared.raft.vote(rpc).await;
        reply("vote reply", &result)
    }

    async fn pre_vote(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        const CALL: &str = "PreVote";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let rpc: PreVoteRequest = decode("pre-vote", &request.into_inner().data)?;
        check_sender(&self.shared, &caller, Some(rpc.candidate), CALL)?;
        let answer = election::answer_pre_vote(&self.shared.elector, &rpc).await;
        reply("pre-vote reply", &answer)
    }

    async fn snapshot_begin(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        const CALL: &str = "SnapshotBegin";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let begin: SnapshotBegin = decode("snapshot begin", &request.into_inner().data)?;
        check_sender(
            &self.shared,
            &caller,
            begin.vote.leader_id().voted_for(),
            CALL,
        )?;
        let sender = caller.node_id().unwrap_or_default();
        let session = self
            .shared
            .snapshots
            .begin(sender, begin.header.size)
            .await
            .map_err(ApiError::from)?;
        reply(
            "snapshot begin reply",
            &SnapshotBeginReply {
                session,
                size: self.shared.ledger.meta().size,
                root: self.shared.ledger.root().0,
            },
        )
    }

    async fn snapshot_chunk(
        &self,
        request: Request<pb::SnapshotChunkRequest>,
    ) -> Result<Response<pb::SnapshotChunkResponse>, Status> {
        const CALL: &str = "SnapshotChunk";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let chunk = request.into_inner();
        let receiver = &self.shared.snapshots;
        let sender = receiver
            .sender(chunk.session)
            .await
            .map_err(ApiError::from)?;
        check_sender(&self.shared, &caller, Some(sender), CALL)?;
        // Session ids are never reused, so the chunk lands only in the session just checked.
        receiver
            .chunk(chunk.session, chunk.start_index, &chunk.leaves)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SnapshotChunkResponse {}))
    }

    async fn snapshot_finish(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        const CALL: &str = "SnapshotFinish";
        let caller = authorize(&self.shared, &request, CALL, Allowed::Member).await?;
        let finish: SnapshotFinish = decode("snapshot finish", &request.into_inner().data)?;
        check_sender(
            &self.shared,
            &caller,
            finish.vote.leader_id().voted_for(),
            CALL,
        )?;
        let receiver = &self.shared.snapshots;
        let sender = receiver
            .sender(finish.session)
            .await
            .map_err(ApiError::from)?;
        check_sender(&self.shared, &caller, Some(sender), CALL)?;
        let staged = receiver
            .finish(
                finish.session,
                finish.header.clone(),
                finish.from,
                &finish.checkpoints,
            )
            .await
            .map_err(ApiError::from)?;
        let snapshot = openraft::Snapshot {
            meta: finish.meta.clone(),
            snapshot: Box::new(staged),
        };
        let result: FinishReply = self
            .shared
            .raft
            .install_full_snapshot(finish.vote, snapshot)
            .await
            .map_err(|e| InstallRefused {
                reason: e.to_string(),
            });
        receiver.end().await;
        match &result {
            Ok(_) => self
                .shared
                .repair
                .heard_from_leader(finish.meta.last_log_id.map(|l| l.index)),
            Err(e) => tracing::error!(error = %e, "snapshot install failed"),
        }
        reply("snapshot finish reply", &result)
    }

    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        authorize(&self.shared, &request, "Health", Allowed::Member).await?;
        Ok(Response::new(crate::space::health(&self.shared.space)))
    }

    async fn cosign(
        &self,
        request: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignResponse>, Status> {
        authorize(&self.shared, &request, "Cosign", Allowed::Leader).await?;
        let text = request.into_inner().checkpoint;
        self.shared
            .repair
            .check_cosign()
            .map_err(RetryError::from)?;
        let cp = Checkpoint::parse(&text).map_err(|e| ApiError::invalid("checkpoint body: ", e))?;
        let mut progress = self.shared.ledger.progress();
        let reached = |p: &crate::ledger::Progress| {
            p.size > cp.size.0 || (p.size == cp.size.0 && p.clock >= cp.time.0)
        };
        let wait = async {
            loop {
                if reached(&progress.borrow_and_update()) {
                    return true;
                }
                if progress.changed().await.is_err() {
                    return false;
                }
            }
        };
        if !matches!(
            tokio::time::timeout(COSIGN_APPLY_WAIT, wait).await,
            Ok(true)
        ) {
            return Err(RetryError::NotApplied(format!(
                "this node has not applied size {} with time {} yet",
                cp.size, cp.time
            ))
            .into());
        }
        self.shared
            .ledger
            .check_checkpoint(&cp)
            .map_err(|e| -> ApiError {
                match e {
                    CheckpointError::Store(s) => s.into(),
                    e => CallerError::Precondition(format!("will not cosign: {e}")).into(),
                }
            })?;
        let signature = self.shared.signer.sign(text.as_bytes());
        Ok(Response::new(pb::CosignResponse {
            key_name: self.shared.signer.name.clone(),
            key_id: self.shared.signer.key_id,
            signature: signature.to_vec(),
        }))
    }

    async fn request_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        authorize(&self.shared, &request, "RequestCheckpoint", Allowed::Member).await?;
        let r = request.into_inner();
        if !self.shared.is_leader() {
            return Err(not_leader(&self.shared).into());
        }
        let wait = Duration::from_millis(u64::from(
            r.wait_ms.min(self.shared.config.limits.wait_ms_max),
        ));
        let held = crate::checkpoint_wait::wait_checkpoint(
            &self.shared,
            r.min_size,
            r.covering_time,
            wait,
        )
        .await?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: held.text().to_string(),
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let by = authorize(&self.shared, &request, "AddLearner", Allowed::Admin).await?;
        let r = request.into_inner();
        stateledger_core::note::check_key_name(&r.name).map_err(|e| ApiError::invalid("", e))?;
        NoteVerifier::parse(&r.checkpoint_key)
            .map_err(|e| ApiError::invalid("checkpoint_key: ", e))?;
        if r.raft_addr.is_empty() || r.public_addr.is_empty() {
            return Err(ApiError::invalid("raft_addr and public_addr are required", "").into());
        }
        if !self.shared.is_leader() {
            return Err(not_leader(&self.shared).into());
        }
        tracing::info!(
            by = %by,
            node_id = r.node_id,
            name = %r.name,
            raft_addr = %r.raft_addr,
            "admin: adding a node as a learner"
        );
        let info = NodeInfo {
            name: r.name,
            raft_addr: r.raft_addr,
            public_addr: r.public_addr,
            checkpoint_key: r.checkpoint_key,
        };
        let resp = self
            .shared
            .raft
            .add_learner(r.node_id, info, true)
            .await
            .map_err(|e| {
                let forward = e.forward_to_leader().is_some();
                admin_error(&self.shared, e, forward)
            })?;
        tracing::info!(by = %by, node_id = r.node_id, log_index = resp.log_id.index, "admin: node added as a learner");
        Ok(Response::new(pb::AdminResponse {
            message: format!("node {} added as a learner and caught up", r.node_id),
            log_index: resp.log_id.index,
        }))
    }

    async fn promote(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let by = authorize(&self.shared, &request, "Promote", Allowed::Admin).await?;
        let id = request.into_inner().node_id;
        if !self.shared.is_leader() {
            return Err(not_leader(&self.shared).into());
        }
        tracing::info!(by = %by, node_id = id, "admin: promoting a learner to voter");
        let log_index = self
            .change_members(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        tracing::info!(by = %by, node_id = id, log_index, "admin: node is now a voter");
        Ok(Response::new(pb::AdminResponse {
            message: format!("node {id} is now a voter"),
            log_index,
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let by = authorize(&self.shared, &request, "Remove", Allowed::Admin).await?;
        let id = request.into_inner().node_id;
        if !self.shared.is_leader() {
            return Err(not_leader(&self.shared).into());
        }
        tracing::info!(by = %by, node_id = id, "admin: removing a node");
        let membership = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&id).is_none() {
            return Err(CallerError::NotAMember(id).into());
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let mut index = self.change_members(change).await?;
        if is_voter {
            // Removing a voter leaves it a learner; drop it from the cluster entirely.
            if let Ok(r) = self
                .shared
                .raft
                .change_membership(
                    ChangeMembers::<NodeId, NodeInfo>::RemoveNodes(BTreeSet::from([id])),
                    false,
                )
                .await
            {
                index = r.log_id.index;
            }
        }
        tracing::info!(by = %by, node_id = id, log_index = index, "admin: node removed from the cluster");
        Ok(Response::new(pb::AdminResponse {
            message: format!("node {id} removed from the cluster"),
            log_index: index,
        }))
    }
}
