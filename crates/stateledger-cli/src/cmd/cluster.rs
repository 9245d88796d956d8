//! `stateledger cluster status | add-learner | promote | remove`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use stateledger_client::ClientError;
use stateledger_core::note::NoteVerifier;
use stateledger_proto::v1 as pb;

use super::output::OutputArgs;
use super::profile::{explain, humantime, Connected, ProfileArgs};
use super::progress::Progress;
use crate::outln;

pub const HELP: &str = "\
Examples:
  stateledger cluster status
  stateledger cluster add-learner --id 4 --name node-4 --public-addr 10.0.0.4:7101 \\
      --cluster-addr 10.0.0.4:7201 --checkpoint-key keys/node-4.pub
  stateledger cluster promote --id 4
  stateledger cluster remove --id 2

Exit status:
  0  done (status: a quorum of voters answered)
  1  status: a quorum of voters cannot be reached
  2  the command could not run: no profile, no admin certificate, refused, no answer within
     --timeout";

pub const STATUS_HELP: &str = "\
Examples:
  stateledger cluster status
  stateledger cluster status --timeout 2s --output json

Roles: leader, leader-without-quorum (it has lost its quorum lease and refuses writes),
follower, candidate, learner, or starting (the node has not yet heard which role it has).
Notes: CORRUPT (the node refuses to serve its data) or REPAIRING (it repairs lost durable
state and does not vote). Hashes are base64, as in checkpoints and proofs.

Exit status:
  0  a quorum (a majority of the voters) answered
  1  it did not: the cluster cannot append or publish until more voters are reachable
  2  the command could not run (no profile)";

pub const ADD_LEARNER_HELP: &str = "\
Examples:
  stateledger keygen --name node-4 --out keys
  stateledger cluster add-learner --id 4 --name node-4 --public-addr 127.0.0.1:7104 \\
      --cluster-addr 127.0.0.1:7204 --checkpoint-key keys/node-4.pub

Start the new node first (`stateledger node run --config node-4.toml`). The command returns
once the learner has caught up (by snapshot if needed), showing its progress on a terminal;
then `stateledger cluster promote --id 4` makes it a voter. Needs the profile's admin
certificate. --timeout bounds the wait for a leader to answer; the catch-up that follows is
given at least 10 minutes.

Exit status:
  0  the learner was added and caught up
  2  it was not: refused (e.g. the id is taken), no admin certificate, no answer within --timeout";

pub const PROMOTE_HELP: &str = "\
Examples:
  stateledger cluster promote --id 4

Exit status:
  0  the node is a voter
  2  it is not: not a caught-up learner, no admin certificate, no answer within --timeout";

pub const REMOVE_HELP: &str = "\
Examples:
  stateledger cluster remove --id 2

Exit status:
  0  the node was removed from the membership
  2  it was not: refused (e.g. it would leave no voter), no admin certificate, no answer
     within --timeout";

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every node's view: role, term, tree size, root, checkpoint, corruption; and whether a
    /// quorum answers.
    #[command(after_help = STATUS_HELP)]
    Status {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Add a node as a learner; returns once it caught up (by snapshot if needed).
    #[command(after_help = ADD_LEARNER_HELP)]
    AddLearner {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// The new node's id: a number not used by any node of the cluster (its config's
        /// node.id).
        #[arg(long)]
        id: u64,
        /// The new node's name (its config's node.name; also the name of its checkpoint key).
        #[arg(long)]
        name: String,
        /// host:port of its public listener.
        #[arg(long)]
        public_addr: String,
        /// host:port of its cluster listener.
        #[arg(long)]
        cluster_addr: String,
        /// Its checkpoint public key: a .pub file from `stateledger keygen`, or the key text.
        #[arg(long)]
        checkpoint_key: String,
    },
    /// Make a learner a voter.
    #[command(after_help = PROMOTE_HELP)]
    Promote {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Id of the learner to make a voter (see `stateledger cluster status`).
        #[arg(long)]
        id: u64,
    },
    /// Remove a node from the cluster.
    #[command(after_help = REMOVE_HELP)]
    Remove {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Id of the node to remove (see `stateledger cluster status`).
        #[arg(long)]
        id: u64,
    },
}

