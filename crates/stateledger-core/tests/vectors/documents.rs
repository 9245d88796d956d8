//! Checkpoints, receipts and consistency documents in exactly the formats `stateledger verify`
//! reads, verified against the trust policy of [`keys::trust_policy`].
//!
//! Two logs share the policy's origin:
//! - the main log: the valid records of [`records::valid_records`], one leaf each (9 leaves);
//! - the rogue log: 5 leaves no correct node would accept (bad writer signatures, invalid records,
//!   a leaf newer than its checkpoint), yet checkpointed by trusted nodes, so the checks a
//!   verifier runs beyond the checkpoint and the inclusion proof have something to catch. At size
//!   5 it is also a fork of the main log.

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use prost::Message as _;
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::documents::{ConsistencyDocument, Document, Receipt, Verified};
use stateledger_core::hash::Hash;
use stateledger_core::heads::{Head, HeadMap, SystemKey};
use stateledger_core::leaf::Leaf;
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::{
    consistency_proof, inclusion_proof, Frontier, LeafIndex, MemoryNodeStore, TreeSize,
};
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::record::{pb, sign_record, Body};
use stateledger_core::trust::TrustPolicy;

use super::keys::{
    impostor_node_2, node, other_writer, writer, LEDGER_TIME_0, ORIGIN, OTHER_ORIGIN,
};
use super::records::{non_canonical_bytes, valid_records};
use super::schema::{DocumentCase, DocumentsFile};

pub const TRUST_POLICY_FILE: &str = "trust_policy.json";

/// An in-memory log with everything needed to checkpoint and prove any prefix of it.
#[derive(Debug)]
pub struct Log {
    pub leaves: Vec<Leaf>,
    store: MemoryNodeStore,
    /// Merkle root at each size 0..=len.
    roots: Vec<Hash>,
    /// Head-map root at each size 0..=len.
    heads_roots: Vec<Hash>,
    heads: HeadMap,
    frontier: Frontier,
}

impl Log {
    pub(super) fn new() -> Log {
        let mut heads = HeadMap::new();
        Log {
            leaves: Vec::new(),
            store: MemoryNodeStore::new(),
            roots: vec![Hash::empty_tree()],
            heads_roots: vec![heads.root()],
            heads,
            frontier: Frontier::new(),
        }
    }

    /// Appends a leaf for `record_bytes` signed (or not) as given, at the next index.
    pub(super) fn append(
        &mut self,
        system: &str,
        time_offset_ns: u64,
        writer_key: [u8; 32],
        signature: [u8; 64],
        record: Vec<u8>,
    ) {
        let index = self.leaves.len() as u64;
        let key = SystemKey::of(system);
        let previous = self.heads.get(&key);
        let leaf = Leaf {
            index: LeafIndex(index),
            ledger_time: LedgerTime(LEDGER_TIME_0 + time_offset_ns),
            prev: previous.map(|h| h.index),
            writer_key: stateledger_core::record::WriterKey(writer_key),
            signature,
            record,
        };
        let h = leaf.leaf_hash();
        self.store.append(h);
        self.frontier.append(h, |_, _| {});
        self.roots.push(self.frontier.root());
        self.heads.insert(
            key,
            Head {
                index: LeafIndex(index),
                count: previous.map_or(0, |h| h.count) + 1,
            },
        );
        self.heads_roots.push(self.heads.root());
        self.leaves.push(leaf);
    }

    /// The checkpoint of the first `size` leaves; its time is the last leaf's ledger time.
    pub fn checkpoint(&self, size: u64, origin: &str) -> Checkpoint {
        let time = match size {
            0 => LedgerTime(LEDGER_TIME_0 - 1),
            n => self.leaves[n as usize - 1].ledger_time,
        };
        Checkpoint {
            origin: origin.to_string(),
            size: TreeSize(size),
            root: self.roots[size as usize],
            time,
            heads_root: self.heads_roots[size as usize],
        }
    }

    pub(super) fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        inclusion_proof(&self.store, LeafIndex(index), TreeSize(size)).expect("index < size")
    }

    /// The head proof of `system` in the head map of the whole log.
    pub(super) fn head_proof(&mut self, system: &str) -> stateledger_core::heads::HeadProof {
        self.heads.prove(&SystemKey::of(system))
    }

    /// The head map of the whole log.
    pub(super) fn heads(&self) -> &HeadMap {
        &self.heads
    }

    fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(&self.store, TreeSize(old), TreeSize(new)).expect("old <= new")
    }
}

