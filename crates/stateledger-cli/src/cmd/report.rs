//! Forensic reports of a verified state proof: text for terminals, and an HTML page with a
//! timeline of the four dimensions (plus captures and state digests) up to T.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use stateledger_core::state::{StateProof, StateProofSummary};
use stateledger_core::trust::TrustPolicy;

use super::time::format_time;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A state proof (JSON) from `stateledger reconstruct --out`.
    pub proof: PathBuf,
    /// Trust policy to verify it against first.
    #[arg(long)]
    pub trust: PathBuf,
    /// Also write the HTML page here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Include the advisory confidence.
    #[arg(long)]
    pub advisory: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let policy = TrustPolicy::from_json(
        &std::fs::read(&args.trust)
            .with_context(|| format!("cannot read {}", args.trust.display()))?,
    )?;
    let proof: StateProof = serde_json::from_slice(
        &std::fs::read(&args.proof)
            .with_context(|| format!("cannot read {}", args.proof.display()))?,
    )
    .with_context(|| format!("{} is not a state proof", args.proof.display()))?;
    let summary = proof
        .verify(&policy)
        .map_err(|e| anyhow::anyhow!("the state proof does not verify ({}): {e}", e.check()))?;
    print!("{}", text(&summary, args.advisory));
    if let Some(path) = &args.html {
        std::fs::write(path, html(&proof, &summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The text report.
pub fn text(s: &StateProofSummary, advisory: bool) -> String {
    let st = &s.state;
    let mut out = String::new();
    let cp = &s.checkpoint.checkpoint;
    let _ = writeln!(
        out,
        "S(T) of {:?} at {} ({} ns)",
        st.system,
        format_time(st.at),
        st.at
    );
    let _ = writeln!(
        out,
        "  proven against checkpoint {} size {} (root {}), signed by {}",
        cp.origin,
        cp.size,
        cp.root,
        s.checkpoint.signers.join(", ")
    );
    let _ = writeln!(
        out,
        "  {} records of the system up to T; state digest {}",
        st.records, s.state_digest
    );
    match &st.code {
        Some(c) => {
            let _ = writeln!(
                out,
                "  code:        {} @ {}{} ({} artifacts, {} lockfiles) — leaf {}, {}",
                c.value.repo,
                c.value.commit,
                if c.value.dirty { " (dirty)" } else { "" },
                c.value.artifacts.len(),
                c.value.lockfiles.len(),
                c.leaf_index,
                format_time(c.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  code:        MISSING");
        }
    }
    match &st.config {
        Some(c) => {
            let redacted = c.value.entries.iter().filter(|e| e.redacted).count();
            let _ = writeln!(
                out,
                "  config:      version {:?}, {} entries ({} redacted) — leaf {}, {}",
                c.value.version,
                c.value.entries.len(),
                redacted,
                c.leaf_index,
                format_time(c.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  config:      MISSING");
        }
    }
    match &st.environment {
        Some(e) => {
            let v = &e.value;
            let _ = writeln!(
                out,
                "  environment: {} {} {}{}, {} runtimes, {} flags, clock {} — leaf {}, {}",
                v.os,
                v.kernel,
                v.arch,
                if v.container_image.is_empty() {
                    String::new()
                } else {
                    format!(", image {}", v.container_image)
                },
                v.runtimes.len(),
                v.feature_flags.len(),
                v.time_source
                    .as_ref()
                    .map_or("unknown".to_string(), |t| format!(
                        "{} {}",
                        t.kind,
                        if t.synchronized {
                            "synchronised"
                        } else {
                            "NOT synchronised"
                        }
                    )),
                e.leaf_index,
                format_time(e.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  environment: MISSING");
        }
    }
    let mut sources: Vec<(&str, u64, u64)> = Vec::new();
    for m in &st.mutations {
        match sources.iter_mut().find(|(s, _, _)| *s == m.value.source) {
            Some(e) => e.2 = m.value.sequence,
            None => sources.push((m.value.source.as_str(), m.value.sequence, m.value.sequence)),
        }
    }
    let _ = writeln!(
        out,
        "  mutations:   {} ({})",
        st.mutations.len(),
        sources
            .iter()
            .map(|(s, a, b)| format!("{s} #{a}..#{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "  captures:    {} nondeterminism captures, {} state digests",
        st.nondeterminism.len(),
        st.state_digests.len()
    );
    let _ = writeln!(
        out,
        "  writers:     {}",
        st.writers
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if s.verdict.is_exact() {
        let _ = writeln!(
            out,
            "verdict: EXACT — every dimension present, the determinism contract holds"
        );
    } else {
        let _ = writeln!(
            out,
            "verdict: IMPOSSIBLE — exact reconstruction cannot be guaranteed:"
        );
        for r in &s.verdict.reasons {
            let _ = writeln!(out, "  - [{}] {}", r.rule(), r.describe());
        }
    }
    if advisory {
        let _ = writeln!(out, "advisory confidence: {}/100", s.verdict.confidence);
        for f in s.verdict.reasons.iter().chain(&s.verdict.warnings) {
            let _ = writeln!(out, "  -{:>3} [{}] {}", f.weight(), f.rule(), f.describe());
        }
    }
    out
}

#[derive(Serialize)]
struct Event {
    lane: &'static str,
    leaf_index: u64,
    time: String,
    left_pct: f64,
    label: String,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>StateLedger forensic report: {{ system }} at {{ at }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d232a; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.verdict { padding: .6rem 1rem; border-radius: 6px; display: inline-block; font-weight: 600; }
.exact { background: #dff5e1; color: #145a1f; } .impossible { background: #fde2e1; color: #8a1c12; }
.timeline { position: relative; border-left: 1px solid #ccc; margin: 1rem 0 0 9rem; }
.lane { position: relative; height: 2.2rem; border-bottom: 1px dashed #e3e3e3; }
.lane-name { position: absolute; left: -9rem; width: 8.5rem; text-align: right; top: .6rem; font-size: .85rem; color: #555; }
.ev { position: absolute; top: .55rem; width: .8rem; height: .8rem; margin-left: -.4rem; border-radius: 50%; background: #3b6fd8; }
.ev.code { background: #7a3bd8; } .ev.config { background: #d8863b; } .ev.environment { background: #2e9c6a; }
.ev.mutation { background: #3b6fd8; } .ev.nondeterminism { background: #c23b8a; } .ev.state_digest { background: #666; }
.t-line { position: absolute; top: 0; bottom: 0; border-left: 2px solid #d33; }
table { border-collapse: collapse; margin-top: .5rem; font-size: .85rem; }
td, th { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
code { font-size: .8rem; }
</style></head><body>
<h1>Declared state of <code>{{ system }}</code> at {{ at }}</h1>
<p>Proven against checkpoint <code>{{ origin }}</code> of size {{ size }}, root <code>{{ root }}</code>, cosigned by {{ signers }}.
State digest <code>{{ digest }}</code>; {{ records }} records of the system up to T.</p>
<p class="verdict {{ result }}">Verdict: {{ result | upper }}{% if advisory %} — confidence {{ confidence }}/100{% endif %}</p>
{% if findings %}<ul>{% for f in findings %}<li><b>{{ f.rule }}</b>: {{ f.text }}</li>{% endfor %}</ul>{% endif %}
<h2>Timeline (ledger time, {{ first }} to {{ at }})</h2>
<div class="timeline">
{% for lane in lanes %}<div class="lane"><span class="lane-name">{{ lane }}</span>
{% for e in events %}{% if e.lane == lane %}<span class="ev {{ e.lane }}" style="left: {{ e.left_pct }}%" title="leaf {{ e.leaf_index }} at {{ e.time }}: {{ e.label }}"></span>{% endif %}{% endfor %}
</div>{% endfor %}
<span class="t-line" style="left: 100%" title="T"></span>
</div>
<h2>Records</h2>
<table><tr><th>leaf</th><th>ledger time</th><th>dimension</th><th>what</th></tr>
{% for e in events %}<tr><td>{{ e.leaf_index }}</td><td>{{ e.time }}</td><td>{{ e.lane }}</td><td>{{ e.label }}</td></tr>{% endfor %}
</table>
</body></html>
"#;

/// The HTML page.
pub fn html(proof: &StateProof, s: &StateProofSummary) -> anyhow::Result<String> {
    let st = &s.state;
    let mut raw: Vec<(&'static str, u64, u64, String)> = Vec::new();
    if let Some(c) = &st.code {
        raw.push((
            "code",
            c.leaf_index,
            c.ledger_time,
            format!("{} @ {}", c.value.repo, c.value.commit),
        ));
    }
    if let Some(c) = &st.config {
        raw.push((
            "config",
            c.leaf_index,
            c.ledger_time,
            format!(
                "version {} ({} entries)",
                c.value.version,
                c.value.entries.len()
            ),
        ));
    }
    if let Some(e) = &st.environment {
        raw.push((
            "environment",
            e.leaf_index,
            e.ledger_time,
            format!("{} {} {}", e.value.os, e.value.kernel, e.value.arch),
        ));
    }
    for m in &st.mutations {
        raw.push((
            "mutation",
            m.leaf_index,
            m.ledger_time,
            format!(
                "{} {} {}#{}",
                m.value.kind, m.value.id, m.value.source, m.value.sequence
            ),
        ));
    }
    for n in &st.nondeterminism {
        raw.push((
            "nondeterminism",
            n.leaf_index,
            n.ledger_time,
            format!("capture {}", n.value.capture_id),
        ));
    }
    for d in &st.state_digests {
        raw.push((
            "state_digest",
            d.leaf_index,
            d.ledger_time,
            format!(
                "{}#{} = {}",
                d.value.source, d.value.sequence, d.value.digest
            ),
        ));
    }
    raw.sort_by_key(|r| r.1);
    let first = raw.iter().map(|r| r.2).min().unwrap_or(st.at);
    let span = st.at.saturating_sub(first).max(1) as f64;
    let events: Vec<Event> = raw
        .into_iter()
        .map(|(lane, leaf_index, t, label)| Event {
            lane,
            leaf_index,
            time: format_time(t),
            left_pct: ((t.saturating_sub(first)) as f64 / span * 1000.0).round() / 10.0,
            label,
        })
        .collect();
    let findings: Vec<serde_json::Value> = s
        .verdict
        .reasons
        .iter()
        .chain(&s.verdict.warnings)
        .map(|f| serde_json::json!({"rule": f.rule(), "text": f.describe()}))
        .collect();
    let cp = &s.checkpoint.checkpoint;
    let mut env = minijinja::Environment::new();
    env.add_template("page.html", PAGE)
        .context("report template")?;
    let page = env
        .get_template("page.html")
        .context("report template")?
        .render(minijinja::context! {
            system => proof.system,
            at => format_time(st.at),
            first => format_time(first),
            origin => cp.origin,
            size => cp.size.0,
            root => cp.root.to_string(),
            signers => s.checkpoint.signers.join(", "),
            digest => s.state_digest.to_string(),
            records => st.records,
            result => s.verdict.result,
            confidence => s.verdict.confidence,
            advisory => true,
            findings => findings,
            lanes => ["code", "config", "environment", "mutation", "nondeterminism", "state_digest"],
            events => events,
        })
        .context("rendering the report")?;
    Ok(page)
}
