//! Development clusters on loopback: generates the cluster CA, node certificates, checkpoint
//! keys, an admin key and client certificate, node configs and a trust policy, all in one
//! directory. Used by `stateledger dev`, the demo and the tests.
//!
//! Layout of `dir`:
//! ```text
//! ca.pem, ca.key.pem          cluster CA (the key only so more nodes can be issued later)
//! admin.pem, admin.key.pem    admin client certificate (cluster port, mutual TLS), naming
//!                             stateledger:admin:admin
//! client.pem, client.key.pem  client certificate (stateledger:client:client): no business on
//!                             the cluster port, for trying what it refuses
//! keys/node-N.key, .pub       checkpoint keys
//! keys/admin.key, .pub        admin signing key (policy records)
//! node-N/                     data directories
//! node-N.pem, node-N.key.pem  node certificates (stateledger:node:N)
//! node-N.toml                 node configs
//! trust_policy.json           origin, node keys, majority threshold
//! ```

use std::path::{Path, PathBuf};

use rand::RngCore as _;
use stateledger_core::note::NoteSigner;
use stateledger_core::trust::TrustPolicy;

use crate::config::{
    ClusterSection, LimitsSection, MemberConfig, NodeConfig, NodeSection, RaftSection, TlsSection,
};
use crate::tls::dev_ca::DevCa;
use crate::tls::identity::PeerIdentity;

