//! The disk space alarm (as etcd's NOSPACE): writes are refused with RESOURCE_EXHAUSTED *before*
//! a disk is full, so that Raft itself — votes, heartbeats, the ledger clock's ticks, checkpoint
//! publications — never meets a full disk, the cluster keeps electing and serving reads, and
//! everything resumes by itself once space returns.
//!
//! Each node measures the free space of its data directory's file system every
//! `storage.disk_check_ms` and raises its alarm below the reserve (`storage.disk_reserve_bytes`,
//! by default 5% of the file system, at least 4 MiB, at most 1 GiB); it clears it once a quarter
//! of the reserve more is free again, so that it does not flap. The leader also asks every other
//! member (the `Health` RPC on the cluster port) and refuses writes while its own disk or any
//! voter's is short: a follower whose disk fills up would otherwise stop, and then the next.
//! Answers older than [`PEER_ANSWER_TTL`] no longer count (an unreachable node's disk does not
//! block the cluster).
//!
//! Measurements lag behind fast writers (a check interval, a poll, the writes in flight, and a
//! follower that is behind the leader), so each measurement carries the log index the node had
//! applied when it was taken, and the leader counts the record bytes the node has not written
//! yet: those of every log entry above that index, and those accepted but not yet in an entry.
//! It refuses writes once a disk *would* be below its reserve, counting [`BYTES_PER_RECORD_BYTE`]
//! stored bytes per record byte (the Raft log and the ledger each hold the record). Should a disk
//! fill up all the same, the node waits for space instead of stopping
//! (`crate::store::wait_for_space`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use stateledger_proto::v1 as pb;
use tokio::sync::watch;

use crate::raft::network::ClusterConnector;
use crate::raft::{NodeId, Raft};

/// A peer's answer counts for this long.
pub const PEER_ANSWER_TTL: Duration = Duration::from_secs(5);
/// How long the leader waits for one peer's answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
const RESERVE_MIN: u64 = 4 << 20;
/// Disk bytes a record byte costs a node, for the estimate: the Raft log and the ledger each
/// hold it, plus the storage engines' overhead (sled rewrites whole pages as blobs; measured
/// 4.9 with records of 30 KB, docs/OPERATIONS.md "A full disk").
pub const BYTES_PER_RECORD_BYTE: u64 = 5;
const RESERVE_MAX: u64 = 1 << 30;
/// Log entries whose record bytes the leader remembers (the oldest are forgotten first; a node
/// further behind is counted as missing all of them).
const ENTRIES_REMEMBERED: usize = 1 << 16;

/// Free and total bytes of the file system that holds a node's data.
pub trait DiskSpace: Send + Sync + std::fmt::Debug {
    fn measure(&self) -> std::io::Result<(u64, u64)>;
}

/// The file system of a directory (statvfs).
#[cfg(not(madsim))]
#[derive(Debug, Clone)]
pub struct FileSystem(pub std::path::PathBuf);

#[cfg(not(madsim))]
impl DiskSpace for FileSystem {
    fn measure(&self) -> std::io::Result<(u64, u64)> {
        let s = rustix::fs::statvfs(&self.0)?;
        Ok((
            s.f_bavail.saturating_mul(s.f_frsize),
            s.f_blocks.saturating_mul(s.f_frsize),
        ))
    }
}

/// A simulated directory: its space limit, if set.
impl DiskSpace for crate::store::wal::mem::MemDir {
    fn measure(&self) -> std::io::Result<(u64, u64)> {
        let total = match self.space_limit() {
            0 => u64::MAX / 2,
            limit => limit,
        };
        Ok((total.saturating_sub(self.used_bytes()), total))
    }
}

/// The reserve for a file system of `total` bytes (`configured` unless 0).
pub fn reserve_for(configured: u64, total: u64) -> u64 {
    if configured > 0 {
        configured
    } else {
        (total / 20).clamp(RESERVE_MIN, RESERVE_MAX)
    }
}

/// This node's measurement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measurement {
    pub free: u64,
    pub reserve: u64,
    /// Set while the alarm is raised: why.
    pub alarm: Option<String>,
    /// The log index the node had applied when it was taken (0: none).
    pub applied: u64,
    /// This node's name, for messages.
    name: String,
}

