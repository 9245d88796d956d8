//! A development certificate authority: generates the cluster CA and node / admin / client
//! certificates for `stateledger dev` and the tests. Production deployments bring their own PKI,
//! issuing the same identity URIs (`super::identity`, docs/SECURITY.md).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::identity::PeerIdentity;

/// A CA able to issue certificates.
pub struct DevCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa")
    }
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "StateLedger cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl DevCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<DevCa, rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    /// The CA again from its key (same subject and key, so certificates it issues chain to the
    /// CA certificate written earlier).
    pub fn from_key_pem(key_pem: &str) -> Result<DevCa, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate naming `identity` (its `stateledger:` URI SAN), with common name
    /// `name`. A node's certificate is valid as TLS server and client, for the given host names
    /// and IP addresses; an admin's or a client's only as TLS client (it cannot stand in for a
    /// node's server). Returns (certificate PEM, key PEM).
    pub fn issue(
        &self,
        identity: &PeerIdentity,
        name: &str,
        hosts: &[String],
    ) -> Result<(String, String), rcgen::Error> {
        let node = matches!(identity, PeerIdentity::Node(_));
        let mut sans: Vec<String> = Vec::new();
        if node {
            sans.push(name.to_string());
            for h in hosts {
                if !sans.contains(h) {
                    sans.push(h.clone());
                }
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params
            .subject_alt_names
            .push(SanType::URI(identity.uri().try_into()?));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = if node {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_of(pem: &str) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
    }

    #[test]
    fn issued_certificates_name_their_identity() {
        let ca = DevCa::generate().expect("CA");
        for identity in [
            PeerIdentity::Node(7),
            PeerIdentity::Admin("admin".into()),
            PeerIdentity::Client("reader".into()),
        ] {
            let (pem, _) = ca
                .issue(&identity, "x", &["127.0.0.1".to_string()])
                .expect("issued");
            assert_eq!(PeerIdentity::from_cert_der(&der_of(&pem)), Ok(identity));
        }
    }

    #[test]
    fn a_certificate_without_an_identity_uri_names_none() {
        let ca = DevCa::generate().expect("CA");
        let params = CertificateParams::new(vec!["node-1".to_string()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("signed");
        assert_eq!(
            PeerIdentity::from_cert_der(cert.der()),
            Err(super::super::identity::IdentityError::Missing)
        );
    }
}
