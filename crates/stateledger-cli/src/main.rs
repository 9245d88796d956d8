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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Keygen(args) => cmd::keygen::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
