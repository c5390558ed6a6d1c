//! Rendering a [`Plan`] for people and pipes: YAML documents, file names in
//! the generated dir, the per-zone summary (pure: returns strings); error
//! chains as text; and the two places that write to the terminal streams:
//! [`ewrite!`](crate::ewrite)/[`ewriteln!`](crate::ewriteln) for stderr
//! (never fails, never panics) and [`stdout`] for data (a closed reader is
//! [`StdoutError`], which ends the program quietly).

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

/// Writes to stderr, ignoring errors: progress and diagnostics must neither
/// panic nor fail a command when stderr is closed or full.
#[macro_export]
macro_rules! ewrite {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}

/// [`ewrite!`] with a newline.
#[macro_export]
macro_rules! ewriteln {
    () => { $crate::output::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stderr, around the live progress lines if they are drawn
/// ([`crate::progress::suspend`]).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    crate::progress::suspend(|| {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_fmt(args);
        let _ = stderr.flush();
    });
}

/// Writing data to stdout failed. A reader that went away (`| head`) is
/// [`StdoutError::is_closed`]: the program then ends quietly with status 0.
#[derive(Debug, thiserror::Error)]
#[error("could not write to stdout")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    pub fn is_closed(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes `data` to stdout and flushes it.
pub fn stdout(data: &[u8]) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(data).map_err(StdoutError)?;
    out.flush().map_err(StdoutError)
}

/// The messages of an error and its sources, each said once: a level that
/// repeats its source at the end (`"x: {source}"`, common in kube and hyper)
/// is cut before it, and a level equal to the one before is left out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut texts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        // kube's variant prefixes ("ServiceError: ", "HyperError: ") say nothing.
        let text = err.to_string();
        let text = ["ServiceError: ", "HyperError: "]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .map(str::to_string)
            .unwrap_or(text);
        texts.push(text);
        next = err.source();
    }
    for i in 0..texts.len().saturating_sub(1) {
        let (head, tail) = texts.split_at_mut(i + 1);
        let (cur, after) = (&mut head[i], &tail[0]);
        if !after.is_empty() && cur.len() > after.len() && cur.ends_with(after.as_str()) {
            let cut = cur.len() - after.len();
            let trimmed = cur[..cut].trim_end().trim_end_matches(':').trim_end();
            *cur = trimmed.to_string();
        }
    }
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        if t.is_empty() || out.last() == Some(&t) {
            continue;
        }
        out.push(t);
    }
    out
}

/// [`error_chain`] on one line, for reports that hold one string per zone.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    error_chain(e).join(": ")
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[derive(Debug)]
    struct E(String, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }
    fn chain(levels: &[&str]) -> E {
        levels
            .iter()
            .rev()
            .fold(None, |next, t| Some(E(t.to_string(), next.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn kube_connect_errors_say_each_cause_once() {
        let e = chain(&[
            "ServiceError: client error (Connect)",
            "client error (Connect)",
            "client error (Connect)",
            "tcp connect error: Connection refused (os error 111)",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            error_chain(&e),
            [
                "client error (Connect)",
                "tcp connect error",
                "Connection refused (os error 111)"
            ]
        );
        assert_eq!(
            one_line(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }
}

/// Causes kept as text (outer first), as an error chain: what
/// [`error_chain`] made of a source, handed on as `source()`.
#[derive(Debug)]
pub struct Causes {
    text: String,
    next: Option<Box<Causes>>,
}

impl Causes {
    pub fn new(texts: &[String]) -> Option<Causes> {
        texts.iter().rev().fold(None, |next, text| {
            Some(Causes {
                text: text.clone(),
                next: next.map(Box::new),
            })
        })
    }
}

impl std::fmt::Display for Causes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Causes {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as _)
    }
}
