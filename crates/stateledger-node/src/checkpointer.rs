//! Checkpoint cosigning. The leader turns its applied state into a checkpoint, signs it, asks the
//! other voters to cosign (each signs only a root, head root and time it computed itself), and
//! once a majority of voters signed, holds it for receipts and publishes it through Raft so every
//! node can serve it. Rounds run as soon as the ledger moves, at most every
//! `checkpoint_interval_ms`; publication at most every `checkpoint_publish_interval_ms`. When a
//! reader wants a checkpoint covering a time the ledger has not reached, the leader first
//! proposes a clock tick ([`Command::tick`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::note::{Note, NoteSignature, NoteSigner};
use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use tokio::sync::{watch, Notify};
use tonic::transport::Channel;

use crate::clock::Clock;
use crate::config::{ClusterSection, LimitsSection};
use crate::ledger::{check_quorum, Ledger, SignedCheckpoint};
use crate::raft::network::ClusterConnector;
use crate::raft::{Command, CommandResponse, NodeId, Raft};

/// How long a cosign request may take.
const COSIGN_TIMEOUT: Duration = Duration::from_secs(2);
/// How far ahead of the leader's clock a wanted time may be and still be covered (client clocks
/// run a little ahead of the leader's).
const WANTED_AHEAD_MAX_NANOS: u64 = 2_000_000_000;

/// What the checkpointer needs of the node, and nothing more.
pub struct Checkpointer {
    pub id: NodeId,
    /// The checkpoint and publication intervals.
    pub limits: LimitsSection,
    /// What a new cluster's genesis proposal says.
    pub cluster: ClusterSection,
    pub raft: Raft,
    pub ledger: Arc<Ledger>,
    /// Signs this node's checkpoints.
    pub signer: NoteSigner,
    pub clock: Clock,
    pub connector: ClusterConnector,
    /// Who leads, the checkpoints held, and what readers want (the node).
    pub held: Arc<dyn CheckpointHolder>,
    /// Simulation only: the known-bad behaviours this node re-introduces.
    #[cfg(madsim)]
    pub known_bad: crate::known_bad::KnownBad,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpointer({})", self.id)
    }
}

/// The node's side of checkpointing: whether it leads, the checkpoints it holds, and the time
/// readers want a checkpoint to cover. The node implements it (`node.rs`).
pub trait CheckpointHolder: Send + Sync + 'static {
    /// Leading, with a quorum's acknowledgement within the lease.
    fn is_leader(&self) -> bool;
    /// Notified when a reader wants a checkpoint covering [`CheckpointHolder::wanted_time`].
    fn checkpoint_wanted(&self) -> &Notify;
    /// The latest time a reader wants covered (0: none).
    fn wanted_time(&self) -> &std::sync::Mutex<u64>;
    /// Offers a cosigned checkpoint; kept if it is newer than the one held.
    fn offer_checkpoint(&self, known: SignedCheckpoint);
}

