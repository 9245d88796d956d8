use std::path::Path;
use std::process::Command;

use super::*;
use crate::digest::sha256_digest;
use crate::{Body, RecordMeta};

/// Runs git in `dir` for test setup; `None` when git is not installed (the test then skips).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A repository with one commit, a remote with credentials in its URL and two lockfiles; `None`
/// when git is not installed.
fn repo() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("tempdir");
    if git(dir.path(), &["--version"]).is_none() {
        eprintln!("git is not installed; skipping");
        return None;
    }
    git(dir.path(), &["init", "-q"])?;
    std::fs::write(dir.path().join("main.rs"), "fn main() {}\n").expect("write");
    std::fs::write(dir.path().join("Cargo.lock"), "# lock\n").expect("write");
    std::fs::write(dir.path().join("go.sum"), "mod v1 h1:x\n").expect("write");
    git(dir.path(), &["add", "."])?;
    git(dir.path(), &["commit", "-q", "-m", "first"])?;
    git(
        dir.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://bot:tok3n@github.com/acme/orders.git",
        ],
    )?;
    Some(dir)
}

fn validates(code: pb::CodeState) -> pb::CodeState {
    RecordMeta::new("orders-service", "ci", 1)
        .record(Body::Code(code.clone()))
        .expect("code record validates");
    code
}

#[test]
fn clean_repository_is_read() {
    let Some(dir) = repo() else { return };
    let head = git(dir.path(), &["rev-parse", "HEAD"]).expect("git");
    let code = validates(CodeCollector::new(dir.path()).collect().expect("collects"));
    assert_eq!(code.repo, "github.com/acme/orders");
    assert_eq!(code.commit, head);
    assert!(!code.dirty);
    assert_eq!(code.reference, "refs/heads/main");
    let names: Vec<_> = code.lockfiles.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Cargo.lock", "go.sum"]);
    assert_eq!(code.lockfiles[0].digest, sha256_digest(b"# lock\n"));
}

#[test]
fn dirty_tree_is_detected() {
    let Some(dir) = repo() else { return };
    std::fs::write(dir.path().join("main.rs"), "fn main() { changed() }\n").expect("write");
    assert!(CodeCollector::new(dir.path()).collect().expect("ok").dirty);

    git(dir.path(), &["checkout", "--", "main.rs"]).expect("git");
    assert!(!CodeCollector::new(dir.path()).collect().expect("ok").dirty);

    // An untracked source file changes a build too; an ignored one does not.
    std::fs::write(dir.path().join(".gitignore"), "target/\n").expect("write");
    git(dir.path(), &["add", ".gitignore"]).expect("git");
    git(dir.path(), &["commit", "-q", "-m", "ignore"]).expect("git");
    std::fs::create_dir(dir.path().join("target")).expect("mkdir");
    std::fs::write(dir.path().join("target/out"), "bin").expect("write");
    assert!(!CodeCollector::new(dir.path()).collect().expect("ok").dirty);
    std::fs::write(dir.path().join("new.rs"), "").expect("write");
    assert!(CodeCollector::new(dir.path()).collect().expect("ok").dirty);
}

#[test]
fn collecting_does_not_write_to_the_repository() {
    let Some(dir) = repo() else { return };
    let index = dir.path().join(".git/index");
    let before = std::fs::read(&index).expect("index");
    let modified = std::fs::metadata(&index)
        .and_then(|m| m.modified())
        .expect("mtime");
    // Touch a tracked file so a plain `git status` would want to refresh the index.
    std::fs::write(dir.path().join("main.rs"), "fn main() {}\n").expect("write");
    CodeCollector::new(dir.path()).collect().expect("ok");
    assert_eq!(std::fs::read(&index).expect("index"), before);
    assert_eq!(
        std::fs::metadata(&index)
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified
    );
}

#[test]
fn detached_head_at_a_tag_names_the_tag() {
    let Some(dir) = repo() else { return };
    git(dir.path(), &["tag", "v1.2.0"]).expect("git");
    git(dir.path(), &["checkout", "-q", "--detach"]).expect("git");
    let code = CodeCollector::new(dir.path()).collect().expect("ok");
    assert_eq!(code.reference, "refs/tags/v1.2.0");
}

#[test]
fn a_repository_without_remote_or_commit_is_refused() {
    let Some(dir) = repo() else { return };
    git(dir.path(), &["remote", "remove", "origin"]).expect("git");
    assert!(matches!(
        CodeCollector::new(dir.path()).collect(),
        Err(CodeError::NoRepoId { .. })
    ));
    let code = CodeCollector::new(dir.path())
        .repo_name("orders-service")
        .collect()
        .expect("named explicitly");
    assert_eq!(code.repo, "orders-service");

    let empty = tempfile::tempdir().expect("tempdir");
    git(empty.path(), &["init", "-q"]).expect("git");
    assert!(matches!(
        CodeCollector::new(empty.path()).repo_name("x").collect(),
        Err(CodeError::NoCommit { .. })
    ));
}