/// Reads a verifier key given as a file path or as the key text.
pub fn read_vkey(arg: &str) -> anyhow::Result<NoteVerifier> {
    let text = if PathBuf::from(arg).exists() {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read {arg}"))?
    } else {
        arg.to_string()
    };
    NoteVerifier::parse(text.trim())
        .with_context(|| format!("{arg} is not a verifier key (<name>+<id>+<base64>)"))
}

/// One node as `cluster status` shows it.
#[derive(Debug, Serialize)]
struct NodeRow {
    endpoint: String,
    node_id: Option<u64>,
    name: Option<String>,
    role: Option<String>,
    leader_id: Option<u64>,
    term: Option<u64>,
    tree_size: Option<u64>,
    root: Option<String>,
    ledger_time: Option<u64>,
    checkpoint_size: Option<u64>,
    corruption: Option<String>,
    /// Why the node is repairing lost durable state (null when it is not).
    repair: Option<String>,
    version: Option<String>,
    /// Why the node did not answer (null when it did).
    error: Option<String>,
}

/// What `cluster status --output json` prints (docs/CLI.md).
#[derive(Debug, Serialize)]
struct StatusReport {
    /// Whether a majority of the voters answered.
    quorum: bool,
    voters: usize,
    voters_reachable: usize,
    /// The members as the most recent answering node knows them.
    members: Vec<serde_json::Value>,
    nodes: Vec<NodeRow>,
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn row(endpoint: &str, answer: Result<pb::StatusResponse, String>) -> NodeRow {
    match answer {
        Ok(s) => NodeRow {
            endpoint: endpoint.to_string(),
            node_id: Some(s.node_id),
            name: Some(s.name),
            role: Some(s.role),
            leader_id: Some(s.leader_id),
            term: Some(s.term),
            tree_size: Some(s.tree_size),
            root: Some(base64_of(&s.root)),
            ledger_time: Some(s.ledger_time),
            checkpoint_size: Some(s.checkpoint_size),
            corruption: (!s.corruption.is_empty()).then_some(s.corruption),
            repair: (!s.repair.is_empty()).then_some(s.repair),
            version: (!s.version.is_empty()).then_some(s.version),
            error: None,
        },
        Err(error) => NodeRow {
            endpoint: endpoint.to_string(),
            node_id: None,
            name: None,
            role: None,
            leader_id: None,
            term: None,
            tree_size: None,
            root: None,
            ledger_time: None,
            checkpoint_size: None,
            corruption: None,
            repair: None,
            version: None,
            error: Some(error),
        },
    }
}

/// Voters, and how many of them answered. The membership is the one of the answering node with
/// the highest term; when no answering node knows one (all starting, or none answered), every
/// endpoint of the profile counts as a voter.
fn quorum(rows: &[NodeRow], answers: &[pb::StatusResponse]) -> (usize, usize, Vec<pb::Member>) {
    let known = answers
        .iter()
        .filter(|s| !s.members.is_empty())
        .max_by_key(|s| s.term)
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let answered: Vec<u64> = rows.iter().filter_map(|r| r.node_id).collect();
    if known.is_empty() {
        return (rows.len(), answered.len(), known);
    }
    let voters: Vec<u64> = known
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    let reachable = voters.iter().filter(|v| answered.contains(v)).count();
    (voters.len(), reachable, known)
}

async fn status(profile: ProfileArgs, output: OutputArgs) -> anyhow::Result<ExitCode> {
    let p = profile.load()?;
    let client = p.client(profile.timeout)?;
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    let asking = Progress::spinner(&format!(
        "asking {} nodes for their status (timeout {})",
        p.endpoints.len(),
        humantime(profile.timeout)
    ));
    // All at once: a node that does not answer costs one --timeout, not one each.
    let statuses = futures::future::join_all(p.endpoints.iter().map(|e| client.status(Some(e))));
    for (e, answer) in p.endpoints.iter().zip(statuses.await) {
        match answer {
            Ok(s) => {
                answers.push(s.clone());
                rows.push(row(e, Ok(s)));
            }
            Err(err) => rows.push(row(e, Err(err.to_string()))),
        }
    }
    drop(asking);
    let (voters, reachable, members) = quorum(&rows, &answers);
    let has_quorum = reachable > voters / 2;
    let code = if has_quorum {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if output.is_json() {
        super::output::json(&StatusReport {
            quorum: has_quorum,
            voters,
            voters_reachable: reachable,
            members: members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "node_id": m.node_id, "name": m.name, "voter": m.voter,
                        "public_addr": m.public_addr, "cluster_addr": m.raft_addr})
                })
                .collect(),
            nodes: rows,
        })?;
        return Ok(code);
    }
    outln!(
        "{:<22} {:<8} {:<10} {:>5} {:>10} {:>10}  {:<16} notes",
        "endpoint",
        "node",
        "role",
        "term",
        "size",
        "checkpt",
        "root"
    )?;
    for r in &rows {
        match &r.error {
            None => outln!(
                "{:<22} {:<8} {:<10} {:>5} {:>10} {:>10}  {:<16} {}",
                r.endpoint,
                r.name.as_deref().unwrap_or_default(),
                r.role.as_deref().unwrap_or_default(),
                r.term.unwrap_or_default(),
                r.tree_size.unwrap_or_default(),
                r.checkpoint_size.unwrap_or_default(),
                r.root
                    .as_deref()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect::<String>(),
                match (&r.corruption, &r.repair) {
                    (Some(c), _) => format!("CORRUPT: {c}"),
                    (None, Some(why)) => format!("REPAIRING: {why}"),
                    (None, None) => String::new(),
                }
            )?,
            Some(err) => outln!("{:<22} unreachable: {err}", r.endpoint)?,
        }
    }
    if has_quorum {
        outln!("quorum: {reachable} of {voters} voters answered")?;
    } else {
        outln!(
            "NO QUORUM: {reachable} of {voters} voters answered within {}; {} are needed for the \
             cluster to append or publish (is the cluster running?)",
            humantime(profile.timeout),
            voters / 2 + 1
        )?;
    }
    Ok(code)
}

