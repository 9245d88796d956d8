//! The environment dimension: what the code ran on — OS, kernel release, CPU architecture, host
//! name, container image digest, language runtimes, feature flags and the time source.

mod container;
mod runtimes;
mod time_source;

use std::time::Duration;

use stateledger_core::limits::{LIST_ITEMS_MAX, TEXT_BYTES_MAX};
use stateledger_core::record::pb;

pub use container::{
    detect_container, detect_container_in, parse_image_digest, ContainerDetection,
};
pub use runtimes::{default_runtime_probes, parse_version, probe_runtimes, RuntimeProbe};
pub use time_source::{
    parse_adjtimex_print, parse_chronyc_tracking, parse_ntptime, parse_timedatectl_show,
    probe_time_source,
};

use crate::command::Subprocess;
use crate::limits::{RUNTIME_PROBE_TIMEOUT, TIME_SOURCE_PROBE_TIMEOUT};

/// Why the environment could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    #[error("invalid feature flag {text:?}: expected NAME=VALUE with a non-empty name")]
    InvalidFlag { text: String },
    #[error("feature flag {name:?} is given twice")]
    DuplicateFlag { name: String },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidText {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("container image digest from {from} is invalid ({value:?}): {reason}")]
    InvalidContainerDigest {
        from: String,
        value: String,
        reason: String,
    },
    #[error("running in a container ({}) but no image digest was given; pass it (e.g. from the deployed image's digest)", evidence.join(", "))]
    ContainerDigestUnknown { evidence: Vec<String> },
    #[error("{field} has {count} items, more than the limit of {max}")]
    TooManyItems {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

/// The environment and what the collector noticed on the way.
#[derive(Debug, Clone)]
pub struct EnvironmentCollection {
    pub state: pb::EnvironmentState,
    pub container: ContainerDetection,
    /// Things a person should know, e.g. "in a container but no image digest was given".
    pub warnings: Vec<String>,
}

/// Collects a [`pb::EnvironmentState`].
///
/// Probed: OS and CPU architecture (of this build of the collector, which runs natively), kernel
/// release and host name (`/proc/sys/kernel/*`, else `uname -r` / `hostname`), container evidence,
/// language runtimes ([`default_runtime_probes`]) and the time source ([`probe_time_source`]).
/// Given: feature flags, the container image digest (a value or the env var that holds it), extra
/// runtimes; every probe can be replaced by a given value.
#[derive(Debug, Clone)]
pub struct EnvironmentCollector {
    runtime_probes: Vec<RuntimeProbe>,
    runtimes: Vec<(String, String)>,
    flags: Vec<(String, String)>,
    container_image: Option<String>,
    container_image_env: Option<String>,
    require_container_digest: bool,
    time_source: Option<pb::TimeSource>,
    hostname: Option<String>,
    probe_timeout: Duration,
}

impl Default for EnvironmentCollector {
    fn default() -> Self {
        EnvironmentCollector {
            runtime_probes: default_runtime_probes(),
            runtimes: Vec::new(),
            flags: Vec::new(),
            container_image: None,
            container_image_env: None,
            require_container_digest: false,
            time_source: None,
            hostname: None,
            probe_timeout: RUNTIME_PROBE_TIMEOUT,
        }
    }
}

impl EnvironmentCollector {
    pub fn new() -> Self {
        EnvironmentCollector::default()
    }

    /// A feature flag in effect. Flags are recorded sorted by name; a name given twice is an error.
    pub fn flag(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.flags.push((name.into(), value.into()));
        self
    }

    /// The container image digest (`sha256:...` or `registry/name@sha256:...`).
    pub fn container_image(mut self, digest: impl Into<String>) -> Self {
        self.container_image = Some(digest.into());
        self
    }

    /// The environment variable that holds the container image digest, if set.
    pub fn container_image_env(mut self, name: impl Into<String>) -> Self {
        self.container_image_env = Some(name.into());
        self
    }

    /// Fail instead of warning when running in a container without an image digest.
    pub fn require_container_digest(mut self, require: bool) -> Self {
        self.require_container_digest = require;
        self
    }

    /// Replaces the runtime probes (an empty list probes nothing).
    pub fn runtime_probes(mut self, probes: Vec<RuntimeProbe>) -> Self {
        self.runtime_probes = probes;
        self
    }

    /// A runtime given explicitly (e.g. `jvm`, `21.0.2`); it replaces a probed one of the same name.
    pub fn runtime(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.runtimes.push((name.into(), version.into()));
        self
    }

    /// The time source, instead of probing it.
    pub fn time_source(mut self, time_source: pb::TimeSource) -> Self {
        self.time_source = Some(time_source);
        self
    }

    /// The host name, instead of reading it.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// How long each probe may take.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    pub fn collect(&self) -> Result<EnvironmentCollection, EnvironmentError> {
        let mut warnings = Vec::new();
        let feature_flags = self.feature_flags()?;

        let container = detect_container();
        let mut image = match &self.container_image {
            Some(d) => Some(image_digest("the given value", d)?),
            None => None,
        };
        if let (None, Some(var)) = (&image, &self.container_image_env) {
            if let Ok(value) = std::env::var(var) {
                image = Some(image_digest(&format!("${var}"), &value)?);
            }
        }
        if container.in_container && image.is_none() {
            if self.require_container_digest {
                return Err(EnvironmentError::ContainerDigestUnknown {
                    evidence: container.evidence.clone(),
                });
            }
            warnings.push(format!(
                "running in a container ({}) but no image digest was given",
                container.evidence.join(", ")
            ));
        }

        let mut runtimes = probe_runtimes(&self.runtime_probes, self.probe_timeout);
        for (name, version) in &self.runtimes {
            check_text("runtime name", name, true)?;
            check_text("runtime version", version, false)?;
            runtimes.retain(|r| &r.name != name);
            runtimes.push(pb::Runtime {
                name: name.clone(),
                version: version.clone(),
            });
        }
        runtimes.sort_by(|a, b| a.name.cmp(&b.name));
        check_count("runtimes", runtimes.len())?;

        let time_source = match &self.time_source {
            Some(t) => {
                check_text("time source kind", &t.kind, true)?;
                t.clone()
            }
            None => probe_time_source(TIME_SOURCE_PROBE_TIMEOUT.min(self.probe_timeout)),
        };
        let hostname = match &self.hostname {
            Some(h) => {
                check_text("hostname", h, false)?;
                h.clone()
            }
            None => read_hostname(),
        };

        Ok(EnvironmentCollection {
            state: pb::EnvironmentState {
                os: std::env::consts::OS.to_string(),
                kernel: read_kernel_release(),
                arch: std::env::consts::ARCH.to_string(),
                container_image: image.unwrap_or_default(),
                runtimes,
                feature_flags,
                time_source: Some(time_source),
                hostname,
            },
            container,
            warnings,
        })
    }

    fn feature_flags(&self) -> Result<Vec<pb::FeatureFlag>, EnvironmentError> {
        let mut flags = Vec::with_capacity(self.flags.len());
        for (name, value) in &self.flags {
            if name.is_empty() {
                return Err(EnvironmentError::InvalidFlag {
                    text: format!("{name}={value}"),
                });
            }
            check_text("feature flag name", name, true)?;
            check_text("feature flag value", value, false)?;
            flags.push(pb::FeatureFlag {
                name: name.clone(),
                value: value.clone(),
            });
        }
        flags.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = flags.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(EnvironmentError::DuplicateFlag {
                name: w[0].name.clone(),
            });
        }
        check_count("feature_flags", flags.len())?;
        Ok(flags)
    }
}

