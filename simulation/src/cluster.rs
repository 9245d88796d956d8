//! The simulated machines: one madsim node per StateLedger server, each running the real
//! [`stateledger_node::node::start`] on its own [`MemKv`], which the harness keeps across
//! restarts the way a disk outlives a process. A crash kills the madsim node and drops the writes
//! the store had not synced; a restart runs `start` again on what is left.
//!
//! Faults overlap, so crashes, pauses and clogged links are held with counts: a server comes back
//! (or a link opens) only when the last fault holding it ends.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use stateledger_core::note::NoteSigner;
use stateledger_node::clock::Clock;
use stateledger_node::config::{
    ClusterSection, LimitsSection, MemberConfig, NodeConfig, NodeSection, RaftSection, TlsSection,
};
use stateledger_node::node::{start, NodeParts, NodeShared};
use stateledger_node::recovery::NodeStorage;
use stateledger_node::store::wal::mem::{MemDir, MemDirSnapshot};
use stateledger_node::store::wal::{frame, marker, WalKv, WalOptions};
use stateledger_node::store::{Kv, MemKv, MemKvCopy};
use stateledger_node::tls::TlsMaterial;

use crate::options::KnownBad;
use crate::plan::StateLoss;
use crate::trace::Trace;

/// Raft log file sizes for simulated files (held in memory), and the known-bad switches.
pub fn sim_wal(known_bad: KnownBad) -> WalOptions {
    WalOptions {
        preallocate_bytes: 64 * 1024,
        compact_bytes_min: 4 << 20,
        known_bad,
    }
}

/// The log's origin in every simulated cluster.
pub const ORIGIN: &str = "stateledger.sim/cluster";
const PUBLIC_PORT: u16 = 7000;
const CLUSTER_PORT: u16 = 7100;

/// IP of server `index` (0-based): 10.0.0.(index + 1).
pub fn server_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, (index + 1) as u8))
}

/// IP of the machine the clients and the operator run on.
pub fn client_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))
}

/// The identity each simulated address has, as the certificates would say: server `index` is
/// node `index + 1`, the client machine is the operator (admin). There is no TLS in the
/// simulation, so the node's authorization checks (grpc/authz.rs) run on this.
pub fn sim_peers() -> stateledger_node::grpc::authz::SimPeers {
    use stateledger_node::tls::identity::PeerIdentity;
    Arc::new(|ip: IpAddr| {
        if ip == client_ip() {
            return Some(PeerIdentity::Admin("operator".into()));
        }
        match ip {
            IpAddr::V4(v4) if v4.octets()[..3] == [10, 0, 0] && v4.octets()[3] > 0 => {
                Some(PeerIdentity::Node(u64::from(v4.octets()[3])))
            }
            _ => None,
        }
    })
}

/// The checkpoint key of node `id`. Fixed per id: keys are not what the seed should vary.
pub fn node_signer(id: u64) -> NoteSigner {
    NoteSigner::from_seed(&format!("node-{id}"), &[id as u8; 32]).expect("valid key name")
}

/// The admin key named at genesis (signs grants).
pub fn admin_signer() -> NoteSigner {
    NoteSigner::from_seed("admin", &[0xad; 32]).expect("valid key name")
}

