//! `check`: proves, from inside every cluster, what a multi-region
//! CockroachDB needs from the network: pod IPs reachable between every pair
//! of clusters on the CockroachDB ports, each cluster's DNS forwarding the
//! other zones' names, the DNS load balancers answering from where the
//! check runs, and pod ranges that do not overlap between clusters.
//!
//! ```text
//! connect (all zones): version, DNS server + its forwarding, DNS LB address,
//!   the Nodes' pod CIDRs -> the cidr results (no probe pods needed; with
//!   `--only cidr` the round ends here)
//!   -> per zone: namespace (created if missing), headless Service, listener
//!      pod (never ready); wait until every listener has an IP
//!   -> per zone: one prober pod probing every listener (TCP) and every other
//!      zone's names (DNS) in the background || DNS LB queries from here
//!   -> results from the probers' logs -> report
//! cleanup, always (success, failure, timeout, Ctrl-C): probe pods, Service,
//!   and the namespaces the check created
//! ```
//!
//! The objects and the scripts are built by [`probe`] (pure); the report is
//! rendered by [`report`] (pure); the pod ranges are compared by [`cidr`]
//! (pure); [`run`] does the API calls, [`lb`] the DNS queries. This module holds the data model and turns probe output into
//! results; it does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub mod cidr;
mod cleanup;
pub mod lb;
pub mod probe;
pub mod report;
pub mod run;
mod session;
pub mod targets;

#[cfg(test)]
mod tests;

use probe::{DnsLine, ProbeLog, ProberTargets};

/// Version of the JSON report format (docs/check-report.schema.json).
pub const REPORT_VERSION: u32 = 1;

/// The checks, in report order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Pod to pod over TCP, every ordered pair of clusters (and each cluster
    /// to itself), on every checked port.
    Tcp,
    /// Each cluster's own DNS resolving every other zone's names.
    Dns,
    /// Each zone's DNS load balancer, queried from where the check runs.
    DnsLb,
    /// The pod CIDRs of every pair of clusters do not overlap (read from
    /// the Nodes' spec.podCIDRs; needs no probe pods).
    Cidr,
}

impl Check {
    pub const ALL: [Check; 4] = [Check::Tcp, Check::Dns, Check::DnsLb, Check::Cidr];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Tcp => "tcp",
            Check::Dns => "dns",
            Check::DnsLb => "dns-lb",
            Check::Cidr => "cidr",
        }
    }

    /// Whether the check needs the probe pods (listeners, probers).
    pub fn needs_probes(self) -> bool {
        match self {
            Check::Tcp | Check::Dns | Check::DnsLb => true,
            Check::Cidr => false,
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One probe of one ordered pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: Check,
    /// The zone the probe ran from (for `dns-lb`: the zone whose DNS load
    /// balancer was asked).
    pub from: String,
    /// The zone probed (whose listener, or whose names; for `cidr`: whose
    /// pod ranges are compared with those of `from`).
    pub to: String,
    /// `IP:PORT` for `tcp`, the DNS name asked for `dns` and `dns-lb`,
    /// [`cidr::TARGET`] for `cidr`.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `udp` or `tcp`, for `dns-lb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The outcome of `check`: every result, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub version: u32,
    pub ok: bool,
    pub summary: Summary,
    /// The zones, in config order (rows and columns of the matrices).
    pub zones: Vec<String>,
    /// The TCP ports checked.
    pub ports: Vec<u16>,
    pub results: Vec<CheckResult>,
}

impl CheckReport {
    /// Sorts the results (check, from, to in zone order, port, target,
    /// protocol) and computes the summary.
    pub fn new(zones: Vec<String>, ports: Vec<u16>, mut results: Vec<CheckResult>) -> Self {
        let index: BTreeMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.as_str(), i))
            .collect();
        let pos = |z: &str| index.get(z).copied().unwrap_or(usize::MAX);
        results.sort_by(|a, b| {
            (
                a.check,
                pos(&a.from),
                pos(&a.to),
                a.port,
                &a.target,
                &a.protocol,
            )
                .cmp(&(
                    b.check,
                    pos(&b.from),
                    pos(&b.to),
                    b.port,
                    &b.target,
                    &b.protocol,
                ))
        });
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        let summary = Summary {
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            skipped: count(Status::Skip),
        };
        CheckReport {
            version: REPORT_VERSION,
            ok: summary.failed == 0,
            summary,
            zones,
            ports,
            results,
        }
    }

    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.status == Status::Fail)
    }
}

/// Hint for a failed TCP probe.
pub fn tcp_hint(from: &str, to: &str, port: u16) -> String {
    if from == to {
        format!(
            "pods in {from} cannot reach each other on TCP {port}: check NetworkPolicies in the zone's namespace and the cluster's CNI"
        )
    } else {
        format!(
            "pod IPs of {from} cannot reach {to}:{port}: check routes between the clusters' pod CIDRs and firewall rules for TCP {port}"
        )
    }
}

/// Hint for a failed cluster-DNS probe. `no_answer`: the cluster forwards
/// the zone's domain but no answer came back (timeout, SERVFAIL).
pub fn dns_hint(from: &str, to: &str, no_answer: bool) -> String {
    let lb = crate::names::DNS_LB_SERVICE;
    if no_answer {
        format!(
            "{from}'s DNS forwards {to}'s names but gets no answer: check the {lb} address of {to} and that {from}'s DNS pods reach it on port 53 (routes, firewall rules)"
        )
    } else {
        format!(
            "{from}'s DNS does not forward {to}'s names: run apply, check the {lb} address of {to}"
        )
    }
}

