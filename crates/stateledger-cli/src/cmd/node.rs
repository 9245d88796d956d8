//! `stateledger node run --config FILE`: runs one node until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use stateledger_node::config::NodeConfig;
use stateledger_node::node::{start, NodeParts, StartError};

#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Run a node with a config file (see cluster-configs/ for commented examples).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

/// Exit status when stored data is corrupt.
pub const EXIT_CORRUPT: u8 = 3;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

pub fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::Run { config } = command;
    init_tracing();
    let config = NodeConfig::load(&config)?;
    let name = config.node.name.clone();
    let parts = match NodeParts::load(config) {
        Ok(parts) => parts,
        Err(e @ StartError::Corrupt(_)) => {
            eprintln!("error: {name}: {e}");
            return Ok(ExitCode::from(EXIT_CORRUPT));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot prepare the node")),
    };
    super::runtime()?.block_on(async move {
        let handle = match start(parts).await {
            Ok(h) => h,
            Err(e @ StartError::Corrupt(_)) => {
                eprintln!("error: {name}: {e}");
                return Ok(ExitCode::from(EXIT_CORRUPT));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{name} could not start"))),
        };
        tracing::info!(
            node = %name,
            public = %handle.public_addr,
            cluster = %handle.cluster_addr,
            "node running; Ctrl-C to stop"
        );
        wait_for_signal().await;
        tracing::info!(node = %name, "stopping");
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
