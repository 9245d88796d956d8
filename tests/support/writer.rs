//! A background writer: submits one record at a time through the client library until stopped,
//! and remembers every acknowledged record (its leaf index, leaf hash and bytes) — the oracle for
//! "no acknowledged record is lost".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stateledger_client::LedgerClient;
use stateledger_core::note::NoteSigner;

use super::cluster::TestCluster;
use super::records;

/// A record the cluster acknowledged.
#[derive(Clone, Debug)]
pub struct Ack {
    pub index: u64,
    pub leaf_hash: [u8; 32],
    pub record: Vec<u8>,
    pub at: Instant,
}

/// A submission that failed (it may or may not have been appended; it was not acknowledged).
#[derive(Clone, Debug)]
pub struct Failure {
    pub at: Instant,
    pub error: String,
}

/// What a writer did.
#[derive(Debug, Default)]
pub struct WriterLog {
    pub acked: Vec<Ack>,
    pub failures: Vec<Failure>,
}

/// See the module comment.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing records of `system` signed by `key` (which must be granted), with ids
    /// `<name>-<n>`, pausing `pace` between submissions.
    pub fn spawn(
        client: LedgerClient,
        key: NoteSigner,
        system: &str,
        name: &str,
        pace: Duration,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let (system, name) = (system.to_string(), name.to_string());
        let task = tokio::spawn({
            let (stop, log) = (stop.clone(), log.clone());
            async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let record = records::signed(
                        records::mutation(&system, &format!("{name}-{n}"), n),
                        &key,
                    );
                    let result = client.submit(std::slice::from_ref(&record)).await;
                    let at = Instant::now();
                    {
                        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                        match result {
                            Ok(submitted) => log.acked.push(Ack {
                                index: submitted[0].index,
                                leaf_hash: submitted[0].leaf_hash,
                                record: record.bytes.clone(),
                                at,
                            }),
                            Err(e) => log.failures.push(Failure {
                                at,
                                error: e.to_string(),
                            }),
                        }
                    }
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                }
            }
        });
        Writer { stop, log, task }
    }

    /// Acknowledged records so far.
    pub fn acked(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked
            .len()
    }

    /// Acknowledged records after `t`.
    pub fn acked_after(&self, t: Instant) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked
            .iter()
            .filter(|a| a.at > t)
            .count()
    }

    /// The first acknowledgement after `t`.
    pub fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acked
            .iter()
            .map(|a| a.at)
            .find(|at| *at > t)
    }

    /// Waits until at least `count` records were acknowledged after `t`.
    pub async fn wait_acked_after(&self, t: Instant, count: usize, timeout: Duration) {
        super::wait::until(&format!("{count} acknowledged writes"), timeout, || async {
            let n = self.acked_after(t);
            if n >= count {
                Ok(())
            } else {
                let last = self
                    .log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failures
                    .last()
                    .map(|f| f.error.clone())
                    .unwrap_or_default();
                Err(format!("{n} acknowledged; last failure: {last}"))
            }
        })
        .await;
    }

    /// Stops after the submission in flight and returns what the writer did.
    pub async fn stop(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer task does not panic");
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Checks that node `id` holds every acknowledged record at its acknowledged leaf index with
/// the acknowledged leaf hash, and that a receipt for each verifies against the trust policy
/// (through `client`, which also checks every checkpoint it sees for consistency with the
/// previous ones).
pub async fn assert_acks_present(
    cluster: &TestCluster,
    id: u64,
    client: &LedgerClient,
    acks: &[Ack],
) {
    for ack in acks {
        let leaf = cluster.entry(id, ack.index).await.unwrap_or_else(|e| {
            panic!(
                "node {id} cannot serve acknowledged leaf {}: {:?} {}",
                ack.index,
                e.code(),
                e.message()
            )
        });
        assert_eq!(
            leaf.leaf_hash().0,
            ack.leaf_hash,
            "node {id}: leaf {} is not the acknowledged leaf",
            ack.index
        );
        assert_eq!(
            leaf.record, ack.record,
            "node {id}: leaf {} holds another record",
            ack.index
        );
        let (_, summary) = client
            .receipt(ack.index, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("no verified receipt for leaf {}: {e}", ack.index));
        assert_eq!(summary.leaf_hash.0, ack.leaf_hash);
    }
}