/// Hint for DNS rows of a cluster whose forwarding, configured by apply,
/// is gone: names the add-on that owns the ConfigMap when there is one.
pub fn lost_forwarding_hint(zone: &str, configmap: &str, addon: Option<&str>) -> String {
    match addon {
        Some(manager) if manager == crate::k8s::dns_configmap::EKS_ADDON_MANAGER => format!(
            "ConfigMap kube-system/{configmap} in {zone} is managed by the EKS CoreDNS add-on, and an add-on update with resolve-conflicts OVERWRITE puts its Corefile back: run apply to merge the forwarding again (update the add-on with resolve-conflicts PRESERVE, or use its `corefile` configuration value, to keep it)"
        ),
        Some(manager) => format!(
            "ConfigMap kube-system/{configmap} in {zone} is also managed with server-side apply by {manager:?}, which may have re-applied it: run apply to merge the forwarding again"
        ),
        None => format!(
            "the forwarding apply wrote into ConfigMap kube-system/{configmap} in {zone} was removed (edited or replaced by someone else): run apply to merge it again"
        ),
    }
}

/// Hint for a failed DNS load balancer query: `answered` tells a wrong or
/// negative answer from a transport failure.
pub fn dns_lb_hint(from: &str, to: &str, protocol: &str, answered: bool) -> String {
    let proto = protocol.to_ascii_uppercase();
    let (system, lb) = (crate::names::KUBE_SYSTEM, crate::names::DNS_LB_SERVICE);
    if !answered {
        format!(
            "the DNS load balancer of {from} does not serve DNS over {proto}: check Service {system}/{lb} in {from} (its {proto} port 53, its selector) and dns.protocols in the config"
        )
    } else if from == to {
        format!(
            "the DNS load balancer of {from} does not resolve its own zone's names over {proto}: check that Service {system}/{lb} in {from} selects the cluster's DNS pods"
        )
    } else {
        format!(
            "the DNS load balancer of {from} answers but does not resolve {to}'s names over {proto}: run apply, check {from}'s DNS forwarding to the {lb} address of {to}"
        )
    }
}

/// Why DNS rows of a cluster that forwards none of the other zones yet are
/// skipped. (A cluster that forwards some zones but not another is probed
/// for that one too, and fails.)
pub const NOT_FORWARDED: &str = "DNS forwarding not configured yet (run apply)";

/// The results of one prober: one per target, read from its log; a target
/// without a line is a failure "no result".
pub fn prober_results(from: &str, targets: &ProberTargets, log: &ProbeLog) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let unfinished = if log.done {
        String::new()
    } else {
        " (the prober did not finish)".to_string()
    };
    for t in &targets.tcp {
        let target = socket(t.ip, t.port);
        let line = log.tcp.get(&(t.zone.clone(), t.ip.to_string(), t.port));
        let (status, latency_ms, detail) = match line {
            Some(l) if l.ok => (
                Status::Pass,
                Some(l.ms),
                format!("connected in {} ms", l.ms),
            ),
            Some(l) => (Status::Fail, None, probe::tcp_reason(&l.message)),
            None => (Status::Fail, None, format!("no result{unfinished}")),
        };
        out.push(CheckResult {
            check: Check::Tcp,
            from: from.to_string(),
            to: t.zone.clone(),
            target,
            port: Some(t.port),
            protocol: None,
            hint: (status == Status::Fail).then(|| tcp_hint(from, &t.zone, t.port)),
            status,
            latency_ms,
            detail,
        });
    }
    for t in &targets.dns {
        let line = log.dns.get(&(t.zone.clone(), t.name.clone()));
        let (status, detail) = match line {
            Some(DnsLine::Resolved(ip)) if ip.parse::<IpAddr>().ok() == Some(t.expect) => {
                (Status::Pass, format!("resolves to {ip}"))
            }
            Some(DnsLine::Resolved(ip)) => (
                Status::Fail,
                format!(
                    "resolves to {ip}, not to {}'s listener {} (a stale or foreign record?)",
                    t.zone, t.expect
                ),
            ),
            Some(DnsLine::Failed(reason)) => (Status::Fail, probe::dns_reason(reason)),
            None => (Status::Fail, format!("no result{unfinished}")),
        };
        let detail = if status == Status::Fail && !t.forwarded {
            format!(
                "{detail}; {from}'s DNS configuration has no forwarding entry for {}'s domain",
                t.zone
            )
        } else {
            detail
        };
        out.push(CheckResult {
            check: Check::Dns,
            from: from.to_string(),
            to: t.zone.clone(),
            target: t.name.clone(),
            port: None,
            protocol: None,
            hint: (status == Status::Fail).then(|| {
                let no_answer = t.forwarded
                    && matches!(line, Some(DnsLine::Failed(r)) if probe::dns_no_answer(r));
                dns_hint(from, &t.zone, no_answer)
            }),
            status,
            latency_ms: None,
            detail,
        });
    }
    out
}

/// A skipped result.
pub fn skipped(check: Check, from: &str, to: &str, target: &str, reason: &str) -> CheckResult {
    CheckResult {
        check,
        from: from.to_string(),
        to: to.to_string(),
        target: target.to_string(),
        port: None,
        protocol: None,
        status: Status::Skip,
        latency_ms: None,
        detail: reason.to_string(),
        hint: None,
    }
}

/// `IP:PORT`, with brackets for IPv6.
pub fn socket(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// The checks to run from `--only` and `--skip`.
pub fn selected(only: &[Check], skip: &[Check]) -> BTreeSet<Check> {
    Check::ALL
        .into_iter()
        .filter(|c| only.is_empty() || only.contains(c))
        .filter(|c| !skip.contains(c))
        .collect()
}