/// Parses `NAME=VALUE` (the value may be empty or contain `=`).
pub fn parse_flag(text: &str) -> Result<(String, String), EnvironmentError> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(EnvironmentError::InvalidFlag {
            text: text.to_string(),
        }),
    }
}

fn image_digest(from: &str, value: &str) -> Result<String, EnvironmentError> {
    parse_image_digest(value).map_err(|reason| EnvironmentError::InvalidContainerDigest {
        from: from.to_string(),
        value: value.to_string(),
        reason,
    })
}

fn check_text(field: &'static str, value: &str, required: bool) -> Result<(), EnvironmentError> {
    let reason = if required && value.is_empty() {
        "it is empty".to_string()
    } else if value.len() > TEXT_BYTES_MAX {
        format!("longer than {TEXT_BYTES_MAX} bytes")
    } else if value.chars().any(char::is_control) {
        "it contains control characters".to_string()
    } else {
        return Ok(());
    };
    Err(EnvironmentError::InvalidText {
        field,
        value: value.chars().take(80).collect(),
        reason,
    })
}

fn check_count(field: &'static str, count: usize) -> Result<(), EnvironmentError> {
    if count > LIST_ITEMS_MAX {
        return Err(EnvironmentError::TooManyItems {
            field,
            count,
            max: LIST_ITEMS_MAX,
        });
    }
    Ok(())
}

/// A one-line value safe for a record text field, or empty.
fn clean(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() > TEXT_BYTES_MAX || line.chars().any(char::is_control) {
        return String::new();
    }
    line.to_string()
}

fn first_of(file: &str, program: &str, args: &[&str]) -> String {
    if let Ok(text) = std::fs::read_to_string(file) {
        let text = clean(&text);
        if !text.is_empty() {
            return text;
        }
    }
    Subprocess {
        program,
        args,
        cwd: None,
        envs: &[],
        timeout: TIME_SOURCE_PROBE_TIMEOUT,
    }
    .run()
    .ok()
    .and_then(|out| out.ok_stdout().map(clean))
    .unwrap_or_default()
}

