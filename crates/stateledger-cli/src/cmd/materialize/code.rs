//! Step 1, code: the recorded commit checked out from a repository the user points to, as a
//! detached `git worktree` under `code/`. The source repository gains only git's record of the
//! worktree (`.git/worktrees/`, removed by `git worktree prune` once `code/` is deleted); its
//! branches, index and working tree are not touched, and no hook runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context as _};
use stateledger_collect::code::normalise_remote_url;
use stateledger_core::state::SystemState;

use super::out_dir::OutDir;
use super::report::StepLog;

/// Where the checkout goes, inside the output directory.
pub const CHECKOUT_DIR: &str = "code";

/// `git` with no optional locks, no prompts, no hooks and no advice on stderr.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .with_context(|| {
            format!(
                "cannot run git (needed for --repo): is it installed? (git {})",
                args.join(" ")
            )
        })
}

fn stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim()
        .to_string()
}

/// Checks that `--repo` is a git repository before anything is written (exit 2 otherwise).
pub fn check_repo(repo: &Path) -> anyhow::Result<()> {
    let out = git(repo, &["rev-parse", "--git-dir"])?;
    if !out.status.success() {
        bail!(
            "{} is not a git repository ({}); give --repo a clone of the recorded repository",
            repo.display(),
            stderr_line(&out)
        );
    }
    Ok(())
}

/// Restores the code; returns the checkout when the recorded commit was checked out.
pub fn restore(
    state: &SystemState,
    out: &OutDir,
    repo: Option<&Path>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(code) = &state.code else {
        log.summary = "no code record up to T: nothing to check out".into();
        return Ok(None);
    };
    let leaf = Some(code.leaf_index);
    let c = &code.value;
    let what = format!("commit {} of {}", c.commit, c.repo);
    let Some(repo) = repo else {
        log.summary = format!("{what} was not checked out (no --repo)");
        log.finding(
            "code_not_restored",
            format!(
                "{what} was not checked out: give --repo PATH, a clone of {} that holds the commit",
                c.repo
            ),
            leaf,
        );
        return Ok(None);
    };
    if let Some(note) = identity_note(repo, &c.repo)? {
        log.note(note);
    }
    let exists = git(
        repo,
        &["cat-file", "-e", &format!("{}^{{commit}}", c.commit)],
    )?;
    if !exists.status.success() {
        log.summary = format!("{what} is not in {}", repo.display());
        log.finding(
            "commit_missing",
            format!(
                "{what} is not in {}: nothing was checked out (no other commit stands in for it); \
                 fetch it (`git fetch origin {}`) or point --repo at a clone that has it",
                repo.display(),
                c.commit
            ),
            leaf,
        );
        return Ok(None);
    }
    let checkout = out.join(CHECKOUT_DIR);
    let checkout_text = checkout.to_string_lossy().into_owned();
    let added = git(
        repo,
        &["worktree", "add", "--detach", &checkout_text, &c.commit],
    )?;
    if !added.status.success() {
        log.summary = format!("{what} could not be checked out");
        log.finding(
            "checkout_failed",
            format!(
                "`git worktree add` of {what} failed: {}",
                stderr_line(&added)
            ),
            leaf,
        );
        return Ok(None);
    }
    let head = git(&checkout, &["rev-parse", "HEAD"])?;
    let head = String::from_utf8_lossy(&head.stdout)
        .trim()
        .to_ascii_lowercase();
    if head != c.commit {
        log.finding(
            "checkout_mismatch",
            format!(
                "the checkout's HEAD is {head}, not the recorded {}",
                c.commit
            ),
            leaf,
        );
    }
    log.files.push(format!("{CHECKOUT_DIR}/"));
    log.summary = format!(
        "{what}{} checked out at {CHECKOUT_DIR}/ (a detached git worktree of {})",
        if c.reference.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.reference)
        },
        repo.display()
    );
    if c.dirty {
        log.finding(
            "dirty_tree",
            format!(
                "the code was built from a dirty working tree: not reproducible from the commit alone \
                 ({CHECKOUT_DIR}/ holds commit {} without the uncommitted changes the build had)",
                c.commit
            ),
            leaf,
        );
    }
    Ok(Some(checkout))
}

/// A note when `--repo`'s remote does not name the recorded repository (a fork, a mirror or
/// the wrong clone: the commit id is what is checked, this is only a hint).
fn identity_note(repo: &Path, recorded: &str) -> anyhow::Result<Option<String>> {
    let remote = git(repo, &["remote", "get-url", "origin"])?;
    if !remote.status.success() {
        return Ok(None);
    }
    let url = String::from_utf8_lossy(&remote.stdout).trim().to_string();
    let normalised = normalise_remote_url(&url);
    Ok((normalised != recorded).then(|| {
        format!(
            "--repo's origin is {normalised}, the record names {recorded}: the commit id decides, this is only a hint"
        )
    }))
}
