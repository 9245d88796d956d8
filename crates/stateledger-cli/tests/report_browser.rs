//! The demo's two HTML forensic reports, rendered by a real browser (Debian's `chromium`,
//! headless): the elements a reader needs are there and laid out — every record on the timeline
//! and in the table (superseded ones marked), the blocking reasons and the warnings apart with
//! their weights, labels that do not overlap, the missing mutation and the undeclared capture
//! marked where they happen — and the page renders to PNG and prints to PDF. Not pixel-exact:
//! a script injected into a copy of each page measures what the browser laid out and writes it
//! into the page, which `--dump-dom` returns.
//!
//! Needs `chromium` on the PATH (or `STATELEDGER_CHROMIUM`); `.ci/run` installs it and sets
//! `STATELEDGER_REQUIRE_BROWSER=1`, without which a machine lacking chromium skips the test
//! (loudly).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the injected script measures (see `MEASURE`).
const MEASURE: &str = r#"
<script>
(function () {
  const box = (e) => { const r = e.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const visible = (b) => b.w > 0 && b.h > 0;
  const centre = (e) => { const r = e.getBoundingClientRect(); return r.left + r.width / 2; };
  const overlap = (a, b) => a.x < b.x + b.w - 0.5 && b.x < a.x + a.w - 0.5 && a.y < b.y + b.h - 0.5 && b.y < a.y + a.h - 0.5;
  const labels = [...document.querySelectorAll('text.dot-label, text.mark-label, text.tick, text.lane-name')];
  const boxes = labels.map((e) => ({text: e.textContent, b: box(e)}));
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++)
      if (overlap(boxes[i].b, boxes[j].b)) overlaps.push(boxes[i].text + ' / ' + boxes[j].text);
  const dots = [...document.querySelectorAll('g.record')].map((g) => ({
    leaf: +g.dataset.leaf, lane: g.dataset.lane, superseded: g.classList.contains('superseded'),
    b: box(g.querySelector('circle')), x: centre(g.querySelector('circle')),
    label: g.querySelector('text').textContent }));
  const dotOverlaps = [];
  for (let i = 0; i < dots.length; i++)
    for (let j = i + 1; j < dots.length; j++)
      if (overlap(dots[i].b, dots[j].b)) dotOverlaps.push(dots[i].leaf + '/' + dots[j].leaf);
  const marks = [...document.querySelectorAll('g.mark')].map((g) => ({
    kind: [...g.classList].find((c) => c !== 'mark'), rule: g.dataset.rule,
    x: centre(g.querySelector('circle')), visible: visible(box(g.querySelector('circle'))),
    label: g.querySelector('text.mark-label').textContent }));
  const findings = (id) => [...document.querySelectorAll('#' + id + ' li')].map((li) => ({
    rule: li.dataset.rule, weight: li.querySelector('.weight').textContent, visible: visible(box(li)) }));
  const rows = [...document.querySelectorAll('#records tbody tr')].map((tr) => ({
    leaf: +tr.dataset.leaf, superseded: tr.classList.contains('superseded'),
    status: tr.children[4].textContent.trim() }));
  const out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify({
    record_count: +document.getElementById('record-count').textContent,
    verdict: document.getElementById('verdict').textContent,
    reasons: findings('reasons'), warnings: findings('warnings'),
    dots, all_dots_visible: dots.every((d) => visible(d.b)), dot_overlaps: dotOverlaps,
    label_overlaps: overlaps, labels_visible: boxes.every((l) => visible(l.b)),
    marks, rows,
    lanes: [...document.querySelectorAll('g.lane')].map((g) => g.dataset.lane),
  });
  document.body.appendChild(out);
})();
</script>
"#;

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("stateledger-report-browser-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The browser, or `None` (the test is skipped, saying so on stderr) when none is installed and
/// `STATELEDGER_REQUIRE_BROWSER` is not 1. `.ci/run` installs chromium and sets it, so CI never
/// skips; a developer without chromium can still run `.ci/test`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATELEDGER_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(path) = found.filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
    }
    let message = "this test renders the reports in a real browser and needs Debian's chromium: \
                   apt-get install chromium (.ci/run installs it), or point STATELEDGER_CHROMIUM \
                   at one";
    if std::env::var("STATELEDGER_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{message}");
    }
    // Straight to stderr: the harness would hide an eprintln! of a passing test.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("report_browser: SKIPPED: {message}\n").as_bytes(),
    );
    None
}

/// Runs headless chromium on `page` with `args`; returns its standard output. Fails after 90 s.
fn headless(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "chromium {args:?} failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("the reader thread ends")
}

/// The page measured in the browser.
fn measure(browser: &Path, dir: &Path, report: &Path) -> serde_json::Value {
    let html = std::fs::read_to_string(report).expect("the report exists");
    let instrumented = dir.join(format!(
        "measured-{}",
        report
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
    ));
    std::fs::write(
        &instrumented,
        html.replace("</body>", &format!("{MEASURE}</body>")),
    )
    .expect("write the instrumented copy");
    let dom = headless(
        browser,
        &dir.join("profile"),
        &instrumented,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let start = dom
        .find("<pre id=\"layout-check\">")
        .unwrap_or_else(|| panic!("the measuring script did not run; DOM:\n{dom}"));
    let json = &dom[start + "<pre id=\"layout-check\">".len()..];
    let json = &json[..json.find("</pre>").expect("the pre element ends")];
    let json = json
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("layout JSON ({e}): {json}"))
}

