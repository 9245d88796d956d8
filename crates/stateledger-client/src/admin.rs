//! Membership administration over the cluster port (mutual TLS: the caller presents a
//! certificate signed by the cluster CA, e.g. the dev cluster's admin.pem).

use std::time::Duration;

use stateledger_proto::v1 as pb;
use stateledger_proto::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;
use crate::follow::{call_leader, Endpoints, Port};

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
    endpoints: Endpoints,
}

/// Admin calls are tried again only when no node could answer them.
fn admin_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    )
}

impl AdminClient {
    pub fn new(options: AdminOptions) -> Result<AdminClient, ClientError> {
        if options.endpoints.is_empty() {
            return Err(ClientError::Invalid("no cluster endpoints given".into()));
        }
        // A bad endpoint or TLS material fails here, before any call.
        let admin = AdminClient {
            endpoints: Endpoints::new(options.endpoints.clone()),
            options,
        };
        for addr in &admin.options.endpoints {
            admin.client(addr)?;
        }
        Ok(admin)
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

    /// Runs `f` on the leader, following redirects (`follow::call_leader`).
    async fn on_leader<F, Fut>(&self, f: F) -> Result<pb::AdminResponse, ClientError>
    where
        F: Fn(ClusterClient<Channel>) -> Fut,
        Fut:
            std::future::Future<Output = Result<tonic::Response<pb::AdminResponse>, tonic::Status>>,
    {
        let port = Port {
            leader_hint: crate::connection::leader_cluster_hint,
            retryable: admin_retryable,
        };
        match call_leader(
            &self.endpoints,
            self.options.timeout,
            port,
            |addr| self.client(addr),
            |_| {},
            f,
        )
        .await
        {
            Ok((resp, _, _)) => Ok(resp),
            Err(e)
                if admin_retryable(&e.status)
                    || e.status.code() == tonic::Code::FailedPrecondition
                        && crate::connection::not_leader(&e.status) =>
            {
                Err(ClientError::Unavailable(format!(
                    "{}: {}",
                    e.endpoint,
                    e.status.message()
                )))
            }
            Err(e) => Err(ClientError::Rejected {
                code: e.status.code(),
                message: e.status.message().to_string(),
            }),
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
