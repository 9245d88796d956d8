//! `stateledger completion` and `stateledger man`: shell completions and man pages generated
//! from the same command tree as `--help`, so they never disagree with it.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::errln;

pub const COMPLETION_HELP: &str = "\
Examples:
  stateledger completion bash > /etc/bash_completion.d/stateledger
  stateledger completion zsh > \"${fpath[1]}/_stateledger\"
  stateledger completion fish > ~/.config/fish/completions/stateledger.fish

Exit status:
  0  the script was printed
  2  it could not be written";

pub const MAN_HELP: &str = "\
Examples:
  stateledger man --out man/            # man/stateledger.1, man/stateledger-verify.1, ...
  man -l man/stateledger-gate.1

Exit status:
  0  every page was written
  2  the directory could not be written";

/// Shells completions are generated for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing): stateledger.1 and one
    /// stateledger-<command>.1 per command.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

pub fn completion(args: CompletionArgs, mut cmd: clap::Command) -> anyhow::Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "stateledger", &mut script);
    super::output::text(&String::from_utf8_lossy(&script))
}

pub fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = 0;
    write_pages(&cmd, "stateledger", &args.out, &mut written)?;
    errln!("wrote {written} man pages to {}", args.out.display());
    Ok(())
}

/// Writes the page of `cmd` (named `name`) and of each visible subcommand.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .render(&mut page)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
