//! A dev cluster in a temporary directory, made by the real `stateledger dev --init-only`, with
//! its nodes as real processes. Dropping it kills and reaps every node and removes the directory
//! (set `STATELEDGER_TEST_KEEP=1` to keep it); when dropped during a panic it first prints the
//! tail of every node's log.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use stateledger_client::admin::{AdminClient, AdminOptions};
use stateledger_client::{ConnectOptions, LedgerClient, Submitted};
use stateledger_core::leaf::Leaf;
use stateledger_core::note::NoteSigner;
use stateledger_core::trust::TrustPolicy;
use stateledger_node::config::NodeConfig;
use stateledger_node::dev::DevNode;
use stateledger_proto::v1 as pb;
use tonic::transport::Channel;

use super::process::NodeProcess;
use super::rpc::{self, ClientCert};
use super::wait;

/// The origin line of every test cluster.
pub const ORIGIN: &str = "stateledger.test/e2e";

/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// See the module comment.
pub struct TestCluster {
    nodes: BTreeMap<u64, NodeProcess>,
    base_port: u16,
    /// With [`TestCluster::with_hosts`]: node `id` is host `127.0.<net>.<id>`.
    net: Option<u8>,
    initial: u64,
    ca_pem: String,
    channels: Mutex<HashMap<String, Channel>>,
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.dir())
            .field("base_port", &self.base_port)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TestCluster {
    /// Writes a dev cluster of `nodes` nodes with `stateledger dev --init-only` (nothing runs
    /// yet). Ports for up to two more nodes are free too.
    pub fn new(nodes: u64) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("stateledger-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let base_port = super::ports::free_base_port(nodes as u16 + 2);
        let cluster_dir = dir.path().join("cluster");
        let out = super::binary::run(&[
            OsStr::new("dev"),
            OsStr::new("--dir"),
            cluster_dir.as_os_str(),
            OsStr::new("--nodes"),
            OsStr::new(&nodes.to_string()),
            OsStr::new("--base-port"),
            OsStr::new(&base_port.to_string()),
            OsStr::new("--origin"),
            OsStr::new(ORIGIN),
            OsStr::new("--init-only"),
        ]);
        assert!(
            out.status.success(),
            "stateledger dev --init-only failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ca_pem = std::fs::read_to_string(cluster_dir.join("ca.pem")).expect("dev wrote the CA");
        let mut cluster = TestCluster {
            nodes: BTreeMap::new(),
            base_port,
            net: None,
            initial: nodes,
            ca_pem,
            channels: Mutex::new(HashMap::new()),
            dir: Some(dir),
        };
        for id in 1..=nodes {
            cluster.track(id);
        }
        cluster
    }

    /// [`TestCluster::new`], but each node is its own host: it listens on `127.0.<net>.<id>`
    /// (its own loopback address, in its certificate) and connects to the others from there, so
    /// that a [`super::partition::Partition`] can cut nodes apart while clients (from
    /// 127.0.0.1) still reach every node.
    pub fn with_hosts(nodes: u64) -> TestCluster {
        let mut cluster = TestCluster::new(nodes);
        cluster.net = Some(((cluster.base_port / 200) % 250 + 1) as u8);
        for id in 1..=nodes {
            cluster.rehost(id);
        }
        cluster.edit_config(1, |c| {
            for m in &mut c.cluster.initial_members {
                m.public_addr = format!(
                    "{}:{}",
                    host_of(m.public_addr.as_str(), cluster.net, m.id),
                    port_of(&m.public_addr)
                );
                m.cluster_addr = format!(
                    "{}:{}",
                    host_of(m.cluster_addr.as_str(), cluster.net, m.id),
                    port_of(&m.cluster_addr)
                );
            }
        });
        cluster
    }

    /// Moves node `id` onto its own host address (config and certificate).
    fn rehost(&self, id: u64) {
        let host = self.host(id);
        self.edit_config(id, |c| {
            c.node.public_listen = format!("{host}:{}", port_of(&c.node.public_listen));
            c.node.cluster_listen = format!("{host}:{}", port_of(&c.node.cluster_listen));
        });
        let dir = self.dir();
        let ca_key = std::fs::read_to_string(dir.join("ca.key.pem")).expect("dev wrote the CA key");
        let ca =
            stateledger_node::tls::dev_ca::DevCa::from_key_pem(&ca_key).expect("the CA key parses");
        let name = format!("node-{id}");
        let (cert, key) = ca
            .issue(
                &stateledger_node::tls::identity::PeerIdentity::Node(id),
                &name,
                &["localhost".to_string(), "127.0.0.1".to_string(), host],
            )
            .expect("the CA issues a node certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert).expect("write the certificate");
        std::fs::write(dir.join(format!("{name}.key.pem")), key).expect("write the key");
    }

    /// Node `id`'s host address (127.0.0.1 unless made [`TestCluster::with_hosts`]).
    pub fn host(&self, id: u64) -> String {
        match self.net {
            Some(net) => format!("127.0.{net}.{id}"),
            None => "127.0.0.1".into(),
        }
    }

    /// Address `127.0.<net>.<last>` of a [`TestCluster::with_hosts`] cluster's network; `last`
    /// above the node ids is an address no node has (for a client of its own).
    pub fn net_address(&self, last: u8) -> Ipv4Addr {
        let net = self
            .net
            .expect("only a cluster made with_hosts has a network");
        Ipv4Addr::new(127, 0, net, last)
    }

    /// Node `id`'s host address as an IPv4 address.
    pub fn host_ip(&self, id: u64) -> Ipv4Addr {
        self.host(id).parse().expect("hosts are IPv4 addresses")
    }

    fn track(&mut self, id: u64) {
        let dir = self.dir();
        let process = NodeProcess::new(
            &format!("node-{id}"),
            &dir.join(format!("node-{id}.toml")),
            &dir.join(format!("node-{id}.log")),
        );
        self.nodes.insert(id, process);
    }

    /// Reads the cluster CA certificate again (after a test replaced the PKI in [`Self::dir`]).
    pub fn reread_ca(&mut self) {
        self.ca_pem = std::fs::read_to_string(self.dir().join("ca.pem")).expect("the CA");
        self.channels.lock().expect("channels").clear();
    }

    /// The cluster directory (CA, keys, configs, data, logs).
    pub fn dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("the directory lives as long as the cluster")
            .path()
            .join("cluster")
    }

    pub fn base_port(&self) -> u16 {
        self.base_port
    }

    /// Ids of the nodes this cluster knows (started or not).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn node(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    pub fn config_path(&self, id: u64) -> PathBuf {
        self.dir().join(format!("node-{id}.toml"))
    }

    /// The node's data directory (sled).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir().join(format!("node-{id}"))
    }

    /// Changes a node's config file (paths in it stay relative to the cluster directory).
    pub fn edit_config(&self, id: u64, edit: impl FnOnce(&mut NodeConfig)) {
        let path = self.config_path(id);
        let text = std::fs::read_to_string(&path).expect("the node config exists");
        let mut config: NodeConfig = toml::from_str(&text).expect("the node config parses");
        edit(&mut config);
        let text = toml::to_string_pretty(&config).expect("the config serializes");
        std::fs::write(&path, text).expect("the node config is written");
    }

    /// Writes material for one more node with `stateledger_node::dev::add_node` (not started).
    pub fn add_node(&mut self, id: u64) -> DevNode {
        let mut node = stateledger_node::dev::add_node(&self.dir(), id, self.base_port)
            .expect("dev::add_node writes the node's material");
        if self.net.is_some() {
            self.rehost(id);
            node.member.public_addr = self.public_addr(id);
            node.member.cluster_addr = self.cluster_addr(id);
        }
        self.track(id);
        node
    }

    pub fn start(&mut self, id: u64) {
        self.node(id).start();
    }

    pub fn start_all(&mut self) {
        for id in self.ids() {
            self.start(id);
        }
    }

    pub fn kill9(&mut self, id: u64) {
        self.node(id).kill9();
    }

    pub fn public_addr(&self, id: u64) -> String {
        format!("{}:{}", self.host(id), self.base_port + id as u16)
    }

    pub fn cluster_addr(&self, id: u64) -> String {
        format!("{}:{}", self.host(id), self.base_port + 100 + id as u16)
    }

    /// Node `id`'s cluster address as a partition needs it.
    pub fn cluster_endpoint(&self, id: u64) -> super::partition::Endpoint {
        super::partition::Endpoint {
            host: self.host(id),
            port: self.base_port + 100 + id as u16,
        }
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn trust_policy_path(&self) -> PathBuf {
        self.dir().join("trust_policy.json")
    }

    pub fn policy(&self) -> TrustPolicy {
        let bytes = std::fs::read(self.trust_policy_path()).expect("dev wrote the trust policy");
        TrustPolicy::from_json(&bytes).expect("the trust policy parses")
    }

    /// The admin client certificate `stateledger dev` issued (cluster CA).
    pub fn admin_cert(&self) -> ClientCert {
        let read = |f: &str| std::fs::read_to_string(self.dir().join(f)).expect("dev wrote it");
        ClientCert {
            cert_pem: read("admin.pem"),
            key_pem: read("admin.key.pem"),
        }
    }

    /// Node `id`'s own certificate (stateledger:node:<id>), to speak on the cluster port as it.
    pub fn node_cert(&self, id: u64) -> ClientCert {
        let read = |f: String| std::fs::read_to_string(self.dir().join(f)).expect("dev wrote it");
        ClientCert {
            cert_pem: read(format!("node-{id}.pem")),
            key_pem: read(format!("node-{id}.key.pem")),
        }
    }

    /// The client certificate `stateledger dev` issued (stateledger:client:client).
    pub fn client_cert(&self) -> ClientCert {
        let read = |f: &str| std::fs::read_to_string(self.dir().join(f)).expect("dev wrote it");
        ClientCert {
            cert_pem: read("client.pem"),
            key_pem: read("client.key.pem"),
        }
    }

    /// The admin key that signs policy records.
    pub fn admin_signer(&self) -> NoteSigner {
        let text = std::fs::read_to_string(self.dir().join("keys/admin.key"))
            .expect("dev wrote the admin key");
        NoteSigner::parse(&text).expect("the admin key parses")
    }

    /// A client library instance that knows only `ids`' public endpoints.
    pub fn client_of(&self, ids: &[u64], timeout: Duration) -> LedgerClient {
        self.client_with_policy(ids, self.policy(), timeout)
    }

    /// A client library instance that knows `ids`' public endpoints and trusts `policy`.
    pub fn client_with_policy(
        &self,
        ids: &[u64],
        policy: TrustPolicy,
        timeout: Duration,
    ) -> LedgerClient {
        let mut options = ConnectOptions::new(
            ids.iter().map(|id| self.public_addr(*id)).collect(),
            self.ca_pem.clone(),
        );
        options.timeout = timeout;
        LedgerClient::new(options, policy).expect("the client is configured")
    }

    /// A client library instance that knows only `ids`' public endpoints and connects from
    /// `source` (a loopback address of its own, e.g. one a [`super::wan::Wan`] places in a
    /// region).
    pub fn client_from(&self, ids: &[u64], source: Ipv4Addr, timeout: Duration) -> LedgerClient {
        let mut options = ConnectOptions::new(
            ids.iter().map(|id| self.public_addr(*id)).collect(),
            self.ca_pem.clone(),
        );
        options.timeout = timeout;
        options.local_address = Some(IpAddr::V4(source));
        LedgerClient::new(options, self.policy()).expect("the client is configured")
    }

    /// A client library instance that knows the initial nodes' public endpoints.
    pub fn client(&self) -> LedgerClient {
        let ids: Vec<u64> = (1..=self.initial).collect();
        self.client_of(&ids, Duration::from_secs(20))
    }

    /// Membership administration through the initial nodes' cluster ports (admin certificate).
    pub fn admin(&self, timeout: Duration) -> AdminClient {
        let cert = self.admin_cert();
        AdminClient::new(AdminOptions {
            endpoints: (1..=self.initial).map(|id| self.cluster_addr(id)).collect(),
            ca_pem: self.ca_pem.clone(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            timeout,
        })
        .expect("the admin client is configured")
    }

    /// Grants `writer` the right to append for `system` (policy record signed by the admin key).
    pub async fn grant(&self, system: &str, writer: &NoteSigner) -> Submitted {
        let record = super::records::grant(system, writer);
        let admin = self.admin_signer();
        let mut out = self
            .client()
            .sign_and_submit(vec![record], admin.signing_key())
            .await
            .expect("the grant is appended");
        out.remove(0)
    }

    fn channel(&self, addr: &str) -> Channel {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(addr.to_string())
            .or_insert_with(|| rpc::public_channel(&self.ca_pem, addr))
            .clone()
    }

    fn forget_channel(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    /// The generated ledger client for node `id` only (no leader following).
    pub fn ledger(&self, id: u64) -> pb::ledger_client::LedgerClient<Channel> {
        pb::ledger_client::LedgerClient::new(self.channel(&self.public_addr(id)))
            .max_decoding_message_size(rpc::MESSAGE_BYTES_MAX)
            .max_encoding_message_size(rpc::MESSAGE_BYTES_MAX)
    }

    /// Node `id`'s Status RPC.
    pub async fn status(&self, id: u64) -> Result<pb::StatusResponse, String> {
        let addr = self.public_addr(id);
        let mut client = self.ledger(id);
        match tokio::time::timeout(STATUS_TIMEOUT, client.status(pb::StatusRequest {})).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => {
                self.forget_channel(&addr);
                Err(format!(
                    "node {id}: {:?} {}",
                    status.code(),
                    status.message()
                ))
            }
            Err(_) => {
                self.forget_channel(&addr);
                Err(format!("node {id}: status timed out"))
            }
        }
    }

    /// The leaf at `index` as node `id` serves it.
    pub async fn entry(&self, id: u64, index: u64) -> Result<Leaf, tonic::Status> {
        let leaf = self
            .ledger(id)
            .get_entry(pb::GetEntryRequest { leaf_index: index })
            .await?
            .into_inner()
            .leaf;
        Ok(Leaf::decode(&leaf).expect("a node serves well-formed leaves"))
    }

    /// Panics with the node's log tail if one of `ids` has exited.
    pub fn assert_running(&mut self, ids: &[u64]) {
        for id in ids {
            let node = self.node(*id);
            if let Some(status) = node.try_exit() {
                panic!(
                    "node-{id} exited with {status}; its log ends with:\n{}",
                    node.log_tail(LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Waits until every node of `ids` answers, all agree on one leader among them that holds
    /// the genesis (origin set) and calls itself leader. Returns the leader's id. Fails at once
    /// if one of the nodes exits.
    pub async fn wait_leader(&mut self, ids: &[u64], timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.assert_running(ids);
            let seen = self.leader_views(ids).await;
            match seen {
                Ok(leader) => return leader,
                Err(seen) => assert!(
                    std::time::Instant::now() < deadline,
                    "no agreed leader among {ids:?} within {timeout:?}; last seen: {seen}"
                ),
            }
            tokio::time::sleep(wait::POLL).await;
        }
    }

    async fn leader_views(&self, ids: &[u64]) -> Result<u64, String> {
        let mut views = Vec::new();
        for id in ids {
            let s = self.status(*id).await?;
            views.push((s.node_id, s.leader_id, s.role, s.origin));
        }
        let leader = views[0].1;
        let agreed = leader != 0
            && views
                .iter()
                .all(|(_, l, _, o)| *l == leader && !o.is_empty())
            && views
                .iter()
                .any(|(n, _, role, _)| *n == leader && role == "leader");
        if agreed {
            Ok(leader)
        } else {
            Err(format!("(node, leader, role, origin): {views:?}"))
        }
    }

    /// Waits until every node of `ids` reports the same tree size and root, returning the
    /// leader's status then.
    pub async fn wait_converged(&self, ids: &[u64], timeout: Duration) -> pb::StatusResponse {
        wait::until("identical tree sizes and roots", timeout, || async move {
            let mut seen = Vec::new();
            for id in ids {
                seen.push(self.status(*id).await?);
            }
            let first = &seen[0];
            if seen
                .iter()
                .all(|s| s.tree_size == first.tree_size && s.root == first.root)
            {
                Ok(first.clone())
            } else {
                Err(seen
                    .iter()
                    .map(|s| {
                        format!(
                            "node {}: size {} root {}",
                            s.node_id,
                            s.tree_size,
                            hex::encode(&s.root[..8.min(s.root.len())])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        })
        .await
    }

    /// Prints the tail of every node's log to stderr.
    pub fn print_logs(&self) {
        for process in self.nodes.values() {
            eprintln!(
                "----- {} ({}), last {LOG_TAIL_LINES} lines -----\n{}",
                process.name,
                process.log.display(),
                process.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// A directory for a test's own files (receipts, copies), removed with the cluster.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self
            .dir
            .as_ref()
            .expect("the directory lives as long as the cluster")
            .path()
            .join(name);
        std::fs::create_dir_all(&path).expect("scratch directory");
        path
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for process in self.nodes.values_mut() {
            process.kill9();
        }
        if std::thread::panicking() {
            self.print_logs();
        }
        if std::env::var_os("STATELEDGER_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(_, p)| p)
}

/// The host of member `id` once every node is its own host.
fn host_of(_old: &str, net: Option<u8>, id: u64) -> String {
    match net {
        Some(net) => format!("127.0.{net}.{id}"),
        None => "127.0.0.1".into(),
    }
}

/// Reads a file the test wrote.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
