//! Short-lived local subprocesses (`git`, `--version` probes, time-source tools) with a timeout and
//! an output cap. A program that is not installed is an ordinary outcome, not a failure.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::limits::COMMAND_OUTPUT_BYTES_MAX;

/// What a finished subprocess printed.
#[derive(Debug)]
pub(crate) struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// Stdout with surrounding whitespace trimmed, if the program exited successfully.
    pub fn ok_stdout(&self) -> Option<&str> {
        self.status.success().then(|| self.stdout.trim())
    }
}

/// Why a subprocess gave no output.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// The program is not installed (not on `PATH`).
    NotFound,
    /// It could not be started for another reason.
    Spawn(std::io::Error),
    /// It did not finish (and close its output) in time; it was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::NotFound => f.write_str("not installed (not found on PATH)"),
            CommandError::Spawn(e) => write!(f, "could not be started: {e}"),
            CommandError::TimedOut(t) => write!(f, "did not finish within {t:?}"),
        }
    }
}

/// A subprocess to run: program, arguments, working directory and extra environment.
#[derive(Debug, Clone)]
pub(crate) struct Subprocess<'a> {
    pub program: &'a str,
    pub args: &'a [&'a str],
    pub cwd: Option<&'a Path>,
    pub envs: &'a [(&'a str, &'a str)],
    pub timeout: Duration,
}

impl Subprocess<'_> {
    /// Runs it with no stdin and `LC_ALL=C` (so its output can be parsed), waits at most `timeout`
    /// for it to exit and close its output, and kills it otherwise.
    pub fn run(&self) -> Result<CommandOutput, CommandError> {
        let mut command = Command::new(self.program);
        command
            .args(self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C");
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        for (k, v) in self.envs {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CommandError::NotFound
            } else {
                CommandError::Spawn(e)
            }
        })?;
        // Readers on their own threads so a chatty child never blocks on a full pipe; they report
        // through channels so a grandchild that keeps the pipe open cannot hang us either.
        let stdout = spawn_reader(child.stdout.take());
        let stderr = spawn_reader(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CommandError::TimedOut(self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(CommandError::Spawn(e)),
            }
        };
        let remaining = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
        let stdout = stdout
            .recv_timeout(remaining(deadline))
            .map_err(|_| CommandError::TimedOut(self.timeout))?;
        let stderr = stderr
            .recv_timeout(remaining(deadline))
            .map_err(|_| CommandError::TimedOut(self.timeout))?;
        Ok(CommandOutput {
            status,
            stdout,
            stderr,
        })
    }
}

fn spawn_reader(pipe: Option<impl std::io::Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            // Read to the end so the child never blocks, keep only the first bytes.
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = COMMAND_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<CommandOutput, CommandError> {
        Subprocess {
            program: "sh",
            args: &["-c", script],
            cwd: None,
            envs: &[("GREETING", "hi")],
            timeout,
        }
        .run()
    }

    #[test]
    fn output_and_status_are_captured() {
        let out = sh(
            "echo $GREETING; echo oops >&2; exit 3",
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.ok_stdout(), None);
    }

    #[test]
    fn a_slow_program_is_killed() {
        let started = Instant::now();
        let err = sh("sleep 30", Duration::from_millis(200)).expect_err("times out");
        assert!(matches!(err, CommandError::TimedOut(_)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let err = Subprocess {
            program: "stateledger-no-such-program",
            args: &[],
            cwd: None,
            envs: &[],
            timeout: Duration::from_secs(1),
        }
        .run()
        .expect_err("absent");
        assert!(matches!(err, CommandError::NotFound));
    }
}
