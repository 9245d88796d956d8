//! The liveness phase: every fault is healed, and within a bound of simulated time the cluster
//! must (1) acknowledge a new write, (2) finish the operator's membership change, (3) converge —
//! every member that can serve has finished repairing (if it lost state) and holds the same size
//! and root, covering every acknowledged record —
//! (4) give, from every such member, a receipt for the new write that verifies offline, and
//! (5) reconstruct the same S(T) on every member.
//!
//! Members that may be excluded: decommissioned servers, and the server whose storage was
//! corrupted if it noticed (refused to start, stopped Raft, or flagged itself corrupt).

use std::collections::BTreeMap;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use madsim::task::JoinHandle;
use stateledger_proto::v1 as pb;

use crate::client::{bounded, Conn};
use crate::cluster::Cluster;
use crate::invariants::reconstruction::{self, Query};
use crate::invariants::{acknowledged_records, served_proofs_verify};
use crate::workload::{self, Shared};

/// Indexes of the servers that must converge, or why none can be named yet.
pub fn required_members(cluster: &Cluster) -> Result<Vec<usize>, String> {
    let leader = cluster.leader().ok_or("no leader")?;
    let shared = cluster.servers[leader]
        .shared()
        .ok_or("the leader is not running")?;
    let membership = shared.raft.metrics().borrow().membership_config.clone();
    let mut out = Vec::new();
    for (id, _) in membership.membership().nodes() {
        let Some(index) = cluster.index_of(*id) else {
            return Err(format!("member {id} is no simulated server"));
        };
        let s = &cluster.servers[index];
        if s.decommissioned {
            continue;
        }
        if s.corrupted {
            let noticed = s.start_failure().is_some()
                || s.shared().is_some_and(|n| {
                    n.ledger.corruption().is_some()
                        || n.raft.metrics().borrow().running_state.is_err()
                });
            if noticed {
                continue;
            }
        }
        out.push(index);
    }
    Ok(out)
}

/// Whether the required members agree, or what is still missing.
pub fn converged(cluster: &Cluster, required: &[usize], acked_end: u64) -> Result<(), String> {
    let mut states = BTreeMap::new();
    for i in required {
        let s = &cluster.servers[*i];
        let shared = s.shared().ok_or_else(|| format!("{} is not up", s.name))?;
        if let Some(why) = shared.repair.reason() {
            // A node that lost state must rejoin: caught up with a leader, it votes again.
            return Err(format!("{} is still repairing ({why})", s.name));
        }
        let size = shared.ledger.current_progress().size;
        if size < acked_end {
            return Err(format!(
                "{} holds {size} leaves, fewer than the {acked_end} acknowledged",
                s.name
            ));
        }
        states.insert((size, shared.ledger.root()), s.name.clone());
    }
    if states.len() > 1 {
        return Err(format!("members differ: {states:?}"));
    }
    Ok(())
}

/// Why an end-of-run check (receipts, reconstruction) did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndCheckError {
    /// A node did not answer (yet): ask again while the bound allows.
    NoAnswer(String),
    /// A node answered wrongly.
    Violation {
        invariant: &'static str,
        message: String,
    },
}

/// Fetches and verifies a receipt for `index` from each of `addrs` (on the clients' machine).
pub fn spawn_receipts(
    client_node: &NodeHandle,
    shared: &Shared,
    addrs: Vec<String>,
    index: u64,
    record: [u8; 32],
) -> JoinHandle<Result<Vec<String>, EndCheckError>> {
    let shared = shared.clone();
    client_node.spawn(async move {
        let mut conn = Conn::new(addrs.clone());
        for addr in &addrs {
            let mut c = conn.client(addr);
            let request = pb::GetReceiptRequest {
                leaf_index: index,
                wait_ms: 2000,
            };
            let r = bounded(c.get_receipt(request)).await.map_err(|s| {
                EndCheckError::NoAnswer(format!("{addr}: receipt: {:?} {}", s.code(), s.message()))
            })?;
            let violation = |invariant, message| EndCheckError::Violation { invariant, message };
            let (got, cp) = served_proofs_verify::receipt(&shared.policy, index, &r, addr)
                .map_err(|e| violation(served_proofs_verify::NAME, e))?;
            if got != record {
                return Err(violation(
                    acknowledged_records::NAME,
                    format!(
                        "{addr}: the receipt for the probe at leaf {index} shows another record"
                    ),
                ));
            }
            shared.history.lock().saw_checkpoint(cp);
        }
        Ok(vec![format!(
            "liveness: every member served a verifying receipt for leaf {index}"
        )])
    })
}

/// Asks every member for S(T) of every system at a few times, and compares (see
/// `invariants/reconstruction.rs`).
pub fn spawn_reconstruction(
    client_node: &NodeHandle,
    shared: &Shared,
    addrs: Vec<String>,
    queries: Vec<Query>,
) -> JoinHandle<Result<Vec<String>, EndCheckError>> {
    let policy = shared.policy.clone();
    client_node.spawn(async move {
        reconstruction::check_everywhere(policy, addrs, queries)
            .await
            .map_err(|o| match o {
                reconstruction::Outcome::NoAnswer(m) => EndCheckError::NoAnswer(m),
                reconstruction::Outcome::Violation(message) => EndCheckError::Violation {
                    invariant: reconstruction::NAME,
                    message,
                },
            })
    })
}

/// What to reconstruct: every system at a time before the first leaf, at two times inside the
/// ledger, and at the time of the oldest published checkpoint among the members (so every member
/// can answer each without waiting for a newer one).
pub fn reconstruction_queries(cluster: &Cluster, required: &[usize]) -> Vec<Query> {
    let members: Vec<_> = required
        .iter()
        .filter_map(|i| cluster.servers[*i].shared())
        .collect();
    let Some(first) = members.first() else {
        return Vec::new();
    };
    let published = members
        .iter()
        .filter_map(|m| m.ledger.published_checkpoint())
        .map(|p| (p.checkpoint().size.0, p.checkpoint().time.0))
        .min();
    let Some((published_size, published_time)) = published else {
        return Vec::new();
    };
    let time_of = |i: u64| {
        first
            .ledger
            .leaf(i)
            .ok()
            .and_then(|b| stateledger_core::leaf::Leaf::decode(&b).ok())
            .map(|l| l.ledger_time.0)
    };
    let mut times: Vec<u64> = [0, published_size / 3, published_size * 2 / 3]
        .into_iter()
        .filter(|i| *i < published_size)
        .filter_map(time_of)
        .collect();
    if let Some(t) = times.first_mut() {
        // Just before the first leaf: the empty state.
        *t = t.saturating_sub(1);
    }
    times.push(published_time);
    times.dedup();
    workload::SYSTEMS
        .iter()
        .flat_map(|s| {
            times.iter().map(|at| Query {
                system: s.to_string(),
                at: *at,
            })
        })
        .collect()
}

/// How long after healing each milestone was reached, for the report.
#[derive(Clone, Debug, Default)]
pub struct Milestones {
    pub write_acknowledged: Option<Duration>,
    pub membership_done: Option<Duration>,
    pub converged: Option<Duration>,
}
