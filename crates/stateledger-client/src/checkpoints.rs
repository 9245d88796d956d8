//! The last verified checkpoint, and the rule that every newer one must be consistent with it.

use stateledger_core::documents::consistency::verify_checkpoint_consistency;
use stateledger_core::hash::Hash;
use stateledger_core::trust::{TrustPolicy, VerifiedCheckpoint};

use crate::error::ClientError;

/// Tracks the newest checkpoint this client verified.
#[derive(Debug, Clone)]
pub struct CheckpointTracker {
    policy: TrustPolicy,
    last: Option<VerifiedCheckpoint>,
}

/// The consistency proof a new checkpoint needs before it is accepted: between tree sizes
/// `old` and `new` (the smaller first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofNeeded {
    pub old: u64,
    pub new: u64,
}

impl CheckpointTracker {
    pub fn new(policy: TrustPolicy) -> CheckpointTracker {
        CheckpointTracker { policy, last: None }
    }

    pub fn policy(&self) -> &TrustPolicy {
        &self.policy
    }

    pub fn last(&self) -> Option<&VerifiedCheckpoint> {
        self.last.as_ref()
    }

    /// Starts from a checkpoint kept from an earlier run (it is verified again).
    pub fn restore(&mut self, note: &str) -> Result<(), ClientError> {
        let v = self
            .policy
            .verify_checkpoint(note)
            .map_err(|e| ClientError::Verify {
                endpoint: "saved state".into(),
                error: e.into(),
            })?;
        self.last = Some(v);
        Ok(())
    }

    /// Which consistency proof `new` needs against the last verified checkpoint (None: none).
    pub fn proof_needed(&self, new: &VerifiedCheckpoint) -> Option<ProofNeeded> {
        let last = self.last.as_ref()?;
        let (a, b) = (last.checkpoint.size.0, new.checkpoint.size.0);
        Some(ProofNeeded {
            old: a.min(b),
            new: a.max(b),
        })
    }

    /// Accepts `new` given the consistency proof asked for by [`Self::proof_needed`]; keeps the
    /// larger of the two. A proof that fails is a fork or a rewritten history.
    pub fn accept(&mut self, new: VerifiedCheckpoint, proof: &[Hash]) -> Result<(), ClientError> {
        let Some(last) = self.last.clone() else {
            self.last = Some(new);
            return Ok(());
        };
        let (old_cp, new_cp) = if last.checkpoint.size <= new.checkpoint.size {
            (&last, &new)
        } else {
            (&new, &last)
        };
        let fork = |reason: String| ClientError::Fork {
            old_size: old_cp.checkpoint.size.0,
            new_size: new_cp.checkpoint.size.0,
            reason,
        };
        verify_checkpoint_consistency(old_cp, new_cp, proof).map_err(|e| fork(e.to_string()))?;
        if old_cp.checkpoint.size < new_cp.checkpoint.size
            && new_cp.checkpoint.time <= old_cp.checkpoint.time
        {
            return Err(fork(format!(
                "the larger checkpoint's time {} is not after the smaller one's {}",
                new_cp.checkpoint.time, old_cp.checkpoint.time
            )));
        }
        let newer = (new.checkpoint.size, new.checkpoint.time)
            > (last.checkpoint.size, last.checkpoint.time);
        if newer {
            self.last = Some(new);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use stateledger_core::checkpoint::Checkpoint;
    use stateledger_core::hash::leaf_hash;
    use stateledger_core::ledger_time::LedgerTime;
    use stateledger_core::merkle::{consistency_proof, Frontier, MemoryNodeStore, TreeSize};
    use stateledger_core::note::{Note, NoteSigner};

    use super::*;

    fn signed(signer: &NoteSigner, size: u64, root: Hash, time: u64) -> String {
        let cp = Checkpoint {
            origin: "o".into(),
            size: TreeSize(size),
            root,
            time: LedgerTime(time),
            heads_root: Hash::ZERO,
        };
        Note::sign(&cp.to_text(), &[signer]).to_text()
    }

    #[test]
    fn forks_are_caught() {
        let signer = NoteSigner::from_seed("n", &[1; 32]).expect("valid");
        let policy = TrustPolicy::new("o", 1, vec![signer.verifier()]).expect("valid");
        let mut honest = MemoryNodeStore::new();
        let mut f = Frontier::new();
        let mut roots = vec![f.root()];
        for i in 0..10u8 {
            let h = leaf_hash(&[i]);
            honest.append(h);
            f.append(h, |_, _| {});
            roots.push(f.root());
        }
        let mut tracker = CheckpointTracker::new(policy.clone());
        let cp4 = policy
            .verify_checkpoint(&signed(&signer, 4, roots[4], 40))
            .expect("verifies");
        tracker.accept(cp4, &[]).expect("first");
        let cp9 = policy
            .verify_checkpoint(&signed(&signer, 9, roots[9], 90))
            .expect("verifies");
        let need = tracker.proof_needed(&cp9).expect("needs proof");
        let proof =
            consistency_proof(&honest, TreeSize(need.old), TreeSize(need.new)).expect("proof");
        tracker.accept(cp9, &proof).expect("consistent");
        assert_eq!(tracker.last().map(|c| c.checkpoint.size.0), Some(9));

        // A forked log: leaf 5 differs.
        let mut forked = MemoryNodeStore::new();
        let mut g = Frontier::new();
        for i in 0..10u8 {
            let h = leaf_hash(&[if i == 5 { 99 } else { i }]);
            forked.append(h);
            g.append(h, |_, _| {});
        }
        let fork10 = {
            let mut s = forked.clone();
            let h = leaf_hash(&[10]);
            s.append(h);
            g.append(h, |_, _| {});
            (s, g.root())
        };
        let cp10 = policy
            .verify_checkpoint(&signed(&signer, 10, fork10.1, 100))
            .expect("verifies");
        let proof = consistency_proof(&fork10.0, TreeSize(9), TreeSize(10)).expect("proof");
        assert!(matches!(
            tracker.accept(cp10, &proof),
            Err(ClientError::Fork { .. })
        ));
        // Same size, different root.
        let other9 = policy
            .verify_checkpoint(&signed(&signer, 9, roots[8], 95))
            .expect("verifies");
        assert!(matches!(
            tracker.accept(other9, &[]),
            Err(ClientError::Fork { .. })
        ));
    }
}
