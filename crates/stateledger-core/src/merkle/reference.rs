//! A deliberately naive, recursive implementation of RFC 9162 §2.1 (MTH, PATH, PROOF), used only
//! to check the production code in tests and to generate test vectors. Quadratic; never use it on
//! large trees.

use crate::hash::{leaf_hash, node_hash, Hash};

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf inputs (not leaf hashes).
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> Hash {
    match leaves.len() {
        0 => Hash::empty_tree(),
        1 => leaf_hash(leaves[0].as_ref()),
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]).
pub fn inclusion<T: AsRef<[u8]>>(m: usize, leaves: &[T]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = inclusion(m, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion(m - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub fn consistency<T: AsRef<[u8]>>(m: usize, leaves: &[T]) -> Vec<Hash> {
    if m == 0 || m >= leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn subproof<T: AsRef<[u8]>>(m: usize, leaves: &[T], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}
