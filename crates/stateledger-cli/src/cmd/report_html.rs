//! The HTML forensic report of a verified state proof: the verdict, the blocking reasons and the
//! warnings apart (each with its confidence weight), a timeline with one lane per dimension and
//! every record of the system up to T labelled in place, the gaps and the undeclared
//! nondeterminism marked where they happen, and a table of every record — superseded ones
//! marked. Layout is computed here (one column per record, so records close in time never
//! overlap); `report.html` only draws it. No script, no external resource: it prints to PDF as
//! it shows.

use anyhow::Context as _;
use serde::Serialize;
use stateledger_core::leaf::Leaf;
use stateledger_core::record::{decode_record, pb, Body, Dimension};
use stateledger_core::state::{Finding, Severity, StateProof, StateProofSummary};

use super::time::format_time;

const TEMPLATE: &str = include_str!("report.html");

/// The lanes, top to bottom.
const LANES: [&str; 7] = [
    "code",
    "config",
    "environment",
    "mutation",
    "nondeterminism",
    "state_digest",
    "policy",
];
/// Most records drawn on the timeline (the table lists them all).
const TIMELINE_RECORDS_MAX: usize = 400;
/// Longest label drawn under a dot (the full text is its tooltip and in the table).
const LABEL_CHARS_MAX: usize = 12;

const LEFT: u32 = 140;
const COLUMN: u32 = 64;
const LANE: u32 = 58;
const TOP: u32 = 8;
const AXIS: u32 = 44;

/// One record of the system up to T, as the table and the timeline show it.
#[derive(Debug, Serialize)]
struct Row {
    leaf_index: u64,
    time: String,
    lane: &'static str,
    /// What the timeline writes under the dot.
    label: String,
    /// What the record is, in full.
    text: String,
    /// "current", "superseded" (a later record of the same dimension replaced it), or "" for
    /// dimensions that accumulate (mutations, captures, state digests, grants).
    status: &'static str,
    superseded_by: Option<u64>,
    /// Findings about this record: "rule: text".
    notes: Vec<String>,
    /// "impossible", "warning" or "" (the worst finding about it).
    severity: &'static str,
}

#[derive(Debug, Serialize)]
struct Dot {
    x: u32,
    y: u32,
    label_y: u32,
    lane: &'static str,
    leaf_index: u64,
    label: String,
    title: String,
    superseded: bool,
    severity: &'static str,
}

/// A finding drawn on the timeline where it happens (a gap, an undeclared capture, ...).
#[derive(Debug, Serialize)]
struct Mark {
    x: u32,
    y: u32,
    label_y: u32,
    kind: &'static str,
    rule: &'static str,
    label: String,
    title: String,
}

#[derive(Debug, Serialize)]
struct LaneView {
    name: &'static str,
    y: u32,
    mid: u32,
    /// "MISSING" for code, config or environment without a record.
    note: &'static str,
}

#[derive(Debug, Serialize)]
struct Tick {
    x: u32,
    text: String,
}

#[derive(Debug, Serialize)]
struct FindingView {
    rule: &'static str,
    weight: u32,
    text: String,
}

fn short(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS_MAX {
        return text.to_string();
    }
    let mut s: String = text.chars().take(LABEL_CHARS_MAX - 1).collect();
    s.push('…');
    s
}

/// (label under the dot, full description) of a record.
fn describe(body: &Body) -> (String, String) {
    match body {
        Body::Code(c) => {
            let version = c
                .reference
                .rsplit('/')
                .next()
                .filter(|r| !r.is_empty())
                .unwrap_or(&c.commit[..c.commit.len().min(8)]);
            (
                version.to_string(),
                format!(
                    "{} @ {}{}",
                    c.repo,
                    c.commit,
                    if c.dirty { " (dirty)" } else { "" }
                ),
            )
        }
        Body::Config(c) => (
            c.version.clone(),
            format!(
                "version {} ({} entries, {} redacted)",
                c.version,
                c.entries.len(),
                c.entries.iter().filter(|e| e.redacted).count()
            ),
        ),
        Body::Environment(e) => (
            e.kernel.clone(),
            format!("{} {} {}", e.os, e.kernel, e.arch),
        ),
        Body::Mutation(m) => (
            format!("#{}", m.sequence),
            format!("{} {} {}#{}", m.kind, m.id, m.source, m.sequence),
        ),
        Body::Nondeterminism(n) => (n.capture_id.clone(), format!("capture {}", n.capture_id)),
        Body::StateDigest(d) => (
            format!("@#{}", d.sequence),
            format!("{}#{} = {}", d.source, d.sequence, d.digest),
        ),
        Body::Policy(p) => match &p.change {
            Some(pb::policy::Change::Grant(g)) => (
                format!("+{}", g.writer_name),
                format!("grant to {}", g.writer_name),
            ),
            Some(pb::policy::Change::Revoke(g)) => (
                format!("−{}", g.writer_name),
                format!("revoke {}", g.writer_name),
            ),
            None => ("policy".into(), "policy".into()),
        },
    }
}

