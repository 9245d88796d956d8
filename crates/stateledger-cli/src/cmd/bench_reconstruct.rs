//! `stateledger bench reconstruct`: the cost of reconstructing one system's state — serving the
//! history with proofs, building and checking the state proof, and verifying it offline — in
//! ledgers of different sizes. The ledger is built by driving the real state machine on sled
//! (no network), with every record validly signed; only the reconstruction is timed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::state::StateProof;
use stateledger_core::trust::TrustPolicy;
use stateledger_node::ledger::Ledger;
use stateledger_node::raft::{Command, Entry, NodeInfo, SubmittedRecord, TypeConfig};
use stateledger_node::store::sled_kv::SledKv;
use stateledger_node::store::Store;

use super::bench::ReconstructArgs;

const SYSTEM: &str = "orders-service";
const OTHER_SYSTEMS: u64 = 1000;
const BATCH: u64 = 4096;

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

fn body(i: u64, seq: u64) -> Body {
    match (i, seq) {
        (_, 1) => Body::Code(pb::CodeState {
            repo: "github.com/acme/orders-service".into(),
            commit: "a".repeat(40),
            ..Default::default()
        }),
        (_, 2) => Body::Config(pb::ConfigSnapshot {
            version: "cfg-1".into(),
            complete: true,
            entries: vec![pb::ConfigEntry {
                key: "file:/etc/app.yaml".into(),
                source: "file".into(),
                digest: format!("sha256:{}", "c".repeat(64)),
                ..Default::default()
            }],
        }),
        (_, 3) => Body::Environment(pb::EnvironmentState {
            os: "linux".into(),
            arch: "x86_64".into(),
            ..Default::default()
        }),
        _ => Body::Mutation(pb::Mutation {
            kind: "order_created".into(),
            id: format!("evt-{i}"),
            source: "kafka:orders/0".into(),
            sequence: seq - 3,
            payload_digest: format!("sha256:{i:064x}"),
            ..Default::default()
        }),
    }
}

/// Signs the records of leaves `0..n` (in parallel), the target system's spread evenly.
fn records(
    n: u64,
    system_records: u64,
    writer: &NoteSigner,
) -> anyhow::Result<Vec<SubmittedRecord>> {
    let every = (n / system_records.max(1)).max(1);
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get()) as u64;
    let per = n.div_ceil(threads);
    let mut handles = Vec::new();
    for t in 0..threads {
        let writer = writer.clone();
        handles.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<SubmittedRecord>> {
                let mut out = Vec::new();
                for i in (t * per)..((t + 1) * per).min(n) {
                    let (system, seq) = if i % every == 0 && i / every < system_records {
                        (SYSTEM.to_string(), i / every + 1)
                    } else {
                        (format!("system-{}", i % OTHER_SYSTEMS), i + 1000)
                    };
                    let record = pb::Record {
                        system,
                        scope: "prod".into(),
                        observed_at_unix_nanos: 1_700_000_000_000_000_000 + i,
                        body: Some(body(i, seq)),
                    };
                    let signed = CheckedRecord::sign(record, writer.signing_key())?;
                    out.push(SubmittedRecord {
                        record: signed.bytes,
                        writer_key: signed.writer_key.0,
                        signature: signed.signature.to_vec(),
                    });
                }
                Ok(out)
            },
        ));
    }
    let mut all = Vec::with_capacity(n as usize);
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
        );
    }
    Ok(all)
}