#[derive(Debug)]
struct PeerAnswer {
    at: tokio::time::Instant,
    name: String,
    free: u64,
    reserve: u64,
    alarm: Option<String>,
    applied: u64,
}

/// Record bytes this node accepted for writing as leader, and where they went.
#[derive(Debug, Default)]
struct Accounts {
    /// Accepted and not yet settled: proposed, or still being checked.
    pending: u64,
    /// Record bytes of each recent log entry this node proposed, by index.
    entries: BTreeMap<u64, u64>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct SpaceAlarm {
    own: Mutex<Measurement>,
    peers: Mutex<BTreeMap<NodeId, PeerAnswer>>,
    accounts: Mutex<Accounts>,
}

/// Record bytes counted against every disk from their acceptance until they are in a log entry
/// ([`AcceptedBytes::into_entry`]) or refused (dropped unused).
#[derive(Debug)]
#[must_use = "dropping it un-counts the bytes"]
pub struct AcceptedBytes<'a> {
    space: &'a SpaceAlarm,
    bytes: u64,
}

impl AcceptedBytes<'_> {
    /// The bytes are on their way into a log entry: [`SpaceAlarm::note_entry`] or
    /// [`SpaceAlarm::note_dropped`] settles them.
    pub fn proposed(self) {
        std::mem::forget(self);
    }
}

