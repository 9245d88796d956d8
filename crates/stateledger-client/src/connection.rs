//! Connections to nodes' public ports (server-authenticated TLS with the cluster CA), with leader
//! following: a follower's FAILED_PRECONDITION carries the leader's address, which becomes the
//! preferred endpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use stateledger_proto::v1::ledger_client::LedgerClient as Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// "host:port" of any nodes' public listeners.
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM) the nodes' certificates chain to.
    pub ca_pem: String,
    /// Deadline for one call, retries included.
    pub timeout: Duration,
    /// Largest message accepted from a node.
    pub message_bytes_max: usize,
    /// The local (source) IP address connections leave from; `None` (the default) lets the
    /// operating system choose. Set it on a host with several addresses when the source matters,
    /// e.g. to leave through a given interface or region's network (the multi-region test gives
    /// each region's clients a source address of that region).
    pub local_address: Option<IpAddr>,
}

impl ConnectOptions {
    pub fn new(endpoints: Vec<String>, ca_pem: String) -> ConnectOptions {
        ConnectOptions {
            endpoints,
            ca_pem,
            timeout: Duration::from_secs(30),
            message_bytes_max: 256 * 1024 * 1024,
            local_address: None,
        }
    }
}

/// Channels to endpoints, the preferred (leader) one first.
#[derive(Debug)]
pub struct Connections {
    options: ConnectOptions,
    channels: Mutex<HashMap<String, Channel>>,
    order: Mutex<Vec<String>>,
}

impl Connections {
    pub fn new(options: ConnectOptions) -> Result<Connections, ClientError> {
        if options.endpoints.is_empty() {
            return Err(ClientError::Invalid("no endpoints given".into()));
        }
        let order = options.endpoints.clone();
        Ok(Connections {
            options,
            channels: Mutex::new(HashMap::new()),
            order: Mutex::new(order),
        })
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Endpoints in the order to try them.
    pub fn order(&self) -> Vec<String> {
        self.order.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Moves `addr` to the front (adding it if new).
    pub fn prefer(&self, addr: &str) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        order.retain(|a| a != addr);
        order.insert(0, addr.to_string());
    }

    /// Forgets a broken channel so the next call reconnects.
    pub fn drop_channel(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    pub fn client(&self, addr: &str) -> Result<Grpc<Channel>, ClientError> {
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = self.channel(addr)?;
                    channels.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(Grpc::new(channel)
            .max_decoding_message_size(self.options.message_bytes_max)
            .max_encoding_message_size(self.options.message_bytes_max))
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        #[cfg(not(madsim))]
        {
            use tonic::transport::{Certificate, ClientTlsConfig};
            let host = host_of(addr);
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.options.ca_pem))
                .domain_name(host);
            let endpoint = Endpoint::from_shared(format!("https://{addr}"))
                .map_err(|e| ClientError::Invalid(format!("bad endpoint {addr:?}: {e}")))?
                .tls_config(tls)
                .map_err(|e| ClientError::Invalid(format!("TLS for {addr}: {e}")))?
                .connect_timeout(Duration::from_secs(3))
                .tcp_nodelay(true)
                // A node that stops answering (stopped, cut off) must not hold a call until its
                // deadline: HTTP/2 pings find the silent connection dead, the call fails as
                // UNAVAILABLE, and `call` moves on to the next node.
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .local_address(self.options.local_address);
            Ok(endpoint.connect_lazy())
        }
        #[cfg(madsim)]
        {
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| ClientError::Invalid(format!("bad endpoint {addr:?}: {e}")))?
                .connect_timeout(Duration::from_secs(3));
            Ok(endpoint.connect_lazy())
        }
    }
}

/// How often a client pings a node on an open connection, and how long it waits for the answer
/// before it gives the connection up: a silent node costs a call about their sum.
#[cfg(not(madsim))]
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
#[cfg(not(madsim))]
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The host part of "host:port".
pub fn host_of(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The leader address a redirect carries, if any.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status
        .metadata()
        .get(stateledger_proto::metadata::LEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether a failure is worth retrying on the same or another node. A full disk is not: it
/// lasts until someone frees space.
pub fn retryable(status: &tonic::Status) -> bool {
    let disk = status
        .metadata()
        .get(stateledger_proto::metadata::REASON)
        .is_some_and(|v| v == stateledger_proto::metadata::REASON_DISK_SPACE);
    !disk
        && matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Aborted
                | tonic::Code::ResourceExhausted
                | tonic::Code::Cancelled
        )
}
