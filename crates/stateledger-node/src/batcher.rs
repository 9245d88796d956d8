//! Group commit at the leader: submit requests queue here (bounded: a full queue refuses new
//! requests rather than growing), and every queued request is proposed together as one Raft
//! entry. While proposals are in flight (at most `proposals_in_flight_max`), requests accumulate,
//! so batches grow with load and latency stays low when idle.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::clock::Clock;
use crate::raft::{
    Command, CommandResponse, GroupOutcome, NodeId, NodeInfo, Raft, SubmittedRecord,
};
use crate::space::SpaceAlarm;

/// What the batcher needs of the node: Raft to propose to, the clock that stamps proposals, the
/// disk space accounting, and its limits.
#[derive(Clone)]
pub struct Proposer {
    pub raft: Raft,
    pub clock: Clock,
    pub space: Arc<SpaceAlarm>,
    /// Most records in one proposal (more wait for the next).
    pub batch_records_max: usize,
    /// Most proposals Raft has not answered yet.
    pub proposals_in_flight_max: usize,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proposer")
    }
}

/// One client request waiting for its outcome.
#[derive(Debug)]
pub struct SubmitJob {
    pub records: Vec<SubmittedRecord>,
    pub reply: oneshot::Sender<Result<GroupOutcome, SubmitFailure>>,
}

/// Why a proposal did not produce an outcome.
#[derive(Debug, Clone)]
pub enum SubmitFailure {
    /// Leadership moved; the leader Raft named, if any (the redirect the client gets,
    /// `grpc::redirect_to`).
    NotLeader(Option<(NodeId, NodeInfo)>),
    /// Raft failed (shutting down, storage error).
    Raft(String),
}

/// The batcher loop; ends when every sender is gone.
pub async fn run(proposer: Proposer, mut rx: mpsc::Receiver<SubmitJob>) {
    let permits = Arc::new(Semaphore::new(proposer.proposals_in_flight_max.max(1)));
    while let Some(first) = rx.recv().await {
        // Wait for a proposal slot first: requests arriving meanwhile join this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let jobs = crate::drain::drain_behind(&mut rx, first, proposer.batch_records_max, |j| {
            j.records.len()
        })
        .items;
        let proposer = proposer.clone();
        tokio::spawn(async move {
            propose(&proposer, jobs).await;
            drop(permit);
        });
    }
}

async fn propose(shared: &Proposer, jobs: Vec<SubmitJob>) {
    let mut groups = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    // Counted against every disk since acceptance (`crate::space`); settled below.
    let bytes: u64 = jobs
        .iter()
        .flat_map(|j| &j.records)
        .map(|r| r.record.len() as u64)
        .sum();
    for job in jobs {
        groups.push(job.records);
        replies.push(job.reply);
    }
    let command = Command::Append {
        groups,
        proposed_time: shared.clock.now_unix_nanos(),
    };
    let written = shared.raft.client_write(command).await;
    match &written {
        Ok(response) => shared.space.note_entry(response.log_id.index, bytes),
        Err(_) => shared.space.note_dropped(bytes),
    }
    match written {
        Ok(response) => match response.data {
            CommandResponse::Appended(outcomes) if outcomes.len() == replies.len() => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            other => {
                let failure =
                    SubmitFailure::Raft(format!("unexpected state machine answer {other:?}"));
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        },
        Err(e) => {
            let failure = match e.forward_to_leader() {
                Some(f) => SubmitFailure::NotLeader(
                    f.leader_id
                        .map(|id| (id, f.leader_node.clone().unwrap_or_default())),
                ),
                None => SubmitFailure::Raft(e.to_string()),
            };
            for reply in replies {
                let _ = reply.send(Err(failure.clone()));
            }
        }
    }
}
