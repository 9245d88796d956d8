//! The JSON test vectors in `docs/test-vectors/`: generated here, deterministically, and checked
//! to be reproduced byte for byte; then read back and verified case by case with the core
//! library, as a verifier in another language would.
//!
//! Regenerate after an intended change with
//! `STATELEDGER_WRITE_VECTORS=1 cargo test -p stateledger-core --test test_vectors`.

mod vectors;

use std::path::Path;

use stateledger_core::hash::{leaf_hash, node_hash, Hash};
use stateledger_core::merkle::reference;
use stateledger_core::trust::TrustPolicy;
use vectors::schema::{
    ConsistencyFile, DocumentsFile, HeadProofsFile, InclusionFile, LeafHashesFile, RootsFile,
    SignedRecordsFile,
};

/// Whether `STATELEDGER_WRITE_VECTORS=1` asks for the files to be (re)written; if so, writes them
/// once per test run, before either test looks at them.
fn write_if_asked() -> bool {
    static WRITE: std::sync::Once = std::sync::Once::new();
    let write = std::env::var("STATELEDGER_WRITE_VECTORS").is_ok_and(|v| v == "1");
    if write {
        WRITE.call_once(|| {
            for (name, contents) in vectors::generate() {
                let path = vectors::dir().join(name);
                std::fs::write(&path, contents)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
        });
    }
    write
}

#[test]
fn vectors_are_reproduced_byte_for_byte() {
    if write_if_asked() {
        return;
    }
    let dir = vectors::dir();
    let mut stale = Vec::new();
    for (name, contents) in vectors::generate() {
        match std::fs::read(dir.join(name)) {
            Ok(committed) if committed == contents.as_bytes() => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(e) => stale.push(format!("{name} cannot be read: {e}")),
        }
    }
    assert!(
        stale.is_empty(),
        "docs/test-vectors/ is not what the generator produces ({}); if the change is intended, \
         regenerate with STATELEDGER_WRITE_VECTORS=1 cargo test -p stateledger-core --test \
         test_vectors and review the diff",
        stale.join(", ")
    );
}

fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> T {
    let path = dir.join(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

/// Counts of valid and bad cases, so a file that lost all its bad (or good) cases fails.
fn assert_has_both(name: &str, valid: impl Iterator<Item = bool>) {
    let (good, bad) = valid.fold((0, 0), |(g, b), v| if v { (g + 1, b) } else { (g, b + 1) });
    assert!(
        good > 0 && bad > 0,
        "{name}: {good} valid and {bad} bad cases"
    );
}

#[test]
fn committed_vectors_verify_as_recorded() {
    write_if_asked();
    let dir = vectors::dir();

    let leaves: LeafHashesFile = read(&dir, "leaf_hashes.json");
    assert_eq!(leaves.empty_tree_root, Hash::empty_tree());
    for c in &leaves.leaves {
        assert_eq!(leaf_hash(&c.leaf), c.leaf_hash, "{}", c.name);
    }
    for c in &leaves.node_hashes {
        assert_eq!(node_hash(&c.left, &c.right), c.node_hash);
    }

    let roots: RootsFile = read(&dir, "roots.json");
    let sequence: Vec<Vec<u8>> = (0..roots.roots.len() as u64 - 1)
        .map(vectors::merkle::leaf_input)
        .collect();
    for (n, c) in roots.roots.iter().enumerate() {
        assert_eq!(c.tree_size, n as u64);
        assert_eq!(reference::root(&sequence[..n]), c.root, "size {n}");
    }
    assert_eq!(roots.roots.len() as u64, vectors::merkle::SIZE_MAX + 1);

    let inclusion: InclusionFile = read(&dir, "inclusion_proofs.json");
    assert_has_both("inclusion", inclusion.cases.iter().map(|c| c.valid));
    for c in &inclusion.cases {
        vectors::merkle::assert_inclusion_case(c);
        if c.valid {
            // Valid cases are about the documented sequence and the roots in roots.json.
            assert_eq!(c.leaf_hash, leaf_hash(&sequence[c.leaf_index as usize]));
            assert_eq!(c.root, roots.roots[c.tree_size as usize].root);
        }
    }

    let consistency: ConsistencyFile = read(&dir, "consistency_proofs.json");
    assert_has_both("consistency", consistency.cases.iter().map(|c| c.valid));
    for c in &consistency.cases {
        vectors::merkle::assert_consistency_case(c);
        if c.valid {
            assert_eq!(c.old_root, roots.roots[c.old_size as usize].root);
            assert_eq!(c.new_root, roots.roots[c.new_size as usize].root);
        }
    }

    let records: SignedRecordsFile = read(&dir, "signed_records.json");
    assert_has_both("signed records", records.cases.iter().map(|c| c.valid));
    for c in &records.cases {
        vectors::records::assert_signed_record_case(c);
    }
    let dimensions: std::collections::BTreeSet<&str> = records
        .cases
        .iter()
        .filter_map(|c| c.dimension.as_deref())
        .collect();
    assert_eq!(
        dimensions.into_iter().collect::<Vec<_>>(),
        [
            "code",
            "config",
            "environment",
            "mutation",
            "nondeterminism",
            "policy",
            "state_digest"
        ]
    );

    let policy_bytes = std::fs::read(dir.join("trust_policy.json")).expect("trust policy");
    let policy = TrustPolicy::from_json(&policy_bytes).expect("valid trust policy");
    assert!(
        policy
            .verifiers
            .iter()
            .any(|v| v.to_text().split_once('+').is_some_and(|(_, rest)| {
                rest.split_once('+')
                    .is_some_and(|(_, material)| material.contains('+'))
            })),
        "trust_policy.json has a key whose base64 holds a '+'"
    );
    for name in [
        "checkpoints.json",
        "receipts.json",
        "consistency_documents.json",
        "state_proofs.json",
    ] {
        let file: DocumentsFile = read(&dir, name);
        assert_eq!(file.trust_policy, "trust_policy.json");
        assert_has_both(name, file.cases.iter().map(|c| c.valid));
        for c in &file.cases {
            vectors::documents::assert_document_case(&policy, c);
        }
    }

    // Every check of docs/PROOFS.md §7 that a state proof can fail has a case.
    let states: DocumentsFile = read(&dir, "state_proofs.json");
    for check in [
        "document",
        "format",
        "checkpoint_note",
        "checkpoint_body",
        "checkpoint_origin",
        "checkpoint_signature",
        "checkpoint_threshold",
        "proof_length",
        "leaf_encoding",
        "leaf_index",
        "inclusion_proof",
        "leaf_time",
        "record",
        "writer_signature",
        "state_checkpoint_time",
        "state_system",
        "state_time",
        "state_chain",
        "state_boundary",
        "state_recomputed",
    ] {
        assert!(
            states
                .cases
                .iter()
                .any(|c| c.check.as_deref() == Some(check)),
            "state_proofs.json has no {check} case"
        );
    }

    let heads: HeadProofsFile = read(&dir, "head_proofs.json");
    assert_has_both("head proofs", heads.cases.iter().map(|c| c.valid));
    for c in &heads.cases {
        vectors::state::assert_head_proof_case(c);
    }
    for error in ["TooDeep", "RootMismatch", "Malformed"] {
        assert!(
            heads
                .cases
                .iter()
                .any(|c| c.error.as_deref() == Some(error)),
            "head_proofs.json has a {error} case"
        );
    }
}
