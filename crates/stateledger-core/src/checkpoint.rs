//! Checkpoints: a C2SP `tlog-checkpoint` body carried in a signed note.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zeros>\n
//! <root hash, standard base64>\n
//! time <ledger time, decimal ns since the Unix epoch>\n
//! heads <head-map root, standard base64>\n
//! ```
//! The time line promises: every leaf at index >= size has a ledger time strictly greater than
//! `time`, so the checkpoint covers every instant up to `time` (docs/PROOFS.md §4). Each node
//! signs only a checkpoint whose root and head root it computed itself at that size.

use crate::hash::Hash;
use crate::ledger_time::LedgerTime;
use crate::merkle::TreeSize;

/// Longest origin line.
pub const ORIGIN_BYTES_MAX: usize = 256;

/// A checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: TreeSize,
    pub root: Hash,
    pub time: LedgerTime,
    pub heads_root: Hash,
}

/// Why a checkpoint body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointBodyError {
    #[error("checkpoint body must have exactly 5 lines (origin, size, root, time, heads), found {found}")]
    LineCount { found: usize },
    #[error("checkpoint origin is empty, longer than {ORIGIN_BYTES_MAX} bytes, or has surrounding spaces")]
    Origin,
    #[error("checkpoint {line} line {found:?} is not valid: {reason}")]
    Line {
        line: &'static str,
        found: String,
        reason: &'static str,
    },
}

fn parse_decimal(line: &'static str, text: &str) -> Result<u64, CheckpointBodyError> {
    let bad = |reason| CheckpointBodyError::Line {
        line,
        found: text.chars().take(64).collect(),
        reason,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected a decimal number"));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad("leading zeros are not allowed"));
    }
    text.parse()
        .map_err(|_| bad("number does not fit in 64 bits"))
}

fn parse_hash(line: &'static str, text: &str) -> Result<Hash, CheckpointBodyError> {
    Hash::from_base64(text).ok_or_else(|| CheckpointBodyError::Line {
        line,
        found: text.chars().take(64).collect(),
        reason: "expected standard base64 of a 32-byte hash",
    })
}

impl Checkpoint {
    /// The note text this checkpoint signs.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\nheads {}\n",
            self.origin,
            self.size.0,
            self.root.to_base64(),
            self.time.0,
            self.heads_root.to_base64()
        )
    }

    /// Parses note text strictly: [`Checkpoint::to_text`] of the result gives the same text back.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointBodyError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() != 5 || !text.ends_with('\n') {
            return Err(CheckpointBodyError::LineCount { found: lines.len() });
        }
        let origin = lines[0];
        if origin.is_empty() || origin.len() > ORIGIN_BYTES_MAX || origin.trim() != origin {
            return Err(CheckpointBodyError::Origin);
        }
        let size = parse_decimal("size", lines[1])?;
        let root = parse_hash("root", lines[2])?;
        let time = lines[3]
            .strip_prefix("time ")
            .ok_or(CheckpointBodyError::Line {
                line: "time",
                found: lines[3].chars().take(64).collect(),
                reason: "expected \"time <ns>\"",
            })
            .and_then(|t| parse_decimal("time", t))?;
        let heads_root = lines[4]
            .strip_prefix("heads ")
            .ok_or(CheckpointBodyError::Line {
                line: "heads",
                found: lines[4].chars().take(64).collect(),
                reason: "expected \"heads <base64>\"",
            })
            .and_then(|h| parse_hash("heads", h))?;
        let cp = Checkpoint {
            origin: origin.to_string(),
            size: TreeSize(size),
            root,
            time: LedgerTime(time),
            heads_root,
        };
        // Base64 decoding accepts some non-canonical forms; the text must be the canonical one.
        if cp.to_text() != text {
            return Err(CheckpointBodyError::Line {
                line: "root",
                found: lines[2].chars().take(64).collect(),
                reason: "hash is not in canonical base64",
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "stateledger.example/prod".into(),
            size: TreeSize(42),
            root: Hash::of(b"r"),
            time: LedgerTime(1_700_000_000_123_456_789),
            heads_root: Hash::of(b"h"),
        }
    }

    #[test]
    fn round_trip() {
        let t = cp().to_text();
        assert_eq!(Checkpoint::parse(&t), Ok(cp()));
    }

    #[test]
    fn strict() {
        let t = cp().to_text();
        assert!(Checkpoint::parse(&t.replacen("\n42\n", "\n042\n", 1)).is_err());
        assert!(Checkpoint::parse(&t.replacen("\n42\n", "\n-1\n", 1)).is_err());
        assert!(Checkpoint::parse(&format!("{t}extra\n")).is_err());
        assert!(Checkpoint::parse(t.trim_end()).is_err());
        assert!(Checkpoint::parse(&t.replacen("time ", "time  ", 1)).is_err());
        assert!(Checkpoint::parse(&t.replacen("stateledger", " stateledger", 1)).is_err());
    }
}
