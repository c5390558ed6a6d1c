//! Judging (pure): what was gathered, against the config, at a given time,
//! becomes the report. No I/O, no clock of its own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::StatefulSet;
use time::OffsetDateTime;

use super::*;
use crate::config::{Config, Zone};
use crate::names;

/// The report: `gathered` (every zone of the config, in config order) judged
/// against `config` at `now`; only the zones in `shown` are in it.
/// `local` holds each shown zone's local certificates ([`read_local_certs`]).
pub fn evaluate(
    config: &Config,
    gathered: &[Gathered],
    shown: &[String],
    local: &BTreeMap<String, CertSources>,
    now: OffsetDateTime,
) -> StatusReport {
    let addresses: BTreeMap<&str, Option<&Vec<IpAddr>>> = gathered
        .iter()
        .map(|g| {
            let ips = match &g.lb {
                Some(Ok(lb)) => Some(&lb.ips),
                _ => None,
            };
            (g.zone.as_str(), ips)
        })
        .collect();
    let zones: Vec<ZoneStatus> = config
        .zones
        .iter()
        .filter(|z| shown.contains(&z.name))
        .filter_map(|z| {
            let g = gathered.iter().find(|g| g.zone == z.name)?;
            let no_local = Vec::new();
            let local = local.get(&z.name).unwrap_or(&no_local);
            Some(judge_zone(config, z, g, &addresses, local, now))
        })
        .collect();
    StatusReport {
        version: REPORT_VERSION,
        ok: zones.iter().all(|z| z.ok),
        zones,
    }
}

