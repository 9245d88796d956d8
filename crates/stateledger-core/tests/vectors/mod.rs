//! Generation and checking of the JSON test vectors in `docs/test-vectors/` (its README.md
//! describes every file). Everything is deterministic: fixed ed25519 seeds (ed25519 signing is
//! deterministic), fixed ledger times, no randomness, no clock.

pub mod documents;
pub mod keys;
pub mod merkle;
pub mod records;
pub mod schema;
pub mod state;

use std::path::PathBuf;

/// `docs/test-vectors/` of the workspace.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors")
}

/// Pretty JSON (two-space indent, keys in struct field order) with a trailing newline.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("vectors serialize");
    s.push('\n');
    s
}

/// Every vector file: name in `docs/test-vectors/` and contents.
pub fn generate() -> Vec<(&'static str, String)> {
    let document_leaf = documents::main_log().leaves[1].encode();
    vec![
        (
            documents::TRUST_POLICY_FILE,
            to_json(&keys::trust_policy().to_file()),
        ),
        (
            "leaf_hashes.json",
            to_json(&merkle::leaf_hashes_file(document_leaf)),
        ),
        ("roots.json", to_json(&merkle::roots_file())),
        ("inclusion_proofs.json", to_json(&merkle::inclusion_file())),
        (
            "consistency_proofs.json",
            to_json(&merkle::consistency_file()),
        ),
        (
            "signed_records.json",
            to_json(&records::signed_records_file()),
        ),
        ("checkpoints.json", to_json(&documents::checkpoints_file())),
        ("receipts.json", to_json(&documents::receipts_file())),
        (
            "consistency_documents.json",
            to_json(&documents::consistency_documents_file()),
        ),
        ("state_proofs.json", to_json(&state::state_proofs_file())),
        ("head_proofs.json", to_json(&state::head_proofs_file())),
    ]
}
