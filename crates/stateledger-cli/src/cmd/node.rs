//! `stateledger node run --config FILE`: runs one node until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use stateledger_node::config::NodeConfig;
use stateledger_node::node::{start, NodeParts, StartError};

use super::output::OutputArgs;

pub const HELP: &str = "\
Examples:
  stateledger node run --config cluster-configs/single-node.toml
  RUST_LOG=debug stateledger node run --config node-1.toml 2> node-1.log
  stateledger node run --config node-1.toml --log-format json    # one JSON object per line

Logs go to standard error; RUST_LOG filters them (default info, with openraft, sled, h2 and
tower at warn). Admin actions (membership changes) are logged with the certificate identity
that asked (`by`).

Exit status:
  0  stopped by SIGTERM or Ctrl-C after a clean shutdown
  1  stopped because Raft stopped on its own (the log says why)
  2  could not start: invalid config, unreadable TLS files or keys, a port in use
  3  the node's stored data is corrupt (found at start, by scrubbing, or by the storage engine);
     it refuses to serve it: run `stateledger node repair` (docs/OPERATIONS.md, \"Repairing a
     node\")

A node that lost durable state in ways it can repair around (its Raft log deleted or truncated,
a sync marker missing) starts anyway, in repair mode: it does not vote or cosign until it has
caught up with the leader; `stateledger cluster status` shows why.";

pub const REPAIR_HELP: &str = "\
Examples:
  stateledger node repair --config node-2.toml --reason \"disk replaced\"
  stateledger node run --config node-2.toml      # then copies the ledger from the cluster

Output: what was moved where and whether the vote was kept; with --output json
{\"node\", \"quarantine\", \"vote\", \"vote_unknown\"} (docs/CLI.md).

Exit status:
  0  repaired: the old storage is in <data_dir>/quarantine-<time>/
  2  could not repair: the node is still running, the config is invalid, or the data directory
     is missing";

#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Run a node with a config file (see cluster-configs/ for commented examples).
    #[command(after_help = HELP)]
    Run {
        /// The node's config file (TOML): identity, listen addresses, TLS files, checkpoint key,
        /// data directory and the cluster's initial members; cluster-configs/ has examples.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Log format on standard error: text, or json (one object per line: timestamp, level,
        /// fields, spans).
        #[arg(
            long,
            value_enum,
            default_value = "text",
            env = "STATELEDGER_LOG_FORMAT"
        )]
        log_format: LogFormat,
    },
    /// Repair a stopped node whose storage is damaged: move its ledger and Raft log aside
    /// (kept in <data_dir>/quarantine-<time>/) and start it over empty, keeping its identity
    /// and vote. Started again, it copies the ledger from the cluster and votes once it has
    /// caught up (docs/OPERATIONS.md, "Repairing a node").
    #[command(after_help = REPAIR_HELP)]
    Repair {
        #[command(flatten)]
        output: OutputArgs,
        /// The node's config file (the node must be stopped).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Why (recorded in the node's status until the repair is done).
        #[arg(long, value_name = "TEXT", default_value = "no reason given")]
        reason: String,
    },
}

/// Exit status when stored data is corrupt.
pub const EXIT_CORRUPT: u8 = 3;

/// Set by `stateledger dev` on the nodes it starts: its process id. Such a node asks the kernel
/// for SIGTERM when its parent exits, so a dev cluster never outlives `stateledger dev` (even
/// one killed with SIGKILL).
pub const DEV_PARENT_ENV: &str = "STATELEDGER_DEV_PARENT";

/// How a node writes its log.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (in colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// Logs to standard error in `format`; text in colour only when it is a terminal: a log file or
/// a pipe gets plain text.
pub fn init_tracing_as(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// Under `stateledger dev`: stop (SIGTERM) when the dev process exits, and stop now if it
/// already has. The signal is tied to the thread that started us; dev starts its nodes from its
/// main thread, which lives as long as it does.
fn follow_dev_parent() {
    let Some(parent) = std::env::var(DEV_PARENT_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let still_there =
        rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() == parent);
    if !still_there {
        crate::errln!("stateledger dev (pid {parent}) is gone; not starting");
        std::process::exit(0);
    }
}

pub fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let (config, log_format) = match command {
        NodeCommand::Run { config, log_format } => (config, log_format),
        NodeCommand::Repair {
            output,
            config,
            reason,
        } => return repair(&config, &reason, output),
    };
    follow_dev_parent();
    init_tracing_as(log_format);
    let config = NodeConfig::load(&config)?;
    let name = config.node.name.clone();
    let parts = match NodeParts::load(config) {
        Ok(parts) => parts,
        Err(e @ StartError::Corrupt(_)) => {
            crate::errln!("error: {name}: {e}");
            return Ok(ExitCode::from(EXIT_CORRUPT));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot prepare the node")),
    };
    super::runtime()?.block_on(async move {
        let handle = match start(parts).await {
            Ok(h) => h,
            Err(e @ StartError::Corrupt(_)) => {
                crate::errln!("error: {name}: {e}");
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

fn repair(config: &std::path::Path, reason: &str, output: OutputArgs) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(config)?;
    let report = stateledger_node::recovery::repair_data_dir(&config, reason)
        .map_err(|e| anyhow::anyhow!("cannot repair {}: {e}", config.node.name))?;
    if output.is_json() {
        super::output::json(&serde_json::json!({
            "node": config.node.name,
            // Absolute, so a program need not know where the config was read from.
            "quarantine": std::path::absolute(&report.quarantine)
                .unwrap_or(report.quarantine.clone())
                .display()
                .to_string(),
            "vote": report.vote.map(|v| v.to_string()),
            "vote_unknown": report.vote_unknown,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!(
        "{}: moved the old ledger and Raft log to {}",
        config.node.name,
        report.quarantine.display()
    )?;
    match (report.vote, report.vote_unknown) {
        (Some(v), _) => crate::outln!("kept the node's vote ({v})")?,
        (None, Some(why)) => crate::outln!(
            "warning: the node's vote could not be recovered ({why}); if it may have voted in \
             the current term, remove it (`stateledger cluster remove`) and add it back under a \
             new id instead"
        )?,
        (None, None) => crate::outln!("the node had not voted yet")?,
    }
    crate::outln!(
        "start it with `stateledger node run --config ...`: it copies the ledger from the \
         cluster and votes and cosigns again once it has caught up with the leader"
    )?;
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
