//! `stateledger materialize` against a real local cluster, run as a user runs it: the state of
//! `orders-service` is recorded with the collectors (a git commit with a lockfile and a build
//! artifact; a configuration file holding a database password and two environment variables,
//! one secret; the environment; a seed, a clock reading and an external call; three Kafka
//! mutations and the application's state digest after each), then restored at T.
//!
//! - with every input, everything is restored and verified (exit 0), from the cluster and from
//!   a saved proof offline; a tampered proof restores nothing (exit 1), and an --out that is
//!   not empty stops it before anything is written (exit 2);
//! - one test per failure, each exit 1 with the finding named, its record's leaf and the
//!   inclusion proof of that leaf: a commit missing from --repo, code built from a dirty tree,
//!   an artifact with another digest under its recorded name, a lockfile that is not the
//!   commit's, a secret not supplied (a placeholder) or that does not match its keyed digest, a
//!   payload missing from --payloads, a replay that diverges from a recorded state digest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest as _;
use stateledger_tests::binary;
use stateledger_tests::cli::Run;
use stateledger_tests::cluster::TestCluster;

const SYSTEM: &str = "orders-service";
const APP_TOML: &str = "[server]\nport = 8080\n\n[db]\nurl = \"postgres://db.internal/orders\"\npassword = \"s3cret-db\"\n";
const ARTIFACT: &[u8] = b"#!/bin/sh\necho orders v1\n";
const FX_RESPONSE: &str = "{\"EURUSD\": 1.0842}\n";
/// The container image the environment runs in (a record keeps its digest, not its name).
const IMAGE_DIGEST: &str =
    "sha256:7d2a4f0c1e9b8a6d5c4b3a29180f7e6d5c4b3a291807f6e5d4c3b2a190817263";

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary paths")
}

