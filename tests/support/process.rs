//! One `stateledger node run` process, killed (SIGKILL) and reaped when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A node process and where its output goes. Every start appends to the same log file.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Environment variables set for every start.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NodeProcess {
    /// A node that is not running yet.
    pub fn new(name: &str, config: &Path, log: &Path) -> NodeProcess {
        NodeProcess {
            name: name.to_string(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts `stateledger node run --config <config>`, stdout and stderr appended to the log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the node log can be created");
        let child = Command::new(super::binary::stateledger())
            .args(["node", "run", "--config"])
            .arg(&self.config)
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle clones")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("stateledger node run starts");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has ended (and it is then forgotten), `None` while it
    /// runs or when it was never started.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait on a child"))?;
        self.child = None;
        Some(status)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(c) => c.try_wait().expect("try_wait on a child").is_none(),
        }
    }

    /// Sends `signal` (e.g. `SIGSTOP`, `SIGCONT`) to the running process. No-op when not running.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{signal} {}", child.id());
        }
    }

    /// `kill -9` and reap. No-op when not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
