//! A client's connection to the cluster over the simulated network: any node for reads, the
//! leader for writes (following `x-stateledger-leader` redirects), every call bounded in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use stateledger_proto::metadata;
use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use stateledger_proto::v1::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Longest a client waits for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Redirects followed for one submit.
const REDIRECTS_MAX: usize = 3;

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
    leader: Option<String>,
    clients: BTreeMap<String, LedgerClient<Channel>>,
}

impl Conn {
    pub fn new(addrs: Vec<String>) -> Conn {
        Conn {
            addrs,
            leader: None,
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

    /// Submits one request, following redirects to the leader.
    pub async fn submit(&mut self, records: Vec<pb::SignedRecord>) -> SubmitOutcome {
        let count = records.len();
        let mut addr = self.leader.clone().unwrap_or_else(|| self.random_addr());
        let mut last = SubmitOutcome::Uncertain {
            code: Code::Unknown,
            message: "not sent".into(),
        };
        for _ in 0..=REDIRECTS_MAX {
            let mut c = self.client(&addr);
            let request = pb::SubmitRequest {
                records: records.clone(),
            };
            match bounded(c.submit(request)).await {
                Ok(resp) => {
                    self.leader = Some(addr);
                    let appended = resp
                        .results
                        .iter()
                        .map(|r| {
                            let mut h = [0u8; 32];
                            if r.leaf_hash.len() == 32 {
                                h.copy_from_slice(&r.leaf_hash);
                            }
                            (r.leaf_index, h)
                        })
                        .collect::<Vec<_>>();
                    if appended.len() != count {
                        return SubmitOutcome::Uncertain {
                            code: Code::Internal,
                            message: format!("{} results for {count} records", appended.len()),
                        };
                    }
                    return SubmitOutcome::Appended(appended);
                }
                Err(status) => {
                    let redirect = status
                        .metadata()
                        .get(metadata::LEADER)
                        .and_then(|v| v.to_str().ok())
                        .filter(|a| !a.is_empty())
                        .map(str::to_string);
                    match (status.code(), redirect) {
                        (Code::FailedPrecondition, Some(leader)) => {
                            self.leader = Some(leader.clone());
                            addr = leader;
                            last = SubmitOutcome::Uncertain {
                                code: status.code(),
                                message: status.message().to_string(),
                            };
                            continue;
                        }
                        (Code::AlreadyExists, _) => {
                            let indexes: Vec<u64> = status
                                .metadata()
                                .get(metadata::EXISTING)
                                .and_then(|v| v.to_str().ok())
                                .map(|list| {
                                    list.split(',').filter_map(|i| i.parse().ok()).collect()
                                })
                                .unwrap_or_default();
                            if indexes.len() == count {
                                return SubmitOutcome::AlreadyThere(indexes);
                            }
                            return SubmitOutcome::Uncertain {
                                code: status.code(),
                                message: status.message().to_string(),
                            };
                        }
                        (
                            Code::PermissionDenied | Code::InvalidArgument | Code::Unauthenticated,
                            _,
                        ) => {
                            return SubmitOutcome::Refused {
                                code: status.code(),
                                message: status.message().to_string(),
                            };
                        }
                        _ => {
                            self.leader = None;
                            return SubmitOutcome::Uncertain {
                                code: status.code(),
                                message: status.message().to_string(),
                            };
                        }
                    }
                }
            }
        }
        last
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
                .get(metadata::LEADER_CLUSTER)
                .and_then(|v| v.to_str().ok())
                .filter(|a| !a.is_empty())
                .map(str::to_string);
        } else {
            self.leader = Some(addr);
        }
        result
    }
}
