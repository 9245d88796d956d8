//! Leaf hashes, roots, inclusion proofs and consistency proofs over the documented leaf sequence:
//! leaf `i` is the 8-byte big-endian encoding of `i`.
//!
//! Good cases come from the production prover and are checked against the recursive reference;
//! bad cases are mutations of good ones, each verified here to fail with the recorded error.

use stateledger_core::hash::{leaf_hash, node_hash, Hash};
use stateledger_core::merkle::{
    consistency_proof, inclusion_proof, reference, verify_consistency, verify_inclusion, Frontier,
    LeafIndex, MemoryNodeStore, ProofError, TreeSize,
};

use super::schema::{
    ConsistencyCase, ConsistencyFile, InclusionCase, InclusionFile, LeafHashCase, LeafHashesFile,
    NodeHashCase, RootCase, RootsFile,
};

/// The largest tree size the proof vectors cover.
pub const SIZE_MAX: u64 = 130;

/// Tree sizes with inclusion vectors: every small size, and both sides of each power of two.
const INCLUSION_SIZES: &[u64] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 64, 65, 100, 127, 128, 129, 130,
];
/// New tree sizes with consistency vectors.
const CONSISTENCY_SIZES: &[u64] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 100, 127, 128, 129, 130,
];

/// Leaf `i` of the sequence.
pub fn leaf_input(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn leaves() -> Vec<Vec<u8>> {
    (0..SIZE_MAX).map(leaf_input).collect()
}

fn store() -> MemoryNodeStore {
    let mut store = MemoryNodeStore::new();
    for leaf in leaves() {
        store.append(leaf_hash(&leaf));
    }
    store
}

/// The name of a `ProofError` variant, as recorded in the vectors.
pub fn proof_error_name(e: &ProofError) -> String {
    match e {
        ProofError::IndexOutOfRange { .. } => "IndexOutOfRange",
        ProofError::WrongProofLength { .. } => "WrongProofLength",
        ProofError::RootMismatch { .. } => "RootMismatch",
        ProofError::OldRootMismatch { .. } => "OldRootMismatch",
        ProofError::SizeOrder { .. } => "SizeOrder",
        other => return format!("unnamed error {other:?}"),
    }
    .to_string()
}

/// Flips one bit of a hash; which bit is spread over the cases so no single bit is special.
fn flip(h: &Hash, bit: u64) -> Hash {
    let mut b = h.0;
    let bit = (bit % 256) as usize;
    b[bit / 8] ^= 0x80 >> (bit % 8);
    Hash(b)
}

/// A fixed hash appended to proofs as trailing garbage.
fn garbage() -> Hash {
    Hash::of(b"stateledger test vectors: trailing garbage")
}

pub fn leaf_hashes_file(document_leaf: Vec<u8>) -> LeafHashesFile {
    let sixty_four: Vec<u8> = (0..64u8).collect();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("the empty leaf", Vec::new()),
        ("one zero byte", vec![0]),
        ("leaf 0 of the sequence", leaf_input(0)),
        ("leaf 1 of the sequence", leaf_input(1)),
        ("leaf 129 of the sequence", leaf_input(129)),
        ("ASCII \"stateledger\"", b"stateledger".to_vec()),
        (
            "64 bytes 0x00..0x3f, as long as a node hash input without its prefix",
            sixty_four,
        ),
        (
            "leaf 1 of the document log: an encoded leaf holding a signed code record",
            document_leaf,
        ),
    ];
    let leaves: Vec<LeafHashCase> = inputs
        .into_iter()
        .map(|(name, leaf)| LeafHashCase {
            name: name.to_string(),
            leaf_hash: leaf_hash(&leaf),
            leaf,
        })
        .collect();
    let (a, b) = (leaf_hash(&leaf_input(0)), leaf_hash(&leaf_input(1)));
    let e = Hash::empty_tree();
    let node_hashes = [(a, b), (b, a), (e, e)]
        .into_iter()
        .map(|(left, right)| NodeHashCase {
            left,
            right,
            node_hash: node_hash(&left, &right),
        })
        .collect();
    LeafHashesFile {
        description: "BLAKE3 leaf hashes H(0x00 || leaf) of base64 leaf bytes, node hashes \
                      H(0x01 || left || right), and the empty-tree root H() (RFC 9162 §2.1.1 \
                      with BLAKE3)."
            .to_string(),
        empty_tree_root: Hash::empty_tree(),
        leaves,
        node_hashes,
    }
}

