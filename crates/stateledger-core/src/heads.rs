//! The head map: a sparse Merkle map from each system to its head (last leaf index and record
//! count) at a tree size. Its root is an extension line of every checkpoint, so a verifier can be
//! shown that a leaf is the last of its system — or that a system has no leaf — at that size.
//! This is the upper boundary of a state proof's completeness evidence (docs/PROOFS.md §5).
//!
//! Shape: keys are 256-bit `H("stateledger:system:v1" || 0x00 || system)`, read as bits from the
//! most significant. The node at depth `d` for a prefix is
//! - the zero hash if no key has that prefix,
//! - the head leaf hash `H(0x02 || key || index || count)` if exactly one key has it (a leaf sits
//!   as high as it can),
//! - `H(0x03 || left || right)` otherwise.
//!
//! The root is the node at depth 0. The shape depends only on the set of keys, so every node
//! computes the same root for the same heads.

use std::collections::{BTreeMap, HashMap};

use crate::hash::{domain_hash, Hash, HASH_LEN, HEAD_LEAF_PREFIX, HEAD_NODE_PREFIX};
use crate::merkle::LeafIndex;

/// Domain of system keys.
pub const SYSTEM_KEY_DOMAIN: &str = "stateledger:system:v1";
/// Depth of the key space.
pub const KEY_BITS: usize = 256;

/// The head-map key of a system.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SystemKey(pub Hash);

impl SystemKey {
    pub fn of(system: &str) -> SystemKey {
        SystemKey(domain_hash(SYSTEM_KEY_DOMAIN, system.as_bytes()))
    }

    fn bit(&self, depth: usize) -> bool {
        (self.0 .0[depth / 8] >> (7 - depth % 8)) & 1 == 1
    }
}

/// A system's head at some tree size: its last leaf and how many leaves it has.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub index: LeafIndex,
    pub count: u64,
}

/// `H(0x02 || key || index (u64 BE) || count (u64 BE))`.
pub fn head_leaf_hash(key: &SystemKey, head: &Head) -> Hash {
    let mut buf = [0u8; 1 + HASH_LEN + 16];
    buf[0] = HEAD_LEAF_PREFIX;
    buf[1..33].copy_from_slice(&key.0 .0);
    buf[33..41].copy_from_slice(&head.index.0.to_be_bytes());
    buf[41..49].copy_from_slice(&head.count.to_be_bytes());
    Hash::of(&buf)
}

/// `H(0x03 || left || right)`.
pub fn head_node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = HEAD_NODE_PREFIX;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash::of(&buf)
}

/// Keeps the first `depth` bits of `key`, zeroes the rest.
fn prefix_of(key: &[u8; 32], depth: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    let full = depth / 8;
    out[..full].copy_from_slice(&key[..full]);
    if depth % 8 != 0 {
        out[full] = key[full] & (0xffu8 << (8 - depth % 8));
    }
    out
}

/// The largest key with this prefix.
fn prefix_end(prefix: &[u8; 32], depth: usize) -> [u8; 32] {
    let mut out = *prefix;
    let full = depth / 8;
    if depth % 8 != 0 {
        out[full] |= 0xffu8 >> (depth % 8);
        for b in &mut out[full + 1..] {
            *b = 0xff;
        }
    } else {
        for b in &mut out[full..] {
            *b = 0xff;
        }
    }
    out
}

fn with_bit(prefix: &[u8; 32], depth: usize) -> [u8; 32] {
    let mut out = *prefix;
    out[depth / 8] |= 0x80 >> (depth % 8);
    out
}

fn common_prefix_bits(a: &[u8; 32], b: &[u8; 32]) -> usize {
    for i in 0..32 {
        let x = a[i] ^ b[i];
        if x != 0 {
            return i * 8 + x.leading_zeros() as usize;
        }
    }
    KEY_BITS
}

/// The map, with a cache of interior node hashes so a root after `k` updates costs about
/// `k * log2(systems)` hashes.
#[derive(Clone, Debug, Default)]
pub struct HeadMap {
    entries: BTreeMap<[u8; 32], Head>,
    cache: HashMap<(u16, [u8; 32]), Hash>,
}

