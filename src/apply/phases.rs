//! The two phases of every zone: A (namespace, our objects, the DNS load
//! balancer and its address) and B (DNS forwarding and restart, the
//! workload, `cockroach init` in the first zone).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::Value;

use super::ApplyOptions;
use super::init::init;
use super::preflight::dns_configmap;
use super::report::{ObjectReport, Timer, ZoneReport, action_word, join, summarize_objects};
use super::rolling::config_replicas;
use super::waits::{WaitFor, wait_rollout};
use crate::k8s::dns_configmap::{self, DnsChange};
use crate::k8s::lb;
use crate::k8s::{self, Action, Cluster, ClusterInfo, Seen, WaitError};
use crate::names;
use crate::plan::{DnsStatus, Object, Stage, ZonePlan};
use crate::progress::Progress;
use crate::resolve;
use crate::zone_error::{ErrorKind, Step, ZoneError};

pub(super) async fn apply_objects(
    cluster: &Cluster,
    objects: Vec<&Object>,
    dry_run: bool,
    new_namespace: bool,
    report: &mut ZoneReport,
) -> Result<(), ZoneError> {
    let zone = cluster.zone.as_str();
    let applies = objects.into_iter().map(|o| async move {
        // A dry run cannot place objects in a namespace that does not exist yet.
        if dry_run && new_namespace && o.namespace().is_some_and(|ns| ns == cluster.namespace) {
            return (
                Some(ObjectReport::new(
                    zone,
                    o,
                    Action::Created,
                    &Value::Null,
                    &Value::Null,
                )),
                None,
            );
        }
        match cluster.apply(o, dry_run).await {
            Ok(applied) => {
                let before = applied.before.unwrap_or(Value::Null);
                let r = ObjectReport::new(zone, o, applied.action, &before, &applied.after);
                (Some(r), None)
            }
            // A change the server refuses (an immutable field) is still
            // shown, with what it would take, and fails the zone.
            Err(error @ k8s::ApplyError::Refused { .. }) => {
                let k8s::ApplyError::Refused { live, .. } = &error else {
                    unreachable!("matched above")
                };
                let after = crate::diff::overlay(live, &o.to_value());
                let r = ObjectReport::new(zone, o, Action::Configured, live, &after);
                let hint = r
                    .warnings
                    .iter()
                    .find(|w| w.starts_with("immutable field"))
                    .cloned();
                (Some(r), Some(ErrorKind::Apply { error, hint }))
            }
            Err(error) => (None, Some(ErrorKind::Apply { error, hint: None })),
        }
    });
    let mut first_error = None;
    for (object, error) in futures::future::join_all(applies).await {
        if let Some(o) = object {
            report.objects.push(o);
        }
        if let Some(e) = error {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(kind) => Err(ZoneError::new(Step::Apply, kind)),
        None => Ok(()),
    }
}

/// Phase A of a zone: the objects that do not depend on any load
/// balancer's address, in three write rounds (the namespace with the DNS
/// load balancer and everything outside the namespace; the namespace's
/// objects and the DNS backup; the StatefulSet), then, at the same time,
/// the wait for the load balancer's address and the workload (the pods
/// running, `cockroach init` in the first zone). Neither the pods nor
/// `cockroach init` need the cross-cluster DNS: a CockroachDB node whose
/// join addresses do not resolve yet keeps retrying them, and `cockroach
/// init` talks to a node of its own zone. So the cloud's time to provision
/// the load balancer, the longest wait of the whole apply, is spent on
/// them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn phase_a(
    cluster: &Cluster,
    zone: &ZonePlan,
    first: bool,
    defer_sts: bool,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), ZoneError> {
    let t = Instant::now();
    let base: Vec<&Object> = zone.stage(Stage::Base).collect();
    let (namespace, rest) = base
        .split_first()
        .expect("the plan starts every zone with its namespace");
    let (statefulsets, workload_rest): (Vec<&Object>, Vec<&Object>) = zone
        .stage(Stage::Workload)
        .partition(|o| matches!(o, Object::StatefulSet(_)));
    // The DNS load balancer first, with the namespace and everything else
    // outside it: kube-system exists already, and the cloud's time to give
    // the load balancer an address is the longest wait of the whole apply.
    let (inside, outside): (Vec<&Object>, Vec<&Object>) = rest
        .iter()
        .copied()
        .chain(zone.stage(Stage::DnsLoadBalancer))
        .chain(workload_rest)
        .partition(|o| o.namespace() == Some(cluster.namespace.as_str()));
    // The namespace is marked as created by us where it is (see
    // `Cluster::apply`).
    let mut first_round = vec![*namespace];
    first_round.extend(outside);
    apply_objects(cluster, first_round, opts.dry_run, false, report).await?;
    let new_namespace = report
        .objects
        .first()
        .is_some_and(|o| o.action == Action::Created);
    let (applied, backup) = futures::join!(
        apply_objects(cluster, inside, opts.dry_run, new_namespace, report),
        save_dns_backup(cluster, zone, opts.dry_run)
    );
    applied?;
    report.dns_backup_saved = backup?;
    progress.say(
        &cluster.zone,
        summarize_objects(&report.objects, opts.dry_run),
    );
    timer.record("base objects", t);

    let lb = async {
        let mut timer = Timer { steps: Vec::new() };
        let result = dns_lb_addresses(cluster, opts, progress).await;
        timer.record("dns load balancer", t);
        (result, timer.steps)
    };
    let workload = async {
        let mut timer = Timer { steps: Vec::new() };
        let statefulsets = if defer_sts { Vec::new() } else { statefulsets };
        let result = apply_workload(
            cluster,
            zone,
            statefulsets,
            first,
            defer_sts,
            new_namespace,
            opts,
            progress.lane(1),
            &mut *report,
            &mut timer,
        )
        .await;
        (result, timer.steps)
    };
    let ((addresses, lb_steps), (workload, workload_steps)) = futures::join!(lb, workload);
    // The report lists objects in plan order.
    let order: Vec<(String, Option<String>, String)> = base
        .iter()
        .copied()
        .chain(zone.stage(Stage::DnsLoadBalancer))
        .chain(zone.stage(Stage::Workload))
        .map(|o| {
            (
                o.kind().to_string(),
                o.namespace().map(str::to_string),
                o.name().to_string(),
            )
        })
        .collect();
    report.objects.sort_by_key(|o| {
        order
            .iter()
            .position(|k| k.0 == o.kind && k.1 == o.namespace && k.2 == o.name)
    });
    timer.steps.extend(lb_steps);
    timer.steps.extend(workload_steps);
    // The load balancer's failure first: it is the earlier step, and it
    // holds up every zone's DNS forwarding.
    report.dns_addresses = addresses?;
    workload?;
    Ok(())
}

