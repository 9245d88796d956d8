//! The time source the system clock follows, read from `chronyc tracking` or `timedatectl show`.
//! Neither present (a container, a host without systemd): `unknown`, not synchronised.

use std::time::Duration;

use stateledger_core::record::pb;

use crate::command::Subprocess;

/// What `chronyc tracking` says: synchronised unless the leap status is "Not synchronised" or the
/// reference is none; the maximum error is the root dispersion plus half the root delay (chrony's
/// own bound on the clock's error).
pub fn parse_chronyc_tracking(text: &str) -> Option<pb::TimeSource> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let leap = field("Leap status")?;
    let reference = field("Reference ID").unwrap_or_default();
    let synchronized = leap != "Not synchronised" && !reference.starts_with("00000000");
    let seconds = |name: &str| -> Option<f64> {
        field(name)?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    let max_error_nanos = match (seconds("Root dispersion"), seconds("Root delay")) {
        (Some(dispersion), Some(delay)) if synchronized => {
            ((dispersion + delay / 2.0) * 1e9).round() as u64
        }
        _ => 0,
    };
    Some(pb::TimeSource {
        kind: "chrony".to_string(),
        synchronized,
        max_error_nanos,
    })
}

/// What `timedatectl show` says: `NTP=` (a network time service is enabled) and
/// `NTPSynchronized=`. Returns `(service enabled, synchronised)`.
pub fn parse_timedatectl_show(text: &str) -> Option<(bool, bool)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('=').map(str::trim))
    };
    let synchronized = field("NTPSynchronized")? == "yes";
    let enabled = field("NTP") == Some("yes");
    Some((enabled, synchronized))
}

fn run(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let out = Subprocess {
        program,
        args,
        cwd: None,
        envs: &[],
        timeout,
    }
    .run()
    .ok()?;
    out.ok_stdout().map(str::to_string)
}

/// Probes chrony, then systemd (`timedatectl`; the service is `systemd-timesyncd` when that unit
/// is active, else `ntp`; `none` when no time service is enabled). Falls back to `unknown`.
pub fn probe_time_source(timeout: Duration) -> pb::TimeSource {
    if let Some(ts) = run("chronyc", &["tracking"], timeout)
        .as_deref()
        .and_then(parse_chronyc_tracking)
    {
        return ts;
    }
    if let Some((enabled, synchronized)) = run("timedatectl", &["show"], timeout)
        .as_deref()
        .and_then(parse_timedatectl_show)
    {
        let timesyncd = run(
            "systemctl",
            &["is-active", "--quiet", "systemd-timesyncd"],
            timeout,
        )
        .is_some();
        let kind = match (enabled, timesyncd) {
            (_, true) => "systemd-timesyncd",
            (true, false) => "ntp",
            (false, false) => "none",
        };
        return pb::TimeSource {
            kind: kind.to_string(),
            synchronized,
            max_error_nanos: 0,
        };
    }
    pb::TimeSource {
        kind: "unknown".to_string(),
        synchronized: false,
        max_error_nanos: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHRONY_SYNCED: &str = "Reference ID    : A9FEA97B (169.254.169.123)
Stratum         : 4
Ref time (UTC)  : Wed Nov 25 21:00:00 2026
System time     : 0.000001234 seconds fast of NTP time
Last offset     : +0.000000512 seconds
RMS offset      : 0.000002000 seconds
Frequency       : 3.123 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.010 ppm
Root delay      : 0.000400000 seconds
Root dispersion : 0.000300000 seconds
Update interval : 16.0 seconds
Leap status     : Normal
";

    #[test]
    fn chrony_synchronised_with_error_bound() {
        assert_eq!(
            parse_chronyc_tracking(CHRONY_SYNCED),
            Some(pb::TimeSource {
                kind: "chrony".into(),
                synchronized: true,
                max_error_nanos: 500_000,
            })
        );
    }

    #[test]
    fn chrony_unsynchronised() {
        let text = "Reference ID    : 00000000 ()\nRoot delay      : 1.000000000 seconds\nRoot dispersion : 1.000000000 seconds\nLeap status     : Not synchronised\n";
        assert_eq!(
            parse_chronyc_tracking(text),
            Some(pb::TimeSource {
                kind: "chrony".into(),
                synchronized: false,
                max_error_nanos: 0,
            })
        );
        assert_eq!(parse_chronyc_tracking("506 Cannot talk to daemon"), None);
    }

    #[test]
    fn timedatectl() {
        let text = "Timezone=UTC\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=yes\nTimeUSec=Wed 2026-11-25\n";
        assert_eq!(parse_timedatectl_show(text), Some((true, true)));
        assert_eq!(
            parse_timedatectl_show("NTP=no\nNTPSynchronized=no\n"),
            Some((false, false))
        );
        assert_eq!(parse_timedatectl_show("Failed to connect to bus"), None);
    }

    #[test]
    fn probing_always_answers() {
        // Whatever this machine has, the answer is a valid time source.
        let ts = probe_time_source(Duration::from_secs(3));
        assert!(
            ["chrony", "systemd-timesyncd", "ntp", "none", "unknown"].contains(&ts.kind.as_str())
        );
    }
}
