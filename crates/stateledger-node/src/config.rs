//! Node configuration: a TOML file (see `cluster-configs/` for commented examples).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything a node needs to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub tls: TlsSection,
    pub cluster: ClusterSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub raft: RaftSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub connections: ConnectionsSection,
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// The optional HTTP listener for Prometheus metrics and health probes (`metrics.rs`,
/// docs/OPERATIONS.md "Monitoring"). Absent: no listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (plain HTTP: bind it to loopback or
    /// a monitoring network), e.g. `"127.0.0.1:9101"`.
    pub listen: Option<String>,
    /// `/readyz` answers 503 while the node's applied index is more than this many entries
    /// behind its own log.
    pub ready_lag_entries_max: u64,
}

impl Default for MetricsSection {
    fn default() -> MetricsSection {
        MetricsSection {
            listen: None,
            ready_lag_entries_max: 1_000,
        }
    }
}

/// Limits on the connections each listener holds (`conn_limit.rs`, docs/SECURITY.md). The caps
/// are lowered at start if together they exceed the process's open-file limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// Most connections on the public port at once, and from one peer address.
    pub public_max: usize,
    pub public_per_ip_max: usize,
    /// Most connections on the cluster port at once, and from one peer address.
    pub cluster_max: usize,
    pub cluster_per_ip_max: usize,
    /// A TLS handshake not finished within this is abandoned.
    pub tls_handshake_timeout_ms: u64,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// HTTP/2 keep-alive: a ping after this long without frames from the peer, and the
    /// connection closed if its answer takes longer than the timeout.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
}

