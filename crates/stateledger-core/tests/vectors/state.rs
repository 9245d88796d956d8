//! State proofs (`state_proofs.json`) and head-map proofs (`head_proofs.json`), from one log of
//! several systems whose histories each give one verdict of docs/PROOFS.md §7.3.5 (see
//! [`state_log`]). Everything is built and checked with the core library, as a node and a client
//! would: good proofs with [`StateProof::build`], bad ones by changing a good one and checking
//! that it fails with the recorded check.

use prost::Message as _;
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::hash::Hash;
use stateledger_core::heads::{
    head_leaf_hash, verify_head_proof, Head, HeadMap, HeadProof, HeadProofError, HeadTerminal,
    SystemKey,
};
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::LeafIndex;
use stateledger_core::record::{pb, sign_record, Body};
use stateledger_core::state::{check, fold, Boundary, ProvenLeaf, StateProof};

use super::documents::{case, finish, flip_signature, json, sign, Log};
use super::keys::{node, trust_policy, writer, LEDGER_TIME_0, ORIGIN, OTHER_ORIGIN};
use super::records::sha256_of;
use super::schema::{DocumentCase, DocumentsFile, HeadProofCase, HeadProofsFile};

const MS: u64 = 1_000_000;
/// The ledger time of leaf `i` of the state log.
fn time_of(i: u64) -> u64 {
    LEDGER_TIME_0 + i * MS
}

const ORDERS: &str = "orders-service";
const SOURCE: &str = "kafka:orders/3";
/// A system with no record at all.
const ABSENT: &str = "inventory-service";
/// The systems of the log, one verdict each; `orders-service` is the exact story.
const SYSTEMS: &[&str] = &[
    ORDERS,
    "missing-service",
    "gap-service",
    "reorder-service",
    "undeclared-service",
    "conflict-service",
    "partial-service",
    "warning-service",
    "rogue-service",
    "forged-service",
];

fn record(system: &str, observed_offset: u64, body: Body) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: "prod/eu-west-1".to_string(),
        observed_at_unix_nanos: LEDGER_TIME_0 - 500_000 + observed_offset,
        body: Some(body),
    }
}

fn code(system: &str, required: &[&str], dirty: bool) -> Body {
    Body::Code(pb::CodeState {
        repo: format!("github.com/acme/{system}"),
        commit: "3f2a9c1d4b5e6f708192a3b4c5d6e7f8091a2b3c".into(),
        dirty,
        reference: "refs/tags/v1.4.2".into(),
        artifacts: vec![pb::Artifact {
            name: system.to_string(),
            digest: sha256_of(&format!("{system} binary")),
        }],
        lockfiles: Vec::new(),
        required_config: required.iter().map(|k| k.to_string()).collect(),
    })
}

fn config(version: &str, keys: &[&str]) -> Body {
    Body::Config(pb::ConfigSnapshot {
        version: version.into(),
        complete: true,
        entries: keys
            .iter()
            .map(|k| pb::ConfigEntry {
                key: k.to_string(),
                source: "file".into(),
                digest: sha256_of(&format!("{k} of {version}")),
                size: 12,
                ..Default::default()
            })
            .collect(),
    })
}

fn environment(synchronized: bool) -> Body {
    Body::Environment(pb::EnvironmentState {
        os: "linux".into(),
        kernel: "6.1.0-18-amd64".into(),
        arch: "x86_64".into(),
        time_source: Some(pb::TimeSource {
            kind: "chrony".into(),
            synchronized,
            max_error_nanos: if synchronized { 2_000_000 } else { 0 },
        }),
        ..Default::default()
    })
}

fn mutation(sequence: u64, captures: &[&str], with_payload: bool) -> Body {
    Body::Mutation(pb::Mutation {
        kind: "order_created".into(),
        id: format!("evt-{sequence}"),
        source: SOURCE.into(),
        sequence,
        origin: "checkout-api".into(),
        payload_digest: if with_payload {
            sha256_of(&format!("payload {sequence}"))
        } else {
            String::new()
        },
        external_ref: None,
        captures: captures.iter().map(|c| c.to_string()).collect(),
    })
}

fn seed(capture_id: &str, seed: &[u8]) -> Body {
    Body::Nondeterminism(pb::Nondeterminism {
        capture_id: capture_id.into(),
        capture: Some(pb::nondeterminism::Capture::Seed(pb::RandomSeed {
            name: "pricing-rng".into(),
            seed: seed.to_vec(),
        })),
    })
}

