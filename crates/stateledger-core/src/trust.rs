//! Trust policies: which node keys an auditor trusts for which log, and how many must have signed
//! a checkpoint. A JSON file (docs/PROOFS.md §6):
//!
//! ```json
//! {
//!   "format": "stateledger.trust_policy.v1",
//!   "origin": "stateledger.example/prod",
//!   "threshold": 2,
//!   "node_keys": ["node-1+1a2b3c4d+AU...", "node-2+...", "node-3+..."]
//! }
//! ```

use crate::checkpoint::{check_origin, Checkpoint, CheckpointBodyError};
use crate::note::{KeyError, Note, NoteError, NoteVerifier};

pub const TRUST_POLICY_FORMAT: &str = "stateledger.trust_policy.v1";

/// The policy file as JSON.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyFile {
    pub format: String,
    pub origin: String,
    pub threshold: usize,
    pub node_keys: Vec<String>,
}

/// A checked trust policy.
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    pub origin: String,
    pub threshold: usize,
    pub verifiers: Vec<NoteVerifier>,
}

/// Why a trust policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("trust policy is not valid JSON of the expected shape: {reason}")]
    Json { reason: String },
    #[error("trust policy format is {found:?}, expected {TRUST_POLICY_FORMAT:?}")]
    Format { found: String },
    #[error("trust policy key {index}: {source}")]
    Key { index: usize, source: KeyError },
    #[error("trust policy origin {origin:?} can never match a checkpoint origin: {reason}")]
    Origin {
        origin: String,
        reason: &'static str,
    },
    #[error("trust policy names key {name:?} twice")]
    DuplicateKey { name: String },
    #[error("trust policy lists the same public key under the names {first:?} and {second:?}; one signer would count twice toward the threshold")]
    DuplicatePublicKey { first: String, second: String },
    #[error(
        "trust policy threshold {threshold} must be between 1 and the number of keys ({keys})"
    )]
    Threshold { threshold: usize, keys: usize },
}

/// Why a checkpoint is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint body: {0}")]
    Body(#[from] CheckpointBodyError),
    #[error("checkpoint origin is {found:?}, the trust policy expects {expected:?}")]
    Origin { expected: String, found: String },
    #[error("checkpoint has {valid} valid signatures from trusted node keys, the threshold is {required}")]
    ThresholdNotMet { valid: usize, required: usize },
}

impl CheckpointError {
    /// The check that failed, as a short stable name.
    pub fn check(&self) -> &'static str {
        match self {
            CheckpointError::Note(NoteError::BadSignature { .. }) => "checkpoint_signature",
            CheckpointError::Note(_) => "checkpoint_note",
            CheckpointError::Body(_) => "checkpoint_body",
            CheckpointError::Origin { .. } => "checkpoint_origin",
            CheckpointError::ThresholdNotMet { .. } => "checkpoint_threshold",
        }
    }
}

/// A checkpoint that met a trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: Note,
    /// Trusted keys whose signatures verified.
    pub signers: Vec<String>,
}

impl TrustPolicy {
    pub fn new(
        origin: &str,
        threshold: usize,
        verifiers: Vec<NoteVerifier>,
    ) -> Result<TrustPolicy, PolicyError> {
        check_origin(origin).map_err(|reason| PolicyError::Origin {
            origin: origin.chars().take(300).collect(),
            reason,
        })?;
        for (i, v) in verifiers.iter().enumerate() {
            if verifiers[..i].iter().any(|w| w.name == v.name) {
                return Err(PolicyError::DuplicateKey {
                    name: v.name.clone(),
                });
            }
        }
        // The same key under two names would let one signer count twice. Keys are compared by
        // their prime-order component ([8]A): two encodings of one point (a `y` coordinate
        // written as y or y + p), or a key and the same key plus a small-order point, are one
        // signer — its holder can produce valid signatures under either.
        let cores: Vec<_> = verifiers
            .iter()
            .map(|v| v.key.to_edwards().mul_by_cofactor())
            .collect();
        for i in 0..verifiers.len() {
            if let Some(j) = (0..i).find(|&j| cores[j] == cores[i]) {
                return Err(PolicyError::DuplicatePublicKey {
                    first: verifiers[j].name.clone(),
                    second: verifiers[i].name.clone(),
                });
            }
        }
        if threshold == 0 || threshold > verifiers.len() {
            return Err(PolicyError::Threshold {
                threshold,
                keys: verifiers.len(),
            });
        }
        Ok(TrustPolicy {
            origin: origin.to_string(),
            threshold,
            verifiers,
        })
    }

