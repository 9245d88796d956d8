//! Applying many Raft entries in one call — what a follower does when it catches up — must give
//! exactly what applying them one at a time gives. In particular a checkpoint published in the
//! same apply as the leaves it covers must be checked against their tree nodes, which that
//! apply has computed but not yet written (found by the simulation, seed 1).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_node::ledger::Ledger;
use stateledger_node::raft::{
    Command, CommandResponse, Entry, GroupOutcome, NodeInfo, SubmittedRecord, TypeConfig,
};
use stateledger_node::store::{MemKv, Store};

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

fn submitted(record: pb::Record, key: &NoteSigner) -> SubmittedRecord {
    let signed = CheckedRecord::sign(record, key.signing_key()).expect("valid record");
    SubmittedRecord {
        record: signed.bytes,
        writer_key: signed.writer_key.0,
        signature: signed.signature.to_vec(),
    }
}

fn record(n: u64, body: Body) -> pb::Record {
    pb::Record {
        system: "orders".into(),
        scope: "test".into(),
        observed_at_unix_nanos: 1_700_000_000_000_000_000 + n,
        body: Some(body),
    }
}

fn mutation(n: u64) -> Body {
    Body::Mutation(pb::Mutation {
        kind: "order_created".into(),
        id: format!("evt-{n}"),
        source: "kafka:orders/0".into(),
        sequence: n,
        ..Default::default()
    })
}

fn append(index: u64, groups: Vec<Vec<SubmittedRecord>>, time: u64) -> Entry {
    entry(
        index,
        EntryPayload::Normal(Command::Append {
            groups,
            proposed_time: time,
        }),
    )
}

fn ledger() -> Arc<Ledger> {
    Ledger::open(Store::new(Arc::new(MemKv::new())), true).expect("empty ledger opens")
}

/// The keys of a one-node test cluster.
struct Keys {
    node: NoteSigner,
    admin: NoteSigner,
    writer: NoteSigner,
}

fn keys() -> Keys {
    Keys {
        node: NoteSigner::from_seed("node-1", &[1; 32]).expect("key"),
        admin: NoteSigner::from_seed("admin", &[2; 32]).expect("key"),
        writer: NoteSigner::from_seed("writer", &[3; 32]).expect("key"),
    }
}

/// Entries 1..=3: the membership, the genesis naming the admin, and the admin's grant to the
/// writer (leaf 0).
fn genesis_entries(k: &Keys) -> Vec<Entry> {
    let info = NodeInfo {
        name: "node-1".into(),
        raft_addr: "n1:1".into(),
        public_addr: "n1:2".into(),
        checkpoint_key: k.node.verifier().to_text(),
    };
    let grant = Body::Policy(pb::Policy {
        change: Some(pb::policy::Change::Grant(pb::WriterGrant {
            writer_key: k.writer.verifier().key.to_bytes().to_vec(),
            writer_name: "writer".into(),
        })),
    });
    vec![
        entry(
            1,
            EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, info)]),
            )),
        ),
        entry(
            2,
            EntryPayload::Normal(Command::Genesis {
                origin: "stateledger.test/apply".into(),
                admin_keys: vec![k.admin.verifier().key.to_bytes()],
            }),
        ),
        append(3, vec![vec![submitted(record(0, grant), &k.admin)]], 1_000),
    ]
}

#[test]
fn a_checkpoint_published_with_its_leaves_in_one_apply_is_accepted() {
    let k = keys();
    let (node, writer) = (&k.node, &k.writer);
    let mut entries = genesis_entries(&k);
    entries.extend([append(
        4,
        vec![vec![
            submitted(record(1, mutation(1)), writer),
            submitted(record(2, mutation(2)), writer),
        ]],
        2_000,
    )]);

    // The checkpoint at size 3, as a leader that applied entries one by one signs it.
    let one_by_one = ledger();
    for e in entries.clone() {
        one_by_one.apply_entries(vec![e]).expect("applies");
    }
    let cp = one_by_one.candidate_checkpoint().expect("genesis happened");
    assert_eq!(cp.size.0, 3);
    let note = Note::sign(&cp.to_text(), &[node]).to_text();
    let later = vec![
        append(
            5,
            vec![vec![submitted(record(3, mutation(3)), writer)]],
            3_000,
        ),
        entry(6, EntryPayload::Normal(Command::PublishCheckpoint { note })),
    ];
    let mut last = None;
    for e in later.clone() {
        last = one_by_one.apply_entries(vec![e]).expect("applies").pop();
    }
    assert_eq!(last, Some(CommandResponse::Published { size: 3 }));

    // A follower catching up applies all six at once: same answer, same ledger.
    let batched = ledger();
    let all: Vec<Entry> = entries.into_iter().chain(later).collect();
    let responses = batched
        .apply_entries(all)
        .expect("a checkpoint over leaves of the same apply is checked, not an error");
    assert_eq!(
        responses.last(),
        Some(&CommandResponse::Published { size: 3 })
    );
    assert_eq!(batched.root(), one_by_one.root());
    assert_eq!(batched.meta(), one_by_one.meta());
    assert_eq!(batched.corruption(), None);
}

