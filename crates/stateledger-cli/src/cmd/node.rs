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
    /// Repair a stopped node whose storage is damaged: move its ledger and Raft log aside
    /// (kept in <data_dir>/quarantine-<time>/) and start it over empty, keeping its identity
    /// and vote. Started again, it copies the ledger from the cluster and votes once it has
    /// caught up (docs/OPERATIONS.md, "Repairing a node").
    Repair {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Why (recorded in the node's status until the repair is done).
        #[arg(long, default_value = "no reason given")]
        reason: String,
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
    let config = match command {
        NodeCommand::Run { config } => config,
        NodeCommand::Repair { config, reason } => return repair(&config, &reason),
    };
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
        let failed = tokio::select! {
            () = wait_for_signal() => None,
            fatal = handle.fatal() => Some(fatal),
        };
        tracing::info!(node = %name, "stopping");
        handle.shutdown().await;
        match failed {
            None => Ok(ExitCode::SUCCESS),
            Some(f) => {
                eprintln!("error: {name}: {}", f.reason);
                Ok(ExitCode::from(if f.corrupt { EXIT_CORRUPT } else { 1 }))
            }
        }
    })
}

fn repair(config: &std::path::Path, reason: &str) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(config)?;
    let report = stateledger_node::recovery::repair_data_dir(&config, reason)
        .map_err(|e| anyhow::anyhow!("cannot repair {}: {e}", config.node.name))?;
    println!(
        "{}: moved the old ledger and Raft log to {}",
        config.node.name,
        report.quarantine.display()
    );
    match (report.vote, report.vote_unknown) {
        (Some(v), _) => println!("kept the node's vote ({v})"),
        (None, Some(why)) => println!(
            "warning: the node's vote could not be recovered ({why}); if it may have voted in \
             the current term, remove it (`stateledger cluster remove`) and add it back under a \
             new id instead"
        ),
        (None, None) => println!("the node had not voted yet"),
    }
    println!(
        "start it with `stateledger node run --config ...`: it copies the ledger from the \
         cluster and votes and cosigns again once it has caught up with the leader"
    );
    Ok(ExitCode::SUCCESS)
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
