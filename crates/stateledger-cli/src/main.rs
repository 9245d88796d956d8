//! `stateledger`: verify proofs offline, manage keys, run and use a cluster.
//!
//! Exit status, for every command (each command's `--help` lists its own): 0 success; 1 the
//! answer is "no" (a proof does not verify, a gate fails, a replay diverges, no quorum); 2 the
//! command could not run (bad input, unreadable files, no answer from the cluster); 3 a node
//! found its stored data corrupt (`node run`); 141 standard output was closed before the result
//! was written. docs/CLI.md has the details and the JSON of every `--output json`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::output::{is_broken_pipe, EXIT_STDOUT_CLOSED};

#[derive(Parser, Debug)]
#[command(
    name = "stateledger",
    version = cmd::version::LONG_VERSION,
    about = "StateLedger: what exactly was the declared state of system X at time T — and can we prove it?",
    after_help = "\
Examples:
  stateledger demo                                  # the worked example, end to end
  stateledger dev                                   # a local 3-node cluster (keep it running)
  export STATELEDGER_PROFILE=stateledger-dev/client.toml   # in another shell
  stateledger cluster status
  stateledger verify --trust policy.json proof.json

Exit status:
  0    success
  1    the answer is no: a proof does not verify, a gate fails, a replay diverges, no quorum
  2    the command could not run: bad input, unreadable file, no answer from the cluster
  3    node run: the node's stored data is corrupt
  141  standard output was closed before the result was written