/// Runs `stateledger <args>` in `cwd` with extra environment variables.
fn sl_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let started = std::time::Instant::now();
    let out = Command::new(binary::stateledger())
        .args(args)
        .current_dir(cwd)
        .env_remove("STATELEDGER_PROFILE")
        .env_remove("STATELEDGER_TIMEOUT")
        .envs(env.iter().copied())
        .output()
        .expect("stateledger runs");
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit holding `files`.
fn repo_with(dir: &Path, files: &[(&str, &[u8])]) -> String {
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "orders-service"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn payload(sequence: u64) -> String {
    format!(
        "{{\"order\":\"o-{sequence}\",\"amount_cents\":{}}}",
        1000 + sequence
    )
}

/// The digest `stateledger example-reducer` gives after `n` order_created mutations, the last
/// with `last_payload_bytes` bytes of payload (its state as JSON, hashed).
fn example_state_digest(n: u64, last_payload_bytes: usize) -> String {
    sha256(
        format!(
            "{{\"orders\":{n},\"cancelled\":0,\"refunds\":0,\"discounts_percent\":[],\"last_payload_bytes\":{last_payload_bytes}}}"
        )
        .as_bytes(),
    )
}

/// How the recorded story differs from the plain one.
#[derive(Clone, Copy, Debug, Default)]
struct Story {
    /// The application declares a wrong state digest after this mutation.
    wrong_state_digest_at: Option<u64>,
    /// The code is collected from a working tree with an uncommitted change.
    dirty: bool,
    /// The code is collected with the lockfile changed after the commit (dependencies updated
    /// and built, never committed).
    lockfile_changed: bool,
}

/// A cluster with `orders-service` recorded, and the inputs a restore needs.
struct Scenario {
    cluster: TestCluster,
    dir: PathBuf,
    repo: PathBuf,
    commit: String,
    store: PathBuf,
    payloads: PathBuf,
    secrets: PathBuf,
    salt: PathBuf,
    at: u64,
}

/// What one materialize run gets.
#[derive(Clone, Debug)]
struct Inputs {
    repo: PathBuf,
    artifacts: PathBuf,
    secrets: PathBuf,
    payloads: PathBuf,
    replay: String,
}

impl Scenario {
    async fn record(story: Story) -> Scenario {
        let mut cluster = TestCluster::new(1);
        cluster.start_all();
        cluster.wait_leader(&[1], Duration::from_secs(30)).await;
        let dir = cluster.scratch("materialize");
        let profile = cluster.dir().join("client.toml");
        let profile = path(&profile).to_string();
        let sl = |cwd: &Path, env: &[(&str, &str)], args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--profile", profile.as_str()]);
            sl_in(cwd, env, &all)
        };

        // The code: a commit with a lockfile and the config file; the artifact is built, not
        // committed.
        let repo = dir.join("repo");
        let commit = repo_with(
            &repo,
            &[
                ("Cargo.lock", b"# lockfile v1\n"),
                ("src/main.sh", b"echo orders\n"),
                ("config/app.toml", APP_TOML.as_bytes()),
                (".gitignore", b"dist/\n"),
            ],
        );
        std::fs::create_dir_all(repo.join("dist")).expect("mkdir");
        std::fs::write(repo.join("dist/orders"), ARTIFACT).expect("write");
        if story.dirty {
            std::fs::write(repo.join("src/main.sh"), b"echo orders, patched by hand\n")
                .expect("write");
        }
        if story.lockfile_changed {
            std::fs::write(repo.join("Cargo.lock"), b"# lockfile v2, updated\n").expect("write");
        }

        let keys = dir.join("keys");
        sl_in(
            &dir,
            &[],
            &["keygen", "--name", "orders-collector", "--out", path(&keys)],
        )
        .expect_code(0);
        sl(
            &dir,
            &[],
            &[
                "grant",
                "--system",
                SYSTEM,
                "--writer",
                path(&keys.join("orders-collector.pub")),
            ],
        )
        .expect_code(0);
        let key = keys.join("orders-collector.key");
        let records = dir.join("records");
        std::fs::create_dir_all(&records).expect("mkdir");
        let mut n = 0;
        let mut submit = |run: Run| {
            run.expect_code(0);
            n += 1;
            let file = records.join(format!("{n}.jsonl"));
            std::fs::write(&file, &run.stdout).expect("write");
            sl(
                &dir,
                &[],
                &["submit", "--key", path(&key), "--no-receipts", path(&file)],
            )
            .expect_code(0);
        };

        submit(sl_in(
            &repo,
            &[],
            &[
                "collect",
                "code",
                "--system",
                SYSTEM,
                "--repo",
                ".",
                "--repo-name",
                "github.com/acme/orders-service",
                "--artifact",
                "dist/orders",
                "--require-config",
                "env:ORDERS_MODE",
            ],
        ));
        let salt = dir.join("orders.salt");
        submit(sl_in(
            &repo,
            &[("ORDERS_MODE", "fast"), ("DB_PASSWORD", "hunter2")],
            &[
                "collect",
                "config",
                "--system",
                SYSTEM,
                "--config-version",
                "v7",
                "--file",
                "config/app.toml",
                "--env",
                "ORDERS_MODE",
                "--env",
                "DB_PASSWORD",
                "--salt-out",
                path(&salt),
            ],
        ));
        submit(sl_in(
            &dir,
            &[],
            &[
                "collect",
                "env",
                "--system",
                SYSTEM,
                "--flag",
                "fast-path=on",
                "--runtime",
                "orders=1.0.0",
                "--no-runtime-probes",
                "--time-source",
                "host-chrony",
                "--time-synchronized",
                "--image-digest",
                &format!("registry.example/orders@{IMAGE_DIGEST}"),
            ],
        ));
        submit(sl_in(
            &dir,
            &[],
            &[
                "collect",
                "capture",
                "seed",
                "--system",
                SYSTEM,
                "--capture-id",
                "discount-seed",
                "--hex",
                "0a0b0c0d",
            ],
        ));
        submit(sl_in(
            &dir,
            &[],
            &[
                "collect",
                "capture",
                "clock",
                "--system",
                SYSTEM,
                "--capture-id",
                "now-1",
                "--unix-nanos",
                "1764000000000000000",
            ],
        ));
        let fx = dir.join("fx.json");
        std::fs::write(&fx, FX_RESPONSE).expect("write");
        submit(sl_in(
            &dir,
            &[],
            &[
                "collect",
                "capture",
                "external-call",
                "--system",
                SYSTEM,
                "--capture-id",
                "fx-1",
                "--target",
                "https://fx.example/rates",
                "--response-file",
                path(&fx),
            ],
        ));

        // Three orders from Kafka, their payloads retained by the broker (one file each, named
        // as the broker export names them), and the application's state digest after each.
        let payloads = dir.join("kafka-export");
        std::fs::create_dir_all(&payloads).expect("mkdir");
        let mut lines = String::new();
        let mut digests = String::new();
        for seq in 1..=3u64 {
            let p = payload(seq);
            std::fs::write(payloads.join(format!("orders-3-{}.msg", 4400 + seq)), &p)
                .expect("write");
            let captures: Vec<&str> = match seq {
                2 => vec!["discount-seed"],
                3 => vec!["fx-1", "now-1"],
                _ => vec![],
            };
            lines.push_str(
                &serde_json::json!({
                    "kind": "order_created", "id": format!("evt-{seq}"), "source": "kafka:orders/3",
                    "sequence": seq, "origin": "checkout-api", "payload": p,
                    "kafka": {"topic": "orders", "partition": 3, "offset": 4400 + seq},
                    "captures": captures,
                })
                .to_string(),
            );
            lines.push('\n');
            let digest = if story.wrong_state_digest_at == Some(seq) {
                example_state_digest(seq + 1, p.len())
            } else {
                example_state_digest(seq, p.len())
            };
            digests.push_str(
                &serde_json::json!({
                    "system": SYSTEM, "observed_at_unix_nanos": 1,
                    "body": {"state_digest": {"source": "kafka:orders/3", "sequence": seq, "digest": digest}},
                })
                .to_string(),
            );
            digests.push('\n');
        }
        let jsonl = dir.join("mutations.jsonl");
        std::fs::write(&jsonl, lines).expect("write");
        submit(sl_in(
            &dir,
            &[],
            &[
                "collect",
                "mutations",
                "--system",
                SYSTEM,
                "--jsonl",
                path(&jsonl),
            ],
        ));
        let digests_file = dir.join("state-digests.jsonl");
        std::fs::write(&digests_file, digests).expect("write");
        sl(
            &dir,
            &[],
            &[
                "submit",
                "--key",
                path(&key),
                "--no-receipts",
                path(&digests_file),
            ],
        )
        .expect_code(0);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64;

        // The auditor's artifact store (other names), and the secrets with their salt.
        let store = dir.join("store");
        std::fs::create_dir_all(&store).expect("mkdir");
        std::fs::write(store.join("orders-build-417"), ARTIFACT).expect("write");
        std::fs::write(store.join("unrelated.bin"), b"something else").expect("write");
        let secret_dir = dir.join("vault");
        std::fs::create_dir_all(&secret_dir).expect("mkdir");
        std::fs::write(secret_dir.join("app.toml"), APP_TOML).expect("write");
        let secrets = secret_dir.join("secrets.json");
        std::fs::write(
            &secrets,
            r#"{"env:DB_PASSWORD": "hunter2", "file:config/app.toml": {"file": "app.toml"}}"#,
        )
        .expect("write");
        Scenario {
            cluster,
            dir,
            repo,
            commit,
            store,
            payloads,
            secrets,
            salt,
            at,
        }
    }

    fn inputs(&self) -> Inputs {
        Inputs {
            repo: self.repo.clone(),
            artifacts: self.store.clone(),
            secrets: self.secrets.clone(),
            payloads: self.payloads.clone(),
            replay: format!("'{}' example-reducer", binary::stateledger().display()),
        }
    }

    fn profile(&self) -> PathBuf {
        self.cluster.dir().join("client.toml")
    }

    /// `materialize` from the cluster into `<scratch>/<out>`: the run and its restore.json.
    fn materialize(&self, out: &str, inputs: &Inputs) -> (Run, PathBuf, serde_json::Value) {
        let at = self.at.to_string();
        let profile = self.profile();
        self.materialize_with(
            out,
            inputs,
            &["--system", SYSTEM, "--at", &at, "--profile", path(&profile)],
        )
    }

    fn materialize_with(
        &self,
        out: &str,
        inputs: &Inputs,
        source: &[&str],
    ) -> (Run, PathBuf, serde_json::Value) {
        let out_dir = self.dir.join(out);
        let mut args = vec!["materialize"];
        args.extend(source);
        args.extend([
            "--out",
            path(&out_dir),
            "--repo",
            path(&inputs.repo),
            "--artifacts",
            path(&inputs.artifacts),
            "--secrets",
            path(&inputs.secrets),
            "--salt-file",
            path(&self.salt),
            "--payloads",
            path(&inputs.payloads),
            "--replay",
            &inputs.replay,
            "--output",
            "json",
        ]);
        let run = sl_in(&self.dir, &[], &args);
        let report: serde_json::Value = if run.code == Some(2) {
            serde_json::Value::Null
        } else {
            let r = run.json();
            let file: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out_dir.join("restore.json")).expect("restore.json"),
            )
            .expect("restore.json is JSON");
            assert_eq!(r, file, "--output json prints restore.json");
            r
        };
        (run, out_dir, report)
    }
}

