//! A running node: Raft, the ledger, the two gRPC listeners, the batcher and the checkpointer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use stateledger_core::note::{NoteSigner, NoteVerifier};
use tokio::sync::{mpsc, watch, Notify};

use crate::batcher::{self, SubmitJob};
use crate::checkpointer;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::grpc::cluster_service::ClusterService;
use crate::grpc::ledger_service::LedgerService;
use crate::ledger::{Ledger, LedgerStateMachine, SignedCheckpoint};
use crate::raft::network::{ClusterConnector, NetworkFactory};
use crate::raft::{NodeId, NodeInfo, Raft};
use crate::recovery;
use crate::repair::RepairMode;
use crate::store::log_store::LogStore;
use crate::store::node_state::NodeStateHandle;

#[cfg(not(madsim))]
pub use crate::node_parts::open_storage;
pub use crate::node_parts::NodeParts;
pub use crate::start_error::StartError;

mod handles;

/// Why a running node must stop (its storage engine failed, or Raft stopped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fatal {
    pub reason: String,
    /// Stored data is corrupt: `stateledger node run` exits with its corruption status (3).
    pub corrupt: bool,
}

/// State shared by the services and background tasks of one node.
pub struct NodeShared {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    pub ledger: Arc<Ledger>,
    pub signer: NoteSigner,
    pub clock: Clock,
    pub connector: ClusterConnector,
    /// The freshest quorum-cosigned checkpoint this node holds.
    pub checkpoints: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    /// Wakes the checkpointer when a reader needs a checkpoint covering `wanted_time`.
    pub checkpoint_wanted: Notify,
    pub wanted_time: Mutex<u64>,
    pub submit_tx: mpsc::Sender<SubmitJob>,
    /// Requests waiting for their signatures to be checked (batched across requests).
    pub sig_tx: mpsc::Sender<crate::sigcheck::SigJob>,
    /// The snapshot being received from the leader, if any.
    pub snapshots: crate::snapshot_receiver::SnapshotReceiver,
    /// Set while the node repairs lost state (it then neither votes nor cosigns).
    pub repair: Arc<RepairMode>,
    /// Whether this node, leading, still has a quorum (CheckQuorum).
    pub quorum_lease: Arc<crate::election::QuorumLease>,
    /// What elections (and answers to pre-votes) need of this node.
    pub elector: crate::election::Elector,
    /// The node's own record (identity, vote copy, repair flag), in both storages.
    pub node_state: Arc<NodeStateHandle>,
    /// The Raft log file (scrubbed in the background).
    pub wal: crate::store::wal::WalKv,
    /// What background scrubbing has done.
    pub scrub: Arc<crate::scrub::ScrubStats>,
    /// The disk space alarm, this node's and (as leader) the others'.
    pub space: Arc<crate::space::SpaceAlarm>,
    /// Where the free space is measured.
    pub disk: Arc<dyn crate::space::DiskSpace>,
    /// Set once when the node must stop ([`NodeHandle::fatal`]).
    pub fatal: watch::Sender<Option<Fatal>>,
    /// This node's metrics (`metrics.rs`), sampled by [`NodeShared`]'s probe.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cluster-port calls refused for the caller's identity (grpc/authz.rs).
    pub denials: crate::grpc::authz::Denials,
    /// The listeners' connection limits and counters.
    #[cfg(not(madsim))]
    pub listeners: crate::conn_limit::Listeners,
    /// Simulation only: the identity of each simulated address (there are no certificates).
    #[cfg(madsim)]
    pub sim_peers: crate::grpc::authz::SimPeers,
    /// Simulation only: the known-bad behaviours this node re-introduces.
    #[cfg(madsim)]
    pub known_bad: crate::known_bad::KnownBad,
}

impl std::fmt::Debug for NodeShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeShared({})", self.id)
    }
}