/// What a head proof ends in. JSON: `{"kind": "empty"}` or `{"kind": "leaf", "key": ..., "head":
/// {"index": ..., "count": ...}}`, read strictly (docs/PROOFS.md §5.4): no other member, and
/// `key` and `head` exactly when the kind is `leaf`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "TerminalJson")]
pub enum HeadTerminal {
    /// No system has the key's prefix at this depth: the system has no leaf.
    Empty,
    /// The only system with the key's prefix at this depth. If its key is the one asked about,
    /// this is its head; otherwise the asked system has no leaf.
    Leaf { key: SystemKey, head: Head },
}

/// The JSON members a terminal may have; [`HeadTerminal`] is read through it, because serde's
/// internally tagged enums ignore unknown members of a unit variant (`{"kind": "empty", "x": 1}`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalJson {
    kind: String,
    #[serde(default)]
    key: Option<SystemKey>,
    #[serde(default)]
    head: Option<Head>,
}

impl TryFrom<TerminalJson> for HeadTerminal {
    type Error = String;

    fn try_from(t: TerminalJson) -> Result<HeadTerminal, String> {
        match (t.kind.as_str(), t.key, t.head) {
            ("empty", None, None) => Ok(HeadTerminal::Empty),
            ("empty", _, _) => Err("an empty terminal has no key and no head".into()),
            ("leaf", Some(key), Some(head)) => Ok(HeadTerminal::Leaf { key, head }),
            ("leaf", _, _) => Err("a leaf terminal needs a key and a head".into()),
            (other, _, _) => Err(format!(
                "terminal kind {other:?} is neither \"empty\" nor \"leaf\""
            )),
        }
    }
}

/// Proof of a system's head (or absence) in the head map. `siblings` run bottom up: the first is
/// the sibling of the terminal node, the last the child of the root.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadProof {
    pub siblings: Vec<Hash>,
    pub terminal: HeadTerminal,
}

/// Why a head proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadProofError {
    #[error("head proof has {found} siblings, more than the key length of {KEY_BITS} bits")]
    TooDeep { found: usize },
    #[error("head proof terminal leaf's key does not share the asked key's first {depth} bits, so it is not on that key's path")]
    TerminalOffPath { depth: usize },
    #[error("head proof leads to root {calculated}, but the checkpoint's head root is {expected}")]
    RootMismatch { expected: Hash, calculated: Hash },
}

impl HeadMap {
    pub fn new() -> HeadMap {
        HeadMap::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &SystemKey) -> Option<Head> {
        self.entries.get(&key.0 .0).copied()
    }

    /// Sets a system's head, invalidating the cached interior nodes on its path.
    pub fn insert(&mut self, key: SystemKey, head: Head) {
        self.invalidate_path(&key);
        self.entries.insert(key.0 .0, head);
    }

    /// Removes a system (used to undo a trial insert).
    pub fn remove(&mut self, key: &SystemKey) {
        self.invalidate_path(key);
        self.entries.remove(&key.0 .0);
    }

    fn invalidate_path(&mut self, key: &SystemKey) {
        let k = key.0 .0;
        let below = self
            .entries
            .range(..k)
            .next_back()
            .map(|(n, _)| common_prefix_bits(n, &k));
        let above = self
            .entries
            .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
            .next()
            .map(|(n, _)| common_prefix_bits(n, &k));
        // Interior nodes on the key's path exist down to the longest prefix it shares with a
        // neighbour; below that the key is alone and no interior node is cached.
        let deepest = below.into_iter().chain(above).max();
        if let Some(deepest) = deepest {
            for depth in 0..=deepest.min(KEY_BITS - 1) {
                self.cache.remove(&(depth as u16, prefix_of(&k, depth)));
            }
        }
    }

    /// The map's root hash (the zero hash for an empty map).
    pub fn root(&mut self) -> Hash {
        self.node(0, [0u8; 32])
    }

