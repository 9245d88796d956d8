//! Behaviours of the ledger as a whole that its split into jobs must keep: reads under the read
//! lock only, typed refusals carrying their evidence, storage errors that stay storage errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::hash::Hash;
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::record::{pb, Body, CheckedRecord};

use super::admission::{Refusal, Unauthorized};
use super::checkpoints::{CheckpointError, CheckpointMismatch, PublishRefusal, QuorumError};
use super::{keys, CommandRefusal, Ledger};
use crate::raft::{Command, CommandResponse, Entry, GroupOutcome, NodeInfo, SubmittedRecord};
use crate::store::{Batch, MemKv, Store, StoreError, Tree};

const ORIGIN: &str = "stateledger.test/ledger";

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

fn entry(index: u64, payload: EntryPayload<crate::raft::TypeConfig>) -> Entry {
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

fn record(system: &str, n: u64) -> pb::Record {
    pb::Record {
        system: system.into(),
        scope: "test".into(),
        observed_at_unix_nanos: 1_700_000_000_000_000_000 + n,
        body: Some(Body::Mutation(pb::Mutation {
            kind: "order_created".into(),
            id: format!("evt-{n}"),
            source: "kafka:orders/0".into(),
            sequence: n,
            ..Default::default()
        })),
    }
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

fn publish(index: u64, note: String) -> Entry {
    entry(
        index,
        EntryPayload::Normal(Command::PublishCheckpoint { note }),
    )
}

/// A one-node ledger: membership, genesis, the writer's grant (leaf 0), then `leaves` records of
/// system "orders" one group each (leaves 1..), and a checkpoint published at its size. Returns
/// the next log index.
fn ledger(k: &Keys, leaves: u64) -> (Arc<Ledger>, u64) {
    let ledger = Ledger::open(Store::new(Arc::new(MemKv::new())), true).expect("opens");
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
    let mut grant_record = record("orders", 0);
    grant_record.body = Some(grant);
    let groups = (1..=leaves)
        .map(|n| vec![submitted(record("orders", n), &k.writer)])
        .collect();
    ledger
        .apply_entries(vec![
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
                    origin: ORIGIN.into(),
                    admin_keys: vec![k.admin.verifier().key.to_bytes()],
                }),
            ),
            append(3, vec![vec![submitted(grant_record, &k.admin)]], 1_000),
            append(4, groups, 2_000),
        ])
        .expect("applies");
    let cp = ledger.candidate_checkpoint().expect("genesis happened");
    let note = Note::sign(&cp.to_text(), &[&k.node]).to_text();
    let published = ledger
        .apply_entries(vec![publish(5, note)])
        .expect("applies");
    assert_eq!(
        published,
        vec![CommandResponse::Published { size: leaves + 1 }]
    );
    (ledger, 6)
}

#[test]
fn reads_and_checkpoint_checks_take_no_write_lock() {
    let k = keys();
    let (ledger, next) = ledger(&k, 3);
    // A leaf after the published checkpoint, so that the head root at the current size differs
    // from the published one.
    ledger
        .apply_entries(vec![append(
            next,
            vec![vec![submitted(record("orders", 9), &k.writer)]],
            3_000,
        )])
        .expect("applies");
    let held = ledger.read();
    let reader = ledger.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cp = reader.candidate_checkpoint().expect("a candidate");
        let checked = reader.check_checkpoint(&cp);
        let history = reader
            .system_history("orders", u64::MAX)
            .map(|h| h.leaves.len());
        let near = reader.system_history("orders", 0).map(|h| h.next.is_some());
        let leaf = reader.leaf(4).map(|l| !l.is_empty());
        let proof = reader.inclusion_proof(1, 5).map(|p| p.len());
        let _ = tx.send((checked, history, near, leaf, proof));
    });
    let answers = rx.recv_timeout(Duration::from_secs(20));
    drop(held);
    let (checked, history, near, leaf, proof) =
        answers.expect("reads finish while another reader holds the lock");
    assert_eq!(checked, Ok(()));
    assert!(matches!(
        history,
        Err(super::ReadError::NotCovered {
            at_time: u64::MAX,
            ..
        })
    ));
    assert_eq!(near, Ok(true));
    assert_eq!(leaf, Ok(true));
    assert_eq!(proof, Ok(3));
    // The head map is unchanged by the trial computations.
    let again = ledger.candidate_checkpoint().expect("a candidate");
    assert_eq!(ledger.check_checkpoint(&again), Ok(()));
}

#[test]
fn a_checkpoint_this_node_did_not_compute_is_refused_with_the_evidence() {
    let k = keys();
    let (ledger, _) = ledger(&k, 2);
    let cp = ledger.candidate_checkpoint().expect("a candidate");
    let wrong = Checkpoint {
        root: Hash([0xee; 32]),
        ..cp.clone()
    };
    assert_eq!(
        ledger.check_checkpoint(&wrong),
        Err(CheckpointError::Mismatch(CheckpointMismatch::Root {
            size: 3,
            found: Hash([0xee; 32]),
            computed: cp.root,
        }))
    );
    let elsewhere = Checkpoint {
        origin: "another/log".into(),
        ..cp.clone()
    };
    assert!(matches!(
        ledger.check_checkpoint(&elsewhere),
        Err(CheckpointError::Mismatch(CheckpointMismatch::Origin { .. }))
    ));
    assert_eq!(ledger.corruption(), None);
}

