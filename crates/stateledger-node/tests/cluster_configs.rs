//! Every example in cluster-configs/ parses and passes the config checks.
#![cfg(not(madsim))]

use std::path::Path;

use stateledger_node::config::NodeConfig;

#[test]
fn example_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-configs");
    let mut count = 0;
    let mut bootstraps = 0;
    for dir in ["single-node", "local-3", "multi-region-5"] {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(root.join(dir)).expect("example dir exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c =
                    NodeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                ids.push(c.node.id);
                if c.cluster.bootstrap {
                    bootstraps += 1;
                    assert_eq!(
                        c.cluster.initial_members.len(),
                        std::fs::read_dir(root.join(dir))
                            .expect("dir")
                            .filter(|e| e
                                .as_ref()
                                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml")))
                            .count(),
                        "{dir}: the bootstrap node lists every member"
                    );
                }
                count += 1;
            }
        }
        ids.sort_unstable();
        ids.dedup();
        assert!(!ids.is_empty(), "{dir} has configs");
    }
    assert_eq!(count, 9);
    assert_eq!(bootstraps, 3, "exactly one bootstrap node per example");
}

/// deploy/compose/'s node configs name their keys by file (made by the compose file's init
/// services): with those files in place — here under a temporary root that stands for the
/// container's `/pki` — they load, and the keys are read from the files.
#[test]
fn compose_configs_load_with_their_key_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose");
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    std::fs::create_dir_all(pki.join("keys")).expect("mkdir");
    for name in ["node-1", "node-2", "node-3", "admin"] {
        std::fs::write(
            pki.join(format!("keys/{name}.pub")),
            format!("{name}+00000000+AAAA\n"),
        )
        .expect("write");
    }
    let mut loaded = 0;
    for i in 1..=3 {
        let text =
            std::fs::read_to_string(root.join(format!("node-{i}.toml"))).expect("config exists");
        let config_path = tmp.path().join(format!("node-{i}.toml"));
        std::fs::write(
            &config_path,
            text.replace("\"/pki/", &format!("\"{}/", pki.display())),
        )
        .expect("write");
        let c = NodeConfig::load(&config_path)
            .unwrap_or_else(|e| panic!("deploy/compose/node-{i}.toml: {e}"));
        assert_eq!(c.node.id, i);
        assert_eq!(c.public_addr(), format!("node-{i}:7001"));
        assert_eq!(c.cluster.admin_keys, ["admin+00000000+AAAA"]);
        assert!(c.cluster.admin_pub_files.is_empty(), "read and replaced");
        assert_eq!(c.cluster.bootstrap, i == 1);
        if i == 1 {
            let keys: Vec<&str> = c
                .cluster
                .initial_members
                .iter()
                .map(|m| m.checkpoint_key.as_str())
                .collect();
            assert_eq!(
                keys,
                [
                    "node-1+00000000+AAAA",
                    "node-2+00000000+AAAA",
                    "node-3+00000000+AAAA"
                ]
            );
        }
        loaded += 1;
    }
    assert_eq!(loaded, 3);

    // A key file that is missing is named; a member with both forms of its key is refused.
    std::fs::remove_file(pki.join("keys/node-2.pub")).expect("rm");
    let err = NodeConfig::load(&tmp.path().join("node-1.toml")).expect_err("missing key file");
    assert!(err.to_string().contains("node-2.pub"), "{err}");
    let both = std::fs::read_to_string(tmp.path().join("node-1.toml"))
        .expect("read")
        .replacen(
            "\ncheckpoint_pub_file = ",
            "\ncheckpoint_key = \"node-1+00000000+AAAA\"\ncheckpoint_pub_file = ",
            1,
        );
    std::fs::write(tmp.path().join("node-1.toml"), both).expect("write");
    let err = NodeConfig::load(&tmp.path().join("node-1.toml")).expect_err("both");
    assert!(
        err.to_string()
            .contains("has both checkpoint_key and checkpoint_pub_file"),
        "{err}"
    );
}
