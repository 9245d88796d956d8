//! The JSON shape of every vector file. Structs (never maps) so key order is the field order and
//! the files are byte-for-byte reproducible; `deny_unknown_fields` so a schema change is noticed.

use serde::{Deserialize, Serialize};
use stateledger_core::hash::Hash;

/// `leaf_hashes.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafHashesFile {
    pub description: String,
    pub empty_tree_root: Hash,
    pub leaves: Vec<LeafHashCase>,
    pub node_hashes: Vec<NodeHashCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafHashCase {
    pub name: String,
    #[serde(with = "stateledger_core::documents::base64_bytes")]
    pub leaf: Vec<u8>,
    pub leaf_hash: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeHashCase {
    pub left: Hash,
    pub right: Hash,
    pub node_hash: Hash,
}

/// `roots.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootsFile {
    pub description: String,
    pub roots: Vec<RootCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCase {
    pub tree_size: u64,
    pub root: Hash,
}

/// `inclusion_proofs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionFile {
    pub description: String,
    pub cases: Vec<InclusionCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionCase {
    pub name: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub proof: Vec<Hash>,
    pub root: Hash,
    pub valid: bool,
    /// The `ProofError` variant verification must return; null for a valid case.
    pub error: Option<String>,
}

/// `consistency_proofs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyFile {
    pub description: String,
    pub cases: Vec<ConsistencyCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyCase {
    pub name: String,
    pub old_size: u64,
    pub new_size: u64,
    pub proof: Vec<Hash>,
    pub old_root: Hash,
    pub new_root: Hash,
    pub valid: bool,
    /// The `ProofError` variant verification must return; null for a valid case.
    pub error: Option<String>,
}

/// `signed_records.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecordsFile {
    pub description: String,
    pub signature_domain: String,
    pub cases: Vec<SignedRecordCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecordCase {
    pub name: String,
    /// The body kind of a valid record; null for a bad case.
    pub dimension: Option<String>,
    #[serde(with = "stateledger_core::documents::base64_bytes")]
    pub record: Vec<u8>,
    #[serde(with = "stateledger_core::documents::base64_bytes")]
    pub writer_key: Vec<u8>,
    #[serde(with = "stateledger_core::documents::base64_bytes")]
    pub signature: Vec<u8>,
    pub valid: bool,
    /// `RecordError::<Variant>` or `SignatureError::<Variant>`; null for a valid case.
    pub error: Option<String>,
}

/// `checkpoints.json`, `receipts.json` and `consistency_documents.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsFile {
    pub description: String,
    /// File name (in this directory) of the trust policy every case is verified against.
    pub trust_policy: String,
    pub cases: Vec<DocumentCase>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentCase {
    pub name: String,
    /// `checkpoint`, `receipt` or `consistency_proof`: what the document is (or pretends to be).
    pub kind: String,
    /// The exact bytes `stateledger verify` reads, as UTF-8 text.
    pub document: String,
    pub valid: bool,
    /// The failed check `stateledger verify` must name (`VerifyError::check()`); null when valid.
    pub check: Option<String>,
}

/// `head_proofs.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadProofsFile {
    pub description: String,
    pub cases: Vec<HeadProofCase>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadProofCase {
    pub name: String,
    /// The head-map root to verify against.
    pub root: Hash,
    /// The system asked about; `key` is `key(system)` (§5.1), given to check an implementation.
    pub system: String,
    pub key: Hash,
    /// The proof in its JSON form (§5.4); a bad case may hold JSON that is not of that form.
    pub proof: serde_json::Value,
    pub valid: bool,
    /// What a valid proof proves: the system's head, or null when it has no leaf. Null for a bad
    /// case.
    pub head: Option<stateledger_core::heads::Head>,
    /// `TooDeep`, `TerminalOffPath`, `RootMismatch` or `Malformed`; null for a valid case.
    pub error: Option<String>,
}
