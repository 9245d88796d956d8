//! State proofs against an in-memory ledger that follows the state machine's rules.

use std::collections::HashMap;

use crate::checkpoint::Checkpoint;
use crate::documents::VerifyError;
use crate::heads::{Head, HeadMap, SystemKey};
use crate::leaf::Leaf;
use crate::ledger_time::LedgerTime;
use crate::merkle::{inclusion_proof, Frontier, LeafIndex, MemoryNodeStore};
use crate::note::{Note, NoteSigner};
use crate::record::{pb, Body, CheckedRecord};
use crate::state::{Boundary, Finding, ProvenLeaf, StateProof};
use crate::trust::TrustPolicy;

struct MiniLedger {
    leaves: Vec<Leaf>,
    systems: Vec<String>,
    store: MemoryNodeStore,
    frontier: Frontier,
    heads: HeadMap,
    live: HashMap<SystemKey, Head>,
    clock: u64,
    writer: NoteSigner,
    nodes: Vec<NoteSigner>,
}

const T0: u64 = 1_700_000_000_000_000_000;
const STEP: u64 = 1_000_000;

impl MiniLedger {
    fn new() -> MiniLedger {
        MiniLedger {
            leaves: Vec::new(),
            systems: Vec::new(),
            store: MemoryNodeStore::new(),
            frontier: Frontier::new(),
            heads: HeadMap::new(),
            live: HashMap::new(),
            clock: T0,
            writer: NoteSigner::from_seed("writer", &[3; 32]).expect("valid"),
            nodes: (1..=3u8)
                .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]).expect("valid"))
                .collect(),
        }
    }

    fn policy(&self) -> TrustPolicy {
        TrustPolicy::new(
            "mini",
            2,
            self.nodes.iter().map(NoteSigner::verifier).collect(),
        )
        .expect("valid")
    }

    /// Appends a record; returns (index, ledger time).
    fn append(&mut self, system: &str, body: Body) -> (u64, u64) {
        let index = self.leaves.len() as u64;
        let record = pb::Record {
            system: system.into(),
            scope: "prod".into(),
            observed_at_unix_nanos: T0 + index,
            body: Some(body),
        };
        let signed = CheckedRecord::sign(record, self.writer.signing_key()).expect("valid record");
        self.clock += STEP;
        let key = SystemKey::of(system);
        let prev = self.live.get(&key).copied();
        let leaf = Leaf {
            index: LeafIndex(index),
            ledger_time: LedgerTime(self.clock),
            prev: prev.map(|h| h.index),
            writer_key: signed.writer_key,
            signature: signed.signature,
            record: signed.bytes,
        };
        let h = leaf.leaf_hash();
        self.frontier.append(h, |_, _| {});
        self.store.append(h);
        let head = Head {
            index: LeafIndex(index),
            count: prev.map_or(1, |h| h.count + 1),
        };
        self.live.insert(key, head);
        self.heads.insert(key, head);
        self.leaves.push(leaf);
        self.systems.push(system.to_string());
        (index, self.clock)
    }

    fn checkpoint(&mut self) -> String {
        let cp = Checkpoint {
            origin: "mini".into(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            time: LedgerTime(self.clock),
            heads_root: self.heads.root(),
        };
        Note::sign(&cp.to_text(), &[&self.nodes[0], &self.nodes[2]]).to_text()
    }

    fn proven(&self, index: u64) -> ProvenLeaf {
        ProvenLeaf {
            leaf_index: index,
            leaf: self.leaves[index as usize].encode(),
            inclusion_proof: inclusion_proof(&self.store, LeafIndex(index), self.frontier.size())
                .expect("in range"),
        }
    }

    /// What an honest node serves for (system, at) against the current size.
    fn material(&mut self, system: &str, at: u64) -> (Vec<ProvenLeaf>, Boundary) {
        let mut shown = Vec::new();
        let mut next = None;
        for (i, leaf) in self.leaves.iter().enumerate() {
            if self.systems[i] != system {
                continue;
            }
            if leaf.ledger_time.0 <= at {
                shown.push(self.proven(i as u64));
            } else {
                next = Some(self.proven(i as u64));
                break;
            }
        }
        let boundary = match next {
            Some(n) => Boundary::Next(n),
            None => Boundary::Head(self.heads.prove(&SystemKey::of(system))),
        };
        (shown, boundary)
    }

    fn state_proof(&mut self, system: &str, at: u64) -> StateProof {
        let note = self.checkpoint();
        let (leaves, boundary) = self.material(system, at);
        StateProof::build(system, at, note, leaves, boundary, &self.policy())
            .expect("honest material verifies")
            .0
    }
}

