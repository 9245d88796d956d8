//! Record signature verification, batched.
//!
//! **At the leader, on submission.** Submit handlers queue their records here; one task takes
//! everything queued (up to [`SIG_BATCH_RECORDS_MAX`] records) and checks it with one ed25519
//! batch verification on the blocking pool, so the batch grows with the load while earlier
//! batches are being checked. When a batch fails, each request is checked on its own, and only
//! the requests holding a bad signature are refused (naming the record): one bad writer never
//! fails another writer's request. Nothing is proposed unless its signature verified: a request
//! gets its records back only with the verdict.
//!
//! **On every node, before it applies.** [`check_entries`] checks every record of the committed
//! entries about to be applied, again with one batch verification for all of them. The leader
//! checked them already, but a cosigner must not take the leader's word for what it signs: a
//! leader that skipped the check (compromised, or a bug) would otherwise have every node apply
//! and cosign records that no writer signed. The verdict depends only on the entry's bytes
//! (the batch's coefficients are derived from its inputs, and a failed batch is decided record by
//! record with the same cofactored equation), so every node refuses the same groups.
//!
//! The leader does not verify twice what it verified itself: records that passed its check at
//! submission are remembered ([`Verified`]) and skipped when it applies them. A leader that
//! skipped the submission check has nothing remembered, and checks at apply like every node.

use stateledger_core::record::{verify_record_signature, verify_record_signatures};
use tokio::sync::{mpsc, oneshot};

use crate::raft::{Command, Entry, SubmittedRecord};

/// Most records checked in one batch verification.
pub const SIG_BATCH_RECORDS_MAX: usize = 4096;
/// Batches up to this many records are checked on the task itself, not on the blocking pool.
pub const SIG_INLINE_RECORDS_MAX: usize = 4;

/// Records this node verified itself at submission (a digest of key, signature and bytes), so
/// that it does not verify them again when it applies them. Bounded: when full it is emptied,
/// and the records are simply verified again at apply.
#[derive(Debug, Default)]
pub struct Verified {
    set: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

impl Verified {
    /// Most digests held (32 bytes each).
    pub const ENTRIES_MAX: usize = 1 << 18;

    fn key(r: &SubmittedRecord) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"stateledger:verified:v1\0");
        h.update(&r.writer_key);
        h.update(&(r.signature.len() as u64).to_be_bytes());
        h.update(&r.signature);
        h.update(&r.record);
        *h.finalize().as_bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers records whose signatures verified.
    pub fn insert_all(&self, records: &[SubmittedRecord]) {
        let keys: Vec<[u8; 32]> = records.iter().map(Verified::key).collect();
        let mut set = self.lock();
        if set.len() + keys.len() > Self::ENTRIES_MAX {
            set.clear();
        }
        set.extend(keys);
    }