fn read_kernel_release() -> String {
    first_of("/proc/sys/kernel/osrelease", "uname", &["-r"])
}

fn read_hostname() -> String {
    first_of("/proc/sys/kernel/hostname", "hostname", &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, RecordMeta};

    fn quick() -> EnvironmentCollector {
        EnvironmentCollector::new()
            .runtime_probes(Vec::new())
            .time_source(pb::TimeSource {
                kind: "chrony".into(),
                synchronized: true,
                max_error_nanos: 1000,
            })
    }

    #[test]
    fn this_machine_is_described_and_the_record_validates() {
        // A generous timeout: a loaded CI machine must not turn a slow shim into "absent".
        let out = EnvironmentCollector::new()
            .probe_timeout(Duration::from_secs(30))
            .collect()
            .expect("collects");
        let s = &out.state;
        assert_eq!(s.os, std::env::consts::OS);
        assert_eq!(s.arch, std::env::consts::ARCH);
        if cfg!(target_os = "linux") {
            assert!(!s.kernel.is_empty());
        }
        assert!(s.time_source.is_some());
        assert!(s.runtimes.windows(2).all(|w| w[0].name < w[1].name));
        if std::process::Command::new("sh")
            .args(["-c", "command -v python3"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            // python3 on PATH may still be a shim that fails; if it answers, it is listed.
            let answers = std::process::Command::new("python3")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            assert_eq!(answers, s.runtimes.iter().any(|r| r.name == "python"));
        }
        assert_eq!(
            out.container.in_container && s.container_image.is_empty(),
            !out.warnings.is_empty()
        );
        RecordMeta::new("orders-service", "", 1)
            .record(Body::Environment(s.clone()))
            .expect("environment record validates");
    }

    #[test]
    fn flags_are_sorted_and_unique() {
        let out = quick()
            .flag("FAST_PATH", "true")
            .flag("BETA_UI", "off")
            .collect()
            .expect("ok");
        let flags: Vec<(&str, &str)> = out
            .state
            .feature_flags
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(flags, [("BETA_UI", "off"), ("FAST_PATH", "true")]);
        RecordMeta::new("orders", "", 1)
            .record(Body::Environment(out.state))
            .expect("validates");

        assert_eq!(
            quick().flag("A", "1").flag("A", "2").collect().err(),
            Some(EnvironmentError::DuplicateFlag { name: "A".into() })
        );
        assert_eq!(
            parse_flag("RATE=a=b"),
            Ok(("RATE".to_string(), "a=b".to_string()))
        );
        assert!(parse_flag("=1").is_err());
        assert!(parse_flag("NOVALUE").is_err());
        assert!(matches!(
            quick().flag("X", "a\nb").collect(),
            Err(EnvironmentError::InvalidText {
                field: "feature flag value",
                ..
            })
        ));
    }

    #[test]
    fn container_digest_is_taken_and_checked() {
        let hex = "cd".repeat(32);
        let out = quick()
            .container_image(format!("registry.example/orders@sha256:{hex}"))
            .collect()
            .expect("ok");
        assert_eq!(out.state.container_image, format!("sha256:{hex}"));
        assert!(out.warnings.is_empty());

        assert!(matches!(
            quick().container_image("orders:latest").collect(),
            Err(EnvironmentError::InvalidContainerDigest { .. })
        ));

        // From an env var: read and checked (PATH is set and is no digest); an unset one gives none.
        assert!(matches!(
            quick().container_image_env("PATH").collect(),
            Err(EnvironmentError::InvalidContainerDigest { from, .. }) if from == "$PATH"
        ));
        let out = quick()
            .container_image_env("STATELEDGER_TEST_UNSET_IMAGE_DIGEST")
            .collect()
            .expect("ok");
        assert_eq!(out.state.container_image, "");
        assert_eq!(out.container.in_container, !out.warnings.is_empty());
        if out.container.in_container {
            assert!(matches!(
                quick().require_container_digest(true).collect(),
                Err(EnvironmentError::ContainerDigestUnknown { .. })
            ));
        }
    }

    #[test]
    fn given_runtimes_replace_probed_ones() {
        let out = quick()
            .runtime_probes(vec![RuntimeProbe::new("shell", "sh", &["-c", "echo 1.0"])])
            .runtime("shell", "2.0-custom")
            .runtime("jvm", "21")
            .collect()
            .expect("ok");
        let runtimes: Vec<(&str, &str)> = out
            .state
            .runtimes
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(runtimes, [("jvm", "21"), ("shell", "2.0-custom")]);
    }
}
