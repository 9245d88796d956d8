//! The client workload: clients submitting signed records (and retrying uncertain submissions
//! with the same bytes), asking any node for receipts, checkpoints and consistency proofs and
//! verifying every answer offline; an operator changing membership during load; and the
//! liveness probe. Everything a client learns goes into the [`History`] oracle.
//!
//! [`History`]: crate::history::History

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use stateledger_core::hash::Hash;
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::trust::TrustPolicy;
use tokio::sync::mpsc;
use tonic::Code;

use crate::client::{bounded, AdminConn, Conn, SubmitOutcome, Writer};
use crate::history::{Ack, DataLossReport, SharedHistory};
use crate::invariants::{acknowledged_records, served_proofs_verify};
use crate::trace::Trace;

/// The systems records are about, and which writer may write which.
pub const SYSTEMS: [&str; 3] = ["orders", "billing", "inventory"];
const WRITER_SYSTEMS: [&[usize]; 2] = [&[0, 1], &[1, 2]];
/// Uncertain submissions a client keeps for retrying.
const UNCERTAIN_MAX: usize = 32;

pub fn writer_signer(i: usize) -> NoteSigner {
    NoteSigner::from_seed(&format!("writer-{i}"), &[0xb0 + i as u8; 32]).expect("valid key name")
}

/// What every workload task shares.
#[derive(Clone, Debug)]
pub struct Shared {
    pub history: SharedHistory,
    pub trace: Trace,
    pub policy: TrustPolicy,
    pub public_addrs: Vec<String>,
    /// Set when the safety phase ends: clients stop.
    pub stop: Arc<AtomicBool>,
    /// Set once the grants are acknowledged: clients may write.
    pub granted: Arc<AtomicBool>,
    /// Now and then a client sends a record with a broken signature, which the leader must
    /// refuse (set only for the `unsigned-record-accepted` switch, whose leader does not: the
    /// draws it takes would change every other run).
    pub forge_signatures: bool,
}

/// Records are scoped by client so no two clients ever build the same record bytes.
fn record(system: &str, client: usize, seq: u64, body: Body) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: format!("sim-client-{client}"),
        observed_at_unix_nanos: 1_700_000_000_000_000_000 + seq,
        body: Some(body),
    }
}

fn mutation(system: &str, client: usize, seq: u64) -> pb::Record {
    record(
        system,
        client,
        seq,
        Body::Mutation(pb::Mutation {
            kind: "event".into(),
            id: format!("c{client}-{seq}"),
            source: format!("sim:client-{client}"),
            sequence: seq,
            ..Default::default()
        }),
    )
}

fn sign(record: pb::Record, key: &NoteSigner) -> pb::SignedRecord {
    CheckedRecord::sign(record, key.signing_key())
        .expect("the workload builds valid records")
        .to_proto()
}

fn record_hash(r: &pb::SignedRecord) -> [u8; 32] {
    *blake3::hash(&r.record).as_bytes()
}

/// What a client knows after one submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// Every record is acknowledged at an index.
    Acked,
    /// Definitely not appended.
    Refused,
    /// Maybe appended, maybe not: retry with the same bytes.
    Uncertain,
}

