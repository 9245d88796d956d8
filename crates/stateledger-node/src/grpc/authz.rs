//! Who may call what on the cluster port. Every call is checked against the caller's certificate
//! identity ([`PeerIdentity`], a `stateledger:` URI in the certificate, docs/SECURITY.md):
//!
//! | calls | who |
//! |---|---|
//! | AppendEntries, Vote, PreVote, SnapshotBegin/Chunk/Finish | a node that is a member, only as itself |
//! | Health, RequestCheckpoint | a node that is a member |
//! | Cosign | the node this node follows as its leader |
//! | AddLearner, Promote, Remove | an admin |
//!
//! "Only as itself": the node id a Raft message says it comes from (the leader id of an
//! AppendEntries or a snapshot, the candidate of a Vote or PreVote) must be the certificate's.
//! "A member": in this node's current (effective) membership. Raft must also accept a leader or
//! candidate that a lagging node's membership does not list yet (the membership that added it
//! may be exactly what the node has not received), so a node that is not a member is still
//! accepted while this node has heard from no leader within the leader lease, or has no
//! membership at all (a node waiting to be added). A removed node's certificate therefore cannot
//! disturb a cluster that has a leader.
//!
//! A refusal is PERMISSION_DENIED naming the identity, the call and the rule, logged at WARN and
//! counted ([`Denials`], shown in Status).
//!
//! Under the simulation there is no TLS: the harness says which identity each simulated address
//! has ([`SimPeers`], passed in `NodeParts`), and the same checks run on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::Request;

use super::CallerError;
use crate::node::NodeShared;
use crate::raft::NodeId;
use crate::tls::identity::PeerIdentity;

/// Who may make a call (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// A node in the membership (with the lagging-node exception of the module comment).
    Member,
    /// The node this node follows as its leader.
    Leader,
    /// An admin.
    Admin,
}

/// Cluster-port calls refused, and the last refusal (shown in Status).
#[derive(Debug, Default)]
pub struct Denials {
    count: AtomicU64,
    last: Mutex<String>,
    /// When a refusal was last logged, and how many were not logged since (a peer sending
    /// refused calls in a loop must not fill the disk with log lines).
    logged: Mutex<(Option<std::time::Instant>, u64)>,
}

/// Refusals are logged at most this often (with how many were not).
pub const DENIAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

impl Denials {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn last(&self) -> String {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, message: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = message.to_string();
    }

    /// Whether to log this refusal now, and how many went unlogged before it.
    fn should_log(&self) -> Option<u64> {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if logged
            .0
            .is_some_and(|at| now.duration_since(at) < DENIAL_LOG_INTERVAL)
        {
            logged.1 += 1;
            return None;
        }
        let unlogged = logged.1;
        *logged = (Some(now), 0);
        Some(unlogged)
    }
}

/// Simulation only: the identity each simulated address stands for (the certificates the
/// harness would have issued).
#[cfg(madsim)]
pub type SimPeers = std::sync::Arc<dyn Fn(std::net::IpAddr) -> Option<PeerIdentity> + Send + Sync>;

/// Refuses a call: PERMISSION_DENIED, logged and counted.
pub fn deny(shared: &NodeShared, who: &str, call: &str, why: &str) -> CallerError {
    let denied = CallerError::Denied {
        who: who.to_string(),
        call: call.to_string(),
        node: shared.config.node.name.clone(),
        why: why.to_string(),
    };
    let message = denied.to_string();
    if let Some(unlogged) = shared.denials.should_log() {
        tracing::warn!(
            caller = who,
            call,
            refused_unlogged_before = unlogged,
            "permission denied: {why}"
        );
    }
    shared.denials.record(&message);
    denied
}

