//! Times on the command line: RFC 3339 ("2026-11-25T10:00:00Z"), nanoseconds since the Unix
//! epoch, or "now".

use anyhow::{bail, Context as _};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    if text == "now" {
        return Ok(super::submit::now_nanos());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .context("time in nanoseconds does not fit in 64 bits");
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
        format!("{text:?} is not RFC 3339 (e.g. 2026-11-25T10:00:00Z), nanoseconds, or \"now\"")
    })?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 || nanos > i128::from(u64::MAX) {
        bail!("{text:?} is outside the range of ledger time");
    }
    Ok(nanos as u64)
}

pub fn format_time(nanos: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| nanos.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(
            parse_time("1700000000000000000").expect("ns"),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").expect("rfc3339"),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(
            format_time(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
    }
}