/// The leaves a finding is about.
fn leaves_of(f: &Finding) -> Vec<u64> {
    match f {
        Finding::MissingDimension { .. } => Vec::new(),
        Finding::MutationGap { leaf_index, .. }
        | Finding::MutationOrder { leaf_index, .. }
        | Finding::UndeclaredNondeterminism { leaf_index, .. }
        | Finding::DirtyCode { leaf_index }
        | Finding::ClockUnsynchronized { leaf_index, .. }
        | Finding::ObservedTimeRegression { leaf_index, .. }
        | Finding::StateDigestAhead { leaf_index, .. } => vec![*leaf_index],
        Finding::ConflictingCapture { leaf_indexes, .. } => leaf_indexes.clone(),
        Finding::PartialConfig {
            code_leaf,
            config_leaf,
            ..
        } => std::iter::once(*code_leaf).chain(*config_leaf).collect(),
        Finding::MutationsWithoutPayloadDigest { first_leaf, .. } => vec![*first_leaf],
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Impossible => "impossible",
        Severity::Warning => "warning",
    }
}

fn lane_index(lane: &str) -> u32 {
    LANES.iter().position(|l| *l == lane).unwrap_or(0) as u32
}

fn lane_mid(lane: &str) -> u32 {
    TOP + lane_index(lane) * LANE + LANE / 2 - 6
}

/// The rows of the table: every leaf of the proof, decoded (the proof was verified, so every
/// leaf decodes; one that would not is left out rather than trusted).
fn rows(proof: &StateProof, s: &StateProofSummary) -> Vec<Row> {
    let findings: Vec<&Finding> = s
        .verdict
        .reasons
        .iter()
        .chain(&s.verdict.warnings)
        .collect();
    let mut rows: Vec<Row> = proof
        .leaves
        .iter()
        .filter_map(|p| {
            let leaf = Leaf::decode(&p.leaf).ok()?;
            let record = decode_record(&leaf.record).ok()?;
            let body = record.body?;
            let (label, text) = describe(&body);
            let lane = Dimension::of(&body).name();
            let mut notes = Vec::new();
            let mut severity = "";
            for f in &findings {
                if leaves_of(f).contains(&leaf.index.0) {
                    notes.push(format!("{}: {}", f.rule(), f.describe()));
                    if severity != "impossible" {
                        severity = severity_name(f.severity());
                    }
                }
            }
            Some(Row {
                leaf_index: leaf.index.0,
                time: format_time(leaf.ledger_time.0),
                lane,
                label,
                text,
                status: "",
                superseded_by: None,
                notes,
                severity,
            })
        })
        .collect();
    // Code, config and environment: the latest is current, the earlier ones superseded.
    for lane in ["code", "config", "environment"] {
        let mut later: Option<u64> = None;
        for row in rows.iter_mut().rev().filter(|r| r.lane == lane) {
            match later {
                None => row.status = "current",
                Some(by) => {
                    row.status = "superseded";
                    row.superseded_by = Some(by);
                }
            }
            later = Some(row.leaf_index);
        }
    }
    rows
}

