//! The fixed keys and constants every vector is built from. Seeds are public on purpose: these
//! keys sign nothing but test vectors.

use ed25519_dalek::SigningKey;
use stateledger_core::note::NoteSigner;
use stateledger_core::trust::TrustPolicy;

/// The origin of the vector log and of the trust policy.
pub const ORIGIN: &str = "stateledger.test/vectors";
/// Another origin, for checkpoints the policy must refuse.
pub const OTHER_ORIGIN: &str = "stateledger.test/other";
/// Trusted node signatures a checkpoint needs.
pub const THRESHOLD: usize = 2;
/// Ledger time of leaf 0 (2025-11-24T16:00:00Z); leaf i gets `LEDGER_TIME_0 + i * 1_000_000`.
pub const LEDGER_TIME_0: u64 = 1_764_000_000_000_000_000;

/// Node `i` (1..=3 and 8 trusted, 4 untrusted): name `node-<i>`, ed25519 seed 32 bytes of `i`.
/// node-8's verifier key text has a `+` inside its base64 (`...Zl+QWvRfZPK`): a verifier must
/// split key texts at their first two `+` only (docs/PROOFS.md §4.2).
pub fn node(i: u8) -> NoteSigner {
    NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("valid key name")
}

/// A key that claims a trusted name but is not the trusted key (seed 32 bytes of 0x42).
pub fn impostor_node_2() -> NoteSigner {
    NoteSigner::from_seed("node-2", &[0x42; 32]).expect("valid key name")
}

/// The writer of orders-service records: seed 32 bytes of 0x10.
pub fn writer() -> SigningKey {
    SigningKey::from_bytes(&[0x10; 32])
}

/// The writer of billing-service records: seed 32 bytes of 0x20.
pub fn other_writer() -> SigningKey {
    SigningKey::from_bytes(&[0x20; 32])
}

/// The admin key that signs policy records: seed 32 bytes of 0x30.
pub fn admin() -> SigningKey {
    SigningKey::from_bytes(&[0x30; 32])
}

/// The trusted nodes.
pub const TRUSTED: [u8; 4] = [1, 2, 3, 8];

/// node-1..node-3 and node-8, threshold 2, [`ORIGIN`].
pub fn trust_policy() -> TrustPolicy {
    TrustPolicy::new(
        ORIGIN,
        THRESHOLD,
        TRUSTED.iter().map(|&i| node(i).verifier()).collect(),
    )
    .expect("valid policy")
}
