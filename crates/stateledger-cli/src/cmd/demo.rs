//! `stateledger demo`: the README's first command. Starts an embedded three-node cluster on
//! loopback (real Raft, TLS, sled files, fsync) in a temporary directory, records a realistic story
//! for `orders-service` — deploys, configuration changes, an environment change, mutations, a
//! seeded random decision, an incident — reconstructs S(T) at two times, verifies both state
//! proofs offline, shows that a tampered proof is rejected, and ends with an impossible
//! reconstruction and its reasons.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use stateledger_client::{ConnectOptions, LedgerClient};
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, Body};
use stateledger_core::state::StateProof;
use stateledger_core::trust::TrustPolicy;
use stateledger_node::config::NodeConfig;
use stateledger_node::node::{start, NodeHandle, NodeParts};

use std::collections::BTreeMap;

use base64::Engine as _;

use super::replay::{print_outcome, replay, ExampleState, Payloads, Reducer, ReplayEvent};
use super::report;
use super::submit::now_nanos;
use crate::outln;

pub const HELP: &str = "\
Examples:
  cargo run --release -p stateledger-cli -- demo
  stateledger demo --reports demo-reports/      # also the two HTML forensic reports
  stateledger demo --dir demo-cluster/          # keep the cluster's files

Exit status:
  0  the story ran and every proof checked as expected
  2  something did not (the message says what)";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep the cluster's files here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the HTML forensic reports of both reconstructions into this directory
    /// (report-t1.html, exact; report-t2.html, impossible), created if missing.
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
}

/// `sha256:<hex>` of a text (payloads and files that exist only in this story).
fn sha(text: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

fn free_base_port() -> u16 {
    loop {
        let base = 21_000 + (rand::random::<u16>() % 20_000);
        let free = (1..=3).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
        });
        if free {
            return base;
        }
    }
}

struct Story {
    system: &'static str,
    n: u64,
}

impl Story {
    fn record(&mut self, body: Body) -> pb::Record {
        self.n += 1;
        pb::Record {
            system: self.system.into(),
            scope: "prod/eu-west-1".into(),
            observed_at_unix_nanos: now_nanos(),
            body: Some(body),
        }
    }
}

fn code(version: &str, commit: char) -> Body {
    Body::Code(pb::CodeState {
        repo: "github.com/acme/orders-service".into(),
        commit: commit.to_string().repeat(40),
        dirty: false,
        reference: format!("refs/tags/{version}"),
        artifacts: vec![pb::Artifact {
            name: format!("registry.acme.example/orders-service:{version}"),
            digest: sha(&format!("image {version}")),
        }],
        lockfiles: vec![pb::Artifact {
            name: "Cargo.lock".into(),
            digest: sha(&format!("lock {version}")),
        }],
        required_config: vec![
            "env:ORDERS_DB_PASSWORD".into(),
            "env:ORDERS_DB_URL".into(),
            "file:/etc/orders/app.yaml".into(),
        ],
    })
}

fn config(version: &str, fast_path: bool) -> Body {
    let yaml = format!("pricing:\n  fast_path: {fast_path}\n  max_discount: 0.15\n");
    Body::Config(pb::ConfigSnapshot {
        version: version.into(),
        complete: true,
        entries: vec![
            pb::ConfigEntry {
                key: "env:ORDERS_DB_PASSWORD".into(),
                source: "env".into(),
                digest: format!("hmac-sha256:{}", &sha("password salt")[7..]),
                redacted: true,
                size: 24,
                ..Default::default()
            },
            pb::ConfigEntry {
                key: "env:ORDERS_DB_URL".into(),
                source: "env".into(),
                digest: sha("postgres://orders-db.internal:5432/orders"),
                value: "postgres://orders-db.internal:5432/orders".into(),
                size: 41,
                ..Default::default()
            },
            pb::ConfigEntry {
                key: "file:/etc/orders/app.yaml".into(),
                source: "file".into(),
                digest: sha(&yaml),
                size: yaml.len() as u64,
                ..Default::default()
            },
        ],
    })
}