/// A retried record whose first copy sits in a block that the same apply filled (so the stored
/// version of that block does not hold it yet) is a duplicate, not a new leaf (found by the
/// simulation, seed 11: the record was stored at leaf 60 and again at leaf 64).
#[test]
fn a_retry_of_a_record_in_a_block_sealed_by_the_same_apply_is_a_duplicate() {
    let k = keys();
    let writer = &k.writer;
    let ledger = ledger();
    ledger
        .apply_entries(
            genesis_entries(&k)
                .into_iter()
                // Leaves 1..=59: the stored block 0 holds 60 leaves after this apply.
                .chain([append(
                    4,
                    vec![(1..=59)
                        .map(|n| submitted(record(n, mutation(n)), writer))
                        .collect()],
                    2_000,
                )])
                .collect(),
        )
        .expect("applies");
    let retried = submitted(record(60, mutation(60)), writer);
    // One apply: leaves 60..=63 fill block 0, then the retry of leaf 60 arrives.
    let responses = ledger
        .apply_entries(vec![
            append(
                5,
                vec![std::iter::once(retried.clone())
                    .chain((61..=63).map(|n| submitted(record(n, mutation(n)), writer)))
                    .collect()],
                3_000,
            ),
            append(6, vec![vec![retried]], 4_000),
        ])
        .expect("applies");
    assert_eq!(
        responses.last(),
        Some(&CommandResponse::Appended(vec![
            GroupOutcome::AllDuplicates(vec![60])
        ]))
    );
    assert_eq!(ledger.meta().size, 64, "nothing was appended twice");
    assert_eq!(ledger.corruption(), None);
}

/// On sled an apply's batch is not atomic: a crash may keep a prefix of its operations (the
/// filled and the open block) without the metadata written last. The ledger must then open at
/// the state before that apply, ignoring the extra leaves, and applying the entry again must
/// give exactly the ledger that never crashed.
#[test]
fn an_apply_cut_by_a_crash_opens_at_the_previous_state_and_replays_to_the_same_ledger() {
    let k = keys();
    let writer = &k.writer;
    let mem = Arc::new(MemKv::new());
    let first = Ledger::open(Store::new(mem.clone()), true).expect("empty ledger opens");
    let uncrashed = ledger();
    let early = append(
        4,
        vec![(1..=50)
            .map(|n| submitted(record(n, mutation(n)), writer))
            .collect()],
        2_000,
    );
    // Leaves 51..=70: fills block 0 and opens block 1 — three operations with the metadata.
    let cut = append(
        5,
        vec![(51..=70)
            .map(|n| submitted(record(n, mutation(n)), writer))
            .collect()],
        3_000,
    );
    for l in [&first, &uncrashed] {
        l.apply_entries(
            genesis_entries(&k)
                .into_iter()
                .chain([early.clone()])
                .collect(),
        )
        .expect("applies");
    }
    let before = first.meta();
    futures::executor::block_on(first.store().sync()).expect("sync");
    first.apply_entries(vec![cut.clone()]).expect("applies");
    uncrashed.apply_entries(vec![cut.clone()]).expect("applies");
    drop(first);
    // The apply's batch is the only unsynced write; the crash keeps its first two operations
    // (the filled block 0 and the open block 1) but not the metadata.
    assert_eq!(mem.unsynced_writes(), 1);
    mem.crash_cutting(0, 2);

    let reopened = Ledger::open(Store::new(mem.clone()), true)
        .expect("leaves beyond the stored size are ignored, not corruption");
    assert_eq!(reopened.meta(), before);
    reopened.apply_entries(vec![cut]).expect("applies again");
    assert_eq!(reopened.root(), uncrashed.root());
    assert_eq!(reopened.meta(), uncrashed.meta());
}

