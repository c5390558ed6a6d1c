//! What apply reports: per object, per zone and for the run (the JSON of
//! `apply -o json`, docs/apply-report.schema.json), and its text summary.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::init::InitOutcome;
use crate::k8s::dns_configmap::DnsChange;
use crate::k8s::{Action, ClusterInfo};
use crate::plan::Object;
use crate::zone_error::ZoneError;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub action: Action,
    /// Changed fields with old and new values (Secrets' data masked), for
    /// `configured` objects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<crate::diff::FieldChange>,
    /// What the change does beyond storing it (see [`crate::diff::consequences`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The unified YAML diff of a `configured` object, for text output.
    #[serde(skip)]
    pub diff: String,
}

impl ObjectReport {
    /// What an object is, then what applying it did or would do: fields,
    /// consequences and the text diff, from the object as it was and as the
    /// server (or, for a refused change, [`crate::diff::overlay`]) says it is after.
    pub fn new(zone: &str, object: &Object, action: Action, before: &Value, after: &Value) -> Self {
        let mut report = ObjectReport {
            kind: object.kind().to_string(),
            namespace: object.namespace().map(str::to_string),
            name: object.name().to_string(),
            action,
            fields: Vec::new(),
            warnings: Vec::new(),
            diff: String::new(),
        };
        if action == Action::Configured {
            let (b, a) = crate::diff::prepare(object.kind(), before, after);
            let label = format!("{zone}: {}", object.describe());
            report.fields = crate::diff::field_changes(&b, &a);
            report.warnings = crate::diff::consequences(zone, object.kind(), &b, &a);
            report.diff = crate::diff::unified(
                &b,
                &a,
                &format!("{label} (live)"),
                &format!("{label} (after apply)"),
            );
        }
        report
    }

    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub context: String,
    pub ok: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::zone_error::serialize_text"
    )]
    pub error: Option<ZoneError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    pub objects: Vec<ObjectReport>,
    pub dns_addresses: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsChange>,
    /// DNS was restarted (in a dry run: would be), because its pods were
    /// last restarted for other forwarding than the ConfigMap holds.
    pub dns_restarted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<InitOutcome>,
    /// Things that worked but may not stay so (e.g. a DNS ConfigMap a
    /// cloud add-on re-applies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub steps: Vec<StepTime>,
    /// Time spent on this zone (its phases, a failed step included; not
    /// the waits for the other zones or for a --concurrency slot).
    pub seconds: f64,
    /// Phase A saved the DNS backup, so phase B does not create it again.
    #[serde(skip)]
    pub(super) dns_backup_saved: bool,
}

impl ZoneReport {
    /// Whether this zone needed no change at all.
    pub fn unchanged(&self) -> bool {
        self.objects.iter().all(|o| o.action == Action::Unchanged)
            && matches!(self.dns, None | Some(DnsChange::Unchanged))
            && !self.dns_restarted
            && self.init.is_none_or(|i| !i.changes())
    }
}

/// Version of the `apply -o json` / `diff -o json` format
/// (docs/apply-report.schema.json).
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct ApplyReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    pub dry_run: bool,
    pub ok: bool,
    pub changed: bool,
    pub zones: Vec<ZoneReport>,
    pub elapsed_seconds: f64,
}

pub(super) struct Timer {
    pub(super) steps: Vec<StepTime>,
}

impl Timer {
    pub(super) fn record(&mut self, step: &str, since: Instant) {
        self.steps.push(StepTime {
            step: step.to_string(),
            seconds: (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
    }
}

/// What happened to an object: `created`, `configured`, `unchanged`, or in
/// a dry run `to create`, `to change`.
pub(super) fn action_word(action: Action, dry_run: bool) -> &'static str {
    match (action, dry_run) {
        (Action::Created, false) => "created",
        (Action::Configured, false) => "configured",
        (Action::Unchanged, _) => "unchanged",
        (Action::Created, true) => "to create",
        (Action::Configured, true) => "to change",
    }
}

pub(super) fn summarize_objects(objects: &[ObjectReport], dry_run: bool) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in objects {
        *counts.entry(action_word(o.action, dry_run)).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} objects: {}", objects.len(), parts.join(", "))
}

pub(super) fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A human summary of a report, one line per zone and a closing line.
pub fn render_summary(report: &ApplyReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        let status = match &z.error {
            Some(e) => format!("FAILED: {}", e.text()),
            None if z.unchanged() => "no changes".to_string(),
            None => {
                let mut parts = vec![summarize_objects(&z.objects, report.dry_run)];
                if let Some(d) = z.dns {
                    parts.push(match (d, report.dry_run) {
                        (DnsChange::Unchanged, _) => "DNS unchanged".into(),
                        (DnsChange::Updated, false) => "DNS updated".into(),
                        (DnsChange::Created, false) => "DNS created".into(),
                        (DnsChange::Updated, true) => "DNS would be updated".into(),
                        (DnsChange::Created, true) => "DNS would be created".into(),
                    });
                }
                if z.dns_restarted {
                    parts.push(if report.dry_run {
                        "DNS would be restarted".into()
                    } else {
                        "DNS restarted".into()
                    });
                }
                if let Some(i) = z.init {
                    parts.push(i.to_string());
                }
                parts.join("; ")
            }
        };
        out.push_str(&format!("{:<16} {status} ({:.1}s)\n", z.zone, z.seconds));
        for w in &z.warnings {
            out.push_str(&format!("{:<16} warning: {w}\n", ""));
        }
    }
    let failed: Vec<&str> = report
        .zones
        .iter()
        .filter(|z| !z.ok)
        .map(|z| z.zone.as_str())
        .collect();
    let verb = if report.dry_run { "dry run" } else { "apply" };
    if failed.is_empty() {
        out.push_str(&format!(
            "{verb} finished in {:.1}s: {} zone(s) ok{}\n",
            report.elapsed_seconds,
            report.zones.len(),
            if report.changed { "" } else { ", no changes" }
        ));
    } else {
        out.push_str(&format!(
            "{verb} finished in {:.1}s: {} of {} zone(s) failed ({}); fix the cause and re-run apply, it picks up where it stopped\n",
            report.elapsed_seconds,
            failed.len(),
            report.zones.len(),
            failed.join(", ")
        ));
    }
    out
}
