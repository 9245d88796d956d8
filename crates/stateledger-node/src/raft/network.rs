//! The Raft network over tonic gRPC: mutual TLS between nodes in production, madsim's simulated
//! network in the simulation. openraft messages travel postcard-encoded inside protobuf bytes.
//!
//! Snapshots are sent by our own `full_snapshot`: the receiver first says which prefix of the
//! ledger it already holds (size and root); if the root matches ours at that size, only the
//! leaves after it are sent, in chunks; then the receiver installs through openraft.

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot};
use serde::{Deserialize, Serialize};
use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use super::codec;
use super::{NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};
use crate::ledger::snapshot::{LedgerSnapshot, SnapshotHeader};
use crate::tls::TlsMaterial;

/// Largest message on the cluster port (snapshot chunks, large append batches).
pub const CLUSTER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Leaf bytes per snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens channels to other nodes' cluster ports.
#[derive(Clone, Debug)]
pub struct ClusterConnector {
    #[cfg_attr(madsim, allow(dead_code))]
    tls: TlsMaterial,
    /// Connections leave from this address (the cluster listen address, when specific).
    #[cfg_attr(madsim, allow(dead_code))]
    local_ip: Option<std::net::IpAddr>,
}

/// Why no channel to another node's cluster port can be made: the address it is known by (its
/// membership entry), or our own TLS files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[cfg(not(madsim))]
    #[error("bad host in {addr:?}: {source}")]
    BadHost {
        addr: String,
        source: rustls_pki_types::InvalidDnsNameError,
    },
    #[error("bad address {addr:?}: {source}")]
    BadAddress {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl ClusterConnector {
    pub fn new(tls: TlsMaterial, local_ip: Option<std::net::IpAddr>) -> ClusterConnector {
        ClusterConnector { tls, local_ip }
    }

    /// A lazily connecting channel to node `node`'s cluster port at `addr` ("host:port"). The
    /// server must prove it is that node (`crate::tls`).
    pub fn channel(&self, addr: &str, node: NodeId) -> Result<Channel, ConnectError> {
        #[cfg(not(madsim))]
        {
            let host = crate::tls::host_of(addr);
            let server_name =
                rustls_pki_types::ServerName::try_from(host.clone()).map_err(|source| {
                    ConnectError::BadHost {
                        addr: addr.to_string(),
                        source,
                    }
                })?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.cluster_client(node)?);
            // TLS is ours (in the connector): the channel itself speaks HTTP/2 over it.
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|source| ConnectError::BadAddress {
                    addr: addr.to_string(),
                    source,
                })?
                .connect_timeout(CONNECT_TIMEOUT);
            let local = self.local_ip;
            Ok(
                endpoint.connect_with_connector_lazy(tower::service_fn(move |uri| {
                    let (tls, server_name) = (tls.clone(), server_name.clone());
                    async move {
                        let tcp = crate::wire::connect_tcp_from(local, &uri).await?;
                        let stream = tls.connect(server_name, tcp).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                })),
            )
        }
        #[cfg(madsim)]
        {
            let _ = node;
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|source| ConnectError::BadAddress {
                    addr: addr.to_string(),
                    source,
                })?
                .connect_timeout(CONNECT_TIMEOUT);
            Ok(endpoint.connect_lazy())
        }
    }

    /// A client of node `node`'s cluster port at `addr` (see [`ClusterConnector::channel`]).
    pub fn client(&self, addr: &str, node: NodeId) -> Result<ClusterClient<Channel>, ConnectError> {
        Ok(ClusterClient::new(self.channel(addr, node)?)
            .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX))
    }
}

/// The first message of a snapshot transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotBegin {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub header: SnapshotHeader,
}

/// What the receiver already holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotBeginReply {
    pub session: u64,
    pub size: u64,
    pub root: [u8; 32],
}

/// The last message: install.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotFinish {
    pub session: u64,
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub header: SnapshotHeader,
    pub from: u64,
    pub checkpoints: Vec<(u64, String)>,
}

pub type AppendReply = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
pub type VoteReply = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
pub type FinishReply = Result<SnapshotResponse<NodeId>, InstallRefused>;

/// Why the receiving node could not install a snapshot: its own error (openraft's), which
/// crosses the wire as its text. Serialized as that bare string.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[serde(transparent)]
#[error("{reason}")]
pub struct InstallRefused {
    pub reason: String,
}

/// Creates per-target Raft clients.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    connector: ClusterConnector,
}

impl NetworkFactory {
    pub fn new(connector: ClusterConnector) -> NetworkFactory {
        NetworkFactory { connector }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NodeNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> NodeNetwork {
        NodeNetwork {
            target,
            node: node.clone(),
            connector: self.connector.clone(),
            client: None,
        }
    }
}

/// Raft RPCs to one node.
#[derive(Debug)]
pub struct NodeNetwork {
    target: NodeId,
    node: NodeInfo,
    connector: ClusterConnector,
    client: Option<ClusterClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

fn status_error<E: std::error::Error>(status: &tonic::Status) -> RPCError<NodeId, NodeInfo, E> {
    let failure = Failure(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&failure))
        }
        _ => RPCError::Network(NetworkError::new(&failure)),
    }
}

fn local_error<E: std::error::Error>(reason: String) -> RPCError<NodeId, NodeInfo, E> {
    RPCError::Network(NetworkError::new(&Failure(reason)))
}

