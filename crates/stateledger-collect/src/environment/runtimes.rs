//! Language runtimes present on the machine, found by asking each for its version with a short
//! timeout. A runtime that is not installed, fails or hangs is simply not listed.

use std::time::Duration;

use stateledger_core::record::pb;

use crate::command::Subprocess;

/// How to ask one runtime for its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeProbe {
    /// The name recorded, e.g. `python`.
    pub name: String,
    /// The program run, e.g. `python3`.
    pub program: String,
    pub args: Vec<String>,
}

impl RuntimeProbe {
    pub fn new(name: &str, program: &str, args: &[&str]) -> Self {
        RuntimeProbe {
            name: name.to_string(),
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// The runtimes probed by default: python, node, java, go, rust, ruby, dotnet, php, perl, deno,
/// bun, erlang, elixir.
pub fn default_runtime_probes() -> Vec<RuntimeProbe> {
    vec![
        RuntimeProbe::new("python", "python3", &["--version"]),
        RuntimeProbe::new("node", "node", &["--version"]),
        RuntimeProbe::new("java", "java", &["-version"]),
        RuntimeProbe::new("go", "go", &["version"]),
        RuntimeProbe::new("rust", "rustc", &["--version"]),
        RuntimeProbe::new("ruby", "ruby", &["--version"]),
        RuntimeProbe::new("dotnet", "dotnet", &["--version"]),
        RuntimeProbe::new("php", "php", &["--version"]),
        RuntimeProbe::new("perl", "perl", &["-e", "print $^V"]),
        RuntimeProbe::new("deno", "deno", &["--version"]),
        RuntimeProbe::new("bun", "bun", &["--version"]),
        RuntimeProbe::new(
            "erlang",
            "erl",
            &[
                "-noshell",
                "-eval",
                "io:format(\"~s\", [erlang:system_info(otp_release)]), halt().",
            ],
        ),
        RuntimeProbe::new("elixir", "elixir", &["--short-version"]),
    ]
}

/// The first version number in a `--version` output: `Python 3.11.7` → `3.11.7`,
/// `openjdk version "17.0.8" 2023-07-18` → `17.0.8`, `go version go1.22.1 linux/amd64` →
/// `1.22.1`, `v20.11.0` → `20.11.0`. At most 64 characters.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == '(')
        .map(|t| {
            t.strip_prefix("go")
                .or_else(|| t.strip_prefix('v'))
                .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or(t)
        })
        .find(|t| {
            t.starts_with(|c: char| c.is_ascii_digit())
                && (t.contains('.') || t.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|t| {
            t.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._+-".contains(*c))
                .take(64)
                .collect()
        })
}

/// Runs every probe (in parallel, each bounded by `timeout`) and lists the runtimes that answered,
/// sorted by name. A runtime that answers without a recognisable version is listed without one.
pub fn probe_runtimes(probes: &[RuntimeProbe], timeout: Duration) -> Vec<pb::Runtime> {
    let mut found: Vec<pb::Runtime> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|p| scope.spawn(move || probe(p, timeout)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.dedup_by(|a, b| a.name == b.name);
    found
}

fn probe(p: &RuntimeProbe, timeout: Duration) -> Option<pb::Runtime> {
    let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
    let out = Subprocess {
        program: &p.program,
        args: &args,
        cwd: None,
        envs: &[],
        timeout,
    }
    .run()
    .ok()?;
    if !out.status.success() {
        return None; // e.g. a version-manager shim with no version selected
    }
    // Some runtimes (java) print their version on stderr.
    let version = parse_version(&out.stdout)
        .or_else(|| parse_version(&out.stderr))
        .unwrap_or_default();
    Some(pb::Runtime {
        name: p.name.clone(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_outputs() {
        let cases = [
            ("Python 3.11.7", "3.11.7"),
            ("v20.20.2", "20.20.2"),
            (
                "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment",
                "17.0.15",
            ),
            ("go version go1.22.1 linux/amd64", "1.22.1"),
            ("rustc 1.95.0 (59807616e 2026-04-14)", "1.95.0"),
            (
                "ruby 3.2.2 (2023-03-30 revision e51014f9c0) [x86_64-linux]",
                "3.2.2",
            ),
            ("8.0.100", "8.0.100"),
            ("PHP 8.2.7 (cli) (built: Jun  9 2023)", "8.2.7"),
            ("v5.36.0", "5.36.0"),
            ("deno 1.40.2 (release, x86_64-unknown-linux-gnu)", "1.40.2"),
            ("26", "26"),
        ];
        for (output, version) in cases {
            assert_eq!(parse_version(output).as_deref(), Some(version), "{output}");
        }
        assert_eq!(parse_version("no version here"), None);
    }

    #[test]
    fn absent_failing_and_present_runtimes() {
        let probes = [
            RuntimeProbe::new("ghost", "stateledger-no-such-runtime", &["--version"]),
            RuntimeProbe::new("failing", "sh", &["-c", "echo 9.9.9; exit 1"]),
            RuntimeProbe::new("shell", "sh", &["-c", "echo 'fake 1.2.3' >&2"]),
            RuntimeProbe::new("hung", "sleep", &["30"]),
        ];
        let started = std::time::Instant::now();
        let found = probe_runtimes(&probes, Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            found,
            [pb::Runtime {
                name: "shell".into(),
                version: "1.2.3".into()
            }]
        );
    }
}
