//! `stateledger collect` as a user runs it: the flags reach the collectors, every record printed
//! parses as a record and passes the ledger's checks, and every refusal exits 2 with a message
//! that names the flag that fixes it. The rules themselves are `stateledger-collect`'s, tested
//! there.

use std::path::Path;
use std::process::Command;

use prost::Message as _;
use stateledger_collect::config::{verify_redacted, Salt};
use stateledger_collect::pb;
use stateledger_core::record::{decode_record, Body};

/// What one run of `stateledger collect` printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}: {}", self.code, self.stderr)
    }
}

/// Runs `stateledger collect <args>`.
fn collect(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .arg("collect")
        .args(args)
        .env_remove("STATELEDGER_PROFILE")
        .output()
        .expect("stateledger runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 output"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The records a run printed, each checked like the ledger checks a submission.
fn printed(run: &Run) -> Vec<pb::Record> {
    run.stdout
        .lines()
        .map(|line| {
            let record: pb::Record = serde_json::from_str(line).expect("a record per line");
            decode_record(&record.encode_to_vec()).expect("a record the ledger accepts")
        })
        .collect()
}

/// Runs `stateledger collect <args>`: the records printed when it exits 0; the run when it fails
/// (exit 2, as every collect refusal, nothing printed unless stated).
fn run(args: &[&str]) -> Result<Vec<pb::Record>, Run> {
    let run = collect(args);
    match run.code {
        Some(0) => Ok(printed(&run)),
        Some(2) => Err(run),
        _ => panic!("stateledger collect {args:?}: {run}"),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn code_without_git_when_everything_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Cargo.lock"), "# lock").expect("write");
    std::fs::write(dir.path().join("orders"), "bin").expect("write");
    let commit = "a".repeat(40);
    let records = run(&[
        "code",
        "--system",
        "orders-service",
        "--scope",
        "ci",
        "--observed-at-unix-nanos",
        "1700000000000000000",
        "--repo",
        path(dir.path()),
        "--repo-name",
        "github.com/acme/orders",
        "--commit",
        &commit,
        "--dirty",
        "false",
        "--artifact",
        path(&dir.path().join("orders")),
        "--require-config",
        "env:DATABASE_URL",
    ])
    .expect("runs");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].observed_at_unix_nanos, 1_700_000_000_000_000_000);
    let Some(Body::Code(code)) = &records[0].body else {
        panic!("a code record")
    };
    assert_eq!(code.repo, "github.com/acme/orders");
    assert_eq!(code.lockfiles[0].name, "Cargo.lock");
    assert_eq!(code.required_config, ["env:DATABASE_URL"]);
}

#[test]
fn config_with_secrets_needs_a_salt_file_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, "port: 8080\n").expect("write");
    let secret = dir.path().join("db_password");
    std::fs::write(&secret, "hunter2").expect("write");
    let base = [
        "config",
        "--system",
        "orders-service",
        "--file",
        path(&app),
        "--file",
        path(&secret),
        "--var",
        "region=eu",
    ];

    let err = run(&base).expect_err("salt would be lost");
    assert!(err.stderr.contains("pass --salt-out FILE"), "{err}");
    assert_eq!(err.stdout, "", "nothing printed");

    let salt_path = dir.path().join("snapshot.salt");
    let mut args = base.to_vec();
    args.extend(["--salt-out", path(&salt_path), "--config-version", "rel-7"]);
    let records = run(&args).expect("runs");
    let Some(Body::Config(snapshot)) = &records[0].body else {
        panic!("a config record")
    };
    assert_eq!(snapshot.version, "rel-7");
    let entry = snapshot
        .entries
        .iter()
        .find(|e| e.redacted)
        .expect("the password file is redacted");
    let salt = Salt::load(&salt_path).expect("salt kept");
    assert_eq!(verify_redacted(b"hunter2", &salt, &entry.digest), Ok(()));

    // `collect verify-redacted` proves it too, and refuses a wrong value.
    let value_file = dir.path().join("value");
    std::fs::write(&value_file, "hunter2").expect("write");
    let verify = |value: &str, output: &str| {
        let run = collect(&[
            "verify-redacted",
            "--salt-file",
            path(&salt_path),
            "--digest",
            &entry.digest,
            "--value-file",
            value,
            "--output",
            output,
        ]);
        match run.code {
            Some(0) => Ok(run.stdout),
            _ => Err(run),
        }
    };
    assert!(verify(path(&value_file), "text")
        .expect("matches")
        .starts_with("ok:"));
    let json: serde_json::Value =
        serde_json::from_str(&verify(path(&value_file), "json").expect("matches"))
            .expect("--output json prints JSON");
    assert_eq!(json["ok"], true);
    assert_eq!(json["digest"], entry.digest.as_str());
    std::fs::write(&value_file, "hunter3").expect("write");
    assert!(verify(path(&value_file), "text").is_err());

    // An existing salt file is never overwritten.
    let err = run(&args).expect_err("salt file exists");
    assert!(err.stderr.contains("already exists"), "{err}");
}