fn state_digest(sequence: u64) -> Body {
    Body::StateDigest(pb::StateDigest {
        source: SOURCE.into(),
        sequence,
        digest: sha256_of(&format!("orders db after {sequence}")),
        baseline: false,
    })
}

/// What each leaf of the state log holds, in log order: (system, observed-time offset, body).
/// `orders-service` interleaves with the others, so its back-links skip leaves.
fn entries() -> Vec<(&'static str, u64, Body)> {
    let both = ["file:/etc/app.conf", "file:/etc/db.conf"];
    let mut e: Vec<(&'static str, u64, Body)> = vec![
        (ORDERS, 0, code(ORDERS, &both, false)),
        ("missing-service", 1, mutation(1, &[], true)),
        (ORDERS, 2, config("cfg-17", &both)),
        (ORDERS, 3, environment(true)),
        ("gap-service", 4, code("gap-service", &[], false)),
        (ORDERS, 5, seed("pricing-seed-7", &[7, 7, 7, 42])),
        (ORDERS, 6, mutation(1, &["pricing-seed-7"], true)),
        ("gap-service", 7, config("cfg-1", &["file:/etc/app.conf"])),
        (ORDERS, 8, mutation(2, &[], true)),
        ("gap-service", 9, environment(true)),
        (ORDERS, 10, state_digest(2)),
        ("gap-service", 11, mutation(1, &[], true)),
        ("gap-service", 12, mutation(3, &[], true)),
    ];
    let full = |system: &'static str, at: u64| {
        vec![
            (system, at, code(system, &[], false)),
            (system, at + 1, config("cfg-1", &["file:/etc/app.conf"])),
            (system, at + 2, environment(true)),
        ]
    };
    e.extend(full("reorder-service", 13));
    e.extend([
        ("reorder-service", 16, mutation(1, &[], true)),
        ("reorder-service", 17, mutation(2, &[], true)),
        ("reorder-service", 18, mutation(2, &[], true)),
    ]);
    e.extend(full("undeclared-service", 19));
    e.push(("undeclared-service", 22, mutation(1, &["fx-rate-1"], true)));
    e.extend(full("conflict-service", 23));
    e.extend([
        ("conflict-service", 26, seed("s-1", &[1])),
        ("conflict-service", 27, seed("s-1", &[2])),
    ]);
    e.extend([
        (
            "partial-service",
            28,
            code(
                "partial-service",
                &["env:DB_URL", "file:/etc/app.conf"],
                false,
            ),
        ),
        (
            "partial-service",
            29,
            config("cfg-1", &["file:/etc/app.conf"]),
        ),
        ("partial-service", 30, environment(true)),
    ]);
    e.extend([
        ("warning-service", 31, code("warning-service", &[], true)),
        (
            "warning-service",
            32,
            config("cfg-1", &["file:/etc/app.conf"]),
        ),
        ("warning-service", 33, environment(false)),
        ("warning-service", 35, mutation(1, &[], false)),
        // Observed before the mutation above, though recorded after it.
        ("warning-service", 34, mutation(2, &[], true)),
        ("warning-service", 36, state_digest(5)),
    ]);
    // After T_MID: orders-service goes on.
    e.extend([
        (ORDERS, 37, config("cfg-18", &both)),
        (ORDERS, 38, mutation(3, &[], true)),
    ]);
    e
}

/// Ledger time T_MID: after leaf 10 (orders-service's state digest), before its next leaf.
fn t_mid() -> u64 {
    time_of(10) + MS / 2
}

/// The state log (see [`entries`]) plus two leaves no correct node accepts: a partial config of
/// `rogue-service` and a `forged-service` code record signed without the domain separator.
pub fn state_log() -> Log {
    let mut log = Log::new();
    let key = writer();
    let w = key.verifying_key().to_bytes();
    let append = |log: &mut Log, system: &str, bytes: Vec<u8>, signature: [u8; 64]| {
        let i = log.leaves.len() as u64;
        log.append(system, i * MS, w, signature, bytes);
    };
    for (system, offset, body) in entries() {
        let bytes = record(system, offset, body).encode_to_vec();
        let signature = sign_record(&key, &bytes);
        append(&mut log, system, bytes, signature);
    }
    let partial = record(
        "rogue-service",
        40,
        Body::Config(pb::ConfigSnapshot {
            version: "cfg-partial".into(),
            complete: false,
            entries: Vec::new(),
        }),
    )
    .encode_to_vec();
    let signature = sign_record(&key, &partial);
    append(&mut log, "rogue-service", partial, signature);
    let forged = record("forged-service", 41, code("forged-service", &[], false)).encode_to_vec();
    let signature = ed25519_dalek::Signer::sign(&key, &forged).to_bytes();
    append(&mut log, "forged-service", forged, signature);
    log
}