pub fn run(args: ReconstructArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let node = NoteSigner::from_seed("node-1", &rand::random::<[u8; 32]>())?;
    let admin = NoteSigner::from_seed("admin", &rand::random::<[u8; 32]>())?;
    let writer = NoteSigner::from_seed("writer", &rand::random::<[u8; 32]>())?;
    let policy = TrustPolicy::new("stateledger.bench/reconstruct", 1, vec![node.verifier()])?;
    crate::bench_say!(
        "reconstruction of one system ({} records) with state proof, sled on disk",
        args.system_records
    )?;
    let mut ledgers = Vec::new();
    for &n in &args.ledgers {
        let dir = root.join(format!("ledger-{n}"));
        let kv = SledKv::open(&dir).map_err(anyhow::Error::msg)?.kv;
        let ledger = Ledger::open(Store::new(Arc::new(kv)), false).map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        let mut index = 1;
        let info = NodeInfo {
            name: "node-1".into(),
            raft_addr: "127.0.0.1:1".into(),
            public_addr: "127.0.0.1:2".into(),
            checkpoint_key: node.verifier().to_text(),
        };
        let membership =
            Membership::new(vec![BTreeSet::from([1u64])], BTreeMap::from([(1u64, info)]));
        let grant = |system: String| -> anyhow::Result<SubmittedRecord> {
            let signed = CheckedRecord::sign(
                pb::Record {
                    system,
                    scope: String::new(),
                    observed_at_unix_nanos: 1,
                    body: Some(Body::Policy(pb::Policy {
                        change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                            writer_key: writer.verifier().key.to_bytes().to_vec(),
                            writer_name: "writer".into(),
                        })),
                    })),
                },
                admin.signing_key(),
            )?;
            Ok(SubmittedRecord {
                record: signed.bytes,
                writer_key: signed.writer_key.0,
                signature: signed.signature.to_vec(),
            })
        };
        let mut grants = vec![grant(SYSTEM.to_string())?];
        for s in 0..OTHER_SYSTEMS {
            grants.push(grant(format!("system-{s}"))?);
        }
        let setup = vec![
            entry(index, EntryPayload::Membership(membership)),
            entry(
                index + 1,
                EntryPayload::Normal(Command::Genesis {
                    origin: policy.origin.clone(),
                    admin_keys: vec![admin.verifier().key.to_bytes()],
                }),
            ),
            entry(
                index + 2,
                EntryPayload::Normal(Command::Append {
                    groups: vec![grants],
                    proposed_time: 1_700_000_000_000_000_000,
                }),
            ),
        ];
        index += 3;
        ledger.apply_entries(setup).map_err(anyhow::Error::msg)?;
        let signed = records(n, args.system_records, &writer)?;
        let signing = started.elapsed();
        let mut time = 1_700_000_000_000_000_000u64;
        for chunk in signed.chunks(BATCH as usize) {
            time += 1_000_000;
            let e = entry(
                index,
                EntryPayload::Normal(Command::Append {
                    groups: chunk.iter().map(|r| vec![r.clone()]).collect(),
                    proposed_time: time,
                }),
            );
            index += 1;
            ledger.apply_entries(vec![e]).map_err(anyhow::Error::msg)?;
        }
        let cp = ledger
            .candidate_checkpoint()
            .context("no checkpoint candidate")?;
        let note = Note::sign(&cp.to_text(), &[&node]).to_text();
        ledger
            .apply_entries(vec![entry(
                index,
                EntryPayload::Normal(Command::PublishCheckpoint { note }),
            )])
            .map_err(anyhow::Error::msg)?;
        let built = started.elapsed();
        crate::bench_say!(
            "ledger of {} leaves built in {:.1} s (signing {:.1} s)",
            ledger.current_progress().size,
            built.as_secs_f64(),
            signing.as_secs_f64()
        )?;

        let at = cp.time.0;
        let t0 = Instant::now();
        let history = ledger
            .system_history(SYSTEM, at)
            .map_err(anyhow::Error::msg)?;
        let serve = t0.elapsed();
        let t1 = Instant::now();
        let leaves: Vec<stateledger_core::state::ProvenLeaf> = history
            .leaves
            .iter()
            .map(|(bytes, proof)| {
                let leaf =
                    stateledger_core::leaf::Leaf::decode(bytes).map_err(anyhow::Error::msg)?;
                Ok(stateledger_core::state::ProvenLeaf {
                    leaf_index: leaf.index.0,
                    leaf: bytes.clone(),
                    inclusion_proof: proof.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let boundary = match (history.next, history.head_proof) {
            (Some((bytes, proof)), _) => {
                let leaf =
                    stateledger_core::leaf::Leaf::decode(&bytes).map_err(anyhow::Error::msg)?;
                stateledger_core::state::Boundary::Next(stateledger_core::state::ProvenLeaf {
                    leaf_index: leaf.index.0,
                    leaf: bytes,
                    inclusion_proof: proof,
                })
            }
            (None, Some(h)) => stateledger_core::state::Boundary::Head(h),
            (None, None) => anyhow::bail!("no boundary"),
        };
        let (proof, summary) = StateProof::build(
            SYSTEM,
            at,
            history.checkpoint.into_text(),
            leaves,
            boundary,
            &policy,
        )?;
        let build = t1.elapsed();
        let json = serde_json::to_vec(&proof)?;
        let t2 = Instant::now();
        let reparsed: StateProof = serde_json::from_slice(&json)?;
        reparsed.verify(&policy)?;
        let offline = t2.elapsed();
        ledgers.push(serde_json::json!({
            "leaves": n,
            "build_seconds": built.as_secs_f64(),
            "signing_seconds": signing.as_secs_f64(),
            "serve_ms": serve.as_secs_f64() * 1e3,
            "build_and_check_ms": build.as_secs_f64() * 1e3,
            "offline_verify_ms": offline.as_secs_f64() * 1e3,
            "total_ms": (serve + build + offline).as_secs_f64() * 1e3,
            "records": summary.state.records,
            "proof_bytes": json.len(),
            "verdict": summary.verdict.result,
        }));
        crate::bench_say!(
            "  {:>9} leaves: serve history {:>7.1} ms, build + check state proof {:>7.1} ms, offline parse + verify {:>7.1} ms, total {:>7.1} ms; {} records, proof {:.2} MB, verdict {}",
            n,
            serve.as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3,
            offline.as_secs_f64() * 1e3,
            (serve + build + offline).as_secs_f64() * 1e3,
            summary.state.records,
            json.len() as f64 / 1e6,
            summary.verdict.result
        )?;
    }
    if args.output.is_json() {
        super::output::json(&serde_json::json!({
            "system_records": args.system_records,
            "ledgers": ledgers,
        }))?;
    }
    Ok(())
}
