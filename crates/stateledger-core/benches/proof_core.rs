//! Micro-benchmark of the proof core. Prints numbers; asserts nothing about speed.
//!
//! `cargo bench -p stateledger-core --bench proof_core`
//! Targets (one core): append >= 1 M leaves/s, inclusion proof generation >= 100 k/s on a 1 M-leaf
//! log held in memory.

use std::hint::black_box;
use std::time::{Duration, Instant};

use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::hash::{leaf_hash, Hash};
use stateledger_core::heads::{Head, HeadMap, SystemKey};
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, Frontier, LeafIndex,
    MemoryNodeStore, TreeSize,
};
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::trust::TrustPolicy;

const LEAVES: u64 = 1 << 20;

fn rate(label: &str, count: u64, elapsed: Duration) {
    let per_sec = count as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<48} {count:>9} in {:>8.3} s = {:>12.0} /s ({:.3} µs each)",
        elapsed.as_secs_f64(),
        per_sec,
        1e6 / per_sec
    );
}

/// A cheap deterministic index sequence (xorshift), so the benchmark needs no RNG crate.
fn indices(n: usize, bound: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % bound
        })
        .collect()
}

fn main() {
    println!("stateledger-core proof benchmark ({} leaves)", LEAVES);

    // Leaf hashing of ~300-byte leaves (a leaf header plus a small record).
    let leaf_bytes = vec![0xabu8; 300];
    let start = Instant::now();
    let mut acc = Hash::ZERO;
    for i in 0..LEAVES {
        let mut b = leaf_bytes.clone();
        b[..8].copy_from_slice(&i.to_be_bytes());
        acc = leaf_hash(&b);
    }
    black_box(acc);
    rate("leaf hash (300 B leaves)", LEAVES, start.elapsed());

    let hashes: Vec<Hash> = (0..LEAVES).map(|i| leaf_hash(&i.to_be_bytes())).collect();

    let start = Instant::now();
    let mut frontier = Frontier::new();
    for h in &hashes {
        frontier.append(*h, |_, _| {});
    }
    rate("frontier append (leaf hash given)", LEAVES, start.elapsed());
    let root = frontier.root();

    let start = Instant::now();
    let mut store = MemoryNodeStore::new();
    for h in &hashes {
        store.append(*h);
    }
    rate(
        "append + keep every node in memory",
        LEAVES,
        start.elapsed(),
    );

    let size = TreeSize(LEAVES - 12_345); // not a power of two: exercises the right border
    let mut partial = Frontier::new();
    for h in &hashes[..size.0 as usize] {
        partial.append(*h, |_, _| {});
    }
    let size_root = partial.root();
    let idx = indices(200_000, size.0);

    let start = Instant::now();
    let mut proofs = Vec::with_capacity(idx.len());
    for &i in &idx {
        proofs.push(inclusion_proof(&store, LeafIndex(i), size).expect("in range"));
    }
    rate(
        "inclusion proof generation (1 M leaves)",
        idx.len() as u64,
        start.elapsed(),
    );

    let start = Instant::now();
    for (&i, p) in idx.iter().zip(&proofs) {
        verify_inclusion(&hashes[i as usize], LeafIndex(i), size, p, &size_root).expect("verifies");
    }
    rate(
        "inclusion proof verification",
        idx.len() as u64,
        start.elapsed(),
    );

    let olds = indices(100_000, LEAVES);
    let start = Instant::now();
    let mut cproofs = Vec::with_capacity(olds.len());
    for &o in &olds {
        cproofs.push(consistency_proof(&store, TreeSize(o), TreeSize(LEAVES)).expect("ordered"));
    }
    rate(
        "consistency proof generation",
        olds.len() as u64,
        start.elapsed(),
    );

    // Old roots for verification: a few distinct sizes, computed once.
    let few: Vec<u64> = olds.iter().take(50).copied().collect();
    let mut old_roots = Vec::new();
    for &o in &few {
        let mut f = Frontier::new();
        for h in &hashes[..o as usize] {
            f.append(*h, |_, _| {});
        }
        old_roots.push(f.root());
    }
    let reps = 2_000;
    let start = Instant::now();
    for r in 0..reps {
        let k = r % few.len();
        let p = consistency_proof(&store, TreeSize(few[k]), TreeSize(LEAVES)).expect("ordered");
        verify_consistency(TreeSize(few[k]), TreeSize(LEAVES), &p, &old_roots[k], &root)
            .expect("verifies");
    }
    rate(
        "consistency proof generate + verify",
        reps as u64,
        start.elapsed(),
    );

    // Head map: 10 k systems, updates and root.
    let mut heads = HeadMap::new();
    let start = Instant::now();
    for i in 0..10_000u64 {
        heads.insert(
            SystemKey::of(&format!("system-{i}")),
            Head {
                index: LeafIndex(i),
                count: 1,
            },
        );
    }
    black_box(heads.root());
    rate(
        "head map insert 10 k systems + root",
        10_000,
        start.elapsed(),
    );
    let start = Instant::now();
    for i in 0..10_000u64 {
        heads.insert(
            SystemKey::of(&format!("system-{}", i % 100)),
            Head {
                index: LeafIndex(i),
                count: 2,
            },
        );
        if i % 100 == 0 {
            black_box(heads.root());
        }
    }
    rate(
        "head map update (root every 100 updates)",
        10_000,
        start.elapsed(),
    );

    // Checkpoint verification: 3 signatures, threshold 2.
    let signers: Vec<NoteSigner> = (1..=3u8)
        .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("valid name"))
        .collect();
    let policy = TrustPolicy::new(
        "bench",
        2,
        signers.iter().map(NoteSigner::verifier).collect(),
    )
    .expect("valid");
    let cp = Checkpoint {
        origin: "bench".into(),
        size: TreeSize(LEAVES),
        root,
        time: LedgerTime(1),
        heads_root: heads.root(),
    };
    let note = Note::sign(&cp.to_text(), &[&signers[0], &signers[1], &signers[2]]).to_text();
    let n = 5_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(policy.verify_checkpoint(&note).expect("verifies"));
    }
    rate("checkpoint verification (3 signatures)", n, start.elapsed());
    let start = Instant::now();
    for _ in 0..n {
        black_box(Note::sign(&cp.to_text(), &[&signers[0]]));
    }
    rate("checkpoint signing (1 signature)", n, start.elapsed());
}
