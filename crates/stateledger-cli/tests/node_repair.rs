//! `stateledger node repair` on a node that ran and stopped: the old storage is moved into a
//! quarantine directory, the vote is kept, and `--output json` says so as docs/CLI.md describes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stateledger(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stateledger"));
    c.current_dir(dir)
        .env_remove("STATELEDGER_PROFILE")
        .env_remove("STATELEDGER_DEV_PARENT");
    c
}

/// A base port whose node-1 ports (base + 1, base + 101) are free now.
fn free_base_port() -> u16 {
    let mut base = 26_000 + (std::process::id() % 60) as u16 * 100;
    while ![base + 1, base + 101]
        .iter()
        .all(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
    {
        base += 7;
    }
    base
}

#[test]
fn a_stopped_node_is_repaired_and_the_json_says_where_its_storage_went() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    let out = stateledger(d)
        .args(["dev", "--init-only", "--nodes", "1", "--dir", "c"])
        .args(["--base-port", &free_base_port().to_string()])
        .output()
        .expect("dev runs");
    assert!(out.status.success(), "{out:?}");
    let cluster = d.join("c");

    // Run the node until it leads (it has made its storage and voted for itself), then stop it.
    let mut node = stateledger(&cluster)
        .args(["node", "run", "--config", "node-1.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node run starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "node 1 did not become leader");
        assert!(
            node.try_wait().expect("try_wait").is_none(),
            "node 1 exited"
        );
        let status = stateledger(&cluster)
            .args(["cluster", "status", "--profile", "client.toml"])
            .args(["--timeout", "1s", "--output", "json"])
            .output()
            .expect("status runs");
        let leads = serde_json::from_slice::<serde_json::Value>(&status.stdout)
            .is_ok_and(|s| s["nodes"][0]["role"] == "leader");
        if leads {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = rustix::process::Pid::from_raw(node.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = node.wait().expect("node 1 stops");
    assert_eq!(status.code(), Some(0), "a clean stop");

    let out = stateledger(&cluster)
        .args(["node", "repair", "--config", "node-1.toml"])
        .args(["--reason", "disk replaced", "--output", "json"])
        .output()
        .expect("repair runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["node"], "node-1", "{report}");
    let quarantine = report["quarantine"].as_str().expect("a quarantine path");
    assert!(
        Path::new(quarantine).is_absolute() && Path::new(quarantine).is_dir(),
        "{report}"
    );
    assert!(
        Path::new(quarantine)
            .canonicalize()
            .expect("it exists")
            .starts_with(cluster.join("node-1").canonicalize().expect("dir")),
        "inside the data directory: {report}"
    );
    assert!(
        report["vote"].as_str().is_some_and(|v| !v.is_empty()),
        "a node that elected itself voted: {report}"
    );
    assert!(report["vote_unknown"].is_null(), "{report}");
}
