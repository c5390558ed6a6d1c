//! Rolling StatefulSet changes one zone at a time, health-gated; the
//! decommission of removed zones (`--prune`); the final readiness wait.

use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;

use super::ApplyOptions;
use super::decommission;
use super::decommission::DecommissionError;
use super::phases::apply_objects;
use super::preflight::Prepared;
use super::report::{ObjectReport, StepTime, ZoneReport};
use super::waits::{WaitFor, wait_healthy, wait_rollout};
use crate::k8s::{Action, Cluster, ClusterInfo};
use crate::plan::{self, Object, Stage, ZonePlan};
use crate::progress::Progress;
use crate::zone_error::{ErrorKind, Step, ZoneError};

/// The rolling changes, one zone at a time in config order: apply the
/// StatefulSet, wait until its rollout is complete, then (gated) until
/// CockroachDB reports no under-replicated and no unavailable ranges.
/// The first zone that fails stops the rest; their StatefulSets stay as
/// they were.
pub(super) async fn roll_zones(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    prepared: &Prepared,
    opts: &ApplyOptions,
    progress: Progress,
    reports: &mut [ZoneReport],
) {
    let all: Vec<&Cluster> = clusters.iter().map(|(c, _)| c).collect();
    let mut stopped_by: Option<String> = None;
    for ((cluster, _), report) in clusters.iter().zip(reports.iter_mut()) {
        if !prepared.rolling.contains(&cluster.zone) || report.error.is_some() {
            continue;
        }
        if let Some(first) = &stopped_by {
            let e = ZoneError::new(
                Step::Rolling,
                ErrorKind::NotRolled {
                    first: first.clone(),
                },
            );
            progress.say(&cluster.zone, e.text());
            report.error = Some(e);
            continue;
        }
        let zone = plan.zone(&cluster.zone).expect("every zone is planned");
        let t = Instant::now();
        let result = async {
            let sts: Vec<&Object> = zone
                .stage(Stage::Workload)
                .filter(|o| matches!(o, Object::StatefulSet(_)))
                .collect();
            progress.say(&cluster.zone, "rolling StatefulSet (one zone at a time)");
            match (prepared.scale_downs.get(&cluster.zone), sts.first()) {
                (Some(&live), Some(planned)) => {
                    let scale_down =
                        |e| ZoneError::new(Step::ScaleDown, ErrorKind::Decommission(e));
                    let init = init_job(plan).map_err(scale_down)?;
                    let (before, after) = decommission::scale_down(
                        cluster,
                        planned,
                        init,
                        live,
                        opts.wait_timeout,
                        progress,
                    )
                    .await
                    .map_err(scale_down)?;
                    report.objects.push(ObjectReport::new(
                        &cluster.zone,
                        planned,
                        Action::Configured,
                        &before,
                        &after,
                    ));
                }
                _ => apply_objects(cluster, sts, false, false, report).await?,
            }
            let want = wait_zone_ready(cluster, zone, opts, progress).await?;
            progress.say(
                &cluster.zone,
                format!("rollout complete: {want}/{want} pods updated and ready"),
            );
            if opts.gated {
                wait_healthy(&all, opts.wait_timeout)
                    .await
                    .map_err(|e| ZoneError::new(Step::Health, ErrorKind::Wait(e)))?;
                progress.say(
                    &cluster.zone,
                    "CockroachDB reports every range fully replicated",
                );
            }
            Ok::<_, ZoneError>(())
        }
        .await;
        report.steps.push(StepTime {
            step: "rolling update".into(),
            seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if let Err(e) = result {
            progress.say(&cluster.zone, format!("failed: {}", e.text()));
            report.error = Some(e);
            stopped_by = Some(cluster.zone.clone());
        }
    }
}

/// The planned init Job (first zone): the template of the one-off
/// `cockroach` Jobs that decommission nodes.
pub(super) fn init_job(plan: &plan::Plan) -> Result<&Job, DecommissionError> {
    plan.zones
        .iter()
        .flat_map(|z| z.stage(Stage::Init))
        .find_map(|o| match o {
            Object::Job(j) => Some(j),
            _ => None,
        })
        .ok_or(DecommissionError::NoInitJob)
}

/// `--prune`: the removed zones' nodes are decommissioned (from the first
/// zone) before any DNS forwarding or join list changes.
pub(super) async fn decommission_removed(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    removed: &[String],
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<(), DecommissionError> {
    let Some((cluster, _)) = clusters.first() else {
        return Ok(());
    };
    if opts.dry_run {
        progress.say(
            &cluster.zone,
            format!(
                "would decommission every CockroachDB node of removed zone(s) {} first",
                removed.join(", ")
            ),
        );
        return Ok(());
    }
    let init = init_job(plan)?;
    decommission::removed_zones(cluster, init, removed, opts.wait_timeout, progress).await
}

/// After init (or a re-run), every zone's rollout must be complete: pods on
/// the new revision and Ready. Skipped when the first zone (which runs
/// `cockroach init`) failed: its nodes cannot become Ready then.
pub(super) async fn wait_ready_everywhere(
    clusters: &[(Cluster, ClusterInfo)],
    plan: &plan::Plan,
    opts: &ApplyOptions,
    progress: Progress,
    reports: &mut [ZoneReport],
) {
    if reports.first().is_none_or(|r| r.error.is_some()) {
        return;
    }
    let waits = clusters
        .iter()
        .zip(reports.iter())
        .map(|((cluster, _), report)| {
            let zone = plan.zone(&cluster.zone).expect("every zone is planned");
            let skip = report.error.is_some();
            async move {
                if skip {
                    return None;
                }
                Some(wait_zone_ready(cluster, zone, opts, progress).await)
            }
        });
    let results = futures::future::join_all(waits).await;
    for (((cluster, _), report), r) in clusters.iter().zip(reports.iter_mut()).zip(results) {
        if let Some(r) = r
            && let Some(e) = record_ready(cluster, report, r, progress)
        {
            progress.say(&cluster.zone, format!("failed: {}", e.text()));
            report.error = Some(e);
        }
    }
}

/// Says that a zone's pods are ready (when the run changed something
/// there); the wait's error otherwise.
pub(super) fn record_ready(
    cluster: &Cluster,
    report: &ZoneReport,
    ready: Result<i32, ZoneError>,
    progress: Progress,
) -> Option<ZoneError> {
    match ready {
        Ok(want) => {
            if !report.unchanged() {
                progress.say(
                    &cluster.zone,
                    format!("{want}/{want} CockroachDB pods ready"),
                );
            }
            None
        }
        Err(e) => Some(e),
    }
}

/// Waits until the zone's rollout is complete (every pod on the new
/// revision and Ready); the replicas it waited for.
pub(super) async fn wait_zone_ready(
    cluster: &Cluster,
    zone: &ZonePlan,
    opts: &ApplyOptions,
    progress: Progress,
) -> Result<i32, ZoneError> {
    let want = config_replicas(zone);
    wait_rollout(
        cluster,
        &zone.namespace,
        want,
        WaitFor::Ready,
        opts.wait_timeout,
        progress,
    )
    .await
    .map(|()| want)
    .map_err(|e| {
        ZoneError::new(
            Step::Rollout {
                namespace: zone.namespace.clone(),
            },
            ErrorKind::Rollout(e),
        )
    })
}

pub(super) fn config_replicas(zone: &ZonePlan) -> i32 {
    zone.stage(Stage::Workload)
        .find_map(|o| match o {
            Object::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas),
            _ => None,
        })
        .unwrap_or(1)
}
