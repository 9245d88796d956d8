//! `stateledger dev`: a local TLS cluster on loopback. On first run it generates a dev CA, node
//! certificates, checkpoint keys, an admin key and certificate, node configs, a trust policy and a
//! client profile in `--dir`; then it runs every node as a child process (`node run`) until
//! interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use stateledger_node::config::NodeConfig;

use super::profile::Profile;
use crate::{errln, outln};

pub const HELP: &str = "\
Examples:
  stateledger dev                                   # keep it running; use another shell:
  export STATELEDGER_PROFILE=stateledger-dev/client.toml
  stateledger cluster status
  stateledger dev --nodes 5 --dir /tmp/five --base-port 9100
  stateledger dev --init-only                       # write the material, start nothing

The nodes run as child processes, logging to <dir>/<node>.log. Ctrl-C or SIGTERM stops them
(SIGTERM, up to 30 s to finish); a second signal kills them; they never outlive this command.

Exit status:
  0  the cluster was stopped (or, with --init-only, the material written)
  2  it could not start: the directory cannot be written, a port is in use, a node exited";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Directory for keys, certificates, configs and data.
    #[arg(long, default_value = "stateledger-dev")]
    pub dir: PathBuf,
    /// Node i listens on base+i (public) and base+100+i (cluster).
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// The log's origin line.
    #[arg(long, default_value = "stateledger.dev/local")]
    pub origin: String,
    /// Only create the material and configs; do not start nodes.
    #[arg(long)]
    pub init_only: bool,
}

/// Creates the dev cluster material and client profile if `dir` has none. Returns the node
/// config paths.
pub fn ensure(
    dir: &Path,
    nodes: u64,
    base_port: u16,
    origin: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.join("ca.pem").exists() {
        let cluster = stateledger_node::dev::create(dir, nodes, base_port, origin)
            .map_err(anyhow::Error::msg)?;
        let mut endpoints = Vec::new();
        let mut cluster_endpoints = Vec::new();
        for path in &cluster.configs {
            let c = NodeConfig::load(path)?;
            endpoints.push(c.public_addr());
            cluster_endpoints.push(c.cluster_addr());
        }
        let profile = Profile {
            endpoints,
            cluster_endpoints,
            ca_cert: "ca.pem".into(),
            trust_policy: "trust_policy.json".into(),
            admin_cert: Some("admin.pem".into()),
            admin_key: Some("admin.key.pem".into()),
            admin_signing_key: Some("keys/admin.key".into()),
        };
        let text = format!(
            "# Client profile for the dev cluster in this directory (written by `stateledger dev`).\n{}",
            toml::to_string_pretty(&profile)?
        );
        std::fs::write(dir.join("client.toml"), text).context("cannot write client.toml")?;
    }
    let mut configs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("node-"))
        })
        .collect();
    configs.sort();
    if configs.is_empty() {
        bail!("{} has a CA but no node configs", dir.display());
    }
    Ok(configs)
}

/// Child node processes, killed (SIGKILL) when dropped.
pub struct Nodes {
    pub children: Vec<(String, Child)>,
}

