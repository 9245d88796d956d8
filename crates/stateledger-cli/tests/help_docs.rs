//! What a new user reaches without a cluster: `version`, shell completions and man pages, and
//! help that names the environment variables a flag reads.

use std::process::Command;

fn stateledger(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .args(args)
        .env_remove("STATELEDGER_PROFILE")
        .output()
        .expect("stateledger runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_release_and_the_commit() {
    let (code, out, err) = stateledger(&["version", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().expect("a commit");
    // The commit checked out here, with "-dirty" when the binary's sources differ from it
    // (build.rs). Edits made while the tests run would make this fail: the binary was built before.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => assert_eq!(commit, "unknown", "not a git checkout"),
        Some(head) => {
            let changed = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":/crates",
                ":/proto",
                ":/vendor",
                ":/Cargo.toml",
                ":/Cargo.lock",
            ])
            .expect("git status");
            let expected = if changed.is_empty() {
                head
            } else {
                format!("{head}-dirty")
            };
            assert_eq!(commit, expected, "changed files: {changed}");
        }
    }
    assert_eq!(
        v["nodes"],
        serde_json::json!([]),
        "no profile, no nodes asked"
    );
    let (_, text, _) = stateledger(&["--version"]);
    assert!(text.contains(&format!("commit {commit}")), "{text}");
}

#[test]
fn completions_for_three_shells() {
    for (shell, marker) in [
        ("bash", "_stateledger()"),
        ("zsh", "#compdef stateledger"),
        ("fish", "complete -c stateledger"),
    ] {
        let (code, out, err) = stateledger(&["completion", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no {marker:?}");
        assert!(
            out.contains("reconstruct"),
            "{shell}: commands are completed"
        );
    }
}

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, _, err) = stateledger(&["man", "--out", dir.path().to_str().expect("UTF-8")]);
    assert_eq!(code, Some(0), "{err}");
    for page in [
        "stateledger.1",
        "stateledger-verify.1",
        "stateledger-cluster-status.1",
        "stateledger-collect-capture-seed.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is roff"
        );
    }
    let gate = std::fs::read_to_string(dir.path().join("stateledger-gate.1")).expect("gate");
    assert!(
        gate.contains("Exit status"),
        "the man page carries the exit statuses"
    );
}

#[test]
fn help_says_which_environment_variables_a_flag_reads() {
    let (code, out, _) = stateledger(&["receipt", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("[env: STATELEDGER_PROFILE="), "{out}");
    assert!(out.contains("[env: STATELEDGER_TIMEOUT="), "{out}");
    assert!(
        out.contains("Examples:") && out.contains("Exit status:"),
        "{out}"
    );
    // replay's help is where docs/DETERMINISM.md sends readers for the reducer protocol.
    let (_, out, _) = stateledger(&["replay", "--help"]);
    assert!(out.contains("\"state_digest\": \"sha256:<hex>\""), "{out}");
}

#[test]
fn materialize_help_names_the_steps_the_inputs_and_the_exit_statuses() {
    let (code, out, _) = stateledger(&["materialize", "--help"]);
    assert_eq!(code, Some(0));
    for needle in [
        "Examples:",
        "Exit status:",
        "--repo",
        "--artifacts",
        "--secrets",
        "--salt-file",
        "--payloads",
        "--replay",
        "RESTORE.md",
        "git worktree",
        "commit_missing",
        "[env: STATELEDGER_PROFILE=",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    // Without a source it cannot run, and says what to give.
    let (code, _, err) = stateledger(&["materialize", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--system") && err.contains("--proof"), "{err}");
}
