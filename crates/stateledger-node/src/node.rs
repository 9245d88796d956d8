//! A running node: Raft, the ledger, the two gRPC listeners, the batcher and the checkpointer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use stateledger_core::note::{NoteSigner, NoteVerifier};
use stateledger_proto::v1::cluster_server::ClusterServer;
use stateledger_proto::v1::ledger_server::LedgerServer;
use tokio::sync::{mpsc, watch, Notify};

use crate::batcher::{self, SubmitJob};
use crate::checkpointer;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::grpc::cluster_service::{ClusterService, SnapshotSession};
use crate::grpc::ledger_service::LedgerService;
use crate::ledger::{Ledger, LedgerStateMachine, SignedCheckpoint};
use crate::raft::network::{ClusterConnector, NetworkFactory};
use crate::raft::{NodeId, NodeInfo, Raft};
use crate::recovery::{self, NodeStorage};
use crate::repair::RepairMode;
use crate::store::log_store::LogStore;
use crate::store::node_state::NodeStateHandle;
use crate::store::StoreError;
use crate::tls::TlsMaterial;

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
    pub snapshot_session: tokio::sync::Mutex<Option<SnapshotSession>>,
    /// Set while the node repairs lost state (it then neither votes nor cosigns).
    pub repair: RepairMode,
    /// Whether this node, leading, still has a quorum (CheckQuorum).
    pub quorum_lease: crate::raft::election::QuorumLease,
    /// The node's own record (identity, vote copy, repair flag), in both storages.
    pub node_state: Arc<NodeStateHandle>,
    /// The Raft log file (scrubbed in the background).
    pub wal: crate::store::wal::WalKv,
    /// What background scrubbing has done.
    pub scrub: crate::scrub::ScrubStats,
    /// The disk space alarm, this node's and (as leader) the others'.
    pub space: crate::space::SpaceAlarm,
    /// Where the free space is measured.
    pub disk: Arc<dyn crate::space::DiskSpace>,
    /// Set once when the node must stop ([`NodeHandle::fatal`]).
    pub fatal: watch::Sender<Option<Fatal>>,
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

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{0}; this node will not serve it — remove its data directory and re-add the node so it copies the ledger from the cluster")]
    Corrupt(StoreError),
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("configuration: {0}")]
    Config(String),
}

/// Everything a node needs to start: its config, storage, TLS material, key and clock.
pub struct NodeParts {
    pub config: NodeConfig,
    /// The ledger's and the Raft log's storage, as opened.
    pub storage: NodeStorage,
    pub tls: TlsMaterial,
    pub signer: NoteSigner,
    pub clock: Clock,
    /// Simulation only: known-bad behaviours to re-introduce (all off by default).
    #[cfg(madsim)]
    pub known_bad: crate::known_bad::KnownBad,
    /// Simulation only: which identity each simulated address has (the certificates the
    /// harness would have issued; grpc/authz.rs).
    #[cfg(madsim)]
    pub peers: crate::grpc::authz::SimPeers,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeParts({})", self.config.node.name)
    }
}

