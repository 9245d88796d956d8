//! The code dimension: which code was running — repository, full commit, dirty or clean tree,
//! branch or tag, build artifact digests, dependency lockfile digests and the configuration keys
//! the code needs.
//!
//! Git is run as a subprocess (read-only, `GIT_OPTIONAL_LOCKS=0`). Without git, or outside a
//! repository, the repository name, commit and dirty flag must all be given explicitly (e.g. from
//! CI variables); nothing is guessed.

mod git;
mod lockfiles;
mod remote_url;

use std::path::{Path, PathBuf};

use stateledger_core::limits::LIST_ITEMS_MAX;
use stateledger_core::record::pb;

pub use lockfiles::{detect_lockfiles, LOCKFILE_NAMES};
pub use remote_url::normalise_remote_url;

use crate::digest::{parse_digest, sha256_file};

/// Largest artifact or lockfile hashed (artifacts are streamed, so this is only a sanity bound).
const ARTIFACT_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// Why the code state could not be collected. Each variant names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    #[error("git is needed to read the repository but it is {reason}; install git, or give the repository name, commit and dirty flag explicitly")]
    GitUnavailable { reason: String },
    #[error("{} is not inside a git working tree ({detail}); point at the repository, or give the repository name, commit and dirty flag explicitly", dir.display())]
    NotARepository { dir: PathBuf, detail: String },
    #[error("`{command}` failed: {detail}")]
    GitFailed { command: String, detail: String },
    #[error("the repository at {} has no remote to name it by; give a repository name", dir.display())]
    NoRepoId { dir: PathBuf },
    #[error("the repository at {} has no commit yet; commit first", dir.display())]
    NoCommit { dir: PathBuf },
    #[error("commit {commit:?} is not a full commit id (40 or 64 hex digits)")]
    InvalidCommit { commit: String },
    #[error("artifact {pattern:?} matches no file")]
    ArtifactNotFound { pattern: String },
    #[error("artifact pattern {pattern:?} is invalid: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("path {} is not valid UTF-8; records name files in UTF-8", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("digest of {name:?} is invalid: {reason}")]
    InvalidDigest { name: String, reason: String },
    #[error("artifact {name:?} is given twice with different digests")]
    DuplicateArtifact { name: String },
    #[error("{field} has {count} items, more than the limit of {max}")]
    TooManyItems {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

/// Collects a [`pb::CodeState`]. Built with the `with_*`/adder methods, then [`collect`](Self::collect).
///
/// ```no_run
/// # use stateledger_collect::code::CodeCollector;
/// let code = CodeCollector::new(".")
///     .artifact("target/release/orders")
///     .required_config("env:DATABASE_URL")
///     .collect()?;
/// # Ok::<(), stateledger_collect::code::CodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CodeCollector {
    repo_dir: PathBuf,
    repo_name: Option<String>,
    commit: Option<String>,
    reference: Option<String>,
    dirty: Option<bool>,
    artifact_patterns: Vec<String>,
    artifact_digests: Vec<(String, String)>,
    lockfiles: Vec<PathBuf>,
    detect_lockfiles: bool,
    required_config: Vec<String>,
}

impl CodeCollector {
    /// Collects from the git working tree containing `repo_dir`.
    pub fn new(repo_dir: impl Into<PathBuf>) -> Self {
        CodeCollector {
            repo_dir: repo_dir.into(),
            repo_name: None,
            commit: None,
            reference: None,
            dirty: None,
            artifact_patterns: Vec::new(),
            artifact_digests: Vec::new(),
            lockfiles: Vec::new(),
            detect_lockfiles: true,
            required_config: Vec::new(),
        }
    }

    /// Names the repository instead of deriving the id from its remote URL.
    pub fn repo_name(mut self, name: impl Into<String>) -> Self {
        self.repo_name = Some(name.into());
        self
    }

    /// Gives the commit instead of reading `HEAD` (e.g. a CI variable).
    pub fn commit(mut self, commit: impl Into<String>) -> Self {
        self.commit = Some(commit.into());
        self
    }

    /// Gives the branch or tag instead of reading it.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Gives the dirty flag instead of running `git status`.
    pub fn dirty(mut self, dirty: bool) -> Self {
        self.dirty = Some(dirty);
        self
    }

    /// A build artifact to hash: a file path, or a glob pattern (`dist/*.whl`) that must match at
    /// least one file. Names in the record are the paths as matched.
    pub fn artifact(mut self, path_or_glob: impl Into<String>) -> Self {
        self.artifact_patterns.push(path_or_glob.into());
        self
    }

    /// An artifact whose digest is already known, e.g. a pushed container image
    /// (`registry/orders`, `sha256:...`).
    pub fn artifact_digest(mut self, name: impl Into<String>, digest: impl Into<String>) -> Self {
        self.artifact_digests.push((name.into(), digest.into()));
        self
    }