/// Sends one request and files what came of it.
async fn submit(shared: &Shared, writer: &Writer, who: &str, batch: &[pb::SignedRecord]) -> Known {
    let hashes: Vec<[u8; 32]> = batch.iter().map(record_hash).collect();
    {
        let mut h = shared.history.lock();
        h.submitted.extend(hashes.iter().copied());
    }
    let outcome = writer.submit(batch.to_vec()).await;
    let at = shared.trace.elapsed();
    let mut h = shared.history.lock();
    match outcome {
        SubmitOutcome::Appended(results) => {
            h.count("submit appended");
            shared.trace.log(format!(
                "{who}: appended {} records at {:?}",
                results.len(),
                results.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            ));
            for (record_hash, (index, lh)) in hashes.into_iter().zip(results) {
                h.ack(
                    index,
                    Ack {
                        record_hash,
                        leaf_hash: Some(Hash(lh)),
                        client: who.to_string(),
                    },
                    at,
                );
            }
            Known::Acked
        }
        SubmitOutcome::AlreadyThere(indexes) => {
            h.count("submit already there");
            shared
                .trace
                .log(format!("{who}: already there at {indexes:?}"));
            for (record_hash, index) in hashes.into_iter().zip(indexes) {
                h.ack(
                    index,
                    Ack {
                        record_hash,
                        leaf_hash: None,
                        client: who.to_string(),
                    },
                    at,
                );
            }
            Known::Acked
        }
        SubmitOutcome::Refused { code, message } => {
            h.count(format!("submit refused {code:?}"));
            shared
                .trace
                .log(format!("{who}: refused {code:?}: {message}"));
            Known::Refused
        }
        SubmitOutcome::Uncertain { code, message } => {
            h.count(format!("submit uncertain {code:?}"));
            shared
                .trace
                .log(format!("{who}: uncertain {code:?}: {message}"));
            Known::Uncertain
        }
    }
}