#[test]
fn publication_refusals_are_typed() {
    let k = keys();
    let (ledger, next) = ledger(&k, 2);
    let cp = ledger.candidate_checkpoint().expect("a candidate");
    // The same checkpoint again: not after the published one.
    let again = Note::sign(&cp.to_text(), &[&k.node]).to_text();
    // Signed by a key that is not a voter's: no quorum.
    let stranger = NoteSigner::from_seed("stranger", &[9; 32]).expect("key");
    let mut later = cp.clone();
    later.time.0 += 1;
    let unsigned = Note::sign(&later.to_text(), &[&stranger]).to_text();
    let responses = ledger
        .apply_entries(vec![
            publish(next, again),
            publish(next + 1, unsigned),
            publish(next + 2, "not a note".into()),
        ])
        .expect("applies");
    let refused = |r: &CommandResponse| match r {
        CommandResponse::Refused {
            reason: CommandRefusal::Checkpoint(p),
        } => p.clone(),
        other => panic!("not a refused publication: {other:?}"),
    };
    assert!(matches!(
        refused(&responses[0]),
        PublishRefusal::NotAfterPublished {
            size: 3,
            published_size: 3,
            ..
        }
    ));
    assert!(matches!(
        refused(&responses[1]),
        PublishRefusal::Quorum(QuorumError::Signature { .. })
            | PublishRefusal::Quorum(QuorumError::ShortOfMajority { .. })
    ));
    assert!(matches!(
        refused(&responses[2]),
        PublishRefusal::Unparsable { .. }
    ));
}

#[test]
fn a_writer_without_a_grant_is_refused_with_its_key_and_system() {
    let k = keys();
    let (ledger, _) = ledger(&k, 1);
    let stranger = NoteSigner::from_seed("stranger", &[9; 32]).expect("key");
    let group = vec![submitted(record("orders", 50), &stranger)];
    let outcome = ledger.precheck(&group).expect("no storage error");
    assert_eq!(
        outcome,
        Some(GroupOutcome::Refused {
            position: 0,
            refusal: Refusal::Unauthorized(Unauthorized::NoGrant {
                writer: stranger.verifier().key.to_bytes(),
                system: "orders".into(),
            }),
        })
    );
}

#[test]
fn a_storage_error_while_checking_a_checkpoint_stays_a_storage_error() {
    let k = keys();
    // 128 leaves, published: the time of the checkpoint's last leaf (127) comes from its stored
    // block, since no leaf is pending and the open block (2) is empty.
    let (ledger, _) = ledger(&k, 127);
    let cp = ledger
        .published_checkpoint()
        .expect("published")
        .checkpoint()
        .clone();
    assert_eq!(cp.size.0, 128);
    assert_eq!(ledger.check_checkpoint(&cp), Ok(()));
    let mut batch = Batch::new(Tree::Ledger);
    batch.put(keys::block(1), &[0xff, 0xff, 0xff, 0xff]);
    ledger.store().write(batch).expect("writes");
    let checked = ledger.check_checkpoint(&cp);
    assert!(
        matches!(
            checked,
            Err(CheckpointError::Store(StoreError::Corrupt { .. }))
        ),
        "{checked:?}"
    );
    assert!(ledger.corruption().is_some());
}

/// The files of `ledger/` import each other one way (`ledger/mod.rs` gives the order): no
/// `super::x` chain leads back to where it started.
#[test]
fn the_ledger_files_import_each_other_without_a_cycle() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger");
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("ledger/ lists") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a file name")
            .to_string();
        if name == "mod" || name == "tests" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a readable file");
        // Only the code before the file's own tests, without comments (doc links import
        // nothing).
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code.contains("super::{"),
            "{name}.rs: import from one sibling per `use super::` line, so this test sees it"
        );
        let used = code
            .match_indices("super::")
            .map(|(at, _)| {
                code[at + "super::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        imports.insert(name, used);
    }
    assert!(imports.contains_key("state"), "found the ledger's files");
    fn visit(
        file: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(file) {
            return;
        }
        assert!(
            !path.iter().any(|f| f == file),
            "import cycle: {} -> {file}",
            path.join(" -> ")
        );
        path.push(file.to_string());
        for next in imports.get(file).into_iter().flatten() {
            visit(next, imports, path, done);
        }
        path.pop();
        done.insert(file.to_string());
    }
    let mut done = BTreeSet::new();
    for file in imports.keys() {
        visit(file, &imports, &mut Vec::new(), &mut done);
    }
}
