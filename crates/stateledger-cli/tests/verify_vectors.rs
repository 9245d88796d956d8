//! `stateledger verify` against the document vectors in `docs/test-vectors/`: every good document
//! verifies (exit 0, `OK <kind>: ...`), every bad one fails naming the recorded check (exit 1,
//! `FAILED <check>: ...`). Then robustness: hostile input never panics the process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const TRUST: &str = "docs/test-vectors/trust_policy.json";
const DOCUMENT_FILES: &[&str] = &[
    "checkpoints.json",
    "receipts.json",
    "consistency_documents.json",
    "state_proofs.json",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One document case of the vectors (see docs/test-vectors/README.md).
#[derive(Debug)]
struct Case {
    file: &'static str,
    name: String,
    kind: String,
    document: String,
    check: Option<String>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for &file in DOCUMENT_FILES {
        let path = workspace_root().join("docs/test-vectors").join(file);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = |c: &serde_json::Value, field: &str| {
            c[field]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: case field {field} is not a string"))
                .to_string()
        };
        for c in json["cases"].as_array().expect("cases is an array") {
            let valid = c["valid"].as_bool().expect("valid is a boolean");
            let check = c["check"].as_str().map(str::to_string);
            assert_eq!(valid, check.is_none(), "{file}: {c}");
            out.push(Case {
                file,
                name: text(c, "name"),
                kind: text(c, "kind"),
                document: text(c, "document"),
                check,
            });
        }
    }
    assert!(
        out.len() > 50,
        "expected the document vectors, found {}",
        out.len()
    );
    out
}

/// A fresh directory under the system temp dir, removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stateledger-cli-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stateledger() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stateledger"));
    cmd.current_dir(workspace_root());
    cmd
}

fn verify_file(path: &Path, json: bool) -> Output {
    let mut cmd = stateledger();
    cmd.args(["verify", "--trust", TRUST]);
    if json {
        cmd.arg("--json");
    }
    cmd.arg(path).output().expect("stateledger runs")
}

/// Runs `stateledger verify --trust ... -` with `input` on standard input.
fn verify_stdin(input: &[u8], json: bool) -> Output {
    let mut cmd = stateledger();
    cmd.args(["verify", "--trust", TRUST]);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stateledger starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The verifier reads all of its input before deciding, so a failed write means it died early;
    // the exit status below reports that.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("stateledger finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_document_vector_verifies_or_fails_with_its_check() {
    let dir = TempDir::new("vectors");
    for (i, c) in cases().iter().enumerate() {
        let path = dir.0.join(format!("case-{i}"));
        std::fs::write(&path, &c.document).expect("write the document");
        let out = verify_file(&path, false);
        let stdout = text(&out.stdout);
        let what = format!(
            "{} case {:?}\nstdout: {stdout}\nstderr: {}",
            c.file,
            c.name,
            text(&out.stderr)
        );
        match &c.check {
            None => {
                assert_eq!(out.status.code(), Some(0), "{what}");
                assert!(stdout.starts_with(&format!("OK {}: ", c.kind)), "{what}");
            }
            Some(check) => {
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(stdout.starts_with(&format!("FAILED {check}: ")), "{what}");
            }
        }
        assert!(out.stderr.is_empty(), "{what}");
        std::fs::remove_file(&path).expect("remove the document");
    }
}

fn find(cases: &[Case], file: &str, valid: bool, check: Option<&str>) -> String {
    cases
        .iter()
        .find(|c| {
            c.file == file
                && c.check.is_none() == valid
                && (check.is_none() || c.check.as_deref() == check)
        })
        .unwrap_or_else(|| panic!("{file} has a case valid={valid} check={check:?}"))
        .document
        .clone()
}

fn json_verdict(document: &str) -> (Option<i32>, serde_json::Value) {
    let dir = TempDir::new("json");
    let path = dir.0.join("document");
    std::fs::write(&path, document).expect("write the document");
    let out = verify_file(&path, true);
    let verdict = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output {:?} is not JSON: {e}", text(&out.stdout)));
    (out.status.code(), verdict)
}

