//! The keys of a structured configuration file — TOML, YAML, JSON, .env or INI — as flat
//! `(key path, value)` pairs, so that a file holding one secret can be recorded key by key: the
//! secret keys as keyed digests, the rest in clear (see `collector.rs`).
//!
//! Key paths: nested keys joined with `.` (`db.password`), list items as `[i]`
//! (`servers[0].host`), INI sections as the first part (`database.password`). Values are the
//! scalar text: a string's content, or a number, boolean or null as written.
//!
//! Each reader is strict in what it claims to understand: anything else (YAML anchors, block
//! scalars, flow collections, multi-line plain scalars; a line that is no `key=value` in .env or
//! INI) is an error, and the caller then keeps the file whole and redacted. A reader never
//! guesses, because a value it dropped or cut short could be a secret left in clear.

use std::collections::HashMap;
use std::path::Path;

/// A format this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
    Env,
    Ini,
}

impl Format {
    /// The format of a file, by its name; `None` for anything else.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "ini" | "cfg" => Some(Format::Ini),
            _ if name == ".env" || name.starts_with(".env.") || name.ends_with(".env") => {
                Some(Format::Env)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Env => ".env",
            Format::Ini => "INI",
        }
    }
}

/// The flat keys of `text` read as `format`, in file order; `Err` says why it was not read.
pub fn flatten(format: Format, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            json_value(&mut out, String::new(), &v);
        }
        Format::Toml => {
            let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
            for (k, v) in &t {
                toml_value(&mut out, k.clone(), v);
            }
        }
        Format::Yaml => yaml(&mut out, text)?,
        Format::Env => env(&mut out, text)?,
        Format::Ini => ini(&mut out, text)?,
    }
    Ok(out)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn json_value(out: &mut Vec<(String, String)>, path: String, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                json_value(out, join(&path, k), v);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_value(out, format!("{path}[{i}]"), v);
            }
        }
        serde_json::Value::String(s) => out.push((path, s.clone())),
        other => out.push((path, other.to_string())),
    }
}

fn toml_value(out: &mut Vec<(String, String)>, path: String, v: &toml::Value) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                toml_value(out, join(&path, k), v);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                toml_value(out, format!("{path}[{i}]"), v);
            }
        }
        toml::Value::String(s) => out.push((path, s.clone())),
        other => out.push((path, other.to_string())),
    }
}

/// Removes a `#` comment that follows whitespace, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return line[..i].trim_end(),
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    line.trim_end()
}

/// A scalar as YAML, .env or INI write it: quoted (with `\"`, `\\`, `\n` and `\t` in double
/// quotes, `''` in single quotes) or plain.
fn scalar(text: &str) -> Result<String, String> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated quoted value {t:?}"))?;
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                s.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some(c @ ('"' | '\\' | '/')) => s.push(c),
                other => return Err(format!("escape \\{other:?} is not read here")),
            }
        }
        return Ok(s);
    }
    if let Some(inner) = t.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("unterminated quoted value {t:?}"))?;
        return Ok(inner.replace("''", "'"));
    }
    Ok(t.to_string())
}

/// The YAML this module reads: block mappings and block lists of scalars or mappings.
fn yaml(out: &mut Vec<(String, String)>, text: &str) -> Result<(), String> {
    // Open blocks: (the indentation their content is deeper than, the path below them). A list
    // item counts one column deeper than its dash, so that items may sit at their key's
    // indentation (`key:` / `- a`) and the next item closes the previous one.
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut next_index: HashMap<String, usize> = HashMap::new();
    let mut seen_document = false;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let at = |why: &str| format!("line {line_no}: {why}");
        let content = strip_comment(raw);
        let body = content.trim_start();
        if body.is_empty() {
            continue;
        }
        let indent = content.len() - body.len();
        if content[..indent].contains('\t') {
            return Err(at("tab indentation"));
        }
        if content == "---" || content == "..." {
            if seen_document && content == "---" {
                return Err(at("more than one document"));
            }
            continue;
        }
        seen_document = true;
        let item = body == "-" || body.starts_with("- ");
        let depth = if item { indent + 1 } else { indent };
        while open.last().is_some_and(|(i, _)| *i >= depth) {
            open.pop();
        }
        let mut path = open.last().map(|(_, p)| p.clone()).unwrap_or_default();
        let mut body = body;
        if item {
            let i = next_index.entry(path.clone()).or_insert(0);
            path = format!("{path}[{i}]");
            *i += 1;
            let rest = body[1..].trim_start();
            open.push((depth, path.clone()));
            if rest.is_empty() {
                continue;
            }
            if key_value(rest).is_none() {
                open.pop();
                check_plain(rest).map_err(|why| at(&why))?;
                out.push((path, scalar(rest).map_err(|why| at(&why))?));
                continue;
            }
            // "- key: value": the first key of a mapping; the others sit where `key` does.
            body = rest;
        }
        let Some((key, value)) = key_value(body) else {
            return Err(at(
                "not a `key: value` line (a multi-line value is not read here)",
            ));
        };
        let key = scalar(key).map_err(|why| at(&why))?;
        let full = join(&path, &key);
        if value.is_empty() {
            let key_indent = indent + (content.len() - indent - body.len());
            open.push((key_indent, full));
            continue;
        }
        check_plain(value).map_err(|why| at(&why))?;
        out.push((full, scalar(value).map_err(|why| at(&why))?));
    }
    Ok(())
}

/// `key: value` (or `key:`) of a YAML line, splitting at the first `: ` outside quotes.
fn key_value(body: &str) -> Option<(&str, &str)> {
    let mut quote: Option<char> = None;
    let bytes = body.as_bytes();
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && i == 0 => quote = Some(c),
            None if c == ':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') => {
                return Some((&body[..i], body[i + 1..].trim()));
            }
            None => {}
        }
    }
    None
}

