//! Network partitions between nodes on one machine: each node of a
//! [`super::cluster::TestCluster::with_hosts`] cluster has its own loopback address and connects
//! to the others from it, so iptables rules on those addresses cut nodes apart while clients
//! (whose connections leave from 127.0.0.1) still reach every node. Needs root and `iptables`.
//!
//! The rules live in a chain of their own, jumped to from `INPUT`; dropping the [`Partition`]
//! removes the jump and the chain, also when a test panics.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A node's cluster address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// See the module comment.
#[derive(Debug)]
pub struct Partition {
    chain: String,
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| {
            format!("cannot run iptables (tests that cut the network need it, as root): {e}")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Partition {
    /// An empty partition (nothing cut yet).
    pub fn new() -> Partition {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let chain = format!(
            "SLT{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        iptables(&["-N", &chain]).unwrap_or_else(|e| panic!("{e}"));
        iptables(&["-I", "INPUT", "1", "-j", &chain]).unwrap_or_else(|e| panic!("{e}"));
        Partition { chain }
    }

    /// Cuts every packet between `a` and `b`, both ways.
    pub fn cut(&self, a: &Endpoint, b: &Endpoint) {
        for (from, to) in [(a, b), (b, a)] {
            iptables(&[
                "-A",
                &self.chain,
                "-p",
                "tcp",
                "-s",
                &from.host,
                "-d",
                &to.host,
                "-j",
                "DROP",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Cuts `node` from each of `others`.
    pub fn isolate(&self, node: &Endpoint, others: &[Endpoint]) {
        for other in others {
            self.cut(node, other);
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        iptables(&["-F", &self.chain]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Default for Partition {
    fn default() -> Partition {
        Partition::new()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the test's own failure.
        let _ = iptables(&["-D", "INPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}
