//! Applying committed Raft entries: genesis, appends (admission rules, then ledger time,
//! back-links and the leaf), checkpoint publication; one store batch per apply, the metadata
//! last. Also the leader's early check of a request with the same rules.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stateledger_core::hash::leaf_hash;
use stateledger_core::leaf::Leaf;
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::LeafIndex;
use stateledger_core::record::WriterKey;

use super::admission::{self, Admitted, Rejected, Submitted};
use super::blocks::{BlockWrites, Sealed};
use super::checkpoints::{self, PublishRefusal};
use super::inner::Inner;
use super::keys;
use super::meta::Genesis;
use super::state::Ledger;
use crate::raft::codec;
use crate::raft::{
    Appended, Command, CommandResponse, Entry, GroupOutcome, LogId, Refusal, StoredMembership,
    SubmittedRecord,
};
use crate::sigcheck::BadGroups;
use crate::store::{Batch, StoreError, Tree};

/// Why a command other than an append was refused (the same on every node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CommandRefusal {
    #[error("genesis already happened")]
    GenesisRepeated,
    #[error(transparent)]
    Checkpoint(#[from] PublishRefusal),
}

/// What a node keeps of a group it refused for a bad signature: the leader's entry, as evidence
/// (`keys::evidence`, postcard). The Raft log holds the entry too, but only until it is purged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub log_id: LogId,
    /// The group's number within the entry.
    pub group: u32,
    /// Which record does not verify, and why.
    pub position: u32,
    pub reason: String,
    pub records: Vec<SubmittedRecord>,
}

/// The entry being applied, and the groups of this apply whose signatures do not verify.
struct Applying<'a> {
    log_id: LogId,
    bad: &'a BadGroups,
}

impl Ledger {
    /// Which groups of `entries` hold a record whose signature does not verify
    /// (`crate::sigcheck::check_entries`). This is the one place where every node checks the
    /// records it is about to apply (and so, later, cosign); nothing else decides it.
    pub fn signature_verdicts(&self, entries: &[Entry]) -> BadGroups {
        crate::sigcheck::check_entries(entries, &self.verified)
    }

    /// Records this node verified at submission (as leader), which it need not verify again
    /// when it applies them (`crate::sigcheck::Verified`).
    pub fn verified(&self) -> Arc<crate::sigcheck::Verified> {
        self.verified.clone()
    }

    /// How many record groups this node refused at apply for a bad signature.
    pub fn bad_signature_groups(&self) -> u64 {
        self.read().bad_signature_groups
    }

