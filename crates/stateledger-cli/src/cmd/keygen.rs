//! `stateledger keygen`: an ed25519 key pair as C2SP signed-note keys.
//!
//! `<name>.key` holds `PRIVATE+KEY+<name>+<id>+<base64>` (mode 0600); `<name>.pub` holds the
//! verifier key `<name>+<id>+<base64>` that trust policies and cluster configs name.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use rand::RngCore as _;
use stateledger_core::note::NoteSigner;

use super::output::OutputArgs;
use crate::{errln, outln};

pub const HELP: &str = "\
Examples:
  stateledger keygen --name orders-collector --out keys     # keys/orders-collector.{key,pub}
  stateledger keygen --name node-4 --out keys --output json

Prints the verifier key text (what trust policies and grants name); with --output json
{\"name\", \"verifier_key\", \"key_file\", \"pub_file\"}.

Exit status:
  0  both files were written (or, with --if-missing, both already existed)
  2  they were not: an invalid name, a file exists (--force overwrites), --out not writable";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Key name (no spaces or '+'), e.g. node-1, admin, orders-collector.
    #[arg(long)]
    name: String,
    /// Directory to write <name>.key and <name>.pub into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long, conflicts_with = "if_missing")]
    force: bool,
    /// If both key files already exist, keep them, print the existing verifier key and succeed
    /// (provisioning that runs again). One file without the other is still an error.
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Refuses names that would not stay a plain file name inside `--out`: a `/` (or `\\`) would
/// put the files in another directory, and `.` or `..` as a name are path components.
/// [`NoteSigner`] checks the C2SP rules (no spaces, no '+', no control characters).
fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name.contains('/') || name.contains('\\') {
        bail!("key name {name:?} contains a path separator; the key files are written as <name>.key and <name>.pub inside --out, so name the key without '/' and choose the directory with --out");
    }
    if name == "." || name == ".." {
        bail!("key name {name:?} is a path component, not a name; choose another key name");
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_file_name(&args.name)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signer =
        NoteSigner::from_seed(&args.name, &seed).context("choose another key name (--name)")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let key_path = args.out.join(format!("{}.key", args.name));
    let pub_path = args.out.join(format!("{}.pub", args.name));
    let signer = if !args.force && args.if_missing && key_path.exists() && pub_path.exists() {
        // Kept: what is printed is the existing key's, checked against its .pub file.
        let text = std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let kept = NoteSigner::parse(&text)
            .with_context(|| format!("{} is not a signer key", key_path.display()))?;
        let public = std::fs::read_to_string(&pub_path)
            .with_context(|| format!("cannot read {}", pub_path.display()))?;
        if public.trim() != kept.verifier().to_text() || kept.verifier().name != args.name {
            bail!(
                "{} does not hold the verifier key of {} named {:?}; remove both or pass --force",
                pub_path.display(),
                key_path.display(),
                args.name
            );
        }
        kept
    } else {
        if !args.force && (key_path.exists() || pub_path.exists()) {
            bail!(
                "{} or {} already exists; pass --force to overwrite (--if-missing keeps a complete pair)",
                key_path.display(),
                pub_path.display()
            );
        }
        write_private(&key_path, &format!("{}\n", signer.to_text()))?;
        std::fs::write(&pub_path, format!("{}\n", signer.verifier().to_text()))
            .with_context(|| format!("cannot write {}", pub_path.display()))?;
        signer
    };
    if args.output.is_json() {
        return super::output::json(&serde_json::json!({
            "name": args.name,
            "verifier_key": signer.verifier().to_text(),
            "key_file": key_path,
            "pub_file": pub_path,
        }));
    }
    outln!("{}", signer.verifier().to_text())?;
    errln!(
        "wrote {} (private, mode 0600) and {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes a private key readable by the owner only. `mode` applies only when the file is created,
/// so the permissions are also set explicitly: an existing file (`--force`) with looser ones ends
/// with mode 0600 too. They are set on the open, truncated file before the key is written, so the
/// key is never readable by others, not even for a moment.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    fn args(name: &str, out: &std::path::Path, force: bool) -> Args {
        Args {
            name: name.to_string(),
            out: out.to_path_buf(),
            force,
            if_missing: false,
            output: OutputArgs::default(),
        }
    }

    #[test]
    fn if_missing_keeps_a_complete_pair_and_refuses_half_of_one() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let keep = |name: &str| Args {
            if_missing: true,
            ..args(name, dir, false)
        };
        run(keep("node-1")).expect("written the first time");
        let key = std::fs::read_to_string(dir.join("node-1.key")).expect("read");
        run(keep("node-1")).expect("kept the second time");
        assert_eq!(
            std::fs::read_to_string(dir.join("node-1.key")).expect("read"),
            key,
            "the existing key is kept"
        );
        // A .pub that is not the key's own is refused, not silently kept.
        run(keep("node-2")).expect("written");
        std::fs::copy(dir.join("node-2.pub"), dir.join("node-1.pub")).expect("copy");
        let err = run(keep("node-1")).expect_err("mismatched pair");
        assert!(err.to_string().contains("does not hold"), "{err}");
        // Half a pair is an error too.
        std::fs::remove_file(dir.join("node-2.pub")).expect("rm");
        let err = run(keep("node-2")).expect_err("half a pair");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir).expect("ls").count(),
            3,
            "nothing new written"
        );
    }

    #[test]
    fn names_that_are_paths_are_refused() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let out = dir.join("out");
        for name in ["../escaped", "a/b", "/tmp/abs", "..", ".", "a\\b"] {
            let err = run(args(name, &out, false)).expect_err(name);
            assert!(err.to_string().contains("key name"), "{name}: {err}");
        }
        // Nothing was written anywhere: not even --out was created.
        assert!(!out.exists());
        assert!(!dir.join("escaped.key").exists());
        // Dots inside a name are fine: they stay inside --out.
        run(args("node-1.prod", &out, false)).expect("a plain name");
        assert!(out.join("node-1.prod.key").exists());
    }

    #[test]
    fn force_over_a_loose_key_file_leaves_it_private() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let key = dir.join("node-1.key");
        std::fs::write(&key, "old\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");

        let err = run(args("node-1", dir, false)).expect_err("exists");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&key).expect("read"), "old\n");

        run(args("node-1", dir, true)).expect("overwrites");
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&key).expect("read");
        assert!(text.starts_with("PRIVATE+KEY+node-1+"), "{text}");
        NoteSigner::parse(&text).expect("a signer key");
    }
}