    /// Whether every record of `records` was verified here; forgets them if so.
    fn take_all(&self, records: &[SubmittedRecord]) -> bool {
        let keys: Vec<[u8; 32]> = records.iter().map(Verified::key).collect();
        let mut set = self.lock();
        if !keys.iter().all(|k| set.contains(k)) {
            return false;
        }
        for k in &keys {
            set.remove(k);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request's records, waiting for their signatures to be checked.
#[derive(Debug)]
pub struct SigJob {
    pub records: Vec<SubmittedRecord>,
    /// The records back, with `Err` naming the first bad record of the request.
    pub reply: oneshot::Sender<(Vec<SubmittedRecord>, Result<(), BadSignature>)>,
}

/// The first record of a request whose signature does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record {position}: {reason}")]
pub struct BadSignature {
    /// Its position in the request.
    pub position: usize,
    /// Why it does not verify.
    pub reason: String,
}

fn items(records: &[SubmittedRecord]) -> Vec<(&[u8], &[u8], &[u8])> {
    records
        .iter()
        .map(|r| {
            (
                r.writer_key.as_slice(),
                r.signature.as_slice(),
                r.record.as_slice(),
            )
        })
        .collect()
}

/// The first record of `records` whose signature does not verify: its position and why.
pub fn first_bad(records: &[SubmittedRecord]) -> Option<(usize, String)> {
    let items = items(records);
    if verify_record_signatures(&items).is_ok() {
        return None;
    }
    for (i, (k, s, rec)) in items.iter().enumerate() {
        if let Err(e) = verify_record_signature(k, s, rec) {
            return Some((i, e.to_string()));
        }
    }
    // The batch equation failed although every signature verifies on its own: impossible for
    // cofactored verification, but refuse rather than guess.
    Some((0, "a record signature does not verify".to_string()))
}

/// Checks one request's records: `Err` names the first record that does not verify.
pub fn check_request(records: &[SubmittedRecord]) -> Result<(), BadSignature> {
    match first_bad(records) {
        None => Ok(()),
        Some((position, reason)) => Err(BadSignature { position, reason }),
    }
}

/// Groups of committed entries holding a record whose signature does not verify:
/// (log index, group number) → (position of the first bad record, why).
pub type BadGroups = std::collections::HashMap<(u64, usize), (usize, String)>;

/// Every record of every Append among `entries`, checked with one batch verification; when it
/// fails, group by group, and in a failing group record by record (module comment). Groups all
/// of whose records this node verified itself at submission (`verified`) are not checked again.
pub fn check_entries(entries: &[Entry], verified: &Verified) -> BadGroups {
    let groups: Vec<((u64, usize), &[SubmittedRecord])> = entries
        .iter()
        .flat_map(|e| {
            let groups = match &e.payload {
                openraft::EntryPayload::Normal(Command::Append { groups, .. }) => groups.as_slice(),
                _ => &[],
            };
            groups
                .iter()
                .enumerate()
                .map(move |(g, records)| ((e.log_id.index, g), records.as_slice()))
        })
        .filter(|(_, records)| !verified.take_all(records))
        .collect();
    let all: Vec<(&[u8], &[u8], &[u8])> = groups.iter().flat_map(|(_, r)| items(r)).collect();
    if all.is_empty() || verify_record_signatures(&all).is_ok() {
        return BadGroups::new();
    }
    groups
        .into_iter()
        .filter_map(|(at, records)| first_bad(records).map(|bad| (at, bad)))
        .collect()
}

/// How many records the Append entries among `entries` hold.
pub fn records_in(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(Command::Append { groups, .. }) => {
                groups.iter().map(Vec::len).sum()
            }
            _ => 0,
        })
        .sum()
}

/// Verdicts for jobs checked together: one batch for all, then per request if that fails.
pub fn check_jobs(jobs: &[Vec<SubmittedRecord>]) -> Vec<Result<(), BadSignature>> {
    let all: Vec<(&[u8], &[u8], &[u8])> = jobs.iter().flat_map(|j| items(j)).collect();
    if verify_record_signatures(&all).is_ok() {
        return vec![Ok(()); jobs.len()];
    }
    jobs.iter().map(|j| check_request(j)).collect()
}

/// The verification task: runs until every sender is gone. Records that verify are remembered in
/// `verified`, so that applying them does not verify them again on this node.
pub async fn run(mut rx: mpsc::Receiver<SigJob>, verified: std::sync::Arc<Verified>) {
    while let Some(batch) =
        crate::drain::recv_batch(&mut rx, SIG_BATCH_RECORDS_MAX, |j: &SigJob| j.records.len()).await
    {
        #[cfg(not(madsim))]
        let count = batch.weight;
        let (records, replies): (Vec<_>, Vec<_>) = batch
            .items
            .into_iter()
            .map(|j| (j.records, j.reply))
            .unzip();
        // On the blocking pool, so the runtime's workers keep serving while a batch is
        // checked. The simulation has no blocking pool: there it runs inline.
        #[cfg(not(madsim))]
        let (records, verdicts) = if count <= SIG_INLINE_RECORDS_MAX {
            // A few signatures (tens of µs each) cost less than waking a pool thread.
            let verdicts = check_jobs(&records);
            (records, verdicts)
        } else {
            let checked = tokio::task::spawn_blocking(move || {
                let verdicts = check_jobs(&records);
                (records, verdicts)
            })
            .await;
            let Ok(checked) = checked else {
                // The blocking pool is gone (shutdown): dropping the replies tells the requests.
                return;
            };
            checked
        };
        #[cfg(madsim)]
        let verdicts = check_jobs(&records);
        for ((records, verdict), reply) in records.into_iter().zip(verdicts).zip(replies) {
            if verdict.is_ok() {
                verified.insert_all(&records);
            }
            let _ = reply.send((records, verdict));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateledger_core::note::NoteSigner;
    use stateledger_core::record::{pb, Body, CheckedRecord};

    fn record(key: &NoteSigner, n: u64) -> SubmittedRecord {
        let signed = CheckedRecord::sign(
            pb::Record {
                system: "s".into(),
                scope: String::new(),
                observed_at_unix_nanos: 1,
                body: Some(Body::Mutation(pb::Mutation {
                    kind: "k".into(),
                    id: format!("m{n}"),
                    source: "src".into(),
                    sequence: n,
                    ..Default::default()
                })),
            },
            key.signing_key(),
        )
        .expect("valid");
        SubmittedRecord {
            record: signed.bytes,
            writer_key: signed.writer_key.0,
            signature: signed.signature.to_vec(),
        }
    }

    #[test]
    fn a_bad_signature_fails_only_its_own_request_and_names_the_record() {
        let key = NoteSigner::from_seed("w", &[7; 32]).expect("key");
        let good_a = vec![record(&key, 1), record(&key, 2)];
        let mut bad = vec![record(&key, 3), record(&key, 4)];
        bad[1].signature[0] ^= 1;
        let good_b = vec![record(&key, 5)];
        let verdicts = check_jobs(&[good_a, bad, good_b]);
        assert_eq!(verdicts[0], Ok(()));
        assert!(
            verdicts[1]
                .as_ref()
                .is_err_and(|e| e.position == 1 && e.to_string().starts_with("record 1:")),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[2], Ok(()));
    }

    fn append_entry(index: u64, groups: Vec<Vec<SubmittedRecord>>) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(Command::Append {
                groups,
                proposed_time: 1,
            }),
        }
    }

    #[test]
    fn applied_entries_are_checked_and_what_this_node_verified_is_not_checked_twice() {
        let key = NoteSigner::from_seed("w", &[7; 32]).expect("key");
        let good = vec![record(&key, 1), record(&key, 2)];
        let mut bad = vec![record(&key, 3)];
        bad[0].signature[5] ^= 1;
        let entries = vec![append_entry(7, vec![good.clone(), bad.clone()])];
        let none = Verified::default();
        let verdicts = check_entries(&entries, &none);
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts.get(&(7, 1)).map(|(p, _)| *p), Some(0));

        // Verified at submission: skipped at apply, and forgotten.
        let verified = Verified::default();
        verified.insert_all(&good);
        assert_eq!(verified.len(), 2);
        assert_eq!(
            check_entries(&entries, &verified).len(),
            1,
            "the bad group still fails"
        );
        assert!(verified.is_empty(), "applied records are forgotten");

        // A record whose signature changed after the check is not the one verified.
        let mut changed = good.clone();
        changed[1].signature[0] ^= 1;
        verified.insert_all(&good);
        let entries = vec![append_entry(8, vec![changed])];
        assert_eq!(
            check_entries(&entries, &verified)
                .get(&(8, 0))
                .map(|(p, _)| *p),
            Some(1)
        );
    }

    #[test]
    fn a_signature_moved_to_another_record_fails() {
        let key = NoteSigner::from_seed("w", &[7; 32]).expect("key");
        let mut a = vec![record(&key, 1), record(&key, 2)];
        let s0 = a[0].signature.clone();
        a[0].signature = a[1].signature.clone();
        a[1].signature = s0;
        assert!(check_jobs(&[a]).iter().all(|v| v.is_err()));
    }
}
