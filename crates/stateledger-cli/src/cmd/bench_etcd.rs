//! The etcd side of `stateledger bench cluster --etcd`: a 3-member etcd cluster on loopback with
//! TLS (the same dev CA and certificates), and the same closed-loop load as 300-byte puts over
//! etcd's gRPC KV API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use stateledger_proto::etcdserverpb::kv_client::KvClient;
use stateledger_proto::etcdserverpb::PutRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::bench::{child_dir, closed_loop, print_result, results_of, LevelResult};

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn find_etcd() -> anyhow::Result<std::path::PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let p = Path::new(dir).join("etcd");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("etcd not found: install Debian's etcd-server (apt-get install -y etcd-server) or run without --etcd")
}

async fn channel(ca: &str, addr: &str) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("127.0.0.1");
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .connect_lazy())
}

pub fn run(
    dir: &Path,
    base: u16,
    levels: &[usize],
    seconds: u64,
    record_bytes: usize,
) -> anyhow::Result<Vec<LevelResult>> {
    let etcd = find_etcd()?;
    let client_port = |i: u16| base + 200 + i;
    let peer_port = |i: u16| base + 300 + i;
    let initial: Vec<String> = (1..=3)
        .map(|i| format!("e{i}=https://127.0.0.1:{}", peer_port(i)))
        .collect();
    let mut members = Members(Vec::new());
    for i in 1..=3u16 {
        let data = child_dir(dir, &format!("etcd-{i}"))?;
        let log = std::fs::File::create(dir.join(format!("etcd-{i}.log")))?;
        let cert = dir.join(format!("node-{i}.pem"));
        let key = dir.join(format!("node-{i}.key.pem"));
        let child = Command::new(&etcd)
            .arg("--name")
            .arg(format!("e{i}"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(format!("https://127.0.0.1:{}", client_port(i)))
            .arg("--advertise-client-urls")
            .arg(format!("https://127.0.0.1:{}", client_port(i)))
            .arg("--listen-peer-urls")
            .arg(format!("https://127.0.0.1:{}", peer_port(i)))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("https://127.0.0.1:{}", peer_port(i)))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg("stateledger-bench")
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .arg("--peer-cert-file")
            .arg(&cert)
            .arg("--peer-key-file")
            .arg(&key)
            .arg("--peer-trusted-ca-file")
            .arg(dir.join("ca.pem"))
            .arg("--peer-client-cert-auth")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", etcd.display()))?;
        members.0.push(child);
    }
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    let addrs: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", client_port(i)))
        .collect();
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        // Wait until the cluster commits a put.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut probe = KvClient::new(channel(&ca, &addrs[0]).await?);
        loop {
            let put = probe
                .put(PutRequest {
                    key: b"bench/ready".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                })
                .await;
            if put.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become ready within 60 s: {put:?} (see etcd-*.log in {})",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        crate::bench_say!(
            "\netcd {}: 3 members on loopback, TLS, same certificates, values {record_bytes} B",
            etcd.display()
        )?;
        let value = Arc::new(vec![b'x'; record_bytes]);
        let mut results = Vec::new();
        for &level in levels {
            let mut clients = Vec::new();
            for c in 0..level.clamp(1, 8) {
                clients.push(KvClient::new(channel(&ca, &addrs[c % addrs.len()]).await?));
            }
            let clients = Arc::new(clients);
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let value = value.clone();
            let (lat, errors, elapsed) = closed_loop(level, seconds, move |c| {
                let mut client = clients[c % clients.len()].clone();
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let value = value.clone();
                async move {
                    client
                        .put(PutRequest {
                            key: format!("bench/{c}/{n}").into_bytes(),
                            value: value.to_vec(),
                            ..Default::default()
                        })
                        .await
                        .is_ok()
                }
            })
            .await;
            let r = results_of(&lat, errors, elapsed, level);
            print_result("etcd", &r)?;
            results.push(r);
        }
        anyhow::Ok(results)
    })?;
    drop(members);
    Ok(results)
}
