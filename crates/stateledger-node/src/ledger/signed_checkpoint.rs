//! A signed checkpoint, parsed once: the note text as signed and served, the parsed note (for
//! its signatures) and the checkpoint body. Whoever holds one never parses its text again.

use stateledger_core::checkpoint::{Checkpoint, CheckpointBodyError};
use stateledger_core::note::{Note, NoteError};

/// A checkpoint note whose text parsed as a note and whose body parsed as a checkpoint. Its
/// signatures are not checked here (`checkpoints::check_quorum` does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
    text: String,
}

/// Why a checkpoint note does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedCheckpointError {
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint body: {0}")]
    Body(#[from] CheckpointBodyError),
}

impl SignedCheckpoint {
    /// Parses a checkpoint note's text.
    pub fn parse(text: &str) -> Result<SignedCheckpoint, SignedCheckpointError> {
        let note = Note::parse(text.as_bytes())?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        Ok(SignedCheckpoint {
            checkpoint,
            note,
            text: text.to_string(),
        })
    }

    /// A note built here (the leader's cosigned candidate), with its body.
    pub fn from_note(note: Note) -> Result<SignedCheckpoint, SignedCheckpointError> {
        let checkpoint = Checkpoint::parse(&note.text)?;
        let text = note.to_text();
        Ok(SignedCheckpoint {
            checkpoint,
            note,
            text,
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The note's text, exactly as signed.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateledger_core::hash::Hash;
    use stateledger_core::ledger_time::LedgerTime;
    use stateledger_core::merkle::TreeSize;
    use stateledger_core::note::NoteSigner;

    #[test]
    fn parses_once_and_keeps_the_text() {
        let signer = NoteSigner::from_seed("node-1", &[1; 32]).expect("a key");
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: TreeSize(3),
            root: Hash([7; 32]),
            time: LedgerTime(42),
            heads_root: Hash([9; 32]),
        };
        let note = Note::sign(&cp.to_text(), &[&signer]);
        let text = note.to_text();
        let parsed = SignedCheckpoint::parse(&text).expect("a signed checkpoint parses");
        assert_eq!(parsed.checkpoint(), &cp);
        assert_eq!(parsed.text(), text);
        assert_eq!(SignedCheckpoint::from_note(note), Ok(parsed));
        assert!(matches!(
            SignedCheckpoint::parse("not a note"),
            Err(SignedCheckpointError::Note(_))
        ));
        let body = Note::sign("not a checkpoint\n", &[&signer]).to_text();
        assert!(matches!(
            SignedCheckpoint::parse(&body),
            Err(SignedCheckpointError::Body(_))
        ));
    }
}