impl Drop for AcceptedBytes<'_> {
    fn drop(&mut self) {
        self.space.note_dropped(self.bytes);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

impl SpaceAlarm {
    fn own(&self) -> MutexGuard<'_, Measurement> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peers(&self) -> MutexGuard<'_, BTreeMap<NodeId, PeerAnswer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's last measurement.
    pub fn measurement(&self) -> Measurement {
        self.own().clone()
    }

    fn accounts(&self) -> MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts record bytes accepted for writing against every disk (see the module comment),
    /// until the returned guard is dropped (refused) or they are proposed.
    pub fn accept(&self, bytes: u64) -> AcceptedBytes<'_> {
        self.accounts().pending += bytes;
        AcceptedBytes { space: self, bytes }
    }

    /// Proposed bytes are in the log entry at `index`.
    pub fn note_entry(&self, index: u64, bytes: u64) {
        let mut a = self.accounts();
        a.pending = a.pending.saturating_sub(bytes);
        *a.entries.entry(index).or_default() += bytes;
        while a.entries.len() > ENTRIES_REMEMBERED {
            a.entries.pop_first();
        }
    }

    /// Accepted or proposed bytes that will not be in the log.
    pub fn note_dropped(&self, bytes: u64) {
        let mut a = self.accounts();
        a.pending = a.pending.saturating_sub(bytes);
    }

    /// Record bytes a node that had applied up to `applied` has not written yet.
    fn unwritten(&self, applied: u64) -> u64 {
        let a = self.accounts();
        a.entries
            .range(applied.saturating_add(1)..)
            .map(|(_, b)| *b)
            .sum::<u64>()
            .saturating_add(a.pending)
    }

    /// Free space measured when the node had applied up to `applied`, less what it has not
    /// written yet.
    fn estimate(&self, free: u64, applied: u64) -> u64 {
        free.saturating_sub(
            self.unwritten(applied)
                .saturating_mul(BYTES_PER_RECORD_BYTE),
        )
    }

    /// Records a measurement of this node's disk, taken when it had applied up to `applied`;
    /// logs when the alarm changes.
    pub fn update(&self, name: &str, free: u64, reserve: u64, applied: u64) {
        let mut own = self.own();
        let raised = match &own.alarm {
            None => free < reserve,
            // Hysteresis: clear only with a quarter of the reserve to spare.
            Some(_) => free < reserve + reserve / 4,
        };
        let alarm = raised.then(|| {
            format!(
                "{name}'s disk has {} free, below the reserve of {}",
                mib(free),
                mib(reserve)
            )
        });
        match (&own.alarm, &alarm) {
            (None, Some(why)) => tracing::warn!(
                "disk space alarm: {why}; writes are refused until space is freed (reads and \
                 elections go on)"
            ),
            (Some(_), None) => {
                tracing::info!(free = %mib(free), "disk space alarm cleared: writes resume")
            }
            _ => {}
        }
        *own = Measurement {
            free,
            reserve,
            alarm,
            applied,
            name: name.to_string(),
        };
    }

    fn record_peer(&self, id: NodeId, name: String, answer: &pb::HealthResponse) {
        self.peers().insert(
            id,
            PeerAnswer {
                at: tokio::time::Instant::now(),
                name,
                free: answer.disk_free_bytes,
                reserve: answer.disk_reserve_bytes,
                alarm: (!answer.disk_alarm.is_empty()).then(|| answer.disk_alarm.clone()),
                applied: answer.applied_index,
            },
        );
    }

    /// Why writes must be refused now, if they must: this node's alarm or estimate, or any of
    /// `voters'` recent answers or estimates.
    pub fn write_refusal(&self, voters: &[NodeId]) -> Option<String> {
        let own = self.own().clone();
        let mut reasons: Vec<String> = own.alarm.iter().cloned().collect();
        let estimated = |name: &str, free: u64, reserve: u64, applied: u64| {
            let left = self.estimate(free, applied);
            (reserve > 0 && left < reserve).then(|| {
                format!(
                    "{name}'s disk would have about {} free once it has written the records \
                     accepted so far, below the reserve of {}",
                    mib(left),
                    mib(reserve)
                )
            })
        };
        if own.alarm.is_none() {
            reasons.extend(estimated("this node", own.free, own.reserve, own.applied));
        }
        for (id, answer) in self.peers().iter() {
            if voters.contains(id) && answer.at.elapsed() <= PEER_ANSWER_TTL {
                match &answer.alarm {
                    Some(a) => reasons.push(format!("{a} (node {id}, {})", answer.name)),
                    None => reasons.extend(
                        estimated(&answer.name, answer.free, answer.reserve, answer.applied)
                            .map(|r| format!("{r} (node {id})")),
                    ),
                }
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// This node's `Health` answer.
pub fn health(alarm: &SpaceAlarm) -> pb::HealthResponse {
    let m = alarm.measurement();
    pb::HealthResponse {
        disk_free_bytes: m.free,
        disk_reserve_bytes: m.reserve,
        disk_alarm: m.alarm.unwrap_or_default(),
        applied_index: m.applied,
    }
}

/// What the space watch needs of the node, and nothing more.
pub struct SpaceWatch {
    pub id: NodeId,
    /// This node's name, as the alarm reports it.
    pub name: String,
    /// How often the disk is measured (`storage.disk_check_ms`).
    pub disk_check_ms: u64,
    /// The configured reserve (`storage.disk_reserve_bytes`; 0: derived from the disk's size).
    pub disk_reserve_bytes: u64,
    /// For what is applied, and the members to ask.
    pub raft: Raft,
    pub connector: ClusterConnector,
    /// Where the free space is measured.
    pub disk: Arc<dyn DiskSpace>,
    /// The alarm updated with this node's and the others' measurements.
    pub alarm: Arc<SpaceAlarm>,
    /// Whether this node leads with a quorum (then it asks the others).
    pub is_leader: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for SpaceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceWatch")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Measures this node's disk, and (as leader) asks the others, until shutdown.
pub async fn run(watcher: SpaceWatch, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(watcher.disk_check_ms.max(10));
    loop {
        // Read before measuring: what is applied meanwhile is counted as unwritten.
        let applied = watcher
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        match watcher.disk.measure() {
            Ok((free, total)) => {
                let reserve = reserve_for(watcher.disk_reserve_bytes, total);
                watcher.alarm.update(&watcher.name, free, reserve, applied);
            }
            Err(e) => tracing::warn!(error = %e, "cannot measure the data directory's free space"),
        }
        if (watcher.is_leader)() {
            ask_peers(&watcher).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn ask_peers(watcher: &SpaceWatch) {
    let membership = watcher.raft.metrics().borrow().membership_config.clone();
    let asks = membership
        .membership()
        .nodes()
        .filter(|(id, _)| **id != watcher.id)
        .map(|(id, info)| {
            let (id, name, addr) = (*id, info.name.clone(), info.raft_addr.clone());
            let connector = watcher.connector.clone();
            async move {
                let mut client = connector.client(&addr, id).ok()?;
                let answer =
                    tokio::time::timeout(PEER_TIMEOUT, client.health(pb::HealthRequest {}))
                        .await
                        .ok()?
                        .ok()?
                        .into_inner();
                Some((id, name, answer))
            }
        });
    for (id, name, answer) in futures::future::join_all(asks).await.into_iter().flatten() {
        watcher.alarm.record_peer(id, name, &answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_rises_below_the_reserve_and_clears_with_room_to_spare() {
        let a = SpaceAlarm::default();
        a.update("n1", 10 << 20, 4 << 20, 0);
        assert_eq!(a.write_refusal(&[]), None);
        a.update("n1", 3 << 20, 4 << 20, 0);
        let why = a.write_refusal(&[]).expect("refused");
        assert!(
            why.contains("n1's disk has 3.0 MiB free, below the reserve of 4.0 MiB"),
            "{why}"
        );
        // Just above the reserve is not enough to clear it.
        a.update("n1", (4 << 20) + 1, 4 << 20, 0);
        assert!(a.write_refusal(&[]).is_some());
        a.update("n1", 5 << 20, 4 << 20, 0);
        assert_eq!(a.write_refusal(&[]), None);
    }

    #[tokio::test]
    async fn a_voters_alarm_refuses_writes_but_not_a_learners() {
        let a = SpaceAlarm::default();
        a.update("n1", 100 << 20, 4 << 20, 0);
        a.record_peer(2, "n2".into(), &answer(3 << 20, "n2's disk is short", 0));
        assert!(a
            .write_refusal(&[1, 2, 3])
            .is_some_and(|w| w.contains("node 2")));
        assert_eq!(a.write_refusal(&[1, 3]), None);
    }

    #[tokio::test]
    async fn records_a_node_has_not_written_yet_count_against_its_measurement() {
        let a = SpaceAlarm::default();
        a.update("n1", 100 << 20, 4 << 20, 0);
        a.record_peer(2, "n2".into(), &answer(10 << 20, "", 0));
        assert_eq!(a.write_refusal(&[1, 2]), None);
        // 1.5 MiB of records accepted cost about 7.5 MiB on n2: it would be below its reserve.
        let accepted = a.accept(3 << 19);
        let why = a.write_refusal(&[1, 2]).expect("refused ahead of time");
        assert!(
            why.contains("n2's disk would have about 2.5 MiB free"),
            "{why}"
        );
        // Proposed into entry 7: still unwritten by a node that had applied up to 6 ...
        accepted.proposed();
        a.note_entry(7, 3 << 19);
        a.record_peer(2, "n2".into(), &answer(10 << 20, "", 6));
        assert!(a.write_refusal(&[1, 2]).is_some(), "n2 lags behind");
        // ... but written by one that applied it.
        a.record_peer(2, "n2".into(), &answer(10 << 20, "", 7));
        assert_eq!(a.write_refusal(&[1, 2]), None);
    }

    #[test]
    fn refused_and_dropped_bytes_stop_counting() {
        let a = SpaceAlarm::default();
        a.update("n1", 10 << 20, 4 << 20, 0);
        drop(a.accept(3 << 20));
        assert_eq!(a.write_refusal(&[1]), None, "refused before proposing");
        a.accept(3 << 20).proposed();
        assert!(a.write_refusal(&[1]).is_some());
        a.note_dropped(3 << 20);
        assert_eq!(a.write_refusal(&[1]), None, "the proposal failed");
    }

    fn answer(free: u64, alarm: &str, applied: u64) -> pb::HealthResponse {
        pb::HealthResponse {
            disk_free_bytes: free,
            disk_reserve_bytes: 4 << 20,
            disk_alarm: alarm.into(),
            applied_index: applied,
        }
    }

    #[test]
    fn the_default_reserve_is_five_percent_within_bounds() {
        assert_eq!(reserve_for(0, 24 << 20), RESERVE_MIN);
        assert_eq!(reserve_for(0, 100 << 30), RESERVE_MAX);
        assert_eq!(reserve_for(0, 1 << 30), (1 << 30) / 20);
        assert_eq!(reserve_for(123, 1 << 30), 123);
    }
}
