//! Key layout of the ledger tree. One sled tree with one-letter prefixes, so that everything one
//! Raft apply changes lands in one batch (not atomic: a crash may keep a prefix of it, which is
//! why the metadata is written last; `store::kv`).
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `B` block                             | a full block: leaves `64·block ..`, each u32 BE length + bytes |
//! | `O` index                             | one leaf of the last, not yet full, block |
//! | `C` size                              | published checkpoint note text          |
//! | `Mmeta`                               | [`super::meta::LedgerMeta`] (postcard)  |
//! | `Msnapshot`                           | last built snapshot (postcard)          |
//! | `L` index (staging tree only)         | a received snapshot leaf                |
//! | `E` log index, group (u32)            | a group refused for a bad signature: the leader's records, kept as evidence (`apply::Evidence`) |
//!
//! Tree nodes, the duplicate index, per-system chains, heads and grants are derived from the
//! leaves in memory (see `index.rs`).
//!
//! Integers are big-endian so keys sort by number.

pub const META: &[u8] = b"Mmeta";
pub const SNAPSHOT: &[u8] = b"Msnapshot";

pub fn leaf(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'L');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn block(block: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'B');
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// A leaf of the open (not yet full) block: stored once on its own until its block is full,
/// instead of rewriting the whole partial block at every apply (which, with large records, left
/// sled with a new copy of up to 64 leaves per apply: a 24 MiB disk held 33 records of 30 KB).
pub fn open_leaf(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'O');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn evidence(log_index: u64, group: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(b'E');
    k.extend_from_slice(&log_index.to_be_bytes());
    k.extend_from_slice(&group.to_be_bytes());
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
