//! Step 4, environment: `environment/environment.json` (the record, what this machine is, and
//! what no tool can restore), `environment/flags.env` (feature flags as environment variables),
//! `environment/run.sh` (runs a command with the recorded flags and configuration after checking
//! the architecture and runtimes), and `environment/Dockerfile` when an image digest was recorded
//! and `--image-repo` says where to pull it from (a record holds the digest only, never a name).
//!
//! An environment is described, not rebuilt: the kernel, the hardware and the clock's discipline
//! belong to the machine, and the report says so instead of pretending.

use std::collections::BTreeMap;

use serde_json::json;
use stateledger_core::state::SystemState;

use super::config::shell_quote;
use super::out_dir::OutDir;
use super::report::{count, StepLog};

/// A feature flag's environment variable: `FEATURE_` and the name upper-cased, every character
/// other than a letter or digit as `_` (`checkout.new-flow` → `FEATURE_CHECKOUT_NEW_FLOW`).
pub fn flag_variable(name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FEATURE_{body}")
}

/// Longest `--image-repo`.
const IMAGE_REPO_BYTES_MAX: usize = 255;

/// `--image-repo`: a registry and repository as a container reference names them
/// (`registry.example:5000/team/orders`), without a tag or digest. Only ASCII letters, digits and
/// `.`, `_`, `-`, `/`, `:` — nothing that could end the Dockerfile's `FROM` line.
pub fn parse_image_repo(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > IMAGE_REPO_BYTES_MAX {
        return Err(format!(
            "give a registry and repository of 1 to {IMAGE_REPO_BYTES_MAX} bytes, e.g. registry.example/orders"
        ));
    }
    if text.contains('@') {
        return Err(format!(
            "{text:?} holds a digest: give the name only (registry.example/orders); the digest is the recorded one"
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')))
    {
        return Err(format!(
            "{text:?} holds {c:?}: a registry and repository are ASCII letters, digits, '.', '_', '-', '/' and ':' (e.g. registry.example/orders)"
        ));
    }
    Ok(text.to_string())
}

/// `environment/Dockerfile`: the recorded image, pinned by its digest, with the feature flags.
fn dockerfile(
    state: &SystemState,
    leaf_index: u64,
    image: &str,
    flags: &BTreeMap<String, (String, String)>,
) -> anyhow::Result<String> {
    let mut d = format!(
        "# The image recorded for {} (leaf {leaf_index}), pinned by its digest.\nFROM {image}\n",
        state.system
    );
    for (var, (_, value)) in flags {
        d.push_str(&format!("ENV {var}={}\n", serde_json::to_string(value)?));
    }
    Ok(d)
}

pub fn restore(
    state: &SystemState,
    out: &OutDir,
    image_repo: Option<&str>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<()> {
    let Some(env) = &state.environment else {
        log.summary = "no environment record up to T: nothing to describe".into();
        return Ok(());
    };
    let e = &env.value;
    let flags: BTreeMap<String, (String, String)> = e
        .feature_flags
        .iter()
        .map(|f| (flag_variable(&f.name), (f.name.clone(), f.value.clone())))
        .collect();
    let mut not_restorable = vec![json!({
        "what": "kernel",
        "recorded": e.kernel,
        "why": "the kernel is the machine's: boot a host or VM with this release",
    })];
    if let Some(ts) = &e.time_source {
        not_restorable.push(json!({
            "what": "time source",
            "recorded": format!("{} (synchronized: {}, max error {} ns)", ts.kind, ts.synchronized, ts.max_error_nanos),
            "why": "the clock's discipline and the hardware clock are the machine's",
        }));
    }
    if !e.hostname.is_empty() {
        not_restorable.push(json!({
            "what": "host name",
            "recorded": e.hostname,
            "why": "informational; set it on the host if the code reads it",
        }));
    }
    not_restorable.push(json!({
        "what": "hardware",
        "recorded": e.arch,
        "why": "only the CPU architecture is recorded and checked; CPU model, memory and devices are not",
    }));
    let doc = json!({
        "leaf_index": env.leaf_index,
        "recorded": e,
        "this_machine": {"os": std::env::consts::OS, "arch": std::env::consts::ARCH},
        "feature_flag_variables": flags.iter().map(|(var, (name, value))| json!({"name": name, "value": value, "variable": var})).collect::<Vec<_>>(),
        "container": (!e.container_image.is_empty()).then(|| e.container_image.clone()),
        "container_pull": pinned_image(&e.container_image, image_repo),
        "not_restorable": not_restorable,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    out.write("environment/environment.json", &bytes)?;
    let flags_env: String = flags
        .iter()
        .map(|(var, (_, value))| format!("{var}={value}\n"))
        .collect();
    out.write("environment/flags.env", flags_env.as_bytes())?;
    out.write("environment/run.sh", run_sh(state, &flags).as_bytes())?;
    make_executable(&out.join("environment/run.sh"))?;
    log.files.extend(
        [
            "environment/environment.json",
            "environment/flags.env",
            "environment/run.sh",
        ]
        .map(String::from),
    );
    match (pinned_image(&e.container_image, image_repo), image_repo) {
        (Some(image), _) => {
            let d = dockerfile(state, env.leaf_index, &image, &flags)?;
            out.write("environment/Dockerfile", d.as_bytes())?;
            log.files.push("environment/Dockerfile".into());
        }
        (None, None) if !e.container_image.is_empty() => log.note(format!(
            "the container image is recorded by its digest only ({}): give --image-repo with \
             the registry and repository that hold it for environment/Dockerfile, or pull it by \
             digest from there",
            e.container_image
        )),
        (None, Some(repo)) => log.note(format!(
            "--image-repo {repo} is not used: no container image was recorded for this environment"
        )),
        (None, None) => {}
    }
    if e.arch != std::env::consts::ARCH {
        log.note(format!(
            "recorded CPU architecture {}, this machine is {}: run.sh refuses to run here",
            e.arch,
            std::env::consts::ARCH
        ));
    }
    log.note(format!(
        "not restorable by a tool: kernel {}, the time source, the host name and the hardware (environment.json lists them)",
        if e.kernel.is_empty() { "(not recorded)" } else { &e.kernel }
    ));
    log.summary = format!(
        "{} {} on {}{}, {}, {} described in environment/ (run.sh runs a command with them)",
        e.os,
        e.kernel,
        e.arch,
        if e.container_image.is_empty() {
            String::new()
        } else {
            format!(", image {}", e.container_image)
        },
        count(e.runtimes.len(), "runtime"),
        count(e.feature_flags.len(), "feature flag")
    );
    Ok(())
}

/// The image to pull, pinned: `--image-repo` and the recorded digest (`NAME@sha256:…`).
fn pinned_image(digest: &str, image_repo: Option<&str>) -> Option<String> {
    match image_repo {
        Some(repo) if !digest.is_empty() => Some(format!("{repo}@{digest}")),
        _ => None,
    }
}

/// `environment/run.sh`: checks the architecture and the recorded runtimes, exports the feature
/// flags and the configuration's variables, then runs its arguments.
fn run_sh(state: &SystemState, flags: &BTreeMap<String, (String, String)>) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let Some(env) = &state.environment else {
        return s;
    };
    let e = &env.value;
    s.push_str(&format!(
        "# Runs a command in the environment recorded for {} (leaf {}), as far as a tool can\n\
         # restore it: same CPU architecture, the recorded runtimes on PATH (checked, not installed),\n\
         # the feature flags and the configuration's environment variables. Usage: run.sh CMD [ARGS...]\n\
         set -eu\nhere=$(cd \"$(dirname \"$0\")\" && pwd)\n",
        state.system, env.leaf_index
    ));
    s.push_str(&format!(
        "if [ \"$(uname -m)\" != {arch} ]; then\n  echo \"run.sh: recorded architecture {arch_text}, this machine is $(uname -m)\" >&2\n  exit 1\nfi\n",
        arch = shell_quote(&e.arch),
        arch_text = e.arch.replace(['"', '`', '$', '\\'], "")
    ));
    for r in &e.runtimes {
        s.push_str(&format!(
            "if ! command -v {name} >/dev/null 2>&1; then\n  echo \"run.sh: warning: runtime {name_text} {version_text} is not on PATH\" >&2\n\
             elif ! {name} --version 2>&1 | grep -qF -- {version}; then\n  echo \"run.sh: warning: {name_text} is not version {version_text}\" >&2\nfi\n",
            name = shell_quote(&r.name),
            version = shell_quote(&r.version),
            name_text = r.name.replace(['"', '`', '$', '\\'], ""),
            version_text = r.version.replace(['"', '`', '$', '\\'], ""),
        ));
    }
    for (var, (_, value)) in flags {
        s.push_str(&format!("export {var}={}\n", shell_quote(value)));
    }
    s.push_str("if [ -f \"$here/../config/env.sh\" ]; then . \"$here/../config/env.sh\"; fi\nexec \"$@\"\n");
    s
}

#[cfg(unix)]
fn make_executable(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_environment_variable_names() {
        assert_eq!(
            flag_variable("checkout.new-flow"),
            "FEATURE_CHECKOUT_NEW_FLOW"
        );
        assert_eq!(flag_variable("FAST_PATH"), "FEATURE_FAST_PATH");
    }

    #[test]
    fn image_repos_are_names_that_cannot_break_the_from_line() {
        for good in [
            "registry.example/orders",
            "registry.example:5000/team/orders-svc",
            "orders",
        ] {
            assert_eq!(parse_image_repo(good).as_deref(), Ok(good));
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        for bad in [
            String::new(),
            format!("registry.example/orders@{digest}"),
            "orders\nRUN rm -rf /".to_string(),
            "orders latest".to_string(),
            "x".repeat(IMAGE_REPO_BYTES_MAX + 1),
        ] {
            assert!(parse_image_repo(&bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            pinned_image(&digest, Some("registry.example/orders")),
            Some(format!("registry.example/orders@{digest}"))
        );
        assert_eq!(pinned_image("", Some("registry.example/orders")), None);
        assert_eq!(pinned_image(&digest, None), None);
    }
}
