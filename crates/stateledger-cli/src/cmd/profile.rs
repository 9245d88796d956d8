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
//!
//! Every networked command also takes `--timeout` (or `STATELEDGER_TIMEOUT`): the whole wait for
//! the cluster, retries included. [`Connected::wait`] runs one such wait, shows on a terminal
//! what it is waiting for, and turns a failure into a message that says what was awaited, from
//! which endpoints, for how long, and what to try.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use stateledger_client::admin::{AdminClient, AdminOptions};
use stateledger_client::{ClientError, ConnectOptions, LedgerClient};
use stateledger_core::trust::TrustPolicy;

use super::progress;

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

/// The profile used when neither `--profile` nor `STATELEDGER_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "stateledger-dev/client.toml";

/// The options shared by commands that talk to a cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Client profile (TOML): the cluster's endpoints, CA certificate and trust policy.
    /// `stateledger dev` writes one; default ./stateledger-dev/client.toml.
    #[arg(long, global = true, env = "STATELEDGER_PROFILE", value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// How long to wait for the cluster, retries included, before giving up: e.g. 500ms, 10s, 2m.
    #[arg(
        long,
        global = true,
        env = "STATELEDGER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub timeout: Duration,
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 10s or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => {
            return Err(format!(
                "{text:?} has unit {unit:?}; use ms, s or m (e.g. 10s)"
            ))
        }
    };
    if d.is_zero() {
        return Err("a timeout of zero would give up before asking; give e.g. 10s".into());
    }
    Ok(d)
}

impl ProfileArgs {
    pub fn path(&self) -> PathBuf {
        self.profile
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PROFILE))
    }

    pub fn load(&self) -> anyhow::Result<Profile> {
        Profile::load(&self.path())
    }

    /// Loads the profile and makes a client that gives up after `--timeout`.
    pub fn connect(&self) -> anyhow::Result<Connected> {
        let profile = self.load()?;
        let client = profile.client(self.timeout)?;
        Ok(Connected {
            profile,
            client,
            timeout: self.timeout,
        })
    }
}

impl Profile {
    pub fn load(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read client profile {}; start a dev cluster with `stateledger dev`, or name a profile with --profile (or STATELEDGER_PROFILE)",
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

/// A client of the profile's cluster, and how long to wait for it.
#[derive(Debug)]
pub struct Connected {
    pub profile: Profile,
    pub client: LedgerClient,
    pub timeout: Duration,
}

impl Connected {
    /// How long a node may hold a request open waiting for something (a checkpoint, a leaf):
    /// most of `--timeout`, so the node answers "not yet" before the client gives up.
    pub fn server_wait(&self) -> Duration {
        self.timeout
            .saturating_sub((self.timeout / 5).max(Duration::from_millis(200)))
            .max(Duration::from_millis(100))
    }

    /// Runs one wait on the cluster (see the module comment). `what` completes "waiting for …",
    /// e.g. "a receipt for leaf 7".
    pub async fn wait<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> anyhow::Result<T> {
        let message = format!(
            "waiting for {what} from {}",
            self.profile.endpoints.join(", ")
        );
        // The client gives up at `timeout` on its own; the margin covers a call in flight.
        let limit = self.timeout + Duration::from_secs(2);
        match tokio::time::timeout(limit, progress::spinner_while(&message, call)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(explain(e, what, &self.profile.endpoints, self.timeout)),
            Err(_) => Err(explain(
                ClientError::Unavailable("no answer".into()),
                what,
                &self.profile.endpoints,
                self.timeout,
            )),
        }
    }
}

/// Turns a client error into a message that says what was awaited and what to try.
pub fn explain(
    e: ClientError,
    what: &str,
    endpoints: &[String],
    timeout: Duration,
) -> anyhow::Error {
    match e {
        ClientError::Unavailable(last) => anyhow::anyhow!(
            "no node answered within {} while waiting for {what} (endpoints {}; last error: {last}); \
             is the cluster running? `stateledger cluster status` shows each node; --timeout waits longer",
            humantime(timeout),
            endpoints.join(", ")
        ),
        ClientError::Rejected {
            code: tonic::Code::DeadlineExceeded,
            message,
        } => anyhow::anyhow!(
            "the cluster did not provide {what} within {}: {message}; --timeout waits longer",
            humantime(timeout)
        ),
        other => anyhow::Error::new(other).context(format!("while waiting for {what}")),
    }
}

/// `1.5s`, `10s`, `250ms`.
pub fn humantime(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10h")
            .expect_err("unit")
            .contains("ms, s or m"));
        assert!(parse_duration("soon").is_err());
        assert_eq!(humantime(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
    }
}
