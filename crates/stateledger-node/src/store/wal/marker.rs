//! The sync marker: a small file beside the log that says how far the log had been synced.
//!
//! Why: a log file that lost synced bytes — truncated, rolled back to an older copy, deleted —
//! looks exactly like one whose unsynced tail was lost in a crash, which recovery must accept.
//! Every sync of the log is followed by a write of the marker, synced before the sync is
//! reported done; so the marker never claims more than the log holds after any crash, and a log
//! that ends before the marker's offset lost data it had acknowledged.
//!
//! Layout: two slots of [`SLOT_BYTES`] (at 0 and [`SLOT_BYTES`]), written alternately, each
//! `magic "SLwm" | sequence u64 | generation u64 | synced u64 | checksum 8 bytes`. The valid slot
//! with the higher sequence wins, so a write torn by a crash leaves the other, older one.

/// The marker's file name, in the log directory.
pub const MARKER_FILE: &str = "synced";
/// Bytes of one slot (a disk sector, so a slot is written whole or not at all on most disks).
pub const SLOT_BYTES: u64 = 512;
const MAGIC: &[u8; 4] = b"SLwm";
const ENCODED_LEN: usize = 4 + 8 + 8 + 8 + 8;

/// What one marker write says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// Log file generation (compaction starts a new one).
    pub generation: u64,
    /// Bytes of that generation's file known durable.
    pub synced: u64,
}

/// A mark with the sequence number of its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub sequence: u64,
    pub mark: Mark,
}

impl Slot {
    /// Where this write goes in the file.
    pub fn offset(&self) -> u64 {
        (self.sequence % 2) * SLOT_BYTES
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.mark.generation.to_be_bytes());
        out.extend_from_slice(&self.mark.synced.to_be_bytes());
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let b = bytes.get(..ENCODED_LEN)?;
        if &b[..4] != MAGIC || b[28..36] != checksum(&b[..28]) {
            return None;
        }
        let u = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(x)
        };
        Some(Slot {
            sequence: u(4),
            mark: Mark {
                generation: u(12),
                synced: u(20),
            },
        })
    }
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"stateledger:wal-marker:v1\0");
    h.update(bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// The newest valid slot of a marker file's bytes, if any.
pub fn read(bytes: &[u8]) -> Option<Slot> {
    let first = Slot::decode(bytes);
    let second = bytes.get(SLOT_BYTES as usize..).and_then(Slot::decode);
    match (first, second) {
        (Some(a), Some(b)) => Some(if a.sequence >= b.sequence { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(slots: &[Slot]) -> Vec<u8> {
        let mut out = vec![0u8; 2 * SLOT_BYTES as usize];
        for s in slots {
            let e = s.encode();
            let at = s.offset() as usize;
            out[at..at + e.len()].copy_from_slice(&e);
        }
        out
    }

    fn slot(sequence: u64, synced: u64) -> Slot {
        Slot {
            sequence,
            mark: Mark {
                generation: 1,
                synced,
            },
        }
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_one_falls_back() {
        let bytes = file(&[slot(1, 100), slot(2, 200)]);
        assert_eq!(read(&bytes), Some(slot(2, 200)));
        let mut torn = bytes.clone();
        torn[10] ^= 1; // slot 2 sits at offset 0
        assert_eq!(read(&torn), Some(slot(1, 100)));
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[0u8; 1024]), None);
    }

    #[test]
    fn marks_order_by_generation_then_bytes() {
        let a = Mark {
            generation: 1,
            synced: 900,
        };
        let b = Mark {
            generation: 2,
            synced: 16,
        };
        assert!(a < b);
    }
}