/// The main log: one leaf per valid record, 1 ms of ledger time apart.
pub fn main_log() -> Log {
    let mut log = Log::new();
    for (i, v) in valid_records().into_iter().enumerate() {
        let bytes = v.record.encode_to_vec();
        log.append(
            &v.record.system,
            i as u64 * 1_000_000,
            v.key.verifying_key().to_bytes(),
            sign_record(&v.key, &bytes),
            bytes,
        );
    }
    log
}

/// Index of the rogue leaf that is newer than the rogue checkpoint.
const ROGUE_LATE_LEAF: u64 = 4;

/// The rogue log (see the module comment). Its checkpoint is taken at size 5 with the time of
/// leaf 3, so leaf 4 is after it.
pub fn rogue_log() -> Log {
    let mut log = Log::new();
    let code = valid_records()[1].record.encode_to_vec();
    let w = writer().verifying_key().to_bytes();
    // 0: signed by the orders writer, but the leaf names the billing writer's key.
    log.append(
        "orders-service",
        0,
        other_writer().verifying_key().to_bytes(),
        sign_record(&writer(), &code),
        code.clone(),
    );
    // 1: signed over the bare record bytes, without the domain separator.
    log.append(
        "orders-service",
        1_000_000,
        w,
        writer().sign(&code).to_bytes(),
        code,
    );
    // 2: a non-canonical encoding of a valid record, properly signed.
    let non_canonical = non_canonical_bytes();
    log.append(
        "orders-service",
        2_000_000,
        w,
        sign_record(&writer(), &non_canonical),
        non_canonical,
    );
    // 3: a partial config snapshot, properly signed.
    let partial = pb::Record {
        system: "orders-service".into(),
        scope: String::new(),
        observed_at_unix_nanos: LEDGER_TIME_0,
        body: Some(Body::Config(pb::ConfigSnapshot {
            version: "cfg-partial".into(),
            complete: false,
            entries: Vec::new(),
        })),
    }
    .encode_to_vec();
    log.append(
        "orders-service",
        3_000_000,
        w,
        sign_record(&writer(), &partial),
        partial,
    );
    // 4: a valid record, 10 s after the checkpoint that includes it.
    let late = valid_records()[4].record.encode_to_vec();
    log.append(
        "orders-service",
        13_000_000_000,
        w,
        sign_record(&writer(), &late),
        late,
    );
    log
}

/// The rogue checkpoint: size 5 but the time of leaf 3.
fn rogue_checkpoint(rogue: &Log) -> Checkpoint {
    let mut cp = rogue.checkpoint(5, ORIGIN);
    cp.time = rogue.leaves[ROGUE_LATE_LEAF as usize - 1].ledger_time;
    cp
}

/// A trusted checkpoint claiming 2^63 + 1 leaves (with the size-9 root): proofs against it need
/// 64 inner hashes, which a verifier must compute without overflowing.
fn huge_checkpoint(log: &Log) -> String {
    let mut cp = log.checkpoint(9, ORIGIN);
    cp.size = TreeSize((1 << 63) + 1);
    sign(&cp, &[&node(1), &node(2)])
}

pub(super) fn sign(cp: &Checkpoint, signers: &[&NoteSigner]) -> String {
    Note::sign(&cp.to_text(), signers).to_text()
}

/// The checkpoint note of the main log at `size`, signed by node-1 and node-2.
fn signed_main(log: &Log, size: u64) -> String {
    sign(&log.checkpoint(size, ORIGIN), &[&node(1), &node(2)])
}

/// Flips one bit of the signature on signature line `line` (0-based) of a note.
pub(super) fn flip_signature(note: &str, line: usize) -> String {
    let mut n = Note::parse(note.as_bytes()).expect("a valid note");
    n.signatures[line].signature[17] ^= 0x20;
    n.to_text()
}

/// Replaces the first character of a base64 hash with another base64 character: the text still
/// decodes to a canonical 32-byte hash, a different one.
fn flip_base64_hash(b64: &str) -> String {
    let first = if b64.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &b64[1..])
}