/// The least time `add-learner` gives the learner to catch up, whatever --timeout says.
const CATCH_UP_MIN: Duration = Duration::from_secs(600);

/// Waits, within --timeout, until a node answers and names a leader. A membership change goes
/// to the leader, and `add-learner` then waits for the catch-up far longer than --timeout: a
/// cluster that is down or has no leader is found out here, and said so, within --timeout.
async fn reach_leader(cluster: &Connected, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + cluster.timeout;
    cluster
        .wait(&format!("a leader to ask for {what}"), async {
            loop {
                if cluster.client.status(None).await?.leader_id != 0 {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ClientError::Unavailable(
                        "nodes answer but none knows a leader (an election under way, or no \
                         quorum)"
                            .into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
}

/// Adds a learner and, while the leader waits for it to catch up, shows its tree size against
/// the leader's (on a terminal).
async fn add_learner(
    profile: &ProfileArgs,
    request: pb::AddLearnerRequest,
) -> anyhow::Result<pb::AdminResponse> {
    let what = format!("node {} to be added as a learner", request.node_id);
    let cluster = profile.connect()?;
    reach_leader(&cluster, &what).await?;
    let p = &cluster.profile;
    // Catching up may take much longer than one call: at least ten minutes, once a leader is
    // known to answer (above, within --timeout).
    let catch_up = profile.timeout.max(CATCH_UP_MIN);
    let admin = p.admin(catch_up)?;
    let watcher = p.client(Duration::from_secs(2))?;
    let learner_addr = request.public_addr.clone();
    let name = request.name.clone();
    let add = admin.add_learner(request);
    tokio::pin!(add);
    let bar = Progress::bar(0, &format!("{name} catching up"));
    loop {
        tokio::select! {
            r = &mut add => {
                return r.map_err(|e| explain(e, &what, &p.cluster_endpoints, catch_up));
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                let leader = watcher.status(None).await.ok();
                let learner = watcher.status(Some(&learner_addr)).await.ok();
                if let (Some(leader), Some(learner)) = (leader, learner) {
                    bar.set_length(leader.tree_size);
                    bar.set_position(learner.tree_size.min(leader.tree_size));
                }
            }
        }
    }
}

fn print_admin(output: OutputArgs, r: &pb::AdminResponse) -> anyhow::Result<()> {
    if output.is_json() {
        return super::output::json(
            &serde_json::json!({"message": r.message, "log_index": r.log_index}),
        );
    }
    outln!("{} (log index {})", r.message, r.log_index)
}

pub fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let is_promote = matches!(command, ClusterCommand::Promote { .. });
    super::runtime()?.block_on(async move {
        match command {
            ClusterCommand::Status { profile, output } => status(profile, output).await,
            ClusterCommand::AddLearner {
                profile,
                output,
                id,
                name,
                public_addr,
                cluster_addr,
                checkpoint_key,
            } => {
                let key = read_vkey(&checkpoint_key).context("--checkpoint-key")?;
                let r = add_learner(
                    &profile,
                    pb::AddLearnerRequest {
                        node_id: id,
                        name,
                        raft_addr: cluster_addr,
                        public_addr,
                        checkpoint_key: key.to_text(),
                    },
                )
                .await?;
                print_admin(output, &r)?;
                Ok(ExitCode::SUCCESS)
            }
            ClusterCommand::Promote {
                profile,
                output,
                id,
            }
            | ClusterCommand::Remove {
                profile,
                output,
                id,
            } => {
                let what = if is_promote {
                    format!("node {id} to be promoted to voter")
                } else {
                    format!("node {id} to be removed")
                };
                let cluster = profile.connect()?;
                reach_leader(&cluster, &what).await?;
                let p = &cluster.profile;
                let admin = p.admin(profile.timeout)?;
                let r = if is_promote {
                    admin.promote(id).await
                } else {
                    admin.remove(id).await
                }
                .map_err(|e| explain(e, &what, &p.cluster_endpoints, profile.timeout))?;
                print_admin(output, &r)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, voter: bool) -> pb::Member {
        pb::Member {
            node_id: id,
            voter,
            ..Default::default()
        }
    }

    #[test]
    fn quorum_counts_answering_voters_of_the_known_membership() {
        let members = vec![
            member(1, true),
            member(2, true),
            member(3, true),
            member(4, false),
        ];
        let answer = |id, term| pb::StatusResponse {
            node_id: id,
            term,
            members: members.clone(),
            ..Default::default()
        };
        let answers = vec![answer(1, 3), answer(4, 3)];
        let rows = vec![
            row("a", Ok(answers[0].clone())),
            row("b", Err("refused".into())),
            row("c", Err("refused".into())),
            row("d", Ok(answers[1].clone())),
        ];
        let (voters, reachable, _) = quorum(&rows, &answers);
        assert_eq!((voters, reachable), (3, 1), "a learner does not count");

        let none: Vec<NodeRow> = (0..3)
            .map(|i| row(&i.to_string(), Err("down".into())))
            .collect();
        let (voters, reachable, _) = quorum(&none, &[]);
        assert_eq!(
            (voters, reachable),
            (3, 0),
            "no membership known: every endpoint votes"
        );
    }
}