impl Nodes {
    /// Sends `signal` to every node still running.
    fn signal(&mut self, signal: rustix::process::Signal) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let pid = i32::try_from(child.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, signal);
                }
            }
        }
    }

    /// Whether every node has exited (and been reaped).
    fn all_exited(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|(_, c)| !matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `node run` for each config, logging to `<dir>/<node>.log`. The nodes stop when this
/// process exits, however it exits ([`super::node::DEV_PARENT_ENV`]).
pub fn spawn(dir: &Path, configs: &[PathBuf]) -> anyhow::Result<Nodes> {
    let mut nodes = Nodes {
        children: Vec::new(),
    };
    spawn_into(&mut nodes, dir, configs)?;
    Ok(nodes)
}

fn spawn_into(nodes: &mut Nodes, dir: &Path, configs: &[PathBuf]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the stateledger executable")?;
    for config in configs {
        let name = config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("node")
            .to_string();
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .context("cannot create a log file")?;
        let child = Command::new(&exe)
            .args(["node", "run", "--config"])
            .arg(config)
            .env(super::node::DEV_PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        nodes.children.push((name, child));
    }
    Ok(())
}

/// Waits until every endpoint answers and a leader holds genesis.
pub async fn wait_ready(
    profile: &Profile,
    nodes: &mut Nodes,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_answering(profile, nodes, timeout, |s| {
        s.leader_id != 0 && !s.origin.is_empty()
    })
    .await
}

/// Waits until `ready` holds for the status of every endpoint of `profile` (each node's own
/// endpoint, even if not all of them are started: callers pass a profile of the started ones).
async fn wait_answering(
    profile: &Profile,
    nodes: &mut Nodes,
    timeout: Duration,
    ready: impl Fn(&stateledger_proto::v1::StatusResponse) -> bool,
) -> anyhow::Result<()> {
    let client = profile.client(Duration::from_secs(2))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for (name, child) in &mut nodes.children {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited with {status}; see its log");
            }
        }
        let mut answered = 0;
        for e in &profile.endpoints {
            if client.status(Some(e)).await.is_ok_and(|s| ready(&s)) {
                answered += 1;
            }
        }
        if answered == profile.endpoints.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the cluster was not ready within {timeout:?} ({answered} of {} nodes)",
                profile.endpoints.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the nodes: the ones that wait to be told their role first, then (once they listen)
/// the node that bootstraps the cluster, so its first election finds its peers up instead of
/// logging them as unreachable.
async fn start_nodes(dir: &Path, configs: &[PathBuf], profile: &Profile) -> anyhow::Result<Nodes> {
    let mut joiners = Vec::new();
    let mut bootstrap = Vec::new();
    let mut joiner_endpoints = Vec::new();
    for path in configs {
        let c = NodeConfig::load(path)?;
        if c.cluster.bootstrap {
            bootstrap.push(path.clone());
        } else {
            joiner_endpoints.push(c.public_addr());
            joiners.push(path.clone());
        }
    }
    let mut nodes = spawn(dir, &joiners)?;
    let listening = Profile {
        endpoints: joiner_endpoints,
        ..profile.clone()
    };
    if !listening.endpoints.is_empty() {
        wait_answering(&listening, &mut nodes, Duration::from_secs(60), |_| true).await?;
    }
    spawn_into(&mut nodes, dir, &bootstrap)?;
    Ok(nodes)
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal(
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// Stops the nodes: SIGTERM, then SIGKILL on a second signal or after [`STOP_GRACE`].
async fn stop(
    nodes: &mut Nodes,
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) {
    errln!(
        "stopping {} nodes (a second Ctrl-C or SIGTERM kills them)",
        nodes.children.len()
    );
    nodes.signal(rustix::process::Signal::TERM);
    let deadline = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(deadline);
    loop {
        if nodes.all_exited() {
            errln!("stopped");
            return;
        }
        tokio::select! {
            () = stop_signal(int, term) => break,
            () = &mut deadline => {
                errln!("the nodes did not stop within {STOP_GRACE:?}");
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    errln!("killing the nodes");
    nodes.signal(rustix::process::Signal::KILL);
}

/// How long the nodes get to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let configs = ensure(&args.dir, args.nodes, args.base_port, &args.origin)?;
    let profile_path = args.dir.join("client.toml");
    if args.init_only {
        outln!(
            "dev cluster material in {}; client profile {}",
            args.dir.display(),
            profile_path.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let profile = Profile::load(&profile_path)?;
    super::runtime()?.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut nodes = tokio::select! {
            n = start_nodes(&args.dir, &configs, &profile) => n?,
            () = stop_signal(&mut int, &mut term) => return Ok(ExitCode::SUCCESS),
        };
        tokio::select! {
            r = wait_ready(&profile, &mut nodes, Duration::from_secs(60)) => r?,
            () = stop_signal(&mut int, &mut term) => {
                stop(&mut nodes, &mut int, &mut term).await;
                return Ok(ExitCode::SUCCESS);
            }
        }
        // The banner is for a person; a closed stdout (a supervisor, `| head`) must not take
        // the cluster down with it.
        if let Err(e) = print_ready(&args, &configs, &profile, &profile_path) {
            if !super::output::is_broken_pipe(&e) {
                return Err(e);
            }
        }
        stop_signal(&mut int, &mut term).await;
        stop(&mut nodes, &mut int, &mut term).await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_ready(
    args: &Args,
    configs: &[PathBuf],
    profile: &Profile,
    profile_path: &Path,
) -> anyhow::Result<()> {
    outln!(
        "dev cluster of {} nodes running (TLS on loopback), data and logs in {}",
        configs.len(),
        args.dir.display()
    )?;
    outln!("  public endpoints:  {}", profile.endpoints.join(", "))?;
    outln!(
        "  cluster endpoints: {} (mutual TLS)",
        profile.cluster_endpoints.join(", ")
    )?;
    outln!("  trust policy:      {}", profile.trust_policy.display())?;
    outln!("use it from another shell (this one keeps the cluster running):")?;
    outln!("  export STATELEDGER_PROFILE={}", profile_path.display())?;
    outln!("  stateledger cluster status")?;
    outln!("  stateledger keygen --name my-writer --out keys && stateledger grant --system orders-service --writer keys/my-writer.pub")?;
    outln!("Ctrl-C (or SIGTERM) stops the cluster")
}
