//! Reading the node's source as text, shared by the tests that check its shape
//! (`module_dag.rs`, `typed_errors.rs`): its `.rs` files, and their code without line comments
//! and without test-only items.

use std::path::{Path, PathBuf};

pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without line comments and without its test-only items.
pub fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(") && (t.contains("(test") || t.contains(" test")) {
            // Skip the item the attribute is on: up to its `;` or the brace that closes the
            // one it opens (further attributes on it are skipped along the way).
            let mut depth = 0i64;
            let mut opened = false;
            for l in lines.by_ref() {
                let l = l.split("//").next().unwrap_or_default();
                depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
                opened |= l.contains('{');
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or_default());
        out.push('\n');
    }
    out
}
