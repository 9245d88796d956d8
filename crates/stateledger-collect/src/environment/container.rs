//! Whether this process runs in a container, and the image digest when the deployment says it.
//!
//! A process cannot learn its image digest from inside the container on its own: the runtime does
//! not expose it. Deployments pass it in (an env var set at deploy time, e.g. from the pushed
//! image's digest); detection here only says whether a digest *should* be there.

use std::collections::BTreeMap;
use std::path::Path;

use crate::digest::parse_digest;

/// What the collector saw about containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDetection {
    pub in_container: bool,
    /// What gave it away, e.g. `/.dockerenv exists`, `/proc/self/cgroup mentions kubepods`.
    pub evidence: Vec<String>,
}

/// Words in `/proc/self/cgroup` that place a process in a container.
const CGROUP_MARKERS: &[&str] = &[
    "docker",
    "kubepods",
    "containerd",
    "libpod",
    "podman",
    "lxc",
    "crio",
];

/// Looks for container evidence under the file system root `root` (normally `/`) and in `env`:
/// `/.dockerenv`, `/run/.containerenv` (podman), container runtimes in `/proc/self/cgroup`, and the
/// `container` (systemd, podman) or `KUBERNETES_SERVICE_HOST` variables.
pub fn detect_container_in(root: &Path, env: &BTreeMap<String, String>) -> ContainerDetection {
    let mut evidence = Vec::new();
    for marker in [".dockerenv", "run/.containerenv"] {
        if root.join(marker).exists() {
            evidence.push(format!("/{marker} exists"));
        }
    }
    if let Ok(cgroup) = std::fs::read_to_string(root.join("proc/self/cgroup")) {
        if let Some(m) = CGROUP_MARKERS.iter().find(|m| cgroup.contains(*m)) {
            evidence.push(format!("/proc/self/cgroup mentions {m}"));
        }
    }
    if let Some(v) = env.get("container").filter(|v| !v.is_empty()) {
        evidence.push(format!("container={v}"));
    }
    if env.contains_key("KUBERNETES_SERVICE_HOST") {
        evidence.push("KUBERNETES_SERVICE_HOST is set".to_string());
    }
    ContainerDetection {
        in_container: !evidence.is_empty(),
        evidence,
    }
}

/// [`detect_container_in`] the real root and process environment.
pub fn detect_container() -> ContainerDetection {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    detect_container_in(Path::new("/"), &env)
}

/// An image digest as a deployment may give it: `sha256:<hex>` or a full reference
/// `registry/name@sha256:<hex>`. Returns the digest in the ledger's form.
pub fn parse_image_digest(text: &str) -> Result<String, String> {
    let digest = text.rsplit_once('@').map_or(text, |(_, d)| d);
    parse_digest(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_collected() {
        let root = tempfile::tempdir().expect("tempdir");
        let none = detect_container_in(root.path(), &BTreeMap::new());
        assert_eq!(none, ContainerDetection::default());

        std::fs::write(root.path().join(".dockerenv"), "").expect("write");
        std::fs::create_dir_all(root.path().join("proc/self")).expect("mkdir");
        std::fs::write(
            root.path().join("proc/self/cgroup"),
            "0::/kubepods/besteffort/pod1/abc\n",
        )
        .expect("write");
        let env = BTreeMap::from([("container".to_string(), "podman".to_string())]);
        let found = detect_container_in(root.path(), &env);
        assert!(found.in_container);
        assert_eq!(
            found.evidence,
            [
                "/.dockerenv exists",
                "/proc/self/cgroup mentions kubepods",
                "container=podman"
            ]
        );
    }

    #[test]
    fn image_digests() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_image_digest(&format!("registry.example/orders@sha256:{hex}")),
            Ok(format!("sha256:{hex}"))
        );
        assert_eq!(
            parse_image_digest(&format!("sha256:{}", hex.to_uppercase())),
            Ok(format!("sha256:{hex}"))
        );
        assert!(parse_image_digest("orders:latest").is_err());
    }
}
