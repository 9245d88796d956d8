//! Simulation-only switches that re-introduce known-bad behaviour — each a classic bug of a
//! replicated log, put back at the real code site as the one-line regression it would be — so
//! the deterministic simulation can prove it catches that class of bug
//! (`simulation/tests/known_bad.rs`; catch rates in docs/SIMULATION.md).
//!
//! Compiled only under `cfg(madsim)`: a production build has no such code path. The switches
//! travel with [`crate::node::NodeParts`] (one value per started node), never through a static,
//! so parallel simulation runs in one process cannot leak them into each other (process-wide
//! state is what breaks determinism between runs: docs/SIMULATION.md, "Determinism").

use std::fmt;

/// One known-bad behaviour. [`Switch::ALL`] is the catalogue; [`Switch::name`] is the name
/// `stateledger-sim --known-bad` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Switch {
    /// `store/log_store.rs`: a follower (or the leader) reports Raft log appends durable as soon
    /// as they are written, before its fsync. Breaks openraft's `RaftLogStorage` contract: a
    /// crash can then lose entries a quorum acknowledged — committed, acknowledged records.
    AckLogBeforeSync,
    /// `store/wal/mod.rs`: the Raft log's recovery no longer consults its sync marker, so a log
    /// that lost synced records (truncated, rolled back, deleted) looks like one whose unsynced
    /// tail a crash tore off — issue 11's first failure. Only the node record's and the
    /// ledger's cross-checks (`recovery.rs`) are left to notice.
    SyncMarkerIgnored,
    /// openraft's `ReplicationHandler::update_matching` (vendor/openraft/PATCHES.md): the commit
    /// index follows the highest match index of any one voter instead of the one a quorum of
    /// voters holds (the classic "sorted match indexes, took the wrong end" bug).
    CommitWithoutQuorum,
    /// `checkpointer.rs`: when cosigners do not all answer in time, the leader keeps and serves
    /// the checkpoint with the signatures it has, short of a majority of voters.
    CheckpointShortOfQuorum,
    /// `repair.rs`: a node that lost durable state still votes (and stands for election) while
    /// repairing, as if its state were intact.
    LostStateVotes,
    /// `ledger/apply.rs`: the state machine no longer looks records up in its duplicate index,
    /// so a retried submission is appended a second time.
    DuplicateCheckSkipped,
    /// `ledger/state_machine.rs`: an installed snapshot is not synced before openraft purges the
    /// log entries it replaces, so a crash can leave a ledger behind a purged log.
    SnapshotInstallWithoutSync,
    /// `ledger/apply.rs`: a new leaf's back-link names the *first* leaf of its system instead of
    /// the previous one.
    BacklinkWrongPredecessor,
    /// `ledger/apply.rs`: a new leaf does not update the head map (each system's latest leaf
    /// and count), so checkpoints sign stale heads.
    HeadMapNotUpdated,
    /// `ledger/apply.rs`: the monotonic guard on ledger time starts afresh with each request
    /// instead of from the ledger clock, so a leader whose clock is behind the previous one's
    /// gives new leaves earlier times.
    LedgerTimeBackwards,
    /// `recovery.rs`: a node that led when it stopped resumes as leader after a restart
    /// without an election, and reuses log ids that a quorum may already hold for other
    /// entries (its own log lost them in the crash).
    LeaderResumesAfterRestart,
    /// `ledger/apply.rs`: an apply writes the ledger's metadata (the applied index, the size)
    /// first in its batch instead of last, so a crash that cuts the batch leaves metadata that
    /// claims leaves that were never written.
    LedgerMetaWrittenFirst,
    /// `grpc/ledger_service.rs`: the leader ignores its signature check at submission
    /// (`sigcheck.rs`) and proposes records whose writer signature does not verify. Every node's
    /// check before it applies (`Ledger::signature_verdicts`) is then all that keeps them out of
    /// the ledger: each refuses the group and keeps it as evidence.
    UnsignedRecordAccepted,
}

impl Switch {
    /// The catalogue, in the order docs/SIMULATION.md lists it.
    pub const ALL: [Switch; 13] = [
        Switch::AckLogBeforeSync,
        Switch::SyncMarkerIgnored,
        Switch::CommitWithoutQuorum,
        Switch::CheckpointShortOfQuorum,
        Switch::LostStateVotes,
        Switch::DuplicateCheckSkipped,
        Switch::SnapshotInstallWithoutSync,
        Switch::BacklinkWrongPredecessor,
        Switch::HeadMapNotUpdated,
        Switch::LedgerTimeBackwards,
        Switch::LeaderResumesAfterRestart,
        Switch::LedgerMetaWrittenFirst,
        Switch::UnsignedRecordAccepted,
    ];

    /// The name on the command line (`--known-bad NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Switch::AckLogBeforeSync => "ack-log-before-sync",
            Switch::SyncMarkerIgnored => "sync-marker-ignored",
            Switch::CommitWithoutQuorum => "commit-without-quorum",
            Switch::CheckpointShortOfQuorum => "checkpoint-short-of-quorum",
            Switch::LostStateVotes => "lost-state-votes",
            Switch::DuplicateCheckSkipped => "duplicate-check-skipped",
            Switch::SnapshotInstallWithoutSync => "snapshot-install-without-sync",
            Switch::BacklinkWrongPredecessor => "backlink-wrong-predecessor",
            Switch::HeadMapNotUpdated => "head-map-not-updated",
            Switch::LedgerTimeBackwards => "ledger-time-backwards",
            Switch::LeaderResumesAfterRestart => "leader-resumes-after-restart",
            Switch::LedgerMetaWrittenFirst => "ledger-meta-written-first",
            Switch::UnsignedRecordAccepted => "unsigned-record-accepted",
        }
    }

    /// The switch named `name` (see [`Switch::name`]).
    pub fn parse(name: &str) -> Option<Switch> {
        Switch::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which known-bad behaviours a node re-introduces. All off by default.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KnownBad {
    on: u32,
}

impl KnownBad {
    /// Only `switch` on.
    pub fn only(switch: Switch) -> KnownBad {
        KnownBad { on: switch.bit() }
    }

    /// These switches on too.
    pub fn with(self, switch: Switch) -> KnownBad {
        KnownBad {
            on: self.on | switch.bit(),
        }
    }

    pub fn is_on(&self, switch: Switch) -> bool {
        self.on & switch.bit() != 0
    }

    /// The switches that are on, in catalogue order.
    pub fn switches(&self) -> Vec<Switch> {
        Switch::ALL.into_iter().filter(|s| self.is_on(*s)).collect()
    }
}

impl fmt::Debug for KnownBad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.switches()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_has_its_own_name_and_bit() {
        for s in Switch::ALL {
            assert_eq!(Switch::parse(s.name()), Some(s));
            assert_eq!(KnownBad::only(s).switches(), vec![s]);
        }
        let two = KnownBad::only(Switch::SyncMarkerIgnored).with(Switch::AckLogBeforeSync);
        assert_eq!(
            two.switches(),
            vec![Switch::AckLogBeforeSync, Switch::SyncMarkerIgnored]
        );
        assert_eq!(Switch::parse("no-such-switch"), None);
        assert_eq!(format!("{:?}", KnownBad::default()), "[]");
    }
}