/// The caller's identity, from its TLS certificate (the harness's word under simulation).
pub fn caller<T>(
    shared: &NodeShared,
    request: &Request<T>,
    call: &str,
) -> Result<PeerIdentity, CallerError> {
    #[cfg(not(madsim))]
    {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.get_ref().remote_addr())
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        let certs = request.peer_certs();
        let Some(cert) = certs.as_ref().and_then(|c| c.first()) else {
            return Err(deny(shared, &peer, call, "no client certificate"));
        };
        PeerIdentity::from_cert_der(cert).map_err(|e| {
            deny(
                shared,
                &format!("the certificate of {peer}"),
                call,
                &e.to_string(),
            )
        })
    }
    #[cfg(madsim)]
    {
        let Some(addr) = request.remote_addr() else {
            return Err(deny(shared, "an unknown peer", call, "no peer address"));
        };
        (shared.sim_peers)(addr.ip()).ok_or_else(|| {
            deny(
                shared,
                &addr.to_string(),
                call,
                "the simulation gave this address no identity",
            )
        })
    }
}

/// Checks the caller's role for `call`, returning its identity.
pub async fn authorize<T>(
    shared: &NodeShared,
    request: &Request<T>,
    call: &str,
    allowed: Allowed,
) -> Result<PeerIdentity, CallerError> {
    let identity = caller(shared, request, call)?;
    let who = identity.to_string();
    match (allowed, &identity) {
        (Allowed::Admin, PeerIdentity::Admin(_)) => Ok(identity),
        (Allowed::Admin, _) => Err(deny(shared, &who, call, "only an admin certificate may")),
        (Allowed::Member | Allowed::Leader, PeerIdentity::Node(id)) => {
            let id = *id;
            if allowed == Allowed::Leader {
                let leader = shared.raft.metrics().borrow().current_leader;
                if leader != Some(id) {
                    let now =
                        leader.map_or_else(|| "no leader".to_string(), |l| format!("node {l}"));
                    return Err(deny(
                        shared,
                        &who,
                        call,
                        &format!("only the leader may, and this node follows {now}"),
                    ));
                }
            }
            check_member(shared, id, &who, call).await?;
            Ok(identity)
        }
        (Allowed::Member | Allowed::Leader, _) => {
            Err(deny(shared, &who, call, "only a node certificate may"))
        }
    }
}

/// The node a Raft message says it comes from must be the one whose certificate sent it.
pub fn check_sender(
    shared: &NodeShared,
    identity: &PeerIdentity,
    claimed: Option<NodeId>,
    call: &str,
) -> Result<(), CallerError> {
    if claimed.is_some() && claimed == identity.node_id() {
        return Ok(());
    }
    let claimed = claimed.map_or_else(|| "no node".to_string(), |c| format!("node {c}"));
    Err(deny(
        shared,
        &identity.to_string(),
        call,
        &format!("the message says it comes from {claimed}; a node speaks only as itself"),
    ))
}

async fn check_member(
    shared: &NodeShared,
    id: NodeId,
    who: &str,
    call: &str,
) -> Result<(), CallerError> {
    let metrics = shared.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let member = membership.get_node(&id).is_some();
    let known = membership.nodes().next().is_some();
    if member || !known {
        return Ok(());
    }
    if shared.is_leader() {
        return Err(deny(
            shared,
            who,
            call,
            &format!("node {id} is not a member of this cluster"),
        ));
    }
    // A lagging node may not know the membership that added the sender (module comment).
    let lease = Duration::from_millis(shared.config.raft.election_timeout_max_ms);
    let heard = shared
        .raft
        .with_raft_state(move |st| st.vote_last_modified().is_some_and(|t| t.elapsed() < lease))
        .await
        .unwrap_or(true);
    if !heard {
        tracing::info!(
            caller = who,
            call,
            "accepting a node outside this node's membership: no leader heard within the lease, \
             so this node's membership may be stale"
        );
        return Ok(());
    }
    Err(deny(
        shared,
        who,
        call,
        &format!("node {id} is not a member of this cluster"),
    ))
}
