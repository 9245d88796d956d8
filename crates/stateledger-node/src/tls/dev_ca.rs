//! The cluster certificate authority: generates the cluster CA and node / admin / client
//! certificates for `stateledger dev`, `stateledger certs` and the tests. Deployments may bring
//! their own PKI instead, issuing the same identity URIs (`super::identity`, docs/SECURITY.md).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::identity::PeerIdentity;

/// Why a file given as a CA certificate is not one (the caller's: the file named).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaCertError {
    #[error("not a PEM certificate: {0}")]
    NotPem(rustls_pki_types::pem::Error),
    #[error("not a usable CA certificate: {0:?}")]
    Unusable(webpki::Error),
}

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

/// Sets a certificate's validity: from an hour ago (clocks differ) for `valid_for`; `None` keeps
/// rcgen's default (1975 to 4096, for development clusters).
fn set_validity(params: &mut CertificateParams, valid_for: Option<std::time::Duration>) {
    let Some(valid_for) = valid_for else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(std::time::Duration::from_secs(3600));
    params.not_after = epoch + now + valid_for;
}

impl DevCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<DevCa, rcgen::Error> {
        DevCa::generate_valid(None)
    }

    /// A new CA with a fresh key, valid for `valid_for` from now (`None`: rcgen's default).
    pub fn generate_valid(valid_for: Option<std::time::Duration>) -> Result<DevCa, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = ca_params()?;
        set_validity(&mut params, valid_for);
        let cert = params.self_signed(&key)?;
        Ok(DevCa { cert, key })
    }

    /// Whether `ca_pem` is a certificate of this CA's key (so that what it issues chains to it).
    pub fn is_key_of(&self, ca_pem: &str) -> Result<bool, CaCertError> {
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(CaCertError::NotPem)?;
        let anchor = webpki::anchor_from_trusted_cert(&der).map_err(CaCertError::Unusable)?;
        // The anchor holds the SubjectPublicKeyInfo's contents, without its outer SEQUENCE.
        let spki: &[u8] = anchor.subject_public_key_info.as_ref();
        let ours = self.key.public_key_der();
        Ok(ours.len() > spki.len() && ours.len() <= spki.len() + 4 && ours.ends_with(spki))
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
        self.issue_valid(identity, name, hosts, None)
    }

    /// [`DevCa::issue`], valid for `valid_for` from now (`None`: rcgen's default).
    pub fn issue_valid(
        &self,
        identity: &PeerIdentity,
        name: &str,
        hosts: &[String],
        valid_for: Option<std::time::Duration>,
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
        set_validity(&mut params, valid_for);
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
    fn a_ca_recognises_its_own_certificate_and_no_other() {
        let ca = DevCa::generate_valid(Some(std::time::Duration::from_secs(86_400))).expect("CA");
        let again = DevCa::from_key_pem(&ca.key_pem()).expect("CA from key");
        assert!(matches!(again.is_key_of(&ca.cert_pem()), Ok(true)));
        let other = DevCa::generate().expect("CA");
        assert!(matches!(other.is_key_of(&ca.cert_pem()), Ok(false)));
        assert!(ca.is_key_of("not a certificate").is_err());
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