/// Every node checks every record's signature before it applies it (sigcheck.rs): a group the
/// leader proposed with a record no writer signed is refused on every node alike — in the same
/// apply as good groups, which are appended — and kept as evidence naming the leader.
#[test]
fn a_group_with_a_bad_signature_is_refused_at_apply_and_kept_as_evidence() {
    let k = keys();
    let writer = &k.writer;
    let good_a = vec![submitted(record(1, mutation(1)), writer)];
    // Signed by a key that claims to be the granted writer: the signature is someone else's.
    let mut forged = submitted(record(2, mutation(2)), &k.admin);
    forged.writer_key = writer.verifier().key.to_bytes();
    let bad = vec![submitted(record(3, mutation(3)), writer), forged];
    let good_b = vec![submitted(record(4, mutation(4)), writer)];
    let mut entries = genesis_entries(&k);
    entries.push(append(4, vec![good_a, bad.clone(), good_b], 2_000));

    // Two nodes, one applying in one call and one entry by entry: the same decision.
    let together = ledger();
    let responses = together.apply_entries(entries.clone()).expect("applies");
    let one_by_one = ledger();
    for e in entries {
        one_by_one.apply_entries(vec![e]).expect("applies");
    }
    assert_eq!(together.root(), one_by_one.root());
    assert_eq!(together.meta().size, 3, "the grant and the two good groups");

    let CommandResponse::Appended(outcomes) = responses.last().expect("a response") else {
        panic!("append answered {responses:?}");
    };
    assert!(matches!(outcomes[0], GroupOutcome::Appended(_)));
    assert!(matches!(outcomes[2], GroupOutcome::Appended(_)));
    match &outcomes[1] {
        GroupOutcome::Refused {
            position: 1,
            refusal: stateledger_node::raft::Refusal::BadSignature { reason },
        } => assert!(reason.contains("node 1"), "names the leader: {reason}"),
        other => panic!("the forged group gave {other:?}"),
    }

    for l in [&together, &one_by_one] {
        assert_eq!(l.bad_signature_groups(), 1);
        let evidence = l.evidence().expect("evidence reads");
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].log_id.index, 4);
        assert_eq!(evidence[0].group, 1);
        assert_eq!(evidence[0].position, 1);
        assert_eq!(evidence[0].records, bad);
    }

    // The node's checkpoint covers only what verified: a checkpoint over the forged record
    // cannot be one this node computed.
    let cp = together.candidate_checkpoint().expect("genesis happened");
    assert_eq!(cp.size.0, 3);
}

#[test]
fn the_evidence_count_survives_a_restart() {
    let k = keys();
    let mut forged = submitted(record(2, mutation(2)), &k.admin);
    forged.writer_key = k.writer.verifier().key.to_bytes();
    let mut entries = genesis_entries(&k);
    entries.push(append(4, vec![vec![forged]], 2_000));
    let kv = Arc::new(MemKv::new());
    let first = Ledger::open(Store::new(kv.clone()), true).expect("opens");
    first.apply_entries(entries).expect("applies");
    assert_eq!(first.bad_signature_groups(), 1);
    drop(first);
    let again = Ledger::open(Store::new(kv), true).expect("opens again");
    assert_eq!(again.bad_signature_groups(), 1);
}

/// What the apply-time signature check costs per record, by how many records one apply holds
/// (docs/PERFORMANCE.md). Run with
/// `cargo test --release -p stateledger-node --test apply_batches -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run it in release"]
fn signature_check_cost_per_record() {
    let k = keys();
    let all: Vec<SubmittedRecord> = (0..4096)
        .map(|n| submitted(record(n + 1, mutation(n + 1)), &k.writer))
        .collect();
    let verified = stateledger_node::sigcheck::Verified::default();
    for per_apply in [1usize, 4, 16, 64, 256, 1024, 4096] {
        let entries: Vec<Entry> = all
            .chunks(per_apply)
            .take((4096 / per_apply).clamp(1, 256))
            .enumerate()
            .map(|(i, c)| append(i as u64 + 10, vec![c.to_vec()], 0))
            .collect();
        let records: usize = entries.len() * per_apply;
        let started = std::time::Instant::now();
        for e in &entries {
            let bad = stateledger_node::sigcheck::check_entries(std::slice::from_ref(e), &verified);
            assert!(bad.is_empty());
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / records as f64;
        eprintln!("{per_apply:>5} records per apply: {us:>6.1} µs per record");
    }
}