/// The checkpoint of the whole state log, with a time one second after its last leaf (a tick).
fn full_checkpoint(log: &Log) -> Checkpoint {
    let size = log.leaves.len() as u64;
    let mut cp = log.checkpoint(size, ORIGIN);
    cp.time = LedgerTime(time_of(size - 1) + 1_000 * MS);
    cp
}

fn proven(log: &Log, index: u64, size: u64) -> ProvenLeaf {
    ProvenLeaf {
        leaf_index: index,
        leaf: log.leaves[index as usize].encode(),
        inclusion_proof: log.inclusion(index, size),
    }
}

/// The system of each leaf.
fn systems_of(log: &Log) -> Vec<String> {
    log.leaves
        .iter()
        .map(|l| {
            pb::Record::decode(l.record.as_slice())
                .expect("every leaf of the state log holds a protobuf record")
                .system
        })
        .collect()
}

/// What an honest node serves for (`system`, `at`) against the full checkpoint: the system's
/// leaves up to `at`, and its next leaf if there is one, else its head proof.
fn material(log: &mut Log, system: &str, at: u64) -> (Vec<ProvenLeaf>, Boundary) {
    let size = log.leaves.len() as u64;
    let systems = systems_of(log);
    let mut shown = Vec::new();
    let mut next = None;
    for (i, leaf) in log.leaves.iter().enumerate() {
        if systems[i] != system {
            continue;
        }
        if leaf.ledger_time.0 <= at {
            shown.push(proven(log, i as u64, size));
        } else {
            next = Some(proven(log, i as u64, size));
            break;
        }
    }
    let boundary = match next {
        Some(p) => Boundary::Next(p),
        None => Boundary::Head(log.head_proof(system)),
    };
    (shown, boundary)
}

/// A valid state proof of `system` at `at`, built as a client builds it.
fn good_proof(log: &mut Log, note: &str, system: &str, at: u64) -> StateProof {
    let (leaves, boundary) = material(log, system, at);
    StateProof::build(
        system,
        at,
        note.to_string(),
        leaves,
        boundary,
        &trust_policy(),
    )
    .unwrap_or_else(|e| panic!("state proof of {system} at {at}: {e}"))
    .0
}

/// A state proof of a system whose leaf no verifier accepts: the material is as a node would
/// serve it; the state is the empty fold, never reached.
fn unverifiable_proof(log: &mut Log, note: &str, system: &str) -> StateProof {
    let at = full_checkpoint(log).time.0;
    let (leaves, boundary) = material(log, system, at);
    let state = fold(system, at, &[]);
    StateProof {
        format: stateledger_core::state::STATE_PROOF_FORMAT.to_string(),
        system: system.to_string(),
        at,
        checkpoint: note.to_string(),
        leaves,
        boundary,
        state_digest: state.digest(),
        verdict: check(&state),
        state,
    }
}

