//! What a node does with its storage before Raft starts: compare what each storage says about the
//! other, decide whether the node lost durable state, and if it did, record that it is repairing
//! *before* anything is cut or rewritten.
//!
//! Protocol-aware recovery (after "Protocol-Aware Recovery for Consensus-Based Storage", FAST '18,
//! and TigerBeetle's redundant superblock): a node whose durable state is missing, shorter than
//! what it had synced, damaged, or inconsistent keeps whatever is valid and starts — but in
//! repair mode (`crate::repair`): it does not vote, campaign or cosign until it has caught up with
//! a leader elected without it. Raft's promise holds because a leader elected by the others
//! holds every committed record (its voters' logs do), while a node that forgot what it
//! acknowledged could otherwise help elect a leader that lacks them.
//!
//! What counts as lost state (each reason is reported in the node's log and status):
//! - the Raft log's own checks ([`WalDamage`]): missing file, truncated or rolled back below its
//!   sync marker, a damaged synced record, a missing marker;
//! - the ledger's sync number file missing while sled has been synced;
//! - one storage gone or without the node record while the other says the node had state
//!   ([`node_state`]);
//! - the log's vote older than the record's copy (a vote was lost);
//! - the ledger applied further than the log ever reached (the log rolled back), unless a
//!   snapshot installed that state;
//! - the ledger applied less than the log has purged (the ledger rolled back, or a snapshot
//!   install lost): the log cannot rebuild it, so it is cleared and the node fetches a snapshot;
//! - data without any node record at all.
//!
//! A brand-new node (both storages empty) also starts repairing, as a *new* node: it may vote
//! only in the cluster's very first election, and otherwise only once it has caught up.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::ledger::{keys, Ledger};
use crate::raft::codec;
use crate::raft::{LogId, Vote};
use crate::start_error::StartError;
use crate::store::log_store::{index_key, read_purged, VOTE_KEY};
use crate::store::node_state::{self, Copy, NodeState, NodeStateHandle, Repair};
use crate::store::wal::WalKv;
use crate::store::{Batch, Kv, Store, StoreError, Tree};

/// The node's two storages as opened, with what opening them found.
pub struct NodeStorage {
    /// The ledger (sled; a `MemKv` in the simulation).
    pub ledger: Arc<dyn Kv>,
    /// The Raft log's own file (simulated files in the simulation).
    pub log: WalKv,
    /// The ledger storage held nothing: it was created now.
    pub ledger_fresh: bool,
    /// The log held nothing, not even a sync marker: it was created now.
    pub log_fresh: bool,
    /// What opening the ledger storage found wrong (e.g. its sync number file missing).
    pub ledger_findings: Vec<String>,
    /// The free space of the file system holding them (for the disk space alarm).
    pub disk: Arc<dyn crate::space::DiskSpace>,
}

impl std::fmt::Debug for NodeStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeStorage({:?})", self.log)
    }
}

/// The storage after recovery.
#[derive(Debug)]
pub struct Recovered {
    pub store: Store,
    pub disk: Arc<dyn crate::space::DiskSpace>,
    /// The Raft log file (also inside `store`), for scrubbing.
    pub wal: WalKv,
    pub ledger: Arc<Ledger>,
    pub node_state: Arc<NodeStateHandle>,
    /// Set when the node repairs (this start found lost state, or an earlier one did).
    pub repair: Option<Repair>,
    /// The data directory had never been used: the node may bootstrap a new cluster.
    pub brand_new: bool,
}

fn stored(e: StoreError) -> StartError {
    match e {
        StoreError::Corrupt { .. } | StoreError::LostWrites { .. } => StartError::Corrupt(e),
        StoreError::Kv(k) if k.is_engine_failure() => StartError::Corrupt(StoreError::Kv(k)),
        other => StartError::Store(other),
    }
}

