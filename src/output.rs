//! Rendering a [`Plan`] for people and pipes: YAML documents, file names in
//! the generated dir, the per-zone summary. Pure: returns strings.

use std::collections::BTreeMap;

use crate::dns;
use crate::plan::{DnsStatus, Object, Plan, ProviderSource, ZonePlan};

/// One object as a YAML document (no leading `---`).
pub fn object_yaml(object: &Object) -> String {
    let value = object.to_value();
    serde_saphyr::to_string(&value).unwrap_or_else(|e| format!("# could not serialise: {e}\n"))
}

/// Stable file name of an object inside its zone directory.
pub fn file_name(index: usize, object: &Object) -> String {
    let scope = object.namespace().unwrap_or("cluster");
    format!(
        "{:02}-{}-{}-{}.yaml",
        index + 1,
        scope,
        object.kind().to_ascii_lowercase(),
        object.name()
    )
}

/// Name of the file describing a zone's DNS forwarding.
pub const DNS_FILE: &str = "dns-forwarding.yaml";

/// The zone's DNS forwarding, as a commented YAML document: `apply` merges
/// these entries into the cluster's existing ConfigMap (never replacing it),
/// so the file must not be applied with kubectl as it stands.
pub fn dns_document(zone: &ZonePlan) -> String {
    let d = &zone.dns;
    let source = match d.provider_source {
        ProviderSource::Configured => "set in the config",
        ProviderSource::Detected => "detected in the cluster",
        ProviderSource::Assumed => "assumed for the configured cloud; apply detects the real one",
    };
    let mut out = format!(
        "# DNS forwarding for zone {} (context {})\n# DNS server: {} ({source})\n",
        zone.zone, zone.context, d.provider
    );
    match &d.status {
        DnsStatus::NotNeeded => out.push_str("# Nothing to forward: this is the only zone.\n"),
        DnsStatus::Pending { missing } => {
            out.push_str(&format!(
                "# pending: the DNS load balancer address of {} is not known yet.\n# It exists after `apply`; to plan offline pass --dns-address ZONE=IP.\n",
                missing.join(", ")
            ));
        }
        DnsStatus::Ready(forwards) => {
            out.push_str(&format!(
                "# `apply` merges these entries into ConfigMap kube-system/{} and keeps\n# everything else in it; they are shown merged into an empty ConfigMap.\n# Do not `kubectl apply` this: it would replace the cluster's DNS config.\n",
                d.provider.configmap_name()
            ));
            // CoreDNS adds to a Corefile; an empty one shows our section alone.
            let empty = BTreeMap::from_iter(
                (d.provider == dns::DnsProvider::CoreDns)
                    .then(|| (dns::COREFILE_KEY.to_string(), String::new())),
            );
            match dns::merge(d.provider, &empty, forwards, &d.options) {
                Ok(data) => {
                    let cm = serde_json::json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": d.provider.configmap_name(), "namespace": "kube-system"},
                        "data": data,
                    });
                    let yaml = serde_saphyr::to_string(&cm).unwrap_or_default();
                    for line in yaml.lines() {
                        out.push_str("# ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Err(e) => out.push_str(&format!("# error: {e}\n")),
            }
        }
    }
    out
}

/// Every object of every zone as one multi-document stream, each document
/// headed by the zone and context it belongs to.
pub fn yaml_stream(plan: &Plan) -> String {
    let mut out = String::new();
    for zone in &plan.zones {
        for planned in &zone.objects {
            out.push_str(&format!(
                "---\n# zone: {}, context: {}, stage: {}\n",
                zone.zone,
                zone.context,
                serde_json::to_value(planned.stage)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
            out.push_str(&object_yaml(&planned.object));
        }
        out.push_str("---\n");
        out.push_str(&dns_document(zone));
    }
    out
}

/// One line per zone for stderr.
pub fn summary_line(zone: &ZonePlan) -> String {
    let dns = match &zone.dns.status {
        DnsStatus::NotNeeded => "no forwarding needed".to_string(),
        DnsStatus::Ready(f) => format!("{} forwarding {} zone(s)", zone.dns.provider, f.len()),
        DnsStatus::Pending { missing } => format!(
            "{} forwarding pending (no DNS address for {})",
            zone.dns.provider,
            missing.join(", ")
        ),
    };
    format!(
        "{}: {} objects in namespace {} (context {}); DNS: {dns}",
        zone.zone,
        zone.objects.len(),
        zone.namespace,
        zone.context,
    )
}
