//! Which configuration values are secret. A secret is recorded redacted: no clear value, and a
//! keyed digest instead of a plain one (see `salt.rs`).
//!
//! A value is secret when any of these holds:
//! 1. the user lists it (a glob pattern matching the entry key, the env var or file path, or the
//!    file's base name);
//! 2. its name looks secret: a word of the env var name, of the file's base name, or of the
//!    directory path below (and including) a scanned directory is one of [`SECRET_WORDS`]
//!    (`DB_PASSWORD`, `apiKey`, `tls.key`, `/run/secrets/db`), or contains one of
//!    [`SECRET_SUBSTRINGS`] (`dbpassword`), or the file type holds keys (`.pem`, `.p12`, ...);
//! 3. its content looks secret: a line assigns a non-empty value to a key that names a credential
//!    (`password: hunter2`, `API_TOKEN=...`, `"secret": "..."`, `signing_key = ...`; stricter than
//!    rule 2, so `primary_key: id` does not count), holds a PEM private key, or a URL with a
//!    password (`postgres://app:pw@db/orders`).
//!
//! Rules 2 and 3 are heuristics and err on the side of redacting; a pattern the user marks "not
//! secret" overrides them (never rule 1). Redacting too much loses only the clear value, which
//! the digest still pins down.
//!
//! **Structured files** (TOML, YAML, JSON, .env, INI; `structured.rs`) are judged key by key:
//! a key is secret when a user pattern matches its entry key (`file:<path>#<key path>`), its
//! key path (`db.password`) or its last name (`password`), or when rule 3 judges `name: value`
//! secret. A file with a secret key is recorded redacted as a whole *and* as one entry per key,
//! the secret ones redacted, the others in clear; a file not secret by name or by a pattern on
//! the file itself, in which no key is secret, stays whole and in clear. A structured file that
//! cannot be read (YAML anchors, block scalars, ...) is judged whole, as any other file.

/// Words that make a name secret when they appear as a word of it.
pub const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "tokens",
    "key",
    "keys",
    "apikey",
    "credential",
    "credentials",
    "creds",
    "private",
    "auth",
    "cookie",
    "salt",
    "signature",
    "keystore",
    "truststore",
];

/// Substrings that make a name secret wherever they appear (`dbpassword`, `githubtoken`).
pub const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "privatekey",
    "accesskey",
];

/// File extensions and names of files that hold keys or credentials.
const SECRET_FILE_SUFFIXES: &[&str] = &[
    ".pem",
    ".key",
    ".p12",
    ".pfx",
    ".jks",
    ".keystore",
    ".kdbx",
    ".gpg",
    ".asc",
    ".ppk",
];
const SECRET_FILE_NAMES: &[&str] = &[
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".netrc",
    ".pgpass",
    ".htpasswd",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "shadow",
];

/// The words of a name: split at every non-alphanumeric character and at lower→upper case
/// changes (`dbPasswordFile` → `db`, `password`, `file`), lower-cased.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// True if a name (an env var, a key in a file, a file or directory name) looks secret.
pub fn name_looks_secret(name: &str) -> bool {
    let lower = name.to_lowercase();
    if SECRET_SUBSTRINGS.iter().any(|s| lower.contains(s)) {
        return true;
    }
    let words = words(name);
    if words.iter().any(|w| SECRET_WORDS.contains(&w.as_str())) {
        return true;
    }
    // Two words that form a secret word together: "api_key" is caught by "key" already, but
    // "pass" + "phrase" or "private" + "key" written apart are caught here too.
    words
        .windows(2)
        .any(|w| SECRET_WORDS.contains(&format!("{}{}", w[0], w[1]).as_str()))
}

/// True if a file's base name says it holds keys or credentials (`tls.key`, `id_ed25519`).
pub fn file_name_looks_secret(base_name: &str) -> bool {
    let lower = base_name.to_lowercase();
    name_looks_secret(base_name)
        || SECRET_FILE_NAMES.contains(&lower.as_str())
        || SECRET_FILE_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Why a value's content looks secret, or `None`. The reason names the line and the key, never
/// the value.
pub fn content_looks_secret(text: &str) -> Option<String> {
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.contains("PRIVATE KEY-----") {
            return Some(format!("line {n} holds a PEM private key"));
        }
        if url_has_password(line) {
            return Some(format!("line {n} holds a URL with a password"));
        }
        if let Some(key) = secret_assignment(line) {
            return Some(format!("line {n} sets {key:?}"));
        }
    }
    None
}

/// `key: value`, `key = value`, `"key": "value"`, `export KEY=value` where the key looks secret
/// and the value is not empty, null or only a placeholder. Returns the key.
fn secret_assignment(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with("//") || trimmed.starts_with(';') {
        return None;
    }
    let at = trimmed.find([':', '='])?;
    let (left, right) = trimmed.split_at(at);
    let left = left.trim().trim_start_matches("export ").trim();
    let key = left
        .trim_matches(|c| c == '"' || c == '\'' || c == '-')
        .trim();
    if key.is_empty() || key.len() > 128 || key.contains(char::is_whitespace) {
        return None;
    }
    let value = right[1..]
        .trim_start_matches('=')
        .trim()
        .trim_end_matches(',')
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    key_holds_credential(key, value).then_some(key)
}

/// Whether a key holding `value` is a credential, as rule 3 judges a line: the key names one
/// and the value is not empty, null or only a placeholder. Also used for the keys of structured
/// files, one by one.
pub(crate) fn key_holds_credential(key: &str, value: &str) -> bool {
    let value = value.trim();
    let empty = value.is_empty()
        || matches!(value, "null" | "~" | "nil" | "None" | "{" | "[" | "|" | ">")
        || is_only_placeholder(value);
    !empty && key_names_a_credential(key)
}

