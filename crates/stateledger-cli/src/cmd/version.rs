//! `stateledger version`: this binary's version and git commit and, when a client profile is
//! set (`--profile` or `STATELEDGER_PROFILE`), the version each node of that cluster reports.

use serde::Serialize;

use super::output::OutputArgs;
use super::profile::ProfileArgs;
use crate::outln;

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`build.rs`), or "unknown".
pub const GIT_COMMIT: &str = env!("STATELEDGER_GIT_COMMIT");
/// What `--version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STATELEDGER_GIT_COMMIT"),
    ")"
);

pub const HELP: &str = "\
Examples:
  stateledger version
  stateledger version --profile stateledger-dev/client.toml   # and each node's version
  STATELEDGER_PROFILE=stateledger-dev/client.toml stateledger version --output json

Exit status:
  0  printed (a node that does not answer is listed as unreachable)
  2  the profile named could not be read";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Serialize)]
struct NodeVersion {
    endpoint: String,
    name: Option<String>,
    version: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct VersionReport {
    version: &'static str,
    commit: &'static str,
    /// Each node of the profile's cluster; empty when no profile is set.
    nodes: Vec<NodeVersion>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut report = VersionReport {
        version: VERSION,
        commit: GIT_COMMIT,
        nodes: Vec::new(),
    };
    // Nodes are asked only when a profile was named; without one, `version` works anywhere.
    if args.profile.profile.is_some() {
        let cluster = args.profile.connect()?;
        report.nodes = super::runtime()?.block_on(async {
            let endpoints = &cluster.profile.endpoints;
            let answers = super::progress::spinner_while(
                "asking the nodes for their versions",
                futures::future::join_all(endpoints.iter().map(|e| cluster.client.status(Some(e)))),
            )
            .await;
            let mut nodes = Vec::new();
            for (e, answer) in endpoints.iter().zip(answers) {
                nodes.push(match answer {
                    Ok(s) => NodeVersion {
                        endpoint: e.clone(),
                        name: Some(s.name),
                        version: Some(if s.version.is_empty() {
                            "unknown".to_string()
                        } else {
                            s.version
                        }),
                        error: None,
                    },
                    Err(err) => NodeVersion {
                        endpoint: e.clone(),
                        name: None,
                        version: None,
                        error: Some(err.to_string()),
                    },
                });
            }
            nodes
        });
    }
    if args.output.is_json() {
        return super::output::json(&report);
    }
    outln!("stateledger {VERSION} (commit {GIT_COMMIT})")?;
    for n in &report.nodes {
        match (&n.name, &n.version, &n.error) {
            (Some(name), Some(version), _) => outln!("  {name} at {}: {version}", n.endpoint)?,
            (_, _, Some(error)) => outln!("  {}: unreachable ({error})", n.endpoint)?,
            _ => {}
        }
    }
    Ok(())
}
