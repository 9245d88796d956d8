//! What commands print and how: text for people, or one JSON document for programs
//! (`--output json`, documented per command in docs/CLI.md), written so that a closed standard
//! output (`stateledger receipt ... | head -c 10`) stops the command quietly instead of
//! panicking, and a closed standard error is never fatal.
//!
//! Every result goes through [`outln!`] / [`line`] / [`json`], which return the write error:
//! `main` recognises a broken pipe ([`is_broken_pipe`]) and exits with [`EXIT_STDOUT_CLOSED`].
//! Diagnostics go through [`errln!`], which ignores write errors.

use std::io::Write as _;

use serde::Serialize;

/// Exit status when standard output was closed before the result was written: 128 + SIGPIPE,
/// what a shell reports for a command stopped by SIGPIPE.
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// `--output text|json`, for commands that print a result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: lines of text (the layout may change between versions).
    #[default]
    Text,
    /// For programs: one JSON document on standard output, as docs/CLI.md describes; stable.
    Json,
}

/// The output options of a command that prints a result.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct OutputArgs {
    /// Output format: text for people, or json (one JSON document; see docs/CLI.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Same as --output json.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
}

impl OutputArgs {
    pub fn is_json(&self) -> bool {
        self.json || self.output == Format::Json
    }
}

/// Writes text to standard output as is (no newline added) and flushes it.
pub fn text(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::Error::new(e).context("cannot write to standard output"))
}

/// Writes one line to standard output (see [`outln!`]).
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::Error::new(e).context("cannot write to standard output"))
}

/// Writes `value` as pretty JSON and a newline to standard output.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    line(format_args!("{text}"))
}

/// Writes one line to standard error (see [`errln!`]); a failure to write is ignored, since
/// there is nowhere left to report it.
pub fn diag(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_fmt(args)
        .and_then(|()| err.write_all(b"\n"))
        .and_then(|()| err.flush());
}

/// Whether an error comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns the write error instead of panicking: `outln!("...")?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cmd::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cmd::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cmd::output::diag(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("cannot write to standard output")
            .context("printing the receipt");
        assert!(is_broken_pipe(&e));
        let other = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
    }
}
