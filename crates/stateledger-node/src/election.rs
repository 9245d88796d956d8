//! Elections with PreVote, and the leader's quorum lease (CheckQuorum), driven here rather than by
//! openraft's own timer.
//!
//! **Why.** openraft 0.9 has neither. A follower whose timer fires raises its term at once, so a
//! node cut off from the others raises its term again and again and, when it comes back, its
//! higher term deposes a healthy leader (seen: term 3 → 14 after one partition). And a leader
//! that lost contact with every follower keeps saying it leads: clients that write to it wait for
//! their deadline. openraft 0.10 (still alpha) adds both; moving to it means a second `rand`
//! family, a dozen new dependencies and rewriting the storage, network and simulation runtime
//! glue, while both mechanisms fit at the seam we own — which is also where a repairing node
//! (`crate::repair`) must be kept out of elections.
//!
//! **PreVote.** openraft's election timer is off (`Config::enable_elect = false`); [`run`] takes its
//! place. When a voter has heard from no leader for a randomized election timeout (the leader
//! lease plus a draw from `election_timeout_min..max` while it follows a leader, as openraft
//! does), it asks the other voters whether they *would* vote for it at the next term
//! ([`PreVoteRequest`]), which changes nothing anywhere; only if a quorum of every voter set would
//! does it call `Raft::trigger().elect()`. A voter grants a pre-vote ([`answer_pre_vote`]) when it
//! is not repairing, is not a leader with a quorum, has not heard from a leader within the leader
//! lease (`election_timeout_max`), and the candidate's log is at least as up to date as its own
//! (not its term: a candidate behind in term only learns the term from the real vote). A node
//! that cannot win therefore never raises its term.
//!
//! **CheckQuorum.** A leader that has not had an acknowledgement from a quorum within the leader
//! lease has lost its quorum: [`QuorumLease`] says so, and the node stops acting as a leader
//! toward clients (writes are refused at once with the other members' addresses, status shows
//! `leader-without-quorum`). As in openraft 0.10's CheckQuorum, Raft's own state is untouched: a
//! quorum's acknowledgement restores the lease, and a newer leader's messages depose it as usual.
//! Raft safety never depended on this; it is about clients not waiting on a leader that cannot
//! commit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{AsyncRuntime as _, ServerState};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use stateledger_proto::v1 as pb;
use tokio::sync::watch;

use crate::config::RaftSection;
use crate::raft::codec;
use crate::raft::network::ClusterConnector;
use crate::raft::{LogId, NodeId, NodeInfo, Raft, Runtime, Vote};
use crate::repair::RepairMode;
use crate::store::{log_store, Store};

/// What elections need of the node, and nothing more: its Raft, its timing, whether it may
/// vote and campaign (repair), its quorum lease, the connector to ask the others, and the
/// store that holds its log (for its last log id).
#[derive(Clone)]
pub struct Elector {
    pub id: NodeId,
    /// This node's name, in the reasons it gives.
    pub name: String,
    /// The heartbeat and election timeouts.
    pub timing: RaftSection,
    pub raft: Raft,
    pub repair: Arc<RepairMode>,
    pub quorum_lease: Arc<QuorumLease>,
    pub connector: ClusterConnector,
    pub store: Store,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Elector({})", self.id)
    }
}

/// "Would you vote for me?"
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The term the candidate would stand at (its term + 1).
    pub term: u64,
    pub last_log_id: Option<LogId>,
}

/// The answer, with the reason when refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteReply {
    pub granted: bool,
    pub reason: String,
}

/// Whether this node, as leader, still has a quorum's acknowledgement within the lease.
#[derive(Debug, Default)]
pub struct QuorumLease {
    lost: AtomicBool,
}

impl QuorumLease {
    /// True while this node leads in Raft but has not heard from a quorum within the lease.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn set(&self, lost: bool) -> bool {
        self.lost.swap(lost, Ordering::Relaxed) != lost
    }
}

/// What the election decisions need from Raft's state.
#[derive(Debug)]
struct View {
    state: ServerState,
    vote: Vote,
    /// Since the vote last changed or was confirmed by a leader's message.
    vote_age: Option<Duration>,
    voter: bool,
    /// Each voter set (two during a joint membership change).
    voter_sets: Vec<BTreeSet<NodeId>>,
}

async fn view(elector: &Elector) -> Option<View> {
    let id = elector.id;
    elector
        .raft
        .with_raft_state(move |st| {
            let membership = st.membership_state.effective().membership();
            View {
                state: st.server_state,
                vote: *st.vote_ref(),
                vote_age: st.vote_last_modified().map(|t| t.elapsed()),
                voter: membership.voter_ids().any(|v| v == id),
                voter_sets: membership.get_joint_config().clone(),
            }
        })
        .await
        .ok()
}