/// Lays out the timeline: one column per record (in log order), one lane per dimension.
fn layout(rows: &[Row], s: &StateProofSummary) -> (Vec<Dot>, Vec<Mark>, Vec<Tick>, usize, u32) {
    let skipped = rows.len().saturating_sub(TIMELINE_RECORDS_MAX);
    let shown = &rows[skipped..];
    let x_of = |col: usize| LEFT + col as u32 * COLUMN + COLUMN / 2;
    let column: std::collections::HashMap<u64, usize> = shown
        .iter()
        .enumerate()
        .map(|(i, r)| (r.leaf_index, i))
        .collect();
    // A label sits under its dot; when the previous column holds a dot of the same lane, the
    // two labels alternate between two rows so that they never overlap.
    let mut far = vec![false; shown.len()];
    for col in 1..shown.len() {
        if shown[col - 1].lane == shown[col].lane {
            far[col] = !far[col - 1];
        }
    }
    let dots: Vec<Dot> = shown
        .iter()
        .enumerate()
        .map(|(col, r)| Dot {
            x: x_of(col),
            y: lane_mid(r.lane),
            label_y: lane_mid(r.lane) + if far[col] { 31 } else { 20 },
            lane: r.lane,
            leaf_index: r.leaf_index,
            label: short(&r.label),
            title: format!("leaf {} at {}: {}", r.leaf_index, r.time, r.text),
            superseded: r.status == "superseded",
            severity: r.severity,
        })
        .collect();
    let mut marks = Vec::new();
    let mark = |kind, rule, lane: &str, x: u32, label: String, title: String| Mark {
        x,
        y: lane_mid(lane),
        label_y: lane_mid(lane) - 12,
        kind,
        rule,
        label: short(&label),
        title,
    };
    for f in &s.verdict.reasons {
        match f {
            Finding::MutationGap {
                expected,
                found,
                leaf_index,
                source,
            } => {
                let Some(&col) = column.get(leaf_index) else {
                    continue;
                };
                // Between the mutation before the gap and the one after it.
                let before = shown[..col]
                    .iter()
                    .rposition(|r| r.lane == "mutation")
                    .map_or(LEFT, x_of);
                let missing = if found - expected == 1 {
                    format!("#{expected}")
                } else {
                    format!("#{expected}–#{}", found - 1)
                };
                marks.push(mark(
                    "gap",
                    f.rule(),
                    "mutation",
                    (before + x_of(col)) / 2,
                    format!("{missing} missing"),
                    format!("mutation {missing} of {source} was never recorded"),
                ));
            }
            Finding::UndeclaredNondeterminism {
                mutation_id,
                capture_id,
                leaf_index,
            } => {
                let Some(&col) = column.get(leaf_index) else {
                    continue;
                };
                marks.push(mark(
                    "undeclared",
                    f.rule(),
                    "nondeterminism",
                    x_of(col),
                    format!("{capture_id}?"),
                    format!(
                        "mutation {mutation_id} (leaf {leaf_index}) used {capture_id}, which was never captured"
                    ),
                ));
            }
            _ => {}
        }
    }
    // A time under every few columns (at least two apart, so they never overlap), and the last.
    let mut ticks = Vec::new();
    let step = (shown.len() / 8).max(2);
    let last = shown.len().saturating_sub(1);
    for (col, r) in shown.iter().enumerate() {
        if (col % step == 0 && col + step <= last) || col == last {
            // hh:mm:ss.mmm of the RFC 3339 time.
            let t = r.time.split('T').nth(1).unwrap_or(&r.time);
            ticks.push(Tick {
                x: x_of(col),
                text: t.trim_end_matches('Z').chars().take(12).collect(),
            });
        }
    }
    let width = LEFT + shown.len().max(1) as u32 * COLUMN + 40;
    (dots, marks, ticks, skipped, width)
}

