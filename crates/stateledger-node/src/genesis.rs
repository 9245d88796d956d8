//! Genesis: a new cluster's first leader proposes the log's origin and the admin keys allowed to
//! sign policy records, before anything else. Only the first genesis takes effect (the ledger
//! ignores later ones), so a leader that is not sure whether its genesis committed proposes it
//! again.

use stateledger_core::note::NoteVerifier;

use crate::config::ClusterSection;
use crate::raft::{Command, Raft};

/// The genesis command `cluster` configures. An admin key that does not parse is left out and
/// logged.
pub fn command(cluster: &ClusterSection) -> Command {
    let admin_keys: Vec<[u8; 32]> = cluster
        .admin_keys
        .iter()
        .filter_map(|k| match NoteVerifier::parse(k) {
            Ok(v) => Some(v.key.to_bytes()),
            Err(e) => {
                tracing::error!(key = %k, error = %e, "ignoring an invalid admin key in the config");
                None
            }
        })
        .collect();
    Command::Genesis {
        origin: cluster.origin.clone(),
        admin_keys,
    }
}

/// Proposes the genesis (the leader only; a follower's proposal is refused by Raft and logged).
pub async fn propose(raft: &Raft, cluster: &ClusterSection) {
    if let Err(e) = raft.client_write(command(cluster)).await {
        tracing::debug!(error = %e, "genesis not committed");
    }
}