impl NodeShared {
    /// The current leader, if known, with its address record.
    pub fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        if id == self.id && self.quorum_lease.is_lost() {
            return None;
        }
        let info = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
            .unwrap_or_default();
        Some((id, info))
    }

    /// Leading, with a quorum's acknowledgement within the lease: only then does the node act
    /// as the leader toward clients and cosigners.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id) && !self.quorum_lease.is_lost()
    }

    /// Stops the node: the first reason given is kept, logged, and reported by
    /// [`NodeHandle::fatal`].
    pub fn fail(&self, reason: String, corrupt: bool) {
        self.fatal.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            tracing::error!(reason = %reason, corrupt, "this node stops");
            *current = Some(Fatal { reason, corrupt });
            true
        });
    }

    /// Offers a cosigned checkpoint; kept if it is newer than the one held.
    pub fn offer_checkpoint(&self, known: SignedCheckpoint) {
        self.checkpoints.send_if_modified(|current| {
            let newer = match current {
                None => true,
                Some(c) => {
                    let (k, c) = (known.checkpoint(), c.checkpoint());
                    (k.size, k.time) > (c.size, c.time)
                }
            };
            if newer {
                *current = Some(Arc::new(known));
            }
            newer
        });
    }

    /// Asks the checkpointer for a checkpoint covering `time`.
    pub fn want_checkpoint_covering(&self, time: u64) {
        {
            let mut wanted = self.wanted_time.lock().unwrap_or_else(|p| p.into_inner());
            *wanted = (*wanted).max(time);
        }
        self.checkpoint_wanted.notify_one();
    }

    /// The trust verifiers of the current voters.
    pub fn voter_verifiers(&self) -> Vec<(NodeId, NoteVerifier)> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        membership
            .voter_ids()
            .filter_map(|id| {
                membership
                    .get_node(&id)
                    .and_then(|n| NoteVerifier::parse(&n.checkpoint_key).ok())
                    .map(|v| (id, v))
            })
            .collect()
    }
}

/// A started node.
pub struct NodeHandle {
    pub shared: Arc<NodeShared>,
    pub public_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
    /// Where the metrics listener listens, if `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.shared.id)
    }
}

/// Most log entries in one AppendEntries; a learner this close to the leader counts as caught up.
const REPLICATION_BATCH_ENTRIES: u64 = 64;

fn raft_config(
    config: &NodeConfig,
    #[cfg(madsim)] known_bad: crate::known_bad::KnownBad,
) -> Result<Arc<openraft::Config>, StartError> {
    let r = &config.raft;
    let c = openraft::Config {
        cluster_name: config.cluster.origin.clone(),
        heartbeat_interval: r.heartbeat_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
        max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
        max_payload_entries: REPLICATION_BATCH_ENTRIES,
        // `add_learner(.., blocking)` returns once the learner is within this many entries of
        // the leader's log. openraft's default (5000) made AddLearner report "caught up" at once
        // for any ledger with fewer entries, before the snapshot was even sent.
        replication_lag_threshold: REPLICATION_BATCH_ENTRIES,
        install_snapshot_timeout: 10_000,
        // Elections are ours: PreVote first, and never while repairing (election.rs).
        enable_elect: false,
        ..Default::default()
    };
    #[cfg(madsim)]
    let c = openraft::Config {
        known_bad_commit_without_quorum: known_bad!(known_bad, CommitWithoutQuorum),
        ..c
    };
    c.validate()
        .map(Arc::new)
        .map_err(|e| StartError::Config(e.to_string()))
}

impl NodeInfo {
    pub fn of_config(config: &NodeConfig, signer: &NoteSigner) -> NodeInfo {
        NodeInfo {
            name: config.node.name.clone(),
            raft_addr: config.cluster_addr(),
            public_addr: config.public_addr(),
            checkpoint_key: signer.verifier().to_text(),
        }
    }
}