    pub fn from_file(file: &TrustPolicyFile) -> Result<TrustPolicy, PolicyError> {
        if file.format != TRUST_POLICY_FORMAT {
            return Err(PolicyError::Format {
                found: file.format.clone(),
            });
        }
        let verifiers = file
            .node_keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                NoteVerifier::parse(k).map_err(|source| PolicyError::Key { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        TrustPolicy::new(&file.origin, file.threshold, verifiers)
    }

    pub fn from_json(bytes: &[u8]) -> Result<TrustPolicy, PolicyError> {
        let file: TrustPolicyFile =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json {
                reason: e.to_string(),
            })?;
        TrustPolicy::from_file(&file)
    }

    pub fn to_file(&self) -> TrustPolicyFile {
        TrustPolicyFile {
            format: TRUST_POLICY_FORMAT.to_string(),
            origin: self.origin.clone(),
            threshold: self.threshold,
            node_keys: self.verifiers.iter().map(NoteVerifier::to_text).collect(),
        }
    }

    /// Verifies a checkpoint note: well-formed, the policy's origin, every trusted signature
    /// valid, and at least `threshold` of them.
    pub fn verify_checkpoint(
        &self,
        note_text: &str,
    ) -> Result<VerifiedCheckpoint, CheckpointError> {
        let note = Note::parse(note_text.as_bytes())?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        if checkpoint.origin != self.origin {
            return Err(CheckpointError::Origin {
                expected: self.origin.clone(),
                found: checkpoint.origin,
            });
        }
        let signers = note.verify(&self.verifiers)?;
        if signers.len() < self.threshold {
            return Err(CheckpointError::ThresholdNotMet {
                valid: signers.len(),
                required: self.threshold,
            });
        }
        Ok(VerifiedCheckpoint {
            checkpoint,
            note,
            signers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::ledger_time::LedgerTime;
    use crate::merkle::TreeSize;
    use crate::note::NoteSigner;

    fn signers() -> Vec<NoteSigner> {
        (1..=3u8)
            .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("valid"))
            .collect()
    }

    fn text() -> String {
        Checkpoint {
            origin: "o".into(),
            size: TreeSize(1),
            root: Hash::of(b"x"),
            time: LedgerTime(5),
            heads_root: Hash::ZERO,
        }
        .to_text()
    }

    #[test]
    fn threshold_and_origin() {
        let s = signers();
        let policy =
            TrustPolicy::new("o", 2, s.iter().map(NoteSigner::verifier).collect()).expect("valid");
        let json = serde_json::to_vec(&policy.to_file()).expect("serializes");
        let policy = TrustPolicy::from_json(&json).expect("round trips");

        let two = Note::sign(&text(), &[&s[0], &s[2]]).to_text();
        let v = policy.verify_checkpoint(&two).expect("quorum");
        assert_eq!(v.signers, vec!["node-1".to_string(), "node-3".to_string()]);

        let one = Note::sign(&text(), &[&s[1]]).to_text();
        assert_eq!(
            policy.verify_checkpoint(&one),
            Err(CheckpointError::ThresholdNotMet {
                valid: 1,
                required: 2
            })
        );
        // The same key twice counts once.
        let twice = Note::sign(&text(), &[&s[1], &s[1]]).to_text();
        assert!(matches!(
            policy.verify_checkpoint(&twice),
            Err(CheckpointError::ThresholdNotMet { valid: 1, .. })
        ));

        let other_origin = Note::sign(&text().replacen("o\n", "p\n", 1), &[&s[0], &s[1]]).to_text();
        assert!(matches!(
            policy.verify_checkpoint(&other_origin),
            Err(CheckpointError::Origin { .. })
        ));
    }

    #[test]
    fn bad_policies() {
        let s = signers();
        assert!(matches!(
            TrustPolicy::new("o", 4, s.iter().map(NoteSigner::verifier).collect()),
            Err(PolicyError::Threshold {
                threshold: 4,
                keys: 3
            })
        ));
        assert!(matches!(
            TrustPolicy::from_json(b"{}"),
            Err(PolicyError::Json { .. })
        ));
    }

    #[test]
    fn the_same_public_key_under_two_names_is_refused() {
        let s = signers();
        let mut verifiers: Vec<NoteVerifier> = s.iter().map(NoteSigner::verifier).collect();
        let alias = NoteVerifier::new("node-1-again", s[0].verifier().key).expect("valid");
        verifiers.push(alias);
        assert_eq!(
            TrustPolicy::new("o", 2, verifiers.clone()).map(|_| ()),
            Err(PolicyError::DuplicatePublicKey {
                first: "node-1".into(),
                second: "node-1-again".into()
            })
        );
        // Through the JSON file too.
        let file = TrustPolicyFile {
            format: TRUST_POLICY_FORMAT.into(),
            origin: "o".into(),
            threshold: 2,
            node_keys: verifiers.iter().map(NoteVerifier::to_text).collect(),
        };
        assert!(matches!(
            TrustPolicy::from_file(&file),
            Err(PolicyError::DuplicatePublicKey { .. })
        ));

        // The key plus a small-order point is the same signer.
        let order_8: [u8; 32] =
            hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let small = ed25519_dalek::VerifyingKey::from_bytes(&order_8).expect("a curve point");
        assert!(small.is_weak());
        let point = s[1].verifier().key.to_edwards() + small.to_edwards();
        let torsioned = ed25519_dalek::VerifyingKey::from_bytes(point.compress().as_bytes())
            .expect("a valid point");
        assert!(!torsioned.is_weak());
        let mut verifiers: Vec<NoteVerifier> = s.iter().map(NoteSigner::verifier).collect();
        verifiers.push(NoteVerifier::new("mixed", torsioned).expect("valid"));
        assert!(matches!(
            TrustPolicy::new("o", 2, verifiers),
            Err(PolicyError::DuplicatePublicKey { .. })
        ));
    }

    #[test]
    fn the_origin_is_checked_like_a_checkpoint_origin() {
        let verifiers = || {
            signers()
                .iter()
                .map(NoteSigner::verifier)
                .collect::<Vec<_>>()
        };
        for bad in ["", " o", "o\n", &"o".repeat(257)] {
            assert!(
                matches!(
                    TrustPolicy::new(bad, 2, verifiers()),
                    Err(PolicyError::Origin { .. })
                ),
                "{bad:?}"
            );
        }
        let err = TrustPolicy::new("o ", 2, verifiers())
            .map(|_| ())
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "trust policy origin \"o \" can never match a checkpoint origin: it has leading or trailing whitespace"
        );
    }
}
