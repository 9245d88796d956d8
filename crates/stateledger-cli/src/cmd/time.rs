//! Times on the command line: RFC 3339 ("2026-11-25T10:00:00Z"), nanoseconds since the Unix
//! epoch, or "now". [`parse_time`] is a clap value parser, so a bad time is reported once, with
//! the flag that carries it.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What a time flag accepts, for help texts and errors.
pub const TIME_FORMS: &str =
    "RFC 3339 (e.g. 2026-11-25T10:00:00Z), nanoseconds since the Unix epoch, or \"now\"";

pub fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(super::submit::now_nanos());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text} nanoseconds do not fit in 64 bits"));
    }
    // The time crate's errors repeat their message in their source chain: only the top one.
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not a time ({e}); write {TIME_FORMS}"))?;
    let nanos = t.unix_timestamp_nanos();
    if nanos < 0 || nanos > i128::from(u64::MAX) {
        return Err(format!(
            "{text:?} is outside the range of ledger time (1970 to 2554)"
        ));
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

    #[test]
    fn a_bad_time_is_explained_once() {
        let e = parse_time("2026-13-01T00:00:00Z").expect_err("month 13");
        assert_eq!(e.matches("month").count(), 1, "{e}");
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