pub(super) fn case(name: &str, kind: &str, document: String, check: Option<&str>) -> DocumentCase {
    DocumentCase {
        name: name.to_string(),
        kind: kind.to_string(),
        document,
        valid: check.is_none(),
        check: check.map(str::to_string),
    }
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializes")
}

pub(super) fn finish(description: &str, cases: Vec<DocumentCase>) -> DocumentsFile {
    let policy = super::keys::trust_policy();
    for c in &cases {
        assert_document_case(&policy, c);
    }
    DocumentsFile {
        description: description.to_string(),
        trust_policy: TRUST_POLICY_FILE.to_string(),
        cases,
    }
}

pub fn checkpoints_file() -> DocumentsFile {
    const K: &str = "checkpoint";
    let log = main_log();
    let cp9 = log.checkpoint(9, ORIGIN);
    let text9 = cp9.to_text();
    let (n1, n2, n3, n4) = (node(1), node(2), node(3), node(4));
    let good = signed_main(&log, 9);
    let mut cases = vec![
        case("size 9 signed by node-1 and node-2", K, good.clone(), None),
        case(
            "size 9 signed by node-1, node-2 and node-3",
            K,
            sign(&cp9, &[&n1, &n2, &n3]),
            None,
        ),
        case(
            "size 9 signed by node-3, node-2 and the untrusted node-4 (ignored)",
            K,
            sign(&cp9, &[&n3, &n2, &n4]),
            None,
        ),
        case(
            "size 9 signed by node-1 and node-8 (node-8's key text has a '+' in its base64)",
            K,
            sign(&cp9, &[&n1, &node(8)]),
            None,
        ),
        case(
            "size 4 signed by node-3 and node-1",
            K,
            sign(&log.checkpoint(4, ORIGIN), &[&n3, &n1]),
            None,
        ),
        case(
            "size 0 (the empty log) signed by node-1 and node-2",
            K,
            signed_main(&log, 0),
            None,
        ),
        case(
            "threshold not met: size 9 signed by node-1 only",
            K,
            sign(&cp9, &[&n1]),
            Some("checkpoint_threshold"),
        ),
        case(
            "threshold not met: node-2 and the untrusted node-4",
            K,
            sign(&cp9, &[&n2, &n4]),
            Some("checkpoint_threshold"),
        ),
        case(
            "threshold not met: node-1 twice",
            K,
            sign(&cp9, &[&n1, &n1]),
            Some("checkpoint_threshold"),
        ),
        case(
            "threshold not met: node-1 and a different key named node-2 (other key id, ignored)",
            K,
            sign(&cp9, &[&n1, &impostor_node_2()]),
            Some("checkpoint_threshold"),
        ),
        case(
            "bad signature from trusted node-2 (one bit flipped)",
            K,
            flip_signature(&good, 1),
            Some("checkpoint_signature"),
        ),
    ];
    // node-1's valid signature over the size-7 checkpoint, pasted under the size-9 body.
    let mut pasted = Note::parse(good.as_bytes()).expect("valid");
    let seven = Note::parse(signed_main(&log, 7).as_bytes()).expect("valid");
    pasted.signatures[0] = seven.signatures[0].clone();
    cases.push(case(
        "signature by trusted node-1 over another checkpoint (size 7)",
        K,
        pasted.to_text(),
        Some("checkpoint_signature"),
    ));
    let mut short_sig = Note::parse(good.as_bytes()).expect("valid");
    short_sig.signatures[1].signature.truncate(32);
    cases.push(case(
        "signature from trusted node-2 of 32 bytes instead of 64",
        K,
        short_sig.to_text(),
        Some("checkpoint_signature"),
    ));
    cases.push(case(
        "wrong origin, signed by node-1 and node-2",
        K,
        sign(&log.checkpoint(9, OTHER_ORIGIN), &[&n1, &n2]),
        Some("checkpoint_origin"),
    ));
    let root9 = cp9.root.to_base64();
    cases.push(case(
        "root changed in the signed body",
        K,
        good.replacen(&root9, &flip_base64_hash(&root9), 1),
        Some("checkpoint_signature"),
    ));
    cases.push(case(
        "size changed from 9 to 8 in the signed body",
        K,
        good.replacen("\n9\n", "\n8\n", 1),
        Some("checkpoint_signature"),
    ));
    let heads9 = cp9.heads_root.to_base64();
    cases.push(case(
        "head-map root changed in the signed body",
        K,
        good.replacen(&heads9, &flip_base64_hash(&heads9), 1),
        Some("checkpoint_signature"),
    ));
    cases.push(case(
        "time changed in the signed body",
        K,
        good.replacen("\ntime 1", "\ntime 2", 1),
        Some("checkpoint_signature"),
    ));
    let signed_text = |text: &str| Note::sign(text, &[&n1, &n2]).to_text();
    cases.push(case(
        "body with size 09 (leading zero), signed",
        K,
        signed_text(&text9.replacen("\n9\n", "\n09\n", 1)),
        Some("checkpoint_body"),
    ));
    cases.push(case(
        "body without the heads line, signed",
        K,
        signed_text(&text9[..text9.find("heads ").expect("has heads")]),
        Some("checkpoint_body"),
    ));
    cases.push(case(
        "body with an extra line, signed",
        K,
        signed_text(&format!("{text9}extra\n")),
        Some("checkpoint_body"),
    ));
    cases.push(case(
        "body root is not base64, signed",
        K,
        signed_text(&text9.replacen(&root9, "not-a-hash", 1)),
        Some("checkpoint_body"),
    ));
    cases.push(case(
        "note truncated in the middle of the last signature line",
        K,
        good[..good.len() - 20].to_string(),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "note truncated to its body (no blank line, no signatures)",
        K,
        text9.clone(),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "note with a blank line but no signature lines",
        K,
        format!("{text9}\n"),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "note with a blank line after the last signature line",
        K,
        format!("{good}\n"),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "note with CRLF line endings",
        K,
        good.replace('\n', "\r\n"),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "signature line starting with an ASCII hyphen instead of an em dash",
        K,
        good.replacen('\u{2014}', "-", 1),
        Some("checkpoint_note"),
    ));
    cases.push(case(
        "signature line with a signature that is not base64",
        K,
        good.replacen("\u{2014} node-1 ", "\u{2014} node-1 !", 1),
        Some("checkpoint_note"),
    ));
    cases.push(case("empty document", K, String::new(), Some("document")));
    cases.push(case(
        "document of only whitespace",
        K,
        " \n\n".to_string(),
        Some("document"),
    ));
    finish(
        "Checkpoint notes (C2SP signed notes with a tlog-checkpoint body and a time and heads \
         line) of the main log, to verify against trust_policy.json (node-1..node-3 and node-8, \
         threshold 2). document is the note text exactly; check is the failed check \
         stateledger verify names.",
        cases,
    )
}

