//! The node crate's modules form a DAG: no top-level module of `src/` reaches itself through
//! `crate::` paths. A module that needs "the whole node" to do one job is the start of a hub,
//! and a cycle makes every module in it impossible to read, test or replace alone.
//!
//! How it works: for every `.rs` file under `src/`, the top-level module it belongs to is its
//! first path component (`grpc/authz.rs` → `grpc`, `node.rs` → `node`). Every `crate::name`
//! written in the file's code — comments and `#[cfg(test)] mod tests` blocks left out, `use
//! crate::{a, b}` lists included — is an edge to the top-level module `name`. The test fails on
//! any cycle among these edges, printing it with the files that make each edge.
//!
//! `KNOWN_EDGES` lists the edges of the cycles that remain, each with why; an edge listed
//! there that no longer exists also fails the test, so the list can only shrink.

use std::collections::{BTreeMap, BTreeSet};
mod source_scan;

use std::path::Path;

use source_scan::{code_of, rust_files};

/// Edges that still close a cycle, and why they are still there. Remove an entry when its edge
/// goes; never add one.
const KNOWN_EDGES: &[(&str, &str, &str)] = &[
    (
        "raft",
        "ledger",
        "openraft's type config (`raft/types.rs`) names the ledger's snapshot type as its \
         snapshot data, and the ledger implements the state machine of that config: a cycle of \
         types. It goes once the snapshot's leaf source is a trait the ledger implements \
         (`ledger/snapshot.rs`), or the type config moves next to the state machine",
    ),
    (
        "grpc",
        "node",
        "the services take `NodeShared`; the public service's Status reports nearly all of it",
    ),
];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Top-level module names that `code` refers to through `crate::`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(list) = after.strip_prefix('{') {
            // `use crate::{a::X, b, c::{..}}`: the first name of each top-level item.
            let mut depth = 0usize;
            let mut start = true;
            for (j, ch) in list.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        start = true;
                        continue;
                    }
                    _ => {}
                }
                if start && depth == 0 && (ch.is_alphanumeric() || ch == '_') {
                    found.insert(ident(&list[j..]));
                    start = false;
                }
            }
        } else {
            found.insert(ident(after));
        }
        rest = after;
    }
    found.retain(|n| !n.is_empty());
    found
}

fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(&src, f))
        .filter(|m| m != "lib")
        .collect();
    let mut graph = Graph::new();
    for f in &files {
        let from = top_module(&src, f);
        let text = std::fs::read_to_string(f).expect("read source file");
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        for to in references(&code_of(&text)) {
            if to != from && modules.contains(&to) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    graph
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()
        .expect("a path component")
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.trim_end_matches(".rs").to_string()
}

/// One cycle through `start`, if there is one (depth-first search).
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    visit(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_node_modules_form_a_dag() {
    let mut graph = module_graph();
    for (from, to, _why) in KNOWN_EDGES {
        let present = graph.get(*from).is_some_and(|m| m.contains_key(*to));
        assert!(
            present,
            "KNOWN_EDGES lists {from} -> {to}, which no longer exists: remove the entry"
        );
        if let Some(m) = graph.get_mut(*from) {
            m.remove(*to);
        }
    }
    let mut cycles = Vec::new();
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            let mut lines = Vec::new();
            for (i, from) in cycle.iter().enumerate() {
                let to = &cycle[(i + 1) % cycle.len()];
                let files = &graph[from][to];
                lines.push(format!("  {from} -> {to}  ({})", join(files)));
            }
            cycles.push(lines.join("\n"));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles among the node's top-level modules:\n{}",
        cycles.join("\n\n")
    );
}

fn join(files: &BTreeSet<String>) -> String {
    files.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[test]
fn the_reference_scanner_reads_paths_lists_and_skips_comments_and_tests() {
    let text = "use crate::a::X;\n// crate::commented\nuse crate::{b::Y, c, d::{e, f}};\n\
                fn g() { crate::h::call(); }\n#[cfg(test)]\nmod tests {\n use crate::t;\n}\n";
    let found = references(&code_of(text));
    let names: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "c", "d", "h"]);
}