#[test]
fn json_verdicts() {
    let cases = cases();

    let (code, v) = json_verdict(&find(&cases, "receipts.json", true, None));
    assert_eq!(code, Some(0));
    assert_eq!(v["ok"], true);
    assert_eq!(v["kind"], "receipt");
    let summary = v["summary"].as_str().expect("summary is text");
    assert!(summary.starts_with("leaf 0 (policy record"), "{summary}");
    assert!(summary.contains("signed by node-1, node-2 (2 of 4 trusted keys, threshold 2)"));

    let (code, v) = json_verdict(&find(&cases, "consistency_documents.json", true, None));
    assert_eq!(code, Some(0));
    assert_eq!(v["ok"], true);
    assert_eq!(v["kind"], "consistency_proof");

    let (code, v) = json_verdict(&find(
        &cases,
        "checkpoints.json",
        false,
        Some("checkpoint_threshold"),
    ));
    assert_eq!(code, Some(1));
    assert_eq!(v["ok"], false);
    assert_eq!(v["check"], "checkpoint_threshold");
    assert_eq!(
        v["error"],
        "checkpoint has 1 valid signatures from trusted node keys, the threshold is 2"
    );

    let (code, v) = json_verdict(&find(&cases, "receipts.json", false, Some("leaf_index")));
    assert_eq!(code, Some(1));
    assert_eq!(v["check"], "leaf_index");
    assert_eq!(
        v["error"],
        "document says leaf index 4 but the leaf encodes index 3"
    );
}

/// Asserts a hostile input is refused cleanly: exit status exactly 1 (not 101 for a panic, not a
/// signal, not 2 for "could not run"), no panic message, a verdict on stdout.
fn assert_refused(what: &str, input: &[u8], json: bool) {
    let out = verify_stdin(input, json);
    let stderr = text(&out.stderr);
    let shown: String = text(input).chars().take(200).collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: status {:?}\ninput ({} bytes): {shown:?}\nstdout: {}\nstderr: {stderr}",
        out.status,
        input.len(),
        text(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    if json {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: --json output is not JSON: {e}"));
        assert_eq!(v["ok"], false, "{what}");
        assert!(v["check"].is_string(), "{what}");
    } else {
        assert!(text(&out.stdout).starts_with("FAILED "), "{what}");
    }
}

/// xorshift64: deterministic, dependency-free pseudo-random bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn hostile_input_never_panics() {
    const SEED: u64 = 0x5eed_1ed9_e4ab_cdef;
    let cases = cases();
    let receipt = find(&cases, "receipts.json", true, None);
    let note = find(&cases, "checkpoints.json", true, None);
    let mut rng = XorShift(SEED);

    // (a) Pseudo-random byte strings, some shaped like JSON or like a note to get past the
    // first branch of the parser.
    for i in 0..200 {
        let len = (rng.next() % 600) as usize;
        let mut input = rng.bytes(len);
        match i % 4 {
            1 => input.iter_mut().for_each(|b| *b = b' ' + *b % 95),
            2 => input.insert(0, b'{'),
            3 => {
                input.iter_mut().for_each(|b| *b = b' ' + *b % 95);
                input.splice(0..0, note.bytes().take(note.len() / 2));
            }
            _ => {}
        }
        assert_refused(
            &format!("random input {i} (xorshift seed {SEED:#x})"),
            &input,
            i % 2 == 1,
        );
    }

    // (b) Truncations of a valid receipt at about 50 evenly spaced points.
    let bytes = receipt.as_bytes();
    for k in 0..50 {
        let cut = k * bytes.len() / 50;
        assert_refused(&format!("receipt cut at {cut}"), &bytes[..cut], k % 2 == 0);
    }

    // (c) Valid JSON with wrong types or extra fields.
    let r: serde_json::Value = serde_json::from_str(&receipt).expect("receipt is JSON");
    let variants: Vec<(&str, serde_json::Value)> = vec![
        ("leaf_index is a string", serde_json::json!("0")),
        ("leaf_index is negative", serde_json::json!(-1)),
        ("leaf_index is a float", serde_json::json!(0.5)),
        ("leaf_index is u64::MAX", serde_json::json!(u64::MAX)),
        ("leaf is a number", serde_json::json!(7)),
        ("inclusion_proof is a string", serde_json::json!("x")),
        ("inclusion_proof holds a number", serde_json::json!([1])),
        ("checkpoint is an object", serde_json::json!({"a": 1})),
        ("format is null", serde_json::Value::Null),
    ];
    let fields = [
        "leaf_index",
        "leaf_index",
        "leaf_index",
        "leaf_index",
        "leaf",
        "inclusion_proof",
        "inclusion_proof",
        "checkpoint",
        "format",
    ];
    for ((what, value), field) in variants.into_iter().zip(fields) {
        let mut v = r.clone();
        v[field] = value;
        assert_refused(what, v.to_string().as_bytes(), false);
    }
    let mut extra = r.clone();
    extra["extra"] = serde_json::json!(true);
    assert_refused("extra field", extra.to_string().as_bytes(), true);
    let mut huge_index = r.clone();
    huge_index["leaf_index"] = serde_json::json!(u64::MAX);
    huge_index["inclusion_proof"] = serde_json::json!([]);
    assert_refused(
        "leaf_index u64::MAX, empty proof",
        huge_index.to_string().as_bytes(),
        false,
    );
    for (what, input) in [
        ("empty object", "{}".to_string()),
        (
            "format only",
            r#"{"format":"stateledger.receipt.v1"}"#.to_string(),
        ),
        (
            "unknown format",
            r#"{"format":"stateledger.state_proof.v9"}"#.to_string(),
        ),
        ("JSON array", "[1,2,3]".to_string()),
        ("JSON string", "\"stateledger\"".to_string()),
        ("JSON null", "null".to_string()),
        (
            "deeply nested",
            format!("{{\"format\":{}", "[".repeat(100_000)),
        ),
        ("deeply nested objects", "{\"a\":".repeat(50_000)),
    ] {
        assert_refused(what, input.as_bytes(), false);
    }

    // (d) An empty file, read from a file rather than standard input.
    let dir = TempDir::new("empty");
    let empty = dir.0.join("empty");
    std::fs::write(&empty, b"").expect("write the empty file");
    let out = verify_file(&empty, false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "empty file: {}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).starts_with("FAILED document: document is not valid: it is empty"));
    assert_refused("empty standard input", b"", true);

    // An oversize document is refused by name after reading one byte past the limit, however
    // large the file: a sparse 8 GiB file must not be read into memory.
    let big = dir.0.join("big");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(8 << 30))
        .expect("create a sparse file");
    let out = verify_file(&big, false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "8 GiB file: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("FAILED document: document is not valid: 268435457 bytes is more than the limit of 268435456"),
        "{}",
        text(&out.stdout)
    );

    // (e) A valid checkpoint note with random bytes appended.
    for i in 0..25 {
        let len = 1 + (rng.next() % 100) as usize;
        let mut input = note.as_bytes().to_vec();
        input.extend(rng.bytes(len));
        assert_refused(
            &format!("note with {len} random bytes appended (xorshift seed {SEED:#x}, round {i})"),
            &input,
            i % 2 == 0,
        );
    }
}

