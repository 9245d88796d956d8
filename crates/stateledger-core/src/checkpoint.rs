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
    #[error("checkpoint origin is not valid: {reason}")]
    Origin { reason: &'static str },
    #[error("checkpoint {line} line {found:?} is not valid: {reason}")]
    Line {
        line: &'static str,
        found: String,
        reason: &'static str,
    },
}

/// The names of the five body lines, in order.
const LINE_NAMES: [&str; 5] = ["origin", "size", "root", "time", "heads"];

/// Checks an origin (the first checkpoint line, and a trust policy's `origin`): non-empty, at most
/// [`ORIGIN_BYTES_MAX`] bytes, no leading or trailing whitespace and no control characters (a
/// signed note cannot carry any other than the line ends). Returns what is wrong.
pub fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin.is_empty() {
        return Err("it is empty");
    }
    if origin.len() > ORIGIN_BYTES_MAX {
        return Err("it is longer than 256 bytes");
    }
    if origin.trim() != origin {
        return Err("it has leading or trailing whitespace");
    }
    if origin.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    Ok(())
}

/// Names the first line of `text` that differs from the canonical `canonical` text.
fn non_canonical_line(canonical: &str, text: &str) -> CheckpointBodyError {
    let (line, found) = canonical
        .split('\n')
        .zip(text.split('\n'))
        .zip(LINE_NAMES)
        .find(|((c, t), _)| c != t)
        .map_or(("origin", text), |((_, t), name)| (name, t));
    CheckpointBodyError::Line {
        line,
        found: found.chars().take(64).collect(),
        reason: "not in canonical form (re-serialising the parsed value gives another line)",
    }
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
        check_origin(origin).map_err(|reason| CheckpointBodyError::Origin { reason })?;
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
        // The text must be the canonical one. With the parsers above this cannot fail: the origin
        // is kept verbatim, the decimals admit only digits without leading zeros, and the base64
        // engine (padding required, non-zero trailing bits refused) accepts only the encoding of
        // the bytes it returns — `non_canonical_base64_is_refused_on_its_own_line` checks that.
        // The re-check stays as a guard should a parser ever become lenient.
        let canonical = cp.to_text();
        if canonical != text {
            return Err(non_canonical_line(&canonical, text));
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

    fn line_of(r: Result<Checkpoint, CheckpointBodyError>) -> &'static str {
        match r {
            Err(CheckpointBodyError::Line { line, .. }) => line,
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn non_canonical_base64_is_refused_on_its_own_line() {
        // The last base64 digit of a 32-byte value carries 4 bits of data and 2 unused bits;
        // setting an unused bit gives a string that lenient decoders map to the same hash.
        let bump = |b64: &str| {
            let mut chars: Vec<char> = b64.chars().collect();
            let i = chars.len() - 2;
            const ALPHABET: &str =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let v = ALPHABET.find(chars[i]).expect("base64 digit");
            chars[i] = ALPHABET.as_bytes()[v | 1] as char;
            chars.into_iter().collect::<String>()
        };
        let c = cp();
        let t = c.to_text();
        let root = c.root.to_base64();
        let heads = c.heads_root.to_base64();
        assert_ne!(bump(&root), root);
        assert_eq!(
            line_of(Checkpoint::parse(&t.replacen(&root, &bump(&root), 1))),
            "root"
        );
        assert_eq!(
            line_of(Checkpoint::parse(&t.replacen(&heads, &bump(&heads), 1))),
            "heads"
        );
        // Padding left out.
        assert_eq!(
            line_of(Checkpoint::parse(&t.replacen(
                &heads,
                heads.trim_end_matches('='),
                1
            ))),
            "heads"
        );
    }

    #[test]
    fn the_canonical_form_check_names_the_line_that_differs() {
        let canonical = cp().to_text();
        for (i, name) in LINE_NAMES.iter().enumerate() {
            let mut lines: Vec<String> = canonical.split('\n').map(str::to_string).collect();
            lines[i].push('x');
            let text = lines.join("\n");
            match non_canonical_line(&canonical, &text) {
                CheckpointBodyError::Line { line, found, .. } => {
                    assert_eq!(line, *name);
                    assert_eq!(found, lines[i]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn origins() {
        assert_eq!(check_origin("stateledger.example/prod"), Ok(()));
        for bad in ["", " o", "o ", "o\tp", "o\u{85}p"] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
        }
        assert!(check_origin(&"o".repeat(ORIGIN_BYTES_MAX)).is_ok());
        assert!(check_origin(&"o".repeat(ORIGIN_BYTES_MAX + 1)).is_err());
        let t = cp()
            .to_text()
            .replacen("stateledger.example/prod", "a\u{7f}b", 1);
        assert!(matches!(
            Checkpoint::parse(&t),
            Err(CheckpointBodyError::Origin { .. })
        ));
    }
}