/// Words that, followed by "key", name a key that is a credential (`signing_key`, `apiKey`).
const CREDENTIAL_KEY_QUALIFIERS: &[&str] = &[
    "api",
    "private",
    "secret",
    "access",
    "signing",
    "encryption",
    "master",
    "client",
    "license",
    "ssh",
    "gpg",
    "pgp",
    "aes",
    "hmac",
    "jwt",
    "session",
];

/// What may follow "token" in a key that counts or splits text rather than holding a credential
/// (`max_tokens`, `tokenizer`, `tokenise`).
const NOT_A_CREDENTIAL_AFTER_TOKEN: &[&str] = &["s", "iz", "is"];

/// Whether `lower` contains one of [`SECRET_SUBSTRINGS`] as a credential: "token" only where it
/// is not the start of a count or a tokenizer ([`NOT_A_CREDENTIAL_AFTER_TOKEN`]).
fn has_credential_substring(lower: &str) -> bool {
    SECRET_SUBSTRINGS.iter().any(|s| {
        lower.match_indices(s).any(|(at, _)| {
            *s != "token"
                || !NOT_A_CREDENTIAL_AFTER_TOKEN
                    .iter()
                    .any(|after| lower[at + s.len()..].starts_with(after))
        })
    })
}

/// Stricter than [`name_looks_secret`], for keys inside a file: configuration files are full of
/// `key`, `auth` and `private` that are not credentials, and of `max_tokens` and `tokenizer`.
fn key_names_a_credential(key: &str) -> bool {
    let lower = key.to_lowercase();
    if has_credential_substring(&lower) {
        return true;
    }
    let words = words(key);
    words
        .iter()
        .any(|w| matches!(w.as_str(), "pwd" | "pass" | "passphrase" | "creds"))
        || words
            .windows(2)
            .any(|w| w[1] == "key" && CREDENTIAL_KEY_QUALIFIERS.contains(&w[0].as_str()))
}

fn is_only_placeholder(value: &str) -> bool {
    (value.starts_with("${") || value.starts_with("{{"))
        && (value.ends_with('}') && value.matches('}').count() <= 2)
}

/// `scheme://user:password@host`: userinfo with a non-empty password.
pub fn url_has_password(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                if !password.is_empty() && !is_only_placeholder(password) {
                    return true;
                }
            }
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "DB_PASSWORD",
            "password",
            "dbpassword",
            "apiKey",
            "API_KEY",
            "STRIPE_SECRET",
            "GITHUB_TOKEN",
            "aws_secret_access_key",
            "private_key",
            "PASS",
            "db-creds",
            "client_credentials",
            "oauth.auth.header",
            "Passphrase",
            "secrets",
        ] {
            assert!(name_looks_secret(name), "{name}");
        }
        for name in [
            "DATABASE_URL",
            "PORT",
            "LOG_LEVEL",
            "monkey_count",
            "keyboard_layout",
            "author",
            "compass",
            "app.yaml",
            "orders",
        ] {
            assert!(!name_looks_secret(name), "{name}");
        }
    }

    #[test]
    fn secret_file_names() {
        for name in [
            "tls.key",
            "server.pem",
            "id_ed25519",
            ".pgpass",
            "db_password",
        ] {
            assert!(file_name_looks_secret(name), "{name}");
        }
        for name in ["app.yaml", "server.crt", "limits.toml"] {
            assert!(!file_name_looks_secret(name), "{name}");
        }
    }

    #[test]
    fn secret_content_names_the_line_not_the_value() {
        let cases = [
            (
                "port: 8080\npassword: hunter2\n",
                "line 2 sets \"password\"",
            ),
            ("{\n  \"apiKey\": \"abc123\",\n}", "line 2 sets \"apiKey\""),
            ("export DB_TOKEN=xyz", "line 1 sets \"DB_TOKEN\""),
            ("db_secret = 's3'", "line 1 sets \"db_secret\""),
            ("signing_key = abc", "line 1 sets \"signing_key\""),
            ("db_pass: x", "line 1 sets \"db_pass\""),
            ("auth_token = t0k", "line 1 sets \"auth_token\""),
            ("githubtoken: abc", "line 1 sets \"githubtoken\""),
            ("max_tokens_token: abc", "line 1 sets \"max_tokens_token\""),
            (
                "url: postgres://app:pw@db:5432/orders",
                "line 1 holds a URL with a password",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA",
                "line 1 holds a PEM private key",
            ),
        ];
        for (text, reason) in cases {
            let got = content_looks_secret(text).expect(text);
            assert_eq!(got, reason);
            assert!(!got.contains("hunter2") && !got.contains("abc123"));
        }
        for text in [
            "port: 8080\nlog_level: info\n",
            "password: ${DB_PASSWORD}\n",
            "password:\n  file: /run/secrets/db\n",
            "# password: example\n",
            "token: null\n",
            "url: https://example.com/x?y=1\n",
            "url: postgres://app@db/orders\n",
            "url: postgres://app:${PW}@db/orders\n",
            "key_rotation_days: 30\n",
            "primary_key: id\nauth: enabled\nprivate: false\n",
            "- key: region\n  value: eu\n",
            "max_tokens = 10\n",
            "maxTokens: 256\n",
            "tokenizer: bpe\n",
        ] {
            assert_eq!(content_looks_secret(text), None, "{text}");
        }
    }
}