/// Renders `report` to PNG and prints it to PDF; checks both files are what they claim.
fn render(browser: &Path, dir: &Path, report: &Path) {
    let png = dir.join("page.png");
    let pdf = dir.join("page.pdf");
    headless(
        browser,
        &dir.join("profile"),
        report,
        &[&format!("--screenshot={}", png.display())],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the PNG");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("IHDR width"));
    assert_eq!(width, 1400, "the window's width");
    assert!(
        bytes.len() > 30_000,
        "a near-blank page: {} bytes",
        bytes.len()
    );
    headless(
        browser,
        &dir.join("profile"),
        report,
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
        ],
    );
    let bytes = std::fs::read(&pdf).expect("chromium wrote the PDF");
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(
        bytes.len() > 10_000,
        "a near-empty PDF: {} bytes",
        bytes.len()
    );
}

fn array<'a>(v: &'a serde_json::Value, key: &str) -> &'a Vec<serde_json::Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is an array"))
}

/// What both reports must show.
fn check_layout(name: &str, m: &serde_json::Value) {
    let dots = array(m, "dots");
    let rows = array(m, "rows");
    let count = m["record_count"].as_u64().expect("record count") as usize;
    assert_eq!(
        rows.len(),
        count,
        "{name}: the table has every record the header counts"
    );
    assert_eq!(dots.len(), count, "{name}: the timeline has every record");
    assert_eq!(m["all_dots_visible"], true, "{name}: {m}");
    assert_eq!(m["labels_visible"], true, "{name}: {m}");
    assert!(
        array(m, "dot_overlaps").is_empty(),
        "{name}: dots overlap: {}",
        m["dot_overlaps"]
    );
    assert!(
        array(m, "label_overlaps").is_empty(),
        "{name}: labels overlap: {}",
        m["label_overlaps"]
    );
    assert!(
        dots.iter()
            .all(|d| d["label"].as_str().is_some_and(|l| !l.is_empty())),
        "{name}: every dot is labelled"
    );
    assert_eq!(
        array(m, "lanes").len(),
        7,
        "{name}: one lane per dimension, captures, state digests and policy"
    );
    // The first deploy's code, config and environment were superseded by the second's.
    let superseded: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["superseded"] == true).collect();
    let hollow = dots.iter().filter(|d| d["superseded"] == true).count();
    assert_eq!(superseded.len(), hollow, "{name}: table and timeline agree");
    for row in superseded {
        assert!(
            row["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("superseded by leaf ")),
            "{name}: {row}"
        );
    }
}

#[test]
fn the_demo_reports_render_in_a_real_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = TempDir::new();
    let reports = dir.0.join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .args(["demo", "--reports"])
        .arg(&reports)
        .output()
        .expect("stateledger demo runs");
    assert!(
        out.status.success(),
        "the demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // T1: exact, nothing blocking, nothing to warn about; the grant, the first deploy and five
    // mutations.
    let t1 = reports.join("report-t1.html");
    let m = measure(&browser, &dir.0, &t1);
    check_layout("report-t1", &m);
    assert!(
        m["verdict"].as_str().is_some_and(|v| v.contains("EXACT")),
        "{m}"
    );
    assert!(array(&m, "reasons").is_empty() && array(&m, "warnings").is_empty());
    assert!(array(&m, "marks").is_empty(), "nothing is missing at T1");
    render(&browser, &dir.0, &t1);

    // T2: impossible; the second deploy supersedes the first (code, config, environment: three
    // superseded records, hollow on the timeline); mutation #8 is missing between #7 and #9;
    // the refund's FX-rate call was never captured.
    let t2 = reports.join("report-t2.html");
    let m = measure(&browser, &dir.0, &t2);
    check_layout("report-t2", &m);
    assert!(
        m["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("IMPOSSIBLE")),
        "{m}"
    );
    let rules: Vec<&str> = array(&m, "reasons")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(rules, ["mutation_gap", "undeclared_nondeterminism"]);
    for f in array(&m, "reasons") {
        assert_eq!(f["weight"], "−30", "each reason shows its weight: {f}");
        assert_eq!(f["visible"], true);
    }
    assert_eq!(
        array(&m, "rows")
            .iter()
            .filter(|r| r["superseded"] == true)
            .count(),
        3
    );
    let marks = array(&m, "marks");
    let gap = marks
        .iter()
        .find(|k| k["kind"] == "gap")
        .unwrap_or_else(|| panic!("the missing mutation is marked: {marks:?}"));
    assert_eq!(gap["label"], "#8 missing");
    assert_eq!(gap["visible"], true);
    let x_of = |label: &str| {
        array(&m, "dots")
            .iter()
            .find(|d| d["lane"] == "mutation" && d["label"] == label)
            .and_then(|d| d["x"].as_f64())
            .unwrap_or_else(|| panic!("mutation {label} is on the timeline"))
    };
    let gap_x = gap["x"].as_f64().expect("x");
    assert!(
        x_of("#7") < gap_x && gap_x < x_of("#9"),
        "the gap is marked between #7 and #9"
    );
    let undeclared = marks
        .iter()
        .find(|k| k["kind"] == "undeclared")
        .unwrap_or_else(|| panic!("the undeclared capture is marked: {marks:?}"));
    assert_eq!(undeclared["rule"], "undeclared_nondeterminism");
    assert!(
        (undeclared["x"].as_f64().expect("x") - x_of("#10")).abs() < 1.0,
        "at the refund"
    );
    render(&browser, &dir.0, &t2);
}