/// The HTML page.
pub fn html(proof: &StateProof, s: &StateProofSummary) -> anyhow::Result<String> {
    let st = &s.state;
    let rows = rows(proof, s);
    let (dots, marks, ticks, skipped, width) = layout(&rows, s);
    let missing: Vec<&str> = [
        ("code", st.code.is_none()),
        ("config", st.config.is_none()),
        ("environment", st.environment.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(d, _)| *d)
    .collect();
    let lanes: Vec<LaneView> = LANES
        .iter()
        .map(|l| LaneView {
            name: l,
            y: TOP + lane_index(l) * LANE,
            mid: lane_mid(l) + 4,
            note: if missing.contains(l) { "MISSING" } else { "" },
        })
        .collect();
    let view = |f: &Finding| FindingView {
        rule: f.rule(),
        weight: f.weight(),
        text: f.describe(),
    };
    let reasons: Vec<FindingView> = s.verdict.reasons.iter().map(view).collect();
    let warnings: Vec<FindingView> = s.verdict.warnings.iter().map(view).collect();
    let superseded = rows.iter().filter(|r| r.status == "superseded").count();
    let cp = &s.checkpoint.checkpoint;
    let height = TOP + LANES.len() as u32 * LANE + AXIS;
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .context("report template")?;
    env.get_template("report.html")
        .context("report template")?
        .render(minijinja::context! {
            system => proof.system,
            at => format_time(st.at),
            at_ns => st.at,
            origin => cp.origin,
            size => cp.size.0,
            root => cp.root.to_string(),
            signers => s.checkpoint.signers.join(", "),
            digest => s.state_digest.to_string(),
            records => st.records,
            superseded => superseded,
            result => s.verdict.result,
            confidence => s.verdict.confidence,
            reasons => reasons,
            warnings => warnings,
            lanes => lanes,
            dots => dots,
            marks => marks,
            ticks => ticks,
            skipped => skipped,
            width => width,
            height => height,
            left => LEFT,
            axis_y => TOP + LANES.len() as u32 * LANE + 18,
            t_x => width - 24,
            rows => rows,
        })
        .context("rendering the report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_are_cut_and_short_ones_kept() {
        assert_eq!(short("#3"), "#3");
        assert_eq!(short("6.1.0-21-amd64"), "6.1.0-21-am…");
        assert_eq!(short("6.1.0-21-amd64").chars().count(), LABEL_CHARS_MAX);
    }

    /// The `<li>` items of one `<section id=...>` of the page, as (rule, weight).
    fn findings_in(page: &str, section: &str) -> Vec<(String, String)> {
        let start = page
            .find(&format!("<section id=\"{section}\">"))
            .unwrap_or_else(|| panic!("no section {section}"));
        let body = &page[start..];
        let body = &body[..body.find("</section>").expect("the section ends")];
        body.split("<li ")
            .skip(1)
            .map(|li| {
                let attr = |name: &str| {
                    let from = li.find(name).expect("attribute") + name.len();
                    li[from..li[from..].find('"').expect("closing quote") + from].to_string()
                };
                let weight = li
                    .split("<span class=\"weight\">")
                    .nth(1)
                    .and_then(|w| w.split("</span>").next())
                    .expect("each finding shows its weight")
                    .to_string();
                (attr("data-rule=\""), weight)
            })
            .collect()
    }

    /// Warnings are listed apart from the blocking reasons, each with its confidence weight:
    /// the `warning-service` state proof of docs/test-vectors is exact with every warning.
    #[test]
    fn warnings_are_listed_apart_from_reasons_with_their_weights() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors");
        let read = |name: &str| std::fs::read(root.join(name)).expect("the vectors are there");
        let policy = stateledger_core::trust::TrustPolicy::from_json(&read("trust_policy.json"))
            .expect("the vectors' policy");
        let vectors: serde_json::Value =
            serde_json::from_slice(&read("state_proofs.json")).expect("JSON");
        let case = vectors["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| {
                c["valid"] == true
                    && c["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("warning-service"))
            })
            .expect("the warning-service case");
        let proof: StateProof =
            serde_json::from_str(case["document"].as_str().expect("a document")).expect("a proof");
        let summary = proof.verify(&policy).expect("it verifies");
        assert!(summary.verdict.reasons.is_empty());
        let page = html(&proof, &summary).expect("the report renders");

        assert!(
            findings_in(&page, "reasons").is_empty(),
            "no blocking reason"
        );
        let warnings = findings_in(&page, "warnings");
        let expected: Vec<(String, String)> = summary
            .verdict
            .warnings
            .iter()
            .map(|f| (f.rule().to_string(), format!("\u{2212}{}", f.weight())))
            .collect();
        assert_eq!(warnings, expected);
        let rules: Vec<&str> = warnings.iter().map(|(r, _)| r.as_str()).collect();
        for rule in [
            "dirty_code",
            "clock_unsynchronized",
            "mutations_without_payload_digest",
            "observed_time_regression",
            "state_digest_ahead",
        ] {
            assert!(rules.contains(&rule), "{rule} missing: {rules:?}");
        }
        assert!(
            expected.iter().all(|(_, w)| w != "\u{2212}0"),
            "each warning lowers confidence: {expected:?}"
        );
    }
}