pub fn state_proofs_file() -> DocumentsFile {
    const K: &str = "state_proof";
    let mut log = state_log();
    let cp = full_checkpoint(&log);
    let note = sign(&cp, &[&node(1), &node(2)]);
    let t_end = cp.time.0;
    let mut cases = Vec::new();
    let mut good = |log: &mut Log, name: &str, system: &str, at: u64| {
        let proof = good_proof(log, &note, system, at);
        cases.push(case(name, K, json(&proof), None));
        proof
    };
    let mid = good(
        &mut log,
        "orders-service at T_MID: exact, boundary `next` (its next leaf, after T)",
        ORDERS,
        t_mid(),
    );
    let end = good(
        &mut log,
        "orders-service at the checkpoint's time: exact, boundary `head` (the head map)",
        ORDERS,
        t_end,
    );
    good(
        &mut log,
        "orders-service before its first leaf: empty, boundary `next` without a back-link",
        ORDERS,
        time_of(0) - 1,
    );
    good(
        &mut log,
        "inventory-service, which has no record: empty, boundary `head` proving absence",
        ABSENT,
        t_end,
    );
    for (system, what) in [
        (
            "missing-service",
            "impossible: missing_dimension (code, config, environment)",
        ),
        (
            "gap-service",
            "impossible: mutation_gap (#2 never recorded)",
        ),
        ("reorder-service", "impossible: mutation_order (#2 twice)"),
        (
            "undeclared-service",
            "impossible: undeclared_nondeterminism (fx-rate-1)",
        ),
        (
            "conflict-service",
            "impossible: conflicting_capture (s-1 recorded twice, differently)",
        ),
        (
            "partial-service",
            "impossible: partial_config (env:DB_URL required, not in the config)",
        ),
        (
            "warning-service",
            "exact with every warning: dirty_code, clock_unsynchronized, \
             mutations_without_payload_digest, observed_time_regression, state_digest_ahead",
        ),
    ] {
        good(&mut log, &format!("{system}: {what}"), system, t_end);
    }
    for (system, expected) in [
        ("missing-service", "missing_dimension"),
        ("gap-service", "mutation_gap"),
        ("reorder-service", "mutation_order"),
        ("undeclared-service", "undeclared_nondeterminism"),
        ("conflict-service", "conflicting_capture"),
        ("partial-service", "partial_config"),
    ] {
        let proof = good_proof(&mut log, &note, system, t_end);
        assert!(
            proof.verdict.reasons.iter().any(|f| f.rule() == expected),
            "{system} gives {expected}"
        );
    }
    let warned = good_proof(&mut log, &note, "warning-service", t_end);
    assert!(warned.verdict.is_exact() && warned.verdict.warnings.len() == 5);
    assert!(mid.verdict.is_exact() && end.verdict.is_exact());
    assert!(matches!(mid.boundary, Boundary::Next(_)));
    assert!(matches!(end.boundary, Boundary::Head(_)));

    cases.extend(bad_cases(&mut log, &note, &mid, &end));
    finish(
        "State proofs (stateledger.state_proof.v1) of the state log — ten systems whose histories \
         each give one verdict — against its checkpoint, to verify against trust_policy.json. A \
         verifier recomputes S(T), its digest and the verdict from the proven leaves and requires \
         the document's to be equal. document is the exact file content; check is the failed \
         check stateledger verify names.",
        cases,
    )
}

/// Changes `proof` and records the check it must then fail.
fn with(
    base: &StateProof,
    name: &str,
    check: &str,
    change: impl FnOnce(&mut StateProof),
) -> DocumentCase {
    let mut p = base.clone();
    change(&mut p);
    case(name, "state_proof", json(&p), Some(check))
}

