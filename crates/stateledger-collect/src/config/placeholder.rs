//! Placeholders left in configuration values: `${VAR}` (shell, docker compose, Spring, many
//! loaders) and `{{ var }}` (Jinja, Go templates, Mustache). A value that still holds one whose
//! variable is not provided is not the configuration that runs: the snapshot is partial.

/// One placeholder found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The placeholder as written, e.g. `${DB_HOST}` or `{{ region }}`.
    pub text: String,
    /// 1-based line of the value it is on.
    pub line: usize,
    /// The variable it names (empty if none can be read from it).
    pub name: String,
    pub form: PlaceholderForm,
}

/// How a placeholder resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceholderForm {
    /// `${NAME}` or `${NAME:?message}`: needs the variable.
    Required,
    /// `${NAME:-default}`, `${NAME-default}`, `${NAME:=default}`, `${NAME:+alt}`: resolves with or
    /// without the variable (the variable is still captured when it is set, because it changes
    /// the value).
    WithDefault,
    /// `{{ name }}`: needs a variable given to the collector (templates do not read the process
    /// environment by that syntax).
    Template,
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Every placeholder in `text`, in order; nested ones (`${A:-${B}}`) are reported each. `$${X}`
/// is an escaped literal, not a placeholder. A `${` or `{{` not closed on its line is not a
/// placeholder.
pub fn find_placeholders(text: &str) -> Vec<Placeholder> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut at = 0;
        while at + 1 < bytes.len() {
            if bytes[at] == b'$' && bytes[at + 1] == b'$' {
                at += 2; // `$$` is a literal dollar; whatever follows is text
                continue;
            }
            if bytes[at] == b'$' && bytes[at + 1] == b'{' {
                if let Some(end) = closing_brace(&bytes[at + 2..]) {
                    let inner = &line[at + 2..at + 2 + end];
                    found.push(shell_placeholder(&line[at..at + 3 + end], inner, i + 1));
                }
                at += 2;
                continue;
            }
            if bytes[at] == b'{' && bytes[at + 1] == b'{' {
                if let Some(end) = line[at + 2..].find("}}") {
                    let inner = line[at + 2..at + 2 + end].trim();
                    found.push(Placeholder {
                        text: line[at..at + 4 + end].to_string(),
                        line: i + 1,
                        name: inner.to_string(),
                        form: PlaceholderForm::Template,
                    });
                    at += 4 + end;
                    continue;
                }
            }
            at += 1;
        }
    }
    found
}

/// Index of the `}` closing a `${` whose content starts at `bytes[0]`, counting nested `${`.
fn closing_brace(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn shell_placeholder(text: &str, inner: &str, line: usize) -> Placeholder {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(name_end);
    let with_default = ["-", ":-", "=", ":=", "+", ":+"]
        .iter()
        .any(|op| rest.starts_with(op));
    let valid = is_name(name) && (rest.is_empty() || with_default || rest.starts_with(['?', ':']));
    Placeholder {
        text: text.to_string(),
        line,
        name: if valid {
            name.to_string()
        } else {
            String::new()
        },
        form: if valid && with_default {
            PlaceholderForm::WithDefault
        } else {
            PlaceholderForm::Required
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PlaceholderForm::*;

    fn found(text: &str) -> Vec<(String, usize, String, PlaceholderForm)> {
        find_placeholders(text)
            .into_iter()
            .map(|p| (p.text, p.line, p.name, p.form))
            .collect()
    }

    fn p(
        text: &str,
        line: usize,
        name: &str,
        form: PlaceholderForm,
    ) -> (String, usize, String, PlaceholderForm) {
        (text.into(), line, name.into(), form)
    }

    #[test]
    fn forms() {
        assert_eq!(
            found("host: ${DB_HOST}\nport: ${DB_PORT:-5432}\nregion: {{ region }}\n"),
            [
                p("${DB_HOST}", 1, "DB_HOST", Required),
                p("${DB_PORT:-5432}", 2, "DB_PORT", WithDefault),
                p("{{ region }}", 3, "region", Template),
            ]
        );
        assert_eq!(
            found("a=${A:?must be set} b=${project.version}"),
            [
                p("${A:?must be set}", 1, "A", Required),
                p("${project.version}", 1, "project.version", Required),
            ]
        );
    }

    #[test]
    fn nested_escaped_and_unclosed() {
        assert_eq!(
            found("x: ${A:-${B}}"),
            [
                p("${A:-${B}}", 1, "A", WithDefault),
                p("${B}", 1, "B", Required)
            ]
        );
        assert_eq!(found("price: $${AMOUNT} and ${ not closed\n{{ open"), []);
        assert_eq!(
            found("${1} ${}"),
            [p("${1}", 1, "", Required), p("${}", 1, "", Required)]
        );
        assert_eq!(found("plain: value with $ and { braces }"), []);
    }
}
