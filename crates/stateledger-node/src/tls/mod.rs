//! TLS: every connection is TLS (rustls with the ring provider, through tonic). The cluster port
//! requires a client certificate signed by the cluster CA (mutual TLS); the public port
//! authenticates the server only. A node dialing another node's cluster port also checks that
//! the server's certificate names the node it dialed (`stateledger:node:<id>`,
//! [`identity`]): a certificate of another node, valid for the same host, cannot answer in its
//! place (and so cannot vote twice). Under madsim TLS is not simulated: this module then only
//! carries the material, and the simulated network runs without it.

#[cfg(not(madsim))]
pub mod dev_ca;
pub mod identity;

use std::path::{Path, PathBuf};

use crate::config::TlsSection;

/// Why TLS files cannot be used: all of it the operator's (the files named in `[tls]`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[cfg(not(madsim))]
    #[error("the cluster CA certificate: {0}")]
    CaPem(rustls::pki_types::pem::Error),
    #[cfg(not(madsim))]
    #[error("the cluster CA certificate: {0}")]
    CaRefused(rustls::Error),
    #[cfg(not(madsim))]
    #[error("the cluster CA certificate: {0}")]
    CaUnusable(rustls::client::VerifierBuilderError),
    #[cfg(not(madsim))]
    #[error("this node's certificate: {0}")]
    CertPem(rustls::pki_types::pem::Error),
    #[cfg(not(madsim))]
    #[error("this node's private key: {0}")]
    KeyPem(rustls::pki_types::pem::Error),
    #[cfg(not(madsim))]
    #[error("TLS versions: {0}")]
    Versions(rustls::Error),
    #[cfg(not(madsim))]
    #[error("this node's certificate and key: {0}")]
    CertAndKey(rustls::Error),
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    #[error("the certificate names {named}, not this node (stateledger:node:{id}): check tls.cert and node.id")]
    OtherIdentity { named: String, id: u64 },
    #[error("the certificate: {0}")]
    Identity(identity::IdentityError),
}

/// PEM material: the cluster CA and this party's certificate and key.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial")
    }
}

fn read(path: &Path, what: &'static str) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl TlsMaterial {
    pub fn load(section: &TlsSection) -> Result<TlsMaterial, TlsError> {
        Ok(TlsMaterial {
            ca_pem: read(&section.ca_cert, "CA certificate")?,
            cert_pem: read(&section.cert, "certificate")?,
            key_pem: read(&section.key, "private key")?,
        })
    }
}

#[cfg(not(madsim))]
mod real {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

    use super::identity::PeerIdentity;
    use super::{TlsError, TlsMaterial};
    use crate::node_id::NodeId;

    impl TlsMaterial {
        fn identity(&self) -> Identity {
            Identity::from_pem(&self.cert_pem, &self.key_pem)
        }

        /// The public listener: server authentication only.
        pub fn public_server(&self) -> ServerTlsConfig {
            ServerTlsConfig::new().identity(self.identity())
        }

        /// The cluster listener: clients must present a certificate signed by the cluster CA.
        pub fn cluster_server(&self) -> ServerTlsConfig {
            ServerTlsConfig::new()
                .identity(self.identity())
                .client_ca_root(Certificate::from_pem(&self.ca_pem))
                .client_auth_optional(false)
        }