    /// The groups refused for a bad signature, as kept (`keys::evidence`), oldest first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        let start = keys::evidence(0, 0);
        let end = keys::prefix_end(&[start[0]]);
        let rows = self.store().scan(Tree::Ledger, &start, &end, usize::MAX)?;
        rows.into_iter()
            .map(|(k, v)| {
                codec::decode("evidence", &v).map_err(|e| StoreError::corrupt(Tree::Ledger, &k, e))
            })
            .collect()
    }

    /// The leader's early check of a request, with the state machine's rules at the current
    /// state (the state machine decides again when it applies). `Some` refuses it.
    pub fn precheck(&self, group: &[SubmittedRecord]) -> Result<Option<GroupOutcome>, StoreError> {
        let inner = self.read();
        Ok(self.admit(&inner, &[], group)?.err().map(outcome))
    }

    /// Whether these record bytes are already in the ledger, and where.
    pub fn find_record(&self, record_bytes: &[u8]) -> Result<Option<u64>, StoreError> {
        self.read().find_record(self.store(), &[], record_bytes)
    }

    /// Applies committed entries in order, writing one store batch (checks their signatures
    /// first, inline: [`Ledger::apply_checked`] takes verdicts computed elsewhere).
    pub fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<CommandResponse>, StoreError> {
        let bad = self.signature_verdicts(&entries);
        self.apply_checked(entries, &bad)
    }

    /// Applies committed entries in order, writing one store batch, its metadata last. `bad`
    /// are the groups whose signatures do not verify ([`Ledger::signature_verdicts`] of the same
    /// entries): each is refused, and kept under `keys::evidence` with the entry's leader.
    pub fn apply_checked(
        &self,
        entries: Vec<Entry>,
        bad: &BadGroups,
    ) -> Result<Vec<CommandResponse>, StoreError> {
        let mut inner = self.write();
        let applied = self.apply_in_memory(&mut inner, entries, bad);
        let written = applied.and_then(|(batch, responses)| {
            self.store().write(batch)?;
            Ok(responses)
        });
        match written {
            Ok(responses) => {
                self.publish_progress(&inner);
                Ok(responses)
            }
            Err(e) => {
                // Memory is ahead of what is stored: go back to the stored state (the one
                // before this apply: its metadata is written last), so that the apply can be
                // tried again.
                let (corruption, engine_failed) = (inner.corruption.take(), inner.engine_failed);
                *inner = Inner::load(self.store())?;
                inner.corruption = corruption;
                inner.engine_failed = engine_failed;
                Err(e)
            }
        }
    }

    /// Applies `entries` to the in-memory state and returns the batch that stores it.
    fn apply_in_memory(
        &self,
        inner: &mut Inner,
        entries: Vec<Entry>,
        bad: &BadGroups,
    ) -> Result<(Batch, Vec<CommandResponse>), StoreError> {
        let mut batch = Batch::new(Tree::Ledger);
        let mut writes = BlockWrites::default();
        let mut responses = Vec::with_capacity(entries.len());
        let meta_first = known_bad!(self.known_bad(), LedgerMetaWrittenFirst);
        for entry in entries {
            let response = match entry.payload {
                openraft::EntryPayload::Blank => CommandResponse::None,
                openraft::EntryPayload::Membership(m) => {
                    inner.meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::None
                }
                openraft::EntryPayload::Normal(command) => {
                    let at = Applying {
                        log_id: entry.log_id,
                        bad,
                    };
                    self.apply_command(inner, &mut batch, &mut writes, command, &at)?
                }
            };
            inner.meta.applied = Some(entry.log_id);
            responses.push(response);
        }
        inner.open.write(inner.meta.size, &mut batch, &mut writes);
        inner.meta.frontier = inner.idx.frontier.hashes().iter().map(|h| h.0).collect();
        // Last: a crash may cut this batch (sled keeps a prefix of its operations), and the
        // metadata is what says the apply happened. Without it, the leaves already written
        // beyond the stored size are ignored at start and the entries are applied again.
        // (KNOWN-BAD, simulation only, with `meta_first`: written first.)
        let meta = inner.meta.encode()?;
        if meta_first {
            #[cfg(madsim)]
            batch.put_first(keys::META.to_vec(), &meta);
        } else {
            batch.put(keys::META.to_vec(), &meta);
        }
        writes.remove_obsolete(&mut batch);
        Ok((batch, responses))
    }

    fn apply_command(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        writes: &mut BlockWrites,
        command: Command,
        at: &Applying<'_>,
    ) -> Result<CommandResponse, StoreError> {
        match command {
            Command::Genesis { origin, admin_keys } => {
                if inner.meta.genesis.is_some() {
                    return Ok(CommandResponse::Refused {
                        reason: CommandRefusal::GenesisRepeated,
                    });
                }
                inner.meta.genesis = Some(Genesis { origin, admin_keys });
                Ok(CommandResponse::None)
            }
            Command::Append {
                groups,
                proposed_time,
            } => {
                if groups.is_empty() {
                    // A tick: the clock moves without a leaf.
                    inner.meta.clock = inner.meta.clock.max(proposed_time);
                    return Ok(CommandResponse::Appended(Vec::new()));
                }
                let mut outcomes = Vec::with_capacity(groups.len());
                for (g, group) in groups.into_iter().enumerate() {
                    if let Some((position, reason)) = at.bad.get(&(at.log_id.index, g)) {
                        outcomes.push(refuse_unsigned(
                            inner, batch, at.log_id, g, group, *position, reason,
                        )?);
                        continue;
                    }
                    outcomes.push(self.append_group(inner, writes, group, proposed_time)?);
                }
                Ok(CommandResponse::Appended(outcomes))
            }
            Command::PublishCheckpoint { note } => Ok(
                match checkpoints::publish(inner, self.store(), batch, writes.sealed(), &note)? {
                    Ok(size) => CommandResponse::Published { size },
                    Err(refusal) => CommandResponse::Refused {
                        reason: refusal.into(),
                    },
                },
            ),
        }
    }

    /// The admission rules for `group` at `inner` (`sealed`: blocks an apply in progress filled).
    fn admit(
        &self,
        inner: &Inner,
        sealed: &Sealed,
        group: &[SubmittedRecord],
    ) -> Result<Result<Vec<Admitted>, Rejected>, StoreError> {
        let submitted: Vec<Submitted<'_>> = group
            .iter()
            .map(|r| Submitted {
                record: &r.record,
                signature: &r.signature,
                writer_key: &r.writer_key,
            })
            .collect();
        let admin_keys = inner.meta.genesis.as_ref().map(|g| g.admin_keys.as_slice());
        // KNOWN-BAD (simulation only) when set: the duplicate index is not consulted.
        let skip_duplicates = known_bad!(self.known_bad(), DuplicateCheckSkipped);
        admission::check_group(admin_keys, &inner.idx.grants, &submitted, |bytes| {
            Ok(inner
                .find_record(self.store(), sealed, bytes)?
                .filter(|_| !skip_duplicates))
        })
    }

    fn append_group(
        &self,
        inner: &mut Inner,
        writes: &mut BlockWrites,
        group: Vec<SubmittedRecord>,
        proposed_time: u64,
    ) -> Result<GroupOutcome, StoreError> {
        let admitted = match self.admit(inner, writes.sealed(), &group)? {
            Ok(admitted) => admitted,
            Err(rejected) => return Ok(outcome(rejected)),
        };
        let mut appended = Vec::with_capacity(group.len());
        // KNOWN-BAD (simulation only) when set: the monotonic guard starts afresh per request.
        let time_backwards = known_bad!(self.known_bad(), LedgerTimeBackwards);
        let mut group_clock = 0;
        for (r, a) in group.into_iter().zip(admitted) {
            let index = inner.meta.size;
            let floor = if time_backwards {
                group_clock
            } else {
                inner.meta.clock
            };
            let time = LedgerTime::next_after(LedgerTime(floor), LedgerTime(proposed_time)).0;
            group_clock = time;
            let entries = inner.idx.systems.get(&a.key);
            let prev = if known_bad!(self.known_bad(), BacklinkWrongPredecessor) {
                // KNOWN-BAD, simulation only: the wrong predecessor.
                entries.and_then(|v| v.first())
            } else {
                entries.and_then(|v| v.last())
            }
            .map(|(i, _)| LeafIndex(*i));
            let leaf = Leaf {
                index: LeafIndex(index),
                ledger_time: LedgerTime(time),
                prev,
                writer_key: WriterKey(r.writer_key),
                signature: a.signature,
                record: r.record,
            };
            let bytes = leaf.encode();
            let lh = leaf_hash(&bytes);
            inner.add_leaf(&a.key, a.short_hash, &a.record, index, time, lh);
            if known_bad!(self.known_bad(), HeadMapNotUpdated) {
                // KNOWN-BAD, simulation only: the leaf never reaches the head map.
                inner.idx.pending.pop_back();
            }
            inner.open.push(writes, index, bytes);
            appended.push(Appended {
                index,
                time,
                leaf_hash: lh.0,
            });
        }
        Ok(GroupOutcome::Appended(appended))
    }
}