pub fn receipts_file() -> DocumentsFile {
    const K: &str = "receipt";
    let log = main_log();
    let note9 = signed_main(&log, 9);
    let receipt = |index: u64, size: u64, note: &str| {
        Receipt::new(
            &log.leaves[index as usize],
            log.inclusion(index, size),
            note.to_string(),
        )
    };
    let mut cases = Vec::new();
    for (i, v) in valid_records().iter().enumerate() {
        cases.push(case(
            &format!("leaf {i} ({}) in the checkpoint of size 9", v.name),
            K,
            json(&receipt(i as u64, 9, &note9)),
            None,
        ));
    }
    cases.push(case(
        "leaf 2 in the checkpoint of size 4",
        K,
        json(&receipt(2, 4, &signed_main(&log, 4))),
        None,
    ));
    cases.push(case(
        "leaf 0 in the checkpoint of size 1 (empty proof)",
        K,
        json(&receipt(0, 1, &signed_main(&log, 1))),
        None,
    ));

    let good = receipt(3, 9, &note9);
    let with = |name: &str, check: &str, change: &dyn Fn(&mut Receipt)| {
        let mut r = good.clone();
        change(&mut r);
        case(&format!("leaf 3: {name}"), K, json(&r), Some(check))
    };
    let record_at = stateledger_core::leaf::LEAF_HEADER_LEN + 10;
    cases.extend([
        with("a record byte flipped", "inclusion_proof", &|r| {
            r.leaf[record_at] ^= 0x01
        }),
        with("a writer signature byte flipped", "inclusion_proof", &|r| {
            r.leaf[60] ^= 0x01
        }),
        with("ledger time changed", "inclusion_proof", &|r| {
            r.leaf[16] ^= 0x01
        }),
        with("leaf version byte 2", "leaf_encoding", &|r| r.leaf[0] = 2),
        with("leaf cut short by one byte", "leaf_encoding", &|r| {
            r.leaf.pop();
        }),
        with("leaf with a trailing byte", "leaf_encoding", &|r| {
            r.leaf.push(0)
        }),
        with("document leaf_index 4", "leaf_index", &|r| r.leaf_index = 4),
        with("proof truncated", "inclusion_proof", &|r| {
            r.inclusion_proof.pop();
        }),
        with(
            "trailing garbage hash appended to the proof",
            "inclusion_proof",
            &|r| r.inclusion_proof.push(Hash::of(b"trailing garbage")),
        ),
        with("a bit of proof[1] flipped", "inclusion_proof", &|r| {
            r.inclusion_proof[1].0[5] ^= 0x08
        }),
        with("proof[0] and proof[1] swapped", "inclusion_proof", &|r| {
            r.inclusion_proof.swap(0, 1)
        }),
        with(
            "proof for the tree of size 4 with the checkpoint of size 9",
            "inclusion_proof",
            &|r| r.inclusion_proof = log.inclusion(3, 4),
        ),
        with("66 proof hashes", "proof_length", &|r| {
            r.inclusion_proof = vec![Hash::ZERO; 66]
        }),
        with(
            "checkpoint signed by node-1 only",
            "checkpoint_threshold",
            &|r| r.checkpoint = sign(&log.checkpoint(9, ORIGIN), &[&node(1)]),
        ),
        with(
            "checkpoint with a bad signature from node-1",
            "checkpoint_signature",
            &|r| r.checkpoint = flip_signature(&note9, 0),
        ),
        with("checkpoint of another origin", "checkpoint_origin", &|r| {
            r.checkpoint = sign(&log.checkpoint(9, OTHER_ORIGIN), &[&node(1), &node(2)])
        }),
        with("checkpoint truncated", "checkpoint_note", &|r| {
            r.checkpoint.truncate(r.checkpoint.len() / 2)
        }),
        with("format stateledger.receipt.v2", "format", &|r| {
            r.format = "stateledger.receipt.v2".into()
        }),
    ]);
    cases.push(case(
        "leaf 6 with the checkpoint of size 4, which does not cover it",
        K,
        json(&Receipt::new(
            &log.leaves[6],
            log.inclusion(3, 4),
            signed_main(&log, 4),
        )),
        Some("inclusion_proof"),
    ));
    cases.push(case(
        "leaf 0 with a checkpoint of size 2^63 + 1 and a proof of 4 hashes (64 expected)",
        K,
        json(&Receipt::new(
            &log.leaves[0],
            log.inclusion(0, 9),
            huge_checkpoint(&log),
        )),
        Some("inclusion_proof"),
    ));
    let good_json = json(&good);
    let b64_hash0 = good.inclusion_proof[0].to_base64();
    cases.extend([
        case(
            "leaf 3: unknown field \"comment\"",
            K,
            good_json.replacen('{', "{\"comment\":\"hello\",", 1),
            Some("document"),
        ),
        case(
            "leaf 3: leaf_index as a string",
            K,
            good_json.replacen("\"leaf_index\":3", "\"leaf_index\":\"3\"", 1),
            Some("document"),
        ),
        case(
            "leaf 3: negative leaf_index",
            K,
            good_json.replacen("\"leaf_index\":3", "\"leaf_index\":-3", 1),
            Some("document"),
        ),
        case(
            "leaf 3: proof[0] of 31 bytes",
            K,
            good_json.replacen(
                &b64_hash0,
                &base64::engine::general_purpose::STANDARD.encode([7u8; 31]),
                1,
            ),
            Some("document"),
        ),
        case(
            "leaf 3: leaf is not base64",
            K,
            good_json.replacen("\"leaf\":\"", "\"leaf\":\"!", 1),
            Some("document"),
        ),
        case(
            "leaf 3: JSON cut in half",
            K,
            good_json[..good_json.len() / 2].to_string(),
            Some("document"),
        ),
        case(
            "leaf 3: no format field",
            K,
            good_json.replacen("\"format\":\"stateledger.receipt.v1\",", "", 1),
            Some("document"),
        ),
        case(
            "leaf 3: a duplicate leaf_index field",
            K,
            good_json.replacen("\"leaf_index\":3", "\"leaf_index\":3,\"leaf_index\":3", 1),
            Some("document"),
        ),
    ]);

    let rogue = rogue_log();
    let rogue_note = sign(&rogue_checkpoint(&rogue), &[&node(1), &node(2)]);
    let rogue_receipt = |index: u64| {
        json(&Receipt::new(
            &rogue.leaves[index as usize],
            rogue.inclusion(index, 5),
            rogue_note.clone(),
        ))
    };
    cases.extend([
        case(
            "rogue log leaf 0: signed by the orders writer, leaf names the billing writer's key",
            K,
            rogue_receipt(0),
            Some("writer_signature"),
        ),
        case(
            "rogue log leaf 1: writer signature without the domain separator",
            K,
            rogue_receipt(1),
            Some("writer_signature"),
        ),
        case(
            "rogue log leaf 2: non-canonical record bytes, properly signed",
            K,
            rogue_receipt(2),
            Some("record"),
        ),
        case(
            "rogue log leaf 3: partial config snapshot, properly signed",
            K,
            rogue_receipt(3),
            Some("record"),
        ),
        case(
            "rogue log leaf 4: ledger time after the checkpoint time",
            K,
            rogue_receipt(ROGUE_LATE_LEAF),
            Some("leaf_time"),
        ),
    ]);
    finish(
        "Receipts (stateledger.receipt.v1): leaf bytes, leaf index, inclusion proof and a \
         checkpoint note, to verify against trust_policy.json. Valid cases cover every leaf of \
         the main log; the rogue log's leaves are included in a trusted checkpoint but must \
         still fail the record, writer signature and time checks. document is the exact file \
         content; check is the failed check stateledger verify names.",
        cases,
    )
}

