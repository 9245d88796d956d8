//! A client's connection to the cluster over the simulated network: raw gRPC to any node for
//! reads (whose answers the invariants check), and the real client library for writes
//! ([`Writer`]), every call bounded in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use stateledger_client::{ClientError, ConnectOptions};
use stateledger_core::record::{decode_record, CheckedRecord, WriterKey};
use stateledger_core::trust::TrustPolicy;
use stateledger_proto::metadata::LEADER_CLUSTER;
use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use stateledger_proto::v1::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Longest a client waits for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// What a submit came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Appended: (leaf index, leaf hash) per record, in order.
    Appended(Vec<(u64, [u8; 32])>),
    /// Every record was already in the ledger, at these indexes.
    AlreadyThere(Vec<u64>),
    /// Definitely not appended (the node refused the request itself).
    Refused { code: Code, message: String },
    /// May or may not have been appended (timeouts, lost leadership, crashes).
    Uncertain { code: Code, message: String },
}

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("simulated addresses are valid URIs")
        .connect_timeout(CALL_TIMEOUT)
        .connect_lazy()
}

/// Runs `call` with [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(s),
        Err(_) => Err(Status::deadline_exceeded("client timeout")),
    }
}

/// Connections to every server's public port.
#[derive(Debug)]
pub struct Conn {
    /// Public addresses of all servers.
    addrs: Vec<String>,
    clients: BTreeMap<String, LedgerClient<Channel>>,
}

impl Conn {
    pub fn new(addrs: Vec<String>) -> Conn {
        Conn {
            addrs,
            clients: BTreeMap::new(),
        }
    }

    pub fn client(&mut self, addr: &str) -> LedgerClient<Channel> {
        self.clients
            .entry(addr.to_string())
            .or_insert_with(|| LedgerClient::new(channel(addr)))
            .clone()
    }

    pub fn random_addr(&self) -> String {
        let i = thread_rng().gen_range(0..self.addrs.len());
        self.addrs[i].clone()
    }
}

/// A writer's connection: submits go through the real client library
/// ([`stateledger_client::LedgerClient`]), so every seed runs its leader following (read from
/// the nodes' `ErrorDetails`) and its deduplicating retry.
#[derive(Debug)]
pub struct Writer {
    client: stateledger_client::LedgerClient,
}

impl Writer {
    pub fn new(addrs: Vec<String>, policy: TrustPolicy) -> Writer {
        let options = ConnectOptions {
            timeout: CALL_TIMEOUT,
            ..ConnectOptions::new(addrs, String::new())
        };
        Writer {
            // Only fails for no endpoints, and a cluster always has servers.
            client: stateledger_client::LedgerClient::new(options, policy)
                .unwrap_or_else(|e| panic!("the simulated cluster's addresses make a client: {e}")),
        }
    }

    /// Submits one request (the client follows the leader and retries within
    /// [`CALL_TIMEOUT`], resending the same bytes).
    pub async fn submit(&self, records: Vec<pb::SignedRecord>) -> SubmitOutcome {
        let count = records.len();
        let records: Vec<CheckedRecord> = records.iter().map(as_sent).collect();
        match self.client.submit(&records).await {
            Ok(submitted) => {
                SubmitOutcome::Appended(submitted.iter().map(|s| (s.index, s.leaf_hash)).collect())
            }
            Err(ClientError::Duplicate { indexes }) if indexes.len() == count => {
                SubmitOutcome::AlreadyThere(indexes)
            }
            Err(ClientError::Duplicate { indexes }) => SubmitOutcome::Uncertain {
                code: Code::AlreadyExists,
                message: format!("{} existing leaves for {count} records", indexes.len()),
            },
            // Refusals that depend only on the request's bytes (and on grants, which the
            // workload never revokes): an earlier attempt of the same request cannot have been
            // appended, or this one would have found it.
            Err(ClientError::Rejected { code, message })
                if matches!(
                    code,
                    Code::PermissionDenied | Code::InvalidArgument | Code::Unauthenticated
                ) =>
            {
                SubmitOutcome::Refused { code, message }
            }
            Err(ClientError::Rejected { code, message }) => {
                SubmitOutcome::Uncertain { code, message }
            }
            Err(ClientError::Unavailable(message)) => SubmitOutcome::Uncertain {
                code: Code::Unavailable,
                message,
            },
            Err(e) => SubmitOutcome::Uncertain {
                code: Code::Internal,
                message: e.to_string(),
            },
        }
    }
}

/// A signed record as the workload built it, to be sent unchanged — including the records whose
/// signature it broke on purpose, which the node (not the client) must refuse. So it is not
/// checked here: the workload made every record valid and only ever damages a signature.
fn as_sent(signed: &pb::SignedRecord) -> CheckedRecord {
    let mut writer_key = [0u8; 32];
    let mut signature = [0u8; 64];
    let key_len = signed.writer_key.len().min(32);
    writer_key[..key_len].copy_from_slice(&signed.writer_key[..key_len]);
    let signature_len = signed.signature.len().min(64);
    signature[..signature_len].copy_from_slice(&signed.signature[..signature_len]);
    CheckedRecord {
        record: decode_record(&signed.record).unwrap_or_default(),
        bytes: signed.record.clone(),
        writer_key: WriterKey(writer_key),
        signature,
    }
}

/// The operator's connection to the cluster ports (membership changes), following
/// `x-stateledger-leader-cluster` redirects.
#[derive(Debug)]
pub struct AdminConn {
    addrs: Vec<String>,
    leader: Option<String>,
}

impl AdminConn {
    pub fn new(cluster_addrs: Vec<String>) -> AdminConn {
        AdminConn {
            addrs: cluster_addrs,
            leader: None,
        }
    }

    fn target(&self) -> String {
        self.leader.clone().unwrap_or_else(|| {
            let i = thread_rng().gen_range(0..self.addrs.len());
            self.addrs[i].clone()
        })
    }

    /// Runs one admin call against the leader; on a redirect, remembers the leader for the next
    /// attempt. `timeout` bounds the call (adding a learner waits for it to catch up).
    pub async fn call<T, F, Fut>(&mut self, timeout: Duration, f: F) -> Result<T, Status>
    where
        F: FnOnce(ClusterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let addr = self.target();
        let client = ClusterClient::new(channel(&addr));
        let result = match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(Status::deadline_exceeded("admin call timed out")),
        };
        if let Err(status) = &result {
            self.leader = status
                .metadata()
                .get(LEADER_CLUSTER)
                .and_then(|v| v.to_str().ok())
                .filter(|a| !a.is_empty())
                .map(str::to_string);
        } else {
            self.leader = Some(addr);
        }
        result
    }
}
