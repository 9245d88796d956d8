//! The node's two gRPC listeners: the public port (server TLS, the `Ledger` service) and the
//! cluster port (mutual TLS, the `Cluster` service), with their connection limits, serving until
//! shutdown. Under the simulation, madsim's network stands in for TCP and TLS.

use std::net::SocketAddr;

use stateledger_proto::v1::cluster_server::ClusterServer;
use stateledger_proto::v1::ledger_server::LedgerServer;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::grpc::cluster_service::ClusterService;
use crate::grpc::ledger_service::LedgerService;
use crate::start_error::StartError;
use crate::tls::TlsMaterial;

/// The services the listeners serve.
#[derive(Debug)]
pub struct Services {
    pub ledger: LedgerService,
    pub cluster: ClusterService,
}

#[cfg(not(madsim))]
async fn bind(addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(not(madsim))]
pub async fn serve(
    config: &NodeConfig,
    tls: &TlsMaterial,
    services: Services,
    limits: &crate::conn_limit::Listeners,
    shutdown_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    use crate::conn_limit::{ActivityLayer, Listeners};
    use crate::raft::network::CLUSTER_MESSAGE_BYTES_MAX;
    let ledger_service = LedgerServer::new(services.ledger)
        .max_decoding_message_size(config.limits.request_bytes_max)
        .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
    let cluster_service = ClusterServer::new(services.cluster)
        .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
    use tonic::transport::Server;

    let public = bind(&config.node.public_listen).await?;
    let cluster = bind(&config.node.cluster_listen).await?;
    let public_addr = public.local_addr().map_err(|e| StartError::Listen {
        addr: config.node.public_listen.clone(),
        reason: e.to_string(),
    })?;
    let cluster_addr = cluster.local_addr().map_err(|e| StartError::Listen {
        addr: config.node.cluster_listen.clone(),
        reason: e.to_string(),
    })?;

    let tls_err = |e: tonic::transport::Error| StartError::Config(format!("TLS: {e}"));
    let c = &config.connections;
    let ms = std::time::Duration::from_millis;
    let handshake = ms(c.tls_handshake_timeout_ms);
    let limits = limits.clone();
    let mut public_server = Server::builder()
        .tls_config(tls.public_server().timeout(handshake))
        .map_err(tls_err)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(ms(c.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(c.keepalive_timeout_ms)))
        .layer(ActivityLayer::new(limits.public.clone()));
    let router = public_server.add_service(ledger_service);
    let rx = shutdown_rx.clone();
    let limiter = limits.public.clone();
    tasks.push(tokio::spawn(async move {
        let incoming = Listeners::incoming(limiter, public);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "public listener stopped");
        }
    }));

    let mut cluster_server = Server::builder()
        .tls_config(tls.cluster_server().timeout(handshake))
        .map_err(tls_err)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(ms(c.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(c.keepalive_timeout_ms)))
        .layer(ActivityLayer::new(limits.cluster.clone()));
    let router = cluster_server.add_service(cluster_service);
    let rx = shutdown_rx.clone();
    let limiter = limits.cluster.clone();
    tasks.push(tokio::spawn(async move {
        let incoming = Listeners::incoming(limiter, cluster);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "cluster listener stopped");
        }
    }));
    Ok((public_addr, cluster_addr))
}

#[cfg(madsim)]
pub async fn serve(
    config: &NodeConfig,
    _tls: &TlsMaterial,
    services: Services,
    shutdown_rx: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    use tonic::transport::Server;
    let ledger_service = LedgerServer::new(services.ledger);
    let cluster_service = ClusterServer::new(services.cluster);
    let parse = |a: &str| {
        a.parse::<SocketAddr>().map_err(|e| StartError::Listen {
            addr: a.to_string(),
            reason: e.to_string(),
        })
    };
    let public_addr = parse(&config.node.public_listen)?;
    let cluster_addr = parse(&config.node.cluster_listen)?;
    let rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(ledger_service)
            .serve_with_shutdown(public_addr, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "public listener stopped");
        }
    }));
    let rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = Server::builder()
            .add_service(cluster_service)
            .serve_with_shutdown(cluster_addr, wait_shutdown(rx))
            .await
        {
            tracing::error!(error = %e, "cluster listener stopped");
        }
    }));
    Ok((public_addr, cluster_addr))
}