/// What runs on a server's madsim node right now.
#[derive(Clone)]
pub enum Running {
    Starting,
    Up(Arc<NodeShared>),
    /// `start` refused (e.g. it found corrupt data).
    Failed(String),
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Running::Starting => f.write_str("Starting"),
            Running::Up(_) => f.write_str("Up"),
            Running::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

/// Filled by the node's init task: the incarnation number and what it runs.
#[derive(Debug)]
pub struct Slot {
    pub incarnation: u64,
    pub running: Running,
}

/// One server.
pub struct Server {
    pub index: usize,
    pub id: u64,
    pub name: String,
    pub public_addr: String,
    pub cluster_addr: String,
    pub signer: NoteSigner,
    /// The ledger's storage (sled in production).
    pub kv: Arc<MemKv>,
    /// The directory of the Raft log's file (simulated files; production's code runs on them),
    /// synced apart from the ledger's storage.
    pub log_dir: Arc<MemDir>,
    pub clock: Clock,
    node: NodeHandle,
    slot: Arc<Mutex<Slot>>,
    /// Faults holding it crashed / paused.
    down_holds: u32,
    pause_holds: u32,
    pub decommissioned: bool,
    /// A stored byte of this server was flipped.
    pub corrupted: bool,
    /// What this server lost of its synced state (faults), in order; a server that lost nothing
    /// and was not corrupted must never repair.
    pub losses: Vec<String>,
    /// Set by a loss the node must notice: the first incarnation from which it must start in
    /// repair mode (or refuse to start), and the loss.
    pub must_detect: Option<(u64, String)>,
    /// The durable storage as copied by the last `TakeCopy` fault.
    copy: Option<(MemDirSnapshot, MemKvCopy)>,
    /// The fsync time drawn for this server (a `SlowDisk` fault raises it for a while).
    sync_delay: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", self.name)
    }
}

impl Server {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Powered and not paused.
    pub fn is_running(&self) -> bool {
        !self.decommissioned && self.down_holds == 0 && self.pause_holds == 0
    }

    pub fn is_down(&self) -> bool {
        self.decommissioned || self.down_holds > 0
    }

