//! Signed-note keys in the C2SP `signed-note` text formats (the same as Go's
//! `golang.org/x/mod/sumdb/note`), so existing tooling reads them:
//!
//! - verifier key: `<name>+<key id, 8 hex>+<base64(0x01 || 32-byte public key)>`
//! - signer key:   `PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 || 32-byte seed)>`
//!
//! The key id is the first four bytes (big-endian) of
//! `SHA-256(name || "\n" || 0x01 || public key)`.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::Digest as _;

/// The signature-type byte for ed25519 in C2SP signed notes.
pub const ALG_ED25519: u8 = 0x01;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a key (or key name) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key name {name:?} is invalid: it must be non-empty, without spaces, '+' or control characters")]
    Name { name: String },
    #[error("key text is not in the form {expected}")]
    Form { expected: &'static str },
    #[error("key id {found} does not match the id {calculated} calculated from the name and key")]
    KeyId { found: String, calculated: String },
    #[error("key material is not base64 of 0x01 followed by 32 bytes")]
    Material,
    #[error("public key is not a valid ed25519 key")]
    Invalid,
}

/// Checks a C2SP key name.
pub fn check_key_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty()
        || name.len() > 256
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::Name {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The C2SP key id of an ed25519 key under a name.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn decode_material(text: &str) -> Result<[u8; 32], KeyError> {
    let raw = B64.decode(text).map_err(|_| KeyError::Material)?;
    if raw.len() != 33 || raw[0] != ALG_ED25519 {
        return Err(KeyError::Material);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&raw[1..]);
    Ok(out)
}

fn parse_id(text: &str) -> Result<u32, KeyError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Form {
            expected: "<name>+<8 hex digits>+<base64>",
        });
    }
    u32::from_str_radix(text, 16).map_err(|_| KeyError::Form {
        expected: "<name>+<8 hex digits>+<base64>",
    })
}

/// A named public key that checks note signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key_id: u32,
    pub key: VerifyingKey,
}

impl std::fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteVerifier({})", self.to_text())
    }
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteVerifier, KeyError> {
        check_key_name(name)?;
        Ok(NoteVerifier {
            name: name.to_string(),
            key_id: key_id(name, key.as_bytes()),
            key,
        })
    }

    /// Parses `<name>+<id>+<base64>`, checking the id matches.
    pub fn parse(text: &str) -> Result<NoteVerifier, KeyError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(material), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Form {
                expected: "<name>+<8 hex digits>+<base64>",
            });
        };
        check_key_name(name)?;
        let found = parse_id(id)?;
        let raw = decode_material(material)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Invalid)?;
        if key.is_weak() {
            return Err(KeyError::Invalid);
        }
        let calculated = key_id(name, &raw);
        if calculated != found {
            return Err(KeyError::KeyId {
                found: format!("{found:08x}"),
                calculated: format!("{calculated:08x}"),
            });
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key_id: found,
            key,
        })
    }

    pub fn to_text(&self) -> String {
        let mut material = vec![ALG_ED25519];
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(material))
    }
}

/// A named private key that signs notes.
#[derive(Clone)]
pub struct NoteSigner {
    pub name: String,
    pub key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, KeyError> {
        check_key_name(name)?;
        Ok(NoteSigner {
            name: name.to_string(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// From a 32-byte ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<NoteSigner, KeyError> {
        NoteSigner::new(name, SigningKey::from_bytes(seed))
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64>`, checking the id matches.
    pub fn parse(text: &str) -> Result<NoteSigner, KeyError> {
        const FORM: &str = "PRIVATE+KEY+<name>+<8 hex digits>+<base64>";
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Form { expected: FORM })?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(material), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Form { expected: FORM });
        };
        check_key_name(name)?;
        let found = parse_id(id).map_err(|_| KeyError::Form { expected: FORM })?;
        let seed = decode_material(material)?;
        let signer = NoteSigner::from_seed(name, &seed)?;
        if signer.key_id != found {
            return Err(KeyError::KeyId {
                found: format!("{found:08x}"),
                calculated: format!("{:08x}", signer.key_id),
            });
        }
        Ok(signer)
    }

    pub fn to_text(&self) -> String {
        let mut material = vec![ALG_ED25519];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(material)
        )
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The ed25519 key, for signing records with the same key (writers and admins).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs message bytes (a note's text).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_round_trips_and_ids_are_checked() {
        let s = NoteSigner::from_seed("node-1", &[5u8; 32]).expect("valid name");
        let parsed = NoteSigner::parse(&s.to_text()).expect("parses");
        assert_eq!(parsed.key_id, s.key_id);
        let v = NoteVerifier::parse(&s.verifier().to_text()).expect("parses");
        assert_eq!(v, s.verifier());

        // Renaming the key breaks the id.
        let renamed = s.verifier().to_text().replacen("node-1", "node-2", 1);
        assert!(matches!(
            NoteVerifier::parse(&renamed),
            Err(KeyError::KeyId { .. })
        ));
        assert!(matches!(
            NoteVerifier::parse("a+b"),
            Err(KeyError::Form { .. })
        ));
        assert!(matches!(
            NoteSigner::new("bad name", SigningKey::from_bytes(&[1; 32])),
            Err(KeyError::Name { .. })
        ));
    }

    #[test]
    fn keys_whose_base64_contains_plus_parse() {
        // Base64 uses '+': only the first two '+' separate name, id and key material.
        let found = (0u8..=255)
            .map(|i| NoteSigner::from_seed("k", &[i; 32]).expect("valid"))
            .find(|s| s.to_text().matches('+').count() > 4)
            .expect("some seed gives a '+' in the base64");
        assert_eq!(
            NoteSigner::parse(&found.to_text()).expect("parses").key_id,
            found.key_id
        );
        assert_eq!(
            NoteVerifier::parse(&found.verifier().to_text()).expect("parses"),
            found.verifier()
        );
    }

    #[test]
    fn key_id_matches_the_c2sp_definition() {
        // SHA-256("node-1\n\x01" || pk)[..4], computed independently here.
        let s = NoteSigner::from_seed("node-1", &[5u8; 32]).expect("valid name");
        let mut input = b"node-1\n\x01".to_vec();
        input.extend_from_slice(s.verifier().key.as_bytes());
        let d = sha2::Sha256::digest(&input);
        assert_eq!(s.key_id, u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
    }
}