pub fn roots_file() -> RootsFile {
    let all = leaves();
    let mut frontier = Frontier::new();
    let mut roots = Vec::new();
    for n in 0..=SIZE_MAX {
        let root = reference::root(&all[..n as usize]);
        assert_eq!(frontier.root(), root, "frontier root of size {n}");
        roots.push(RootCase { tree_size: n, root });
        if n < SIZE_MAX {
            frontier.append(leaf_hash(&all[n as usize]), |_, _| {});
        }
    }
    RootsFile {
        description: "Merkle roots (RFC 9162 §2.1.1, BLAKE3) of the trees of sizes 0 to 130 \
                      over the leaf sequence where leaf i is the 8-byte big-endian encoding of i."
            .to_string(),
        roots,
    }
}

/// One mutation of a good case: the changed inputs, the errors it may legitimately produce, and
/// whether it can coincidentally still verify (then it is dropped, never recorded as bad).
struct Mutation<T> {
    name: String,
    case: T,
    allowed: &'static [&'static str],
    may_verify: bool,
}

/// Runs each mutation, asserts it fails with an allowed error (or drops it if it verifies and is
/// allowed to), and returns the bad cases with the error they actually produce.
fn bad_cases<T>(
    good_name: &str,
    mutations: Vec<Mutation<T>>,
    verify: impl Fn(&T) -> Result<(), ProofError>,
    record: impl Fn(&mut T, String, String),
) -> Vec<T> {
    let mut out = Vec::new();
    for mut m in mutations {
        match verify(&m.case) {
            Ok(()) => assert!(
                m.may_verify,
                "{good_name}: mutation {:?} unexpectedly verifies",
                m.name
            ),
            Err(e) => {
                let name = proof_error_name(&e);
                assert!(
                    m.allowed.contains(&name.as_str()),
                    "{good_name}: mutation {:?} fails with {e:?}, expected one of {:?}",
                    m.name,
                    m.allowed
                );
                record(&mut m.case, format!("{good_name}: {}", m.name), name);
                out.push(m.case);
            }
        }
    }
    out
}

fn check_inclusion(c: &InclusionCase) -> Result<(), ProofError> {
    verify_inclusion(
        &c.leaf_hash,
        LeafIndex(c.leaf_index),
        TreeSize(c.tree_size),
        &c.proof,
        &c.root,
    )
}

fn check_consistency(c: &ConsistencyCase) -> Result<(), ProofError> {
    verify_consistency(
        TreeSize(c.old_size),
        TreeSize(c.new_size),
        &c.proof,
        &c.old_root,
        &c.new_root,
    )
}

fn dedup_sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

pub fn inclusion_file() -> InclusionFile {
    let all = leaves();
    let store = store();
    let mut cases = Vec::new();
    for &size in INCLUSION_SIZES {
        let root = reference::root(&all[..size as usize]);
        let indices = dedup_sorted(
            [0, 1, size / 3, size / 2, size.saturating_sub(2), size - 1]
                .into_iter()
                .filter(|&i| i < size)
                .collect(),
        );
        for index in indices {
            let proof = inclusion_proof(&store, LeafIndex(index), TreeSize(size))
                .expect("index inside the tree");
            assert_eq!(
                proof,
                reference::inclusion(index as usize, &all[..size as usize]),
                "production proof equals the reference, size {size} index {index}"
            );
            let good = InclusionCase {
                name: format!("leaf {index} in tree of size {size}"),
                leaf_index: index,
                tree_size: size,
                leaf_hash: leaf_hash(&all[index as usize]),
                proof,
                root,
                valid: true,
                error: None,
            };
            check_inclusion(&good).expect("good inclusion case verifies");
            let mutations = inclusion_mutations(&good);
            let bad = bad_cases(&good.name, mutations, check_inclusion, |c, name, error| {
                c.name = name;
                c.valid = false;
                c.error = Some(error);
            });
            cases.push(good);
            cases.extend(bad);
        }
    }
    cases.extend(huge_inclusion_cases());
    InclusionFile {
        description: "Inclusion proofs (RFC 9162 §2.1.3, BLAKE3) over the leaf sequence of \
                      roots.json. Each valid case is followed by mutations of it that must fail \
                      with the named ProofError variant."
            .to_string(),
        cases,
    }
}

