//! **Reconstruction of S(T) is identical from every node.** After the cluster healed, every member
//! is asked for the history of each system at a few ledger times; each answer is turned into a
//! state proof and verified offline exactly as a client does (`stateledger_client`), and every
//! member must give the same S(T) (the same state digest).
//!
//! This needs gRPC round trips, so unlike the other invariants it is not a checker callback: the
//! liveness phase runs [`check_everywhere`] on the clients' machine once the members converged.

use stateledger_client::state_proof_from_history;
use stateledger_core::hash::Hash;
use stateledger_core::trust::TrustPolicy;
use stateledger_proto::v1 as pb;

use crate::client::{bounded, Conn};

pub const NAME: &str = "reconstruction";

/// One question: the state of `system` at ledger time `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub system: String,
    pub at: u64,
}

/// Why the check did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A node did not answer (yet): ask again later.
    NoAnswer(String),
    /// A node answered with a proof that does not verify, or nodes disagree on S(T).
    Violation(String),
}

/// Asks every node in `addrs` for the state of each query, verifies each answer offline and
/// compares the states. Returns one line per query for the trace.
pub async fn check_everywhere(
    policy: TrustPolicy,
    addrs: Vec<String>,
    queries: Vec<Query>,
) -> Result<Vec<String>, Outcome> {
    let mut conn = Conn::new(addrs.clone());
    let mut lines = Vec::new();
    for q in queries {
        let mut first: Option<(Hash, String, usize)> = None;
        for addr in &addrs {
            let mut c = conn.client(addr);
            let request = pb::GetSystemHistoryRequest {
                system: q.system.clone(),
                at_time: q.at,
                wait_ms: 2000,
            };
            let resp = bounded(c.get_system_history(request)).await.map_err(|s| {
                Outcome::NoAnswer(format!(
                    "{addr}: history of {} at {}: {:?} {}",
                    q.system,
                    q.at,
                    s.code(),
                    s.message()
                ))
            })?;
            let (_, summary) = state_proof_from_history(&q.system, q.at, resp, addr, &policy)
                .map_err(|e| {
                    Outcome::Violation(format!(
                        "{addr}'s state proof for {} at {} does not verify: {e}",
                        q.system, q.at
                    ))
                })?;
            let mutations = summary.state.mutations.len();
            match &first {
                None => first = Some((summary.state_digest, addr.clone(), mutations)),
                Some((digest, from, _)) if *digest != summary.state_digest => {
                    return Err(Outcome::Violation(format!(
                        "S({}) of {} differs: {from} gives state {digest}, {addr} gives {}",
                        q.at, q.system, summary.state_digest
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some((digest, _, mutations)) = first {
            lines.push(format!(
                "reconstruction: S({}) of {} is {} ({mutations} mutations) on every member",
                q.at,
                q.system,
                &digest.to_hex()[..16]
            ));
        }
    }
    Ok(lines)
}