/// The findings named `rule`; each carries its record's leaf and the inclusion proof of it.
fn findings<'a>(report: &'a serde_json::Value, rule: &str) -> Vec<&'a serde_json::Value> {
    let all = report["findings"].as_array().expect("findings");
    let found: Vec<&serde_json::Value> = all.iter().filter(|f| f["rule"] == rule).collect();
    for f in &found {
        let leaf = f["leaf_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("no leaf: {f:#}"));
        assert_eq!(f["proof"]["kind"], "inclusion", "{f:#}");
        assert_eq!(f["proof"]["leaf_index"], leaf, "{f:#}");
        assert!(f["proof"]["inclusion_proof"].is_array(), "{f:#}");
        assert_eq!(f["proof"]["document"], "state_proof.json", "{f:#}");
    }
    found
}

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report:#}"))
}

/// Exit 1, result impossible, and findings of exactly one kind.
fn assert_fails_with(run: &Run, report: &serde_json::Value, rule: &str, failed_step: &str) {
    run.expect_code(1);
    assert_eq!(report["result"], "impossible", "{report:#}");
    assert_eq!(step(report, failed_step)["result"], "failed", "{report:#}");
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(
        rules.iter().all(|r| *r == rule),
        "only {rule} expected: {rules:?}"
    );
    assert!(!rules.is_empty(), "no {rule}: {report:#}");
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_restores_and_verifies_from_the_cluster_and_offline() {
    let s = Scenario::record(Story::default()).await;
    let (run, out, report) = s.materialize("restore", &s.inputs());
    run.expect_code(0);
    assert_eq!(report["result"], "exact", "{report:#}");
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    assert_eq!(report["ledger"]["verified"], true);
    for name in [
        "code",
        "artifacts",
        "config",
        "environment",
        "mutations",
        "nondeterminism",
    ] {
        assert_eq!(step(&report, name)["result"], "restored", "{report:#}");
    }
    assert_eq!(report["replay"]["mutations"], 3, "{report:#}");
    assert_eq!(report["replay"]["digests_checked"], 3, "{report:#}");

    // Code: the recorded commit, with its lockfile; the source repository untouched.
    assert_eq!(git(&out.join("code"), &["rev-parse", "HEAD"]), s.commit);
    assert_eq!(read(&out.join("code/Cargo.lock")), b"# lockfile v1\n");
    assert_eq!(git(&s.repo, &["rev-parse", "HEAD"]), s.commit);
    assert_eq!(git(&s.repo, &["status", "--porcelain"]), "");
    // Artifacts: found by digest under another name, restored under the recorded one.
    assert_eq!(read(&out.join("artifacts/dist/orders")), ARTIFACT);
    assert!(!out.join("artifacts/unrelated.bin").exists());
    // Configuration: the file and both variables exactly, the secrets from --secrets.
    assert_eq!(
        read(&out.join("config/files/config/app.toml")),
        APP_TOML.as_bytes()
    );
    let env: serde_json::Value =
        serde_json::from_slice(&read(&out.join("config/env.json"))).expect("JSON");
    assert_eq!(
        env,
        serde_json::json!({"DB_PASSWORD": "hunter2", "ORDERS_MODE": "fast"})
    );
    let sourced = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}' && printf '%s|%s' \"$ORDERS_MODE\" \"$DB_PASSWORD\"",
            out.join("config/env.sh").display()
        ))
        .output()
        .expect("sh runs");
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), "fast|hunter2");
    // Environment: described, with the flags as variables and what no tool restores.
    let environment: serde_json::Value =
        serde_json::from_slice(&read(&out.join("environment/environment.json"))).expect("JSON");
    assert_eq!(
        environment["feature_flag_variables"][0]["variable"],
        "FEATURE_FAST_PATH"
    );
    assert!(
        environment["not_restorable"].to_string().contains("kernel"),
        "{environment:#}"
    );
    assert_eq!(environment["container"], IMAGE_DIGEST, "{environment:#}");
    // Without --image-repo the digest alone says what to pull but not from where.
    assert!(!out.join("environment/Dockerfile").exists());
    assert!(
        step(&report, "environment")["notes"]
            .to_string()
            .contains("--image-repo"),
        "{report:#}"
    );
    let ran = Command::new(out.join("environment/run.sh"))
        .args(["sh", "-c", "printf %s \"$FEATURE_FAST_PATH/$ORDERS_MODE\""])
        .output()
        .expect("run.sh runs");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "on/fast",
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    // Mutations: in order, with their Kafka offsets and their payloads.
    let lines: Vec<serde_json::Value> =
        String::from_utf8(read(&out.join("mutations/mutations.jsonl")))
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["id"], "evt-2");
    assert_eq!(lines[1]["external_ref"]["kafka"]["offset"], 4402);
    assert_eq!(
        read(&out.join("mutations/payloads/000001.bin")),
        payload(2).as_bytes()
    );
    // Nondeterminism: where a replay harness reads it.
    let captures: serde_json::Value =
        serde_json::from_slice(&read(&out.join("nondeterminism/captures.json"))).expect("JSON");
    assert_eq!(captures["discount-seed"]["seed_hex"], "0a0b0c0d");
    assert_eq!(captures["now-1"]["unix_nanos"], 1764000000000000000u64);
    let response = captures["fx-1"]["response_file"]
        .as_str()
        .expect("a response file");
    assert_eq!(read(&out.join(response)), FX_RESPONSE.as_bytes());
    // The report, and the proof it rests on, which `stateledger verify` accepts on its own.
    let md = String::from_utf8(read(&out.join("RESTORE.md"))).expect("UTF-8");
    assert!(md.contains("Result: **exact**"), "{md}");
    let trust = s.cluster.trust_policy_path();
    sl_in(
        &s.dir,
        &[],
        &[
            "verify",
            "--trust",
            path(&trust),
            "--system",
            SYSTEM,
            path(&out.join("state_proof.json")),
        ],
    )
    .expect_code(0);

    // Offline, from the saved proof: the same restore; told where the image is, a Dockerfile
    // pinned to the recorded digest, with the feature flags.
    let proof = out.join("state_proof.json");
    let (run, offline_out, offline) = s.materialize_with(
        "restore-offline",
        &s.inputs(),
        &[
            "--proof",
            path(&proof),
            "--trust",
            path(&trust),
            "--image-repo",
            "registry.example/orders",
        ],
    );
    run.expect_code(0);
    assert_eq!(offline["result"], "exact", "{offline:#}");
    let dockerfile =
        String::from_utf8(read(&offline_out.join("environment/Dockerfile"))).expect("UTF-8");
    assert!(
        dockerfile.contains(&format!("\nFROM registry.example/orders@{IMAGE_DIGEST}\n")),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("ENV FEATURE_FAST_PATH=\"on\""),
        "{dockerfile}"
    );
    assert_eq!(
        offline["ledger"]["state_digest"],
        report["ledger"]["state_digest"]
    );

    // A proof with a byte changed restores nothing and says which check failed.
    let mut tampered: serde_json::Value = serde_json::from_slice(&read(&proof)).expect("JSON");
    tampered["leaves"].as_array_mut().expect("leaves").remove(1);
    let tampered_path = s.dir.join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).expect("write");
    let (run, out, refused) = s.materialize_with(
        "restore-tampered",
        &s.inputs(),
        &["--proof", path(&tampered_path), "--trust", path(&trust)],
    );
    run.expect_code(1);
    assert_eq!(refused["ledger"]["verified"], false, "{refused:#}");
    assert!(refused["ledger"]["check"].is_string(), "{refused:#}");
    assert_eq!(step(&refused, "code")["result"], "not_run");
    assert!(!out.join("code").exists() && !out.join("state_proof.json").exists());

    // A valid proof about another system than --system names is refused the same way.
    let (run, _, other) = s.materialize_with(
        "restore-other",
        &s.inputs(),
        &[
            "--proof",
            path(&proof),
            "--trust",
            path(&trust),
            "--system",
            "billing",
        ],
    );
    run.expect_code(1);
    assert_eq!(other["ledger"]["check"], "expectation", "{other:#}");

    // An --out that is not empty: nothing runs, nothing is written.
    let (run, _, _) = s.materialize("restore", &s.inputs());
    run.expect_code(2);
    assert!(run.stderr.contains("not empty"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_missing_from_the_repository_is_refused() {
    let s = Scenario::record(Story::default()).await;
    let other = s.dir.join("other-clone");
    repo_with(&other, &[("README", b"another history\n")]);
    let mut inputs = s.inputs();
    inputs.repo = other.clone();
    let (run, out, report) = s.materialize("restore", &inputs);
    assert_fails_with(&run, &report, "commit_missing", "code");
    let f = findings(&report, "commit_missing");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains(&s.commit) && message.contains(path(&other)),
        "{message}"
    );
    assert!(
        !out.join("code").exists(),
        "nothing else may be checked out"
    );
    // Without a checkout the lockfiles cannot be compared, and nothing replays: said, but not
    // counted as findings of their own.
    assert!(
        step(&report, "artifacts")["notes"]
            .to_string()
            .contains("not checked"),
        "{report:#}"
    );
    assert!(
        step(&report, "mutations")["notes"]
            .to_string()
            .contains("did not run"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_built_from_a_dirty_tree_is_not_reproducible_from_the_commit_alone() {
    let s = Scenario::record(Story {
        dirty: true,
        ..Story::default()
    })
    .await;
    let (run, out, report) = s.materialize("restore", &s.inputs());
    assert_fails_with(&run, &report, "dirty_tree", "code");
    let f = findings(&report, "dirty_tree");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("not reproducible from the commit alone"),
        "{message}"
    );
    // The commit is still checked out, as it was committed.
    assert_eq!(read(&out.join("code/src/main.sh")), b"echo orders\n");
}

/// The build's lockfile is not the commit's: the checkout has other dependency versions than
/// the ones recorded, and the artifacts step says so (as well as the code step's dirty tree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockfile_that_differs_from_the_commits_is_named() {
    let s = Scenario::record(Story {
        lockfile_changed: true,
        ..Story::default()
    })
    .await;
    let (run, out, report) = s.materialize("restore", &s.inputs());
    run.expect_code(1);
    assert_eq!(report["result"], "impossible", "{report:#}");
    assert_eq!(step(&report, "artifacts")["result"], "failed", "{report:#}");
    let f = findings(&report, "lockfile_mismatch");
    assert_eq!(f.len(), 1, "{report:#}");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("\"Cargo.lock\"") && message.contains("other dependency versions"),
        "{message}"
    );
    // The lockfile was part of the working tree when the code was recorded: dirty, too.
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(
        rules
            .iter()
            .all(|r| *r == "lockfile_mismatch" || *r == "dirty_tree"),
        "{rules:?}"
    );
    // The checkout holds the commit's lockfile, as committed.
    assert_eq!(read(&out.join("code/Cargo.lock")), b"# lockfile v1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_with_another_digest_under_its_name_is_named() {
    let s = Scenario::record(Story::default()).await;
    let swapped = s.dir.join("store-swapped");
    std::fs::create_dir_all(&swapped).expect("mkdir");
    std::fs::write(
        swapped.join("orders"),
        b"#!/bin/sh\necho orders v2 (rebuilt)\n",
    )
    .expect("write");
    let mut inputs = s.inputs();
    inputs.artifacts = swapped.clone();
    let (run, out, report) = s.materialize("restore", &inputs);
    assert_fails_with(&run, &report, "artifact_digest_mismatch", "artifacts");
    let f = findings(&report, "artifact_digest_mismatch");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("\"dist/orders\"") && message.contains(&sha256(ARTIFACT)),
        "{message}"
    );
    assert!(message.contains(path(&swapped.join("orders"))), "{message}");
    assert!(
        !out.join("artifacts/dist/orders").exists(),
        "a file with another digest is never restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_does_not_match_its_keyed_digest_is_not_written() {
    let s = Scenario::record(Story::default()).await;
    let wrong = s.dir.join("vault/wrong.json");
    std::fs::write(
        &wrong,
        r#"{"env:DB_PASSWORD": "hunter3", "file:config/app.toml": {"file": "app.toml"}}"#,
    )
    .expect("write");
    let mut inputs = s.inputs();
    inputs.secrets = wrong;
    let (run, out, report) = s.materialize("restore", &inputs);
    assert_fails_with(&run, &report, "secret_mismatch", "config");
    let f = findings(&report, "secret_mismatch");
    assert_eq!(f.len(), 1, "{report:#}");
    assert!(
        f[0]["message"]
            .as_str()
            .expect("a message")
            .contains("env:DB_PASSWORD"),
        "{:#}",
        f[0]
    );
    let env: serde_json::Value =
        serde_json::from_slice(&read(&out.join("config/env.json"))).expect("JSON");
    let value = env["DB_PASSWORD"].as_str().expect("a value");
    assert!(
        value.starts_with("STATELEDGER-PLACEHOLDER") && !value.contains("hunter3"),
        "{value}"
    );
    // The rest of the configuration is still written exactly.
    assert_eq!(env["ORDERS_MODE"], "fast");
    assert_eq!(
        read(&out.join("config/files/config/app.toml")),
        APP_TOML.as_bytes()
    );
}

/// Without --secrets the secret entries are not guessed: each gets a placeholder and a finding,
/// and nothing else is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_not_supplied_gets_a_placeholder_and_a_finding() {
    let s = Scenario::record(Story::default()).await;
    let inputs = s.inputs();
    let out = s.dir.join("restore-no-secrets");
    let at = s.at.to_string();
    let profile = s.profile();
    let run = sl_in(
        &s.dir,
        &[],
        &[
            "materialize",
            "--system",
            SYSTEM,
            "--at",
            &at,
            "--profile",
            path(&profile),
            "--out",
            path(&out),
            "--repo",
            path(&inputs.repo),
            "--artifacts",
            path(&inputs.artifacts),
            "--payloads",
            path(&inputs.payloads),
            "--replay",
            &inputs.replay,
            "--output",
            "json",
        ],
    );
    let report = run.json();
    assert_fails_with(&run, &report, "secret_not_supplied", "config");
    let f = findings(&report, "secret_not_supplied");
    let keys: Vec<String> = f
        .iter()
        .map(|f| f["message"].as_str().expect("a message").to_string())
        .collect();
    for key in ["env:DB_PASSWORD", "file:config/app.toml"] {
        assert!(
            keys.iter().any(|m| m.starts_with(key)),
            "{key} not named: {keys:?}"
        );
    }
    let file = String::from_utf8(read(&out.join("config/files/config/app.toml"))).expect("UTF-8");
    assert!(file.starts_with("STATELEDGER-PLACEHOLDER"), "{file}");
    assert!(!file.contains("s3cret-db"), "{file}");
    let env: serde_json::Value =
        serde_json::from_slice(&read(&out.join("config/env.json"))).expect("JSON");
    assert_eq!(
        env["ORDERS_MODE"], "fast",
        "a value in clear is still restored"
    );
    assert!(
        env["DB_PASSWORD"]
            .as_str()
            .is_some_and(|v| v.starts_with("STATELEDGER-PLACEHOLDER") && !v.contains("hunter2")),
        "{env}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_missing_from_the_broker_export_is_named() {
    let s = Scenario::record(Story::default()).await;
    let partial = s.dir.join("kafka-export-partial");
    std::fs::create_dir_all(&partial).expect("mkdir");
    for offset in [4401, 4403] {
        let name = format!("orders-3-{offset}.msg");
        std::fs::copy(s.payloads.join(&name), partial.join(&name)).expect("copy");
    }
    let mut inputs = s.inputs();
    inputs.payloads = partial;
    let (run, out, report) = s.materialize("restore", &inputs);
    assert_fails_with(&run, &report, "payload_missing", "mutations");
    let f = findings(&report, "payload_missing");
    assert_eq!(f.len(), 1, "{report:#}");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("\"evt-2\"") && message.contains("offset 4402"),
        "{message}"
    );
    assert!(out.join("mutations/payloads/000000.bin").exists());
    assert!(!out.join("mutations/payloads/000001.bin").exists());
    let notes = step(&report, "mutations")["notes"].to_string();
    assert!(
        notes.contains("did not run") && notes.contains("payload"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_diverges_from_a_recorded_state_digest_is_named() {
    let s = Scenario::record(Story {
        wrong_state_digest_at: Some(2),
        ..Story::default()
    })
    .await;
    let (run, _, report) = s.materialize("restore", &s.inputs());
    assert_fails_with(&run, &report, "replay_divergence", "mutations");
    let f = findings(&report, "replay_divergence");
    let message = f[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("mutation #1") && message.contains("kafka:orders/3 #2"),
        "{message}"
    );
    assert!(
        message.contains(&example_state_digest(3, payload(2).len())),
        "{message}"
    );
    assert_eq!(report["replay"]["divergence"]["sequence"], 2, "{report:#}");
    // The finding's leaf is the state digest record the replay contradicts.
    let proof: serde_json::Value =
        serde_json::from_slice(&read(&s.dir.join("restore/state_proof.json"))).expect("JSON");
    let digest_leaves: Vec<u64> = proof["state"]["state_digests"]
        .as_array()
        .expect("state digests")
        .iter()
        .filter(|d| d["value"]["sequence"] == 2)
        .filter_map(|d| d["leaf_index"].as_u64())
        .collect();
    assert_eq!(
        f[0]["leaf_index"].as_u64(),
        digest_leaves.first().copied(),
        "{:#}",
        f[0]
    );
}