impl NodeNetwork {
    fn client(&mut self) -> Result<ClusterClient<Channel>, ConnectError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self.connector.client(&self.node.raft_addr, self.target)?;
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<F, Fut>(&mut self, ttl: Duration, f: F) -> Result<Vec<u8>, tonic::Status>
    where
        F: FnOnce(ClusterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::RaftPayload>, tonic::Status>>,
    {
        let client = self
            .client()
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        match tokio::time::timeout(ttl, f(client)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner().data),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    // Reconnect next time.
                    self.client = None;
                }
                Err(status)
            }
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer from node {} within {ttl:?}",
                self.target
            ))),
        }
    }
}

impl RaftNetwork<TypeConfig> for NodeNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let data = codec::encode("append entries", &rpc).map_err(|e| local_error(e.to_string()))?;
        let reply = self
            .call(option.hard_ttl(), |mut c| async move {
                c.append_entries(pb::RaftPayload { data }).await
            })
            .await
            .map_err(|s| status_error(&s))?;
        let reply: AppendReply = codec::decode("append entries reply", &reply)
            .map_err(|e| local_error(e.to_string()))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let data = codec::encode("vote", &rpc).map_err(|e| local_error(e.to_string()))?;
        let reply = self
            .call(option.hard_ttl(), |mut c| async move {
                c.vote(pb::RaftPayload { data }).await
            })
            .await
            .map_err(|s| status_error(&s))?;
        let reply: VoteReply =
            codec::decode("vote reply", &reply).map_err(|e| local_error(e.to_string()))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let transfer = self.send_snapshot(vote, snapshot, option);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = transfer => result,
        }
    }
}

fn streaming_status(status: &tonic::Status) -> StreamingError<TypeConfig, Fatal<NodeId>> {
    let failure = Failure(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            StreamingError::Unreachable(Unreachable::new(&failure))
        }
        _ => StreamingError::Network(NetworkError::new(&failure)),
    }
}

fn streaming_local(reason: String) -> StreamingError<TypeConfig, Fatal<NodeId>> {
    StreamingError::Network(NetworkError::new(&Failure(reason)))
}

impl NodeNetwork {
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let data: &LedgerSnapshot = &snapshot.snapshot;
        let header = data
            .header
            .clone()
            .ok_or_else(|| streaming_local("snapshot without header".into()))?;
        let ttl = option.hard_ttl().max(Duration::from_secs(10));

        let begin = SnapshotBegin {
            vote,
            meta: snapshot.meta.clone(),
            header: header.clone(),
        };
        let bytes =
            codec::encode("snapshot begin", &begin).map_err(|e| streaming_local(e.to_string()))?;
        let reply = self
            .call(ttl, |mut c| async move {
                c.snapshot_begin(pb::RaftPayload { data: bytes }).await
            })
            .await
            .map_err(|s| streaming_status(&s))?;
        let reply: SnapshotBeginReply = codec::decode("snapshot begin reply", &reply)
            .map_err(|e| streaming_local(e.to_string()))?;

        // Send only what the receiver lacks, if its prefix is ours.
        let from = if reply.size <= header.size && reply.size > 0 {
            match &data.source {
                crate::ledger::snapshot::SnapshotSource::Ledger(ledger) => {
                    let ours = ledger
                        .root_of_prefix(reply.size)
                        .map_err(|e| streaming_local(e.to_string()))?;
                    if ours.0 == reply.root {
                        reply.size
                    } else {
                        0
                    }
                }
                _ => 0,
            }
        } else {
            0
        };

        let mut pos = from;
        while pos < header.size {
            let leaves = data
                .leaves(pos, 4096)
                .map_err(|e| streaming_local(e.to_string()))?;
            if leaves.is_empty() {
                return Err(streaming_local(format!(
                    "snapshot source has no leaf {pos}"
                )));
            }
            let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES + 4096);
            let start = pos;
            for leaf in leaves {
                crate::ledger::blocks::push_leaf(&mut chunk, &leaf);
                pos += 1;
                if chunk.len() >= SNAPSHOT_CHUNK_BYTES {
                    break;
                }
            }
            let client = self.client().map_err(|e| streaming_local(e.to_string()))?;
            let request = pb::SnapshotChunkRequest {
                session: reply.session,
                start_index: start,
                leaves: chunk,
            };
            let mut c = client;
            match tokio::time::timeout(ttl, c.snapshot_chunk(request)).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => return Err(streaming_status(&status)),
                Err(_) => {
                    return Err(streaming_local(format!(
                        "snapshot chunk at {start} timed out"
                    )))
                }
            }
        }

        let finish = SnapshotFinish {
            session: reply.session,
            vote,
            meta: snapshot.meta.clone(),
            header,
            from,
            checkpoints: data
                .checkpoints()
                .map_err(|e| streaming_local(e.to_string()))?,
        };
        let bytes = codec::encode("snapshot finish", &finish)
            .map_err(|e| streaming_local(e.to_string()))?;
        let reply = self
            .call(ttl.max(Duration::from_secs(60)), |mut c| async move {
                c.snapshot_finish(pb::RaftPayload { data: bytes }).await
            })
            .await
            .map_err(|s| streaming_status(&s))?;
        let reply: FinishReply = codec::decode("snapshot finish reply", &reply)
            .map_err(|e| streaming_local(e.to_string()))?;
        reply.map_err(|refused| streaming_local(refused.reason))
    }
}