    fn node(&mut self, depth: usize, prefix: [u8; 32]) -> Hash {
        let end = prefix_end(&prefix, depth);
        let mut range = self.entries.range(prefix..=end);
        let first = range.next().map(|(k, h)| (*k, *h));
        let second = range.next().is_some();
        match (first, second) {
            (None, _) => Hash::ZERO,
            (Some((k, h)), false) => head_leaf_hash(&SystemKey(Hash(k)), &h),
            (Some(_), true) => {
                if let Some(h) = self.cache.get(&(depth as u16, prefix)) {
                    return *h;
                }
                let left = self.node(depth + 1, prefix);
                let right = self.node(depth + 1, with_bit(&prefix, depth));
                let h = head_node_hash(&left, &right);
                self.cache.insert((depth as u16, prefix), h);
                h
            }
        }
    }

    /// Proves the head of `key` (or that it has none).
    pub fn prove(&mut self, key: &SystemKey) -> HeadProof {
        let k = key.0 .0;
        let mut top_down = Vec::new();
        let mut depth = 0usize;
        let mut prefix = [0u8; 32];
        loop {
            let end = prefix_end(&prefix, depth);
            let mut range = self.entries.range(prefix..=end);
            let first = range.next().map(|(k, h)| (*k, *h));
            let second = range.next().is_some();
            match (first, second) {
                (None, _) => {
                    top_down.reverse();
                    return HeadProof {
                        siblings: top_down,
                        terminal: HeadTerminal::Empty,
                    };
                }
                (Some((other, head)), false) => {
                    top_down.reverse();
                    return HeadProof {
                        siblings: top_down,
                        terminal: HeadTerminal::Leaf {
                            key: SystemKey(Hash(other)),
                            head,
                        },
                    };
                }
                (Some(_), true) => {
                    let right = with_bit(&prefix, depth);
                    if key.bit(depth) {
                        top_down.push(self.node(depth + 1, prefix));
                        prefix = right;
                    } else {
                        top_down.push(self.node(depth + 1, right));
                    }
                    depth += 1;
                    debug_assert_eq!(prefix, prefix_of(&k, depth));
                }
            }
        }
    }
}