impl Default for ConnectionsSection {
    fn default() -> ConnectionsSection {
        ConnectionsSection {
            public_max: 4096,
            public_per_ip_max: 512,
            cluster_max: 256,
            cluster_per_ip_max: 64,
            tls_handshake_timeout_ms: 5_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 20_000,
            keepalive_timeout_ms: 20_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Raft node id, unique in the cluster, never reused.
    pub id: u64,
    /// Key name and display name, e.g. "node-1".
    pub name: String,
    pub data_dir: PathBuf,
    /// Where the public (server-TLS) listener binds, e.g. "0.0.0.0:7101".
    pub public_listen: String,
    /// Where the cluster (mutual-TLS) listener binds.
    pub cluster_listen: String,
    /// How other nodes and clients reach this node (defaults to the listen addresses).
    #[serde(default)]
    pub public_addr: Option<String>,
    #[serde(default)]
    pub cluster_addr: Option<String>,
    /// The node's checkpoint signing key (C2SP signer key file written by `stateledger keygen`).
    pub checkpoint_key_file: PathBuf,
    /// Also check every stored checkpoint note's checksum at start. The leaves, the Merkle
    /// frontier and the latest checkpoint are always checked, since the node derives its indexes
    /// from them; older checkpoints are otherwise checked when served.
    #[serde(default = "yes")]
    pub verify_on_start: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA certificate (PEM): it signs every node certificate and admin certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM), signed by the cluster CA, valid for its host names.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The log's origin line in every checkpoint, e.g. "stateledger.example/prod".
    pub origin: String,
    /// Admin public keys (C2SP verifier key text) allowed to sign policy records. Used at genesis.
    #[serde(default)]
    pub admin_keys: Vec<String>,
    /// Files holding more admin public keys, one key text each (a `stateledger keygen` `.pub`
    /// file): read when the config is loaded and added to `admin_keys`. For configs written before
    /// the keys exist (deploy/compose.yaml's nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_pub_files: Vec<PathBuf>,
    /// Whether this node creates the cluster when it starts with no state. Exactly one node of a
    /// new cluster sets this; the others join as members it names or are added later.
    #[serde(default)]
    pub bootstrap: bool,
    /// The initial voters (used by the bootstrap node only).
    #[serde(default)]
    pub initial_members: Vec<MemberConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: u64,
    pub name: String,
    pub public_addr: String,
    pub cluster_addr: String,
    /// C2SP verifier key text of the member's checkpoint key. Give it, or `checkpoint_pub_file`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checkpoint_key: String,
    /// A file holding that key text (the member's `.pub` from `stateledger keygen`), read when
    /// the config is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_pub_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (O(1) here) after this many applied entries, then purge the log.
    pub snapshot_every_entries: u64,
    /// Log entries a snapshot already covers that are kept anyway (so a follower only a little
    /// behind catches up from the log, not by snapshot); older ones are purged.
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftSection {
    fn default() -> RaftSection {
        RaftSection {
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 5000,
            logs_kept_after_snapshot: 1000,
        }
    }
}

/// Background checks of stored data, and the disk space alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Background scrubbing: bytes of stored data re-read and checked per second (0: off).
    pub scrub_bytes_per_second: u64,
    /// Pause between two scrub passes.
    pub scrub_pause_ms: u64,
    /// Writes are refused (RESOURCE_EXHAUSTED) while the data directory's file system has less
    /// free space than this, so that Raft (votes, heartbeats, the checkpoints' bookkeeping) never
    /// meets a full disk. 0: 5% of the file system, at least 4 MiB and at most 1 GiB.
    pub disk_reserve_bytes: u64,
    /// How often free space is checked.
    pub disk_check_ms: u64,
}

impl Default for StorageSection {
    fn default() -> StorageSection {
        StorageSection {
            scrub_bytes_per_second: 8 << 20,
            scrub_pause_ms: 10_000,
            disk_reserve_bytes: 0,
            disk_check_ms: 500,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Most records in one Submit request.
    pub request_records_max: usize,
    /// Largest gRPC message accepted on the public port.
    pub request_bytes_max: usize,
    /// Most records per Raft entry (group commit).
    pub batch_records_max: usize,
    /// Most submit requests queued at the leader before new ones are refused.
    pub queue_requests_max: usize,
    /// Most Raft proposals in flight at once.
    pub proposals_in_flight_max: usize,
    /// Shortest time between two checkpoint cosigning rounds.
    pub checkpoint_interval_ms: u64,
    /// Shortest time between two checkpoints published through Raft.
    pub checkpoint_publish_interval_ms: u64,
    /// Longest a read may wait for a checkpoint.
    pub wait_ms_max: u32,
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        LimitsSection {
            request_records_max: 4096,
            request_bytes_max: 16 * 1024 * 1024,
            batch_records_max: 8192,
            queue_requests_max: 4096,
            proposals_in_flight_max: 4,
            checkpoint_interval_ms: 5,
            checkpoint_publish_interval_ms: 50,
            wait_ms_max: 30_000,
        }
    }
}

fn yes() -> bool {
    true
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    // `reason` is not marked as the source: its text is already in the message, which a
    // caller's error chain (`{:#}`) would otherwise print twice.
    #[error("config {path} is invalid: {reason}")]
    Parse {
        path: PathBuf,
        reason: toml::de::Error,
    },
    #[error("config {path} is invalid: {reason}")]
    Invalid {
        path: PathBuf,
        reason: ConfigInvalid,
    },
}

/// What is wrong with a config's contents: all of it the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigInvalid {
    #[error("cannot read {what} file {}: {source}", path.display())]
    KeyFileUnreadable {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} file {} is empty", path.display())]
    KeyFileEmpty { what: String, path: PathBuf },
    #[error("member {member} has both checkpoint_key and checkpoint_pub_file; give one")]
    MemberKeyTwice { member: u64 },
    #[error("member {member} needs checkpoint_key (key text) or checkpoint_pub_file")]
    MemberKeyMissing { member: u64 },
    #[error("{source}")]
    NodeName {
        name: String,
        source: stateledger_core::note::KeyError,
    },
    #[error("cluster.origin must be 1 to 256 bytes")]
    Origin { len: usize },
    #[error("a bootstrap node must list itself in cluster.initial_members")]
    BootstrapWithoutSelf { id: u64 },
    #[error(
        "raft timeouts must satisfy 0 < heartbeat < election_timeout_min < election_timeout_max"
    )]
    RaftTimeouts {
        heartbeat_ms: u64,
        election_timeout_min_ms: u64,
        election_timeout_max_ms: u64,
    },
    #[error("every [connections] limit must be above 0")]
    ConnectionLimitZero,
}