/// A started node.
pub struct NodeHandle {
    pub shared: Arc<NodeShared>,
    pub public_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
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
        // Elections are ours: PreVote first, and never while repairing (raft/election.rs).
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

#[cfg(not(madsim))]
async fn bind(addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
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
    config.check().map_err(StartError::Config)?;
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
    let log_store = LogStore::new(
        recovered.store,
        config.node.id,
        recovered.node_state.clone(),
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
    let shared = Arc::new(NodeShared {
        id: config.node.id,
        config: config.clone(),
        raft: raft.clone(),
        ledger: ledger.clone(),
        signer,
        clock,
        connector,
        checkpoints,
        checkpoint_wanted: Notify::new(),
        wanted_time: Mutex::new(0),
        submit_tx,
        sig_tx,
        snapshot_session: tokio::sync::Mutex::new(None),
        repair: {
            let repair = RepairMode::new(
                &config.node.name,
                recovered.repair,
                recovered.node_state.clone(),
            );
            #[cfg(madsim)]
            let repair = repair.with_known_bad(known_bad);
            repair
        },
        node_state: recovered.node_state,
        quorum_lease: Default::default(),
        fatal: watch::channel(None).0,
        wal: recovered.wal,
        scrub: Default::default(),
        space: Default::default(),
        disk: recovered.disk,
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

    let (public_addr, cluster_addr) =
        serve(&config, &tls, &shared, &shutdown_rx, &mut tasks).await?;

    tasks.push(tokio::spawn(crate::sigcheck::run(
        sig_rx,
        ledger.verified(),
    )));
    tasks.push(tokio::spawn(batcher::run(shared.clone(), submit_rx)));
    tasks.push(tokio::spawn(checkpointer::run(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(checkpointer::follow_published(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::repair::run(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::raft::election::run(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(watch_fatal(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::scrub::run(
        shared.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::space::run(
        shared.clone(),
        shutdown_rx.clone(),
    )));

    Ok(NodeHandle {
        shared,
        public_addr,
        cluster_addr,
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

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(not(madsim))]
async fn serve(
    config: &NodeConfig,
    tls: &TlsMaterial,
    shared: &Arc<NodeShared>,
    shutdown_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    use crate::conn_limit::{ActivityLayer, Listeners};
    use crate::raft::network::CLUSTER_MESSAGE_BYTES_MAX;
    let ledger_service = LedgerServer::new(LedgerService::new(shared.clone()))
        .max_decoding_message_size(config.limits.request_bytes_max)
        .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
    let cluster_service = ClusterServer::new(ClusterService::new(shared.clone()))
        .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
    use tonic::transport::Server;

    let public = bind(&config.node.public_listen).await?;
    let cluster = bind(&config.node.cluster_listen).await?;
    let public_addr = public.local_addr().map_err(|e| StartError::Listen {
        addr: config.node.public_listen.clone(),
        reason: e.to_string(),
    })?;
    let cluster_addr = cluster.local_addr().map_err(|e| StartError::Listen {
        addr: config.node.cluster_listen.clone(),
        reason: e.to_string(),
    })?;

    let tls_err = |e: tonic::transport::Error| StartError::Config(format!("TLS: {e}"));
    let c = &config.connections;
    let ms = std::time::Duration::from_millis;
    let handshake = ms(c.tls_handshake_timeout_ms);
    let limits = shared.listeners.clone();
    let mut public_server = Server::builder()
        .tls_config(tls.public_server().timeout(handshake))
        .map_err(tls_err)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(ms(c.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(c.keepalive_timeout_ms)))
        .layer(ActivityLayer::new(limits.public.clone()));
    let router = public_server.add_service(ledger_service);
    let rx = shutdown_rx.clone();
    let limiter = limits.public.clone();
    tasks.push(tokio::spawn(async move {
        let incoming = Listeners::incoming(limiter, public);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "public listener stopped");
        }
    }));

    let mut cluster_server = Server::builder()
        .tls_config(tls.cluster_server().timeout(handshake))
        .map_err(tls_err)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(ms(c.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(c.keepalive_timeout_ms)))
        .layer(ActivityLayer::new(limits.cluster.clone()));
    let router = cluster_server.add_service(cluster_service);
    let rx = shutdown_rx.clone();
    let limiter = limits.cluster.clone();
    tasks.push(tokio::spawn(async move {
        let incoming = Listeners::incoming(limiter, cluster);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "cluster listener stopped");
        }
    }));
    Ok((public_addr, cluster_addr))
}

#[cfg(madsim)]
async fn serve(
    config: &NodeConfig,
    _tls: &TlsMaterial,
    shared: &Arc<NodeShared>,
    shutdown_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    use tonic::transport::Server;
    let ledger_service = LedgerServer::new(LedgerService::new(shared.clone()));
    let cluster_service = ClusterServer::new(ClusterService::new(shared.clone()));
    let parse = |a: &str| {
        a.parse::<SocketAddr>().map_err(|e| StartError::Listen {
            addr: a.to_string(),
            reason: e.to_string(),
        })
    };
    let public_addr = parse(&config.node.public_listen)?;
    let cluster_addr = parse(&config.node.cluster_listen)?;
    let rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(ledger_service)
            .serve_with_shutdown(public_addr, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "public listener stopped");
        }
    }));
    let rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(cluster_service)
            .serve_with_shutdown(cluster_addr, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "cluster listener stopped");
        }
    }));
    Ok((public_addr, cluster_addr))
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

/// Opens the ledger (sled) and the Raft log file in `data_dir` (created mode 0700 if missing).
/// Lost synced data is reported for recovery, not refused here; sled that came back with less
/// than it had synced is [`StartError::Corrupt`].
#[cfg(not(madsim))]
pub fn open_storage(data_dir: &std::path::Path) -> Result<NodeStorage, StartError> {
    let stored = |e: StoreError| match e {
        StoreError::Corrupt { .. } | StoreError::LostWrites { .. } => StartError::Corrupt(e),
        StoreError::Kv(k) if k.is_engine_failure() => StartError::Corrupt(StoreError::Kv(k)),
        other => StartError::Store(other),
    };
    let existed = data_dir.exists();
    crate::store::create_private_dir(data_dir).map_err(|e| {
        StartError::Store(StoreError::Kv(crate::store::KvError::new(
            "create data dir",
            format!("{}: {e}", data_dir.display()),
        )))
    })?;
    if existed {
        tighten_permissions(data_dir);
    }
    let sled = crate::store::sled_kv::SledKv::open(data_dir).map_err(stored)?;
    let log = crate::store::wal::WalKv::open_dir(data_dir).map_err(stored)?;
    let mut ledger_findings = Vec::new();
    if sled.marker_missing {
        ledger_findings.push(format!(
            "the ledger's sync number file {} is missing although sled has been synced, so \
             writes sled lost cannot be ruled out",
            data_dir.join(crate::store::sled_kv::SYNCED_FILE).display()
        ));
    }
    Ok(NodeStorage {
        ledger: Arc::new(sled.kv),
        log: log.kv,
        ledger_fresh: sled.fresh,
        log_fresh: log.fresh,
        ledger_findings,
        disk: Arc::new(crate::space::FileSystem(data_dir.to_path_buf())),
    })
}

/// A data directory readable by others is made owner-only (it holds the ledger); if that is
/// not allowed, say so and go on.
#[cfg(not(madsim))]
fn tighten_permissions(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    if meta.permissions().mode() & 0o077 != 0 {
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            tracing::warn!(dir = %dir.display(), error = %e, "the data directory is readable by others and cannot be made private");
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn data_directories_are_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fresh = tmp.path().join("a/b/data");
        drop(super::open_storage(&fresh).expect("opens"));
        assert_eq!(mode(&fresh), 0o700, "a new data directory");
        assert_eq!(
            mode(&tmp.path().join("a")),
            0o700,
            "and the parents it made"
        );

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        drop(super::open_storage(&open).expect("opens"));
        assert_eq!(
            mode(&open),
            0o700,
            "an existing one readable by others is tightened"
        );
        assert_eq!(
            mode(&open.join("raft-log")),
            0o700,
            "the Raft log's directory"
        );
    }
}

#[cfg(not(madsim))]
impl NodeParts {
    /// Opens everything a config names: sled and the Raft log file in the data dir, TLS files,
    /// the checkpoint key. A data directory that lost synced writes is [`StartError::Corrupt`].
    pub fn load(config: NodeConfig) -> Result<NodeParts, StartError> {
        // Everything that can be checked without the data directory is checked first, so a bad
        // config never leaves a half-made data directory behind.
        config.check().map_err(StartError::Config)?;
        let tls = TlsMaterial::load(&config.tls).map_err(StartError::Config)?;
        tls.check_node(config.node.id).map_err(|e| {
            StartError::Config(format!("TLS files ({}): {e}", config.tls.cert.display()))
        })?;
        let key_text = std::fs::read_to_string(&config.node.checkpoint_key_file).map_err(|e| {
            StartError::Config(format!(
                "cannot read checkpoint key {}: {e}",
                config.node.checkpoint_key_file.display()
            ))
        })?;
        let signer = NoteSigner::parse(&key_text).map_err(|e| {
            StartError::Config(format!(
                "checkpoint key {}: {e}",
                config.node.checkpoint_key_file.display()
            ))
        })?;
        if signer.name != config.node.name {
            return Err(StartError::Config(format!(
                "checkpoint key {} is named {:?} but the node is {:?}",
                config.node.checkpoint_key_file.display(),
                signer.name,
                config.node.name
            )));
        }
        let storage = open_storage(&config.node.data_dir)?;
        Ok(NodeParts {
            config,
            storage,
            tls,
            signer,
            clock: Clock::new(),
        })
    }
}
