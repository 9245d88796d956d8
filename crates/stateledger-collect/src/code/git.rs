//! Read-only git queries, run as `git` subprocesses (no git library: the git the user has is the
//! one that understands their repository).

use std::path::{Path, PathBuf};

use super::CodeError;
use crate::command::{CommandError, CommandOutput, Subprocess};
use crate::limits::GIT_TIMEOUT;

/// A working tree, queried read-only.
#[derive(Debug)]
pub(crate) struct GitRepo {
    /// The working tree's top level (`git rev-parse --show-toplevel`).
    pub root: PathBuf,
}

/// Never take optional locks (a plain `git status` may rewrite the index otherwise), never prompt.
const GIT_ENV: &[(&str, &str)] = &[("GIT_OPTIONAL_LOCKS", "0"), ("GIT_TERMINAL_PROMPT", "0")];

fn git(dir: &Path, args: &[&str]) -> Result<CommandOutput, CommandError> {
    Subprocess {
        program: "git",
        args,
        cwd: Some(dir),
        envs: GIT_ENV,
        timeout: GIT_TIMEOUT,
    }
    .run()
}

fn failed(args: &[&str], out: &CommandOutput) -> CodeError {
    CodeError::GitFailed {
        command: format!("git {}", args.join(" ")),
        detail: first_line(&out.stderr),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim()
        .to_string()
}

impl GitRepo {
    /// Opens the working tree containing `dir`.
    pub fn open(dir: &Path) -> Result<GitRepo, CodeError> {
        let out = git(dir, &["rev-parse", "--show-toplevel"]).map_err(|e| match e {
            CommandError::NotFound => CodeError::GitUnavailable {
                reason: e.to_string(),
            },
            other => CodeError::GitFailed {
                command: "git rev-parse --show-toplevel".into(),
                detail: other.to_string(),
            },
        })?;
        match out.ok_stdout() {
            Some(root) if !root.is_empty() => Ok(GitRepo {
                root: PathBuf::from(root),
            }),
            _ => Err(CodeError::NotARepository {
                dir: dir.to_path_buf(),
                detail: first_line(&out.stderr),
            }),
        }
    }

    fn run(&self, args: &[&str]) -> Result<CommandOutput, CodeError> {
        git(&self.root, args).map_err(|e| CodeError::GitFailed {
            command: format!("git {}", args.join(" ")),
            detail: e.to_string(),
        })
    }

    /// The full id of `HEAD`.
    pub fn head_commit(&self) -> Result<String, CodeError> {
        let args = ["rev-parse", "--verify", "-q", "HEAD"];
        let out = self.run(&args)?;
        match out.ok_stdout() {
            Some(id) if !id.is_empty() => Ok(id.to_ascii_lowercase()),
            _ if out.status.code() == Some(1) => Err(CodeError::NoCommit {
                dir: self.root.clone(),
            }),
            _ => Err(failed(&args, &out)),
        }
    }

    /// True if anything differs from `HEAD`: staged or unstaged changes, deleted files, and
    /// untracked files that are not ignored (an untracked source file changes a build as much as
    /// an edited one).
    pub fn is_dirty(&self) -> Result<bool, CodeError> {
        let args = ["status", "--porcelain=v1", "--untracked-files=normal"];
        let out = self.run(&args)?;
        match out.ok_stdout() {
            Some(listing) => Ok(!listing.is_empty()),
            None => Err(failed(&args, &out)),
        }
    }

    /// `refs/heads/<branch>` if `HEAD` is on a branch, else `refs/tags/<tag>` if a tag points at
    /// it, else empty (a detached `HEAD`).
    pub fn reference(&self) -> Result<String, CodeError> {
        let out = self.run(&["symbolic-ref", "-q", "HEAD"])?;
        if let Some(branch) = out.ok_stdout().filter(|s| !s.is_empty()) {
            return Ok(branch.to_string());
        }
        let out = self.run(&["describe", "--tags", "--exact-match", "HEAD"])?;
        Ok(out
            .ok_stdout()
            .filter(|s| !s.is_empty())
            .map(|tag| format!("refs/tags/{tag}"))
            .unwrap_or_default())
    }

    /// The URL of remote `origin`, or of the first remote by name if there is no `origin`; `None`
    /// when the repository has no remote.
    pub fn remote_url(&self) -> Result<Option<String>, CodeError> {
        let args = ["remote"];
        let out = self.run(&args)?;
        let Some(listing) = out.ok_stdout() else {
            return Err(failed(&args, &out));
        };
        let mut remotes: Vec<&str> = listing.lines().map(str::trim).collect();
        remotes.sort();
        let Some(name) = remotes
            .iter()
            .find(|r| **r == "origin")
            .or_else(|| remotes.first())
        else {
            return Ok(None);
        };
        let args = ["remote", "get-url", name];
        let out = self.run(&args)?;
        match out.ok_stdout() {
            Some(url) if !url.is_empty() => Ok(Some(url.to_string())),
            _ => Err(failed(&args, &out)),
        }
    }
}