fn lease(elector: &Elector) -> Duration {
    Duration::from_millis(elector.timing.election_timeout_max_ms)
}

/// Whether this node hears from a leader: it leads with a quorum within the lease, or a leader's
/// message confirmed its vote within the lease (what a pre-vote is refused for). A node cut off
/// from the others keeps its leader id in Raft's metrics; this says it no longer hears it.
pub async fn hears_leader(elector: &Elector) -> bool {
    let Some(v) = view(elector).await else {
        return false;
    };
    if v.state == ServerState::Leader {
        return !elector.quorum_lease.is_lost();
    }
    v.vote.is_committed() && v.vote_age.is_some_and(|age| age <= lease(elector))
}

/// What a voter answers to a pre-vote (see the module comment).
pub async fn answer_pre_vote(elector: &Elector, req: &PreVoteRequest) -> PreVoteReply {
    let refuse = |reason: String| PreVoteReply {
        granted: false,
        reason,
    };
    if let Err(reason) = elector.repair.check_vote(req.last_log_id.as_ref()) {
        return refuse(reason.to_string());
    }
    let Some(v) = view(elector).await else {
        return refuse("Raft has stopped on this node".into());
    };
    if v.state == ServerState::Leader && !elector.quorum_lease.is_lost() {
        return refuse(format!("{} is the leader", elector.name));
    }
    if v.vote.is_committed() && v.vote_age.is_some_and(|age| age <= lease(elector)) {
        return refuse(format!(
            "{} heard from leader {} within the lease",
            elector.name,
            v.vote.leader_id().voted_for().unwrap_or_default()
        ));
    }
    // No refusal for the candidate's term alone. A candidate whose term is behind but whose
    // log is not learns the higher term from the vote that follows (the refusal carries it) and
    // wins the round after. Refusing here left two voters for good without a leader, each
    // refusing the other — one for its term, the other for its log (simulation seed 94 on 3
    // nodes: the node holding the newest entries was partitioned while the others raised their
    // terms in elections they could not win).
    let own_last = match log_store::last_log_id(&elector.store) {
        Ok(l) => l,
        Err(e) => return refuse(format!("cannot read this node's log: {e}")),
    };
    if req.last_log_id < own_last {
        return refuse(format!(
            "the candidate's log ends at {:?}, before this node's {:?}",
            req.last_log_id, own_last
        ));
    }
    PreVoteReply {
        granted: true,
        reason: String::new(),
    }
}

/// True when the granted voters (and this node) make a quorum of every voter set.
fn is_quorum(sets: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !sets.is_empty()
        && sets
            .iter()
            .all(|set| set.iter().filter(|id| granted.contains(id)).count() * 2 > set.len())
}

/// Asks every other voter; true when a quorum would vote for this node.
async fn pre_vote(elector: &Elector, v: &View, own_last: Option<LogId>) -> bool {
    let req = PreVoteRequest {
        candidate: elector.id,
        term: v.vote.leader_id().get_term() + 1,
        last_log_id: own_last,
    };
    let Ok(data) = codec::encode("pre-vote", &req) else {
        return false;
    };
    let membership = elector.raft.metrics().borrow().membership_config.clone();
    let wait = Duration::from_millis(elector.timing.election_timeout_min_ms);
    let asks = v
        .voter_sets
        .iter()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|id| **id != elector.id)
        .filter_map(|id| {
            let addr = membership.membership().get_node(id)?.raft_addr.clone();
            let data = data.clone();
            let connector = elector.connector.clone();
            let id = *id;
            Some(async move {
                let mut client = connector.client(&addr, id).ok()?;
                let reply = tokio::time::timeout(wait, client.pre_vote(pb::RaftPayload { data }))
                    .await
                    .ok()?
                    .ok()?;
                let reply: PreVoteReply =
                    codec::decode("pre-vote reply", &reply.into_inner().data).ok()?;
                if !reply.granted {
                    tracing::debug!(voter = id, reason = %reply.reason, "pre-vote refused");
                }
                reply.granted.then_some(id)
            })
        });
    // Stop at the first quorum: waiting for a peer that does not answer only widens the window
    // in which another candidate can win meanwhile.
    let mut pending: futures::stream::FuturesUnordered<_> = asks.collect();
    let mut granted = BTreeSet::from([elector.id]);
    while let Some(answer) = futures::StreamExt::next(&mut pending).await {
        if let Some(id) = answer {
            granted.insert(id);
            if is_quorum(&v.voter_sets, &granted) {
                return true;
            }
        }
    }
    is_quorum(&v.voter_sets, &granted)
}

