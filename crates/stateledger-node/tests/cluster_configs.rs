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
