//! Membership administration over the cluster port (mutual TLS: the caller presents a
//! certificate signed by the cluster CA, e.g. the dev cluster's admin.pem).

use std::time::Duration;

use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

/// How to reach nodes' cluster ports.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    pub endpoints: Vec<String>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Adding a learner waits for it to catch up, which may take a while on a big ledger.
    pub timeout: Duration,
}

/// Membership changes, sent to the leader.
#[derive(Debug)]
pub struct AdminClient {
    options: AdminOptions,
}

impl AdminClient {
    pub fn new(options: AdminOptions) -> Result<AdminClient, ClientError> {
        if options.endpoints.is_empty() {
            return Err(ClientError::Invalid("no cluster endpoints given".into()));
        }
        Ok(AdminClient { options })
    }

    fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, ClientError> {
        #[cfg(not(madsim))]
        let endpoint = {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.options.ca_pem))
                .identity(Identity::from_pem(
                    &self.options.cert_pem,
                    &self.options.key_pem,
                ))
                .domain_name(crate::connection::host_of(addr));
            Endpoint::from_shared(format!("https://{addr}"))
                .map_err(|e| ClientError::Invalid(format!("bad endpoint {addr:?}: {e}")))?
                .tls_config(tls)
                .map_err(|e| ClientError::Invalid(format!("TLS for {addr}: {e}")))?
        };
        #[cfg(madsim)]
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::Invalid(format!("bad endpoint {addr:?}: {e}")))?;
        Ok(ClusterClient::new(
            endpoint
                .connect_timeout(Duration::from_secs(3))
                .connect_lazy(),
        ))
    }

    async fn on_leader<F, Fut>(&self, f: F) -> Result<pb::AdminResponse, ClientError>
    where
        F: Fn(ClusterClient<Channel>) -> Fut,
        Fut:
            std::future::Future<Output = Result<tonic::Response<pb::AdminResponse>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let mut order = self.options.endpoints.clone();
        let mut last = String::from("no endpoint answered");
        loop {
            let mut redirected = false;
            for addr in order.clone() {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let result = tokio::time::timeout(remaining, f(self.client(&addr)?)).await;
                match result {
                    Ok(Ok(resp)) => return Ok(resp.into_inner()),
                    Ok(Err(status)) => {
                        let leader = status
                            .metadata()
                            .get(stateledger_proto::metadata::LEADER_CLUSTER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        if let Some(leader) = leader.filter(|l| *l != addr) {
                            order.retain(|a| *a != leader);
                            order.insert(0, leader);
                            redirected = true;
                            break;
                        }
                        match status.code() {
                            tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown => {
                                last = format!("{addr}: {}", status.message());
                            }
                            code => {
                                return Err(ClientError::Rejected {
                                    code,
                                    message: status.message().to_string(),
                                })
                            }
                        }
                    }
                    Err(_) => last = format!("{addr}: timed out"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Unavailable(last));
            }
            if !redirected {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Adds a node as a learner; returns once it has caught up.
    pub async fn add_learner(
        &self,
        request: pb::AddLearnerRequest,
    ) -> Result<pb::AdminResponse, ClientError> {
        self.on_leader(|mut c| {
            let r = request.clone();
            async move { c.add_learner(r).await }
        })
        .await
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, node_id: u64) -> Result<pb::AdminResponse, ClientError> {
        self.on_leader(|mut c| async move { c.promote(pb::MemberRequest { node_id }).await })
            .await
    }

    /// Removes a node from the cluster.
    pub async fn remove(&self, node_id: u64) -> Result<pb::AdminResponse, ClientError> {
        self.on_leader(|mut c| async move { c.remove(pb::MemberRequest { node_id }).await })
            .await
    }
}
