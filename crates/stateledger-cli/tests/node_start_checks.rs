//! `stateledger node run` checks its whole config — TLS files, keys — before it touches the disk:
//! a config that names a missing file exits 2, names the file, and leaves no data directory
//! behind (no half-made sled database or Raft log to confuse the next start).

use std::path::Path;
use std::process::Command;

fn stateledger(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .args(args)
        .current_dir(dir)
        .env_remove("STATELEDGER_PROFILE")
        .env_remove("STATELEDGER_DEV_PARENT")
        .output()
        .expect("stateledger runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_naming_a_missing_file_leaves_no_data_directory() {
    // (what the config names, the file removed, what the error must name)
    for (setting, file) in [
        ("ca_cert", "ca.pem"),
        ("cert", "node-1.pem"),
        ("key", "node-1.key.pem"),
        ("checkpoint_key_file", "keys/node-1.key"),
    ] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = dir.path();
        // Ports are only written into the configs: nothing listens.
        let (code, err) = stateledger(
            d,
            &["dev", "--init-only", "--dir", "c", "--base-port", "7100"],
        );
        assert_eq!(code, Some(0), "{err}");
        let cluster = d.join("c");
        let config = std::fs::read_to_string(cluster.join("node-1.toml")).expect("node-1.toml");
        assert!(
            config.contains(&format!("\"{file}\"")),
            "node-1.toml names {file} ({setting}):\n{config}"
        );
        let data_dir = cluster.join("node-1");
        assert!(!data_dir.exists(), "--init-only starts nothing");

        std::fs::remove_file(cluster.join(file)).expect("remove the file");
        let (code, err) = stateledger(&cluster, &["node", "run", "--config", "node-1.toml"]);
        assert_eq!(code, Some(2), "{setting}: {err}");
        assert!(
            err.contains(file),
            "{setting}: the error names {file}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !data_dir.exists(),
            "{setting}: a missing {file} left a data directory behind"
        );
    }
}