fn environment(kernel: &str) -> Body {
    Body::Environment(pb::EnvironmentState {
        os: "linux".into(),
        kernel: kernel.into(),
        arch: "x86_64".into(),
        container_image: sha("base image"),
        runtimes: vec![pb::Runtime {
            name: "glibc".into(),
            version: "2.36".into(),
        }],
        feature_flags: vec![pb::FeatureFlag {
            name: "FAST_PATH".into(),
            value: "true".into(),
        }],
        time_source: Some(pb::TimeSource {
            kind: "chrony".into(),
            synchronized: true,
            max_error_nanos: 2_000_000,
        }),
        hostname: "orders-7f9c".into(),
    })
}

fn mutation(seq: u64, kind: &str, captures: &[&str]) -> Body {
    Body::Mutation(pb::Mutation {
        kind: kind.into(),
        id: format!("evt-{}", 91_800 + seq),
        source: "kafka:orders/3".into(),
        sequence: seq,
        origin: "checkout-api".into(),
        payload_digest: sha(&payload(seq)),
        external_ref: Some(pb::mutation::ExternalRef::Kafka(pb::KafkaRef {
            topic: "orders".into(),
            partition: 3,
            offset: 4_400 + seq,
        })),
        captures: captures.iter().map(|s| s.to_string()).collect(),
    })
}

/// The payload of mutation `seq` as the broker holds it.
fn payload(seq: u64) -> String {
    format!(
        "{{\"order\":\"o-{seq}\",\"amount_cents\":{}}}",
        1000 + 37 * seq
    )
}

fn unreachable_body<T>() -> anyhow::Result<T> {
    bail!("the demo built a capture record without a nondeterminism body")
}

async fn start_cluster(
    dir: &Path,
) -> anyhow::Result<(Vec<NodeHandle>, PathBuf, PathBuf, Vec<String>)> {
    let base = free_base_port();
    let cluster = stateledger_node::dev::create(dir, 3, base, "stateledger.demo/orders")
        .map_err(anyhow::Error::msg)?;
    let mut nodes = Vec::new();
    let mut endpoints = Vec::new();
    for path in &cluster.configs {
        let config = NodeConfig::load(path)?;
        endpoints.push(config.public_addr());
        let parts = NodeParts::load(config).map_err(anyhow::Error::msg)?;
        nodes.push(start(parts).await.context("a demo node did not start")?);
    }
    Ok((nodes, cluster.trust_policy, cluster.admin_key, endpoints))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let began = Instant::now();
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    super::runtime()?.block_on(async {
        outln!("== StateLedger demo: an embedded 3-node cluster (Raft over mutual TLS, sled, fsync) in {}", dir.display())?;
        let (nodes, trust_path, admin_key, endpoints) = start_cluster(&dir).await?;
        let result = story(&dir, &trust_path, &admin_key, endpoints, args.reports.as_deref()).await;
        for n in nodes {
            n.shutdown().await;
        }
        result
    })?;
    outln!("== demo finished in {:.1} s", began.elapsed().as_secs_f64())?;
    Ok(())
}

