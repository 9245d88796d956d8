//! `stateledger demo`: the README's first command.
//!
//! For now it walks through the proof core offline: three node keys, a Merkle log of signed
//! records, a checkpoint cosigned by a quorum, a receipt — and verifies it as an auditor would.
//! It grows into the full cluster story as the cluster lands.

use anyhow::Context as _;
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::documents::Receipt;
use stateledger_core::heads::{Head, HeadMap, SystemKey};
use stateledger_core::leaf::Leaf;
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::{inclusion_proof, Frontier, LeafIndex, MemoryNodeStore};
use stateledger_core::note::{Note, NoteSigner};
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::trust::TrustPolicy;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let nodes: Vec<NoteSigner> = (1..=3u8)
        .map(|i| NoteSigner::from_seed(&format!("node-{i}"), &[i; 32]))
        .collect::<Result<_, _>>()?;
    let writer = NoteSigner::from_seed("orders-collector", &[9; 32])?;
    let origin = "stateledger.demo/offline";

    let mut frontier = Frontier::new();
    let mut store = MemoryNodeStore::new();
    let mut heads = HeadMap::new();
    let mut leaves = Vec::new();
    let t0 = 1_764_000_000_000_000_000u64;
    for (i, commit) in ["1f3a", "2b4c", "3c5d"].iter().enumerate() {
        let record = pb::Record {
            system: "orders-service".into(),
            scope: "prod/eu-west-1".into(),
            observed_at_unix_nanos: t0 + i as u64,
            body: Some(Body::Code(pb::CodeState {
                repo: "github.com/acme/orders-service".into(),
                commit: commit.repeat(10),
                ..Default::default()
            })),
        };
        let signed =
            CheckedRecord::sign(record, writer.signing_key()).context("demo record is valid")?;
        let leaf = Leaf {
            index: LeafIndex(i as u64),
            ledger_time: LedgerTime(t0 + 1000 * i as u64),
            prev: i.checked_sub(1).map(|p| LeafIndex(p as u64)),
            writer_key: signed.writer_key,
            signature: signed.signature,
            record: signed.bytes,
        };
        let h = leaf.leaf_hash();
        frontier.append(h, |_, _| {});
        store.append(h);
        heads.insert(
            SystemKey::of("orders-service"),
            Head {
                index: leaf.index,
                count: i as u64 + 1,
            },
        );
        leaves.push(leaf);
    }
    let checkpoint = Checkpoint {
        origin: origin.into(),
        size: frontier.size(),
        root: frontier.root(),
        time: leaves[2].ledger_time,
        heads_root: heads.root(),
    };
    let note = Note::sign(&checkpoint.to_text(), &[&nodes[0], &nodes[1]]);
    println!(
        "checkpoint cosigned by node-1 and node-2:\n{}",
        note.to_text()
    );
    let proof = inclusion_proof(&store, LeafIndex(1), frontier.size())?;
    let receipt = Receipt::new(&leaves[1], proof, note.to_text());
    let policy = TrustPolicy::new(origin, 2, nodes.iter().map(NoteSigner::verifier).collect())?;
    let summary = receipt.verify(&policy)?;
    println!(
        "receipt for leaf {} of {:?} verified offline against a 2-of-3 trust policy",
        summary.leaf.index, summary.record.system
    );
    Ok(())
}
