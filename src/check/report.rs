//! Rendering a [`CheckReport`]: the matrices and failure list people read on
//! stderr, JSON (docs/check-report.schema.json) and JUnit XML for pipelines.
//! Pure: returns strings. Colour only when asked ([`render_text_styled`],
//! for a terminal): reports and files never carry it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::{Check, CheckReport, CheckResult, Status};

/// The report for people: one matrix per TCP port, the DNS, DNS load
/// balancer and pod CIDR matrices, every failure with its hint, the skips grouped by
/// reason, and a closing line.
pub fn render_text(report: &CheckReport) -> String {
    render_text_styled(report, false)
}

/// [`render_text`], with `FAIL` cells and the closing line in colour when
/// `colour` (a terminal: [`crate::progress::styled_stderr`]).
pub fn render_text_styled(report: &CheckReport, colour: bool) -> String {
    let mut out = String::new();
    let has = |c: Check| report.results.iter().any(|r| r.check == c);
    if has(Check::Tcp) {
        for port in &report.ports {
            let cells = cells(report, |r| r.check == Check::Tcp && r.port == Some(*port));
            matrix(
                &mut out,
                &format!("TCP {port}, pod to pod (row: from, column: to)"),
                &report.zones,
                &cells,
                colour,
            );
        }
    }
    if has(Check::Dns) {
        let cells = cells(report, |r| r.check == Check::Dns);
        matrix(
            &mut out,
            "DNS, each cluster's own DNS resolving the other zones' names (row: from, column: names of)",
            &report.zones,
            &cells,
            colour,
        );
    }
    if has(Check::DnsLb) {
        let cells = cells(report, |r| r.check == Check::DnsLb);
        matrix(
            &mut out,
            "DNS load balancers, asked from here (row: load balancer of, column: names of)",
            &report.zones,
            &cells,
            colour,
        );
    }
    if has(Check::Cidr) {
        let cells = cells(report, |r| r.check == Check::Cidr);
        matrix(
            &mut out,
            "Pod CIDRs, overlap between clusters (row: from, column: to; FAIL: the ranges overlap)",
            &report.zones,
            &cells,
            colour,
        );
    }

    let failures: Vec<&CheckResult> = report.failures().collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "{} failure(s):", failures.len());
        for r in failures {
            let _ = writeln!(out, "  {}: {}", describe(r), r.detail);
            if let Some(h) = &r.hint {
                let _ = writeln!(out, "      hint: {h}");
            }
        }
        out.push('\n');
    }

    let mut skips: BTreeMap<(Check, &str), Vec<&CheckResult>> = BTreeMap::new();
    for r in report.results.iter().filter(|r| r.status == Status::Skip) {
        skips
            .entry((r.check, r.detail.as_str()))
            .or_default()
            .push(r);
    }
    if !skips.is_empty() {
        let _ = writeln!(out, "{} skipped:", report.summary.skipped);
        for ((check, reason), rs) in &skips {
            let mut pairs: Vec<String> = rs.iter().map(|r| pair(r)).collect();
            pairs.dedup();
            let _ = writeln!(
                out,
                "  {check} ({} probe(s): {}): {reason}",
                rs.len(),
                abbreviate(&pairs)
            );
        }
        out.push('\n');
    }

    let s = report.summary;
    let last = format!(
        "check {}: {} passed, {} failed, {} skipped ({} zone(s))",
        if report.ok { "passed" } else { "FAILED" },
        s.passed,
        s.failed,
        s.skipped,
        report.zones.len()
    );
    let _ = writeln!(out, "{}", styled(&last, report.ok, colour));
    out
}

fn pair(r: &CheckResult) -> String {
    format!("{} -> {}", r.from, r.to)
}

fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 4;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{}, and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

/// `tcp us-east1-b -> us-west1-a 10.1.2.3:26257`, `dns-lb us-east1-b -> us-west1-a crdb-check... (udp)`.
pub fn describe(r: &CheckResult) -> String {
    let mut s = format!("{} {} -> {} {}", r.check, r.from, r.to, r.target);
    if let Some(p) = &r.protocol {
        let _ = write!(s, " ({p})");
    }
    s
}

