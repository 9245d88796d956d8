//! `stateledger`: verify proofs offline, manage keys, run and use a cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser, Debug)]
#[command(
    name = "stateledger",
    version,
    about = "StateLedger: what exactly was the declared state of system X at time T — and can we prove it?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the worked example end to end and verify its proofs.
    Demo(cmd::demo::Args),
    /// Verify a receipt, consistency proof, state proof or checkpoint offline against a trust policy.
    Verify(cmd::verify::Args),
    /// Generate an ed25519 key pair in the C2SP signed-note key formats.
    Keygen(cmd::keygen::Args),
    /// Run a node.
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// Run a local TLS cluster on loopback (creates keys, certificates and configs on first run).
    Dev(cmd::dev::Args),
    /// Cluster status and membership changes.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
    /// Observe code, config, environment, mutations or nondeterminism and print records (JSON lines).
    Collect(cmd::collect::CollectArgs),
    /// Sign records (JSON) and submit them; prints verified receipts.
    Submit(cmd::submit::SubmitArgs),
    /// Grant (or revoke) a writer the right to append records for a system (admin).
    Grant(cmd::submit::GrantArgs),
    /// Fetch a verified receipt for a leaf.
    Receipt(cmd::proofs::ReceiptArgs),
    /// Fetch a verified checkpoint.
    Checkpoint(cmd::proofs::CheckpointArgs),
    /// Fetch a verified consistency proof between two tree sizes.
    Consistency(cmd::proofs::ConsistencyArgs),
    /// Reconstruct S(T) for a system with a verified state proof and a verdict.
    Reconstruct(cmd::reconstruct::ReconstructArgs),
    /// Enforced mode: exit 0 only if the system's state at T reconstructs exactly.
    Gate(cmd::reconstruct::GateArgs),
    /// Forensic report (text and HTML timeline) of a state proof, verified first.
    Report(cmd::report::ReportArgs),
    /// Replay a state proof's mutations through a reducer and compare with the recorded state digests.
    Replay(cmd::replay::ReplayArgs),
    /// Benchmarks: cluster throughput and latency (optionally against etcd), reconstruction cost.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// The example reducer of the demo (the replay protocol on stdin/stdout).
    #[command(hide = true)]
    ExampleReducer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Keygen(args) => cmd::keygen::run(args).map(|()| ExitCode::SUCCESS),
        Command::Node(c) => cmd::node::run(c),
        Command::Dev(args) => cmd::dev::run(args).map(|()| ExitCode::SUCCESS),
        Command::Cluster(c) => cmd::cluster::run(c).map(|()| ExitCode::SUCCESS),
        Command::Submit(args) => cmd::submit::run_submit(args).map(|()| ExitCode::SUCCESS),
        Command::Grant(args) => cmd::submit::run_grant(args).map(|()| ExitCode::SUCCESS),
        Command::Receipt(args) => cmd::proofs::run_receipt(args).map(|()| ExitCode::SUCCESS),
        Command::Checkpoint(args) => cmd::proofs::run_checkpoint(args).map(|()| ExitCode::SUCCESS),
        Command::Consistency(args) => {
            cmd::proofs::run_consistency(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Reconstruct(args) => {
            cmd::reconstruct::run_reconstruct(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Gate(args) => cmd::reconstruct::run_gate(args),
        Command::Report(args) => cmd::report::run(args).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Bench(c) => cmd::bench::run(c).map(|()| ExitCode::SUCCESS),
        Command::Collect(args) => cmd::collect::run(args).map(|()| ExitCode::SUCCESS),
        Command::ExampleReducer => cmd::replay::run_example_reducer().map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