fn inclusion_mutations(good: &InclusionCase) -> Vec<Mutation<InclusionCase>> {
    let spread = good.leaf_index * 7 + good.tree_size * 13;
    let with = |name: String,
                allowed: &'static [&'static str],
                may_verify: bool,
                change: &dyn Fn(&mut InclusionCase)| {
        let mut case = good.clone();
        change(&mut case);
        Mutation {
            name,
            case,
            allowed,
            may_verify,
        }
    };
    let mut out = Vec::new();
    let len = good.proof.len();
    for p in dedup_sorted(if len == 0 {
        vec![]
    } else {
        vec![0, len as u64 - 1]
    }) {
        let bit = spread + p;
        out.push(with(
            format!("bit {} of proof[{p}] flipped", bit % 256),
            &["RootMismatch"],
            false,
            &|c| c.proof[p as usize] = flip(&c.proof[p as usize], bit),
        ));
    }
    if len > 0 {
        out.push(with(
            "proof truncated (last hash removed)".to_string(),
            &["WrongProofLength"],
            false,
            &|c| {
                c.proof.pop();
            },
        ));
    }
    out.push(with(
        "trailing garbage hash appended to the proof".to_string(),
        &["WrongProofLength"],
        false,
        &|c| c.proof.push(garbage()),
    ));
    // A wrong size may leave the calculated root unchanged (index 0 of sizes 3 and 4), which is
    // why a verifier takes the size from the signed checkpoint; try the next size, then the
    // previous one, and drop the case if both verify.
    let larger = with(
        format!("wrong tree size {}", good.tree_size + 1),
        &["WrongProofLength", "RootMismatch"],
        true,
        &|c| c.tree_size += 1,
    );
    if check_inclusion(&larger.case).is_err() || good.tree_size - 1 <= good.leaf_index {
        out.push(larger);
    } else {
        out.push(with(
            format!("wrong tree size {}", good.tree_size - 1),
            &["WrongProofLength", "RootMismatch"],
            true,
            &|c| c.tree_size -= 1,
        ));
    }
    if good.tree_size > 1 {
        let other = (good.leaf_index + 1) % good.tree_size;
        out.push(with(
            format!("wrong leaf index {other}"),
            &["RootMismatch", "WrongProofLength"],
            false,
            &|c| c.leaf_index = other,
        ));
    }
    out.push(with(
        format!("leaf index {} outside the tree", good.tree_size),
        &["IndexOutOfRange"],
        false,
        &|c| c.leaf_index = c.tree_size,
    ));
    out.push(with(
        format!("bit {} of the root flipped", (spread + 101) % 256),
        &["RootMismatch"],
        false,
        &|c| c.root = flip(&c.root, spread + 101),
    ));
    out.push(with(
        format!("bit {} of the leaf hash flipped", (spread + 203) % 256),
        &["RootMismatch"],
        false,
        &|c| c.leaf_hash = flip(&c.leaf_hash, spread + 203),
    ));
    out
}

pub fn consistency_file() -> ConsistencyFile {
    let all = leaves();
    let store = store();
    let roots: Vec<Hash> = (0..=SIZE_MAX as usize)
        .map(|n| reference::root(&all[..n]))
        .collect();
    let mut cases = Vec::new();
    for &new in CONSISTENCY_SIZES {
        let pow2 = if new == 0 {
            0
        } else {
            1u64 << (63 - new.leading_zeros())
        };
        let olds = dedup_sorted(
            [0, 1, 2, 3, new / 2, pow2, new.saturating_sub(1), new]
                .into_iter()
                .filter(|&o| o <= new)
                .collect(),
        );
        for old in olds {
            let proof =
                consistency_proof(&store, TreeSize(old), TreeSize(new)).expect("old <= new");
            assert_eq!(
                proof,
                reference::consistency(old as usize, &all[..new as usize]),
                "production proof equals the reference, {old} -> {new}"
            );
            let good = ConsistencyCase {
                name: format!("tree of size {old} is a prefix of tree of size {new}"),
                old_size: old,
                new_size: new,
                proof,
                old_root: roots[old as usize],
                new_root: roots[new as usize],
                valid: true,
                error: None,
            };
            check_consistency(&good).expect("good consistency case verifies");
            let mutations = consistency_mutations(&good);
            let bad = bad_cases(
                &good.name,
                mutations,
                check_consistency,
                |c, name, error| {
                    c.name = name;
                    c.valid = false;
                    c.error = Some(error);
                },
            );
            cases.push(good);
            cases.extend(bad);
        }
    }
    cases.extend(huge_consistency_cases());
    ConsistencyFile {
        description: "Consistency proofs (RFC 9162 §2.1.4, BLAKE3) between trees over the leaf \
                      sequence of roots.json. Each valid case is followed by mutations of it \
                      that must fail with the named ProofError variant."
            .to_string(),
        cases,
    }
}

