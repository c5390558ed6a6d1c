//! `apply`: converge every zone's cluster to the plan.
//!
//! Concurrent across zones, ordered inside a zone:
//!
//! ```text
//! connect + pre-flight (all zones; any failure stops before changes)
//!   -> another federation's shared objects in a cluster, or zones removed
//!      from the config without --prune: refuse, before any change
//!   -> certificates (local)
//!   -> phase A per zone: namespace (annotated when we create it) with the
//!      DNS LB Service and the objects outside the namespace (ExternalName
//!      Service); then secrets, RBAC, services, PDB and the DNS backup; then
//!      at the same time: wait for the LB address (resolve hostnames), and
//!      the StatefulSet, its pods running, the init Job in the first zone if
//!      the cluster is not initialised (none of these needs cross-cluster DNS)
//!   -> barrier: every zone's DNS address is now known -> re-plan with it
//!   -> phase B per zone: merge DNS forwarding, rollout restart of DNS until
//!      its pods were restarted for that forwarding (recorded on the pod
//!      template)
//!   -> rolling StatefulSet changes, one zone at a time; every zone's pods
//!      Ready
//! ```
//!
//! One zone's failure after pre-flight fails that zone only; the others
//! finish their step and the report names it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::certs::CertBundle;
use crate::config::Config;
use crate::k8s::{Cluster, ClusterInfo};

use crate::plan::{self, Facts, ZoneFacts};
use crate::progress::Progress;
use phases::{phase_a, phase_b};
use report::Timer;
use rolling::{
    decommission_removed, record_ready, roll_zones, wait_ready_everywhere, wait_zone_ready,
};

pub(crate) mod decommission;
mod init;
mod job;
mod phases;
mod preflight;
mod report;
mod rolling;
mod waits;

pub use decommission::DecommissionError;
pub use init::{InitError, InitOutcome};
pub use preflight::{
    ApplyError, PreflightFailures, Prepared, check_ca, check_changes, check_removed_zones,
    connect_all,
};
pub use report::{ApplyReport, ObjectReport, REPORT_VERSION, StepTime, ZoneReport, render_summary};
pub use waits::RolloutError;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub prune: bool,
    /// Bound of each wait (LB address, DNS rollout, pods, init Job).
    pub wait_timeout: Duration,
    /// Zones worked on at the same time.
    pub concurrency: usize,
    /// DNS server for LB hostnames (default: the system's).
    pub resolver: Option<SocketAddr>,
    /// Start a rolling change even when the federation is not healthy now.
    pub allow_unhealthy: bool,
    /// Roll zones one at a time, each after the previous one's rollout is
    /// complete and CockroachDB reports no under-replicated and no
    /// unavailable ranges. Off only in tests ([`UNGATED_ENV`]).
    pub gated: bool,
    /// `--zone`: the DNS load balancer addresses of the zones that are not
    /// applied, read from their clusters; the applied zones' forwarding
    /// needs them. Empty when every zone is applied.
    pub other_zones: BTreeMap<String, Vec<IpAddr>>,
}

/// Test-only switch (an environment variable, not a flag): when set, zones
/// whose StatefulSet changes are rolled all at once, without the health
/// gate and the health check before it, as apply did before rolling changes
/// were gated. It exists so that a test can show the availability measure
/// fails without the gate. Never set it on real clusters.
pub const UNGATED_ENV: &str = "CRDB_MULTIREGION_TEST_UNGATED_ROLLOUT";

