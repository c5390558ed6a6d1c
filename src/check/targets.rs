//! Pure target planning of `check`: which probes each zone's prober runs
//! (and which rows are skipped before any probe, with why), which DNS load
//! balancer queries are made, and the row each answer becomes. Facts learned
//! from the clusters (listener IPs, forwarded domains, load balancer
//! addresses) come in as data; no I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::lb::{Answer, Transport};
use super::probe::{self, DnsTarget, ProberTargets, TcpTarget};
use super::{Check, CheckResult, NOT_FORWARDED, Status};
use crate::config::{Config, Protocol, Zone};
use crate::names;

/// Why DNS load balancer rows are skipped when there is no load balancer.
pub const NO_DNS_LB: &str = "no DNS load balancer (run apply)";

pub(super) enum LbAddress {
    NotChecked,
    Missing,
    Unresolved(String),
    Addresses(Vec<IpAddr>),
}

/// The prober's targets, and the DNS rows skipped because the cluster
/// forwards none of the other zones' domains yet (a check before apply). A
/// cluster that forwards some zones but not all is probed for all of them:
/// the missing entry is a failure, not a skip.
pub fn plan_targets(
    config: &Config,
    from: &Zone,
    listeners: &BTreeMap<String, IpAddr>,
    forwarded: Option<&BTreeSet<String>>,
    lost_forwarding: Option<&str>,
    checks: &BTreeSet<Check>,
    ports: &[u16],
) -> (ProberTargets, Vec<CheckResult>) {
    let mut targets = ProberTargets::default();
    let mut skipped = Vec::new();
    let others: Vec<&Zone> = config
        .zones
        .iter()
        .filter(|z| z.name != from.name)
        .collect();
    let domain = |z: &Zone| names::zone_domain(&z.namespace, &config.cluster_domain);
    let configured =
        forwarded.is_some_and(|f| others.iter().any(|z| probe::forwards_zone(f, &domain(z))));
    for to in &config.zones {
        let Some(ip) = listeners.get(&to.name) else {
            continue;
        };
        if checks.contains(&Check::Tcp) {
            for port in ports {
                targets.tcp.push(TcpTarget {
                    zone: to.name.clone(),
                    ip: *ip,
                    port: *port,
                });
            }
        }
        let Some(forwarded) = forwarded else {
            continue;
        };
        if to.name == from.name || !checks.contains(&Check::Dns) {
            continue;
        }
        for name in probe::probe_names(&to.namespace, &config.cluster_domain) {
            if configured {
                targets.dns.push(DnsTarget {
                    zone: to.name.clone(),
                    name,
                    expect: *ip,
                    forwarded: probe::forwards_zone(forwarded, &domain(to)),
                });
            } else if let Some(hint) = lost_forwarding {
                skipped.push(CheckResult {
                    status: Status::Fail,
                    detail: format!(
                        "{}'s DNS configuration has no forwarding entry for {}'s domain any more (apply had configured it)",
                        from.name, to.name
                    ),
                    hint: Some(hint.to_string()),
                    ..super::skipped(Check::Dns, &from.name, &to.name, &name, "")
                });
            } else {
                skipped.push(super::skipped(
                    Check::Dns,
                    &from.name,
                    &to.name,
                    &name,
                    NOT_FORWARDED,
                ));
            }
        }
    }
    (targets, skipped)
}

/// One DNS load balancer query to make: `from`'s load balancer at `server`
/// asked for `to`'s probe name over `transport`, expecting `to`'s listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LbQuery {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) name: String,
    pub(super) server: IpAddr,
    pub(super) transport: Transport,
    pub(super) expect: IpAddr,
}

/// The DNS load balancer queries to make (for every zone's load balancer
/// in `lbs`, every zone's probe name, each protocol), and the rows skipped
/// because a protocol is not served or a load balancer has no usable
/// address.
pub(super) fn plan_lb_queries(
    config: &Config,
    lbs: &[(&str, &LbAddress)],
    listeners: &BTreeMap<String, IpAddr>,
) -> (Vec<LbQuery>, Vec<CheckResult>) {
    let mut queries = Vec::new();
    let mut results = Vec::new();
    for (from, lb) in lbs {
        for to in &config.zones {
            let [name, _] = probe::probe_names(&to.namespace, &config.cluster_domain);
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                let transport = match protocol {
                    Protocol::Udp => Transport::Udp,
                    Protocol::Tcp => Transport::Tcp,
                };
                let mut skip = |reason: String| {
                    let mut r = super::skipped(Check::DnsLb, from, &to.name, &name, &reason);
                    r.protocol = Some(transport.as_str().to_string());
                    results.push(r);
                };
                if !config.dns.protocols.contains(&protocol) {
                    skip(format!(
                        "the DNS load balancer does not serve {} (dns.protocols)",
                        protocol.as_str()
                    ));
                    continue;
                }
                match (lb, listeners.get(&to.name)) {
                    (LbAddress::NotChecked, _) => {}
                    (LbAddress::Missing, _) => skip(NO_DNS_LB.to_string()),
                    (LbAddress::Unresolved(e), _) => skip(format!(
                        "DNS load balancer address not usable from here: {e}"
                    )),
                    (LbAddress::Addresses(ips), Some(expect)) => queries.push(LbQuery {
                        from: from.to_string(),
                        to: to.name.clone(),
                        name: name.clone(),
                        server: ips[0],
                        transport,
                        expect: *expect,
                    }),
                    (LbAddress::Addresses(_), None) => {}
                }
            }
        }
    }
    (queries, results)
}

/// The row of one DNS load balancer query, from its answer.
pub(super) fn lb_result(q: &LbQuery, answer: Answer) -> CheckResult {
    let LbQuery {
        from,
        to,
        name,
        server,
        transport,
        expect,
    } = q;
    let (server, transport, expect) = (*server, *transport, *expect);
    let protocol = transport.as_str();
    let answered = !matches!(answer, Answer::Error(_));
    let (status, latency_ms, detail) = match answer {
        Answer::Addresses { ips, ms } if ips.contains(&expect) => (
            Status::Pass,
            Some(ms),
            format!("{server} answers {expect} in {ms} ms"),
        ),
        Answer::Addresses { ips, .. } if ips.is_empty() => (
            Status::Fail,
            None,
            format!("{server} answers with no A record"),
        ),
        Answer::Addresses { ips, .. } => (
            Status::Fail,
            None,
            format!(
                "{server} answers {}, not {to}'s listener {expect}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Answer::Negative(e) | Answer::Error(e) => (Status::Fail, None, format!("{server}: {e}")),
        Answer::Unreachable(e) => (
            Status::Skip,
            None,
            format!("DNS load balancer {server} is not reachable from here ({e})"),
        ),
    };
    CheckResult {
        check: Check::DnsLb,
        from: from.to_string(),
        to: to.to_string(),
        target: name.to_string(),
        port: None,
        protocol: Some(protocol.to_string()),
        hint: (status == Status::Fail).then(|| super::dns_lb_hint(from, to, protocol, answered)),
        status,
        latency_ms,
        detail,
    }
}
