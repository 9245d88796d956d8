//! The configuration collector: a complete snapshot or a rejection that says why not.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use prost::Message as _;
use stateledger_core::limits::{
    CONFIG_ENTRIES_MAX, CONFIG_VALUE_BYTES_MAX, RECORD_BYTES_MAX, TEXT_BYTES_MAX,
};
use stateledger_core::record::validate::validate;
use stateledger_core::record::{pb, Body};

use super::error::{ConfigError, ConfigRejection};
use super::placeholder::{find_placeholders, PlaceholderForm};
use super::salt::Salt;
use super::secret::{
    content_looks_secret, file_name_looks_secret, key_holds_credential, name_looks_secret,
};
use super::structured::{flatten, Format};
use crate::digest::sha256_digest;
use crate::limits::{
    CONFIG_DIR_DEPTH_MAX, CONFIG_FILE_BYTES_MAX, CONFIG_SNAPSHOT_BYTES_MAX,
    RECORD_ENVELOPE_BYTES_MAX,
};

/// Collects a [`pb::ConfigSnapshot`]: files, directories (recursively) and environment variables,
/// each with its source, size and digest, and its clear value when that is safe to record.
///
/// Entry keys: `file:<path>` (source `file`, or `dir` when found by scanning a directory),
/// `env:<NAME>` (source `env`), `var:<NAME>` (source `var`: a variable given to the collector to
/// resolve placeholders). Paths are recorded as given (relative paths stay relative).
///
/// The snapshot is complete or it is rejected ([`ConfigRejection`], every problem named): a file
/// or directory that is missing, unreadable, not a regular file or too large; a dangling symbolic
/// link or a link loop inside a directory; an environment variable asked for but not set; a
/// placeholder whose variable is not provided; too many entries or bytes for one record.
///
/// Clear values: an entry's `value` is set only when the value is not secret, is UTF-8, at most
/// `CONFIG_VALUE_BYTES_MAX` bytes and the ledger accepts it as a clear value (its validator is
/// asked; it refuses control characters — whether a newline or tab counts follows the core's rule,
/// so a multi-line file is kept in clear exactly when the ledger allows it). Values are never
/// escaped: for every entry with a value, `digest == sha256(value)` holds byte for byte; any other
/// value is recorded by digest and size only. If the snapshot would not fit one record, clear
/// values are dropped (largest first) until it does.
///
/// Secrets: see `secret.rs` for what counts. A secret entry has `redacted = true`, no value, and
/// digest `hmac-sha256:<hex>` keyed by the snapshot's salt, returned in
/// [`ConfigCollection::salt`] and never recorded; [`super::verify_redacted`] proves a value
/// against it.
#[derive(Debug, Clone, Default)]
pub struct ConfigCollector {
    version: Option<String>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    env_names: Vec<String>,
    env_prefixes: Vec<String>,
    vars: BTreeMap<String, String>,
    secret_patterns: Vec<String>,
    not_secret_patterns: Vec<String>,
    no_placeholder_check: Vec<String>,
    env_for_placeholders: Option<bool>,
    environment: Option<BTreeMap<String, Vec<u8>>>,
    salt: Option<Salt>,
    /// `CONFIG_SNAPSHOT_BYTES_MAX` unless a test lowers it.
    snapshot_bytes_max: Option<u64>,
}

/// Why a value was redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub key: String,
    /// e.g. `listed as secret`, `name "DB_PASSWORD" looks secret`, `line 3 sets "password"`.
    pub reason: String,
}

/// A complete snapshot and what the caller must keep.
#[derive(Debug, Clone)]
pub struct ConfigCollection {
    pub snapshot: pb::ConfigSnapshot,
    /// The key of every redacted digest in `snapshot`. Keep it (see [`Salt::save`]) to prove
    /// values later; it is not in the record.
    pub salt: Salt,
    /// The salt was given to the collector ([`ConfigCollector::salt`]): the caller holds it
    /// already, so it needs no keeping ([`ConfigCollection::into_record`]).
    pub salt_reused: bool,
    /// The redacted entries and why each was.
    pub redactions: Vec<Redaction>,
    /// Entries whose clear value was left out so the snapshot fits one record.
    pub values_dropped: Vec<String>,
}