/// The cell text of every (from, to) pair among the results `pick` selects:
/// `FAIL` if any failed, else `ok` (with the slowest latency, if measured)
/// if any passed, else `skip`.
fn cells(
    report: &CheckReport,
    pick: impl Fn(&CheckResult) -> bool,
) -> BTreeMap<(String, String), String> {
    let mut groups: BTreeMap<(String, String), Vec<&CheckResult>> = BTreeMap::new();
    for r in report.results.iter().filter(|r| pick(r)) {
        groups
            .entry((r.from.clone(), r.to.clone()))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(k, rs)| {
            let cell = if rs.iter().any(|r| r.status == Status::Fail) {
                "FAIL".to_string()
            } else if rs.iter().any(|r| r.status == Status::Pass) {
                match rs.iter().filter_map(|r| r.latency_ms).max() {
                    Some(ms) => format!("ok {ms}ms"),
                    None => "ok".to_string(),
                }
            } else {
                "skip".to_string()
            };
            (k, cell)
        })
        .collect()
}

fn matrix(
    out: &mut String,
    title: &str,
    zones: &[String],
    cells: &BTreeMap<(String, String), String>,
    colour: bool,
) {
    let _ = writeln!(out, "{title}");
    let first = zones.iter().map(String::len).max().unwrap_or(0).max(4) + 2;
    let widths: Vec<usize> = zones
        .iter()
        .map(|to| {
            zones
                .iter()
                .filter_map(|from| cells.get(&(from.clone(), to.clone())))
                .map(String::len)
                .max()
                .unwrap_or(1)
                .max(to.len())
                + 2
        })
        .collect();
    let mut line = format!("  {:<first$}", "");
    for (to, w) in zones.iter().zip(&widths) {
        let _ = write!(line, "{to:<w$}");
    }
    let _ = writeln!(out, "{}", line.trim_end());
    for from in zones {
        let mut line = format!("  {from:<first$}");
        for (to, w) in zones.iter().zip(&widths) {
            let cell = cells
                .get(&(from.clone(), to.clone()))
                .map(String::as_str)
                .unwrap_or("-");
            // Padded apart from the colour codes, which take no column.
            if cell == "FAIL" {
                line.push_str(&styled(cell, false, colour));
                line.push_str(&" ".repeat(w.saturating_sub(cell.len())));
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');
}

fn styled(s: &str, ok: bool, colour: bool) -> String {
    use crate::progress::{Paint, paint};
    match (colour, ok) {
        (false, _) => s.to_string(),
        (true, true) => paint(s, Paint::Ok),
        (true, false) => paint(s, Paint::Fail),
    }
}

/// The report as pretty JSON (docs/check-report.schema.json), with a final
/// newline.
pub fn render_json(report: &CheckReport) -> String {
    let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// The report as JUnit XML, written by `quick-junit`: one `<testsuite>` per
/// check, one `<testcase>` per probe of an ordered pair, `<failure>` and
/// `<skipped>` elements. Control characters XML cannot carry are dropped.
pub fn render_junit(report: &CheckReport) -> String {
    let mut junit = quick_junit::Report::new("crdb-multiregion check");
    for check in Check::ALL {
        let rs: Vec<&CheckResult> = report.results.iter().filter(|r| r.check == check).collect();
        if rs.is_empty() {
            continue;
        }
        let classname = format!("crdb-multiregion.check.{check}");
        let mut suite = quick_junit::TestSuite::new(xml_text(&classname));
        let time: u64 = rs.iter().filter_map(|r| r.latency_ms).sum();
        suite.set_time(Duration::from_millis(time));
        suite.add_test_cases(rs.into_iter().map(|r| junit_case(check, &classname, r)));
        junit.add_test_suite(suite);
    }
    junit
        .to_string()
        .expect("quick-junit writes into a String without I/O errors")
}

/// One probe as a `<testcase>`: `FROM -> TO TARGET (PROTOCOL)`.
fn junit_case(check: Check, classname: &str, r: &CheckResult) -> quick_junit::TestCase {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus};
    let mut name = format!("{} -> {} {}", r.from, r.to, r.target);
    if let Some(p) = &r.protocol {
        let _ = write!(name, " ({p})");
    }
    let status = match r.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(xml_text(&r.detail));
            s
        }
        Status::Fail => {
            let mut body = r.detail.clone();
            if let Some(h) = &r.hint {
                let _ = write!(body, "\nhint: {h}");
            }
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(xml_text(&r.detail))
                .set_type(check.as_str())
                .set_description(xml_text(&body));
            s
        }
    };
    let mut case = TestCase::new(xml_text(&name), status);
    case.set_classname(classname)
        .set_time(Duration::from_millis(r.latency_ms.unwrap_or(0)));
    case
}

/// Text for the XML: quick-junit drops the C0 control characters XML 1.0
/// cannot carry; the two non-characters it lets through become U+FFFD.
fn xml_text(s: &str) -> String {
    s.replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}")
}