#[test]
fn partial_config_prints_nothing_and_names_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.yaml");
    let err = run(&[
        "config",
        "--system",
        "orders-service",
        "--file",
        path(&missing),
        "--env",
        "STATELEDGER_TEST_SURELY_UNSET",
    ])
    .expect_err("partial");
    let message = err.stderr;
    assert!(
        message.starts_with("error: partial config is rejected"),
        "{message}"
    );
    assert!(message.contains(&format!(
        "missing file: {} does not exist",
        missing.display()
    )));
    assert!(message.contains("missing environment variable: STATELEDGER_TEST_SURELY_UNSET"));
}

#[test]
fn environment_with_flags() {
    let records = run(&[
        "env",
        "--system",
        "orders-service",
        "--flag",
        "FAST_PATH=true",
        "--flag",
        "BETA=off",
        "--no-runtime-probes",
        "--runtime",
        "jvm=21",
        "--image-digest",
        &format!("registry.example/orders@sha256:{}", "e".repeat(64)),
    ])
    .expect("runs");
    let Some(Body::Environment(env)) = &records[0].body else {
        panic!("an environment record")
    };
    assert_eq!(env.feature_flags[0].name, "BETA");
    assert_eq!(
        env.runtimes,
        [pb::Runtime {
            name: "jvm".into(),
            version: "21".into()
        }]
    );
    assert_eq!(env.container_image, format!("sha256:{}", "e".repeat(64)));
    assert!(run(&["env", "--system", "x", "--flag", "NOEQUALS"]).is_err());

    // A container without chronyc or timedatectl declares its clock's source.
    let records = run(&[
        "env",
        "--system",
        "orders-service",
        "--no-runtime-probes",
        "--time-source",
        "host-chrony",
        "--time-synchronized",
        "--time-max-error-ns",
        "2000000",
    ])
    .expect("runs");
    let Some(Body::Environment(env)) = &records[0].body else {
        panic!("an environment record")
    };
    assert_eq!(
        env.time_source,
        Some(pb::TimeSource {
            kind: "host-chrony".into(),
            synchronized: true,
            max_error_nanos: 2_000_000,
        })
    );
    let err = run(&["env", "--system", "x", "--time-synchronized"]).expect_err("needs a kind");
    assert!(err.stderr.contains("--time-source"), "{err}");
}

/// Without a remote the repository has no name; the error names the flag that gives one.
#[test]
fn code_errors_name_the_flag_that_fixes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !git(&["init", "-q"]) {
        return; // no git here: the case cannot arise
    }
    std::fs::write(dir.path().join("a"), "a").expect("write");
    assert!(git(&["add", "a"]));
    assert!(git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "first"
    ]));
    let err = run(&["code", "--system", "x", "--repo", path(dir.path())])
        .expect_err("no remote, no name");
    let text = err.stderr;
    assert!(text.contains("has no remote"), "{text}");
    assert!(text.contains("--repo-name"), "{text}");
}

