//! `stateledger keygen`: an ed25519 key pair as C2SP signed-note keys.
//!
//! `<name>.key` holds `PRIVATE+KEY+<name>+<id>+<base64>` (mode 0600); `<name>.pub` holds the
//! verifier key `<name>+<id>+<base64>` that trust policies and cluster configs name.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use rand::RngCore as _;
use stateledger_core::note::NoteSigner;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Key name (no spaces or '+'), e.g. node-1, admin, orders-collector.
    #[arg(long)]
    name: String,
    /// Directory to write <name>.key and <name>.pub into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signer = NoteSigner::from_seed(&args.name, &seed).context("choose another key name")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let key_path = args.out.join(format!("{}.key", args.name));
    let pub_path = args.out.join(format!("{}.pub", args.name));
    if !args.force && (key_path.exists() || pub_path.exists()) {
        bail!(
            "{} or {} already exists; pass --force to overwrite",
            key_path.display(),
            pub_path.display()
        );
    }
    write_private(&key_path, &format!("{}\n", signer.to_text()))?;
    std::fs::write(&pub_path, format!("{}\n", signer.verifier().to_text()))
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    println!("{}", signer.verifier().to_text());
    eprintln!(
        "wrote {} (private, mode 0600) and {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes a private key readable by the owner only.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