/// Starts a node.
pub async fn start(parts: NodeParts) -> Result<NodeHandle, StartError> {
    let NodeParts {
        config,
        storage,
        tls,
        signer,
        clock,
        #[cfg(madsim)]
        known_bad,
        #[cfg(madsim)]
        peers,
    } = parts;
    config.check()?;
    let recovered = recovery::recover(
        &config,
        storage,
        &clock,
        #[cfg(madsim)]
        known_bad,
    )
    .await?;
    let ledger = recovered.ledger;
    #[cfg(madsim)]
    ledger.set_known_bad(known_bad);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let log_store = LogStore::observed(
        recovered.store,
        config.node.id,
        recovered.node_state.clone(),
        metrics.log_sync_seconds.clone(),
    );
    #[cfg(madsim)]
    let log_store = log_store.with_known_bad(known_bad);
    let state_machine = LedgerStateMachine::new(ledger.clone());
    let local_ip = config
        .node
        .cluster_listen
        .parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());
    let connector = ClusterConnector::new(tls.clone(), local_ip);
    let raft = Raft::new(
        config.node.id,
        raft_config(
            &config,
            #[cfg(madsim)]
            known_bad,
        )?,
        NetworkFactory::new(connector.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;

    let (submit_tx, submit_rx) = mpsc::channel(config.limits.queue_requests_max);
    let (sig_tx, sig_rx) = mpsc::channel(config.limits.queue_requests_max);
    let (checkpoints, _) = watch::channel(None);
    let repair = {
        let repair = RepairMode::new(
            &config.node.name,
            recovered.repair,
            recovered.node_state.clone(),
        );
        #[cfg(madsim)]
        let repair = repair.with_known_bad(known_bad);
        Arc::new(repair)
    };
    let quorum_lease = Arc::new(crate::election::QuorumLease::default());
    let shared = Arc::new(NodeShared {
        id: config.node.id,
        config: config.clone(),
        raft: raft.clone(),
        ledger: ledger.clone(),
        signer,
        clock,
        connector: connector.clone(),
        checkpoints,
        checkpoint_wanted: Notify::new(),
        wanted_time: Mutex::new(0),
        submit_tx,
        sig_tx,
        snapshots: crate::snapshot_receiver::SnapshotReceiver::new(ledger.clone()),
        repair: repair.clone(),
        node_state: recovered.node_state,
        quorum_lease: quorum_lease.clone(),
        elector: crate::election::Elector {
            id: config.node.id,
            name: config.node.name.clone(),
            timing: config.raft.clone(),
            raft: raft.clone(),
            repair,
            quorum_lease,
            connector,
            store: ledger.store().clone(),
        },
        fatal: watch::channel(None).0,
        wal: recovered.wal,
        scrub: Default::default(),
        space: Default::default(),
        disk: recovered.disk,
        metrics,
        denials: Default::default(),
        #[cfg(not(madsim))]
        listeners: crate::conn_limit::Listeners::new(&config.connections),
        #[cfg(madsim)]
        sim_peers: peers,
        #[cfg(madsim)]
        known_bad,
    });
    if let Some(published) = ledger.published_checkpoint() {
        shared.offer_checkpoint(published);
    }

    // Only a data directory that never held anything bootstraps: a node that lost its state
    // must not start a new cluster of its own.
    if config.cluster.bootstrap
        && recovered.brand_new
        && !raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
    {
        let members: BTreeMap<NodeId, NodeInfo> = config
            .cluster
            .initial_members
            .iter()
            .map(|m| {
                (
                    m.id,
                    NodeInfo {
                        name: m.name.clone(),
                        raft_addr: m.cluster_addr.clone(),
                        public_addr: m.public_addr.clone(),
                        checkpoint_key: m.checkpoint_key.clone(),
                    },
                )
            })
            .collect();
        tracing::info!(members = members.len(), "initializing a new cluster");
        raft.initialize(members)
            .await
            .map_err(|e| StartError::Raft(format!("initialize: {e}")))?;
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let services = crate::listen::Services {
        ledger: LedgerService::new(shared.clone()),
        cluster: ClusterService::new(shared.clone()),
    };
    let (public_addr, cluster_addr) = crate::listen::serve(
        &config,
        &tls,
        services,
        #[cfg(not(madsim))]
        &shared.listeners,
        &shutdown_rx,
        &mut tasks,
    )
    .await?;
    #[cfg(not(madsim))]
    let metrics_addr = match &config.metrics.listen {
        Some(addr) => Some(
            crate::metrics::serve(
                addr,
                shared.metrics.clone(),
                shared.clone(),
                shutdown_rx.clone(),
                &mut tasks,
            )
            .await
            .map_err(|e| StartError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    // The simulation has no plain TCP listener; the metrics still count.
    #[cfg(madsim)]
    let metrics_addr = None;

    tasks.push(tokio::spawn(crate::sigcheck::run(
        sig_rx,
        ledger.verified(),
    )));
    tasks.push(tokio::spawn(batcher::run(
        batcher::Proposer {
            raft: raft.clone(),
            clock: shared.clock.clone(),
            space: shared.space.clone(),
            batch_records_max: config.limits.batch_records_max,
            proposals_in_flight_max: config.limits.proposals_in_flight_max,
        },
        submit_rx,
    )));
    tasks.push(tokio::spawn(checkpointer::run(
        checkpointer::Checkpointer {
            id: config.node.id,
            limits: config.limits.clone(),
            cluster: config.cluster.clone(),
            raft: raft.clone(),
            ledger: ledger.clone(),
            signer: shared.signer.clone(),
            clock: shared.clock.clone(),
            connector: shared.connector.clone(),
            held: shared.clone(),
            #[cfg(madsim)]
            known_bad,
        },
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(checkpointer::follow_published(
        ledger.clone(),
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::repair::run(
        raft.clone(),
        shared.repair.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::election::run(
        shared.elector.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(watch_fatal(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::scrub::run(
        crate::scrub::Scrubber {
            storage: config.storage.clone(),
            ledger: ledger.clone(),
            wal: shared.wal.clone(),
            stats: shared.scrub.clone(),
            clock: shared.clock.clone(),
            stop: {
                let shared = shared.clone();
                Box::new(move |reason| shared.fail(reason, true))
            },
        },
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::space::run(
        crate::space::SpaceWatch {
            id: shared.id,
            name: config.node.name.clone(),
            disk_check_ms: config.storage.disk_check_ms,
            disk_reserve_bytes: config.storage.disk_reserve_bytes,
            raft: raft.clone(),
            connector: shared.connector.clone(),
            disk: shared.disk.clone(),
            alarm: shared.space.clone(),
            is_leader: {
                let shared = shared.clone();
                Box::new(move || shared.is_leader())
            },
        },
        shutdown_rx.clone(),
    )));

    Ok(NodeHandle {
        shared,
        public_addr,
        cluster_addr,
        metrics_addr,
        shutdown,
        tasks,
    })
}

/// How often the fatal watcher looks at the storage engine (Raft's state wakes it at once).
const FATAL_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Stops the node when Raft stops on its own (a storage error, a panic in its core), the
/// storage engine failed, or it leads with corrupt stored data: a node whose Raft is gone must
/// not keep serving an old state, and a leader must be able to send what it stores.
async fn watch_fatal(shared: Arc<NodeShared>, mut shutdown: watch::Receiver<bool>) {
    let mut metrics = shared.raft.metrics();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = &metrics.borrow_and_update().running_state {
            let reason = format!("Raft stopped: {e}");
            let corrupt = shared.ledger.corruption().is_some() || reason.contains("corrupt");
            shared.fail(reason, corrupt);
            return;
        }
        if shared.ledger.engine_failed() {
            let reason = shared
                .ledger
                .corruption()
                .unwrap_or_else(|| "the storage engine failed".into());
            shared.fail(reason, true);
            return;
        }
        if let Some(reason) = shared.ledger.corruption() {
            // A leader must be able to read everything it stores: a follower that needs a
            // snapshot would otherwise never catch up from it (simulation seed 96 on 5 nodes: a
            // corrupt checkpoint note stopped every snapshot to a follower that had fallen
            // behind). A follower keeps running, serving what it can read.
            if metrics.borrow().state == openraft::ServerState::Leader {
                shared.fail(
                    format!(
                        "this node leads but its stored data is corrupt ({reason}); it stops so \
                         that another node leads"
                    ),
                    true,
                );
                return;
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() {
                if !*shutdown.borrow() {
                    shared.fail("Raft stopped".into(), false);
                }
                return;
            },
            _ = tokio::time::sleep(FATAL_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl NodeHandle {
    /// Resolves when the node must stop ([`NodeShared::fail`]), with why.
    pub async fn fatal(&self) -> Fatal {
        let mut rx = self.shared.fatal.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                return Fatal {
                    reason: "the node stopped".into(),
                    corrupt: false,
                };
            }
        }
    }

    /// Stops Raft and the listeners and waits for the background tasks.
    pub async fn shutdown(self) {
        // Tasks learn of the shutdown before Raft stops, so none takes it for a failure.
        let _ = self.shutdown.send(true);
        let _ = self.shared.raft.shutdown().await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