/// Runs apply on connected, pre-flighted clusters. Per-zone failures are in
/// the report; `Err` is a problem of the whole plan (e.g. a template).
pub async fn apply(
    config: &Config,
    certs: &CertBundle,
    clusters: Vec<(Cluster, ClusterInfo)>,
    prepared: &Prepared,
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();

    let mut facts = Facts::default();
    for (c, info) in &clusters {
        facts.zones.insert(
            c.zone.clone(),
            ZoneFacts {
                dns_addresses: Vec::new(),
                dns_provider: Some(info.dns.provider),
            },
        );
    }
    for (zone, addresses) in &opts.other_zones {
        facts.zones.insert(
            zone.clone(),
            ZoneFacts {
                dns_addresses: addresses.clone(),
                dns_provider: None,
            },
        );
    }
    let mut first_plan = prepared.planned.plan.clone();
    plan::replace_certs(&mut first_plan, config, certs)?;
    plan::refresh_dns(&mut first_plan, config, &facts);
    if !prepared.pruned.is_empty() {
        decommission_removed(&clusters, &first_plan, &prepared.pruned, opts, progress)
            .await
            .map_err(ApplyError::Prune)?;
    }
    let semaphore = Arc::new(Semaphore::new(opts.concurrency.max(1)));

    // Phase A.
    let phase_a = clusters.iter().map(|(cluster, info)| {
        let zone_plan = first_plan
            .zone(&cluster.zone)
            .expect("every zone is planned");
        let semaphore = semaphore.clone();
        let first = cluster.zone == config.first_zone().name;
        let defer = prepared.rolling.contains(&cluster.zone);
        async move {
            let _permit = semaphore.acquire().await;
            let mut report = ZoneReport {
                zone: cluster.zone.clone(),
                context: cluster.context.clone(),
                cluster: Some(info.clone()),
                ..ZoneReport::default()
            };
            let mut timer = Timer { steps: Vec::new() };
            let t = Instant::now();
            let result = phase_a(
                cluster,
                zone_plan,
                first,
                defer,
                opts,
                progress,
                &mut report,
                &mut timer,
            )
            .await;
            report.steps = timer.steps;
            report.seconds = t.elapsed().as_secs_f64();
            if let Err(e) = result {
                progress.say(&cluster.zone, format!("failed: {}", e.text()));
                progress.finish_zone(&cluster.zone, false);
                report.error = Some(e);
            }
            report
        }
    });
    let mut reports: Vec<ZoneReport> = futures::future::join_all(phase_a).await;

    for r in &reports {
        if let Some(f) = facts.zones.get_mut(&r.zone) {
            f.dns_addresses = r.dns_addresses.clone();
        }
    }
    let mut full_plan = first_plan;
    plan::refresh_dns(&mut full_plan, config, &facts);

    // Phase B. With no rolling change, every zone's readiness is waited for
    // at the same time as its DNS forwarding: the pods and `cockroach init`
    // are done (phase A), and a node that can only join once the forwarding
    // is in place simply becomes Ready later in the same wait.
    let ready_with_dns = !opts.dry_run
        && prepared.rolling.is_empty()
        && reports.first().is_some_and(|r| r.error.is_none());
    let phase_b = clusters
        .iter()
        .zip(reports.iter_mut())
        .map(|((cluster, info), report)| {
            let zone_plan = full_plan
                .zone(&cluster.zone)
                .expect("every zone is planned");
            let semaphore = semaphore.clone();
            async move {
                if report.error.is_some() {
                    return;
                }
                let _permit = semaphore.acquire().await;
                let mut timer = Timer {
                    steps: std::mem::take(&mut report.steps),
                };
                let t = Instant::now();
                let dns = phase_b(
                    cluster,
                    info,
                    zone_plan,
                    opts,
                    progress,
                    &mut *report,
                    &mut timer,
                );
                let ready = async {
                    match ready_with_dns {
                        true => {
                            Some(wait_zone_ready(cluster, zone_plan, opts, progress.lane(1)).await)
                        }
                        false => None,
                    }
                };
                let (mut result, ready) = futures::join!(dns, ready);
                report.steps = timer.steps;
                report.seconds += t.elapsed().as_secs_f64();
                if result.is_ok()
                    && let Some(ready) = ready
                    && let Some(e) = record_ready(cluster, report, ready, progress.lane(1))
                {
                    result = Err(e);
                }
                if let Err(e) = &result {
                    progress.say(&cluster.zone, format!("failed: {}", e.text()));
                }
                progress.finish_zone(&cluster.zone, result.is_ok());
                report.error = result.err();
            }
        });
    futures::future::join_all(phase_b).await;

    if !opts.dry_run {
        roll_zones(
            &clusters,
            &full_plan,
            prepared,
            opts,
            progress,
            &mut reports,
        )
        .await;
        if !ready_with_dns {
            wait_ready_everywhere(&clusters, &full_plan, opts, progress, &mut reports).await;
        }
    }

    for r in &mut reports {
        r.ok = r.error.is_none();
        r.seconds = (r.seconds * 1000.0).round() / 1000.0;
    }
    let ok = reports.iter().all(|r| r.ok);
    let changed = reports.iter().any(|r| !r.unchanged());
    Ok(ApplyReport {
        version: REPORT_VERSION,
        dry_run: opts.dry_run,
        ok,
        changed,
        zones: reports,
        elapsed_seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}
