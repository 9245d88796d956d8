//! C2SP signed notes: a text and one or more signature lines.
//!
//! ```text
//! <text, one or more lines, each ending in "\n">
//! <empty line>
//! — <key name> <base64(key id (4 bytes, big-endian) || ed25519 signature (64 bytes))>
//! ...
//! ```
//! The signature is over the text bytes, final newline included. "—" is U+2014 EM DASH.

pub mod keys;

use base64::Engine as _;
use ed25519_dalek::Signature;

pub use keys::{check_key_name, key_id, KeyError, NoteSigner, NoteVerifier};

use crate::limits::{NOTE_BYTES_MAX, NOTE_SIGNATURES_MAX};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SIG_PREFIX: &str = "\u{2014} ";

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// Signature bytes after the key id (64 for ed25519; other lengths belong to other
    /// algorithms and are never checked).
    pub signature: Vec<u8>,
}

/// A parsed signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in "\n".
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Why a note is malformed or its signatures fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("note is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    #[error("note has no blank line separating text from signatures")]
    NoSeparator,
    #[error("note text is empty")]
    EmptyText,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note ends with a blank line after its signature lines; nothing may follow the newline of the last signature line")]
    TrailingBlankLine,
    #[error("note has {count} signature lines, more than the limit of {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("note signature line {line} is malformed: {reason}")]
    SignatureLine { line: usize, reason: String },
    #[error("note signature by {name} (key id {key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
}

impl Note {
    /// Parses a note strictly.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > NOTE_BYTES_MAX {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: NOTE_BYTES_MAX,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        let split = s.rfind("\n\n").ok_or(NoteError::NoSeparator)?;
        let text = &s[..split + 1];
        if text.trim().is_empty() {
            return Err(NoteError::EmptyText);
        }
        let sigs = &s[split + 2..];
        if sigs.is_empty() {
            // "text\n\n— a sig\n\n": the last blank line is a trailing one, not the separator,
            // and "no signature lines" would send the reader looking for the wrong fault.
            let signed_block = text[..text.len() - 1]
                .rsplit_once("\n\n")
                .map(|(_, block)| block);
            if signed_block
                .is_some_and(|b| !b.is_empty() && b.lines().all(|l| l.starts_with(SIG_PREFIX)))
            {
                return Err(NoteError::TrailingBlankLine);
            }
            return Err(NoteError::NoSignatures);
        }
        let bad = |line: usize, reason: &str| NoteError::SignatureLine {
            line,
            reason: reason.to_string(),
        };
        if !sigs.ends_with('\n') {
            return Err(bad(sigs.lines().count(), "does not end in a newline"));
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures {
                count: lines.len(),
                max: NOTE_SIGNATURES_MAX,
            });
        }
        let mut signatures = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let n = i + 1;
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad(n, "must start with \"\u{2014} \""))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad(n, "expected \"<name> <base64>\""))?;
            check_key_name(name).map_err(|_| bad(n, "invalid key name"))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| bad(n, "signature is not valid base64"))?;
            if raw.len() < 5 {
                return Err(bad(n, "signature is shorter than a key id and one byte"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Creates a note over `text` (which must end in "\n") signed by each signer.
    pub fn sign(text: &str, signers: &[&NoteSigner]) -> Note {
        let signatures = signers
            .iter()
            .map(|s| NoteSignature {
                name: s.name.clone(),
                key_id: s.key_id,
                signature: s.sign(text.as_bytes()).to_vec(),
            })
            .collect();
        Note {
            text: text.to_string(),
            signatures,
        }
    }

    /// Adds a signature line (a cosignature), unless that key already signed.
    pub fn add_signature(&mut self, sig: NoteSignature) {
        if !self
            .signatures
            .iter()
            .any(|s| s.name == sig.name && s.key_id == sig.key_id)
        {
            self.signatures.push(sig);
        }
    }

    /// The note as text.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut raw = s.key_id.to_be_bytes().to_vec();
            raw.extend_from_slice(&s.signature);
            out.push_str(SIG_PREFIX);
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(raw));
            out.push('\n');
        }
        out
    }

    /// Checks the signatures of known keys. Signatures by keys not in `verifiers` are ignored (as
    /// C2SP prescribes); a known key's bad signature is an error. Returns the names of the keys
    /// whose signatures verified, each once.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<String>, NoteError> {
        let mut good: Vec<String> = Vec::new();
        for sig in &self.signatures {
            let Some(v) = verifiers
                .iter()
                .find(|v| v.name == sig.name && v.key_id == sig.key_id)
            else {
                continue;
            };
            let ok = Signature::from_slice(&sig.signature)
                .ok()
                .is_some_and(|s| v.key.verify_strict(self.text.as_bytes(), &s).is_ok());
            if !ok {
                return Err(NoteError::BadSignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if !good.contains(&v.name) {
                good.push(v.name.clone());
            }
        }
        Ok(good)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::from_seed(name, &[seed; 32]).expect("valid name")
    }

    #[test]
    fn sign_parse_verify() {
        let a = signer("a", 1);
        let b = signer("b", 2);
        let note = Note::sign("hello\nworld\n", &[&a, &b]);
        let text = note.to_text();
        let parsed = Note::parse(text.as_bytes()).expect("parses");
        assert_eq!(parsed, note);
        assert_eq!(
            parsed.verify(&[a.verifier(), b.verifier()]),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        // Unknown keys are ignored.
        assert_eq!(parsed.verify(&[signer("c", 3).verifier()]), Ok(vec![]));
        // A tampered text fails for known keys.
        let tampered = text.replacen("world", "w0rld", 1);
        let parsed = Note::parse(tampered.as_bytes()).expect("parses");
        assert!(matches!(
            parsed.verify(&[a.verifier()]),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes() {
        assert_eq!(Note::parse(b"x\n"), Err(NoteError::NoSeparator));
        assert_eq!(Note::parse(b"x\n\n"), Err(NoteError::NoSignatures));
        let signed = Note::sign("x\n", &[&signer("a", 1)]).to_text();
        assert_eq!(
            Note::parse(format!("{signed}\n").as_bytes()),
            Err(NoteError::TrailingBlankLine)
        );
        assert_eq!(Note::parse(b"x\n\ny\n\n"), Err(NoteError::NoSignatures));
        assert_eq!(Note::parse(b"x\r\n\n"), Err(NoteError::ControlCharacter));
        assert_eq!(Note::parse(&[0xff, b'\n', b'\n']), Err(NoteError::NotUtf8));
        assert!(matches!(
            Note::parse(b"x\n\n- a AAAA\n"),
            Err(NoteError::SignatureLine { line: 1, .. })
        ));
        assert!(matches!(
            Note::parse("x\n\n\u{2014} a !!!\n".as_bytes()),
            Err(NoteError::SignatureLine { .. })
        ));
        let good = Note::sign("x\n", &[&signer("a", 1)]).to_text();
        assert!(matches!(
            Note::parse(good.trim_end().as_bytes()),
            Err(NoteError::SignatureLine { .. })
        ));
    }
}
