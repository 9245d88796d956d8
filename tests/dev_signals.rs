//! `stateledger dev` as a user runs it in a shell:
//!
//! - a normal start writes node logs without warnings, errors or colour escapes;
//! - SIGTERM (as Ctrl-C's SIGINT) stops its nodes, and it exits 0 once they are gone;
//! - a second signal kills nodes that do not stop (here: one that is SIGSTOPped).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stateledger_tests::binary;
use stateledger_tests::ports::free_base_port;

const READY: Duration = Duration::from_secs(60);
const STOPPED: Duration = Duration::from_secs(40);

/// A running `stateledger dev` in a temporary directory. Dropping it kills it and its nodes.
struct Dev {
    child: Child,
    nodes: Vec<u32>,
    dir: tempfile::TempDir,
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the ")" that closes the command name: state, then the parent's pid.
        let parent = stat
            .rfind(')')
            .and_then(|at| stat[at + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|at| stat[at + 2..].chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Polls `done` until it holds or `timeout` passes; returns whether it held.
fn until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Dev {
    /// Starts `stateledger dev` and waits until it says the cluster is running.
    fn start() -> Dev {
        let dir = tempfile::Builder::new()
            .prefix("stateledger-dev-")
            .tempdir()
            .expect("a temporary directory");
        let base = free_base_port(3);
        let mut child = Command::new(binary::stateledger())
            .args(["dev", "--base-port", &base.to_string(), "--dir"])
            .arg(dir.path().join("cluster"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("stateledger dev starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Reads stdout to its end, so dev never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut dev = Dev {
            child,
            nodes: Vec::new(),
            dir,
        };
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("nodes running") => break,
                Ok(_) => {}
                Err(e) => panic!("stateledger dev did not report a running cluster ({e})"),
            }
        }
        dev.nodes = children_of(dev.child.id());
        assert_eq!(dev.nodes.len(), 3, "dev runs three node processes");
        dev
    }

    fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        for &pid in &self.nodes {
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log(dir: &Path, node: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{node}.log"))).expect("the node log exists")
}

#[test]
fn a_normal_start_logs_no_warning_and_sigterm_stops_every_node() {
    let mut dev = Dev::start();
    for node in ["node-1", "node-2", "node-3"] {
        let text = log(&dev.cluster_dir(), node);
        assert!(
            !text.contains('\u{1b}'),
            "{node}.log has colour escapes:\n{text}"
        );
        // Except openraft's note that a first AppendEntries outlasted its timeout (the heartbeat
        // interval, 100 ms): it carries the membership entries and the new follower's first
        // syncs of both storages, which a loaded disk can stretch past 100 ms; openraft retries
        // and nothing is lost (seen once in six runs while the machine was busy).
        let text: String = text
            .lines()
            .filter(|l| !(l.contains("timeout after") && l.contains("when AppendEntries")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!text.contains("WARN"), "{node}.log has a warning:\n{text}");
        assert!(!text.contains("ERROR"), "{node}.log has an error:\n{text}");
        assert!(text.contains("node running"), "{node}.log:\n{text}");
    }

    signal(dev.child.id(), "TERM");
    let status = dev.wait_exit(STOPPED).expect("dev exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "a clean stop: {status}");
    let nodes = dev.nodes.clone();
    assert!(
        until(Duration::from_secs(5), || nodes.iter().all(|&p| !alive(p))),
        "node processes outlived stateledger dev: {:?}",
        nodes.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    let text = log(&dev.cluster_dir(), "node-2");
    assert!(text.contains("stopping"), "node-2 stopped cleanly:\n{text}");
}

#[test]
fn a_second_signal_kills_nodes_that_do_not_stop() {
    let mut dev = Dev::start();
    let stuck = dev.nodes[0];
    signal(stuck, "STOP");
    signal(dev.child.id(), "INT");
    let others: Vec<u32> = dev.nodes[1..].to_vec();
    assert!(
        until(STOPPED, || others.iter().all(|&p| !alive(p))),
        "the nodes that can stop did"
    );
    assert!(alive(stuck), "a stopped process does not act on SIGTERM");
    assert!(
        dev.child.try_wait().expect("try_wait").is_none(),
        "dev waits for its last node"
    );
    signal(dev.child.id(), "TERM");
    let status = dev
        .wait_exit(STOPPED)
        .expect("dev exits after the second signal");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        until(Duration::from_secs(5), || !alive(stuck)),
        "the second signal killed the stuck node"
    );
}