fn bad_cases(log: &mut Log, note: &str, mid: &StateProof, end: &StateProof) -> Vec<DocumentCase> {
    const K: &str = "state_proof";
    let cp = full_checkpoint(log);
    let size = cp.size.0;
    let (n1, n2) = (node(1), node(2));
    let mut out = vec![
        with(
            mid,
            "T_MID: format stateledger.state_proof.v2",
            "format",
            |p| p.format = "stateledger.state_proof.v2".into(),
        ),
        with(mid, "T_MID: system name with a space", "document", |p| {
            p.system = "orders service".into()
        }),
        with(mid, "T_MID: checkpoint truncated", "checkpoint_note", |p| {
            p.checkpoint.truncate(p.checkpoint.len() / 2)
        }),
        with(
            mid,
            "T_MID: checkpoint body with a leading zero in the size, signed",
            "checkpoint_body",
            |p| {
                let text =
                    cp.to_text()
                        .replacen(&format!("\n{size}\n"), &format!("\n0{size}\n"), 1);
                p.checkpoint = stateledger_core::note::Note::sign(&text, &[&n1, &n2]).to_text()
            },
        ),
        with(
            mid,
            "T_MID: checkpoint of another origin",
            "checkpoint_origin",
            |p| {
                let mut other = cp.clone();
                other.origin = OTHER_ORIGIN.into();
                p.checkpoint = sign(&other, &[&n1, &n2])
            },
        ),
        with(
            mid,
            "T_MID: checkpoint with a bad signature from node-2",
            "checkpoint_signature",
            |p| p.checkpoint = flip_signature(note, 1),
        ),
        with(
            mid,
            "T_MID: checkpoint signed by node-1 only",
            "checkpoint_threshold",
            |p| p.checkpoint = sign(&cp, &[&n1]),
        ),
        with(
            end,
            "end: T one ns after the checkpoint's time",
            "state_checkpoint_time",
            |p| p.at = cp.time.0 + 1,
        ),
        with(
            mid,
            "T_MID: 66 hashes in the first leaf's proof",
            "proof_length",
            |p| p.leaves[0].inclusion_proof = vec![Hash::ZERO; 66],
        ),
        with(mid, "T_MID: leaf version byte 2", "leaf_encoding", |p| {
            p.leaves[1].leaf[0] = 2
        }),
        with(mid, "T_MID: a leaf_index off by one", "leaf_index", |p| {
            p.leaves[1].leaf_index += 1
        }),
        with(
            mid,
            "T_MID: a bit of an inclusion proof flipped",
            "inclusion_proof",
            |p| p.leaves[1].inclusion_proof[0].0[3] ^= 0x10,
        ),
        with(
            mid,
            "T_MID: a checkpoint whose time is T_MID, before the boundary leaf",
            "leaf_time",
            |p| {
                let mut early = cp.clone();
                early.time = LedgerTime(t_mid());
                p.checkpoint = sign(&early, &[&n1, &n2])
            },
        ),
        with(
            mid,
            "T_MID: a leaf of gap-service among orders-service's",
            "state_system",
            |p| p.leaves[1] = proven(log, 4, size),
        ),
        with(
            mid,
            "T_MID: T moved before the shown leaf 6",
            "state_time",
            |p| p.at = time_of(5),
        ),
        with(
            mid,
            "T_MID: leaf 5 (the seed) left out",
            "state_chain",
            |p| {
                p.leaves.remove(3);
            },
        ),
        with(mid, "T_MID: the first leaf left out", "state_chain", |p| {
            p.leaves.remove(0);
        }),
        with(
            mid,
            "T_MID: boundary `next` is a later leaf, not the one after the last shown",
            "state_boundary",
            |p| p.boundary = Boundary::Next(proven(log, 38, size)),
        ),
        with(
            mid,
            "T_MID: boundary `next` of another system",
            "state_boundary",
            |p| p.boundary = Boundary::Next(proven(log, 11, size)),
        ),
        with(
            end,
            "end: the last leaf left out, head boundary",
            "state_boundary",
            |p| {
                p.leaves.pop();
            },
        ),
        with(
            end,
            "end: the head proof of gap-service",
            "state_boundary",
            |p| p.boundary = Boundary::Head(log.head_proof("gap-service")),
        ),
        with(
            end,
            "end: one record more in `state`",
            "state_recomputed",
            |p| p.state.records += 1,
        ),
        with(
            end,
            "end: another commit in `state.code`",
            "state_recomputed",
            |p| {
                if let Some(c) = &mut p.state.code {
                    c.value.commit = "9".repeat(40);
                }
            },
        ),
        with(
            end,
            "end: a bit of state_digest flipped",
            "state_recomputed",
            |p| p.state_digest.0[0] ^= 1,
        ),
        with(
            end,
            "end: confidence 99 in the verdict",
            "state_recomputed",
            |p| p.verdict.confidence = 99,
        ),
        with(
            end,
            "end: verdict `impossible` with no reason",
            "state_recomputed",
            |p| p.verdict.result = "impossible".into(),
        ),
    ];
    let rogue = unverifiable_proof(log, note, "rogue-service");
    out.push(case(
        "rogue-service: its leaf holds a partial config, properly signed",
        K,
        json(&rogue),
        Some("record"),
    ));
    let forged = unverifiable_proof(log, note, "forged-service");
    out.push(case(
        "forged-service: its leaf is signed without the domain separator",
        K,
        json(&forged),
        Some("writer_signature"),
    ));
    let mid_json = json(mid);
    let end_json = json(end);
    out.extend([
        case(
            "T_MID: unknown member \"comment\"",
            K,
            mid_json.replacen('{', "{\"comment\":\"x\",", 1),
            Some("document"),
        ),
        case(
            "T_MID: `at` written -0 (a minus sign is never part of an integer)",
            K,
            mid_json.replacen(&format!("\"at\":{}", t_mid()), "\"at\":-0", 1),
            Some("document"),
        ),
        case(
            "T_MID: `at` as a string",
            K,
            mid_json.replacen(
                &format!("\"at\":{}", t_mid()),
                &format!("\"at\":\"{}\"", t_mid()),
                1,
            ),
            Some("document"),
        ),
        case(
            "end: unknown member in the head proof's terminal",
            K,
            end_json.replacen("\"kind\":\"leaf\"", "\"kind\":\"leaf\",\"depth\":3", 1),
            Some("document"),
        ),
        case(
            "end: unknown member in the head proof's head",
            K,
            end_json.replacen("\"head\":{\"index\"", "\"head\":{\"note\":1,\"index\"", 1),
            Some("document"),
        ),
        case(
            "end: both boundary kinds",
            K,
            {
                let next = json(&proven(log, 38, size));
                end_json.replacen(
                    "\"boundary\":{",
                    &format!("\"boundary\":{{\"next\":{next},"),
                    1,
                )
            },
            Some("document"),
        ),
    ]);
    out
}

