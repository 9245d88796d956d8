//! `stateledger receipt | checkpoint | consistency`: fetch proof documents, verified on receipt.

use std::time::Duration;

use super::profile::ProfileArgs;

#[derive(clap::Args, Debug)]
pub struct ReceiptArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Leaf index.
    #[arg(long)]
    pub index: u64,
}

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Ledger time (RFC 3339, ns since the epoch, or "now") the checkpoint must cover.
    #[arg(long)]
    pub covering: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[arg(long)]
    pub old: u64,
    #[arg(long)]
    pub new: u64,
}

pub fn run_receipt(args: ReceiptArgs) -> anyhow::Result<()> {
    let client = args.profile.load()?.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let (receipt, _) = client.receipt(args.index, Duration::from_secs(10)).await?;
        println!("{}", serde_json::to_string_pretty(&receipt)?);
        Ok(())
    })
}

pub fn run_checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let covering = args
        .covering
        .as_deref()
        .map(super::time::parse_time)
        .transpose()?
        .unwrap_or(0);
    let client = args.profile.load()?.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let cp = client
            .checkpoint(0, covering, Duration::from_secs(10))
            .await?;
        print!("{}", cp.note.to_text());
        Ok(())
    })
}

pub fn run_consistency(args: ConsistencyArgs) -> anyhow::Result<()> {
    let client = args.profile.load()?.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let old = client
            .checkpoint(args.old, 0, Duration::from_secs(10))
            .await?;
        let new = client
            .checkpoint(args.new, 0, Duration::from_secs(10))
            .await?;
        let doc = client.consistency_document(&old, &new).await?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        Ok(())
    })
}
