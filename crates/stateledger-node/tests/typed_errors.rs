//! The node's own errors are typed: no `Result<_, String>` in its non-test code. A `String`
//! error cannot say who is at fault, carries its evidence only as text, and lets a caller match
//! on wording; errors are `thiserror` enums instead (see `config::ConfigInvalid`,
//! `tls::TlsError`, `store::wal::frame::FrameError`).
//!
//! How it works: every `.rs` file under `src/` is read with its line comments and test-only
//! items left out (an item under `#[cfg(test)]` or `#[cfg(all(test, …))]`, and the `tests.rs`
//! files such items load). Every `Result<…>` written in what remains — across lines, generic
//! arguments nested — whose error argument is `String` fails the test, naming the file.
//! A `String` that openraft's or tonic's types carry (`Status::internal(text)`) is not a
//! `Result<_, String>` and is not counted; neither is `io::Result<String>`.

mod source_scan;

use std::path::Path;

use source_scan::{code_of, rust_files};

/// Every `Result<…>` in `code` whose last generic argument is `String`, as written.
fn string_results(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("Result<") {
        let start = from + i;
        let args_start = start + "Result<".len();
        from = args_start;
        // A `Result` that is part of a longer name (`FinishResult<`) is another type.
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let bytes = code.as_bytes();
        // Where the last two top-level arguments start (a trailing comma leaves the last empty).
        let (mut depth, mut at) = (1i64, args_start);
        let (mut prev_arg, mut last_arg) = (args_start, args_start);
        while at < bytes.len() && depth > 0 {
            match bytes[at] {
                b'-' if bytes.get(at + 1) == Some(&b'>') => at += 1,
                b'<' | b'(' | b'[' => depth += 1,
                b'>' | b')' | b']' => depth -= 1,
                b',' if depth == 1 => (prev_arg, last_arg) = (last_arg, at + 1),
                _ => {}
            }
            at += 1;
        }
        if depth != 0 {
            break;
        }
        let mut last = code[last_arg..at - 1].trim();
        let mut several = last_arg != args_start;
        if last.is_empty() {
            last = code[prev_arg..last_arg - 1].trim();
            several = prev_arg != args_start;
        }
        if several && matches!(last, "String" | "std::string::String") {
            found.push(
                code[start..at]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    found
}

#[test]
fn the_node_has_no_string_errors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offenders = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source file");
        for result in string_results(&code_of(&text)) {
            offenders.push(format!(
                "{}: {result}",
                file.strip_prefix(&src).expect("under src").display()
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "errors in the node are thiserror enums grouped by who is at fault, not Strings:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scanner_finds_string_errors_across_lines_and_skips_comments_and_tests() {
    let text = "fn a() -> Result<(), String> {}\n\
                fn b() -> Result<\n    Parsed<'_>,\n    String,\n> {}\n\
                fn c() -> Result<Option<String>, StoreError> {}\n\
                fn d() -> io::Result<Vec<String>> {}\n\
                fn e() -> Result<Box<dyn Fn() -> u8>, std::string::String> {}\n\
                // fn f() -> Result<(), String>\n\
                #[cfg(test)]\nmod tests {\n fn g() -> Result<(), String> {}\n}\n\
                #[cfg(all(test, not(madsim)))]\nfn h() -> Result<(), String>;\n\
                fn i() -> FinishResult<u8, String> {}\n";
    assert_eq!(
        string_results(&code_of(text)),
        [
            "Result<(), String>",
            "Result< Parsed<'_>, String, >",
            "Result<Box<dyn Fn() -> u8>, std::string::String>",
        ]
    );
}