async fn story(
    dir: &Path,
    trust_path: &Path,
    admin_key: &Path,
    endpoints: Vec<String>,
    reports: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(dir) = reports {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (--reports)", dir.display()))?;
    }
    let policy = TrustPolicy::from_json(&std::fs::read(trust_path)?)?;
    let ca = std::fs::read_to_string(dir.join("ca.pem"))?;
    let client = LedgerClient::new(ConnectOptions::new(endpoints, ca), policy.clone())?;
    let admin = NoteSigner::parse(&std::fs::read_to_string(admin_key)?)?;
    let collector = NoteSigner::from_seed("orders-collector", &rand::random::<[u8; 32]>())?;
    let wait = Duration::from_secs(10);

    // Wait for the cluster to elect a leader and commit genesis.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = client.status(None).await {
            if s.leader_id != 0 && !s.origin.is_empty() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the demo cluster did not elect a leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut s = Story {
        system: "orders-service",
        n: 0,
    };
    let grant = s.record(Body::Policy(pb::Policy {
        change: Some(pb::policy::Change::Grant(pb::WriterGrant {
            writer_key: collector.verifier().key.to_bytes().to_vec(),
            writer_name: "orders-collector".into(),
        })),
    }));
    client
        .sign_and_submit(vec![grant], admin.signing_key())
        .await?;
    outln!("-- admin granted orders-collector the right to record orders-service")?;

    let key = collector.signing_key();
    let deploy = vec![
        s.record(code("v1.4.0", 'a')),
        s.record(config("cfg-17", true)),
        s.record(environment("6.1.0-18-amd64")),
    ];
    let r = client.sign_and_submit(deploy, key).await?;
    outln!("-- deploy v1.4.0: code, config cfg-17 (DB password redacted), environment recorded at leaves {}..={}", r[0].index, r[2].index)?;
    let (receipt, _) = client.receipt(r[0].index, wait).await?;
    let receipt_path = dir.join("receipt-deploy.json");
    std::fs::write(&receipt_path, serde_json::to_string_pretty(&receipt)?)?;
    receipt
        .verify(&policy)
        .context("the deploy receipt does not verify")?;
    outln!(
        "   receipt for leaf {} verified offline against a 2-of-3 trust policy ({})",
        r[0].index,
        receipt_path.display()
    )?;

    let seed = s.record(Body::Nondeterminism(pb::Nondeterminism {
        capture_id: "pricing-seed-7".into(),
        capture: Some(pb::nondeterminism::Capture::Seed(pb::RandomSeed {
            name: "discount-rng".into(),
            seed: vec![7, 7, 7, 7, 0x2a],
        })),
    }));
    let seed_body = match &seed.body {
        Some(Body::Nondeterminism(n)) => n.clone(),
        _ => unreachable_body()?,
    };
    let mut batch = vec![seed];
    // The application applies each mutation and declares its state digest after #5.
    let mut app = ExampleState::default();
    let mut digest = String::new();
    for seq in 1..=5 {
        let captures: &[&str] = if seq == 4 { &["pricing-seed-7"] } else { &[] };
        let body = mutation(
            seq,
            if seq == 4 {
                "discount_applied"
            } else {
                "order_created"
            },
            captures,
        );
        if let Body::Mutation(m) = &body {
            let mut caps = BTreeMap::new();
            if seq == 4 {
                caps.insert("pricing-seed-7".to_string(), seed_body.clone());
            }
            digest = app.apply(&ReplayEvent {
                index: seq as usize - 1,
                mutation: m.clone(),
                payload_base64: base64::engine::general_purpose::STANDARD.encode(payload(seq)),
                captures: caps,
            });
        }
        batch.push(s.record(body));
    }
    batch.push(s.record(Body::StateDigest(pb::StateDigest {
        source: "kafka:orders/3".into(),
        sequence: 5,
        digest,
        baseline: false,
    })));
    client.sign_and_submit(batch, key).await?;
    outln!("-- 5 order mutations from kafka orders/3, a seeded random discount (seed captured), the app's state digest")?;
    let t1 = now_nanos();

    let later = vec![
        s.record(config("cfg-18", false)),
        s.record(environment("6.1.0-21-amd64")),
        s.record(code("v1.4.1", 'b')),
        s.record(mutation(6, "order_created", &[])),
        s.record(mutation(7, "order_cancelled", &[])),
    ];
    client.sign_and_submit(later, key).await?;
    outln!("-- config cfg-18 (fast path off), kernel upgrade, deploy v1.4.1, 2 more mutations")?;
    let incident = vec![
        s.record(mutation(9, "order_created", &[])),
        s.record(mutation(10, "refund_issued", &["fx-rate-call-1"])),
    ];
    client.sign_and_submit(incident, key).await?;
    outln!("-- incident: mutation #8 never recorded; a refund used an FX-rate call that was not captured")?;
    let t2 = now_nanos();

    outln!("\n== reconstruct orders-service at T1 (after the first five mutations)")?;
    let (proof1, summary1) = client.state_proof("orders-service", t1, wait).await?;
    super::output::text(&report::text(&summary1, true))?;
    let proof1_path = dir.join("state-proof-t1.json");
    std::fs::write(&proof1_path, serde_json::to_string_pretty(&proof1)?)?;
    let reread: StateProof = serde_json::from_slice(&std::fs::read(&proof1_path)?)?;
    let verified = reread
        .verify(&policy)
        .context("the state proof for T1 does not verify offline")?;
    outln!(
        "   state proof verified offline ({}): {} leaves, digest {}",
        proof1_path.display(),
        reread.leaves.len(),
        verified.state_digest
    )?;
    if !summary1.verdict.is_exact() {
        bail!("the demo expected an exact reconstruction at T1");
    }
    if let Some(dir) = reports {
        let h = dir.join("report-t1.html");
        std::fs::write(&h, report::html(&proof1, &summary1)?)?;
        outln!("   forensic report with timeline: {}", h.display())?;
    }

    let payloads_path = dir.join("payloads.jsonl");
    let lines: Vec<String> = (1..=7u64)
        .map(|seq| serde_json::json!({"source": "kafka:orders/3", "sequence": seq, "payload": payload(seq)}).to_string())
        .collect();
    std::fs::write(&payloads_path, lines.join("\n") + "\n")?;
    let exe = std::env::current_exe().context("cannot find the stateledger executable")?;
    let reducer = Reducer::new(format!("'{}' example-reducer", exe.display()));
    let parsed = Payloads::parse(&std::fs::read_to_string(&payloads_path)?)?;
    let outcome = replay(&summary1.state, &parsed, &reducer)?;
    super::output::text("   ")?;
    print_outcome(&outcome)?;
    if outcome.divergence.is_some() {
        bail!("the demo's replay diverged");
    }
    let mut altered = lines.clone();
    altered[2] = serde_json::json!({"source": "kafka:orders/3", "sequence": 3, "payload": "{\"order\":\"o-3\",\"amount_cents\":1}"}).to_string();
    let outcome = replay(
        &summary1.state,
        &Payloads::parse(&altered.join("\n"))?,
        &reducer,
    )?;
    super::output::text("   with payload #3 altered in the broker: ")?;
    print_outcome(&outcome)?;

    let mut tampered = proof1.clone();
    tampered.leaves.remove(4);
    match tampered.verify(&policy) {
        Ok(_) => bail!("a tampered state proof verified"),
        Err(e) => outln!(
            "   the same proof with one leaf removed is rejected: [{}] {e}",
            e.check()
        )?,
    }

    outln!("\n== reconstruct orders-service at T2 (after the incident)")?;
    let (proof2, summary2) = client.state_proof("orders-service", t2, wait).await?;
    super::output::text(&report::text(&summary2, true))?;
    proof2
        .verify(&policy)
        .context("the state proof for T2 does not verify offline")?;
    if summary2.verdict.is_exact() {
        bail!("the demo expected an impossible reconstruction at T2");
    }
    if let Some(dir) = reports {
        let h = dir.join("report-t2.html");
        std::fs::write(&h, report::html(&proof2, &summary2)?)?;
        outln!("   forensic report with timeline: {}", h.display())?;
    }
    outln!("   (the proof itself verifies: the ledger proves exactly what was recorded, and says why it is not enough)")?;
    Ok(())
}