    /// The running node, if it is up (paused nodes are not).
    pub fn shared(&self) -> Option<Arc<NodeShared>> {
        if !self.is_running() {
            return None;
        }
        match &self.slot().running {
            Running::Up(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The node even if paused (its memory can be read, it cannot act).
    pub fn shared_even_paused(&self) -> Option<Arc<NodeShared>> {
        if self.is_down() {
            return None;
        }
        match &self.slot().running {
            Running::Up(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn incarnation(&self) -> u64 {
        self.slot().incarnation
    }

    pub fn start_failure(&self) -> Option<String> {
        match &self.slot().running {
            Running::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// One short line for the trace.
    pub fn summary(&self) -> String {
        if self.decommissioned {
            return format!("{}:gone", self.id);
        }
        if self.down_holds > 0 {
            return format!("{}:down", self.id);
        }
        let paused = if self.pause_holds > 0 { "(paused)" } else { "" };
        let running = self.slot().running.clone();
        match running {
            Running::Starting => format!("{}:starting{paused}", self.id),
            Running::Failed(_) => format!("{}:failed", self.id),
            Running::Up(s) => {
                let m = s.raft.metrics().borrow().clone();
                let role = match m.state {
                    openraft::ServerState::Leader => "L",
                    openraft::ServerState::Follower => "F",
                    openraft::ServerState::Candidate => "C",
                    openraft::ServerState::Learner => "l",
                    openraft::ServerState::Shutdown => "X",
                };
                let p = s.ledger.current_progress();
                let root = s.ledger.root().to_hex();
                let repairing = if s.repair.is_repairing() {
                    "(repairing)"
                } else {
                    ""
                };
                format!(
                    "{}:{role}{paused}{repairing} t{} a{} s{} r{} p{}",
                    self.id,
                    m.current_term,
                    m.last_applied.map_or(0, |l| l.index),
                    p.size,
                    &root[..8],
                    p.published_size
                )
            }
        }
    }
}

/// Per-run tuning drawn from the seed.
#[derive(Clone, Debug)]
pub struct ServerTuning {
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot; fewer means more purging and more snapshot installs.
    pub logs_kept_after_snapshot: u64,
    pub sync_delay: Vec<Duration>,
}

/// All servers plus the network state the harness imposed.
pub struct Cluster {
    pub servers: Vec<Server>,
    /// Voters at the start; the last server is the spare.
    pub voters: usize,
    handle: Handle,
    /// Clogged directed links (from, to) → how many faults hold them.
    links: BTreeMap<(usize, usize), u32>,
    trace: Trace,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({} servers)", self.servers.len())
    }
}

fn config_of(index: usize, voters: usize, tuning: &ServerTuning) -> NodeConfig {
    let id = index as u64 + 1;
    let members = (0..voters)
        .map(|i| MemberConfig {
            id: i as u64 + 1,
            name: format!("node-{}", i + 1),
            public_addr: format!("{}:{PUBLIC_PORT}", server_ip(i)),
            cluster_addr: format!("{}:{CLUSTER_PORT}", server_ip(i)),
            checkpoint_key: node_signer(i as u64 + 1).verifier().to_text(),
            checkpoint_pub_file: None,
        })
        .collect();
    NodeConfig {
        node: NodeSection {
            id,
            name: format!("node-{id}"),
            data_dir: format!("/sim/node-{id}").into(),
            public_listen: format!("{}:{PUBLIC_PORT}", server_ip(index)),
            cluster_listen: format!("{}:{CLUSTER_PORT}", server_ip(index)),
            public_addr: None,
            cluster_addr: None,
            checkpoint_key_file: format!("/sim/node-{id}.key").into(),
            verify_on_start: true,
        },
        tls: TlsSection {
            ca_cert: "/sim/unused".into(),
            cert: "/sim/unused".into(),
            key: "/sim/unused".into(),
        },
        cluster: ClusterSection {
            origin: ORIGIN.to_string(),
            admin_keys: vec![admin_signer().verifier().to_text()],
            admin_pub_files: Vec::new(),
            bootstrap: id == 1,
            initial_members: if id == 1 { members } else { Vec::new() },
        },
        raft: RaftSection {
            snapshot_every_entries: tuning.snapshot_every_entries,
            logs_kept_after_snapshot: tuning.logs_kept_after_snapshot,
            ..RaftSection::default()
        },
        limits: LimitsSection::default(),
        storage: Default::default(),
        connections: Default::default(),
        metrics: Default::default(),
    }
}

impl Cluster {
    /// Creates and starts `voters + 1` servers (the last one a spare, not a member yet).
    pub fn start(
        voters: usize,
        tuning: &ServerTuning,
        known_bad: KnownBad,
        trace: Trace,
    ) -> Cluster {
        let handle = Handle::current();
        let mut servers = Vec::new();
        for index in 0..=voters {
            let id = index as u64 + 1;
            let config = config_of(index, voters, tuning);
            let kv = Arc::new(MemKv::new());
            let log_dir = Arc::new(MemDir::new());
            let sync_delay = tuning.sync_delay.get(index).copied().unwrap_or_default();
            kv.set_sync_delay(sync_delay);
            log_dir.set_sync_delay(sync_delay);
            let clock = Clock::new();
            let signer = node_signer(id);
            let slot = Arc::new(Mutex::new(Slot {
                incarnation: 0,
                running: Running::Starting,
            }));
            let init = {
                let (config, kv, log_dir, clock, signer, slot) = (
                    config.clone(),
                    kv.clone(),
                    log_dir.clone(),
                    clock.clone(),
                    signer.clone(),
                    slot.clone(),
                );
                move || {
                    let storage =
                        WalKv::open_with(log_dir.clone(), sim_wal(known_bad)).map(|log| {
                            NodeStorage {
                                ledger: kv.clone() as Arc<dyn Kv>,
                                log: log.kv,
                                ledger_fresh: kv.is_empty(),
                                log_fresh: log.fresh,
                                ledger_findings: Vec::new(),
                                disk: log_dir.clone(),
                            }
                        });
                    let parts = storage.map(|storage| NodeParts {
                        config: config.clone(),
                        storage,
                        tls: TlsMaterial {
                            ca_pem: String::new(),
                            cert_pem: String::new(),
                            key_pem: String::new(),
                        },
                        signer: signer.clone(),
                        clock: clock.clone(),
                        known_bad,
                        peers: sim_peers(),
                    });
                    let slot = slot.clone();
                    async move {
                        {
                            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                            s.incarnation += 1;
                            s.running = Running::Starting;
                        }
                        let started = match parts {
                            Ok(parts) => start(parts).await,
                            Err(e) => Err(stateledger_node::node::StartError::Store(e)),
                        };
                        match started {
                            Ok(node) => {
                                slot.lock().unwrap_or_else(|p| p.into_inner()).running =
                                    Running::Up(node.shared.clone());
                                // The node lives as long as this task: a crash drops both. A
                                // node that must stop (as `node run` exits) stops here too.
                                let fatal = node.fatal().await;
                                slot.lock().unwrap_or_else(|p| p.into_inner()).running =
                                    Running::Failed(fatal.reason);
                                node.shutdown().await;
                            }
                            Err(e) => {
                                slot.lock().unwrap_or_else(|p| p.into_inner()).running =
                                    Running::Failed(e.to_string());
                            }
                        }
                    }
                }
            };
            let node = handle
                .create_node()
                .name(format!("node-{id}"))
                .ip(server_ip(index))
                .init(init)
                .build();
            servers.push(Server {
                index,
                id,
                name: format!("node-{id}"),
                public_addr: format!("{}:{PUBLIC_PORT}", server_ip(index)),
                cluster_addr: format!("{}:{CLUSTER_PORT}", server_ip(index)),
                signer,
                kv,
                log_dir,
                clock,
                node,
                slot,
                down_holds: 0,
                pause_holds: 0,
                decommissioned: false,
                corrupted: false,
                losses: Vec::new(),
                must_detect: None,
                copy: None,
                sync_delay,
            });
        }
        Cluster {
            servers,
            voters,
            handle,
            links: BTreeMap::new(),
            trace,
        }
    }

    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.servers.iter().position(|s| s.id == id)
    }

    /// The server that leads with the highest term, as the running nodes report it.
    pub fn leader(&self) -> Option<usize> {
        self.servers
            .iter()
            .filter_map(|s| {
                let shared = s.shared()?;
                let m = shared.raft.metrics().borrow().clone();
                (m.state == openraft::ServerState::Leader).then_some((m.current_term, s.index))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Power loss: the process dies and the store keeps what it synced, plus the first
    /// `keep_unsynced` writes after that.
    pub fn crash(&mut self, index: usize, keep_unsynced: usize) {
        let s = &mut self.servers[index];
        if s.decommissioned {
            return;
        }
        s.down_holds += 1;
        if s.down_holds == 1 {
            self.handle.kill(s.node.id());
            // The dead process's memory is gone: never observe it again.
            s.slot().running = Running::Starting;
            let lost = s.kv.unsynced_writes().saturating_sub(keep_unsynced);
            let log_bytes = s.log_dir.unsynced_bytes();
            s.kv.crash_keeping(keep_unsynced);
            // The log file keeps a random subset of its unsynced sectors when the crash keeps
            // anything: cut short, holes, out of order.
            let mut rng = thread_rng();
            s.log_dir
                .crash(&mut || keep_unsynced > 0 && rng.gen_bool(0.5));
            self.trace.log(format!(
                "crash {} (lost {lost} unsynced ledger writes, tore {log_bytes} unsynced log bytes)",
                s.name
            ));
        }
    }

    /// The servers that vote now (by the leader's membership when there is a leader, else the
    /// initial voters), without decommissioned ones.
    pub fn voter_indexes(&self) -> Vec<usize> {
        let from_leader = self.leader().and_then(|l| {
            let shared = self.servers[l].shared()?;
            let m = shared.raft.metrics().borrow().membership_config.clone();
            Some(
                m.membership()
                    .voter_ids()
                    .filter_map(|id| self.index_of(id))
                    .collect::<Vec<_>>(),
            )
        });
        from_leader
            .unwrap_or_else(|| (0..self.voters).collect())
            .into_iter()
            .filter(|i| !self.servers[*i].decommissioned)
            .collect()
    }

    /// Makes every fsync of a server take `delay` (both storages), or the drawn time again.
    pub fn set_sync_delay(&mut self, index: usize, delay: Option<Duration>) {
        let s = &self.servers[index];
        let delay = delay.unwrap_or(s.sync_delay);
        s.kv.set_sync_delay(delay);
        s.log_dir.set_sync_delay(delay);
    }

    /// Keeps a copy of a server's durable storage (for a later rollback).
    pub fn take_copy(&mut self, index: usize) {
        let s = &mut self.servers[index];
        s.copy = Some((s.log_dir.snapshot(), s.kv.durable_copy()));
        self.trace.log(format!("copy the storage of {}", s.name));
    }

    /// A server that is down loses part of its synced state. Records what it lost and whether
    /// its next start must notice.
    pub fn lose_state(&mut self, index: usize, loss: StateLoss) {
        let s = &mut self.servers[index];
        if !s.is_down() {
            self.trace.log(format!(
                "lose state of {}: it is not down; nothing lost",
                s.name
            ));
            return;
        }
        let wal_names: Vec<String> = s
            .log_dir
            .names()
            .into_iter()
            .filter(|n| n.ends_with(".wal"))
            .collect();
        let mark = s
            .log_dir
            .durable(marker::MARKER_FILE)
            .and_then(|b| marker::read(&b))
            .map(|slot| slot.mark);
        // Synced bytes of the file the marker names: records below them were acknowledged.
        let marked = |name: &str| {
            mark.filter(|m| format!("{:016x}.wal", m.generation) == name)
                .map_or(0, |m| m.synced as usize)
        };
        let (what, must_detect) = match loss {
            StateLoss::LogFileDeleted => {
                let had = wal_names
                    .iter()
                    .any(|n| marked(n) > frame::FILE_MAGIC.len());
                for n in &wal_names {
                    s.log_dir.delete(n);
                }
                (format!("its Raft log file {wal_names:?} was deleted"), had)
            }
            StateLoss::LogDirDeleted => {
                let had = !s.log_dir.names().is_empty();
                for n in s.log_dir.names() {
                    s.log_dir.delete(&n);
                }
                (
                    "its Raft log directory (file and sync marker) was deleted".to_string(),
                    had && !s.kv.is_empty(),
                )
            }
            StateLoss::LogTruncated => {
                let mut rng = thread_rng();
                let mut done = (
                    "its Raft log had no synced record to cut".to_string(),
                    false,
                );
                for n in &wal_names {
                    let bytes = s.log_dir.durable(n).unwrap_or_default();
                    let end = frame::recover(&bytes).valid_end.min(marked(n));
                    let start = frame::FILE_MAGIC.len();
                    if end > start + 1 {
                        let cut = rng.gen_range(start..end);
                        s.log_dir.replace(n, bytes[..cut].to_vec());
                        done = (
                            format!("its Raft log file {n} was cut at byte {cut} of {end} synced"),
                            true,
                        );
                    }
                }
                done
            }
            StateLoss::LogRolledBack => match &s.copy {
                None => (
                    "its Raft log had no older copy to roll back to".to_string(),
                    false,
                ),
                Some((copy, _)) => {
                    for n in &wal_names {
                        s.log_dir.delete(n);
                    }
                    for (n, bytes) in copy.files().iter().filter(|(n, _)| n.ends_with(".wal")) {
                        s.log_dir.replace(n, bytes.clone());
                    }
                    // Lost: the copy ends before what the marker says was synced (or lacks
                    // the file the marker names).
                    let lost = mark.is_some_and(|m| {
                        let name = format!("{:016x}.wal", m.generation);
                        match copy.files().get(&name) {
                            None => m.synced as usize > frame::FILE_MAGIC.len(),
                            Some(bytes) => frame::recover(bytes).valid_end < m.synced as usize,
                        }
                    });
                    (
                        "its Raft log file was replaced by an older copy".to_string(),
                        lost,
                    )
                }
            },
            StateLoss::LedgerLost => {
                let had = !s.kv.is_empty();
                s.kv.restore(&MemKvCopy::default());
                ("its ledger storage was deleted".to_string(), had)
            }
            StateLoss::LedgerRolledBack => match &s.copy {
                None => (
                    "its ledger had no older copy to roll back to".to_string(),
                    false,
                ),
                Some((_, copy)) => {
                    s.kv.restore(copy);
                    // The ledger is derived from the log: an older one is no loss Raft must
                    // notice (the node replays or fetches what it lacks).
                    (
                        "its ledger storage was replaced by an older copy".to_string(),
                        false,
                    )
                }
            },
        };
        self.trace.log(format!("lose state of {}: {what}", s.name));
        s.losses.push(what.clone());
        if must_detect {
            s.must_detect = Some((s.incarnation() + 1, what));
        }
    }

    /// Ends one crash hold; the server restarts when none is left.
    pub fn release_crash(&mut self, index: usize) {
        let s = &mut self.servers[index];
        if s.decommissioned || s.down_holds == 0 {
            return;
        }
        s.down_holds -= 1;
        if s.down_holds == 0 {
            self.handle.restart(s.node.id());
            if s.pause_holds > 0 {
                self.handle.pause(s.node.id());
            }
            self.trace.log(format!("restart {}", s.name));
        }
    }

    pub fn pause(&mut self, index: usize) {
        let s = &mut self.servers[index];
        if s.decommissioned {
            return;
        }
        s.pause_holds += 1;
        if s.pause_holds == 1 && s.down_holds == 0 {
            self.handle.pause(s.node.id());
            self.trace.log(format!("pause {}", s.name));
        }
    }

    pub fn release_pause(&mut self, index: usize) {
        let s = &mut self.servers[index];
        if s.decommissioned || s.pause_holds == 0 {
            return;
        }
        s.pause_holds -= 1;
        if s.pause_holds == 0 && s.down_holds == 0 {
            self.handle.resume(s.node.id());
            self.trace.log(format!("resume {}", s.name));
        }
    }

    /// The operator retires a removed member: its process stops for good.
    pub fn decommission(&mut self, index: usize) {
        let s = &mut self.servers[index];
        if s.decommissioned {
            return;
        }
        s.decommissioned = true;
        self.handle.kill(s.node.id());
        s.slot().running = Running::Starting;
        self.trace.log(format!("decommission {}", s.name));
    }

    /// Restarts every crashed server and resumes every paused one (the liveness phase).
    pub fn heal_processes(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].decommissioned {
                // Retired for good: nothing to restart or resume (and the release calls below
                // would not count its holds down).
                self.servers[i].pause_holds = 0;
                self.servers[i].down_holds = 0;
                continue;
            }
            while self.servers[i].pause_holds > 0 {
                self.release_pause(i);
            }
            while self.servers[i].down_holds > 0 {
                self.release_crash(i);
            }
            // A node that stopped on its own (damaged storage, Raft stopped) is started again,
            // as a supervisor would: one whose Raft log was damaged then repairs and rejoins;
            // one whose ledger is corrupt refuses to start again.
            if let Some(why) = self.servers[i].start_failure() {
                let s = &self.servers[i];
                // The process exited: kill its leftovers (and their network bindings) first.
                self.handle.kill(s.node.id());
                self.handle.restart(s.node.id());
                self.trace
                    .log(format!("restart {} after it stopped: {why}", s.name));
            }
        }
    }

    /// Holds the directed link `from → to` clogged.
    pub fn clog(&mut self, from: usize, to: usize) {
        let count = self.links.entry((from, to)).or_default();
        *count += 1;
        if *count == 1 {
            NetSim::current().clog_link(self.servers[from].node.id(), self.servers[to].node.id());
        }
    }

    pub fn unclog(&mut self, from: usize, to: usize) {
        let Some(count) = self.links.get_mut(&(from, to)) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.links.remove(&(from, to));
            NetSim::current().unclog_link(self.servers[from].node.id(), self.servers[to].node.id());
        }
    }

    /// Opens every link.
    pub fn heal_network(&mut self) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.links).into_keys() {
            net.unclog_link(self.servers[from].node.id(), self.servers[to].node.id());
        }
        net.update_config(|c| *c = madsim::net::Config::default());
    }

    /// One line with every server's state.
    pub fn summary(&self) -> String {
        self.servers
            .iter()
            .map(Server::summary)
            .collect::<Vec<_>>()
            .join(" | ")
    }
}
