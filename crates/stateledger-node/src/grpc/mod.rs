//! The gRPC services: the public ledger API and the cluster (Raft, cosigning, admin) API.
//! Both return [`api_error::ApiError`]s, turned into statuses in one place.

pub mod api_error;
pub mod authz;
pub mod cluster_service;
pub mod ledger_service;

pub use api_error::{ApiError, CallerError, NodeError, Queue, Redirect, RetryError};

use crate::node::NodeShared;
use crate::raft::{NodeId, NodeInfo};

/// Where a write should go instead of this node, as this node sees it now.
pub fn redirect(shared: &NodeShared) -> Redirect {
    redirect_to(shared, shared.leader())
}

/// Where a write should go, given the leader Raft named (`leader`, when it named one), falling
/// back to this node's own view.
pub fn redirect_to(shared: &NodeShared, leader: Option<(NodeId, NodeInfo)>) -> Redirect {
    // A node that has not yet received the membership knows the leader's id but not its
    // address: that is no redirect.
    let elsewhere = |l: &(NodeId, NodeInfo)| l.0 != shared.id && !l.1.public_addr.is_empty();
    match leader.filter(elsewhere).or_else(|| shared.leader()) {
        Some((id, info)) if id != shared.id && !info.public_addr.is_empty() => Redirect::Leader {
            id,
            name: info.name,
            public_addr: info.public_addr,
            cluster_addr: info.raft_addr,
        },
        _ if shared.quorum_lease.is_lost() => {
            // CheckQuorum: this node leads in Raft but cannot commit; the others may have
            // elected someone else. Say where else to go.
            let others = shared
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != shared.id)
                .map(|(_, n)| n.public_addr.clone())
                .filter(|a| !a.is_empty())
                .collect();
            Redirect::QuorumLost { others }
        }
        _ => Redirect::Unknown,
    }
}

/// NOT_LEADER from this node's own view of the cluster.
pub fn not_leader(shared: &NodeShared) -> ApiError {
    RetryError::NotLeader {
        node: shared.config.node.name.clone(),
        redirect: redirect(shared),
    }
    .into()
}
