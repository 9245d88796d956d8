//! `stateledger submit` (sign and submit records from JSON) and `stateledger grant` (an admin
//! policy record allowing a writer to append for a system).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, Body};

use super::profile::ProfileArgs;

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Writer key (C2SP signer key file from `stateledger keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Records as JSON: one object per line, or one JSON array. "-" (default) reads stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Fill in observed_at_unix_nanos with the current time when a record has none.
    #[arg(long, default_value_t = true)]
    pub stamp: bool,
    /// Do not wait for receipts; print only leaf indexes.
    #[arg(long)]
    pub no_receipts: bool,
    /// Write each receipt to DIR/receipt-<index>.json instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct GrantArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// The system the writer may append for.
    #[arg(long)]
    pub system: String,
    /// The writer's public key: a .pub file or the key text.
    #[arg(long)]
    pub writer: String,
    /// Withdraw the grant instead.
    #[arg(long)]
    pub revoke: bool,
    /// Admin signing key (default: the profile's admin_signing_key).
    #[arg(long)]
    pub admin_key: Option<PathBuf>,
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

pub fn read_signer(path: &PathBuf) -> anyhow::Result<NoteSigner> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key {}", path.display()))?;
    NoteSigner::parse(&text)
        .with_context(|| format!("{} is not a signer key (PRIVATE+KEY+...)", path.display()))
}

/// Parses records from JSON text: a JSON array, or one object per line (blank lines skipped).
pub fn parse_records(text: &str) -> anyhow::Result<Vec<pb::Record>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).context("records JSON array is invalid");
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("line {}: not a record", i + 1))
        })
        .collect()
}

pub fn run_submit(args: SubmitArgs) -> anyhow::Result<()> {
    let signer = read_signer(&args.key)?;
    let mut text = String::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
    } else {
        text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
    }
    let mut records = parse_records(&text)?;
    if records.is_empty() {
        bail!("no records to submit");
    }
    if args.stamp {
        let now = now_nanos();
        for r in &mut records {
            if r.observed_at_unix_nanos == 0 {
                r.observed_at_unix_nanos = now;
            }
        }
    }
    let profile = args.profile.load()?;
    let client = profile.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let submitted = client
            .sign_and_submit(records, signer.signing_key())
            .await?;
        eprintln!(
            "appended {} records (leaves {}..={})",
            submitted.len(),
            submitted[0].index,
            submitted[submitted.len() - 1].index
        );
        for s in submitted {
            if args.no_receipts {
                println!(
                    "{}",
                    serde_json::json!({"leaf_index": s.index, "ledger_time": s.ledger_time})
                );
                continue;
            }
            let (receipt, _) = client.receipt(s.index, Duration::from_secs(10)).await?;
            let json = serde_json::to_string_pretty(&receipt)?;
            match &args.out {
                Some(dir) => {
                    std::fs::create_dir_all(dir)?;
                    let path = dir.join(format!("receipt-{}.json", s.index));
                    std::fs::write(&path, format!("{json}\n"))?;
                    eprintln!("wrote {}", path.display());
                }
                None => println!("{}", serde_json::to_string(&receipt)?),
            }
        }
        Ok(())
    })
}

pub fn run_grant(args: GrantArgs) -> anyhow::Result<()> {
    let profile = args.profile.load()?;
    let admin_key = args
        .admin_key
        .clone()
        .or(profile.admin_signing_key.clone())
        .context("no admin key: pass --admin-key or set admin_signing_key in the profile")?;
    let admin = read_signer(&admin_key)?;
    let writer = super::cluster::read_vkey(&args.writer)?;
    let grant = pb::WriterGrant {
        writer_key: writer.key.to_bytes().to_vec(),
        writer_name: writer.name.clone(),
    };
    let change = if args.revoke {
        pb::policy::Change::Revoke(grant)
    } else {
        pb::policy::Change::Grant(grant)
    };
    let record = pb::Record {
        system: args.system.clone(),
        scope: String::new(),
        observed_at_unix_nanos: now_nanos(),
        body: Some(Body::Policy(pb::Policy {
            change: Some(change),
        })),
    };
    let client = profile.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let s = client
            .sign_and_submit(vec![record], admin.signing_key())
            .await?;
        println!(
            "{} {} for system {:?} at leaf {}",
            if args.revoke { "revoked" } else { "granted" },
            writer.name,
            args.system,
            s[0].index
        );
        Ok(())
    })
}