impl ConfigCollector {
    pub fn new() -> Self {
        ConfigCollector::default()
    }

    /// The configuration's version label (a config-repo commit, a release name). Without one the
    /// version is `sha256:<hex>` of the snapshot's listing: each entry's key and digest, where a
    /// redacted entry contributes only its key (its keyed digest changes with every salt).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// A configuration file; it must exist and be readable.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// A configuration directory, read recursively in sorted order; symbolic links are followed.
    /// Kubernetes' atomic-writer internals (names starting with `..`) are passed over: the files
    /// they hold appear under their own names.
    pub fn dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// An environment variable that must be set.
    pub fn env(mut self, name: impl Into<String>) -> Self {
        self.env_names.push(name.into());
        self
    }

    /// Every environment variable whose name starts with `prefix`; at least one must be set.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefixes.push(prefix.into());
        self
    }

    /// A variable that resolves `${NAME}` and `{{ NAME }}` placeholders, recorded as `var:NAME`.
    /// It takes precedence over an environment variable of the same name.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Marks entries secret: a glob pattern matched against the entry key (`env:DB_URL`), the
    /// variable name or file path, and the file's base name.
    pub fn secret(mut self, pattern: impl Into<String>) -> Self {
        self.secret_patterns.push(pattern.into());
        self
    }

    /// Overrides the secret-looking heuristics for matching entries (not [`secret`](Self::secret)).
    pub fn not_secret(mut self, pattern: impl Into<String>) -> Self {
        self.not_secret_patterns.push(pattern.into());
        self
    }

    /// Skips the placeholder check for matching entries (a script or template recorded as it is).
    pub fn no_placeholder_check(mut self, pattern: impl Into<String>) -> Self {
        self.no_placeholder_check.push(pattern.into());
        self
    }

    /// Whether `${NAME}` placeholders resolve from the environment (default: yes). A variable used
    /// that way is added to the snapshot as `env:NAME`, because the effective value depends on it.
    pub fn resolve_from_env(mut self, resolve: bool) -> Self {
        self.env_for_placeholders = Some(resolve);
        self
    }

    /// Reads environment variables from this map instead of the process environment.
    pub fn environment<K: Into<String>, V: Into<Vec<u8>>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.environment = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Keys redacted digests with this salt instead of a fresh one (so digests of one secret can
    /// be compared across snapshots by whoever holds the salt).
    pub fn salt(mut self, salt: Salt) -> Self {
        self.salt = Some(salt);
        self
    }

    /// Lowers the snapshot byte limit so a test need not read 256 MiB.
    #[cfg(test)]
    pub(crate) fn snapshot_bytes_max(mut self, max: u64) -> Self {
        self.snapshot_bytes_max = Some(max);
        self
    }

    /// Takes the snapshot.
    pub fn collect(&self) -> Result<ConfigCollection, ConfigRejection> {
        let mut gather = Gather::new(self)?;
        gather.run().map_err(|fatal| {
            let mut rejection = std::mem::replace(
                &mut gather.rejection,
                ConfigRejection {
                    problems: Vec::new(),
                    total: 0,
                },
            );
            rejection.push(fatal);
            rejection
        })?;
        if gather.rejection.total > 0 {
            return Err(gather.rejection);
        }
        let (salt, salt_reused) = match &self.salt {
            Some(salt) => (salt.clone(), true),
            None => (Salt::generate(), false),
        };
        let mut collection = build(self, gather.items, salt)?;
        collection.salt_reused = salt_reused;
        Ok(collection)
    }
}

/// A key of a structured file, as it will be recorded.
#[derive(Debug)]
struct FileKey {
    /// `file:<path>#<key path>`.
    entry_key: String,
    /// The key path and its last name, for user patterns.
    names: Vec<String>,
    value: String,
    secret: Option<String>,
}

/// The source of an entry holding one key of a structured file.
const KEY_SOURCE: &str = "key";

/// A value gathered for the snapshot.
#[derive(Debug)]
struct Item {
    source: &'static str,
    bytes: Vec<u8>,
    /// Why it is secret, if it is.
    secret: Option<String>,
    /// Names user patterns match against besides the key.
    names: Vec<String>,
}