/// A fresh random election timeout for a node whose vote is `vote`.
fn timeout(elector: &Elector, vote: &Vote) -> Duration {
    let r = &elector.timing;
    let spread = r
        .election_timeout_max_ms
        .saturating_sub(r.election_timeout_min_ms)
        .max(1);
    let draw = r.election_timeout_min_ms + Runtime::thread_rng().gen_range(0..spread);
    let base = if vote.is_committed() {
        r.election_timeout_max_ms
    } else {
        0
    };
    Duration::from_millis(base + draw)
}

/// Tracks the leader's quorum lease from Raft's metrics.
fn update_lease(elector: &Elector, m: &openraft::RaftMetrics<NodeId, NodeInfo>) {
    let leading = m.state == ServerState::Leader && m.current_leader == Some(elector.id);
    let voters = m.membership_config.membership().voter_ids().count();
    let lost = leading
        && voters > 1
        && m.millis_since_quorum_ack
            .is_some_and(|ms| Duration::from_millis(ms) > lease(elector));
    if elector.quorum_lease.set(lost) {
        if lost {
            tracing::warn!(
                term = m.current_term,
                "leader without a quorum: no acknowledgement from a quorum within the lease; \
                 refusing writes until one comes back or another leader takes over"
            );
        } else if leading {
            tracing::info!(term = m.current_term, "leader: a quorum acknowledges again");
        }
    }
}

/// Drives elections and the quorum lease until shutdown (see the module comment).
pub async fn run(elector: Elector, mut shutdown: watch::Receiver<bool>) {
    let tick = Duration::from_millis(elector.timing.heartbeat_ms.clamp(10, 200));
    // The vote (and its age) the current timeout was drawn for, and the timeout.
    let mut drawn: Option<(Vote, Duration)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let metrics = elector.raft.metrics().borrow().clone();
        update_lease(&elector, &metrics);
        let Some(v) = view(&elector).await else {
            return;
        };
        if v.state == ServerState::Leader || !v.voter {
            drawn = None;
            continue;
        }
        let own_last = match log_store::last_log_id(&elector.store) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the Raft log; not standing for election");
                continue;
            }
        };
        if !elector.repair.may_campaign(own_last.as_ref()) {
            continue;
        }
        let Some(age) = v.vote_age else {
            continue;
        };
        let limit = match drawn {
            Some((vote, limit)) if vote == v.vote => limit,
            _ => {
                let limit = timeout(&elector, &v.vote);
                drawn = Some((v.vote, limit));
                limit
            }
        };
        if age < limit {
            continue;
        }
        let single = v
            .voter_sets
            .iter()
            .all(|s| s.len() == 1 && s.contains(&elector.id));
        if !single && !pre_vote(&elector, &v, own_last).await {
            // Wait another timeout before asking again.
            drawn = Some((v.vote, age + timeout(&elector, &v.vote)));
            continue;
        }
        // While the pre-vote ran, another candidate may have won (or asked for this node's
        // vote): standing now would depose it with a higher term. Only an unchanged, untouched
        // vote still means "no leader".
        match view(&elector).await {
            Some(now)
                if now.vote == v.vote
                    && now.state != ServerState::Leader
                    && now.vote_age.is_some_and(|a| a >= age) => {}
            Some(_) => {
                drawn = None;
                continue;
            }
            None => return,
        }
        tracing::info!(
            term = v.vote.leader_id().get_term() + 1,
            "no leader heard from and a quorum would vote for this node: standing for election"
        );
        if elector.raft.trigger().elect().await.is_err() {
            return;
        }
        drawn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_must_hold_in_every_voter_set() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<_>>();
        assert!(is_quorum(&[set(&[1, 2, 3])], &set(&[1, 3])));
        assert!(!is_quorum(&[set(&[1, 2, 3])], &set(&[1])));
        assert!(!is_quorum(&[set(&[1, 2, 3, 4])], &set(&[1, 2])));
        // Joint: old {1,2,3}, new {3,4,5}.
        assert!(!is_quorum(
            &[set(&[1, 2, 3]), set(&[3, 4, 5])],
            &set(&[1, 2, 3])
        ));
        assert!(is_quorum(
            &[set(&[1, 2, 3]), set(&[3, 4, 5])],
            &set(&[1, 3, 4])
        ));
        assert!(!is_quorum(&[], &set(&[1])));
    }
}
