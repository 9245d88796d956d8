//! Step 3, configuration: every entry of the snapshot written exactly as recorded — files under
//! `config/files/<recorded path>`, environment variables in `config/env.json` and
//! `config/env.sh`, placeholder variables in `config/vars.json` — and every entry listed with
//! what became of it in `config/entries.json`.
//!
//! A clear value is written only after its digest is checked. A value recorded by digest alone
//! (too large for the record, or not text) is looked for by that digest under `--artifacts`. A
//! secret is written only when `--secrets` supplies it and it matches the recorded keyed digest
//! with the snapshot's salt (`--salt-file`); otherwise a placeholder stands in its place and a
//! finding says so.
//!
//! The secrets file is JSON, one member per entry key:
//!
//! ```json
//! {"env:DB_PASSWORD": "hunter2",
//!  "file:/etc/orders/tls.key": {"file": "secrets/tls.key"},
//!  "file:/etc/orders/app.toml#db.password": {"base64": "aHVudGVyMg=="}}
//! ```
//!
//! a value as text, `{"base64": ...}` for bytes, or `{"file": PATH}` (relative to the secrets
//! file) for a file's exact bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde::Deserialize;
use stateledger_collect::config::{verify_redacted, RedactedMismatch, Salt};
use stateledger_core::record::pb;
use stateledger_core::state::SystemState;

use super::digest_index::{bytes_digest_like, DigestIndex};
use super::out_dir::{contained, OutDir};
use super::report::{count, StepLog};

/// Largest value read from a secrets file, or found by digest for a config entry.
const VALUE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest secrets file.
const SECRETS_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The source of a key inside a structured file (`file:<path>#<key.path>`).
const KEY_SOURCE: &str = "key";

/// Values supplied for redacted entries, with the snapshot's salt.
#[derive(Debug)]
pub struct Secrets {
    salt: Salt,
    values: BTreeMap<String, Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretValue {
    Text(String),
    Bytes { base64: String },
    File { file: PathBuf },
}

impl Secrets {
    /// Reads `--secrets` and `--salt-file`.
    pub fn load(secrets: &Path, salt_file: &Path) -> anyhow::Result<Secrets> {
        let salt = Salt::load(salt_file).context("cannot use --salt-file")?;
        let bytes = read_bounded(secrets, SECRETS_FILE_BYTES_MAX)
            .with_context(|| format!("cannot read {} (--secrets)", secrets.display()))?;
        let parsed: BTreeMap<String, SecretValue> = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} (--secrets) is not a JSON object of entry keys to values (\"text\", {{\"base64\": ...}} or {{\"file\": PATH}})",
                secrets.display()
            )
        })?;
        let base = secrets.parent().unwrap_or(Path::new("."));
        let mut values = BTreeMap::new();
        for (key, v) in parsed {
            let value = match v {
                SecretValue::Text(t) => t.into_bytes(),
                SecretValue::Bytes { base64 } => base64::engine::general_purpose::STANDARD
                    .decode(base64)
                    .with_context(|| format!("--secrets: {key:?} is not valid base64"))?,
                SecretValue::File { file } => {
                    let path = base.join(&file);
                    read_bounded(&path, VALUE_BYTES_MAX).with_context(|| {
                        format!("--secrets: cannot read {} for {key:?}", path.display())
                    })?
                }
            };
            values.insert(key, value);
        }
        Ok(Secrets { salt, values })
    }
}

fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut buf))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{} is larger than the limit of {max} bytes", path.display());
    }
    Ok(buf)
}

/// Where the snapshot's files go, inside the output directory.
pub const FILES_DIR: &str = "config/files";

/// What the configuration step hands on: the restored environment variables (for the reducer),
/// when every entry was restored.
#[derive(Debug, Default)]
pub struct RestoredConfig {
    pub env: Vec<(String, String)>,
}

/// What became of one entry (`config/entries.json`).
#[derive(Debug, serde::Serialize)]
struct EntryStatus {
    key: String,
    source: String,
    digest: String,
    size: u64,
    redacted: bool,
    /// "written", "placeholder", "covered_by_file" (a key of a file that was written whole),
    /// "verified" (a secret key inside a file, matched from --secrets), or "listed" (a key inside
    /// a file, a remote key: nothing to write).
    status: &'static str,
    /// Where it was written, relative to the output directory.
    path: Option<String>,
    /// The clear value of a key inside a file or a remote key (never a secret).
    value: Option<String>,
}

/// How an entry's value was obtained.
enum Value {
    Verified(Vec<u8>),
    Placeholder,
}