/// `--system` and `--at` state what a state proof must be about; asked of another kind of
/// document, or with a time that does not parse, the command cannot run (exit 2) and says why.
#[test]
fn expectations_apply_only_to_state_proofs() {
    let cases = cases();
    let dir = TempDir::new("expect");
    let path = dir.0.join("receipt");
    std::fs::write(&path, find(&cases, "receipts.json", true, None)).expect("write");
    let run = |extra: &[&str]| {
        let out = stateledger()
            .args(["verify", "--trust", TRUST])
            .args(extra)
            .arg(&path)
            .output()
            .expect("stateledger runs");
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = run(&["--at", "5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("apply only to state proofs"), "{err}");
    let (code, err) = run(&["--system", "orders-service"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--at", "yesterday-ish"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    // Without expectations the same receipt verifies.
    assert_eq!(run(&[]).0, Some(0));

    // A state proof is checked against them: the `expectation` check.
    let proof = find(&cases, "state_proofs.json", true, None);
    let doc: serde_json::Value = serde_json::from_str(&proof).expect("a state proof");
    let (system, at) = (
        doc["system"].as_str().expect("system").to_string(),
        doc["at"].as_u64().expect("at").to_string(),
    );
    let path = dir.0.join("state-proof");
    std::fs::write(&path, &proof).expect("write");
    let verify = |extra: &[&str]| {
        let out = stateledger()
            .args(["verify", "--trust", TRUST, "--output", "json"])
            .args(extra)
            .arg(&path)
            .output()
            .expect("stateledger runs");
        let verdict: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("a JSON verdict");
        (out.status.code(), verdict)
    };
    let (code, v) = verify(&["--system", &system, "--at", &at]);
    assert_eq!(
        (code, &v["kind"]),
        (Some(0), &serde_json::json!("state_proof")),
        "{v}"
    );
    let (code, v) = verify(&["--system", "billing-service"]);
    assert_eq!(
        (code, &v["check"]),
        (Some(1), &serde_json::json!("expectation")),
        "{v}"
    );
    let (code, v) = verify(&["--at", "1"]);
    assert_eq!(
        (code, &v["check"]),
        (Some(1), &serde_json::json!("expectation")),
        "{v}"
    );
}