#[derive(Debug)]
struct Patterns {
    secret: Vec<glob::Pattern>,
    not_secret: Vec<glob::Pattern>,
    no_placeholder_check: Vec<glob::Pattern>,
}

fn compile(patterns: &[String], rejection: &mut ConfigRejection) -> Vec<glob::Pattern> {
    patterns
        .iter()
        .filter_map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| {
                    rejection.push(ConfigError::InvalidPattern {
                        pattern: p.clone(),
                        reason: e.to_string(),
                    })
                })
                .ok()
        })
        .collect()
}

fn matches(patterns: &[glob::Pattern], key: &str, names: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| p.matches(key) || names.iter().any(|n| p.matches(n)))
}

#[derive(Debug)]
struct Gather<'c> {
    c: &'c ConfigCollector,
    patterns: Patterns,
    env: BTreeMap<String, Vec<u8>>,
    items: BTreeMap<String, Item>,
    bytes: u64,
    rejection: ConfigRejection,
}

impl<'c> Gather<'c> {
    fn new(c: &'c ConfigCollector) -> Result<Gather<'c>, ConfigRejection> {
        let mut rejection = ConfigRejection {
            problems: Vec::new(),
            total: 0,
        };
        let patterns = Patterns {
            secret: compile(&c.secret_patterns, &mut rejection),
            not_secret: compile(&c.not_secret_patterns, &mut rejection),
            no_placeholder_check: compile(&c.no_placeholder_check, &mut rejection),
        };
        if rejection.total > 0 {
            return Err(rejection);
        }
        let env = c.environment.clone().unwrap_or_else(process_environment);
        Ok(Gather {
            c,
            patterns,
            env,
            items: BTreeMap::new(),
            bytes: 0,
            rejection,
        })
    }

    fn problem(&mut self, problem: ConfigError) {
        self.rejection.push(problem);
    }

    /// Gathers everything; `Err` only for a limit that stops the collection outright.
    fn run(&mut self) -> Result<(), ConfigError> {
        let c = self.c;
        if c.files.is_empty()
            && c.dirs.is_empty()
            && c.env_names.is_empty()
            && c.env_prefixes.is_empty()
            && c.vars.is_empty()
        {
            return Err(ConfigError::NothingToSnapshot);
        }
        for path in &c.files {
            self.file(path, "file", &[])?;
        }
        for dir in &c.dirs {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {
                    let own_name = base_name(dir);
                    let mut ancestors = Vec::new();
                    self.walk(dir, &[own_name], 0, &mut ancestors)?;
                }
                Ok(_) => self.problem(ConfigError::NotADirectory { path: dir.clone() }),
                Err(e) => self.problem(missing_or_unreadable(dir, e)),
            }
        }
        for name in &c.env_names {
            match self.env.get(name).cloned() {
                Some(value) => self.env_item(name, value)?,
                None => self.problem(ConfigError::MissingEnv { name: name.clone() }),
            }
        }
        for prefix in &c.env_prefixes {
            let found: Vec<(String, Vec<u8>)> = self
                .env
                .iter()
                .filter(|(k, _)| k.starts_with(prefix.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if found.is_empty() {
                self.problem(ConfigError::NoEnvMatch {
                    prefix: prefix.clone(),
                });
            }
            for (name, value) in found {
                self.env_item(&name, value)?;
            }
        }
        for (name, value) in &c.vars {
            if name.is_empty() || name.contains('=') {
                self.problem(ConfigError::InvalidVariable {
                    text: format!("{name}={value}"),
                });
                continue;
            }
            let names = vec![name.clone()];
            let secret = self.secret_reason(
                &format!("var:{name}"),
                &names,
                &[name.as_str()],
                Some(value),
            );
            self.insert(
                format!("var:{name}"),
                Item {
                    source: "var",
                    bytes: value.as_bytes().to_vec(),
                    secret,
                    names,
                },
            )?;
        }
        self.resolve_placeholders()
    }

    /// Adds an item; stops at the entry and byte limits.
    fn insert(&mut self, key: String, item: Item) -> Result<(), ConfigError> {
        if let Err(reason) = check_key(&key) {
            self.problem(ConfigError::InvalidKey { key, reason });
            return Ok(());
        }
        if self.items.contains_key(&key) {
            return Ok(()); // the same file named twice, or a directory holding a listed file
        }
        self.bytes += item.bytes.len() as u64;
        let max = self
            .c
            .snapshot_bytes_max
            .unwrap_or(CONFIG_SNAPSHOT_BYTES_MAX);
        if self.bytes > max {
            return Err(ConfigError::SnapshotTooLarge { max });
        }
        self.items.insert(key, item);
        if self.items.len() > CONFIG_ENTRIES_MAX {
            return Err(ConfigError::TooManyEntries {
                max: CONFIG_ENTRIES_MAX,
            });
        }
        Ok(())
    }

    /// Why an entry is secret (see `secret.rs`), or `None`.
    fn secret_reason(
        &self,
        key: &str,
        names: &[String],
        heuristic_names: &[&str],
        content: Option<&str>,
    ) -> Option<String> {
        if matches(&self.patterns.secret, key, names) {
            return Some("listed as secret".to_string());
        }
        if matches(&self.patterns.not_secret, key, names) {
            return None;
        }
        if let Some(n) = heuristic_names.iter().find(|n| name_looks_secret(n)) {
            return Some(format!("name {n:?} looks secret"));
        }
        content.and_then(content_looks_secret)
    }

    fn env_item(&mut self, name: &str, value: Vec<u8>) -> Result<(), ConfigError> {
        let key = format!("env:{name}");
        let names = vec![name.to_string()];
        let text = std::str::from_utf8(&value).ok();
        let secret = self.secret_reason(&key, &names, &[name], text);
        self.insert(
            key,
            Item {
                source: "env",
                bytes: value,
                secret,
                names,
            },
        )
    }

    /// Reads one file. `dir_names` are the scanned directory's own name and the path components
    /// below it, checked for secret-looking names.
    fn file(
        &mut self,
        path: &Path,
        source: &'static str,
        dir_names: &[String],
    ) -> Result<(), ConfigError> {
        let Some(path_text) = path.to_str() else {
            self.problem(ConfigError::InvalidKey {
                key: path.display().to_string(),
                reason: "the path is not valid UTF-8".to_string(),
            });
            return Ok(());
        };
        let key = format!("file:{path_text}");
        if self.items.contains_key(&key) {
            return Ok(());
        }
        let bytes = match read_config_file(path) {
            Ok(bytes) => bytes,
            Err(problem) => {
                self.problem(problem);
                return Ok(());
            }
        };
        let base = base_name(path);
        let names = vec![path_text.to_string(), base.clone()];
        let listed = matches(&self.patterns.secret, &key, &names);
        let not_secret = matches(&self.patterns.not_secret, &key, &names);
        let text = std::str::from_utf8(&bytes).ok();
        let dirs: Vec<&str> = dir_names.iter().map(String::as_str).collect();
        // Secret as a whole: listed, or by its own or its directories' names.
        let whole = if listed {
            Some("listed as secret".to_string())
        } else if not_secret {
            None
        } else if file_name_looks_secret(&base) {
            Some(format!("file name {base:?} looks secret"))
        } else {
            dirs.iter()
                .find(|n| name_looks_secret(n))
                .map(|n| format!("name {n:?} looks secret"))
        };
        let mut unsplit = None;
        // Read key by key with no secret key: the keys' judgment (user patterns included)
        // replaces the line-by-line look at the whole text.
        let mut judged_by_key = false;
        if let (None, false, Some(format), Some(text)) =
            (&whole, not_secret, Format::of(path), text)
        {
            match self.secret_keys(&key, format, text) {
                Ok(keys) if keys.iter().any(|k| k.secret.is_some()) => {
                    return self.insert_split(key, source, bytes, names, keys);
                }
                Ok(_) => judged_by_key = true,
                Err(why) => unsplit = Some(format!("it was not read as {} ({why})", format.name())),
            }
        }
        let secret = whole.or_else(|| {
            if not_secret || judged_by_key {
                return None;
            }
            let reason = text.and_then(content_looks_secret)?;
            Some(match &unsplit {
                Some(why) => format!("{reason}; recorded whole because {why}"),
                None => reason,
            })
        });
        self.insert(
            key,
            Item {
                source,
                bytes,
                secret,
                names,
            },
        )
    }

    /// The keys of a structured file and which of them are secret (see `secret.rs`).
    fn secret_keys(
        &self,
        file_key: &str,
        format: Format,
        text: &str,
    ) -> Result<Vec<FileKey>, String> {
        Ok(flatten(format, text)?
            .into_iter()
            .map(|(path, value)| {
                let entry_key = format!("{file_key}#{path}");
                // The last name of `a.b[2].c` is `c`; of `list[0]`, `list`.
                let last = path
                    .rsplit('.')
                    .next()
                    .and_then(|s| s.split('[').next())
                    .unwrap_or(&path)
                    .to_string();
                let names = vec![path.clone(), last.clone()];
                let secret = if matches(&self.patterns.secret, &entry_key, &names) {
                    Some("listed as secret".to_string())
                } else if matches(&self.patterns.not_secret, &entry_key, &names) {
                    None
                } else if key_holds_credential(&last, &value) {
                    Some(format!("key {path:?} holds a credential"))
                } else {
                    content_looks_secret(&value).map(|r| format!("key {path:?}: {r}"))
                };
                FileKey {
                    entry_key,
                    names,
                    value,
                    secret,
                }
            })
            .collect())
    }

    /// Records a structured file with secret keys: the file itself redacted, and every key as its
    /// own entry (source `key`), redacted when secret and in clear otherwise.
    fn insert_split(
        &mut self,
        key: String,
        source: &'static str,
        bytes: Vec<u8>,
        names: Vec<String>,
        keys: Vec<FileKey>,
    ) -> Result<(), ConfigError> {
        let secret: Vec<&str> = keys
            .iter()
            .filter(|k| k.secret.is_some())
            .map(|k| k.entry_key.rsplit_once('#').map_or("", |(_, p)| p))
            .collect();
        let reason = format!(
            "{} {} secret; the file is also recorded key by key ({} entries, {} redacted)",
            if secret.len() == 1 { "key" } else { "keys" },
            secret.join(", "),
            keys.len(),
            secret.len()
        );
        self.insert(
            key,
            Item {
                source,
                bytes,
                secret: Some(reason),
                names,
            },
        )?;
        for k in keys {
            self.insert(
                k.entry_key,
                Item {
                    source: KEY_SOURCE,
                    bytes: k.value.into_bytes(),
                    secret: k.secret,
                    names: k.names,
                },
            )?;
        }
        Ok(())
    }

    fn walk(
        &mut self,
        dir: &Path,
        names: &[String],
        depth: usize,
        ancestors: &mut Vec<PathBuf>,
    ) -> Result<(), ConfigError> {
        if depth > CONFIG_DIR_DEPTH_MAX {
            self.problem(ConfigError::TooDeep {
                path: dir.to_path_buf(),
                max: CONFIG_DIR_DEPTH_MAX,
            });
            return Ok(());
        }
        let canonical = match dir.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                self.problem(missing_or_unreadable(dir, e));
                return Ok(());
            }
        };
        if ancestors.contains(&canonical) {
            self.problem(ConfigError::SymlinkLoop {
                path: dir.to_path_buf(),
            });
            return Ok(());
        }
        let listing = match std::fs::read_dir(dir).and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        {
            Ok(listing) => listing,
            Err(e) => {
                self.problem(ConfigError::UnreadableFile {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        let mut entries: Vec<(std::ffi::OsString, PathBuf)> = listing
            .into_iter()
            .map(|e| (e.file_name(), e.path()))
            .filter(|(name, _)| !name.as_encoded_bytes().starts_with(b".."))
            .collect();
        entries.sort();
        ancestors.push(canonical);
        for (name, path) in entries {
            let mut below = names.to_vec();
            below.push(name.to_string_lossy().into_owned());
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.walk(&path, &below, depth + 1, ancestors)?,
                Ok(_) => self.file(&path, "dir", &below[..below.len() - 1])?,
                Err(e) => self.problem(missing_or_unreadable(&path, e)),
            }
        }
        ancestors.pop();
        Ok(())
    }

    /// Checks every placeholder in every text value; a variable a placeholder uses becomes an entry
    /// itself (and is checked in turn).
    fn resolve_placeholders(&mut self) -> Result<(), ConfigError> {
        let resolve_env = self.c.env_for_placeholders.unwrap_or(true);
        let mut queue: VecDeque<String> = self.items.keys().cloned().collect();
        while let Some(key) = queue.pop_front() {
            let Some(item) = self.items.get(&key) else {
                continue;
            };
            if matches(&self.patterns.no_placeholder_check, &key, &item.names)
                || item.source == KEY_SOURCE
            {
                continue; // a key's placeholders are its file's, checked with the file
            }
            let Ok(text) = std::str::from_utf8(&item.bytes) else {
                continue; // binary content has no placeholders to resolve
            };
            for p in find_placeholders(text) {
                let unresolved = |why: &str| ConfigError::UnresolvedPlaceholder {
                    key: key.clone(),
                    line: p.line,
                    placeholder: p.text.clone(),
                    why: why.to_string(),
                };
                if p.name.is_empty() {
                    self.problem(unresolved("it names no variable"));
                    continue;
                }
                if self.c.vars.contains_key(&p.name) {
                    continue; // every given variable is an entry already
                }
                if p.form == PlaceholderForm::Template {
                    self.problem(unresolved("no variable of that name was given"));
                    continue;
                }
                match self.env.get(&p.name).cloned() {
                    Some(value) if resolve_env => {
                        let env_key = format!("env:{}", p.name);
                        if !self.items.contains_key(&env_key) {
                            self.env_item(&p.name, value)?;
                            queue.push_back(env_key);
                        }
                    }
                    _ if p.form == PlaceholderForm::WithDefault => {}
                    _ if resolve_env => self.problem(unresolved(
                        "no variable of that name was given and the environment does not set it",
                    )),
                    _ => self.problem(unresolved(
                        "no variable of that name was given (environment resolution is off)",
                    )),
                }
            }
        }
        Ok(())
    }
}

fn process_environment() -> BTreeMap<String, Vec<u8>> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            #[cfg(unix)]
            let v = std::os::unix::ffi::OsStringExt::into_vec(v);
            #[cfg(not(unix))]
            let v = v.to_string_lossy().into_owned().into_bytes();
            Some((k, v))
        })
        .collect()
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_key(key: &str) -> Result<(), String> {
    if key.len() > TEXT_BYTES_MAX {
        return Err(format!(
            "{} bytes, more than the limit of {TEXT_BYTES_MAX}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("contains control characters".to_string());
    }
    Ok(())
}

fn missing_or_unreadable(path: &Path, e: std::io::Error) -> ConfigError {
    if e.kind() == std::io::ErrorKind::NotFound {
        if let Ok(target) = std::fs::read_link(path) {
            return ConfigError::DanglingSymlink {
                path: path.to_path_buf(),
                target,
            };
        }
        return ConfigError::MissingFile {
            path: path.to_path_buf(),
        };
    }
    ConfigError::UnreadableFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "named pipe";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    "special file"
}

/// Reads a regular file of at most `CONFIG_FILE_BYTES_MAX` bytes. Checked before opening, so a
/// named pipe is never opened (which would block).
fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| missing_or_unreadable(path, e))?;
    if !meta.is_file() {
        return Err(ConfigError::NotARegularFile {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    let too_large = |size| ConfigError::FileTooLarge {
        path: path.to_path_buf(),
        size,
        max: CONFIG_FILE_BYTES_MAX,
    };
    if meta.len() > CONFIG_FILE_BYTES_MAX {
        return Err(too_large(meta.len()));
    }
    let unreadable = |e: std::io::Error| ConfigError::UnreadableFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| missing_or_unreadable(path, e))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The clear value of a non-secret entry, or empty when it cannot be kept byte for byte: not
/// UTF-8, longer than `CONFIG_VALUE_BYTES_MAX`, or holding characters the ledger refuses in a
/// clear value. The last is asked of the ledger's own validator, so the rule lives in one place
/// (today it refuses control characters; newlines and tabs follow whatever the core allows).
fn clear_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= CONFIG_VALUE_BYTES_MAX && ledger_accepts_value(text) => {
            text.to_string()
        }
        _ => String::new(),
    }
}

/// True if the ledger accepts `text` as the clear value of a config entry.
pub(crate) fn ledger_accepts_value(text: &str) -> bool {
    let probe = pb::Record {
        system: "probe".to_string(),
        scope: String::new(),
        observed_at_unix_nanos: 1,
        body: Some(Body::Config(pb::ConfigSnapshot {
            version: "probe".to_string(),
            complete: true,
            entries: vec![pb::ConfigEntry {
                key: "probe".to_string(),
                source: "file".to_string(),
                digest: sha256_digest(text.as_bytes()),
                value: text.to_string(),
                size: text.len() as u64,
                ..Default::default()
            }],
        })),
    };
    validate(&probe).is_ok()
}

fn build(
    c: &ConfigCollector,
    items: BTreeMap<String, Item>,
    salt: Salt,
) -> Result<ConfigCollection, ConfigRejection> {
    let mut redactions = Vec::new();
    let mut entries = Vec::with_capacity(items.len());
    for (key, item) in items {
        let size = item.bytes.len() as u64;
        let entry = match item.secret {
            Some(reason) => {
                redactions.push(Redaction {
                    key: key.clone(),
                    reason,
                });
                pb::ConfigEntry {
                    key,
                    source: item.source.to_string(),
                    digest: salt.redact(&item.bytes),
                    redacted: true,
                    size,
                    ..Default::default()
                }
            }
            None => pb::ConfigEntry {
                key,
                source: item.source.to_string(),
                digest: sha256_digest(&item.bytes),
                value: clear_value(&item.bytes),
                size,
                ..Default::default()
            },
        };
        entries.push(entry);
    }

    let version = match &c.version {
        Some(v) => {
            if let Err(reason) = check_key(v) {
                return Err(ConfigError::InvalidVersion {
                    version: v.clone(),
                    reason,
                }
                .into());
            }
            if v.is_empty() {
                return Err(ConfigError::InvalidVersion {
                    version: v.clone(),
                    reason: "it is empty".to_string(),
                }
                .into());
            }
            v.clone()
        }
        None => derived_version(&entries),
    };
    let mut snapshot = pb::ConfigSnapshot {
        version,
        complete: true,
        entries,
    };

    // Fit one record: drop clear values, largest first.
    let budget = RECORD_BYTES_MAX - RECORD_ENVELOPE_BYTES_MAX;
    let mut values_dropped = Vec::new();
    if snapshot.encoded_len() > budget {
        let mut by_size: Vec<usize> = (0..snapshot.entries.len())
            .filter(|&i| !snapshot.entries[i].value.is_empty())
            .collect();
        by_size.sort_by_key(|&i| std::cmp::Reverse(snapshot.entries[i].value.len()));
        for i in by_size {
            if snapshot.encoded_len() <= budget {
                break;
            }
            snapshot.entries[i].value.clear();
            values_dropped.push(snapshot.entries[i].key.clone());
        }
        values_dropped.sort();
    }
    if snapshot.encoded_len() > budget {
        return Err(ConfigError::RecordTooLarge {
            entries: snapshot.entries.len(),
            bytes: snapshot.encoded_len() + RECORD_ENVELOPE_BYTES_MAX,
            max: RECORD_BYTES_MAX,
        }
        .into());
    }
    Ok(ConfigCollection {
        snapshot,
        salt,
        salt_reused: false,
        redactions,
        values_dropped,
    })
}

/// `sha256:` of `key \0 digest \n` per entry (`key \0 redacted \n` for a redacted one), in key
/// order.
fn derived_version(entries: &[pb::ConfigEntry]) -> String {
    let mut listing = Vec::new();
    for e in entries {
        listing.extend_from_slice(e.key.as_bytes());
        listing.push(0);
        listing.extend_from_slice(if e.redacted {
            b"redacted"
        } else {
            e.digest.as_bytes()
        });
        listing.push(b'\n');
    }
    sha256_digest(&listing)
}