fn consistency_mutations(good: &ConsistencyCase) -> Vec<Mutation<ConsistencyCase>> {
    const ROOTS: &[&str] = &["OldRootMismatch", "RootMismatch"];
    let spread = good.old_size * 11 + good.new_size * 5;
    let with = |name: String,
                allowed: &'static [&'static str],
                may_verify: bool,
                change: &dyn Fn(&mut ConsistencyCase)| {
        let mut case = good.clone();
        change(&mut case);
        Mutation {
            name,
            case,
            allowed,
            may_verify,
        }
    };
    let mut out = Vec::new();
    let len = good.proof.len();
    for p in dedup_sorted(if len == 0 {
        vec![]
    } else {
        vec![0, len as u64 - 1]
    }) {
        let bit = spread + p;
        out.push(with(
            format!("bit {} of proof[{p}] flipped", bit % 256),
            ROOTS,
            false,
            &|c| c.proof[p as usize] = flip(&c.proof[p as usize], bit),
        ));
    }
    if len > 0 {
        out.push(with(
            "proof truncated (last hash removed)".to_string(),
            &["WrongProofLength"],
            false,
            &|c| {
                c.proof.pop();
            },
        ));
    }
    out.push(with(
        "trailing garbage hash appended to the proof".to_string(),
        &["WrongProofLength"],
        false,
        &|c| c.proof.push(garbage()),
    ));
    if good.old_root != good.new_root {
        out.push(with(
            "old and new roots swapped".to_string(),
            ROOTS,
            false,
            &|c| std::mem::swap(&mut c.old_root, &mut c.new_root),
        ));
    }
    if good.old_size < good.new_size {
        out.push(with(
            "old and new sizes swapped".to_string(),
            &["SizeOrder"],
            false,
            &|c| std::mem::swap(&mut c.old_size, &mut c.new_size),
        ));
    }
    // A wrong size may coincidentally verify; try the candidates in order, drop if all verify.
    let mut candidates: Vec<(u64, u64)> = Vec::new();
    if good.old_size < good.new_size {
        candidates.push((good.old_size + 1, good.new_size));
    }
    candidates.push((good.old_size, good.new_size + 1));
    if good.old_size > 0 {
        candidates.push((good.old_size - 1, good.new_size));
    }
    if let Some(&(o, n)) = candidates.iter().find(|&&(o, n)| {
        let mut c = good.clone();
        (c.old_size, c.new_size) = (o, n);
        check_consistency(&c).is_err()
    }) {
        out.push(with(
            format!("wrong sizes {o} -> {n}"),
            &["WrongProofLength", "OldRootMismatch", "RootMismatch"],
            false,
            &|c| (c.old_size, c.new_size) = (o, n),
        ));
    }
    out.push(with(
        format!("bit {} of the old root flipped", (spread + 101) % 256),
        ROOTS,
        false,
        &|c| c.old_root = flip(&c.old_root, spread + 101),
    ));
    // The empty tree is a prefix of every tree: with old size 0 the new root is not bound.
    if good.old_size > 0 {
        out.push(with(
            format!("bit {} of the new root flipped", (spread + 203) % 256),
            &["RootMismatch"],
            false,
            &|c| c.new_root = flip(&c.new_root, spread + 203),
        ));
    }
    out
}

/// Distinct stand-in hashes for proofs of trees too large to build.
fn filler(count: usize) -> Vec<Hash> {
    (0..count as u64)
        .map(|i| Hash::of(&[b"filler ".as_slice(), &i.to_be_bytes()].concat()))
        .collect()
}