        /// Connecting to node `expected`'s cluster port, presenting our certificate: the
        /// server's certificate must chain to the cluster CA, be valid for the host dialed, and
        /// name node `expected`.
        pub fn cluster_client(
            &self,
            expected: NodeId,
        ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                let ca = ca.map_err(TlsError::CaPem)?;
                roots.add(ca).map_err(TlsError::CaRefused)?;
            }
            let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(TlsError::CertPem)?;
            let key =
                PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(TlsError::KeyPem)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(TlsError::CaUnusable)?;
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Versions)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NodeServerVerifier { webpki, expected }))
                .with_client_auth_cert(chain, key)
                .map_err(TlsError::CertAndKey)?;
            config.alpn_protocols = vec![b"h2".to_vec()];
            Ok(Arc::new(config))
        }
    }

    impl TlsMaterial {
        /// Checks, before a node touches its data directory, that the TLS files can be used and
        /// the certificate is node `id`'s: the CA, the chain and the key parse and fit together,
        /// and the certificate names `stateledger:node:<id>` (another node's certificate would
        /// only be refused by every peer, one connection at a time).
        pub fn check_node(&self, id: NodeId) -> Result<(), TlsError> {
            self.cluster_client(id)?;
            let leaf = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .next()
                .ok_or(TlsError::NoCertificate)?
                .map_err(TlsError::CertPem)?;
            match PeerIdentity::from_cert_der(&leaf) {
                Ok(PeerIdentity::Node(n)) if n == id => Ok(()),
                Ok(other) => Err(TlsError::OtherIdentity {
                    named: other.uri(),
                    id,
                }),
                Err(e) => Err(TlsError::Identity(e)),
            }
        }
    }

    /// The usual checks (chain to the cluster CA, validity, host name), then the node identity.
    #[derive(Debug)]
    struct NodeServerVerifier {
        webpki: Arc<WebPkiServerVerifier>,
        expected: NodeId,
    }

    impl ServerCertVerifier for NodeServerVerifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
            match PeerIdentity::from_cert_der(end_entity) {
                Ok(PeerIdentity::Node(id)) if id == self.expected => {
                    Ok(ServerCertVerified::assertion())
                }
                Ok(other) => Err(rustls::Error::General(format!(
                    "the server's certificate names {}, not node {}: another party answers at \
                     node {}'s address",
                    other.uri(),
                    self.expected,
                    self.expected
                ))),
                Err(e) => Err(rustls::Error::General(format!(
                    "the server's certificate does not name node {}: {e}",
                    self.expected
                ))),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    }

    /// Connecting to a public port: trust the cluster CA only.
    pub fn public_client(ca_pem: &str, host: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(host)
    }
}

#[cfg(not(madsim))]
pub use real::public_client;

/// The host part of "host:port" (brackets removed for IPv6).
pub fn host_of(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::dev_ca::DevCa;
    use super::identity::PeerIdentity;
    use super::TlsMaterial;

    fn material(ca: &DevCa, identity: PeerIdentity, name: &str) -> TlsMaterial {
        let (cert_pem, key_pem) = ca
            .issue(&identity, name, &["localhost".to_string()])
            .expect("issued");
        TlsMaterial {
            ca_pem: ca.cert_pem(),
            cert_pem,
            key_pem,
        }
    }

    /// A TLS handshake between `dialer` (expecting node `expected`) and a server presenting
    /// `server`'s certificate: the dialer's verdict.
    async fn dial(dialer: &TlsMaterial, expected: u64, server: &TlsMaterial) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("key");
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let (a, b) = tokio::io::duplex(1 << 16);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let served = tokio::spawn(async move { acceptor.accept(b).await.map(drop) });
        let connector =
            tokio_rustls::TlsConnector::from(dialer.cluster_client(expected).expect("config"));
        let name = ServerName::try_from("localhost").expect("name");
        let verdict = connector
            .connect(name, a)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        let _ = served.await;
        verdict
    }

    #[tokio::test]
    async fn a_node_dialing_another_accepts_only_that_nodes_certificate() {
        let ca = DevCa::generate().expect("CA");
        let node1 = material(&ca, PeerIdentity::Node(1), "node-1");
        let node2 = material(&ca, PeerIdentity::Node(2), "node-2");
        let admin = material(&ca, PeerIdentity::Admin("ops".into()), "ops");
        node2
            .check_node(2)
            .expect("node 2's certificate is node 2's");
        let swapped = node2
            .check_node(1)
            .expect_err("node 2's certificate is not node 1's")
            .to_string();
        assert!(
            swapped.contains("names stateledger:node:2, not this node"),
            "{swapped}"
        );
        let mut mismatched = node2.clone();
        mismatched.key_pem = node1.key_pem.clone();
        assert!(
            mismatched.check_node(2).is_err(),
            "a key that is not the certificate's"
        );
        dial(&node1, 2, &node2).await.expect("node 2 is node 2");
        let wrong = dial(&node1, 3, &node2)
            .await
            .expect_err("node 2 cannot answer for node 3");
        assert!(
            wrong.contains("names stateledger:node:2, not node 3"),
            "{wrong}"
        );
        // An admin certificate is not a server certificate at all.
        let admin_as_server = dial(&node1, 2, &admin).await.expect_err("refused");
        assert!(
            admin_as_server.contains("invalid peer certificate"),
            "{admin_as_server}"
        );
        // Nor is a node certificate from another CA.
        let stranger = material(
            &DevCa::generate().expect("CA"),
            PeerIdentity::Node(2),
            "node-2",
        );
        let foreign = dial(&node1, 2, &stranger).await.expect_err("refused");
        assert!(foreign.contains("invalid peer certificate"), "{foreign}");
    }
}
