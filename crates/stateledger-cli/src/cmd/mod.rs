//! One module per subcommand.

pub mod bench;
pub mod bench_etcd;
pub mod bench_reconstruct;
pub mod certs;
pub mod cluster;
pub mod collect;
pub mod demo;
pub mod dev;
pub mod docs;
pub mod keygen;
pub mod materialize;
pub mod node;
pub mod output;
pub mod profile;
pub mod progress;
pub mod proofs;
pub mod reconstruct;
pub mod replay;
pub mod report;
pub mod report_html;
pub mod submit;
pub mod time;
pub mod verify;
pub mod version;

/// A multi-threaded runtime for commands that talk to a cluster.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
