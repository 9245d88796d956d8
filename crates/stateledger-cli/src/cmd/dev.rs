//! `stateledger dev`: a local TLS cluster on loopback. On first run it generates a dev CA, node
//! certificates, checkpoint keys, an admin key and certificate, node configs, a trust policy and a
//! client profile in `--dir`; then it runs every node as a child process (`node run`) until
//! interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use stateledger_node::config::NodeConfig;

use super::profile::Profile;

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

/// Child node processes, killed when dropped.
pub struct Nodes {
    pub children: Vec<(String, Child)>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `node run` for each config, logging to `<dir>/<node>.log`.
pub fn spawn(dir: &Path, configs: &[PathBuf]) -> anyhow::Result<Nodes> {
    let exe = std::env::current_exe().context("cannot find the stateledger executable")?;
    let mut nodes = Nodes {
        children: Vec::new(),
    };
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
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        nodes.children.push((name, child));
    }
    Ok(nodes)
}

/// Waits until every endpoint answers and a leader holds genesis.
pub async fn wait_ready(
    profile: &Profile,
    nodes: &mut Nodes,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = profile.client(Duration::from_secs(2))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for (name, child) in &mut nodes.children {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited with {status}; see its log");
            }
        }
        let mut ready = 0;
        for e in &profile.endpoints {
            if let Ok(s) = client.status(Some(e)).await {
                if s.leader_id != 0 && !s.origin.is_empty() {
                    ready += 1;
                }
            }
        }
        if ready == profile.endpoints.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the cluster was not ready within {timeout:?} ({ready} of {} nodes)",
                profile.endpoints.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let configs = ensure(&args.dir, args.nodes, args.base_port, &args.origin)?;
    let profile_path = args.dir.join("client.toml");
    if args.init_only {
        println!(
            "dev cluster material in {}; client profile {}",
            args.dir.display(),
            profile_path.display()
        );
        return Ok(());
    }
    let profile = Profile::load(&profile_path)?;
    let mut nodes = spawn(&args.dir, &configs)?;
    super::runtime()?.block_on(async {
        wait_ready(&profile, &mut nodes, Duration::from_secs(60)).await?;
        println!("dev cluster of {} nodes running (TLS on loopback), data and logs in {}", configs.len(), args.dir.display());
        println!("  public endpoints:  {}", profile.endpoints.join(", "));
        println!("  cluster endpoints: {} (mutual TLS)", profile.cluster_endpoints.join(", "));
        println!("  trust policy:      {}", profile.trust_policy.display());
        println!("use it from another shell:");
        println!("  export STATELEDGER_PROFILE={}", profile_path.display());
        println!("  stateledger cluster status");
        println!("  stateledger keygen --name my-writer --out keys && stateledger grant --system orders-service --writer keys/my-writer.pub");
        println!("Ctrl-C stops the cluster");
        let _ = tokio::signal::ctrl_c().await;
        anyhow::Ok(())
    })?;
    drop(nodes);
    Ok(())
}