/// Why a dev cluster's material could not be written, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// The caller's: `create` was given a directory that already holds a cluster.
    #[error("{} already holds a cluster", dir.display())]
    AlreadyACluster { dir: PathBuf },
    /// The machine's: a directory could not be made.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The machine's: a file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory's: `add_node` found no readable dev CA key.
    #[error("cannot read the dev CA key: {source}")]
    ReadCaKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory's: `add_node` found no readable `node-1.toml`.
    #[error("cannot read node-1.toml: {source}")]
    ReadNodeConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory's: `node-1.toml` does not parse.
    #[error("{source}")]
    ParseNodeConfig {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// The directory's or ours: the CA could not be made or read, or could not issue.
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    /// Ours: a checkpoint or admin key could not be made (a name that is not a key name).
    #[error("{0}")]
    Key(#[from] stateledger_core::note::KeyError),
    /// Ours: the trust policy for the generated keys was refused.
    #[error("{0}")]
    Policy(#[from] stateledger_core::trust::PolicyError),
    /// Ours: the trust policy could not be written as JSON.
    #[error("{0}")]
    PolicyJson(#[from] serde_json::Error),
    /// Ours: a node config could not be written as TOML.
    #[error("{0}")]
    ConfigToml(#[from] toml::ser::Error),
}

/// What `create` wrote.
#[derive(Debug, Clone)]
pub struct DevCluster {
    pub dir: PathBuf,
    pub origin: String,
    pub configs: Vec<PathBuf>,
    pub trust_policy: PathBuf,
    pub admin_key: PathBuf,
    pub ca_cert: PathBuf,
}

/// Ports of node `i` (1-based): public `base + i`, cluster `base + 100 + i`.
pub fn ports(base: u16, i: u64) -> (u16, u16) {
    (base + i as u16, base + 100 + i as u16)
}

fn write(path: &Path, text: &str) -> Result<(), DevError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| DevError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| DevError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), DevError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        crate::store::create_private_dir(parent).map_err(|source| DevError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| DevError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(text.as_bytes())
        .map_err(|source| DevError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn new_signer(name: &str) -> Result<NoteSigner, DevError> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    Ok(NoteSigner::from_seed(name, &seed)?)
}

/// Material for one node (certificate, key, config) signed by the cluster CA in `dir`.
#[derive(Debug, Clone)]
pub struct DevNode {
    pub id: u64,
    pub name: String,
    pub config_path: PathBuf,
    pub config: NodeConfig,
    pub member: MemberConfig,
}

/// Creates the CA, admin material and `nodes` node configs in `dir` (which must not hold a
/// cluster yet). Node 1 bootstraps the cluster with all nodes as voters.
pub fn create(
    dir: &Path,
    nodes: u64,
    base_port: u16,
    origin: &str,
) -> Result<DevCluster, DevError> {
    if dir.join("ca.pem").exists() {
        return Err(DevError::AlreadyACluster {
            dir: dir.to_path_buf(),
        });
    }
    // Owner only: it holds the CA key, the nodes' keys and their data directories.
    crate::store::create_private_dir(dir).map_err(|source| DevError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = DevCa::generate()?;
    write(&dir.join("ca.pem"), &ca.cert_pem())?;
    write_private(&dir.join("ca.key.pem"), &ca.key_pem())?;
    let (admin_cert, admin_cert_key) =
        ca.issue(&PeerIdentity::Admin("admin".into()), "admin", &[])?;
    write(&dir.join("admin.pem"), &admin_cert)?;
    write_private(&dir.join("admin.key.pem"), &admin_cert_key)?;
    let (client_cert, client_cert_key) =
        ca.issue(&PeerIdentity::Client("client".into()), "client", &[])?;
    write(&dir.join("client.pem"), &client_cert)?;
    write_private(&dir.join("client.key.pem"), &client_cert_key)?;
    let admin = new_signer("admin")?;
    write_private(
        &dir.join("keys/admin.key"),
        &format!("{}\n", admin.to_text()),
    )?;
    write(
        &dir.join("keys/admin.pub"),
        &format!("{}\n", admin.verifier().to_text()),
    )?;

    let mut members = Vec::new();
    let mut signers = Vec::new();
    for i in 1..=nodes {
        let name = format!("node-{i}");
        let signer = new_signer(&name)?;
        write_private(
            &dir.join(format!("keys/{name}.key")),
            &format!("{}\n", signer.to_text()),
        )?;
        write(
            &dir.join(format!("keys/{name}.pub")),
            &format!("{}\n", signer.verifier().to_text()),
        )?;
        let (public, cluster) = ports(base_port, i);
        members.push(MemberConfig {
            id: i,
            name: name.clone(),
            public_addr: format!("127.0.0.1:{public}"),
            cluster_addr: format!("127.0.0.1:{cluster}"),
            checkpoint_key: signer.verifier().to_text(),
            checkpoint_pub_file: None,
        });
        signers.push(signer);
    }
    let mut configs = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let node = write_node(
            &ca,
            dir,
            member,
            origin,
            &admin.verifier().to_text(),
            i == 0,
            &members,
        )?;
        configs.push(node.config_path);
    }
    let policy = TrustPolicy::new(
        origin,
        nodes as usize / 2 + 1,
        signers.iter().map(NoteSigner::verifier).collect(),
    )?;
    let policy_json = serde_json::to_string_pretty(&policy.to_file())?;
    write(&dir.join("trust_policy.json"), &format!("{policy_json}\n"))?;
    Ok(DevCluster {
        dir: dir.to_path_buf(),
        origin: origin.to_string(),
        configs,
        trust_policy: dir.join("trust_policy.json"),
        admin_key: dir.join("keys/admin.key"),
        ca_cert: dir.join("ca.pem"),
    })
}

fn write_node(
    ca: &DevCa,
    dir: &Path,
    member: &MemberConfig,
    origin: &str,
    admin_key: &str,
    bootstrap: bool,
    members: &[MemberConfig],
) -> Result<DevNode, DevError> {
    let name = &member.name;
    let (cert, key) = ca.issue(
        &PeerIdentity::Node(member.id),
        name,
        &["localhost".to_string(), "127.0.0.1".to_string()],
    )?;
    write(&dir.join(format!("{name}.pem")), &cert)?;
    write_private(&dir.join(format!("{name}.key.pem")), &key)?;
    let config = NodeConfig {
        node: NodeSection {
            id: member.id,
            name: name.clone(),
            data_dir: PathBuf::from(name),
            public_listen: member.public_addr.clone(),
            cluster_listen: member.cluster_addr.clone(),
            public_addr: None,
            cluster_addr: None,
            checkpoint_key_file: PathBuf::from(format!("keys/{name}.key")),
            verify_on_start: true,
        },
        tls: TlsSection {
            ca_cert: PathBuf::from("ca.pem"),
            cert: PathBuf::from(format!("{name}.pem")),
            key: PathBuf::from(format!("{name}.key.pem")),
        },
        cluster: ClusterSection {
            origin: origin.to_string(),
            admin_keys: vec![admin_key.to_string()],
            admin_pub_files: Vec::new(),
            bootstrap,
            initial_members: if bootstrap {
                members.to_vec()
            } else {
                Vec::new()
            },
        },
        raft: RaftSection::default(),
        limits: LimitsSection::default(),
        storage: Default::default(),
        connections: Default::default(),
        metrics: Default::default(),
    };
    let text = toml::to_string_pretty(&config)?;
    let config_path = dir.join(format!("{name}.toml"));
    write(&config_path, &text)?;
    let mut resolved = config;
    resolved.resolve_paths(dir);
    Ok(DevNode {
        id: member.id,
        name: name.clone(),
        config_path,
        config: resolved,
        member: member.clone(),
    })
}

/// Adds material for one more node (not bootstrapping) to an existing dev cluster directory.
pub fn add_node(dir: &Path, id: u64, base_port: u16) -> Result<DevNode, DevError> {
    let ca_key_path = dir.join("ca.key.pem");
    let ca_key = std::fs::read_to_string(&ca_key_path).map_err(|source| DevError::ReadCaKey {
        path: ca_key_path,
        source,
    })?;
    let ca = DevCa::from_key_pem(&ca_key)?;
    let existing_path = dir.join("node-1.toml");
    let existing_text =
        std::fs::read_to_string(&existing_path).map_err(|source| DevError::ReadNodeConfig {
            path: existing_path.clone(),
            source,
        })?;
    let existing: NodeConfig =
        toml::from_str(&existing_text).map_err(|source| DevError::ParseNodeConfig {
            path: existing_path,
            source,
        })?;
    let name = format!("node-{id}");
    let signer = new_signer(&name)?;
    write_private(
        &dir.join(format!("keys/{name}.key")),
        &format!("{}\n", signer.to_text()),
    )?;
    write(
        &dir.join(format!("keys/{name}.pub")),
        &format!("{}\n", signer.verifier().to_text()),
    )?;
    let (public, cluster) = ports(base_port, id);
    let member = MemberConfig {
        id,
        name,
        public_addr: format!("127.0.0.1:{public}"),
        cluster_addr: format!("127.0.0.1:{cluster}"),
        checkpoint_key: signer.verifier().to_text(),
        checkpoint_pub_file: None,
    };
    let admin = existing
        .cluster
        .admin_keys
        .first()
        .cloned()
        .unwrap_or_default();
    write_node(
        &ca,
        dir,
        &member,
        &existing.cluster.origin,
        &admin,
        false,
        &[],
    )
}