/// The head map of `log`, and its root.
fn heads_of(log: &Log) -> (HeadMap, Hash) {
    let mut map = log.heads().clone();
    let root = map.root();
    (map, root)
}

fn head_case(
    name: &str,
    root: Hash,
    system: &str,
    proof: serde_json::Value,
    head: Option<Head>,
    error: Option<&str>,
) -> HeadProofCase {
    HeadProofCase {
        name: name.to_string(),
        root,
        system: system.to_string(),
        key: SystemKey::of(system).0,
        proof,
        valid: error.is_none(),
        head,
        error: error.map(str::to_string),
    }
}

fn value(proof: &HeadProof) -> serde_json::Value {
    serde_json::to_value(proof).expect("head proofs serialize")
}

pub fn head_proofs_file() -> HeadProofsFile {
    let log = state_log();
    let (mut map, root) = heads_of(&log);
    let mut cases = Vec::new();
    for system in SYSTEMS {
        let key = SystemKey::of(system);
        cases.push(head_case(
            &format!("{system}: its head"),
            root,
            system,
            value(&map.prove(&key)),
            map.get(&key),
            None,
        ));
    }
    // Absent systems: one proof ending in an empty subtree, one in another system's leaf.
    let mut empty_end = None;
    let mut leaf_end = None;
    for i in 0..1000 {
        let name = format!("absent-{i}");
        let proof = map.prove(&SystemKey::of(&name));
        match proof.terminal {
            HeadTerminal::Empty if empty_end.is_none() => empty_end = Some((name, proof)),
            HeadTerminal::Leaf { .. } if leaf_end.is_none() => leaf_end = Some((name, proof)),
            _ => {}
        }
        if empty_end.is_some() && leaf_end.is_some() {
            break;
        }
    }
    let (empty_name, empty_proof) = empty_end.expect("an absent key ends in an empty subtree");
    let (leaf_name, leaf_proof) = leaf_end.expect("an absent key ends in another system's leaf");
    cases.push(head_case(
        &format!("{empty_name}: absent, the path ends in an empty subtree"),
        root,
        &empty_name,
        value(&empty_proof),
        None,
        None,
    ));
    cases.push(head_case(
        &format!("{leaf_name}: absent, the path ends in another system's leaf"),
        root,
        &leaf_name,
        value(&leaf_proof),
        None,
        None,
    ));
    let empty = HeadProof {
        siblings: Vec::new(),
        terminal: HeadTerminal::Empty,
    };
    cases.push(head_case(
        "the empty map (root ZERO): absent",
        Hash::ZERO,
        ABSENT,
        value(&empty),
        None,
        None,
    ));
    let only = Head {
        index: LeafIndex(41),
        count: 7,
    };
    let only_key = SystemKey::of(ORDERS);
    let single = HeadProof {
        siblings: Vec::new(),
        terminal: HeadTerminal::Leaf {
            key: only_key,
            head: only,
        },
    };
    let single_root = head_leaf_hash(&only_key, &only);
    cases.push(head_case(
        "a one-entry map (root = its head leaf hash): that system's head",
        single_root,
        ORDERS,
        value(&single),
        Some(only),
        None,
    ));
    cases.push(head_case(
        "a one-entry map: another system is absent",
        single_root,
        ABSENT,
        value(&single),
        None,
        None,
    ));

    // Bad cases, from orders-service's proof.
    let key = SystemKey::of(ORDERS);
    let good = map.prove(&key);
    let head = map.get(&key).expect("orders-service has a head");
    let changed = |f: &dyn Fn(&mut HeadProof)| {
        let mut p = good.clone();
        f(&mut p);
        value(&p)
    };
    let bad = |name: &str, proof: serde_json::Value, error: &str| {
        head_case(
            &format!("orders-service: {name}"),
            root,
            ORDERS,
            proof,
            None,
            Some(error),
        )
    };
    cases.extend([
        bad(
            "head count one more",
            changed(&|p| {
                p.terminal = HeadTerminal::Leaf {
                    key,
                    head: Head {
                        count: head.count + 1,
                        ..head
                    },
                }
            }),
            "RootMismatch",
        ),
        bad(
            "head index one less",
            changed(&|p| {
                p.terminal = HeadTerminal::Leaf {
                    key,
                    head: Head {
                        index: LeafIndex(head.index.0 - 1),
                        ..head
                    },
                }
            }),
            "RootMismatch",
        ),
        bad(
            "terminal replaced by an empty subtree (hiding the system)",
            changed(&|p| p.terminal = HeadTerminal::Empty),
            "RootMismatch",
        ),
        bad(
            "a bit of the first sibling flipped",
            changed(&|p| p.siblings[0].0[0] ^= 1),
            "RootMismatch",
        ),
        bad(
            "the last sibling left out",
            changed(&|p| {
                p.siblings.pop();
            }),
            "RootMismatch",
        ),
        bad(
            "257 siblings",
            changed(&|p| p.siblings = vec![Hash::ZERO; 257]),
            "TooDeep",
        ),
        bad(
            "unknown member in the terminal",
            {
                let mut v = value(&good);
                v["terminal"]["depth"] = serde_json::json!(3);
                v
            },
            "Malformed",
        ),
        bad(
            "terminal kind \"branch\"",
            {
                let mut v = value(&good);
                v["terminal"] = serde_json::json!({"kind": "branch"});
                v
            },
            "Malformed",
        ),
        bad(
            "a sibling of 31 bytes",
            {
                let mut v = value(&good);
                v["siblings"][0] =
                    serde_json::json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==");
                v
            },
            "Malformed",
        ),
    ]);
    // Another system's proof shown for orders-service: its terminal is not on orders-service's
    // path (or, if it happens to be, it does not lead to the root).
    let other = map.prove(&SystemKey::of("gap-service"));
    let off_path = verify_head_proof(&root, &key, &other)
        .expect_err("gap-service's proof does not prove orders-service");
    cases.push(bad(
        "gap-service's proof",
        value(&other),
        error_name(&off_path),
    ));
    for c in &cases {
        assert_head_proof_case(c);
    }
    HeadProofsFile {
        description: "Head-map proofs (docs/PROOFS.md §5): for each case, compute \
                      key(system), read proof (the JSON form of §5.4, strictly), and verify it \
                      against root. A valid case proves head (or, when head is null, that the \
                      system has no leaf); a bad case fails with error: TooDeep, \
                      TerminalOffPath, RootMismatch (§5.5), or Malformed (the proof is not JSON \
                      of §5.4's form). The map is the head map of the state log of \
                      state_proofs.json, whose checkpoint carries this root."
            .to_string(),
        cases,
    }
}

fn error_name(e: &HeadProofError) -> &'static str {
    match e {
        HeadProofError::TooDeep { .. } => "TooDeep",
        HeadProofError::TerminalOffPath { .. } => "TerminalOffPath",
        HeadProofError::RootMismatch { .. } => "RootMismatch",
        _ => "unknown",
    }
}

/// Checks one head proof case as recorded.
pub fn assert_head_proof_case(c: &HeadProofCase) {
    assert_eq!(c.key, SystemKey::of(&c.system).0, "{}: key", c.name);
    let outcome = match serde_json::from_value::<HeadProof>(c.proof.clone()) {
        Err(_) => Err("Malformed"),
        Ok(proof) => {
            verify_head_proof(&c.root, &SystemKey(c.key), &proof).map_err(|e| error_name(&e))
        }
    };
    match (&c.error, outcome) {
        (None, Ok(head)) => assert_eq!(head, c.head, "{}", c.name),
        (Some(expected), Err(got)) => assert_eq!(expected, got, "{}", c.name),
        (expected, got) => panic!("{}: recorded {expected:?}, got {got:?}", c.name),
    }
}
