//! Production Merkle code against the recursive reference (RFC 9162 read literally).

use proptest::prelude::*;

use super::*;
use crate::hash::leaf_hash;

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n as u64).map(|i| i.to_le_bytes().to_vec()).collect()
}

fn store_of(leaves: &[Vec<u8>]) -> (MemoryNodeStore, Frontier) {
    let mut store = MemoryNodeStore::new();
    let mut frontier = Frontier::new();
    for l in leaves {
        let h = leaf_hash(l);
        store.append(h);
        frontier.append(h, |_, _| {});
    }
    (store, frontier)
}

fn flip(h: &Hash) -> Hash {
    let mut b = h.0;
    b[7] ^= 0x10;
    Hash(b)
}

#[test]
fn every_inclusion_proof_up_to_130_verifies_and_every_mutation_fails() {
    let all = leaves(131);
    for n in 1..=130usize {
        let (store, frontier) = store_of(&all[..n]);
        let root = frontier.root();
        assert_eq!(root, reference::root(&all[..n]));
        let size = TreeSize(n as u64);
        for m in 0..n {
            let proof = inclusion_proof(&store, LeafIndex(m as u64), size).expect("in range");
            assert_eq!(proof, reference::inclusion(m, &all[..n]), "n={n} m={m}");
            let lh = leaf_hash(&all[m]);
            verify_inclusion(&lh, LeafIndex(m as u64), size, &proof, &root).expect("verifies");
            // Wrong leaf, wrong index, wrong size, flipped, truncated, extended, swapped root.
            assert!(
                verify_inclusion(&flip(&lh), LeafIndex(m as u64), size, &proof, &root).is_err()
            );
            if n > 1 {
                let other = (m + 1) % n;
                assert!(
                    verify_inclusion(&lh, LeafIndex(other as u64), size, &proof, &root).is_err()
                );
            }
            // A proof for size n never proves the leaf against the root of size n + 1. (The size
            // alone may change without changing the calculated root — e.g. index 0 of sizes 3
            // and 4 — which is why the size must come from the signed checkpoint.)
            let bigger = reference::root(&all[..n + 1]);
            assert!(verify_inclusion(
                &lh,
                LeafIndex(m as u64),
                TreeSize(n as u64 + 1),
                &proof,
                &bigger
            )
            .is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i]);
                assert!(verify_inclusion(&lh, LeafIndex(m as u64), size, &bad, &root).is_err());
            }
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(matches!(
                    verify_inclusion(&lh, LeafIndex(m as u64), size, short, &root),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
            let mut long = proof.clone();
            long.push(root);
            assert!(verify_inclusion(&lh, LeafIndex(m as u64), size, &long, &root).is_err());
            assert!(
                verify_inclusion(&lh, LeafIndex(m as u64), size, &proof, &flip(&root)).is_err()
            );
        }
        assert_eq!(
            inclusion_proof(&store, LeafIndex(n as u64), size)
                .err()
                .map(|e| e.to_string()),
            Some(format!("leaf index {n} is outside a tree of size {n}"))
        );
    }
}

#[test]
fn every_consistency_proof_up_to_130_verifies_and_every_mutation_fails() {
    let all = leaves(130);
    let roots: Vec<Hash> = (0..=130).map(|n| reference::root(&all[..n])).collect();
    let (store, _) = store_of(&all);
    for new in 0..=130usize {
        for old in 0..=new {
            let (o, n) = (TreeSize(old as u64), TreeSize(new as u64));
            let proof = consistency_proof(&store, o, n).expect("old <= new");
            assert_eq!(
                proof,
                reference::consistency(old, &all[..new]),
                "{old}->{new}"
            );
            verify_consistency(o, n, &proof, &roots[old], &roots[new]).expect("verifies");
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i]);
                assert!(
                    verify_consistency(o, n, &bad, &roots[old], &roots[new]).is_err(),
                    "{old}->{new} flip {i}"
                );
            }
            if !proof.is_empty() {
                assert!(verify_consistency(
                    o,
                    n,
                    &proof[..proof.len() - 1],
                    &roots[old],
                    &roots[new]
                )
                .is_err());
                assert!(
                    verify_consistency(o, n, &proof, &roots[new], &roots[old]).is_err()
                        || old == new
                );
            }
            let mut long = proof.clone();
            long.push(roots[new]);
            assert!(verify_consistency(o, n, &long, &roots[old], &roots[new]).is_err());
            if old > 0 {
                assert!(verify_consistency(o, n, &proof, &flip(&roots[old]), &roots[new]).is_err());
            }
            if old > 0 {
                // The empty tree is a prefix of every tree, so only old > 0 binds the new root.
                assert!(verify_consistency(o, n, &proof, &roots[old], &flip(&roots[new])).is_err());
            }
            if old < new && old > 0 {
                assert!(
                    verify_consistency(
                        TreeSize(old as u64 + 1),
                        n,
                        &proof,
                        &roots[old],
                        &roots[new]
                    )
                    .is_err()
                        || roots[old + 1] == roots[old]
                );
            }
        }
    }
    assert!(matches!(
        verify_consistency(TreeSize(5), TreeSize(4), &[], &roots[5], &roots[4]),
        Err(ProofError::SizeOrder { old: 5, new: 4 })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn frontier_root_and_proofs_match_reference(n in 1usize..3000, seed in any::<u64>()) {
        let all = leaves(n);
        let (store, frontier) = store_of(&all);
        prop_assert_eq!(frontier.root(), reference::root(&all));
        let m = (seed % n as u64) as usize;
        let proof = inclusion_proof(&store, LeafIndex(m as u64), TreeSize(n as u64)).expect("in range");
        prop_assert_eq!(&proof, &reference::inclusion(m, &all));
        let old = (seed.rotate_left(17) % (n as u64 + 1)) as usize;
        let c = consistency_proof(&store, TreeSize(old as u64), TreeSize(n as u64)).expect("ordered");
        prop_assert_eq!(&c, &reference::consistency(old, &all));
        verify_consistency(TreeSize(old as u64), TreeSize(n as u64), &c, &reference::root(&all[..old]), &frontier.root())
            .expect("verifies");
    }
}
