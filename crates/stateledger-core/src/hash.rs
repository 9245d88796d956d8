//! The ledger's hash function (BLAKE3) and the domain-separated hashes built on it.
//!
//! Every hashed input starts with a one-byte (tree nodes) or string (everything else) domain
//! separator, so no hash of one kind can be passed off as another. docs/PROOFS.md §1 lists them.

use std::fmt;

use base64::Engine as _;

/// Length in bytes of every hash in the ledger.
pub const HASH_LEN: usize = 32;

/// Prefix of a Merkle-log leaf hash input: `H(0x00 || leaf)` (RFC 9162 §2.1.1).
pub const LEAF_HASH_PREFIX: u8 = 0x00;
/// Prefix of a Merkle-log interior node hash input: `H(0x01 || left || right)`.
pub const NODE_HASH_PREFIX: u8 = 0x01;
/// Prefix of a head-map leaf hash input: `H(0x02 || key || head_index || count)`.
pub const HEAD_LEAF_PREFIX: u8 = 0x02;
/// Prefix of a head-map interior node hash input: `H(0x03 || left || right)`.
pub const HEAD_NODE_PREFIX: u8 = 0x03;

/// A BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The all-zero hash (the empty head-map subtree; never a real digest in practice).
    pub const ZERO: Hash = Hash([0u8; HASH_LEN]);

    /// Hash of arbitrary bytes, without a domain separator. Callers add their own.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// The root of the empty Merkle log: `H()` of the empty string (RFC 9162 §2.1.1).
    pub fn empty_tree() -> Hash {
        Hash::of(&[])
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_LEN]>::try_from(bytes).ok().map(Hash)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard, padded base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<Hash> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Hash::from_slice(&bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Base64 (docs/PROOFS.md §1.4), as in checkpoints and JSON documents: a hash a person reads in
/// a message or a report is written the way every document writes it.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_base64(&text)
            .ok_or_else(|| serde::de::Error::custom("expected base64 of a 32-byte hash"))
    }
}

/// Merkle-log leaf hash: `H(0x00 || leaf_bytes)`.
pub fn leaf_hash(leaf_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_HASH_PREFIX]);
    h.update(leaf_bytes);
    Hash(*h.finalize().as_bytes())
}

/// Merkle-log interior node hash: `H(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = NODE_HASH_PREFIX;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash::of(&buf)
}

/// Hash of `domain || 0x00 || bytes` for a string domain separator such as
/// `"stateledger:system:v1"`.
pub fn domain_hash(domain: &str, bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(domain.as_bytes());
    h.update(&[0]);
    h.update(bytes);
    Hash(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_root_is_blake3_of_nothing() {
        assert_eq!(
            Hash::empty_tree().to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let a = Hash::of(b"a");
        let mut joined = Vec::new();
        joined.extend_from_slice(&a.0);
        joined.extend_from_slice(&a.0);
        // Same 64 bytes hashed as a leaf and as a node must differ.
        assert_ne!(leaf_hash(&joined), node_hash(&a, &a));
    }

    #[test]
    fn display_is_the_base64_of_documents() {
        let h = Hash::empty_tree();
        assert_eq!(
            h.to_string(),
            "rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI="
        );
        assert_eq!(
            serde_json::to_string(&h).expect("serializes"),
            format!("\"{h}\"")
        );
    }

    #[test]
    fn base64_round_trip_rejects_wrong_length() {
        let h = Hash::of(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(Hash::from_base64("AAAA"), None);
        assert_eq!(Hash::from_base64("not base64!"), None);
    }
}
