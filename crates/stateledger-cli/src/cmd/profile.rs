//! Client profiles: where the cluster is and what to trust. `stateledger dev` writes one
//! (`client.toml` in its directory); `--profile` or `STATELEDGER_PROFILE` picks one.
//!
//! ```toml
//! endpoints = ["127.0.0.1:7101", "127.0.0.1:7102"]        # public ports
//! cluster_endpoints = ["127.0.0.1:7201", "127.0.0.1:7202"] # cluster ports (admin)
//! ca_cert = "ca.pem"
//! trust_policy = "trust_policy.json"
//! admin_cert = "admin.pem"           # optional: client certificate for the cluster port
//! admin_key = "admin.key.pem"
//! admin_signing_key = "keys/admin.key"  # optional: signs policy records (grants)
//! ```
//! Relative paths are relative to the profile's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use stateledger_client::admin::{AdminClient, AdminOptions};
use stateledger_client::{ConnectOptions, LedgerClient};
use stateledger_core::trust::TrustPolicy;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub cluster_endpoints: Vec<String>,
    pub ca_cert: PathBuf,
    pub trust_policy: PathBuf,
    #[serde(default)]
    pub admin_cert: Option<PathBuf>,
    #[serde(default)]
    pub admin_key: Option<PathBuf>,
    #[serde(default)]
    pub admin_signing_key: Option<PathBuf>,
}

/// The `--profile` option shared by commands that talk to a cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Client profile (TOML). Default: $STATELEDGER_PROFILE, else ./stateledger-dev/client.toml.
    #[arg(long, global = true)]
    pub profile: Option<PathBuf>,
}

impl ProfileArgs {
    pub fn path(&self) -> PathBuf {
        self.profile
            .clone()
            .or_else(|| std::env::var_os("STATELEDGER_PROFILE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("stateledger-dev/client.toml"))
    }

    pub fn load(&self) -> anyhow::Result<Profile> {
        Profile::load(&self.path())
    }
}

impl Profile {
    pub fn load(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read client profile {}; start a dev cluster with `stateledger dev` or pass --profile",
                path.display()
            )
        })?;
        let mut p: Profile = toml::from_str(&text)
            .with_context(|| format!("client profile {} is invalid", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in [&mut p.ca_cert, &mut p.trust_policy] {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        for f in [
            &mut p.admin_cert,
            &mut p.admin_key,
            &mut p.admin_signing_key,
        ]
        .into_iter()
        .flatten()
        {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if p.endpoints.is_empty() {
            bail!("client profile {} lists no endpoints", path.display());
        }
        Ok(p)
    }

    pub fn policy(&self) -> anyhow::Result<TrustPolicy> {
        let bytes = std::fs::read(&self.trust_policy)
            .with_context(|| format!("cannot read {}", self.trust_policy.display()))?;
        TrustPolicy::from_json(&bytes)
            .with_context(|| format!("invalid trust policy {}", self.trust_policy.display()))
    }

    pub fn client(&self, timeout: Duration) -> anyhow::Result<LedgerClient> {
        let ca = std::fs::read_to_string(&self.ca_cert)
            .with_context(|| format!("cannot read {}", self.ca_cert.display()))?;
        let mut options = ConnectOptions::new(self.endpoints.clone(), ca);
        options.timeout = timeout;
        Ok(LedgerClient::new(options, self.policy()?)?)
    }

    pub fn admin(&self, timeout: Duration) -> anyhow::Result<AdminClient> {
        let (Some(cert), Some(key)) = (&self.admin_cert, &self.admin_key) else {
            bail!("the profile has no admin_cert/admin_key: membership changes need a client certificate signed by the cluster CA");
        };
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        if self.cluster_endpoints.is_empty() {
            bail!("the profile lists no cluster_endpoints");
        }
        Ok(AdminClient::new(AdminOptions {
            endpoints: self.cluster_endpoints.clone(),
            ca_pem: read(&self.ca_cert)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            timeout,
        })?)
    }
}
