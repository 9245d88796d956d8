//! Raw gRPC access to one node: generated clients pinned to one endpoint (no leader following),
//! cluster-port clients with or without a client certificate, and unary calls with arbitrary
//! body bytes.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use stateledger_proto::v1::cluster_client::ClusterClient;
use stateledger_proto::v1::ledger_client::LedgerClient;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

/// Largest message the test clients send or accept.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

fn endpoint(addr: &str, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("a host:port makes a valid URI")
        .tls_config(tls)
        .expect("the TLS configuration is accepted")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
}

/// A channel to a node's public port (server-authenticated TLS with the cluster CA).
pub fn public_channel(ca_pem: &str, addr: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1");
    endpoint(addr, tls).connect_lazy()
}

/// The generated ledger client, talking to this one node only.
pub fn ledger(ca_pem: &str, addr: &str) -> LedgerClient<Channel> {
    LedgerClient::new(public_channel(ca_pem, addr))
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

/// A client certificate and key (PEM).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The generated cluster client for a node's cluster port, presenting `cert` if given and
/// trusting `ca_pem` for the server.
pub fn cluster(ca_pem: &str, addr: &str, cert: Option<&ClientCert>) -> ClusterClient<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1");
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    ClusterClient::new(endpoint(addr, tls).connect_lazy())
}

/// Passes message bytes through untouched, so a test can send what no generated client would.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A unary call of `path` (e.g. "/stateledger.v1.Ledger/Submit") whose request message is
/// exactly `body`.
pub async fn raw_unary(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// [`raw_unary`] on a node's cluster port, presenting `cert`.
pub async fn raw_unary_cluster(
    ca_pem: &str,
    addr: &str,
    cert: &ClientCert,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1")
        .identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
    raw_unary(endpoint(addr, tls).connect_lazy(), path, body).await
}