/// Trees of more than 2^63 leaves, where a leaf's path has 64 inner levels: nothing is built,
/// so these are bad cases only, and they check a verifier computes the expected proof length
/// without overflowing (shifting a 64-bit index by 64).
fn huge_inclusion_cases() -> Vec<InclusionCase> {
    let huge = (1u64 << 63) + 1;
    let some_leaf = leaf_hash(&leaf_input(0));
    let case = |name: &str, leaf_index: u64, tree_size: u64, proof: Vec<Hash>, error: &str| {
        let c = InclusionCase {
            name: name.to_string(),
            leaf_index,
            tree_size,
            leaf_hash: some_leaf,
            proof,
            root: garbage(),
            valid: false,
            error: Some(error.to_string()),
        };
        assert_inclusion_case(&c);
        c
    };
    vec![
        case(
            "leaf 0 in a tree of 2^63 + 1 leaves with 2 proof hashes (64 expected)",
            0,
            huge,
            filler(2),
            "WrongProofLength",
        ),
        case(
            "leaf 0 in a tree of 2^63 + 1 leaves with 64 proof hashes leading to another root",
            0,
            huge,
            filler(64),
            "RootMismatch",
        ),
        case(
            "leaf 2^63 in a tree of 2^63 + 1 leaves with 2 proof hashes (1 expected)",
            1 << 63,
            huge,
            filler(2),
            "WrongProofLength",
        ),
        case(
            "leaf 2^64 - 2 in a tree of 2^64 - 1 leaves with no proof hashes (63 expected)",
            u64::MAX - 1,
            u64::MAX,
            Vec::new(),
            "WrongProofLength",
        ),
        case(
            "leaf 2^64 - 1 in a tree of 2^64 - 1 leaves",
            u64::MAX,
            u64::MAX,
            Vec::new(),
            "IndexOutOfRange",
        ),
    ]
}

/// Consistency between trees of more than 2^63 leaves; see [`huge_inclusion_cases`].
fn huge_consistency_cases() -> Vec<ConsistencyCase> {
    let huge = (1u64 << 63) + 1;
    let case = |name: &str, old_size: u64, new_size: u64, proof: Vec<Hash>, error: &str| {
        let c = ConsistencyCase {
            name: name.to_string(),
            old_size,
            new_size,
            proof,
            old_root: leaf_hash(&leaf_input(0)),
            new_root: garbage(),
            valid: false,
            error: Some(error.to_string()),
        };
        assert_consistency_case(&c);
        c
    };
    vec![
        case(
            "size 1 to size 2^63 + 1 with 2 proof hashes (64 expected)",
            1,
            huge,
            filler(2),
            "WrongProofLength",
        ),
        case(
            "size 1 to size 2^63 + 1 with 64 proof hashes leading to another root",
            1,
            huge,
            filler(64),
            "RootMismatch",
        ),
        case(
            "size 2^63 to size 2^64 - 1 with 3 proof hashes (1 expected)",
            1 << 63,
            u64::MAX,
            filler(3),
            "WrongProofLength",
        ),
        case(
            "size 2^64 - 1 to size 2^63 + 1",
            u64::MAX,
            huge,
            Vec::new(),
            "SizeOrder",
        ),
    ]
}

/// Checks one inclusion case as recorded: valid ones verify, bad ones fail with their error.
pub fn assert_inclusion_case(c: &InclusionCase) {
    assert_outcome(&c.name, c.valid, c.error.as_deref(), check_inclusion(c));
}

/// Checks one consistency case as recorded.
pub fn assert_consistency_case(c: &ConsistencyCase) {
    assert_outcome(&c.name, c.valid, c.error.as_deref(), check_consistency(c));
}

fn assert_outcome(name: &str, valid: bool, error: Option<&str>, got: Result<(), ProofError>) {
    match (valid, error, got) {
        (true, None, Ok(())) => {}
        (false, Some(expected), Err(e)) => {
            assert_eq!(proof_error_name(&e), expected, "{name}: {e}")
        }
        (valid, error, got) => {
            panic!("{name}: recorded valid={valid} error={error:?}, verification gave {got:?}")
        }
    }
}