/// The leader's checkpoint loop (idle on followers).
pub async fn run(checkpointer: Checkpointer, shutdown: watch::Receiver<bool>) {
    let limits = checkpointer.limits.clone();
    let interval = Duration::from_millis(limits.checkpoint_interval_ms);
    let publish_interval = Duration::from_millis(limits.checkpoint_publish_interval_ms);
    let mut progress = checkpointer.ledger.progress();
    let mut clients: HashMap<NodeId, ClusterClient<Channel>> = HashMap::new();
    let mut last: Option<(u64, u64)> = None;
    let mut last_publish = tokio::time::Instant::now();
    // A cosigned note waiting for publication, with its (size, time).
    let mut unpublished: Option<(String, (u64, u64))> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            r = progress.changed() => if r.is_err() { return },
            _ = checkpointer.held.checkpoint_wanted().notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(200)) => {},
        }
        if !checkpointer.held.is_leader() {
            last = None;
            continue;
        }
        if checkpointer.ledger.origin().is_none() {
            // Not a checkpoint: a new cluster's first leader fixes the origin first.
            crate::genesis::propose(&checkpointer.raft, &checkpointer.cluster).await;
            continue;
        }
        let wanted = *checkpointer
            .held
            .wanted_time()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(mut candidate) = checkpointer.ledger.candidate_checkpoint() else {
            continue;
        };
        if wanted > candidate.time.0 {
            let now = checkpointer.clock.now_unix_nanos();
            if wanted <= now.saturating_add(WANTED_AHEAD_MAX_NANOS) {
                // A reader wants a checkpoint covering a time the ledger has not reached:
                // advance the ledger clock without a record.
                if let Err(e) = checkpointer
                    .raft
                    .client_write(Command::tick(now.max(wanted)))
                    .await
                {
                    tracing::debug!(error = %e, "clock tick not committed");
                    continue;
                }
                match checkpointer.ledger.candidate_checkpoint() {
                    Some(c) => candidate = c,
                    None => continue,
                }
            }
        }
        let key = (candidate.size.0, candidate.time.0);
        let stale = last == Some(key);
        if !stale && (candidate.size.0 > 0 || wanted > 0) {
            if let Some(signed) = cosign(&checkpointer, &candidate, &mut clients).await {
                last = Some(key);
                unpublished = Some((signed.text().to_string(), key));
                checkpointer.held.offer_checkpoint(signed);
                if candidate.time.0 >= wanted {
                    let mut w = checkpointer
                        .held
                        .wanted_time()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if *w <= candidate.time.0 {
                        *w = 0;
                    }
                }
            }
        }
        let due = last_publish.elapsed() >= publish_interval || wanted > 0;
        if due {
            if let Some((note, note_key)) = unpublished.take() {
                last_publish = tokio::time::Instant::now();
                let published = checkpointer
                    .raft
                    .client_write(Command::PublishCheckpoint { note })
                    .await;
                let refusal = match published {
                    Ok(r) if matches!(r.data, CommandResponse::Published { .. }) => None,
                    Ok(r) => Some(format!("{:?}", r.data)),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = refusal {
                    let published = checkpointer
                        .ledger
                        .published_checkpoint()
                        .map_or((0, 0), |p| (p.checkpoint().size.0, p.checkpoint().time.0));
                    let again = cosign_again(note_key, published);
                    tracing::debug!(reason = %why, again, "checkpoint not published");
                    if again {
                        last = None;
                    }
                }
            }
        } else if unpublished.is_some() {
            // Come back when publication is due even if nothing else happens.
            let wake = checkpointer.held.clone();
            let wait = publish_interval.saturating_sub(last_publish.elapsed());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                wake.checkpoint_wanted().notify_one();
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// After the publication of the checkpoint `refused` (size, time) failed: whether to cosign the
/// current state again. Yes while that state is still newer than the published checkpoint: a
/// checkpoint cosigned by a majority of the voters before a membership change can be short of
/// a majority when it is applied (simulation seed 500 on 3 nodes: 2 signatures, then a 4th
/// voter), and without a new round nothing would be published until the ledger moved again.
/// No once something as new is published (another leader published the same state): a new
/// round would be refused the same way, again and again while the cluster is idle.
fn cosign_again(refused: (u64, u64), published: (u64, u64)) -> bool {
    refused > published
}

/// Gathers signatures of a majority of voters on `cp`. Returns the cosigned note.
async fn cosign(
    checkpointer: &Checkpointer,
    cp: &Checkpoint,
    clients: &mut HashMap<NodeId, ClusterClient<Channel>>,
) -> Option<SignedCheckpoint> {
    let note = gather_signatures(checkpointer, cp, clients).await?;
    match SignedCheckpoint::from_note(note) {
        Ok(signed) => Some(signed),
        Err(e) => {
            // The body is our own candidate's text: never expected.
            tracing::error!(error = %e, "our own cosigned checkpoint does not parse");
            None
        }
    }
}

/// Gathers signatures of a majority of voters on `cp`. Returns the note they signed.
async fn gather_signatures(
    checkpointer: &Checkpointer,
    cp: &Checkpoint,
    clients: &mut HashMap<NodeId, ClusterClient<Channel>>,
) -> Option<Note> {
    let text = cp.to_text();
    if let Err(e) = checkpointer.ledger.check_checkpoint(cp) {
        tracing::warn!(error = %e, "not signing our own candidate checkpoint");
        return None;
    }
    let mut note = Note::sign(&text, &[&checkpointer.signer]);
    let membership = checkpointer
        .raft
        .metrics()
        .borrow()
        .membership_config
        .clone();
    if check_quorum(&membership, &note).is_ok() {
        return Some(note);
    }
    let mut pending = FuturesUnordered::new();
    for id in membership.membership().voter_ids() {
        if id == checkpointer.id {
            continue;
        }
        let Some(info) = membership.membership().get_node(&id) else {
            continue;
        };
        let client = match clients.get(&id) {
            Some(c) => c.clone(),
            None => match checkpointer.connector.client(&info.raft_addr, id) {
                Ok(c) => {
                    clients.insert(id, c.clone());
                    c
                }
                Err(e) => {
                    tracing::warn!(node = id, error = %e, "cannot reach voter for cosigning");
                    continue;
                }
            },
        };
        let request = pb::CosignRequest {
            checkpoint: text.clone(),
        };
        pending.push(async move {
            let mut client = client;
            let result = tokio::time::timeout(COSIGN_TIMEOUT, client.cosign(request)).await;
            (id, result)
        });
    }
    while let Some((id, result)) = pending.next().await {
        match result {
            Ok(Ok(resp)) => {
                let r = resp.into_inner();
                note.add_signature(NoteSignature {
                    name: r.key_name,
                    key_id: r.key_id,
                    signature: r.signature,
                });
                if check_quorum(&membership, &note).is_ok() {
                    return Some(note);
                }
            }
            Ok(Err(status)) => {
                tracing::debug!(node = id, code = ?status.code(), message = status.message(), "cosign refused");
                if status.code() == tonic::Code::Unavailable {
                    clients.remove(&id);
                }
            }
            Err(_) => tracing::debug!(node = id, "cosign timed out"),
        }
    }
    if known_bad!(checkpointer.known_bad, CheckpointShortOfQuorum) {
        // KNOWN-BAD, simulation only: the signatures gathered so far are taken as enough.
        return Some(note);
    }
    None
}

/// Every node: whenever a checkpoint is published through Raft, hold it for serving.
pub async fn follow_published(
    ledger: Arc<Ledger>,
    held: Arc<dyn CheckpointHolder>,
    shutdown: watch::Receiver<bool>,
) {
    let mut progress = ledger.progress();
    let mut seen = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let current = *progress.borrow_and_update();
        if seen != Some((current.published_size, current.clock)) {
            seen = Some((current.published_size, current.clock));
            if let Some(published) = ledger.published_checkpoint() {
                held.offer_checkpoint(published);
            }
        }
        if progress.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cosign_again;

    #[test]
    fn a_refused_checkpoint_is_cosigned_again_only_while_it_is_newer_than_the_published_one() {
        // Short of a majority after a membership change: still newer, cosign again.
        assert!(cosign_again((96, 20), (95, 10)));
        // A checkpoint of the same size but a later time is newer too.
        assert!(cosign_again((95, 20), (95, 10)));
        // The same state, or an older one, is already published: never again.
        assert!(!cosign_again((95, 10), (95, 10)));
        assert!(!cosign_again((94, 30), (95, 10)));
    }
}