/// The outcome of a group the rules did not admit.
fn outcome(rejected: Rejected) -> GroupOutcome {
    match rejected {
        Rejected::AllDuplicates(indexes) => GroupOutcome::AllDuplicates(indexes),
        Rejected::Refused { position, refusal } => GroupOutcome::Refused { position, refusal },
    }
}

/// Refuses a group of an entry the leader proposed although a record's signature does not
/// verify: nothing of it is appended, the group is kept as evidence, and the node says so.
fn refuse_unsigned(
    inner: &mut Inner,
    batch: &mut Batch,
    log_id: LogId,
    group: usize,
    records: Vec<SubmittedRecord>,
    position: usize,
    reason: &str,
) -> Result<GroupOutcome, StoreError> {
    let leader = log_id.leader_id.node_id;
    tracing::error!(
        log_index = log_id.index,
        leader,
        group,
        position,
        "the leader proposed a record whose signature does not verify ({reason}); refused it, \
         and kept the entry as evidence"
    );
    let evidence = Evidence {
        log_id,
        group: group as u32,
        position: position as u32,
        reason: reason.to_string(),
        records,
    };
    let bytes = codec::encode("evidence", &evidence).map_err(|e| {
        StoreError::corrupt(Tree::Ledger, &keys::evidence(log_id.index, group as u32), e)
    })?;
    batch.put(keys::evidence(log_id.index, group as u32), &bytes);
    inner.bad_signature_groups += 1;
    Ok(GroupOutcome::Refused {
        position,
        refusal: Refusal::BadSignature {
            reason: format!(
                "record {position}: {reason} (the leader, node {leader}, proposed it unchecked)"
            ),
        },
    })
}