    /// A lockfile outside the repository root (a monorepo package, say) to hash as well.
    pub fn lockfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.lockfiles.push(path.into());
        self
    }

    /// Whether to look for the known lockfiles ([`LOCKFILE_NAMES`]) in the repository root
    /// (default: yes).
    pub fn detect_lockfiles(mut self, detect: bool) -> Self {
        self.detect_lockfiles = detect;
        self
    }

    /// A configuration key the code needs (e.g. `env:DATABASE_URL`, `file:/etc/orders/app.yaml`),
    /// as it appears in config snapshots.
    pub fn required_config(mut self, key: impl Into<String>) -> Self {
        self.required_config.push(key.into());
        self
    }

    /// Reads the repository and hashes the files.
    pub fn collect(&self) -> Result<pb::CodeState, CodeError> {
        // Git is only needed for what was not given; without it everything must be given, and
        // what is missing then fails with the reason git could not be used.
        let repo = git::GitRepo::open(&self.repo_dir);
        let explicit = self.repo_name.is_some() && self.commit.is_some() && self.dirty.is_some();
        if let (Err(e), false) = (&repo, explicit) {
            return Err(e.clone());
        }
        let git = || repo.as_ref().map_err(Clone::clone);
        let root = repo
            .as_ref()
            .map_or_else(|_| self.repo_dir.clone(), |r| r.root.clone());

        let repo_id = match &self.repo_name {
            Some(name) => name.clone(),
            None => normalise_remote_url(
                &git()?
                    .remote_url()?
                    .ok_or_else(|| CodeError::NoRepoId { dir: root.clone() })?,
            ),
        };
        let commit = match &self.commit {
            Some(c) => c.trim().to_ascii_lowercase(),
            None => git()?.head_commit()?,
        };
        if !(commit.len() == 40 || commit.len() == 64)
            || !commit.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CodeError::InvalidCommit { commit });
        }
        let dirty = match self.dirty {
            Some(d) => d,
            None => git()?.is_dirty()?,
        };
        let reference = match (&self.reference, &repo) {
            (Some(r), _) => r.clone(),
            (None, Ok(repo)) => repo.reference()?,
            (None, Err(_)) => String::new(),
        };

        let artifacts = self.artifacts()?;
        let lockfiles = self.lockfiles(&root)?;
        let mut required_config = self.required_config.clone();
        required_config.sort();
        required_config.dedup();
        check_count("required_config", required_config.len())?;

        Ok(pb::CodeState {
            repo: repo_id,
            commit,
            dirty,
            reference,
            artifacts,
            lockfiles,
            required_config,
        })
    }

    fn artifacts(&self) -> Result<Vec<pb::Artifact>, CodeError> {
        let mut out = Vec::new();
        for pattern in &self.artifact_patterns {
            let paths = expand(pattern)?;
            for path in paths {
                out.push(hash_artifact(&path, path_text(&path)?)?);
            }
        }
        for (name, digest) in &self.artifact_digests {
            let digest = parse_digest(digest).map_err(|reason| CodeError::InvalidDigest {
                name: name.clone(),
                reason,
            })?;
            out.push(pb::Artifact {
                name: name.clone(),
                digest,
            });
        }
        sorted_unique(out, "artifacts")
    }

    fn lockfiles(&self, root: &Path) -> Result<Vec<pb::Artifact>, CodeError> {
        let mut out = Vec::new();
        if self.detect_lockfiles {
            for name in detect_lockfiles(root) {
                out.push(hash_artifact(&root.join(&name), name)?);
            }
        }
        for path in &self.lockfiles {
            if !path.exists() {
                return Err(CodeError::ArtifactNotFound {
                    pattern: path.display().to_string(),
                });
            }
            // Named relative to the repository root when inside it, so the name does not depend on
            // where the repository was checked out.
            let name = match (path.canonicalize(), root.canonicalize()) {
                (Ok(p), Ok(r)) => p.strip_prefix(&r).map(Path::to_path_buf).unwrap_or(p),
                _ => path.clone(),
            };
            out.push(hash_artifact(path, path_text(&name)?)?);
        }
        sorted_unique(out, "lockfiles")
    }
}

fn check_count(field: &'static str, count: usize) -> Result<(), CodeError> {
    if count > LIST_ITEMS_MAX {
        return Err(CodeError::TooManyItems {
            field,
            count,
            max: LIST_ITEMS_MAX,
        });
    }
    Ok(())
}

fn sorted_unique(
    mut list: Vec<pb::Artifact>,
    field: &'static str,
) -> Result<Vec<pb::Artifact>, CodeError> {
    list.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
    list.dedup();
    if let Some(w) = list.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(CodeError::DuplicateArtifact {
            name: w[0].name.clone(),
        });
    }
    check_count(field, list.len())?;
    Ok(list)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files a path or glob pattern names; an explicit path must be a file, a pattern must match
/// at least one file (directories it matches are passed over).
fn expand(pattern: &str) -> Result<Vec<PathBuf>, CodeError> {
    if !is_glob(pattern) {
        let path = PathBuf::from(pattern);
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(vec![path]),
            Ok(_) => Err(CodeError::NotAFile { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CodeError::ArtifactNotFound {
                    pattern: pattern.to_string(),
                })
            }
            Err(e) => Err(CodeError::Unreadable {
                path,
                reason: e.to_string(),
            }),
        };
    }
    let paths = glob::glob(pattern).map_err(|e| CodeError::InvalidPattern {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| CodeError::Unreadable {
            path: e.path().to_path_buf(),
            reason: e.error().to_string(),
        })?;
        if path.is_file() {
            files.push(path);
        }
        check_count("artifacts", files.len())?;
    }
    if files.is_empty() {
        return Err(CodeError::ArtifactNotFound {
            pattern: pattern.to_string(),
        });
    }
    Ok(files)
}

fn path_text(path: &Path) -> Result<String, CodeError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| CodeError::NonUtf8Path {
            path: path.to_path_buf(),
        })
}

fn hash_artifact(path: &Path, name: String) -> Result<pb::Artifact, CodeError> {
    let (digest, _) = sha256_file(path, ARTIFACT_BYTES_MAX).map_err(|e| CodeError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(pb::Artifact { name, digest })
}

#[cfg(test)]
mod tests;
