//! The time source the system clock follows. Probed in order: `chronyc tracking`, `timedatectl
//! show`, `ntpstat`, the kernel's NTP state as `ntptime` or `adjtimex --print` report it (both
//! read the `adjtimex` system call; this crate runs no unsafe code to call it itself), and
//! systemd-timesyncd's `/run/systemd/timesync/synchronized` marker. None answering (a container,
//! a minimal host): `unknown`, not synchronised — declare the source instead
//! (`EnvironmentCollector::time_source`, `stateledger collect env --time-source`).

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

/// The kernel's NTP state as `ntptime` prints it: the `ntp_adjtime()` status word (synchronised
/// unless STA_UNSYNC, 0x0040, is set) and its maximum error in microseconds.
pub fn parse_ntptime(text: &str) -> Option<pb::TimeSource> {
    let after_adjtime = &text[text.find("ntp_adjtime()")?..];
    let status = after_adjtime.lines().find_map(|l| {
        let hex = l.trim().strip_prefix("status 0x")?;
        u32::from_str_radix(hex.split_whitespace().next()?, 16).ok()
    })?;
    let max_error_us = after_adjtime.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("maximum error ")?;
        rest.split_whitespace().next()?.parse::<u64>().ok()
    });
    Some(kernel_ntp(status, max_error_us))
}

/// The kernel's NTP state as `adjtimex --print` prints it (`status: 8193`, `maxerror: 16000`).
pub fn parse_adjtimex_print(text: &str) -> Option<pb::TimeSource> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    let status = u32::try_from(field("status")?).ok()?;
    Some(kernel_ntp(status, field("maxerror")))
}

/// STA_UNSYNC: the kernel's clock is not synchronised.
const STA_UNSYNC: u32 = 0x0040;

fn kernel_ntp(status: u32, max_error_us: Option<u64>) -> pb::TimeSource {
    let synchronized = status & STA_UNSYNC == 0;
    pb::TimeSource {
        kind: "kernel-ntp".to_string(),
        synchronized,
        max_error_nanos: if synchronized {
            max_error_us.unwrap_or(0).saturating_mul(1000)
        } else {
            0
        },
    }
}

/// systemd-timesyncd creates this file once it has synchronised the clock.
const TIMESYNCD_MARKER: &str = "/run/systemd/timesync/synchronized";

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
    // ntpstat: exit status 0 synchronised, 1 not, 2 unknown (no daemon).
    if let Ok(out) = (Subprocess {
        program: "ntpstat",
        args: &[],
        cwd: None,
        envs: &[],
        timeout,
    })
    .run()
    {
        match out.status.code() {
            Some(0) | Some(1) => {
                return pb::TimeSource {
                    kind: "ntp".to_string(),
                    synchronized: out.status.code() == Some(0),
                    max_error_nanos: 0,
                }
            }
            _ => {}
        }
    }
    if let Some(ts) = run("ntptime", &[], timeout)
        .as_deref()
        .and_then(parse_ntptime)
        .or_else(|| {
            run("adjtimex", &["--print"], timeout)
                .as_deref()
                .and_then(parse_adjtimex_print)
        })
    {
        return ts;
    }
    if std::path::Path::new(TIMESYNCD_MARKER).exists() {
        return pb::TimeSource {
            kind: "systemd-timesyncd".to_string(),
            synchronized: true,
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
    fn kernel_ntp_state_from_ntptime_and_adjtimex() {
        let synced = "ntp_gettime() returns code 0 (OK)
  time ec5b1c32.5c1e3000  Wed, Nov 25 2026 21:00:00.360, (.360811),
  maximum error 16000 us, estimated error 0 us, TAI offset 37
ntp_adjtime() returns code 0 (OK)
  modes 0x0 (),
  offset 12.345 us, frequency -3.210 ppm, interval 1 s,
  maximum error 8000 us, estimated error 12 us,
  status 0x2001 (PLL,NANO),
  time constant 7, precision 0.001 us, tolerance 500 ppm,
";
        assert_eq!(
            parse_ntptime(synced),
            Some(pb::TimeSource {
                kind: "kernel-ntp".into(),
                synchronized: true,
                max_error_nanos: 8_000_000,
            })
        );
        let unsynced = synced.replace(
            "status 0x2001 (PLL,NANO)",
            "status 0x2041 (PLL,UNSYNC,NANO)",
        );
        assert_eq!(
            parse_ntptime(&unsynced).map(|t| t.synchronized),
            Some(false)
        );
        assert_eq!(parse_ntptime("ntptime: not found"), None);

        let print = "         mode: 0\n       offset: 0\n    frequency: 0\n     maxerror: 16000\n       status: 64\n";
        assert_eq!(
            parse_adjtimex_print(print),
            Some(pb::TimeSource {
                kind: "kernel-ntp".into(),
                synchronized: false,
                max_error_nanos: 0,
            })
        );
        let synced = print.replace("status: 64", "status: 8193");
        assert_eq!(
            parse_adjtimex_print(&synced).map(|t| (t.synchronized, t.max_error_nanos)),
            Some((true, 16_000_000))
        );
    }

    #[test]
    fn probing_always_answers() {
        // Whatever this machine has, the answer is a valid time source.
        let ts = probe_time_source(Duration::from_secs(3));
        assert!([
            "chrony",
            "systemd-timesyncd",
            "ntp",
            "kernel-ntp",
            "none",
            "unknown"
        ]
        .contains(&ts.kind.as_str()));
    }
}