fn sha(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn code(required: &[&str]) -> Body {
    Body::Code(pb::CodeState {
        repo: "github.com/acme/orders".into(),
        commit: "c".repeat(40),
        required_config: required.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn config(keys: &[&str], version: &str) -> Body {
    Body::Config(pb::ConfigSnapshot {
        version: version.into(),
        complete: true,
        entries: keys
            .iter()
            .map(|k| pb::ConfigEntry {
                key: k.to_string(),
                source: "file".into(),
                digest: sha('d'),
                ..Default::default()
            })
            .collect(),
    })
}

fn environment() -> Body {
    Body::Environment(pb::EnvironmentState {
        os: "linux".into(),
        arch: "x86_64".into(),
        time_source: Some(pb::TimeSource {
            kind: "chrony".into(),
            synchronized: true,
            max_error_nanos: 0,
        }),
        ..Default::default()
    })
}

fn mutation(seq: u64, captures: &[&str]) -> Body {
    Body::Mutation(pb::Mutation {
        kind: "order_created".into(),
        id: format!("evt-{seq}"),
        source: "kafka:orders/0".into(),
        sequence: seq,
        payload_digest: sha('e'),
        captures: captures.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn seed(id: &str) -> Body {
    Body::Nondeterminism(pb::Nondeterminism {
        capture_id: id.into(),
        capture: Some(pb::nondeterminism::Capture::Seed(pb::RandomSeed {
            name: "pricing".into(),
            seed: vec![1, 2, 3, 4],
        })),
    })
}

/// A story for orders-service interleaved with another system's records.
fn story() -> (MiniLedger, Vec<u64>) {
    let mut l = MiniLedger::new();
    let mut times = Vec::new();
    times.push(
        l.append("orders-service", code(&["file:/etc/orders.yaml"]))
            .1,
    ); // 0
    l.append("billing", code(&[]));
    times.push(
        l.append("orders-service", config(&["file:/etc/orders.yaml"], "v1"))
            .1,
    ); // 2
    times.push(l.append("orders-service", environment()).1); // 3
    l.append("billing", mutation(1, &[]));
    times.push(l.append("orders-service", seed("seed-1")).1); // 5
    times.push(l.append("orders-service", mutation(1, &["seed-1"])).1); // 6
    times.push(l.append("orders-service", mutation(2, &[])).1); // 7
    times.push(
        l.append("orders-service", config(&["file:/etc/orders.yaml"], "v2"))
            .1,
    ); // 8
    l.append("billing", mutation(2, &[]));
    (l, times)
}

#[test]
fn exact_state_at_several_times_verifies() {
    let (mut l, times) = story();
    let policy = l.policy();
    // Exactly at the environment record: code, config v1, environment; no mutations yet.
    let p = l.state_proof("orders-service", times[2]);
    let s = p.verify(&policy).expect("verifies");
    assert!(s.verdict.is_exact(), "{:?}", s.verdict);
    assert_eq!(s.state.records, 3);
    assert_eq!(
        s.state.config.as_ref().map(|c| c.value.version.as_str()),
        Some("v1")
    );
    assert!(matches!(p.boundary, Boundary::Next(_)));

    // Between the second mutation and the config change.
    let p = l.state_proof("orders-service", times[5] + 1);
    let s = p.verify(&policy).expect("verifies");
    assert_eq!(s.state.mutations.len(), 2);
    assert_eq!(
        s.state.config.as_ref().map(|c| c.value.version.as_str()),
        Some("v1")
    );
    assert!(s.verdict.is_exact(), "{:?}", s.verdict);

    // After everything: the head map is the boundary, config v2.
    let p = l.state_proof("orders-service", l.clock);
    let s = p.verify(&policy).expect("verifies");
    assert!(matches!(p.boundary, Boundary::Head(_)));
    assert_eq!(
        s.state.config.as_ref().map(|c| c.value.version.as_str()),
        Some("v2")
    );
    assert_eq!(s.state.records, 7);

    // The JSON form round-trips and still verifies.
    let json = serde_json::to_string(&p).expect("serializes");
    let back: StateProof = serde_json::from_str(&json).expect("parses");
    back.verify(&policy).expect("verifies after round trip");

    // A system with no records: empty state, head proof of absence, impossible verdict.
    let p = l.state_proof("nobody", l.clock);
    let s = p.verify(&policy).expect("verifies");
    assert_eq!(s.state.records, 0);
    assert!(!s.verdict.is_exact());
}

#[test]
fn tampered_state_proofs_fail_with_a_reason() {
    let (mut l, times) = story();
    let policy = l.policy();
    let mid = l.state_proof("orders-service", times[5] + 1); // next-leaf boundary
    let end = l.state_proof("orders-service", l.clock); // head boundary
    let check = |p: &StateProof| p.verify(&policy).expect_err("must fail").check();

    // Dropping any leaf breaks the chain or the boundary.
    for i in 0..end.leaves.len() {
        let mut p = end.clone();
        p.leaves.remove(i);
        let c = check(&p);
        assert!(c == "state_chain" || c == "state_boundary", "drop {i}: {c}");
    }
    for i in 0..mid.leaves.len() {
        let mut p = mid.clone();
        p.leaves.remove(i);
        let c = check(&p);
        assert!(c == "state_chain" || c == "state_boundary", "drop {i}: {c}");
    }
    // Cutting the chain at the end and claiming the earlier leaf's successor as boundary fails.
    let mut cut = mid.clone();
    let last = cut.leaves.pop().expect("has leaves");
    cut.boundary = Boundary::Next(last);
    assert!(matches!(
        cut.verify(&policy),
        Err(VerifyError::StateBoundary { .. })
    ));

    // A proof for a different T.
    let mut other_t = mid.clone();
    other_t.at = times[2];
    assert!(other_t.verify(&policy).is_err());
    let mut later_t = mid.clone();
    later_t.at = times[6];
    assert!(later_t.verify(&policy).is_err());

    // A checkpoint that does not cover T.
    let old_note = {
        let mut l2 = story().0;
        let (leaves, boundary) = l2.material("orders-service", times[0]);
        let _ = (leaves, boundary);
        l2.checkpoint()
    };
    let mut uncovered = end.clone();
    uncovered.at = l.clock + 1;
    uncovered.checkpoint = old_note;
    assert_eq!(check(&uncovered), "state_checkpoint_time");

    // Editing the state, its digest or the verdict.
    let mut edited = end.clone();
    if let Some(c) = edited.state.config.as_mut() {
        c.value.version = "v3".into();
    }
    assert_eq!(check(&edited), "state_recomputed");
    let mut digest = end.clone();
    digest.state_digest.0[0] ^= 1;
    assert_eq!(check(&digest), "state_recomputed");
    assert!(end.verdict.is_exact());
    let mut verdict = end.clone();
    verdict.verdict.result = "impossible".into();
    verdict.verdict.reasons.push(Finding::MissingDimension {
        dimension: "code".into(),
    });
    assert_eq!(check(&verdict), "state_recomputed");

    // Flipping any byte of a leaf.
    let mut flipped = end.clone();
    flipped.leaves[1].leaf[140] ^= 1;
    assert!(flipped.verify(&policy).is_err());

    // A leaf of another system slipped in.
    let mut foreign = end.clone();
    foreign.leaves.insert(1, l.proven(1));
    assert!(foreign.verify(&policy).is_err());

    // Editing any byte of the JSON document never verifies as something else silently.
    let json = serde_json::to_vec(&mid).expect("serializes");
    let mut verified_edits = 0;
    for i in (0..json.len()).step_by(97) {
        let mut b = json.clone();
        b[i] ^= 0x01;
        if let Ok(doc) = serde_json::from_slice::<StateProof>(&b) {
            if doc.verify(&policy).is_ok() {
                // Only edits that change nothing the proof binds may verify (none expected).
                verified_edits += 1;
            }
        }
    }
    assert_eq!(verified_edits, 0);
}

#[test]
fn impossible_reconstructions_name_the_rule_and_record() {
    // Mutation gap.
    let mut l = MiniLedger::new();
    l.append("s", code(&[]));
    l.append("s", config(&["k"], "v1"));
    l.append("s", environment());
    l.append("s", mutation(1, &[]));
    l.append("s", mutation(3, &[]));
    let p = l.state_proof("s", l.clock);
    let v = p.verify(&l.policy()).expect("verifies").verdict;
    assert_eq!(
        v.reasons,
        vec![Finding::MutationGap {
            source: "kafka:orders/0".into(),
            expected: 2,
            found: 3,
            leaf_index: 4
        }]
    );
    assert_eq!(v.result, "impossible");

    // Missing dimension and undeclared nondeterminism and partial config.
    let mut l = MiniLedger::new();
    l.append("s", code(&["env:DB_URL", "file:/etc/a"]));
    l.append("s", config(&["file:/etc/a"], "v1"));
    l.append("s", mutation(1, &["clock-7"]));
    let p = l.state_proof("s", l.clock);
    let v = p.verify(&l.policy()).expect("verifies").verdict;
    assert!(v.reasons.contains(&Finding::MissingDimension {
        dimension: "environment".into()
    }));
    assert!(v.reasons.contains(&Finding::UndeclaredNondeterminism {
        mutation_id: "evt-1".into(),
        capture_id: "clock-7".into(),
        leaf_index: 2
    }));
    assert!(v.reasons.contains(&Finding::PartialConfig {
        missing_keys: vec!["env:DB_URL".into()],
        code_leaf: 0,
        config_leaf: Some(1)
    }));
    assert!(v.confidence < 50);
    for r in &v.reasons {
        assert!(!r.describe().is_empty());
    }

    // A baseline state digest lets a source start mid-stream.
    let mut l = MiniLedger::new();
    l.append("s", code(&[]));
    l.append("s", config(&["k"], "v1"));
    l.append("s", environment());
    l.append(
        "s",
        Body::StateDigest(pb::StateDigest {
            source: "kafka:orders/0".into(),
            sequence: 41,
            digest: sha('f'),
            baseline: true,
        }),
    );
    l.append("s", mutation(42, &[]));
    let p = l.state_proof("s", l.clock);
    assert!(p.verify(&l.policy()).expect("verifies").verdict.is_exact());
}