/// The admin grants the writers their systems (one all-or-nothing request), retrying until it
/// is acknowledged.
pub async fn grant_writers(shared: Shared) {
    let admin = crate::cluster::admin_signer();
    let mut grants = Vec::new();
    for (w, systems) in WRITER_SYSTEMS.iter().enumerate() {
        let writer = writer_signer(w);
        for s in *systems {
            let body = Body::Policy(pb::Policy {
                change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                    writer_key: writer.verifier().key.to_bytes().to_vec(),
                    writer_name: writer.name.clone(),
                })),
            });
            grants.push(sign(record(SYSTEMS[*s], 99, w as u64, body), &admin));
        }
    }
    let writer = Writer::new(shared.public_addrs.clone(), shared.policy.clone());
    while !shared.stop.load(Ordering::Relaxed) {
        // A refusal here would be a bug the client cannot see past (the admin key is named at
        // genesis); it is in the trace, and the grant is retried like an uncertain one.
        if submit(&shared, &writer, "admin", &grants).await == Known::Acked {
            shared.granted.store(true, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client: a random mix of writes, retries and verified reads until the safety phase ends.
pub async fn client(shared: Shared, id: usize) {
    let who = format!("client-{id}");
    let mut conn = Conn::new(shared.public_addrs.clone());
    let writer = Writer::new(shared.public_addrs.clone(), shared.policy.clone());
    let mut seq = 0u64;
    let mut uncertain: Vec<Vec<pb::SignedRecord>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let pause = thread_rng().gen_range(0..40);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if !shared.granted.load(Ordering::Relaxed) {
            continue;
        }
        let op = thread_rng().gen_range(0..100u32);
        match op {
            0..=62 => {
                let retry = op >= 55 && !uncertain.is_empty();
                let mut batch = if retry {
                    let i = thread_rng().gen_range(0..uncertain.len());
                    uncertain.remove(i)
                } else {
                    let w = thread_rng().gen_range(0..WRITER_SYSTEMS.len());
                    let systems = WRITER_SYSTEMS[w];
                    let system = SYSTEMS[systems[thread_rng().gen_range(0..systems.len())]];
                    let writer = writer_signer(w);
                    let n = thread_rng().gen_range(1..=3);
                    (0..n)
                        .map(|_| {
                            seq += 1;
                            sign(mutation(system, id, seq), &writer)
                        })
                        .collect()
                };
                if !retry && shared.forge_signatures && thread_rng().gen_bool(0.1) {
                    forge(&shared, &who, &mut batch);
                }
                if submit(&shared, &writer, &who, &batch).await == Known::Uncertain {
                    uncertain.push(batch);
                    if uncertain.len() > UNCERTAIN_MAX {
                        uncertain.remove(0);
                    }
                }
            }
            63..=77 => receipt(&shared, &mut conn, &who).await,
            78..=87 => checkpoint(&shared, &mut conn).await,
            _ => consistency(&shared, &mut conn).await,
        }
    }
}

/// Breaks the signature of one record of `batch` (one bit flipped) and files its record as
/// forged: the leader must refuse the request, and no node may ever store the record.
fn forge(shared: &Shared, who: &str, batch: &mut [pb::SignedRecord]) {
    let i = thread_rng().gen_range(0..batch.len());
    let bit = thread_rng().gen_range(0..batch[i].signature.len() * 8);
    batch[i].signature[bit / 8] ^= 1 << (bit % 8);
    let hash = record_hash(&batch[i]);
    shared.history.lock().forged.insert(hash);
    shared.trace.log(format!(
        "{who}: sends record {} with a broken signature",
        hex::encode(&hash[..8])
    ));
}

fn note_error(shared: &Shared, what: &str, addr: &str, status: &tonic::Status) {
    let mut h = shared.history.lock();
    h.count(format!("{what} {:?}", status.code()));
    if status.code() == Code::DataLoss {
        h.data_loss.push(DataLossReport {
            addr: addr.to_string(),
            message: status.message().to_string(),
        });
    }
}

async fn receipt(shared: &Shared, conn: &mut Conn, who: &str) {
    let pick = {
        let h = shared.history.lock();
        if h.acked.is_empty() {
            return;
        }
        let n = thread_rng().gen_range(0..h.acked.len());
        h.acked.iter().nth(n).map(|(i, a)| (*i, a.record_hash))
    };
    let Some((index, expected)) = pick else {
        return;
    };
    let addr = conn.random_addr();
    let mut c = conn.client(&addr);
    let request = pb::GetReceiptRequest {
        leaf_index: index,
        wait_ms: 1000,
    };
    match bounded(c.get_receipt(request)).await {
        Ok(r) => {
            let at = shared.trace.elapsed();
            let mut h = shared.history.lock();
            match served_proofs_verify::receipt(&shared.policy, index, &r, &addr) {
                Ok((record, cp)) => {
                    h.count("receipt verified");
                    if record != expected {
                        h.violate(
                            acknowledged_records::NAME,
                            format!(
                                "{addr} proved leaf {index} holds record {} but {who} was told record {} is there",
                                hex::encode(&record[..8]),
                                hex::encode(&expected[..8])
                            ),
                            at,
                        );
                    }
                    h.saw_checkpoint(cp);
                }
                Err(e) => h.violate(served_proofs_verify::NAME, e, at),
            }
        }
        Err(status) => note_error(shared, "receipt", &addr, &status),
    }
}

async fn checkpoint(shared: &Shared, conn: &mut Conn) {
    let addr = conn.random_addr();
    let mut c = conn.client(&addr);
    let request = pb::GetCheckpointRequest {
        min_size: 0,
        covering_time: 0,
        wait_ms: 500,
        at_size: 0,
    };
    match bounded(c.get_checkpoint(request)).await {
        Ok(r) => {
            let at = shared.trace.elapsed();
            let mut h = shared.history.lock();
            match served_proofs_verify::checkpoint(&shared.policy, &r.checkpoint, &addr) {
                Ok(cp) => {
                    h.count("checkpoint verified");
                    h.saw_checkpoint(cp);
                }
                Err(e) => h.violate(served_proofs_verify::NAME, e, at),
            }
        }
        Err(status) => note_error(shared, "checkpoint", &addr, &status),
    }
}

async fn consistency(shared: &Shared, conn: &mut Conn) {
    let pair = {
        let h = shared.history.lock();
        if h.checkpoints.len() < 2 {
            return;
        }
        let a = &h.checkpoints[thread_rng().gen_range(0..h.checkpoints.len())];
        let b = &h.checkpoints[thread_rng().gen_range(0..h.checkpoints.len())];
        if a.size <= b.size {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        }
    };
    let (old, new) = pair;
    let addr = conn.random_addr();
    let mut c = conn.client(&addr);
    let request = pb::GetConsistencyProofRequest {
        old_size: old.size,
        new_size: new.size,
    };
    match bounded(c.get_consistency_proof(request)).await {
        Ok(r) => {
            let at = shared.trace.elapsed();
            let mut h = shared.history.lock();
            match served_proofs_verify::consistency(&old, &new, &r, &addr) {
                Ok(()) => h.count("consistency verified"),
                Err(e) => h.violate(served_proofs_verify::NAME, e, at),
            }
        }
        Err(status) => note_error(shared, "consistency", &addr, &status),
    }
}

/// The spare server, as the operator adds it.
#[derive(Clone, Debug)]
pub struct NewMember {
    pub id: u64,
    pub name: String,
    pub raft_addr: String,
    pub public_addr: String,
    pub checkpoint_key: String,
}

/// The operator: add the spare as a learner, promote it, remove `remove` (repeating Remove until
/// the node is no member at all), then report `remove` so the harness decommissions it. Each step
/// is retried until it succeeds or `give_up` is set.
pub async fn change_membership(
    trace: Trace,
    cluster_addrs: Vec<String>,
    spare: NewMember,
    remove: u64,
    give_up: Arc<AtomicBool>,
    removed: mpsc::UnboundedSender<u64>,
) {
    let mut admin = AdminConn::new(cluster_addrs);
    let retry = || tokio::time::sleep(Duration::from_millis(300));
    loop {
        if give_up.load(Ordering::Relaxed) {
            return;
        }
        let request = pb::AddLearnerRequest {
            node_id: spare.id,
            name: spare.name.clone(),
            raft_addr: spare.raft_addr.clone(),
            public_addr: spare.public_addr.clone(),
            checkpoint_key: spare.checkpoint_key.clone(),
        };
        match admin
            .call(Duration::from_secs(10), |mut c| async move {
                c.add_learner(request).await
            })
            .await
        {
            Ok(r) => {
                trace.log(format!(
                    "operator: add learner {}: {}",
                    spare.name, r.message
                ));
                break;
            }
            Err(s) => trace.log(format!(
                "operator: add learner: {:?} {}",
                s.code(),
                s.message()
            )),
        }
        retry().await;
    }
    loop {
        if give_up.load(Ordering::Relaxed) {
            return;
        }
        let request = pb::MemberRequest { node_id: spare.id };
        match admin
            .call(Duration::from_secs(5), |mut c| async move {
                c.promote(request).await
            })
            .await
        {
            Ok(r) => {
                trace.log(format!("operator: promote {}: {}", spare.name, r.message));
                break;
            }
            Err(s) => trace.log(format!("operator: promote: {:?} {}", s.code(), s.message())),
        }
        retry().await;
    }
    loop {
        if give_up.load(Ordering::Relaxed) {
            return;
        }
        let request = pb::MemberRequest { node_id: remove };
        match admin
            .call(Duration::from_secs(5), |mut c| async move {
                c.remove(request).await
            })
            .await
        {
            Ok(r) => trace.log(format!("operator: remove node-{remove}: {}", r.message)),
            Err(s) if s.code() == Code::NotFound => {
                trace.log(format!("operator: node-{remove} is no member any more"));
                let _ = removed.send(remove);
                return;
            }
            Err(s) => trace.log(format!("operator: remove: {:?} {}", s.code(), s.message())),
        }
        retry().await;
    }
}

/// The liveness probe: one new record, submitted until it is acknowledged (the liveness bound
/// decides how long that may take). Returns its leaf index and record hash.
pub async fn probe(shared: Shared) -> Option<(u64, [u8; 32])> {
    let writer = writer_signer(0);
    let batch = vec![sign(mutation(SYSTEMS[0], 98, 1), &writer)];
    let hash = record_hash(&batch[0]);
    let writer = Writer::new(shared.public_addrs.clone(), shared.policy.clone());
    loop {
        if submit(&shared, &writer, "probe", &batch).await == Known::Acked {
            let h = shared.history.lock();
            return h.acked_by_record.get(&hash).map(|i| (*i, hash));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
