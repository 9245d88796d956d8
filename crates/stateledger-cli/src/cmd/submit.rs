//! `stateledger submit` (sign and submit records from JSON) and `stateledger grant` (an admin
//! policy record allowing a writer to append for a system).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use stateledger_core::note::NoteSigner;
use stateledger_core::record::pb;

use stateledger_client::{policy, ClientError};

use super::output::OutputArgs;
use super::profile::ProfileArgs;
use crate::{errln, outln};

pub const SUBMIT_HELP: &str = "\
Examples:
  stateledger collect code --system orders-service --repo . | stateledger submit --key keys/orders-collector.key
  stateledger submit --key keys/orders-collector.key records.jsonl --out receipts/
  stateledger submit --key keys/orders-collector.key --no-receipts records.json

Input: records as JSON (the output of `stateledger collect`), one object per line or one array;
all are appended or none. Output: one verified receipt per record (JSON lines, docs/PROOFS.md
§7.1), or with --no-receipts one {\"leaf_index\", \"ledger_time\"} per record; the same in
both output formats.

Exit status:
  0  every record was appended (and its receipt verified)
  2  none was: invalid records, a writer without a grant (the fix is named), no answer within
     --timeout";

pub const GRANT_HELP: &str = "\
Examples:
  stateledger keygen --name orders-collector --out keys
  stateledger grant --system orders-service --writer keys/orders-collector.pub
  stateledger grant --system orders-service --writer keys/orders-collector.pub --revoke
  stateledger grant --system orders-service --writer 'orders-collector+1a2b3c4d+AU...' --output json

The grant is a policy record signed with the admin key (--admin-key, or the profile's
admin_signing_key).

Exit status:
  0  the grant (or revocation) was appended
  2  it was not: no admin key, a key that is not an admin key, no answer within --timeout";

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Writer key (C2SP signer key file from `stateledger keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Records as JSON: one object per line, or one JSON array. "-" (default) reads stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Fill in observed_at_unix_nanos with the current time when a record has none
    /// (--stamp false leaves such records invalid).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
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
    #[command(flatten)]
    pub output: OutputArgs,
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
    let cluster = args.profile.connect()?;
    let systems: Vec<String> = {
        let mut s: Vec<String> = records.iter().map(|r| r.system.clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    super::runtime()?.block_on(async {
        let submitted = match cluster
            .client
            .sign_and_submit(records, signer.signing_key())
            .await
        {
            Ok(s) => s,
            Err(ClientError::Rejected {
                code: tonic::Code::PermissionDenied,
                message,
            }) => return Err(not_granted(&signer, &args.key, &systems, &message)),
            Err(e) => {
                return Err(super::profile::explain(
                    e,
                    "the records to be appended",
                    &cluster.profile.endpoints,
                    cluster.timeout,
                ))
            }
        };
        errln!(
            "appended {} records (leaves {}..={})",
            submitted.len(),
            submitted[0].index,
            submitted[submitted.len() - 1].index
        );
        for s in submitted {
            if args.no_receipts {
                outln!(
                    "{}",
                    serde_json::json!({"leaf_index": s.index, "ledger_time": s.ledger_time})
                )?;
                continue;
            }
            let (receipt, _) = cluster
                .wait(
                    &format!("the receipt of leaf {}", s.index),
                    cluster.client.receipt(s.index, cluster.server_wait()),
                )
                .await?;
            match &args.out {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {} (--out)", dir.display()))?;
                    let path = dir.join(format!("receipt-{}.json", s.index));
                    std::fs::write(
                        &path,
                        format!("{}\n", serde_json::to_string_pretty(&receipt)?),
                    )
                    .with_context(|| format!("cannot write {}", path.display()))?;
                    errln!("wrote {}", path.display());
                }
                None => outln!("{}", serde_json::to_string(&receipt)?)?,
            }
        }
        Ok(())
    })
}

/// A submission refused because the writer holds no grant: said with the writer's name and the
/// command that fixes it (the node knows only the key).
fn not_granted(
    signer: &NoteSigner,
    key_path: &std::path::Path,
    systems: &[String],
    node_message: &str,
) -> anyhow::Error {
    let verifier = signer.verifier();
    let pub_file = key_path.with_extension("pub");
    let writer_arg = if pub_file.exists() {
        pub_file.display().to_string()
    } else {
        format!("'{}'", verifier.to_text())
    };
    let fixes = systems
        .iter()
        .map(|s| format!("`stateledger grant --system {s} --writer {writer_arg}`"))
        .collect::<Vec<_>>()
        .join(", ");
    anyhow::anyhow!(
        "writer {:?} (key {}, from --key {}) may not append records for {}: the ledger refused \
         them ({node_message}); an admin grants it with {fixes}",
        verifier.name,
        hex::encode(verifier.key.to_bytes()),
        key_path.display(),
        systems
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

pub fn run_grant(args: GrantArgs) -> anyhow::Result<()> {
    let profile = args.profile.load()?;
    let admin_key = args
        .admin_key
        .clone()
        .or(profile.admin_signing_key.clone())
        .context("no admin key: pass --admin-key FILE or set admin_signing_key in the profile")?;
    let admin = read_signer(&admin_key)?;
    let writer = super::cluster::read_vkey(&args.writer).context("--writer")?;
    let record = if args.revoke {
        policy::revoke(&args.system, &writer, now_nanos())
    } else {
        policy::grant(&args.system, &writer, now_nanos())
    };
    let cluster = args.profile.connect()?;
    let appended = super::runtime()?.block_on(async {
        cluster
            .wait(
                "the policy record to be appended",
                cluster
                    .client
                    .sign_and_submit(vec![record], admin.signing_key()),
            )
            .await
    })?;
    let action = if args.revoke { "revoked" } else { "granted" };
    if args.output.is_json() {
        return super::output::json(&serde_json::json!({
            "action": action,
            "system": args.system,
            "writer": writer.name,
            "writer_key": writer.to_text(),
            "leaf_index": appended[0].index,
            "ledger_time": appended[0].ledger_time,
        }));
    }
    outln!(
        "{action} {} for system {:?} at leaf {}",
        writer.name,
        args.system,
        appended[0].index
    )
}