/// Restores the configuration snapshot.
pub fn restore(
    state: &SystemState,
    out: &OutDir,
    secrets: Option<&Secrets>,
    artifacts: &mut DigestIndex,
    log: &mut StepLog<'_>,
) -> anyhow::Result<RestoredConfig> {
    let Some(config) = &state.config else {
        log.summary = "no configuration record up to T: nothing to write".into();
        return Ok(RestoredConfig::default());
    };
    let leaf = Some(config.leaf_index);
    let snapshot = &config.value;
    let mut statuses = Vec::with_capacity(snapshot.entries.len());
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut written_files: Vec<String> = Vec::new();
    let mut placeholders = 0;
    for e in &snapshot.entries {
        let mut status = EntryStatus {
            key: e.key.clone(),
            source: e.source.clone(),
            digest: e.digest.clone(),
            size: e.size,
            redacted: e.redacted,
            status: "written",
            path: None,
            value: None,
        };
        if e.source == KEY_SOURCE
            || !(e.key.starts_with("file:")
                || e.key.starts_with("env:")
                || e.key.starts_with("var:"))
        {
            // A key inside a structured file, or a remote key: listed, never written as a file.
            status.status = "listed";
            if e.redacted {
                let file = e.key.rsplit_once('#').map_or("", |(f, _)| f);
                if written_files.iter().any(|f| f == file) {
                    status.status = "covered_by_file";
                } else if let Some(v) = secrets.and_then(|s| s.values.get(&e.key)) {
                    if check_secret(e, v, secrets, leaf, log) {
                        status.status = "verified";
                    }
                }
            } else {
                status.value = Some(e.value.clone());
            }
            statuses.push(status);
            continue;
        }
        let value = obtain(e, secrets, artifacts, leaf, log)?;
        let bytes = match value {
            Value::Verified(b) => b,
            Value::Placeholder => {
                placeholders += 1;
                status.status = "placeholder";
                placeholder(e).into_bytes()
            }
        };
        if let Some(path) = e.key.strip_prefix("file:") {
            let rel = Path::new(FILES_DIR)
                .join(contained(path).unwrap_or_else(|| PathBuf::from(e.digest.replace(':', "-"))));
            match out.write(&rel, &bytes) {
                Ok(p) => {
                    status.path = Some(out.display(&p));
                    if status.status == "written" {
                        written_files.push(e.key.clone());
                    }
                }
                Err(err) => log.finding("config_write_failed", format!("{}: {err:#}", e.key), leaf),
            }
        } else {
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    log.finding(
                        "config_write_failed",
                        format!(
                            "{} is not UTF-8 text, which an environment variable file cannot hold",
                            e.key
                        ),
                        leaf,
                    );
                    placeholder(e).trim_end().to_string()
                }
            };
            // A placeholder is one line in a variable.
            let text = if status.status == "placeholder" {
                text.trim_end().to_string()
            } else {
                text
            };
            if let Some(name) = e.key.strip_prefix("env:") {
                env.insert(name.to_string(), text);
                status.path = Some("config/env.json".into());
            } else if let Some(name) = e.key.strip_prefix("var:") {
                vars.insert(name.to_string(), text);
                status.path = Some("config/vars.json".into());
            }
        }
        statuses.push(status);
    }
    if statuses
        .iter()
        .any(|s| s.path.as_deref().is_some_and(|p| p.starts_with(FILES_DIR)))
    {
        log.files.push(format!("{FILES_DIR}/"));
    }
    if let Some(s) = secrets {
        let unused: Vec<&str> = s
            .values
            .keys()
            .filter(|k| !snapshot.entries.iter().any(|e| e.redacted && &e.key == *k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            log.note(format!(
                "--secrets gives values for keys no redacted entry of this snapshot has (a typo, or another snapshot's): {}",
                unused.join(", ")
            ));
        }
    }
    out.write("config/entries.json", &json_bytes(&statuses)?)?;
    log.files.push("config/entries.json".into());
    if !env.is_empty() {
        out.write("config/env.json", &json_bytes(&env)?)?;
        out.write("config/env.sh", env_sh(&env, log).as_bytes())?;
        log.files.push("config/env.json".into());
        log.files.push("config/env.sh".into());
    }
    if !vars.is_empty() {
        out.write("config/vars.json", &json_bytes(&vars)?)?;
        log.files.push("config/vars.json".into());
    }
    log.summary = format!(
        "configuration {:?}: {}, {} written exactly as recorded{}{}",
        snapshot.version,
        count(snapshot.entries.len(), "entry"),
        statuses.iter().filter(|s| s.status == "written").count(),
        match statuses.iter().filter(|s| s.source == KEY_SOURCE).count() {
            0 => String::new(),
            keys => format!(", {} inside files listed", count(keys, "key")),
        },
        if placeholders > 0 {
            format!(", {}", count(placeholders, "placeholder"))
        } else {
            String::new()
        }
    );
    Ok(RestoredConfig {
        env: env.into_iter().collect(),
    })
}

fn json_bytes<T: serde::Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    Ok(b)
}

/// The text standing in for a value that was not restored.
fn placeholder(e: &pb::ConfigEntry) -> String {
    format!(
        "STATELEDGER-PLACEHOLDER: the value of {} was not restored (recorded digest {}); see RESTORE.md\n",
        e.key, e.digest
    )
}

