//! Who a certificate says its holder is: a role and an identity, carried as one URI in the
//! certificate's subject alternative names (docs/SECURITY.md, "Certificates"):
//!
//! ```text
//! stateledger:node:<id>       a cluster node, by its Raft node id (decimal)
//! stateledger:admin:<name>    an operator who may change the membership
//! stateledger:client:<name>   a client (public API; no business on the cluster port)
//! ```
//!
//! A certificate must carry exactly one such URI; other SANs (host names, IP addresses for the
//! TLS server name check) are ignored here. The cluster CA is what makes the URI true: a peer
//! whose chain does not end at it never gets this far (rustls refuses the handshake).
//!
//! Parsing is pure (a list of URIs in, an identity out), so it is tested without certificates;
//! [`PeerIdentity::from_cert_der`] only pulls the URIs out of a DER certificate.

use std::fmt;

use crate::node_id::NodeId;

/// Every identity URI starts with this.
pub const URI_SCHEME: &str = "stateledger:";
/// Longest admin or client name.
pub const NAME_BYTES_MAX: usize = 64;

/// The role and identity a certificate names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A cluster node, by its Raft node id.
    Node(NodeId),
    /// An operator allowed to change the membership.
    Admin(String),
    /// A client of the public API.
    Client(String),
}

/// Why a certificate names no usable identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("the certificate names no identity (no \"{URI_SCHEME}...\" URI among its subject alternative names)")]
    Missing,
    #[error(
        "the certificate names {count} identities; exactly one \"{URI_SCHEME}...\" URI is allowed"
    )]
    Several { count: usize },
    #[error("identity URI {uri:?}: {reason}")]
    Malformed { uri: String, reason: String },
    #[error("the peer certificate cannot be read: {0}")]
    Certificate(String),
}

impl PeerIdentity {
    /// The URI that names this identity in a certificate.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node(id) => format!("{URI_SCHEME}node:{id}"),
            PeerIdentity::Admin(name) => format!("{URI_SCHEME}admin:{name}"),
            PeerIdentity::Client(name) => format!("{URI_SCHEME}client:{name}"),
        }
    }

    /// Parses one identity URI. `Ok(None)`: not a StateLedger URI at all.
    pub fn parse_uri(uri: &str) -> Result<Option<PeerIdentity>, IdentityError> {
        let Some(rest) = uri.strip_prefix(URI_SCHEME) else {
            return Ok(None);
        };
        let malformed = |reason: &str| IdentityError::Malformed {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let (role, value) = rest
            .split_once(':')
            .ok_or_else(|| malformed("expected stateledger:<role>:<identity>"))?;
        match role {
            "node" => {
                // Decimal digits only: "+3", "03" or " 3" would give two URIs for one node.
                if value.is_empty()
                    || !value.bytes().all(|b| b.is_ascii_digit())
                    || (value.len() > 1 && value.starts_with('0'))
                {
                    return Err(malformed(
                        "a node id is a decimal number without leading zeros",
                    ));
                }
                let id: NodeId = value
                    .parse()
                    .map_err(|_| malformed("the node id does not fit in 64 bits"))?;
                if id == 0 {
                    return Err(malformed("node id 0 is not a node"));
                }
                Ok(Some(PeerIdentity::Node(id)))
            }
            "admin" | "client" => {
                check_name(value).map_err(|reason| malformed(&reason.to_string()))?;
                Ok(Some(if role == "admin" {
                    PeerIdentity::Admin(value.to_string())
                } else {
                    PeerIdentity::Client(value.to_string())
                }))
            }
            _ => Err(malformed("the role is one of node, admin, client")),
        }
    }

    /// The identity named by a certificate's URI SANs: exactly one `stateledger:` URI.
    pub fn from_uris<'a>(
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Result<PeerIdentity, IdentityError> {
        let mut found = Vec::new();
        for uri in uris {
            if let Some(identity) = PeerIdentity::parse_uri(uri)? {
                found.push(identity);
            }
        }
        match found.len() {
            0 => Err(IdentityError::Missing),
            1 => Ok(found.remove(0)),
            count => Err(IdentityError::Several { count }),
        }
    }

    /// The identity a DER certificate names (its chain was checked by rustls already).
    #[cfg(not(madsim))]
    pub fn from_cert_der(
        der: &rustls_pki_types::CertificateDer<'_>,
    ) -> Result<PeerIdentity, IdentityError> {
        let cert = webpki::EndEntityCert::try_from(der)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        PeerIdentity::from_uris(cert.valid_uri_names())
    }

    /// The node id, for a node.
    pub fn node_id(&self) -> Option<NodeId> {
        match self {
            PeerIdentity::Node(id) => Some(*id),
            _ => None,
        }
    }
}

/// Why an admin or client name is refused (the caller's: whoever chose the name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("a name is 1 to {NAME_BYTES_MAX} bytes")]
    Length { len: usize },
    #[error("a name uses only letters, digits, '.', '_' and '-'")]
    Characters,
}

/// An admin or client name: 1..=64 bytes of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(NameError::Length { len: name.len() });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(NameError::Characters);
    }
    Ok(())
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_uri() {
        for identity in [
            PeerIdentity::Node(1),
            PeerIdentity::Node(u64::MAX),
            PeerIdentity::Admin("alice".into()),
            PeerIdentity::Client("ci-runner.2".into()),
        ] {
            assert_eq!(
                PeerIdentity::parse_uri(&identity.uri()),
                Ok(Some(identity.clone()))
            );
        }
    }

    #[test]
    fn malformed_uris_are_refused_with_the_uri_named() {
        for bad in [
            "stateledger:node:",
            "stateledger:node:0",
            "stateledger:node:03",
            "stateledger:node:+3",
            "stateledger:node:3 ",
            "stateledger:node:18446744073709551616",
            "stateledger:admin:",
            "stateledger:admin:a b",
            "stateledger:client:ünï",
            "stateledger:root:x",
            "stateledger:node",
        ] {
            match PeerIdentity::parse_uri(bad) {
                Err(IdentityError::Malformed { uri, .. }) => assert_eq!(uri, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let long = format!("stateledger:admin:{}", "a".repeat(NAME_BYTES_MAX + 1));
        assert!(PeerIdentity::parse_uri(&long).is_err());
    }

    #[test]
    fn other_uris_are_ignored_and_exactly_one_identity_is_required() {
        assert_eq!(PeerIdentity::parse_uri("spiffe://x/y"), Ok(None));
        assert_eq!(
            PeerIdentity::from_uris(["spiffe://x/y", "stateledger:node:2"]),
            Ok(PeerIdentity::Node(2))
        );
        assert_eq!(
            PeerIdentity::from_uris(["spiffe://x/y"]),
            Err(IdentityError::Missing)
        );
        assert_eq!(
            PeerIdentity::from_uris(["stateledger:node:2", "stateledger:admin:a"]),
            Err(IdentityError::Several { count: 2 })
        );
    }
}