impl NodeConfig {
    /// Reads a config file; relative paths inside it are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: NodeConfig =
            toml::from_str(&text).map_err(|reason| ConfigError::Parse {
                path: path.to_path_buf(),
                reason,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .read_key_files()
            .map_err(|reason| ConfigError::Invalid {
                path: path.to_path_buf(),
                reason,
            })?;
        config.check().map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Replaces `admin_pub_files` and each member's `checkpoint_pub_file` by the key text they
    /// hold (the first line, trimmed), so that the rest of the node sees keys only as text.
    pub fn read_key_files(&mut self) -> Result<(), ConfigInvalid> {
        fn read_key(path: &Path, what: &str) -> Result<String, ConfigInvalid> {
            let text = std::fs::read_to_string(path).map_err(|source| {
                ConfigInvalid::KeyFileUnreadable {
                    what: what.to_string(),
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            let key = text.lines().next().unwrap_or("").trim();
            if key.is_empty() {
                return Err(ConfigInvalid::KeyFileEmpty {
                    what: what.to_string(),
                    path: path.to_path_buf(),
                });
            }
            Ok(key.to_string())
        }
        for path in std::mem::take(&mut self.cluster.admin_pub_files) {
            self.cluster
                .admin_keys
                .push(read_key(&path, "cluster.admin_pub_files: the admin key")?);
        }
        for m in &mut self.cluster.initial_members {
            match (m.checkpoint_key.is_empty(), m.checkpoint_pub_file.take()) {
                (true, Some(path)) => {
                    m.checkpoint_key =
                        read_key(&path, &format!("member {}'s checkpoint key", m.id))?
                }
                (false, Some(_)) => return Err(ConfigInvalid::MemberKeyTwice { member: m.id }),
                (true, None) => return Err(ConfigInvalid::MemberKeyMissing { member: m.id }),
                (false, None) => {}
            }
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.node.data_dir,
            &mut self.node.checkpoint_key_file,
            &mut self.tls.ca_cert,
            &mut self.tls.cert,
            &mut self.tls.key,
        ]
        .into_iter()
        .chain(self.cluster.admin_pub_files.iter_mut())
        .chain(
            self.cluster
                .initial_members
                .iter_mut()
                .filter_map(|m| m.checkpoint_pub_file.as_mut()),
        ) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn check(&self) -> Result<(), ConfigInvalid> {
        stateledger_core::note::check_key_name(&self.node.name).map_err(|source| {
            ConfigInvalid::NodeName {
                name: self.node.name.clone(),
                source,
            }
        })?;
        if self.cluster.origin.is_empty()
            || self.cluster.origin.len() > stateledger_core::checkpoint::ORIGIN_BYTES_MAX
        {
            return Err(ConfigInvalid::Origin {
                len: self.cluster.origin.len(),
            });
        }
        if self.cluster.bootstrap
            && !self
                .cluster
                .initial_members
                .iter()
                .any(|m| m.id == self.node.id)
        {
            return Err(ConfigInvalid::BootstrapWithoutSelf { id: self.node.id });
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_timeout_min_ms <= r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            return Err(ConfigInvalid::RaftTimeouts {
                heartbeat_ms: r.heartbeat_ms,
                election_timeout_min_ms: r.election_timeout_min_ms,
                election_timeout_max_ms: r.election_timeout_max_ms,
            });
        }
        let c = &self.connections;
        if c.public_max == 0
            || c.public_per_ip_max == 0
            || c.cluster_max == 0
            || c.cluster_per_ip_max == 0
            || c.tls_handshake_timeout_ms == 0
            || c.idle_timeout_ms == 0
            || c.keepalive_interval_ms == 0
            || c.keepalive_timeout_ms == 0
        {
            return Err(ConfigInvalid::ConnectionLimitZero);
        }
        Ok(())
    }

    pub fn public_addr(&self) -> String {
        self.node
            .public_addr
            .clone()
            .unwrap_or_else(|| self.node.public_listen.clone())
    }

    pub fn cluster_addr(&self) -> String {
        self.node
            .cluster_addr
            .clone()
            .unwrap_or_else(|| self.node.cluster_listen.clone())
    }
}