fn judge_zone(
    config: &Config,
    zone: &Zone,
    g: &Gathered,
    addresses: &BTreeMap<&str, Option<&Vec<IpAddr>>>,
    local: &[(String, Result<String, CertUnreadable>)],
    now: OffsetDateTime,
) -> ZoneStatus {
    let unasked = || Item::new(Health::Unknown, "not asked: the API server did not answer");
    let (api, could_not_connect) = match &g.api {
        Some(Ok(v)) => (
            ApiItem {
                item: Item::new(Health::Ok, format!("Kubernetes {v}")),
                version: Some(v.clone()),
            },
            false,
        ),
        Some(Err(why)) => (
            ApiItem {
                item: Item::new(Health::Fail, why.to_string()),
                version: None,
            },
            matches!(why, ApiUnread::Connect(_)),
        ),
        None => (
            ApiItem {
                item: Item::new(Health::Fail, "not asked"),
                version: None,
            },
            false,
        ),
    };
    let reachable = matches!(&g.api, Some(Ok(_)));
    let dns_lb = match &g.lb {
        Some(Ok(LbAddresses { ips, hosts })) => LbItem {
            item: Item::new(
                Health::Ok,
                if hosts.is_empty() {
                    join(ips)
                } else {
                    format!("{} ({})", hosts.join(", "), join(ips))
                },
            ),
            addresses: ips.clone(),
            hostnames: hosts.clone(),
        },
        Some(Err(e)) => LbItem {
            item: Item::new(Health::Fail, e.to_string()),
            addresses: Vec::new(),
            hostnames: Vec::new(),
        },
        None => LbItem {
            item: unasked(),
            addresses: Vec::new(),
            hostnames: Vec::new(),
        },
    };
    let dns_forwarding = if reachable {
        judge_forwarding(config, zone, g.dns.as_ref(), addresses)
    } else {
        ForwardingItem {
            item: unasked(),
            provider: None,
            forwards: Vec::new(),
            unexpected: Vec::new(),
        }
    };
    let statefulset = match (&g.statefulset, reachable) {
        (Some(r), true) => judge_statefulset(zone, r),
        _ => StatefulSetItem {
            item: unasked(),
            desired: None,
            ready: None,
            updated: None,
            current_revision: None,
            update_revision: None,
        },
    };
    let nodes = match (&g.nodes, reachable) {
        (Some(n), true) => judge_nodes(n),
        _ => NodesItem {
            item: unasked(),
            pods: Vec::new(),
            ranges_underreplicated: None,
            ranges_unavailable: None,
        },
    };
    let mut sources: CertSources = local.to_vec();
    if reachable {
        sources.extend(g.secrets.iter().cloned());
    }
    let certificates = judge_certs(&sources, reachable, now);
    let mut status = ZoneStatus {
        zone: zone.name.clone(),
        context: zone.context.clone(),
        ok: true,
        api,
        dns_lb,
        dns_forwarding,
        statefulset,
        nodes,
        certificates,
        could_not_connect,
    };
    status.ok = status.failures().is_empty();
    status
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn judge_forwarding(
    config: &Config,
    zone: &Zone,
    dns: Option<&Result<(DnsProvider, Vec<Forward>), Unread>>,
    addresses: &BTreeMap<&str, Option<&Vec<IpAddr>>>,
) -> ForwardingItem {
    let (provider, found) = match dns {
        Some(Ok((p, f))) => (*p, f),
        Some(Err(e)) => {
            return ForwardingItem {
                item: Item::new(Health::Fail, e.to_string()),
                provider: None,
                forwards: Vec::new(),
                unexpected: Vec::new(),
            };
        }
        None => {
            return ForwardingItem {
                item: Item::new(Health::Unknown, "not read"),
                provider: None,
                forwards: Vec::new(),
                unexpected: Vec::new(),
            };
        }
    };
    let mut forwards = Vec::new();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    for other in config.zones.iter().filter(|o| o.name != zone.name) {
        let domain = names::zone_domain(&other.namespace, &config.cluster_domain);
        let servers: Vec<IpAddr> = found
            .iter()
            .find(|f| f.domain == domain)
            .map(|f| f.servers.clone())
            .unwrap_or_default();
        let expected: Option<Vec<IpAddr>> = addresses
            .get(other.name.as_str())
            .copied()
            .flatten()
            .cloned();
        let status = match (&expected, servers.is_empty()) {
            (_, true) => {
                problems.push(format!("no forwarding for zone {} ({domain})", other.name));
                Health::Fail
            }
            (None, false) => {
                unknown.push(format!(
                    "{} forwarded to {}, but that zone's DNS load balancer address is not known",
                    other.name,
                    join(&servers)
                ));
                Health::Unknown
            }
            (Some(want), false) => {
                let mut have = servers.clone();
                have.sort();
                let mut want_sorted = want.clone();
                want_sorted.sort();
                if have == want_sorted {
                    Health::Ok
                } else {
                    problems.push(format!(
                        "zone {} is forwarded to {} but its DNS load balancer is {} (run apply)",
                        other.name,
                        join(&servers),
                        join(want)
                    ));
                    Health::Fail
                }
            }
        };
        forwards.push(ForwardItem {
            zone: other.name.clone(),
            domain,
            status,
            servers,
            expected: expected.unwrap_or_default(),
        });
    }
    let unexpected: Vec<String> = found
        .iter()
        .map(|f| f.domain.clone())
        .filter(|d| !forwards.iter().any(|f| &f.domain == d))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "forwards {} of zone(s) no longer in the config (apply --prune removes them)",
            unexpected.join(", ")
        ));
    }
    let cm = format!("ConfigMap kube-system/{}", provider.configmap_name());
    let item = if !problems.is_empty() {
        Item::new(Health::Fail, format!("{cm}: {}", problems.join("; ")))
    } else if !unknown.is_empty() {
        Item::new(Health::Unknown, format!("{cm}: {}", unknown.join("; ")))
    } else if forwards.is_empty() {
        Item::new(Health::Ok, "nothing to forward: this is the only zone")
    } else {
        Item::new(
            Health::Ok,
            format!(
                "{cm}: {}",
                forwards
                    .iter()
                    .map(|f| format!("{} -> {}", f.zone, join(&f.servers)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    ForwardingItem {
        item,
        provider: Some(provider.to_string()),
        forwards,
        unexpected,
    }
}

fn judge_statefulset(zone: &Zone, read: &Result<Option<StatefulSet>, Unread>) -> StatefulSetItem {
    let empty = |item| StatefulSetItem {
        item,
        desired: None,
        ready: None,
        updated: None,
        current_revision: None,
        update_revision: None,
    };
    let set = match read {
        Err(e) => return empty(Item::new(Health::Fail, e.to_string())),
        Ok(None) => {
            return empty(Item::new(
                Health::Fail,
                format!(
                    "StatefulSet {}/{} does not exist (run apply)",
                    zone.namespace,
                    names::STATEFULSET
                ),
            ));
        }
        Ok(Some(s)) => s,
    };
    let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = set.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let current = status.current_revision.clone();
    let update = status.update_revision.clone();
    let revision = current.clone().unwrap_or_else(|| "unknown".into());
    let rolling = update.is_some() && current != update;
    let mut detail = format!("{ready}/{desired} ready, revision {revision}");
    let health = if ready < desired {
        Health::Fail
    } else if rolling {
        detail.push_str(&format!(
            "; rolling update to {} in progress ({updated}/{desired} updated)",
            update.clone().unwrap_or_default()
        ));
        Health::Warn
    } else if desired != zone.replicas as i32 {
        detail.push_str(&format!(
            "; the config says {} replicas (run apply)",
            zone.replicas
        ));
        Health::Warn
    } else {
        Health::Ok
    };
    StatefulSetItem {
        item: Item::new(health, detail),
        desired: Some(desired),
        ready: Some(ready),
        updated: Some(updated),
        current_revision: current,
        update_revision: update,
    }
}

/// The sum of a metric's samples in Prometheus text (`name{labels} value`
/// or `name value`); `None` when it has none.
pub fn metric_sum(text: &str, metric: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            labels.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // another metric with this one as prefix
        };
        let Some(v) = value.and_then(|v| v.split_whitespace().next()) else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            *sum.get_or_insert(0) += v.max(0.0) as u64;
        }
    }
    sum
}

fn judge_nodes(n: &NodesGathered) -> NodesItem {
    if let Some(e) = &n.list_error {
        return NodesItem {
            item: Item::new(Health::Fail, e.clone()),
            pods: Vec::new(),
            ranges_underreplicated: None,
            ranges_unavailable: None,
        };
    }
    let mut pods = Vec::new();
    let mut proxy_errors = Vec::new();
    let mut under = Some(0u64);
    let mut unavailable = Some(0u64);
    for (pod, phase, health, vars) in &n.pods {
        let (status, detail) = match health {
            None => (Health::Fail, format!("pod {phase}")),
            Some(ProxyAnswer::Ok(_)) => (Health::Ok, "ready".to_string()),
            Some(ProxyAnswer::NotReady(why)) => (Health::Fail, format!("not ready: {why}")),
            Some(ProxyAnswer::ProxyError(why)) => {
                proxy_errors.push(why.clone());
                (
                    Health::Unknown,
                    format!("health unknown (pod proxy: {why})"),
                )
            }
        };
        match vars {
            Some(ProxyAnswer::Ok(text)) => {
                under = under
                    .zip(metric_sum(text, "ranges_underreplicated"))
                    .map(|(a, b)| a + b);
                unavailable = unavailable
                    .zip(metric_sum(text, "ranges_unavailable"))
                    .map(|(a, b)| a + b);
            }
            _ => {
                under = None;
                unavailable = None;
            }
        }
        pods.push(NodeItem {
            pod: pod.clone(),
            status,
            detail,
        });
    }
    let not_ready: Vec<String> = pods
        .iter()
        .filter(|p| p.status == Health::Fail)
        .map(|p| format!("{} {}", p.pod, p.detail))
        .collect();
    let ready = pods.iter().filter(|p| p.status == Health::Ok).count();
    let ranges = match (under, unavailable) {
        (Some(u), Some(a)) => format!("; ranges: {u} under-replicated, {a} unavailable"),
        _ => String::new(),
    };
    let item = if pods.is_empty() {
        Item::new(Health::Fail, "no CockroachDB pods")
    } else if !not_ready.is_empty() {
        Item::new(
            Health::Fail,
            format!("{ready}/{} ready; {}", pods.len(), not_ready.join("; ")),
        )
    } else if !proxy_errors.is_empty() {
        Item::new(
            Health::Unknown,
            format!("node health unknown (pod proxy: {})", proxy_errors[0]),
        )
    } else if under.unwrap_or(0) > 0 || unavailable.unwrap_or(0) > 0 {
        Item::new(
            Health::Fail,
            format!("{ready}/{} ready{ranges}", pods.len()),
        )
    } else if under.is_none() {
        Item::new(
            Health::Unknown,
            format!(
                "{ready}/{} ready; ranges unknown (_status/vars not readable)",
                pods.len()
            ),
        )
    } else {
        Item::new(Health::Ok, format!("{ready}/{} ready{ranges}", pods.len()))
    };
    let (under, unavailable) = if proxy_errors.is_empty() {
        (under, unavailable)
    } else {
        (None, None)
    };
    NodesItem {
        item,
        pods,
        ranges_underreplicated: under,
        ranges_unavailable: unavailable,
    }
}

pub(super) fn judge_certs(
    sources: &[(String, Result<String, CertUnreadable>)],
    reachable: bool,
    now: OffsetDateTime,
) -> CertsItem {
    let mut list = Vec::new();
    for (source, pem) in sources {
        let item = match pem {
            Err(e) => CertItem {
                source: source.clone(),
                status: Health::Warn,
                not_after: None,
                days_left: None,
                detail: e.to_string(),
            },
            Ok(pem) => match certs::not_after(pem) {
                None => CertItem {
                    source: source.clone(),
                    status: Health::Fail,
                    not_after: None,
                    days_left: None,
                    detail: "not a PEM certificate".into(),
                },
                Some(end) => {
                    let days = (end - now).whole_days();
                    let date = end.date().to_string();
                    let (status, detail) = if end <= now {
                        (Health::Fail, format!("expired on {date}"))
                    } else if days < EXPIRY_WARNING_DAYS {
                        (
                            Health::Warn,
                            format!("expires on {date}, in {days} day(s): run apply to renew"),
                        )
                    } else {
                        (Health::Ok, format!("expires on {date}"))
                    };
                    CertItem {
                        source: source.clone(),
                        status,
                        not_after: Some(
                            end.format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or(date),
                        ),
                        days_left: Some(days),
                        detail,
                    }
                }
            },
        };
        list.push(item);
    }
    let worst = list.iter().map(|c| c.status).max().unwrap_or(Health::Ok);
    let bad: Vec<String> = list
        .iter()
        .filter(|c| c.status != Health::Ok)
        .map(|c| format!("{}: {}", c.source, c.detail))
        .collect();
    let earliest = list
        .iter()
        .filter(|c| c.days_left.is_some())
        .min_by_key(|c| c.days_left);
    let mut detail = if bad.is_empty() {
        match earliest {
            Some(c) => format!(
                "{} checked; the first to expire: {} ({})",
                list.len(),
                c.source,
                c.detail
            ),
            None => "none found".into(),
        }
    } else {
        bad.join("; ")
    };
    if !reachable {
        detail.push_str(" (in-cluster certificates not read: the API server did not answer)");
    }
    CertsItem {
        item: Item::new(worst, detail),
        certificates: list,
    }
}
