//! `stateledger receipt | checkpoint | consistency`: fetch proof documents, verified on receipt.

use anyhow::bail;
use stateledger_core::trust::VerifiedCheckpoint;

use super::output::OutputArgs;
use super::profile::ProfileArgs;

pub const RECEIPT_HELP: &str = "\
Examples:
  stateledger receipt --index 7 > receipt-7.json
  stateledger verify --trust stateledger-dev/trust_policy.json receipt-7.json

Output: the receipt document (docs/PROOFS.md §7.1), in both output formats.

Exit status:
  0  the receipt was fetched and verified against the profile's trust policy
  2  it could not be: the cluster did not answer within --timeout, the leaf does not exist,
     or what a node sent does not verify";

pub const CHECKPOINT_HELP: &str = "\
Examples:
  stateledger checkpoint                         # the latest published checkpoint
  stateledger checkpoint --covering now          # one whose time covers this instant
  stateledger checkpoint --size 12 --output json # the one published at exactly 12 leaves

Exit status:
  0  the checkpoint was fetched and verified against the profile's trust policy
  2  it could not be (no answer within --timeout, no checkpoint of that size, or it does
     not verify)";

pub const CONSISTENCY_HELP: &str = "\
Examples:
  stateledger consistency --old 8 --new 12 > consistency.json
  stateledger verify --trust stateledger-dev/trust_policy.json consistency.json

Both sizes must be sizes at which a checkpoint was published; when one is not, the error says
which published sizes are nearest. Output: the consistency proof document (docs/PROOFS.md
§7.2), in both output formats.

Exit status:
  0  the proof was fetched and verified
  2  it could not be: --old larger than --new, no checkpoint published at a size, no answer
     within --timeout, or the proof does not verify";

#[derive(clap::Args, Debug)]
pub struct ReceiptArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Index of the leaf to prove (leaves are numbered from 0 in log order).
    #[arg(long)]
    pub index: u64,
}

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Ledger time (RFC 3339, ns since the epoch, or "now") the checkpoint must cover.
    #[arg(long, conflicts_with = "size", value_parser = super::time::parse_time)]
    pub covering: Option<u64>,
    /// The checkpoint published at exactly this many leaves.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub size: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Size of the older checkpoint: a size at which a checkpoint was published (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub old: u64,
    /// Size of the newer checkpoint: a published size, at least --old.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub new: u64,
}

pub fn run_receipt(args: ReceiptArgs) -> anyhow::Result<()> {
    let cluster = args.profile.connect()?;
    let receipt = super::runtime()?.block_on(async {
        cluster
            .wait(
                &format!("a receipt for leaf {}", args.index),
                cluster.client.receipt(args.index, cluster.server_wait()),
            )
            .await
    })?;
    super::output::json(&receipt.0)
}

/// A verified checkpoint as `--output json` prints it (docs/CLI.md).
pub fn checkpoint_json(cp: &VerifiedCheckpoint) -> serde_json::Value {
    let c = &cp.checkpoint;
    serde_json::json!({
        "origin": c.origin,
        "size": c.size.0,
        "root": c.root.to_base64(),
        "time": c.time.0,
        "heads": c.heads_root.to_base64(),
        "signers": cp.signers,
        "note": cp.note.to_text(),
    })
}

pub fn run_checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let covering = args.covering.unwrap_or(0);
    let cluster = args.profile.connect()?;
    let cp = super::runtime()?.block_on(async {
        match args.size {
            Some(size) => {
                cluster
                    .wait(
                        &format!("the checkpoint of size {size}"),
                        cluster.client.checkpoint_at(size),
                    )
                    .await
            }
            None => {
                cluster
                    .wait(
                        "a checkpoint",
                        cluster
                            .client
                            .checkpoint(0, covering, cluster.server_wait()),
                    )
                    .await
            }
        }
    })?;
    if args.output.is_json() {
        super::output::json(&checkpoint_json(&cp))
    } else {
        super::output::text(&cp.note.to_text())
    }
}

pub fn run_consistency(args: ConsistencyArgs) -> anyhow::Result<()> {
    if args.old > args.new {
        bail!(
            "--old {} is larger than --new {}: a consistency proof goes from an older (smaller) \
             checkpoint to a newer one; swap them",
            args.old,
            args.new
        );
    }
    let cluster = args.profile.connect()?;
    let doc = super::runtime()?.block_on(async {
        let old = cluster
            .wait(
                &format!("the checkpoint of size {} (--old)", args.old),
                cluster.client.checkpoint_at(args.old),
            )
            .await?;
        let new = cluster
            .wait(
                &format!("the checkpoint of size {} (--new)", args.new),
                cluster.client.checkpoint_at(args.new),
            )
            .await?;
        cluster
            .wait(
                &format!("a consistency proof from size {} to {}", args.old, args.new),
                cluster.client.consistency_document(&old, &new),
            )
            .await
    })?;
    super::output::json(&doc)
}