/// The DNS load balancer's address (host names resolved).
async fn dns_lb_addresses(
    cluster: &Cluster,
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<Vec<IpAddr>, ZoneError> {
    let (ips, hosts) = if opts.dry_run {
        match cluster
            .get_opt::<Service>(names::KUBE_SYSTEM, names::DNS_LB_SERVICE, false)
            .await
        {
            Ok(Some(svc)) => lb::ingress(&svc),
            _ => (Vec::new(), Vec::new()),
        }
    } else {
        progress.say(&cluster.zone, "waiting for the DNS load balancer address");
        progress.step(&cluster.zone, "LB pending");
        wait_lb(cluster, opts.wait_timeout)
            .await
            .map_err(|e| ZoneError::new(Step::WaitLb, ErrorKind::Wait(e)))?
    };
    let mut addresses = ips;
    for host in &hosts {
        let zone_name = &cluster.zone;
        progress.step(zone_name, "LB host name resolving");
        let resolved =
            resolve::resolve_until(host, opts.resolver, opts.wait_timeout, |e, waited| {
                progress.say(
                    zone_name,
                    format!(
                        "DNS load balancer {host} does not resolve yet ({}s): {e}",
                        waited.as_secs()
                    ),
                )
            })
            .await
            .map_err(|e| ZoneError::new(Step::ResolveLb, ErrorKind::Resolve(e)))?;
        progress.say(
            &cluster.zone,
            format!("DNS load balancer {host} resolves to {}", join(&resolved)),
        );
        addresses.extend(resolved);
    }
    addresses.sort();
    addresses.dedup();
    if !addresses.is_empty() {
        progress.say(
            &cluster.zone,
            format!("DNS load balancer address {}", join(&addresses)),
        );
    }
    Ok(addresses)
}

/// Saves the backup of the cluster's DNS ConfigMap, from what pre-flight
/// read, while the load balancers are provisioned: when the zone will
/// forward to others and pre-flight found no backup. Whether it did.
async fn save_dns_backup(
    cluster: &Cluster,
    zone: &ZonePlan,
    dry_run: bool,
) -> Result<bool, ZoneError> {
    if dry_run || matches!(zone.dns.status, DnsStatus::NotNeeded) {
        return Ok(false);
    }
    let provider = zone.dns.provider;
    let backup =
        cluster
            .known
            .get::<ConfigMap>(names::KUBE_SYSTEM, dns_configmap::BACKUP_CONFIGMAP, false);
    let current =
        cluster
            .known
            .get::<ConfigMap>(names::KUBE_SYSTEM, provider.configmap_name(), false);
    let (Some(None), Some(current)) = (backup, current) else {
        return Ok(false);
    };
    dns_configmap::save_backup(&cluster.client, provider, &current, &zone_labels(zone))
        .await
        .map_err(|e| ZoneError::new(Step::Forwarding, ErrorKind::Dns(e)))?;
    Ok(true)
}

fn zone_labels(zone: &ZonePlan) -> BTreeMap<String, String> {
    zone.objects[0]
        .object
        .metadata()
        .labels
        .clone()
        .unwrap_or_default()
}

/// Waits, by watching it from the state this run holds (the answer of its
/// apply), until the DNS load balancer Service has an ingress address or
/// host name. While it has none, the Service's Warning events are read now
/// and then: a cloud that refused it says why there, and waiting longer
/// would not help.
pub(super) async fn wait_lb(
    cluster: &Cluster,
    timeout: Duration,
) -> Result<(Vec<IpAddr>, Vec<String>), WaitError> {
    let current = cluster
        .get_opt::<Service>(names::KUBE_SYSTEM, names::DNS_LB_SERVICE, false)
        .await?;
    cluster
        .watch_until_checked(
            names::KUBE_SYSTEM,
            names::DNS_LB_SERVICE,
            current,
            timeout,
            |svc| {
                let Some(svc) = svc else {
                    return Seen::Waiting(format!(
                        "Service kube-system/{} does not exist",
                        names::DNS_LB_SERVICE
                    ));
                };
                let (ips, hosts) = lb::ingress(svc);
                if ips.is_empty() && hosts.is_empty() {
                    Seen::Waiting(format!(
                        "Service kube-system/{} has no load balancer ingress yet",
                        names::DNS_LB_SERVICE
                    ))
                } else {
                    Seen::Done((ips, hosts))
                }
            },
            |svc| {
                async move {
                    let Some(svc) = svc else { return Ok(()) };
                    // Events that cannot be read only cost the early answer.
                    if let Ok(list) = cluster
                        .warning_events(names::KUBE_SYSTEM, "Service", names::DNS_LB_SERVICE)
                        .await
                        && let Some(why) = lb::refusal(&svc, &list)
                    {
                        return Err(lb::LbRefused { why });
                    }
                    Ok(())
                }
            },
        )
        .await
}

/// Phase B of a zone, once every zone's DNS load balancer address is known:
/// merge the forwarding into the cluster's DNS config and restart DNS until
/// its pods run with it.
pub(super) async fn phase_b(
    cluster: &Cluster,
    info: &ClusterInfo,
    zone: &ZonePlan,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), ZoneError> {
    let t = Instant::now();
    let forwards = match &zone.dns.status {
        DnsStatus::Ready(f) => f.clone(),
        DnsStatus::NotNeeded => Vec::new(),
        DnsStatus::Pending { missing } if opts.dry_run => {
            progress.say(
                &cluster.zone,
                format!(
                    "DNS forwarding would be configured once the DNS load balancer of {} has an address",
                    missing.join(", ")
                ),
            );
            report.dns = Some(DnsChange::Updated);
            return Ok(());
        }
        DnsStatus::Pending { missing } => {
            return Err(ZoneError::new(
                Step::Forwarding,
                ErrorKind::DnsPending {
                    missing: missing.clone(),
                },
            ));
        }
    };
    let labels = zone_labels(zone);
    let federation = labels
        .get(names::FEDERATION_KEY)
        .cloned()
        .unwrap_or_default();
    let record = dns_configmap::forwarding_record(&federation, &forwards, &zone.dns.options);
    let backup_exists = report.dns_backup_saved
        || matches!(
            cluster.known.get::<ConfigMap>(
                names::KUBE_SYSTEM,
                dns_configmap::BACKUP_CONFIGMAP,
                false
            ),
            Some(Some(_))
        );
    let change = dns_configmap::configure(
        &cluster.client,
        zone.dns.provider,
        &forwards,
        &zone.dns.options,
        &labels,
        record.as_deref(),
        opts.dry_run,
        cluster.known.get::<ConfigMap>(
            names::KUBE_SYSTEM,
            zone.dns.provider.configmap_name(),
            false,
        ),
        backup_exists,
    )
    .await
    .map_err(|e| ZoneError::new(Step::Forwarding, ErrorKind::Dns(e)))?;
    report.dns = Some(change);
    // As read before our write: ours does not change who else manages it.
    let addon_manager = dns_configmap(cluster, zone.dns.provider)
        .await
        .ok()
        .flatten()
        .and_then(|cm| dns_configmap::addon_manager(&cm));
    if let Some(manager) = addon_manager {
        let warning = dns_configmap::addon_warning(zone.dns.provider.configmap_name(), &manager);
        progress.say(&cluster.zone, format!("warning: {warning}"));
        report.warnings.push(warning);
    }
    let restart_error = |e| ZoneError::new(Step::RestartDns, ErrorKind::Dns(e));
    // Restart whenever the pods were last restarted for other forwarding
    // than the ConfigMap now holds: also after a run that was stopped
    // between writing the ConfigMap and restarting.
    let restarted_for =
        match cluster
            .known
            .get::<Deployment>(names::KUBE_SYSTEM, &info.dns.deployment, false)
        {
            Some(Some(d)) => dns_configmap::restarted_record(&d),
            _ => dns_configmap::restarted_for(&cluster.client, &info.dns)
                .await
                .map_err(restart_error)?,
        };
    let restart = restarted_for != record;
    let state = match (change, opts.dry_run) {
        (DnsChange::Unchanged, _) => "already in place",
        (_, true) => "would be updated",
        (_, false) => "updated",
    };
    let provider = zone.dns.provider;
    let deployment = &info.dns.deployment;
    progress.say(
        &cluster.zone,
        match (restart, change, opts.dry_run) {
            (false, _, _) => format!("DNS forwarding {state} ({provider})"),
            (true, DnsChange::Unchanged, true) => format!(
                "DNS forwarding {state} ({provider}); deployment {deployment} would be restarted (its pods were not restarted for it)"
            ),
            (true, DnsChange::Unchanged, false) => format!(
                "DNS forwarding {state} ({provider}) but its pods were not restarted for it; restarting deployment {deployment}"
            ),
            (true, _, true) => format!(
                "DNS forwarding {state} ({provider}); deployment {deployment} would be restarted"
            ),
            (true, _, false) => {
                format!("DNS forwarding {state} ({provider}); restarting deployment {deployment}")
            }
        },
    );
    if restart {
        if !opts.dry_run {
            let restarted =
                dns_configmap::rollout_restart(&cluster.client, &info.dns, record.as_deref())
                    .await
                    .map_err(restart_error)?;
            progress.step(&cluster.zone, "DNS restarting");
            dns_configmap::wait_ready(
                &cluster.client,
                &info.dns,
                Some(restarted),
                opts.wait_timeout,
            )
            .await
            .map_err(restart_error)?;
            progress.say(&cluster.zone, "DNS ready");
        }
        report.dns_restarted = true;
    }
    timer.record("dns forwarding", t);
    Ok(())
}

/// The StatefulSet (`statefulsets`: none when `defer_sts`, a rolling
/// change done later one zone at a time by [`roll_zones`]), its pods
/// running, then the init Job in the first zone.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_workload(
    cluster: &Cluster,
    zone: &ZonePlan,
    statefulsets: Vec<&Object>,
    first: bool,
    defer_sts: bool,
    new_namespace: bool,
    opts: &ApplyOptions,
    progress: Progress,
    report: &mut ZoneReport,
    timer: &mut Timer,
) -> Result<(), ZoneError> {
    let t = Instant::now();
    let before = report.objects.len();
    apply_objects(cluster, statefulsets, opts.dry_run, new_namespace, report).await?;
    for o in &report.objects[before..] {
        progress.say(
            &cluster.zone,
            format!(
                "{} {}: {}",
                o.kind,
                o.name,
                action_word(o.action, opts.dry_run)
            ),
        );
    }
    if defer_sts {
        progress.say(
            &cluster.zone,
            "StatefulSet changes: rolled one zone at a time after the DNS and objects of every zone are in place",
        );
    } else if !opts.dry_run {
        let want = config_replicas(zone);
        wait_rollout(
            cluster,
            &zone.namespace,
            want,
            WaitFor::Running,
            opts.wait_timeout,
            progress,
        )
        .await
        .map_err(|e| {
            ZoneError::new(
                Step::Rollout {
                    namespace: zone.namespace.clone(),
                },
                ErrorKind::Rollout(e),
            )
        })?;
        progress.say(
            &cluster.zone,
            format!("{want}/{want} CockroachDB pods running on the new revision"),
        );
    }
    timer.record("statefulset", t);

    if first {
        let t = Instant::now();
        if let Some(job) = zone.stage(Stage::Init).next() {
            if !opts.dry_run {
                progress.step(&cluster.zone, "cockroach init");
            }
            let outcome = init(cluster, zone, job, opts)
                .await
                .map_err(|e| ZoneError::new(Step::Init, ErrorKind::Init(e)))?;
            progress.say(&cluster.zone, outcome.to_string());
            report.init = Some(outcome);
        }
        timer.record("init", t);
    }
    Ok(())
}
