//! What a node is started from ([`NodeParts`]), and how a real node gets it from its config:
//! the data directory opened (owner-only), the TLS files and the checkpoint key read and checked.

#[cfg(not(madsim))]
use std::sync::Arc;

use stateledger_core::note::NoteSigner;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::recovery::NodeStorage;
#[cfg(not(madsim))]
use crate::start_error::StartError;
#[cfg(not(madsim))]
use crate::store::StoreError;
use crate::tls::TlsMaterial;

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
        config.check()?;
        let tls = TlsMaterial::load(&config.tls)?;
        tls.check_node(config.node.id)
            .map_err(|reason| StartError::TlsFiles {
                cert: config.tls.cert.clone(),
                reason,
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
