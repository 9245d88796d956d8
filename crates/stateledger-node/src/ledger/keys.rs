//! Key layout of the ledger tree. One sled tree with one-letter prefixes, so that everything one
//! Raft apply changes lands in one atomic batch.
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `L` index                             | leaf bytes                              |
//! | `N` level index                       | perfect-subtree hash (32)               |
//! | `S` system_key index                  | ledger time (u64 BE)                    |
//! | `H` system_key                        | live head: index, count (u64 BE each)   |
//! | `R` BLAKE3(record bytes)              | leaf index (u64 BE) — duplicate check   |
//! | `G` system_key writer_key             | 1 granted / 0 revoked                   |
//! | `C` size                              | published checkpoint note text          |
//! | `Mmeta`                               | [`super::meta::LedgerMeta`] (postcard)  |
//! | `Msnapshot`                           | last built snapshot (postcard)          |
//!
//! Integers are big-endian so keys sort by number.

use stateledger_core::heads::SystemKey;
use stateledger_core::merkle::NodeId;

pub const META: &[u8] = b"Mmeta";
pub const SNAPSHOT: &[u8] = b"Msnapshot";

pub fn leaf(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'L');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn node(id: NodeId) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(b'N');
    k.push(id.level);
    k.extend_from_slice(&id.index.to_be_bytes());
    k
}

pub fn system(key: &SystemKey, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(41);
    k.push(b'S');
    k.extend_from_slice(&key.0 .0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Index encoded at the end of a system key.
pub fn system_key_index(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(33..41)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub fn head(key: &SystemKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'H');
    k.extend_from_slice(&key.0 .0);
    k
}

pub fn record(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'R');
    k.extend_from_slice(hash);
    k
}

pub fn grant(key: &SystemKey, writer: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(65);
    k.push(b'G');
    k.extend_from_slice(&key.0 .0);
    k.extend_from_slice(writer);
    k
}

pub fn checkpoint(size: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'C');
    k.extend_from_slice(&size.to_be_bytes());
    k
}

/// The first key after every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

pub fn u64_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}