pub fn consistency_documents_file() -> DocumentsFile {
    const K: &str = "consistency_proof";
    let log = main_log();
    let doc = |old: u64, new: u64| {
        ConsistencyDocument::new(
            signed_main(&log, old),
            signed_main(&log, new),
            log.consistency(old, new),
        )
    };
    let mut cases = Vec::new();
    for (old, new) in [
        (1, 9),
        (4, 7),
        (4, 9),
        (5, 9),
        (7, 9),
        (8, 9),
        (0, 9),
        (0, 0),
        (9, 9),
    ] {
        cases.push(case(
            &format!("size {old} to size {new}"),
            K,
            json(&doc(old, new)),
            None,
        ));
    }
    let good = doc(5, 9);
    let with = |name: &str, check: &str, change: &dyn Fn(&mut ConsistencyDocument)| {
        let mut d = good.clone();
        change(&mut d);
        case(&format!("size 5 to 9: {name}"), K, json(&d), Some(check))
    };
    cases.extend([
        with("checkpoints swapped", "consistency_proof", &|d| {
            std::mem::swap(&mut d.old_checkpoint, &mut d.new_checkpoint)
        }),
        with("proof truncated", "consistency_proof", &|d| {
            d.proof.pop();
        }),
        with(
            "trailing garbage hash appended to the proof",
            "consistency_proof",
            &|d| d.proof.push(Hash::of(b"trailing garbage")),
        ),
        with("a bit of proof[0] flipped", "consistency_proof", &|d| {
            d.proof[0].0[0] ^= 0x01
        }),
        with(
            "a bit of the last proof hash flipped",
            "consistency_proof",
            &|d| {
                let last = d.proof.len() - 1;
                d.proof[last].0[31] ^= 0x80
            },
        ),
        with(
            "proof for 4 to 9 with the checkpoint of size 5",
            "consistency_proof",
            &|d| d.proof = log.consistency(4, 9),
        ),
        with(
            "old checkpoint of size 4 with the proof for size 5",
            "consistency_proof",
            &|d| d.old_checkpoint = signed_main(&log, 4),
        ),
        with(
            "old checkpoint signed by node-2 only",
            "checkpoint_threshold",
            &|d| d.old_checkpoint = sign(&log.checkpoint(5, ORIGIN), &[&node(2)]),
        ),
        with(
            "new checkpoint with a bad signature from node-2",
            "checkpoint_signature",
            &|d| d.new_checkpoint = flip_signature(&d.new_checkpoint, 1),
        ),
        with(
            "new checkpoint of another origin",
            "checkpoint_origin",
            &|d| d.new_checkpoint = sign(&log.checkpoint(9, OTHER_ORIGIN), &[&node(1), &node(2)]),
        ),
        with(
            "old checkpoint body with a changed root",
            "checkpoint_signature",
            &|d| {
                let root = log.checkpoint(5, ORIGIN).root.to_base64();
                d.old_checkpoint = d
                    .old_checkpoint
                    .replacen(&root, &flip_base64_hash(&root), 1)
            },
        ),
        with("66 proof hashes", "proof_length", &|d| {
            d.proof = vec![Hash::ZERO; 66]
        }),
        with("format stateledger.consistency_proof.v0", "format", &|d| {
            d.format = "stateledger.consistency_proof.v0".into()
        }),
    ]);
    let same = doc(9, 9);
    let mut same_with_proof = same.clone();
    same_with_proof.proof = log.consistency(8, 9);
    cases.push(case(
        "size 9 to 9 with a non-empty proof",
        K,
        json(&same_with_proof),
        Some("consistency_proof"),
    ));
    let rogue = rogue_log();
    let rogue_note = sign(&rogue_checkpoint(&rogue), &[&node(1), &node(2)]);
    cases.push(case(
        "fork: the rogue log at size 5 to the main log at size 9",
        K,
        json(&ConsistencyDocument::new(
            rogue_note.clone(),
            signed_main(&log, 9),
            log.consistency(5, 9),
        )),
        Some("consistency_proof"),
    ));
    cases.push(case(
        "fork: the main log and the rogue log, both at size 5",
        K,
        json(&ConsistencyDocument::new(
            signed_main(&log, 5),
            rogue_note,
            Vec::new(),
        )),
        Some("consistency_proof"),
    ));
    cases.push(case(
        "size 1 to a checkpoint of size 2^63 + 1 with the proof for size 9",
        K,
        json(&ConsistencyDocument::new(
            signed_main(&log, 1),
            huge_checkpoint(&log),
            log.consistency(1, 9),
        )),
        Some("consistency_proof"),
    ));
    let good_json = json(&good);
    cases.extend([
        case(
            "size 5 to 9: no proof field",
            K,
            {
                let at = good_json.find(",\"proof\":").expect("has a proof");
                format!("{}}}", &good_json[..at])
            },
            Some("document"),
        ),
        case(
            "size 5 to 9: unknown field \"leaf\"",
            K,
            good_json.replacen('{', "{\"leaf\":\"AA==\",", 1),
            Some("document"),
        ),
        case(
            "size 5 to 9: proof is a string",
            K,
            {
                let at = good_json.find(",\"proof\":").expect("has a proof");
                format!("{},\"proof\":\"none\"}}", &good_json[..at])
            },
            Some("document"),
        ),
    ]);
    finish(
        "Consistency proof documents (stateledger.consistency_proof.v1): two checkpoint notes \
         and the proof that the old tree is a prefix of the new one, to verify against \
         trust_policy.json. document is the exact file content; check is the failed check \
         stateledger verify names.",
        cases,
    )
}

/// What a verified document is.
pub fn kind_of(v: &Verified) -> &'static str {
    match v {
        Verified::Receipt(_) => "receipt",
        Verified::Consistency(_) => "consistency_proof",
        Verified::StateProof(_) => "state_proof",
        Verified::Checkpoint(_) => "checkpoint",
    }
}

/// Checks one document case as recorded, the way `stateledger verify` does.
pub fn assert_document_case(policy: &TrustPolicy, c: &DocumentCase) {
    let got = Document::parse(c.document.as_bytes()).and_then(|d| d.verify(policy));
    match (c.valid, c.check.as_deref(), got) {
        (true, None, Ok(v)) => assert_eq!(kind_of(&v), c.kind, "{}", c.name),
        (false, Some(check), Err(e)) => assert_eq!(e.check(), check, "{}: {e}", c.name),
        (valid, check, Ok(v)) => panic!(
            "{}: recorded valid={valid} check={check:?}, but it verifies as a {}",
            c.name,
            kind_of(&v)
        ),
        (valid, check, Err(e)) => panic!(
            "{}: recorded valid={valid} check={check:?}, but it fails {}: {e}",
            c.name,
            e.check()
        ),
    }
}
