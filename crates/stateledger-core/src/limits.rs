//! Named limits on everything a record, a proof or a note may hold (STYLE: "put a limit on
//! everything"). Nodes enforce the same numbers at their API; docs/PROOFS.md lists them.

/// Largest encoded record.
pub const RECORD_BYTES_MAX: usize = 64 * 1024;
/// Largest `system` name.
pub const SYSTEM_BYTES_MAX: usize = 128;
/// Largest `scope`.
pub const SCOPE_BYTES_MAX: usize = 256;
/// Largest ordinary text field (ids, names, versions, references, keys).
pub const TEXT_BYTES_MAX: usize = 1024;
/// Largest clear config value kept in a record.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
/// Most entries in one config snapshot.
pub const CONFIG_ENTRIES_MAX: usize = 4096;
/// Most items in any other repeated field (artifacts, lockfiles, runtimes, flags, captures,
/// required config keys).
pub const LIST_ITEMS_MAX: usize = 1024;
/// Largest captured random seed.
pub const SEED_BYTES_MAX: usize = 64;
/// Largest recorded external-call response.
pub const EXTERNAL_RESPONSE_BYTES_MAX: usize = 4096;
/// Largest signed note (checkpoint) accepted by a parser.
pub const NOTE_BYTES_MAX: usize = 16 * 1024;
/// Most signature lines on one note.
pub const NOTE_SIGNATURES_MAX: usize = 64;
/// Largest JSON proof document (receipt, consistency proof, state proof) a verifier reads.
pub const DOCUMENT_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Most leaves in one state proof.
pub const STATE_PROOF_LEAVES_MAX: usize = 1_000_000;