Each command's --help lists the statuses it uses; docs/CLI.md describes every command's
--output json."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the worked example end to end and verify its proofs.
    #[command(after_help = cmd::demo::HELP)]
    Demo(cmd::demo::Args),
    /// Verify a receipt, consistency proof, state proof or checkpoint offline against a trust policy.
    #[command(after_help = cmd::verify::HELP)]
    Verify(cmd::verify::Args),
    /// Generate an ed25519 key pair in the C2SP signed-note key formats.
    #[command(after_help = cmd::keygen::HELP)]
    Keygen(cmd::keygen::Args),
    /// Make the cluster's PKI: a CA, and node, admin and client certificates naming their role.
    #[command(subcommand, after_help = cmd::certs::HELP)]
    Certs(cmd::certs::CertsCommand),
    /// Run a node.
    #[command(subcommand, after_help = cmd::node::HELP)]
    Node(cmd::node::NodeCommand),
    /// Run a local TLS cluster on loopback (creates keys, certificates and configs on first run).
    #[command(after_help = cmd::dev::HELP)]
    Dev(cmd::dev::Args),
    /// Cluster status and membership changes.
    #[command(subcommand, after_help = cmd::cluster::HELP)]
    Cluster(cmd::cluster::ClusterCommand),
    /// Observe code, config, environment, mutations or nondeterminism and print records (JSON lines).
    #[command(after_help = cmd::collect::HELP)]
    Collect(cmd::collect::CollectArgs),
    /// Sign records (JSON) and submit them; prints verified receipts.
    #[command(after_help = cmd::submit::SUBMIT_HELP)]
    Submit(cmd::submit::SubmitArgs),
    /// Grant (or revoke) a writer the right to append records for a system (admin).
    #[command(after_help = cmd::submit::GRANT_HELP)]
    Grant(cmd::submit::GrantArgs),
    /// Fetch a verified receipt for a leaf.
    #[command(after_help = cmd::proofs::RECEIPT_HELP)]
    Receipt(cmd::proofs::ReceiptArgs),
    /// Fetch a verified checkpoint.
    #[command(after_help = cmd::proofs::CHECKPOINT_HELP)]
    Checkpoint(cmd::proofs::CheckpointArgs),
    /// Fetch a verified consistency proof between two published checkpoints.
    #[command(after_help = cmd::proofs::CONSISTENCY_HELP)]
    Consistency(cmd::proofs::ConsistencyArgs),
    /// Reconstruct S(T) for a system with a verified state proof and a verdict.
    #[command(after_help = cmd::reconstruct::RECONSTRUCT_HELP)]
    Reconstruct(cmd::reconstruct::ReconstructArgs),
    /// Enforced mode: exit 0 only if the system's state at T reconstructs exactly.
    #[command(after_help = cmd::reconstruct::GATE_HELP)]
    Gate(cmd::reconstruct::GateArgs),
    /// Forensic report (text and HTML timeline) of a state proof, verified first.
    #[command(after_help = cmd::report::HELP)]
    Report(cmd::report::ReportArgs),
    /// Restore S(T) into a directory and verify each piece against the ledger.
    #[command(after_help = cmd::materialize::HELP)]
    Materialize(cmd::materialize::MaterializeArgs),
    /// Replay a state proof's mutations through a reducer and compare with the recorded state digests.
    #[command(long_about = cmd::replay::LONG_ABOUT, after_help = cmd::replay::HELP)]
    Replay(cmd::replay::ReplayArgs),
    /// Benchmarks: cluster throughput and latency (optionally against etcd), reconstruction cost.
    #[command(subcommand, after_help = cmd::bench::HELP)]
    Bench(cmd::bench::BenchCommand),
    /// Print the version and git commit, and each node's version when a profile is set.
    #[command(after_help = cmd::version::HELP)]
    Version(cmd::version::Args),
    /// Print a shell completion script (bash, zsh or fish).
    #[command(after_help = cmd::docs::COMPLETION_HELP)]
    Completion(cmd::docs::CompletionArgs),
    /// Write man pages, one per command.
    #[command(after_help = cmd::docs::MAN_HELP)]
    Man(cmd::docs::ManArgs),
    /// The example reducer of the demo (the replay protocol on stdin/stdout).
    #[command(hide = true)]
    ExampleReducer,
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let ok = |()| ExitCode::SUCCESS;
    match command {
        Command::Demo(args) => cmd::demo::run(args).map(ok),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Keygen(args) => cmd::keygen::run(args).map(ok),
        Command::Certs(c) => cmd::certs::run(c).map(ok),
        Command::Node(c) => cmd::node::run(c),
        Command::Dev(args) => cmd::dev::run(args),
        Command::Cluster(c) => cmd::cluster::run(c),
        Command::Submit(args) => cmd::submit::run_submit(args).map(ok),
        Command::Grant(args) => cmd::submit::run_grant(args).map(ok),
        Command::Receipt(args) => cmd::proofs::run_receipt(args).map(ok),
        Command::Checkpoint(args) => cmd::proofs::run_checkpoint(args).map(ok),
        Command::Consistency(args) => cmd::proofs::run_consistency(args).map(ok),
        Command::Reconstruct(args) => cmd::reconstruct::run_reconstruct(args),
        Command::Gate(args) => cmd::reconstruct::run_gate(args),
        Command::Report(args) => cmd::report::run(args).map(ok),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Materialize(args) => cmd::materialize::run(args),
        Command::Bench(c) => cmd::bench::run(c).map(ok),
        Command::Collect(args) => cmd::collect::run(args).map(ok),
        Command::Version(args) => cmd::version::run(args).map(ok),
        Command::Completion(args) => {
            cmd::docs::completion(args, <Cli as clap::CommandFactory>::command()).map(ok)
        }
        Command::Man(args) => {
            cmd::docs::man(args, <Cli as clap::CommandFactory>::command()).map(ok)
        }
        Command::ExampleReducer => cmd::replay::run_example_reducer().map(ok),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        // Whoever closed our standard output wants no more of it; nothing to report.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every visible command, with its path (`stateledger cluster status`).
    fn all_commands() -> Vec<(String, clap::Command)> {
        fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
            out.push((path.clone(), cmd.clone()));
            // `help` is clap's own (`stateledger help verify` = `stateledger verify --help`).
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                walk(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut root = Cli::command();
        root.build();
        let mut all = Vec::new();
        walk(&root, "stateledger".into(), &mut all);
        all
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help_and_every_command_examples_and_exit_codes() {
        let all = all_commands();
        let mut missing = Vec::new();
        for (path, cmd) in &all {
            if cmd
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
            {
                missing.push(format!("{path}: no about text"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} --{id}: no help text"));
                }
            }
            let after = cmd
                .get_after_help()
                .or(cmd.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Examples:") {
                missing.push(format!("{path}: no Examples section"));
            }
            if !after.contains("Exit status:") {
                missing.push(format!("{path}: no Exit status section"));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        assert!(all.len() > 25, "only {} commands found", all.len());
    }

    #[test]
    fn networked_commands_take_a_timeout_and_a_profile_from_the_environment() {
        let all = all_commands();
        for (path, cmd) in &all {
            let Some(profile) = cmd.get_arguments().find(|a| a.get_id() == "profile") else {
                continue;
            };
            assert_eq!(
                profile.get_env().and_then(|e| e.to_str()),
                Some("STATELEDGER_PROFILE"),
                "{path}"
            );
            assert!(
                cmd.get_arguments().any(|a| a.get_id() == "timeout"),
                "{path} talks to a cluster but has no --timeout"
            );
        }
    }
}
