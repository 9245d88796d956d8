//! `stateledger certs`: the cluster's PKI — a cluster CA, and node, admin and client certificates
//! that name their role and identity (`stateledger:node:<id>` and so on, docs/SECURITY.md). Private
//! keys are written mode 0600; nothing is overwritten without `--force`; `--if-missing` keeps what
//! exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use stateledger_node::tls::dev_ca::DevCa;
use stateledger_node::tls::identity::{check_name, PeerIdentity};

use super::keygen::write_private;
use super::output::OutputArgs;
use crate::outln;

pub const HELP: &str = "\
Examples:
  stateledger certs ca --out pki                                   # pki/ca.pem, pki/ca.key.pem
  stateledger certs node --ca pki --id 1 --host node-1.example --host 10.0.0.1 --out pki
  stateledger certs admin --ca pki --name alice --out pki          # pki/alice.pem, alice.key.pem
  stateledger certs client --ca pki --name orders-app --out pki

A node's certificate (stateledger:node:<id>, file node-<id>.pem unless --name) is valid as TLS
server and client for the --host names and addresses; an admin's or a client's only as TLS client.
Keep ca.key.pem offline once the certificates are issued: whoever holds it can issue any identity.
With --output json: {\"identity\", \"cert_file\", \"key_file\", \"not_after\"}. --if-missing
leaves an existing certificate and key untouched (not_after is then null): for provisioning that
runs again, like deploy/compose.yaml's init services.

Exit status:
  0  the certificate and key were written (or, with --if-missing, both already existed)
  2  they were not: a file exists (--force overwrites), the CA key is missing or does not match
     ca.pem, a bad name or host, --out not writable";

#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// Make a cluster CA: ca.pem (give it to every node and client) and ca.key.pem (keep it offline).
    #[command(after_help = HELP)]
    Ca(CaArgs),
    /// Issue a node's certificate (stateledger:node:<id>), TLS server and client.
    #[command(after_help = HELP)]
    Node(NodeArgs),
    /// Issue an admin's certificate (stateledger:admin:<name>): may change the membership.
    #[command(after_help = HELP)]
    Admin(PartyArgs),
    /// Issue a client's certificate (stateledger:client:<name>).
    #[command(after_help = HELP)]
    Client(PartyArgs),
}

#[derive(clap::Args, Debug)]
pub struct CaArgs {
    /// Directory to write ca.pem and ca.key.pem into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Days the CA certificate is valid.
    #[arg(long, default_value_t = 3650)]
    days: u64,
    /// Overwrite existing files.
    #[arg(long, conflicts_with = "if_missing")]
    force: bool,
    /// If both files already exist, keep them and succeed: provisioning that runs again (an init
    /// container) leaves the PKI as it is. One file without the other is still an error.
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct Issue {
    /// Directory holding the CA (ca.pem and ca.key.pem, from `stateledger certs ca`).
    #[arg(long)]
    ca: PathBuf,
    /// Directory to write <name>.pem and <name>.key.pem into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Overwrite existing files.
    #[arg(long, conflicts_with = "if_missing")]
    force: bool,
    /// If both files already exist, keep them and succeed: provisioning that runs again (an init
    /// container) leaves the PKI as it is. One file without the other is still an error.
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The node's Raft id (as in its configuration's node.id).
    #[arg(long)]
    id: u64,
    /// Common name and file name (default node-<id>).
    #[arg(long)]
    name: Option<String>,
    /// A host name or IP address the node is reached at (repeat for several).
    #[arg(long = "host", required = true)]
    hosts: Vec<String>,
    #[command(flatten)]
    issue: Issue,
}

#[derive(clap::Args, Debug)]
pub struct PartyArgs {
    /// The admin's or client's name (letters, digits, '.', '_', '-'; at most 64 bytes).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    issue: Issue,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Ca(args) => make_ca(args),
        CertsCommand::Node(args) => {
            if args.id == 0 {
                bail!("--id must be a node id of 1 or more (as node.id in its configuration)");
            }
            let name = args.name.unwrap_or_else(|| format!("node-{}", args.id));
            check_name(&name).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
            for h in &args.hosts {
                let dns = !h.is_empty()
                    && h.len() <= 253
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !dns && h.parse::<std::net::IpAddr>().is_err() {
                    bail!("--host {h:?} is not a host name or IP address");
                }
            }
            issue(
                &args.issue,
                &PeerIdentity::Node(args.id),
                &name,
                &args.hosts,
            )
        }
        CertsCommand::Admin(args) => {
            check_name(&args.name).map_err(|e| anyhow::anyhow!("--name {:?}: {e}", args.name))?;
            issue(
                &args.issue,
                &PeerIdentity::Admin(args.name.clone()),
                &args.name,
                &[],
            )
        }
        CertsCommand::Client(args) => {
            check_name(&args.name).map_err(|e| anyhow::anyhow!("--name {:?}: {e}", args.name))?;
            issue(
                &args.issue,
                &PeerIdentity::Client(args.name.clone()),
                &args.name,
                &[],
            )
        }
    }
}

fn days(n: u64) -> anyhow::Result<Duration> {
    if n == 0 || n > 100 * 366 {
        bail!("--days {n}: give a validity of 1 to 36600 days");
    }
    Ok(Duration::from_secs(n * 86_400))
}

/// The certificate's end of validity, for people (UTC date).
fn not_after(valid_for: Duration) -> String {
    let at = std::time::SystemTime::now() + valid_for;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .map(|t| format!("{}Z", t.date()))
        .unwrap_or_else(|_| secs.to_string())
}