/// The value of a file, env or var entry, checked against the record.
fn obtain(
    e: &pb::ConfigEntry,
    secrets: Option<&Secrets>,
    artifacts: &mut DigestIndex,
    leaf: Option<u64>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<Value> {
    if e.redacted {
        let Some(v) = secrets.and_then(|s| s.values.get(&e.key)) else {
            log.finding(
                "secret_not_supplied",
                format!(
                    "{} is secret (recorded as a keyed digest): a placeholder was written; give its value in \
                     --secrets with the snapshot's --salt-file",
                    e.key
                ),
                leaf,
            );
            return Ok(Value::Placeholder);
        };
        return Ok(if check_secret(e, v, secrets, leaf, log) {
            Value::Verified(v.clone())
        } else {
            Value::Placeholder
        });
    }
    let clear = !e.value.is_empty() || e.size == 0;
    if clear {
        let bytes = e.value.as_bytes().to_vec();
        return Ok(match bytes_digest_like(&e.digest, &bytes) {
            Some(d) if d == e.digest => Value::Verified(bytes),
            other => {
                log.finding(
                    "config_digest_mismatch",
                    format!(
                        "{}: the recorded value's digest is {}, the record says {}",
                        e.key,
                        other.as_deref().unwrap_or("not computable"),
                        e.digest
                    ),
                    leaf,
                );
                Value::Placeholder
            }
        });
    }
    // Recorded by digest and size only.
    match artifacts.find(&e.digest)? {
        Some(path) => {
            let bytes = read_bounded(&path, VALUE_BYTES_MAX)?;
            if bytes_digest_like(&e.digest, &bytes).as_deref() == Some(e.digest.as_str()) {
                Ok(Value::Verified(bytes))
            } else {
                log.finding(
                    "config_digest_mismatch",
                    format!(
                        "{}: {} changed after it was found by its digest",
                        e.key,
                        path.display()
                    ),
                    leaf,
                );
                Ok(Value::Placeholder)
            }
        }
        None => {
            log.finding(
                "config_value_not_recorded",
                format!(
                    "{} is recorded by digest only ({} bytes, {}): the ledger does not hold its content; put the \
                     file under --artifacts and it is found by its digest",
                    e.key, e.size, e.digest
                ),
                leaf,
            );
            Ok(Value::Placeholder)
        }
    }
}

/// Checks a supplied secret against the entry's keyed digest; a finding when it does not match.
fn check_secret(
    e: &pb::ConfigEntry,
    value: &[u8],
    secrets: Option<&Secrets>,
    leaf: Option<u64>,
    log: &mut StepLog<'_>,
) -> bool {
    let Some(secrets) = secrets else {
        return false;
    };
    match verify_redacted(value, &secrets.salt, &e.digest) {
        Ok(()) => true,
        Err(RedactedMismatch::Mismatch) => {
            log.finding(
                "secret_mismatch",
                format!(
                    "the value --secrets gives for {} does not match its recorded keyed digest {} with the salt \
                     in --salt-file (a wrong value, or the salt of another snapshot): a placeholder was written",
                    e.key, e.digest
                ),
                leaf,
            );
            false
        }
        Err(other) => {
            log.finding("secret_unverifiable", format!("{}: {other}", e.key), leaf);
            false
        }
    }
}

/// `config/env.sh`: `export NAME='value'` per variable, quoted so the shell reads the value back
/// byte for byte. A name the shell cannot take is left to `env.json`, with a note.
fn env_sh(env: &BTreeMap<String, String>, log: &mut StepLog<'_>) -> String {
    let mut s = String::from(
        "# The configuration's environment variables, exactly as recorded (source this file).\n",
    );
    for (name, value) in env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !valid {
            log.note(format!(
                "environment variable {name:?} is not a shell name: it is in config/env.json only"
            ));
            continue;
        }
        s.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    s
}

/// Single-quotes `value` for a POSIX shell.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        let value = "it's a \"test\"\n$HOME `x` \\ end";
        let script = format!("printf %s {}", shell_quote(value));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    }

    #[test]
    fn secrets_files_take_text_base64_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let salt = Salt::generate();
        salt.save(&dir.path().join("s.salt")).expect("salt");
        std::fs::write(dir.path().join("tls.key"), b"\x00key").expect("write");
        std::fs::write(
            dir.path().join("secrets.json"),
            r#"{"env:A": "one", "env:B": {"base64": "dHdv"}, "file:/k": {"file": "tls.key"}}"#,
        )
        .expect("write");
        let s = Secrets::load(&dir.path().join("secrets.json"), &dir.path().join("s.salt"))
            .expect("loads");
        assert_eq!(s.values["env:A"], b"one");
        assert_eq!(s.values["env:B"], b"two");
        assert_eq!(s.values["file:/k"], b"\x00key");
        std::fs::write(dir.path().join("bad.json"), r#"{"env:A": 7}"#).expect("write");
        let e = Secrets::load(&dir.path().join("bad.json"), &dir.path().join("s.salt"))
            .expect_err("a number is no value");
        assert!(format!("{e:#}").contains("--secrets"), "{e:#}");
    }
}
