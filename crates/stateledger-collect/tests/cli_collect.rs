//! The CLI's `stateledger collect` command, compiled from the CLI's source and run in-process:
//! every record it prints parses as a record and passes the ledger's checks.

#[path = "../../stateledger-cli/src/cmd/collect.rs"]
#[allow(dead_code)]
mod collect;
#[path = "../../stateledger-cli/src/cmd/output.rs"]
#[allow(dead_code, unused_macros)]
mod output;

use std::path::Path;

use clap::Parser as _;
use prost::Message as _;
use stateledger_collect::config::{verify_redacted, Salt};
use stateledger_collect::pb;
use stateledger_core::record::{decode_record, Body};

#[derive(clap::Parser, Debug)]
#[command(name = "stateledger")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand, Debug)]
enum Top {
    Collect(collect::CollectArgs),
}

/// Runs `stateledger collect <args>`; returns the records printed, each checked like the ledger
/// checks a submission.
fn run(args: &[&str]) -> anyhow::Result<Vec<pb::Record>> {
    let argv = ["stateledger", "collect"].iter().chain(args);
    let Top::Collect(args) = Cli::try_parse_from(argv)?.command;
    let mut out = Vec::new();
    collect::run_with(args, &mut out)?;
    let text = String::from_utf8(out).expect("utf-8 output");
    Ok(text
        .lines()
        .map(|line| {
            let record: pb::Record = serde_json::from_str(line).expect("a record per line");
            decode_record(&record.encode_to_vec()).expect("a record the ledger accepts")
        })
        .collect())
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
    assert!(err.to_string().contains("pass --salt-out FILE"), "{err}");

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
        let argv = [
            "stateledger",
            "collect",
            "verify-redacted",
            "--salt-file",
            path(&salt_path),
            "--digest",
            &entry.digest,
            "--value-file",
            value,
            "--output",
            output,
        ];
        let Top::Collect(args) = Cli::try_parse_from(argv).expect("parses").command;
        let mut out = Vec::new();
        collect::run_with(args, &mut out).map(|()| String::from_utf8(out).expect("utf-8"))
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
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
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
    let message = err.to_string();
    assert!(
        message.starts_with("partial config is rejected"),
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
    assert!(err.to_string().contains("--time-source"), "{err}");
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
    let text = format!("{err:#}");
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
        format!("{err:#}").contains("line 3: not a mutation object"),
        "{err:#}"
    );

    let mut keep_going = args.to_vec();
    keep_going.push("--keep-going");
    let err = run(&keep_going).expect_err("still an error status");
    assert_eq!(err.to_string(), "1 bad mutation lines were skipped");

    // The records before the bad line, and with --keep-going those after it, are printed.
    let argv = ["stateledger", "collect"].iter().chain(keep_going.iter());
    let Top::Collect(parsed) = Cli::try_parse_from(argv).expect("parses").command;
    let mut out = Vec::new();
    let _ = collect::run_with(parsed, &mut out);
    let printed: Vec<pb::Record> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let times: Vec<u64> = printed.iter().map(|r| r.observed_at_unix_nanos).collect();
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