/// Refuses the YAML this module does not read: anchors, aliases, tags, block scalars, flow
/// collections and complex keys.
fn check_plain(value: &str) -> Result<(), String> {
    match value.chars().next() {
        Some('&') => Err("an anchor".into()),
        Some('*') => Err("an alias".into()),
        Some('!') => Err("a tag".into()),
        Some('|' | '>') => Err("a block scalar".into()),
        Some('{' | '[') => Err("a flow collection".into()),
        Some('?') => Err("a complex key".into()),
        _ => Ok(()),
    }
}

/// `KEY=value` lines (`export KEY=value` too); `#` comments; quoted values.
fn env(out: &mut Vec<(String, String)>, text: &str) -> Result<(), String> {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=value", n + 1));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {}: {key:?} is not a variable name", n + 1));
        }
        let value = value.trim();
        let value = if value.starts_with(['"', '\'']) {
            scalar(value)
        } else {
            Ok(strip_comment(value).to_string())
        }
        .map_err(|why| format!("line {}: {why}", n + 1))?;
        out.push((key.to_string(), value));
    }
    Ok(())
}

/// `[section]` headers and `key = value` or `key: value` lines; `;` and `#` comments.
fn ini(out: &mut Vec<(String, String)>, text: &str) -> Result<(), String> {
    let mut section = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: unterminated section header", n + 1))?;
            section = name.trim().to_string();
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(format!("line {}: not key = value", n + 1));
        };
        let key = line[..at].trim();
        if key.is_empty() {
            return Err(format!("line {}: no key", n + 1));
        }
        let value =
            scalar(line[at + 1..].trim()).map_err(|why| format!("line {}: {why}", n + 1))?;
        out.push((join(&section, key), value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(format: Format, text: &str) -> Vec<(String, String)> {
        flatten(format, text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn formats_by_name() {
        for (name, f) in [
            ("app.toml", Some(Format::Toml)),
            ("a/b/app.YAML", Some(Format::Yaml)),
            ("x.yml", Some(Format::Yaml)),
            ("settings.json", Some(Format::Json)),
            (".env", Some(Format::Env)),
            (".env.production", Some(Format::Env)),
            ("prod.env", Some(Format::Env)),
            ("my.ini", Some(Format::Ini)),
            ("setup.cfg", Some(Format::Ini)),
            ("nginx.conf", None),
            ("README", None),
        ] {
            assert_eq!(Format::of(Path::new(name)), f, "{name}");
        }
    }

    #[test]
    fn toml_json_env_ini() {
        assert_eq!(
            pairs(
                Format::Toml,
                "listen = \"0.0.0.0:8080\"\n[db]\nhost = \"db.internal\"\nport = 5432\npassword = \"hunter2\"\n"
            ),
            [
                p("db.host", "db.internal"),
                p("db.password", "hunter2"),
                p("db.port", "5432"),
                p("listen", "0.0.0.0:8080"),
            ]
        );
        assert_eq!(
            pairs(
                Format::Json,
                r#"{"apiKey": "abc", "servers": [{"host": "a"}, {"host": "b"}], "debug": false}"#
            ),
            [
                p("apiKey", "abc"),
                p("debug", "false"),
                p("servers[0].host", "a"),
                p("servers[1].host", "b"),
            ]
        );
        assert_eq!(
            pairs(
                Format::Env,
                "# comment\nexport DB_PASSWORD='s3 cret'\nPORT=8080 # the port\nURL=\"a#b\"\n"
            ),
            [
                p("DB_PASSWORD", "s3 cret"),
                p("PORT", "8080"),
                p("URL", "a#b")
            ]
        );
        assert_eq!(
            pairs(
                Format::Ini,
                "top = 1\n[database]\nhost = db\n; comment\npassword: hunter2\n"
            ),
            [
                p("top", "1"),
                p("database.host", "db"),
                p("database.password", "hunter2")
            ]
        );
    }

    #[test]
    fn yaml_mappings_and_lists() {
        let text = "\
# service config
listen: 0.0.0.0:8080   # all interfaces
db:
  host: db.internal
  password: \"hun#ter2\"
  replicas:
    - r1.internal
    - r2.internal
servers:
  - name: a
    port: 1
  - name: b
    port: 2
compact:
- x
- y
empty_value: ''
";
        assert_eq!(
            pairs(Format::Yaml, text),
            [
                p("listen", "0.0.0.0:8080"),
                p("db.host", "db.internal"),
                p("db.password", "hun#ter2"),
                p("db.replicas[0]", "r1.internal"),
                p("db.replicas[1]", "r2.internal"),
                p("servers[0].name", "a"),
                p("servers[0].port", "1"),
                p("servers[1].name", "b"),
                p("servers[1].port", "2"),
                p("compact[0]", "x"),
                p("compact[1]", "y"),
                p("empty_value", ""),
            ]
        );
    }

    #[test]
    fn yaml_it_does_not_understand_is_refused() {
        for text in [
            "key: |\n  line one\n  password: hidden\n",
            "key: >\n  folded\n",
            "base: &b\n  x: 1\nother: *b\n",
            "list: [a, b]\n",
            "map: {a: 1}\n",
            "key: !secret value\n",
            "a: 1\n---\nb: 2\n",
            "text: this is\n  continued on the next line\n",
            "? complex\n: value\n",
        ] {
            assert!(flatten(Format::Yaml, text).is_err(), "read {text:?}");
        }
        assert!(flatten(Format::Env, "not an assignment\n").is_err());
        assert!(flatten(Format::Ini, "[open\n").is_err());
        assert!(flatten(Format::Json, "{").is_err());
        assert!(flatten(Format::Toml, "a = ").is_err());
    }
}
