//! A JSONL stream of mutations, one [`MutationInput`] per line, read lazily (a stream may be
//! endless: `tail -f`, a pipe from a consumer). Every error carries its 1-based line number.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use stateledger_core::record::{pb, Body, RecordError};

use super::{MutationError, MutationInput};
use crate::limits::MUTATION_LINE_BYTES_MAX;
use crate::RecordMeta;

/// One good line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationLine {
    /// 1-based line number in the stream.
    pub line: usize,
    pub mutation: pb::Mutation,
    /// The line's own observation time, if it gave one.
    pub observed_at_unix_nanos: Option<u64>,
}

impl MutationLine {
    /// The line as a record: `meta`'s system and scope, and the line's own observation time when
    /// it gave one, `meta`'s otherwise. Checked like every record ([`RecordMeta::record`]).
    pub fn record(self, meta: &RecordMeta) -> Result<pb::Record, RecordError> {
        RecordMeta {
            observed_at_unix_nanos: self
                .observed_at_unix_nanos
                .unwrap_or(meta.observed_at_unix_nanos),
            ..meta.clone()
        }
        .record(Body::Mutation(self.mutation))
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    #[error("cannot read the stream: {0}")]
    Io(String),
    #[error("the line is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("the line is not valid UTF-8")]
    NotUtf8,
    #[error("not a mutation object: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(MutationError),
    #[error("source {mutation_source:?} goes from sequence {previous} back to {found}; within a stream each source's sequence must increase")]
    OutOfOrder {
        mutation_source: String,
        previous: u64,
        found: u64,
    },
}

/// A bad line: its number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct MutationLineError {
    pub line: usize,
    pub error: LineError,
}

/// Reads mutations from JSONL. Blank lines are passed over. After a bad line reading goes on with
/// the next (the caller decides whether to stop); after an I/O error the stream ends.
///
/// Within one stream, each source's sequence numbers must increase (a repeat or a step back is a
/// line error: it would record a contradicting order). A gap is allowed here — the missing
/// mutations may be recorded by another collector — and reconstruction reports a gap that remains.
#[derive(Debug)]
pub struct MutationReader<R> {
    reader: R,
    line: usize,
    last_sequence: HashMap<String, u64>,
    ended: bool,
}

impl<R: BufRead> MutationReader<R> {
    pub fn new(reader: R) -> Self {
        MutationReader {
            reader,
            line: 0,
            last_sequence: HashMap::new(),
            ended: false,
        }
    }

    /// The next raw line (without its line ending), at most `MUTATION_LINE_BYTES_MAX` bytes.
    fn read_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        let mut buf = Vec::new();
        let limit = MUTATION_LINE_BYTES_MAX as u64 + 1;
        match Read::take(&mut self.reader, limit).read_until(b'\n', &mut buf) {
            Err(e) => {
                self.ended = true;
                Some(Err(LineError::Io(e.to_string())))
            }
            Ok(0) => None,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                } else if buf.len() > MUTATION_LINE_BYTES_MAX {
                    // Pass over the rest of the overlong line, bounded memory.
                    loop {
                        let mut rest = Vec::new();
                        match Read::take(&mut self.reader, 64 * 1024).read_until(b'\n', &mut rest) {
                            Ok(0) => break,
                            Ok(_) if rest.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                            Err(e) => {
                                self.ended = true;
                                return Some(Err(LineError::Io(e.to_string())));
                            }
                        }
                    }
                    return Some(Err(LineError::TooLong {
                        max: MUTATION_LINE_BYTES_MAX,
                    }));
                }
                Some(Ok(buf))
            }
        }
    }

    fn parse(&mut self, bytes: &[u8]) -> Result<Option<MutationLine>, LineError> {
        let text = std::str::from_utf8(bytes).map_err(|_| LineError::NotUtf8)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let input: MutationInput =
            serde_json::from_str(text).map_err(|e| LineError::Json(e.to_string()))?;
        let observed_at_unix_nanos = input.observed_at_unix_nanos;
        let mutation = input.into_mutation().map_err(LineError::Invalid)?;
        if let Some(&previous) = self.last_sequence.get(&mutation.source) {
            if mutation.sequence <= previous {
                return Err(LineError::OutOfOrder {
                    mutation_source: mutation.source,
                    previous,
                    found: mutation.sequence,
                });
            }
        }
        self.last_sequence
            .insert(mutation.source.clone(), mutation.sequence);
        Ok(Some(MutationLine {
            line: self.line,
            mutation,
            observed_at_unix_nanos,
        }))
    }
}

impl<R: BufRead> Iterator for MutationReader<R> {
    type Item = Result<MutationLine, MutationLineError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.ended {
            let raw = self.read_line()?;
            self.line += 1;
            let line = self.line;
            let result = raw.and_then(|bytes| self.parse(&bytes));
            match result {
                Ok(None) => continue,
                Ok(Some(m)) => return Some(Ok(m)),
                Err(error) => return Some(Err(MutationLineError { line, error })),
            }
        }
        None
    }
}
