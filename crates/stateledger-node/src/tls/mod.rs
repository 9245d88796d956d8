//! TLS: every connection is TLS (rustls with the ring provider, through tonic). The cluster port
//! requires a client certificate signed by the cluster CA (mutual TLS); the public port
//! authenticates the server only. Under madsim TLS is not simulated: this module then only
//! carries the material, and the simulated network runs without it.

#[cfg(not(madsim))]
pub mod dev_ca;
pub mod identity;

use std::path::Path;

use crate::config::TlsSection;

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

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl TlsMaterial {
    pub fn load(section: &TlsSection) -> Result<TlsMaterial, String> {
        Ok(TlsMaterial {
            ca_pem: read(&section.ca_cert, "CA certificate")?,
            cert_pem: read(&section.cert, "certificate")?,
            key_pem: read(&section.key, "private key")?,
        })
    }
}

#[cfg(not(madsim))]
mod real {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

    use super::TlsMaterial;

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

        /// Connecting to another node's cluster port, presenting our certificate.
        pub fn cluster_client(&self, host: &str) -> ClientTlsConfig {
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.ca_pem))
                .identity(self.identity())
                .domain_name(host)
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
