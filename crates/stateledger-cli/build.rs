//! Records the git commit the binary is built from (`stateledger version`, `--version`): the short
//! hash, with `-dirty` when the files the binary is built from differ from that commit, or
//! "unknown" when the source is not a git checkout or git is missing.
//!
//! "The files the binary is built from" are the workspace's `crates/`, `proto/`, `vendor/`,
//! `Cargo.toml` and `Cargo.lock` (tracked files only; docs and tests do not change the binary).
//! Cargo reruns this script when HEAD or its branch moves and when any file under those paths
//! changes (an edit, a checkout, a stash), so the mark follows them. Paths that do not exist are not
//! watched: Cargo would rerun the script on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where, relative to the workspace root, the binary's sources are.
const SOURCES: [&str; 5] = ["crates", "proto", "vendor", "Cargo.toml", "Cargo.lock"];

fn git(args: &[&str]) -> Option<String> {
    // No optional locks: `git status` would otherwise refresh the index file behind the back of
    // a git command running beside the build.
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string())
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("../..");
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty()) {
        None => "unknown".to_string(),
        Some(commit) => {
            let mut args = vec!["status", "--porcelain", "--untracked-files=no", "--"];
            let pathspecs: Vec<String> = SOURCES.iter().map(|p| format!(":/{p}")).collect();
            args.extend(pathspecs.iter().map(String::as_str));
            match git(&args) {
                Some(changes) if changes.is_empty() => commit,
                // Changed, or git could not tell: not the commit as it is.
                _ => format!("{commit}-dirty"),
            }
        }
    };
    println!("cargo:rustc-env=STATELEDGER_GIT_COMMIT={commit}");
    // HEAD names the branch; the branch's ref (loose or packed) names the commit. (Staging
    // changes nothing: `git status` counts staged and unstaged changes alike.)
    let git_paths = [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .filter(|r| !r.is_empty())
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ];
    let sources = SOURCES.iter().map(|p| workspace.join(p));
    for path in git_paths
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .chain(sources)
        .filter(|p| Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