#[test]
fn mutations_from_flags_and_jsonl() {
    let records = run(&[
        "mutations",
        "--system",
        "orders-service",
        "--kind",
        "order_created",
        "--id",
        "evt-1",
        "--source",
        "kafka:orders/3",
        "--sequence",
        "1",
        "--payload",
        "{}",
        "--kafka",
        "orders/3/100",
        "--capture",
        "seed-1",
    ])
    .expect("runs");
    let Some(Body::Mutation(m)) = &records[0].body else {
        panic!("a mutation record")
    };
    assert_eq!(m.captures, ["seed-1"]);
    assert!(m.payload_digest.starts_with("sha256:"));

    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("m.jsonl");
    std::fs::write(
        &jsonl,
        concat!(
            r#"{"kind":"a","id":"1","source":"s","sequence":1,"observed_at_unix_nanos":5}"#,
            "\n",
            r#"{"kind":"a","id":"2","source":"s","sequence":2}"#,
            "\n",
            r#"{"kind":"a","id":"3","source":"s"}"#,
            "\n",
            r#"{"kind":"a","id":"4","source":"s","sequence":4}"#,
            "\n",
        ),
    )
    .expect("write");
    let args = [
        "mutations",
        "--system",
        "orders-service",
        "--observed-at-unix-nanos",
        "9",
        "--jsonl",
        path(&jsonl),
    ];
    let err = run(&args).expect_err("line 3 is bad");
    assert!(
        err.stderr.contains("line 3: not a mutation object"),
        "{err}"
    );

    let mut keep_going = args.to_vec();
    keep_going.push("--keep-going");
    let err = run(&keep_going).expect_err("still an error status");
    assert!(
        err.stderr
            .ends_with("error: 1 bad mutation lines were skipped\n"),
        "{err}"
    );

    // The records before the bad line, and with --keep-going those after it, are printed.
    let times: Vec<u64> = printed(&err)
        .iter()
        .map(|r| r.observed_at_unix_nanos)
        .collect();
    assert_eq!(times, [5, 9, 9]);

    assert!(run(&["mutations", "--system", "x", "--jsonl", "-", "--kind", "k"]).is_err());
    assert!(run(&["mutations", "--system", "x", "--kind", "k"]).is_err());
}

#[test]
fn captures() {
    let records = run(&[
        "capture",
        "seed",
        "--system",
        "orders-service",
        "--capture-id",
        "seed-1",
        "--name",
        "pricing",
        "--hex",
        "0102",
    ])
    .expect("runs");
    let Some(Body::Nondeterminism(n)) = &records[0].body else {
        panic!("a capture")
    };
    assert_eq!(n.capture_id, "seed-1");
    assert!(run(&["capture", "seed", "--system", "x", "--capture-id", "s"]).is_err());

    run(&["capture", "clock", "--system", "x", "--capture-id", "c-1"]).expect("now");

    let dir = tempfile::tempdir().expect("tempdir");
    let response = dir.path().join("response.json");
    std::fs::write(&response, r#"{"rate":1.08}"#).expect("write");
    let records = run(&[
        "capture",
        "external-call",
        "--system",
        "x",
        "--capture-id",
        "fx-1",
        "--target",
        "https://fx.example/rates",
        "--response-file",
        path(&response),
    ])
    .expect("runs");
    let Some(Body::Nondeterminism(pb::Nondeterminism {
        capture: Some(pb::nondeterminism::Capture::ExternalCall(call)),
        ..
    })) = &records[0].body
    else {
        panic!("an external call")
    };
    assert_eq!(call.response, br#"{"rate":1.08}"#);
}

/// The library's payload-file rules, told in the flags' words.
#[test]
fn a_payload_file_and_its_digest_must_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, "{}").expect("write");
    let base = [
        "mutations",
        "--system",
        "orders-service",
        "--kind",
        "order_created",
        "--id",
        "evt-1",
        "--source",
        "kafka:orders/3",
        "--sequence",
        "1",
        "--payload-file",
        path(&payload),
    ];
    let records = run(&base).expect("runs");
    let Some(Body::Mutation(m)) = &records[0].body else {
        panic!("a mutation record")
    };
    let digest = m.payload_digest.clone();

    let mut agreeing = base.to_vec();
    agreeing.extend(["--payload-digest", &digest]);
    run(&agreeing).expect("the same digest");

    let other = format!("sha256:{}", "0".repeat(64));
    let mut other_digest = base.to_vec();
    other_digest.extend(["--payload-digest", &other]);
    let err = run(&other_digest).expect_err("another digest");
    assert!(
        err.stderr.contains(&format!(
            "--payload-digest {other} does not match {}, whose digest is {digest}",
            payload.display()
        )),
        "{err}"
    );

    let mut both = base.to_vec();
    both.extend(["--payload", "{}"]);
    let err = run(&both).expect_err("two payloads");
    assert!(
        err.stderr
            .contains("give at most one of --payload and --payload-file"),
        "{err}"
    );
}