/// Whether to write `files`: yes if none exists or `force`; no if all exist and `if_missing`;
/// otherwise an error naming the file that exists.
fn should_write(force: bool, if_missing: bool, files: &[&Path]) -> anyhow::Result<bool> {
    if force {
        return Ok(true);
    }
    let existing: Vec<&&Path> = files.iter().filter(|f| f.exists()).collect();
    match existing.first() {
        None => Ok(true),
        Some(_) if if_missing && existing.len() == files.len() => Ok(false),
        Some(f) if if_missing => bail!(
            "{} exists but not the rest of {}; remove it or pass --force to overwrite",
            f.display(),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        Some(f) => bail!(
            "{} already exists; pass --force to overwrite (or --if-missing to keep it)",
            f.display()
        ),
    }
}

/// The output directory, readable by the owner only when created here (it holds keys).
fn create_out(dir: &Path) -> anyhow::Result<()> {
    stateledger_node::store::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn make_ca(args: CaArgs) -> anyhow::Result<()> {
    let valid_for = days(args.days)?;
    let cert_path = args.out.join("ca.pem");
    let key_path = args.out.join("ca.key.pem");
    if !should_write(args.force, args.if_missing, &[&cert_path, &key_path])? {
        return kept(&args.output, "cluster CA", &cert_path, &key_path);
    }
    create_out(&args.out)?;
    let ca = DevCa::generate_valid(Some(valid_for)).context("generating the CA")?;
    write_private(&key_path, &ca.key_pem())?;
    std::fs::write(&cert_path, ca.cert_pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    report(
        &args.output,
        "cluster CA",
        &cert_path,
        &key_path,
        &not_after(valid_for),
    )
}

fn issue(
    args: &Issue,
    identity: &PeerIdentity,
    name: &str,
    hosts: &[String],
) -> anyhow::Result<()> {
    let valid_for = days(args.days)?;
    let ca_cert = args.ca.join("ca.pem");
    let ca_key = args.ca.join("ca.key.pem");
    let key_pem = std::fs::read_to_string(&ca_key).with_context(|| {
        format!(
            "cannot read the CA key {} (make one with `stateledger certs ca --out {}`)",
            ca_key.display(),
            args.ca.display()
        )
    })?;
    let ca_pem = std::fs::read_to_string(&ca_cert)
        .with_context(|| format!("cannot read the CA certificate {}", ca_cert.display()))?;
    let ca = DevCa::from_key_pem(&key_pem)
        .map_err(|e| anyhow::anyhow!("{} is not a CA key: {e}", ca_key.display()))?;
    match ca.is_key_of(&ca_pem) {
        Ok(true) => {}
        Ok(false) => bail!(
            "{} is not the key of {}: certificates it issued would not chain to it",
            ca_key.display(),
            ca_cert.display()
        ),
        Err(e) => bail!("{}: {e}", ca_cert.display()),
    }
    let cert_path = args.out.join(format!("{name}.pem"));
    let key_path = args.out.join(format!("{name}.key.pem"));
    if !should_write(args.force, args.if_missing, &[&cert_path, &key_path])? {
        return kept(&args.output, &identity.uri(), &cert_path, &key_path);
    }
    create_out(&args.out)?;
    let (cert, key) = ca
        .issue_valid(identity, name, hosts, Some(valid_for))
        .map_err(|e| anyhow::anyhow!("cannot issue the certificate: {e}"))?;
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    report(
        &args.output,
        &identity.uri(),
        &cert_path,
        &key_path,
        &not_after(valid_for),
    )
}

/// `--if-missing` found both files: says so, in the shape of [`report`].
fn kept(output: &OutputArgs, identity: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    if output.is_json() {
        return super::output::json(&serde_json::json!({
            "identity": identity,
            "cert_file": cert,
            "key_file": key,
            "not_after": null,
            "kept": true,
        }));
    }
    outln!(
        "{identity}: kept the existing {} and {}",
        cert.display(),
        key.display()
    )?;
    Ok(())
}

fn report(
    output: &OutputArgs,
    identity: &str,
    cert: &Path,
    key: &Path,
    not_after: &str,
) -> anyhow::Result<()> {
    if output.is_json() {
        return super::output::json(&serde_json::json!({
            "identity": identity,
            "cert_file": cert,
            "key_file": key,
            "not_after": not_after,
        }));
    }
    outln!(
        "{identity}: {} (key {}, mode 0600), valid until {not_after}",
        cert.display(),
        key.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_args(out: &Path, force: bool, if_missing: bool) -> CaArgs {
        CaArgs {
            out: out.to_path_buf(),
            days: 10,
            force,
            if_missing,
            output: OutputArgs::default(),
        }
    }

    #[test]
    fn if_missing_keeps_a_complete_pair_and_refuses_half_of_one() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let out = tmp.path().join("pki");
        make_ca(ca_args(&out, false, true)).expect("made the first time");
        let ca = std::fs::read_to_string(out.join("ca.pem")).expect("read");
        make_ca(ca_args(&out, false, true)).expect("kept the second time");
        assert_eq!(
            std::fs::read_to_string(out.join("ca.pem")).expect("read"),
            ca
        );
        let err = make_ca(ca_args(&out, false, false)).expect_err("exists");
        assert!(err.to_string().contains("--if-missing"), "{err}");
        std::fs::remove_file(out.join("ca.key.pem")).expect("rm");
        let err = make_ca(ca_args(&out, false, true)).expect_err("half a pair");
        assert!(err.to_string().contains("not the rest of"), "{err}");
        make_ca(ca_args(&out, true, false)).expect("--force replaces it");
        assert_ne!(
            std::fs::read_to_string(out.join("ca.pem")).expect("read"),
            ca
        );
    }
}