#[test]
fn without_a_repository_everything_must_be_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let commit = "ab".repeat(20);
    let code = validates(
        CodeCollector::new(dir.path())
            .repo_name("orders-service")
            .commit(commit.to_uppercase())
            .dirty(false)
            .reference("refs/tags/v1")
            .collect()
            .expect("explicit"),
    );
    assert_eq!(code.commit, commit);
    assert_eq!(code.reference, "refs/tags/v1");

    // The commit is missing and cannot be read: the reason git could not be used is given.
    let err = CodeCollector::new(dir.path())
        .repo_name("orders-service")
        .dirty(false)
        .collect()
        .expect_err("no commit");
    assert!(
        matches!(
            err,
            CodeError::NotARepository { .. } | CodeError::GitUnavailable { .. }
        ),
        "{err}"
    );

    let err = CodeCollector::new(dir.path())
        .repo_name("x")
        .commit("a7c91e")
        .dirty(false)
        .collect()
        .expect_err("short commit");
    assert_eq!(
        err,
        CodeError::InvalidCommit {
            commit: "a7c91e".into()
        }
    );
}

#[test]
fn artifacts_by_path_and_glob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("sub.whl")).expect("a directory the glob also matches");
    std::fs::write(dist.join("b.whl"), "bbb").expect("write");
    std::fs::write(dist.join("a.whl"), "aaa").expect("write");
    std::fs::write(dir.path().join("orders"), "binary").expect("write");
    let dist_text = dist.to_str().expect("utf-8 temp path");
    let bin = dir.path().join("orders");
    let image = format!("sha256:{}", "C".repeat(64));
    let code = validates(
        CodeCollector::new(dir.path())
            .repo_name("orders")
            .commit("a".repeat(40))
            .dirty(false)
            .artifact(format!("{dist_text}/*.whl"))
            .artifact(bin.to_str().expect("utf-8"))
            .artifact_digest("registry.example/orders", &image)
            .collect()
            .expect("collects"),
    );
    let got: Vec<(String, String)> = code
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.digest.clone()))
        .collect();
    let mut want = vec![
        (format!("{dist_text}/a.whl"), sha256_digest(b"aaa")),
        (format!("{dist_text}/b.whl"), sha256_digest(b"bbb")),
        (bin.display().to_string(), sha256_digest(b"binary")),
        ("registry.example/orders".into(), image.to_lowercase()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn artifact_errors_name_the_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = || {
        CodeCollector::new(dir.path())
            .repo_name("orders")
            .commit("a".repeat(40))
            .dirty(false)
    };
    let missing = dir.path().join("nope").display().to_string();
    assert_eq!(
        base().artifact(&missing).collect(),
        Err(CodeError::ArtifactNotFound {
            pattern: missing.clone()
        })
    );
    let pattern = format!("{}/*.tar", dir.path().display());
    assert_eq!(
        base().artifact(&pattern).collect(),
        Err(CodeError::ArtifactNotFound { pattern })
    );
    assert_eq!(
        base()
            .artifact(dir.path().to_str().expect("utf-8"))
            .collect(),
        Err(CodeError::NotAFile {
            path: dir.path().to_path_buf()
        })
    );
    assert!(matches!(
        base().artifact_digest("img", "sha256:1234").collect(),
        Err(CodeError::InvalidDigest { name, .. }) if name == "img"
    ));
    assert!(matches!(
        base()
            .artifact_digest("img", format!("sha256:{}", "1".repeat(64)))
            .artifact_digest("img", format!("sha256:{}", "2".repeat(64)))
            .collect(),
        Err(CodeError::DuplicateArtifact { name }) if name == "img"
    ));
}

#[test]
fn extra_lockfiles_are_named_relative_to_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("web")).expect("mkdir");
    std::fs::write(dir.path().join("web/package-lock.json"), "{}").expect("write");
    std::fs::write(dir.path().join("yarn.lock"), "# yarn").expect("write");
    let code = CodeCollector::new(dir.path())
        .repo_name("orders")
        .commit("a".repeat(40))
        .dirty(true)
        .lockfile(dir.path().join("web/package-lock.json"))
        .required_config("env:B")
        .required_config("env:A")
        .required_config("env:B")
        .collect()
        .expect("collects");
    let names: Vec<_> = code.lockfiles.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web/package-lock.json", "yarn.lock"]);
    assert_eq!(code.required_config, ["env:A", "env:B"]);
    validates(code);
}
