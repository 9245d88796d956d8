//! `stateledger cluster status | add-learner | promote | remove`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use stateledger_core::note::NoteVerifier;
use stateledger_proto::v1 as pb;

use super::profile::ProfileArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every node's view: role, term, tree size, root, checkpoint, corruption.
    Status {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner; returns once it caught up (by snapshot if needed).
    AddLearner {
        #[command(flatten)]
        profile: ProfileArgs,
        #[arg(long)]
        id: u64,
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
    Promote {
        #[command(flatten)]
        profile: ProfileArgs,
        #[arg(long)]
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        #[command(flatten)]
        profile: ProfileArgs,
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

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    super::runtime()?.block_on(async move {
        match command {
            ClusterCommand::Status { profile, json } => {
                let p = profile.load()?;
                let client = p.client(Duration::from_secs(3))?;
                let mut rows = Vec::new();
                for e in &p.endpoints {
                    match client.status(Some(e)).await {
                        Ok(s) => rows.push((e.clone(), Ok(s))),
                        Err(err) => rows.push((e.clone(), Err(err.to_string()))),
                    }
                }
                if json {
                    let out: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(e, r)| match r {
                            Ok(s) => serde_json::json!({
                                "endpoint": e, "node_id": s.node_id, "name": s.name, "role": s.role,
                                "leader_id": s.leader_id, "term": s.term, "tree_size": s.tree_size,
                                "root": hex_of(&s.root), "ledger_time": s.ledger_time,
                                "checkpoint_size": s.checkpoint_size, "corruption": s.corruption,
                                "members": s.members.iter().map(|m| serde_json::json!({
                                    "node_id": m.node_id, "name": m.name, "voter": m.voter,
                                    "public_addr": m.public_addr, "raft_addr": m.raft_addr})).collect::<Vec<_>>(),
                            }),
                            Err(err) => serde_json::json!({"endpoint": e, "error": err}),
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    println!("{:<22} {:<8} {:<10} {:>5} {:>10} {:>10}  {:<16} notes", "endpoint", "node", "role", "term", "size", "checkpt", "root");
                    for (e, r) in rows {
                        match r {
                            Ok(s) => println!(
                                "{:<22} {:<8} {:<10} {:>5} {:>10} {:>10}  {:<16} {}",
                                e,
                                s.name,
                                s.role,
                                s.term,
                                s.tree_size,
                                s.checkpoint_size,
                                hex_of(&s.root).chars().take(16).collect::<String>(),
                                if s.corruption.is_empty() { String::new() } else { format!("CORRUPT: {}", s.corruption) }
                            ),
                            Err(err) => println!("{e:<22} unreachable: {err}"),
                        }
                    }
                }
                Ok(())
            }
            ClusterCommand::AddLearner {
                profile,
                id,
                name,
                public_addr,
                cluster_addr,
                checkpoint_key,
            } => {
                let key = read_vkey(&checkpoint_key)?;
                let admin = profile.load()?.admin(Duration::from_secs(600))?;
                let r = admin
                    .add_learner(pb::AddLearnerRequest {
                        node_id: id,
                        name,
                        raft_addr: cluster_addr,
                        public_addr,
                        checkpoint_key: key.to_text(),
                    })
                    .await?;
                println!("{} (log index {})", r.message, r.log_index);
                Ok(())
            }
            ClusterCommand::Promote { profile, id } => {
                let r = profile.load()?.admin(Duration::from_secs(60))?.promote(id).await?;
                println!("{} (log index {})", r.message, r.log_index);
                Ok(())
            }
            ClusterCommand::Remove { profile, id } => {
                let r = profile.load()?.admin(Duration::from_secs(60))?.remove(id).await?;
                println!("{} (log index {})", r.message, r.log_index);
                Ok(())
            }
        }
    })
}

pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