/// Verifies a head proof for `key` against a head-map `root`. Returns the system's head, or `None`
/// if the proof shows it has no leaf.
pub fn verify_head_proof(
    root: &Hash,
    key: &SystemKey,
    proof: &HeadProof,
) -> Result<Option<Head>, HeadProofError> {
    let depth = proof.siblings.len();
    if depth > KEY_BITS {
        return Err(HeadProofError::TooDeep { found: depth });
    }
    let (mut acc, found) = match &proof.terminal {
        HeadTerminal::Empty => (Hash::ZERO, None),
        HeadTerminal::Leaf { key: other, head } => {
            if prefix_of(&other.0 .0, depth) != prefix_of(&key.0 .0, depth) {
                return Err(HeadProofError::TerminalOffPath { depth });
            }
            let found = (other == key).then_some(*head);
            (head_leaf_hash(other, head), found)
        }
    };
    for (i, sibling) in proof.siblings.iter().enumerate() {
        let d = depth - 1 - i;
        acc = if key.bit(d) {
            head_node_hash(sibling, &acc)
        } else {
            head_node_hash(&acc, sibling)
        };
    }
    if acc != *root {
        return Err(HeadProofError::RootMismatch {
            expected: *root,
            calculated: acc,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recomputes the root from scratch with no cache: the reference for the cached version.
    fn reference_root(entries: &BTreeMap<[u8; 32], Head>) -> Hash {
        fn node(keys: &[([u8; 32], Head)], depth: usize) -> Hash {
            match keys.len() {
                0 => Hash::ZERO,
                1 => head_leaf_hash(&SystemKey(Hash(keys[0].0)), &keys[0].1),
                _ => {
                    let split = keys.partition_point(|(k, _)| !SystemKey(Hash(*k)).bit(depth));
                    head_node_hash(
                        &node(&keys[..split], depth + 1),
                        &node(&keys[split..], depth + 1),
                    )
                }
            }
        }
        let keys: Vec<_> = entries.iter().map(|(k, h)| (*k, *h)).collect();
        node(&keys, 0)
    }

    fn head(i: u64) -> Head {
        Head {
            index: LeafIndex(i),
            count: i + 1,
        }
    }

    #[test]
    fn cached_root_matches_reference_through_updates() {
        let mut map = HeadMap::new();
        let mut plain = BTreeMap::new();
        assert_eq!(map.root(), Hash::ZERO);
        for i in 0..300u64 {
            let key = SystemKey::of(&format!("system-{}", i % 97));
            map.insert(key, head(i));
            plain.insert(key.0 .0, head(i));
            if i % 7 == 0 || i < 20 {
                assert_eq!(map.root(), reference_root(&plain), "after {i}");
            }
        }
        assert_eq!(map.root(), reference_root(&plain));
        // Trial insert and removal leave the root as it was.
        let before = map.root();
        let extra = SystemKey::of("extra");
        map.insert(extra, head(1));
        assert_ne!(map.root(), before);
        map.remove(&extra);
        assert_eq!(map.root(), before);
    }

    #[test]
    fn proofs_of_presence_and_absence_verify_and_tampering_fails() {
        let mut map = HeadMap::new();
        // Empty map: absence.
        let absent = SystemKey::of("nobody");
        let p = map.prove(&absent);
        assert_eq!(verify_head_proof(&map.root(), &absent, &p), Ok(None));

        for i in 0..50u64 {
            map.insert(SystemKey::of(&format!("s{i}")), head(i));
        }
        let root = map.root();
        for i in 0..50u64 {
            let key = SystemKey::of(&format!("s{i}"));
            let p = map.prove(&key);
            assert_eq!(verify_head_proof(&root, &key, &p), Ok(Some(head(i))));
            // A different head for the same key fails.
            let mut forged = p.clone();
            forged.terminal = HeadTerminal::Leaf {
                key,
                head: head(i + 1),
            };
            assert!(matches!(
                verify_head_proof(&root, &key, &forged),
                Err(HeadProofError::RootMismatch { .. })
            ));
            // Claiming the key is absent fails.
            let mut hidden = p.clone();
            hidden.terminal = HeadTerminal::Empty;
            assert!(verify_head_proof(&root, &key, &hidden).is_err());
            // Flipping a sibling fails.
            if !p.siblings.is_empty() {
                let mut flipped = p.clone();
                flipped.siblings[0].0[0] ^= 1;
                assert!(verify_head_proof(&root, &key, &flipped).is_err());
            }
        }
        for i in 50..100u64 {
            let key = SystemKey::of(&format!("s{i}"));
            let p = map.prove(&key);
            assert_eq!(verify_head_proof(&root, &key, &p), Ok(None));
        }
        // Another system's membership proof cannot be passed off for this key.
        let k0 = SystemKey::of("s0");
        let other = map.prove(&SystemKey::of("s1"));
        assert!(verify_head_proof(&root, &k0, &other).is_err());
    }

    #[test]
    fn head_proof_json_is_read_strictly() {
        let key = SystemKey::of("s").0.to_base64();
        let read = |json: String| serde_json::from_str::<HeadProof>(&json);
        let leaf = |extra: &str| {
            format!(
                r#"{{"siblings":[],"terminal":{{"kind":"leaf","key":"{key}","head":{{"index":4,"count":2{extra}}}}}}}"#
            )
        };
        assert!(read(leaf("")).is_ok());
        assert!(read(r#"{"siblings":[],"terminal":{"kind":"empty"}}"#.into()).is_ok());
        for bad in [
            leaf(r#","extra":1"#),
            leaf("").replace(r#""kind":"leaf""#, r#""kind":"leaf","note":"x""#),
            r#"{"siblings":[],"terminal":{"kind":"empty","extra":1}}"#.into(),
            r#"{"siblings":[],"terminal":{"kind":"empty","head":{"index":1,"count":1}}}"#.into(),
            r#"{"siblings":[],"terminal":{"kind":"leaf"}}"#.into(),
            r#"{"siblings":[],"terminal":{"kind":"branch"}}"#.into(),
            r#"{"siblings":[],"terminal":{"kind":"empty"},"depth":0}"#.into(),
        ] {
            assert!(read(bad.clone()).is_err(), "accepted {bad}");
        }
        // What is written reads back the same.
        let proof = HeadProof {
            siblings: vec![Hash::ZERO],
            terminal: HeadTerminal::Leaf {
                key: SystemKey::of("s"),
                head: head(3),
            },
        };
        let json = serde_json::to_string(&proof).expect("serializes");
        assert_eq!(read(json).expect("reads back"), proof);
    }
}
