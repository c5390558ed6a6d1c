//! The status report as text: per zone one line per item, then a verdict.

use super::StatusReport;

/// The report as text: per zone one line per item, then a verdict.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        out.push_str(&format!(
            "{} (context {}): {}\n",
            z.zone,
            z.context,
            if z.ok { "healthy" } else { "UNHEALTHY" }
        ));
        for (name, item) in z.items() {
            out.push_str(&format!(
                "  {name:<15} {:<8} {}\n",
                item.status, item.detail
            ));
        }
    }
    let unhealthy: Vec<String> = report
        .zones
        .iter()
        .filter(|z| !z.ok)
        .map(|z| format!("{} ({})", z.zone, z.failures().join("; ")))
        .collect();
    if unhealthy.is_empty() {
        out.push_str(&format!(
            "status: healthy ({} zone(s))\n",
            report.zones.len()
        ));
    } else {
        out.push_str(&format!(
            "status: {} of {} zone(s) unhealthy: {}\n",
            unhealthy.len(),
            report.zones.len(),
            unhealthy.join("; ")
        ));
    }
    out
}
