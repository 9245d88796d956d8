//! Named limits of the collectors (STYLE: "put a limit on everything"). The record-level limits
//! (field lengths, entries per snapshot, record bytes) are the ledger's own, in
//! `stateledger_core::limits`.

use std::time::Duration;

/// Largest single configuration file read into a snapshot. A larger file is rejected (its content
/// would not be configuration a person can audit, and it is read into memory to check placeholders).
pub const CONFIG_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Largest total of all values read into one configuration snapshot.
pub const CONFIG_SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Deepest directory nesting followed below a configuration directory.
pub const CONFIG_DIR_DEPTH_MAX: usize = 32;
/// Most problems listed in one rejection (the count of all of them is still reported).
pub const CONFIG_PROBLEMS_MAX: usize = 64;
/// Bytes a record needs around its body at most: the largest `system` and `scope`, the timestamp
/// and the protobuf keys and lengths. Bodies are sized to fit `RECORD_BYTES_MAX` minus this.
pub const RECORD_ENVELOPE_BYTES_MAX: usize =
    stateledger_core::limits::SYSTEM_BYTES_MAX + stateledger_core::limits::SCOPE_BYTES_MAX + 32;
/// Longest line of a JSONL mutation stream (inline payloads included).
pub const MUTATION_LINE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest payload hashed from a file given to the mutation or capture collectors.
pub const PAYLOAD_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Longest a `--version` probe of a language runtime may take.
pub const RUNTIME_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a time-source probe (`chronyc`, `timedatectl`) may take.
pub const TIME_SOURCE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one `git` query may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of a subprocess's stdout or stderr kept (the rest is read and dropped).
pub const COMMAND_OUTPUT_BYTES_MAX: usize = 1024 * 1024;
