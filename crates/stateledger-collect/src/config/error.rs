//! Why a configuration snapshot is rejected. Every variant names the file, directory, variable or
//! key at fault and the rule it breaks.

use std::path::PathBuf;

use crate::limits::CONFIG_PROBLEMS_MAX;

/// One reason a snapshot would be partial (or cannot be recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "nothing to snapshot: give at least one file, directory, environment variable or variable"
    )]
    NothingToSnapshot,
    #[error("missing file: {} does not exist", path.display())]
    MissingFile { path: PathBuf },
    #[error("missing file: {} is a symbolic link to {} which does not exist", path.display(), target.display())]
    DanglingSymlink { path: PathBuf, target: PathBuf },
    #[error("unreadable file: {}: {reason}", path.display())]
    UnreadableFile { path: PathBuf, reason: String },
    #[error("{} is a {kind}, not a regular file", path.display())]
    NotARegularFile { path: PathBuf, kind: &'static str },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("file too large: {} is {size} bytes, more than the limit of {max}", path.display())]
    FileTooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("directory {} nests deeper than {max} levels", path.display())]
    TooDeep { path: PathBuf, max: usize },
    #[error("symbolic link loop: {} leads back to a directory being scanned", path.display())]
    SymlinkLoop { path: PathBuf },
    #[error("missing environment variable: {name} was asked for but is not set")]
    MissingEnv { name: String },
    #[error("no environment variable starts with {prefix:?}, which was asked for")]
    NoEnvMatch { prefix: String },
    #[error("unresolved placeholder in {key} line {line}: {placeholder} ({why})")]
    UnresolvedPlaceholder {
        key: String,
        line: usize,
        placeholder: String,
        why: String,
    },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid variable {text:?}: expected NAME=VALUE with a non-empty name")]
    InvalidVariable { text: String },
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("invalid version label {version:?}: {reason}")]
    InvalidVersion { version: String, reason: String },
    #[error("too many entries: more than the limit of {max}")]
    TooManyEntries { max: usize },
    #[error("snapshot too large: more than {max} bytes of values read")]
    SnapshotTooLarge { max: u64 },
    #[error("snapshot too large for one record: {entries} entries need {bytes} bytes even without clear values, more than the {max} a record may hold; snapshot fewer files")]
    RecordTooLarge {
        entries: usize,
        bytes: usize,
        max: usize,
    },
}

/// A rejected snapshot: every problem found (the first [`CONFIG_PROBLEMS_MAX`] of them, and how
/// many there were). Nothing of a rejected snapshot is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRejection {
    pub problems: Vec<ConfigError>,
    /// All problems found, including those not listed.
    pub total: usize,
}

impl ConfigRejection {
    pub(crate) fn one(problem: ConfigError) -> ConfigRejection {
        ConfigRejection {
            problems: vec![problem],
            total: 1,
        }
    }

    pub(crate) fn push(&mut self, problem: ConfigError) {
        self.total += 1;
        if self.problems.len() < CONFIG_PROBLEMS_MAX {
            self.problems.push(problem);
        }
    }
}

impl std::fmt::Display for ConfigRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "partial config is rejected: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if self.total > self.problems.len() {
            write!(f, "; and {} more", self.total - self.problems.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigRejection {}

impl From<ConfigError> for ConfigRejection {
    fn from(problem: ConfigError) -> Self {
        ConfigRejection::one(problem)
    }
}