/// Why the Raft log's vote cannot be read: the store failed, or its bytes do not decode.
#[derive(Debug, thiserror::Error)]
enum VoteUnreadable {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Decode(#[from] codec::CodecError),
}

fn read_vote(store: &Store) -> Result<Option<Vote>, VoteUnreadable> {
    match store.get(Tree::Raft, VOTE_KEY)? {
        None => Ok(None),
        Some(b) => Ok(Some(codec::decode("vote", &b)?)),
    }
}

/// The greater of two votes; openraft's order is partial (two uncommitted votes of one term for
/// different nodes are incomparable): then the committed one, else `a`.
fn newest_vote(a: Option<Vote>, b: Option<Vote>) -> Option<Vote> {
    match (a, b) {
        (Some(x), Some(y)) => Some(match x.partial_cmp(&y) {
            Some(std::cmp::Ordering::Less) => y,
            None if y.is_committed() => y,
            _ => x,
        }),
        (x, y) => x.or(y),
    }
}

/// The log id the stored ledger says it applied (`None` when it applied nothing or its
/// metadata cannot be read — opening the ledger reports the latter).
fn stored_applied(store: &Store) -> Option<LogId> {
    let bytes = store.get(Tree::Ledger, keys::META).ok()??;
    codec::decode::<crate::ledger::meta::LedgerMeta>("ledger meta", &bytes)
        .ok()?
        .applied
}

fn last_log_index(store: &Store) -> Result<Option<u64>, StoreError> {
    Ok(store
        .last(Tree::Log, &index_key(0), &index_key(u64::MAX))?
        .and_then(|(k, _)| keys::u64_be(&k)))
}

/// See the module comment.
pub async fn recover(
    config: &NodeConfig,
    storage: NodeStorage,
    clock: &Clock,
    #[cfg(madsim)] known_bad: crate::known_bad::KnownBad,
) -> Result<Recovered, StartError> {
    let NodeStorage {
        ledger: ledger_kv,
        log,
        ledger_fresh,
        log_fresh,
        ledger_findings,
        disk,
    } = storage;
    let name = &config.node.name;
    let log_kv: Arc<dyn Kv> = Arc::new(log.clone());
    let store = Store::with_log(ledger_kv.clone(), log_kv.clone());
    let mut findings = ledger_findings;

    let copies = [
        ("Raft log", node_state::read(&*log_kv)),
        ("ledger", node_state::read(&*ledger_kv)),
    ];
    for (place, copy) in &copies {
        if let Copy::Unreadable(why) = copy {
            findings.push(format!(
                "the node record in the {place} is unreadable: {why}"
            ));
        }
    }
    let known: Option<NodeState> = copies
        .iter()
        .filter_map(|(_, c)| c.state().cloned())
        .max_by_key(|s| s.sequence);
    if let Some(k) = &known {
        if k.node_id != config.node.id || k.origin != config.cluster.origin {
            return Err(StartError::Config(format!(
                "the data directory {} belongs to node {} of cluster {:?}, not to node {} of {:?}; \
                 check node.data_dir and node.id",
                config.node.data_dir.display(),
                k.node_id,
                k.origin,
                config.node.id,
                config.cluster.origin
            )));
        }
    }
    let damage = log.damage();
    if let Some(d) = &damage {
        findings.push(d.to_string());
    }
    let brand_new = known.is_none() && log_fresh && ledger_fresh;
    match &known {
        None if !brand_new => findings.push(
            "the data directory holds data but no node record (it was lost, or written by a \
             pre-release version)"
                .into(),
        ),
        None => {}
        Some(_) => {
            if log_fresh {
                findings.push(
                    "the Raft log is gone (its directory is empty) although the ledger's node \
                     record shows the node had one"
                        .into(),
                );
            } else if matches!(copies[0].1, Copy::Absent) && damage.is_none() {
                findings
                    .push("the Raft log holds no node record (replaced by an older copy?)".into());
            }
            if ledger_fresh {
                findings.push(
                    "the ledger is gone although the Raft log's node record shows the node had one"
                        .into(),
                );
            } else if matches!(copies[1].1, Copy::Absent) {
                findings
                    .push("the ledger holds no node record (replaced by an older copy?)".into());
            }
        }
    }
    // The ledger below the log's purge point: the entries between them are gone from both, so
    // Raft cannot bring the ledger up to date from this log (it would refuse to start). The
    // ledger was rolled back to an older copy, or a snapshot install was lost; either way the
    // log goes and the node fetches a snapshot, as when the ledger is gone.
    let purged = read_purged(&store).ok().flatten();
    let ledger_applied = stored_applied(&store);
    let ledger_behind_purge = !ledger_fresh && purged.is_some() && ledger_applied < purged;
    if ledger_behind_purge {
        findings.push(format!(
            "the ledger applied log index {} but the Raft log was purged up to {}: the entries \
             between them are gone (the ledger was rolled back to an older copy, or a snapshot \
             install was lost)",
            ledger_applied.map_or("nothing".into(), |l| l.index.to_string()),
            purged.map_or(0, |p| p.index)
        ));
    }
    let log_vote = match read_vote(&store) {
        Ok(v) => v,
        Err(why) => {
            findings.push(format!("the Raft log's vote is unreadable: {why}"));
            None
        }
    };
    let known_vote = known.as_ref().and_then(|k| k.vote);
    let vote = newest_vote(log_vote, known_vote);
    if vote != log_vote {
        findings.push(format!(
            "the Raft log's vote ({}) is older than the node record's copy ({}): a vote was lost",
            log_vote.map_or("none".into(), |v| v.to_string()),
            known_vote.map_or("none".into(), |v| v.to_string()),
        ));
    }

    // A node that led before it stopped does not lead again without an election: openraft 0.9
    // would restore it as leader at once, but with the leader replicating while its own fsync runs
    // (vendor/openraft/PATCHES.md), a quorum may have committed entries that this node's log lost
    // in the crash, and a restored leader would reuse their log ids for other entries.
    #[cfg(madsim)]
    let resumes = known_bad.is_on(crate::known_bad::Switch::LeaderResumesAfterRestart);
    #[cfg(not(madsim))]
    let resumes = false;
    let vote = vote.map(|v| match v.leader_id().voted_for() {
        // KNOWN-BAD (simulation only) when `resumes`: the leader takes up where it stopped.
        Some(id) if id == config.node.id && v.is_committed() && !resumes => {
            tracing::info!(
                node = %name,
                term = v.leader_id().get_term(),
                "this node led before it stopped; it stands for election again instead of resuming"
            );
            Vote::new(v.leader_id().get_term(), id)
        }
        _ => v,
    });
    let since_ms = clock.now_unix_nanos() / 1_000_000;
    let repair = if !findings.is_empty() {
        Some(Repair {
            reason: findings.join("; "),
            new_node: false,
            since_ms,
        })
    } else if let Some(r) = known.as_ref().and_then(|k| k.repair.clone()) {
        Some(r)
    } else if brand_new {
        Some(Repair {
            reason: "new node: it votes once it has caught up with a leader (or in the \
                     cluster's first election)"
                .into(),
            new_node: true,
            since_ms,
        })
    } else {
        None
    };
    if let Some(r) = &repair {
        if r.new_node {
            tracing::info!(node = %name, "{}", r.reason);
        } else {
            tracing::error!(
                node = %name,
                reason = %r.reason,
                "this node lost durable state: it keeps what is valid and repairs from the \
                 cluster; until it has caught up with a leader elected without it, it does not \
                 vote, campaign or cosign (docs/OPERATIONS.md, \"Repairing a node\")"
            );
        }
    }

    // Record the decision in the ledger first: from here on the damage in the log may disappear
    // (accepted, rewritten), and the record is what remembers it.
    let mut state = known.unwrap_or_else(|| NodeState::new(config.node.id, &config.cluster.origin));
    state.sequence += 1;
    state.vote = vote;
    state.repair = repair.clone();
    node_state::write(&*ledger_kv, &state).map_err(stored)?;
    ledger_kv.sync().await.map_err(|e| stored(e.into()))?;
    log.accept_damage().map_err(stored)?;
    if (ledger_fresh && !brand_new) || ledger_behind_purge {
        // The ledger is gone (or behind the purge point): Raft cannot rebuild it from a log
        // whose start was purged, so the log goes too (the vote is kept) and the leader sends a
        // snapshot.
        for tree in [Tree::Log, Tree::Raft] {
            store.clear(tree).map_err(stored)?;
        }
    }
    if let Some(v) = vote {
        if read_vote(&store).ok().flatten() != Some(v) {
            let mut b = Batch::new(Tree::Raft);
            b.put(
                VOTE_KEY.to_vec(),
                &codec::encode("vote", &v).map_err(|e| StartError::Raft(e.to_string()))?,
            );
            store.write(b).map_err(stored)?;
        }
    }
    node_state::write(&*log_kv, &state).map_err(stored)?;
    log_kv.sync().await.map_err(|e| stored(e.into()))?;

    let ledger = Ledger::open(store.clone(), config.node.verify_on_start).map_err(stored)?;
    let node_state = Arc::new(NodeStateHandle::new(log_kv, ledger_kv, state));

    // The ledger can run ahead of the log only through a snapshot install; otherwise the log
    // went back in time (a rolled-back copy that its own checks could not see).
    let mut repair = repair;
    if repair.is_none() {
        if let Some(why) = ledger_ahead_of_log(&store, &ledger).map_err(stored)? {
            tracing::error!(node = %name, reason = %why, "this node lost durable state; it repairs from the cluster");
            let r = Repair {
                reason: why,
                new_node: false,
                since_ms,
            };
            node_state
                .update(|s| s.repair = Some(r.clone()))
                .await
                .map_err(stored)?;
            repair = Some(r);
        }
    }
    Ok(Recovered {
        store,
        disk,
        wal: log,
        ledger,
        node_state,
        repair,
        brand_new,
    })
}

fn ledger_ahead_of_log(store: &Store, ledger: &Ledger) -> Result<Option<String>, StoreError> {
    let Some(applied) = ledger.meta().applied else {
        return Ok(None);
    };
    let last = last_log_index(store)?;
    let purged: Option<LogId> = read_purged(store)?;
    let reached = last.max(purged.map(|p| p.index));
    if reached.is_some_and(|r| r >= applied.index) {
        return Ok(None);
    }
    let snapshot = match store.get(Tree::Ledger, keys::SNAPSHOT)? {
        Some(b) => codec::decode::<crate::ledger::snapshot::StoredSnapshot>("snapshot", &b)
            .ok()
            .and_then(|s| s.meta.last_log_id),
        None => None,
    };
    if snapshot == Some(applied) {
        return Ok(None);
    }
    Ok(Some(format!(
        "the ledger applied log index {} but the Raft log reaches only {} (rolled back?)",
        applied.index,
        reached.map_or("nothing".into(), |r| r.to_string())
    )))
}

/// What [`repair_data_dir`] did.
#[cfg(not(madsim))]
#[derive(Debug)]
pub struct RepairReport {
    /// Where the old storage went (kept as evidence; never removed by the node).
    pub quarantine: std::path::PathBuf,
    /// The vote carried over to the new storage.
    pub vote: Option<Vote>,
    /// Why the vote could not be read, when it could not.
    pub vote_unknown: Option<String>,
}

/// `stateledger node repair`: moves a (stopped) node's ledger and Raft log aside into
/// `<data_dir>/quarantine-<unix seconds>/`, and makes new, empty storage that keeps the node's
/// identity and vote and is marked repairing. Started again, the node copies the ledger from the
/// cluster and votes once it has caught up (docs/OPERATIONS.md, "Repairing a node").
#[cfg(not(madsim))]
pub fn repair_data_dir(config: &NodeConfig, why: &str) -> Result<RepairReport, StartError> {
    let dir = &config.node.data_dir;
    if !dir.exists() {
        return Err(StartError::Config(format!(
            "the data directory {} does not exist: there is nothing to repair (a new node starts \
             with `stateledger node run`)",
            dir.display()
        )));
    }
    let io = |op: &'static str, e: std::io::Error| {
        StartError::Store(StoreError::Kv(crate::store::KvError::new(
            op,
            format!("{}: {e}", dir.display()),
        )))
    };
    // Read what survives of the node's record and vote, without changing anything yet.
    let mut votes = Vec::new();
    let mut problems = Vec::new();
    match crate::store::sled_kv::SledKv::open(dir) {
        Ok(s) => match node_state::read(&s.kv) {
            Copy::Present(st) => votes.push(st.vote),
            Copy::Absent => problems.push("the ledger has no node record".to_string()),
            Copy::Unreadable(e) => problems.push(format!("the ledger's node record: {e}")),
        },
        Err(StoreError::Kv(k)) if k.reason.contains("another node process") => {
            return Err(StartError::Config(format!(
                "{}; stop the node before repairing it",
                k.reason
            )))
        }
        Err(e) => problems.push(format!("the ledger cannot be opened: {e}")),
    }
    match WalKv::open_dir(dir) {
        Ok(w) => {
            let store = Store::new(Arc::new(w.kv.clone()));
            votes.push(read_vote(&store).ok().flatten());
            match node_state::read(&w.kv) {
                Copy::Present(st) => votes.push(st.vote),
                Copy::Absent => problems.push("the Raft log has no node record".to_string()),
                Copy::Unreadable(e) => problems.push(format!("the Raft log's node record: {e}")),
            }
        }
        Err(e) => problems.push(format!("the Raft log cannot be opened: {e}")),
    }
    let vote = votes.into_iter().fold(None, newest_vote);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let quarantine = dir.join(format!("quarantine-{stamp}"));
    crate::store::create_private_dir(&quarantine).map_err(|e| io("create quarantine", e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io("list data dir", e))? {
        let entry = entry.map_err(|e| io("list data dir", e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("quarantine-") {
            continue;
        }
        std::fs::rename(entry.path(), quarantine.join(&name))
            .map_err(|e| io("move into quarantine", e))?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync data dir", e))?;
    // New, empty storage holding the record: repairing, with the vote carried over.
    let sled = crate::store::sled_kv::SledKv::open(dir)
        .map_err(StartError::Store)?
        .kv;
    let log = WalKv::open_dir(dir).map_err(StartError::Store)?.kv;
    let mut state = NodeState::new(config.node.id, &config.cluster.origin);
    state.sequence = 1;
    state.vote = vote;
    state.repair = Some(Repair {
        reason: format!("an operator ran `stateledger node repair`: {why}"),
        new_node: false,
        since_ms: stamp * 1000,
    });
    node_state::write(&sled, &state).map_err(StartError::Store)?;
    sled.sync_blocking()
        .map_err(|e| StartError::Store(e.into()))?;
    let store = Store::new(Arc::new(log.clone()));
    if let Some(v) = vote {
        let mut b = Batch::new(Tree::Raft);
        b.put(
            VOTE_KEY.to_vec(),
            &codec::encode("vote", &v).map_err(|e| StartError::Raft(e.to_string()))?,
        );
        store.write(b).map_err(StartError::Store)?;
    }
    node_state::write(&log, &state).map_err(StartError::Store)?;
    log.sync_blocking()
        .map_err(|e| StartError::Store(e.into()))?;
    Ok(RepairReport {
        quarantine,
        vote,
        vote_unknown: (vote.is_none() && !problems.is_empty()).then(|| problems.join("; ")),
    })
}
