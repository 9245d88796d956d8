//! Files that hold a payload given to a collector: an external call's request or response, a
//! value to prove against a redacted config digest. Each is read whole into memory, so each read
//! is bounded by [`PAYLOAD_FILE_BYTES_MAX`]; a larger file is refused, never cut short (a digest
//! of a prefix would stand for bytes nobody gave). A mutation's payload file is hashed in chunks
//! instead ([`crate::mutation::MutationInput::payload_file`]).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::limits::PAYLOAD_FILE_BYTES_MAX;

/// Why a payload file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadFileError {
    #[error("cannot open {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
}

/// The whole content of a payload file, at most [`PAYLOAD_FILE_BYTES_MAX`] bytes.
pub fn read_payload_file(path: &Path) -> Result<Vec<u8>, PayloadFileError> {
    read_limited(path, PAYLOAD_FILE_BYTES_MAX)
}

/// The whole content of a file of at most `max` bytes; never reads more than `max + 1`.
fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, PayloadFileError> {
    let file = std::fs::File::open(path).map_err(|e| PayloadFileError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| PayloadFileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > max {
        return Err(PayloadFileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_up_to_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("response.json");
        std::fs::write(&path, b"abcd").expect("write");
        assert_eq!(read_limited(&path, 4).expect("at the limit"), b"abcd");
        assert_eq!(read_payload_file(&path).expect("reads"), b"abcd");
        std::fs::write(&path, b"").expect("write");
        assert_eq!(read_limited(&path, 0).expect("empty"), b"");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        std::fs::write(&path, b"abcde").expect("write");
        let err = read_limited(&path, 4).expect_err("one byte too many");
        assert_eq!(
            err,
            PayloadFileError::TooLarge {
                path: path.clone(),
                max: 4
            }
        );
        assert_eq!(
            err.to_string(),
            format!("{} is larger than 4 bytes", path.display())
        );
    }

    #[test]
    fn a_missing_file_or_a_directory_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let err = read_payload_file(&missing).expect_err("missing");
        assert!(
            matches!(&err, PayloadFileError::Open { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with(&format!("cannot open {}: ", missing.display())));
        // A directory opens but cannot be read.
        let err = read_payload_file(dir.path()).expect_err("a directory");
        assert!(
            matches!(&err, PayloadFileError::Read { path, .. } if path == dir.path()),
            "{err:?}"
        );
    }
}
