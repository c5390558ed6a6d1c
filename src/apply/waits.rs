//! Waits on the workload: the StatefulSet rollout (stopping early on pod
//! problems the API server or kubelet report) and CockroachDB's own health
//! read through the pod proxy.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::k8s::events;
use crate::k8s::wait::{Seen, poll};
use crate::k8s::{Cluster, WaitError, error_text};
use crate::names;
use crate::progress::Progress;

/// What to wait for after the StatefulSet was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Every pod Running on the update revision: before `cockroach init`,
    /// CockroachDB's readiness probe cannot pass yet.
    Running,
    /// The rollout is complete: every pod on the update revision and Ready.
    Ready,
}

/// Why a StatefulSet rollout did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A pod cannot pull its image, crashes or cannot be scheduled.
    #[error("{problem}\n      hint: {}", .problem.hint(.namespace))]
    Pod {
        namespace: String,
        problem: crate::rollout::PodProblem,
    },
    /// The StatefulSet controller could not create pods: the API server
    /// refused them (`why`, from its `FailedCreate` event).
    #[error(
        "{seen}: the API server refused the StatefulSet's pods: {why}\n      hint: `kubectl -n {namespace} describe statefulset {}` shows the events; make the pod template (cockroachdb.templates_dir) pass the namespace's Pod Security level and policies",
        names::STATEFULSET
    )]
    PodsRefused {
        namespace: String,
        seen: String,
        why: String,
    },
    #[error("StatefulSet {namespace}/{} is gone", names::STATEFULSET)]
    Gone { namespace: String },
    #[error("{}", error_text(.0))]
    Api(kube::Error),
    #[error(transparent)]
    Wait(WaitError),
}

/// Waits for the zone's StatefulSet rollout (see [`WaitFor`]); stops early,
/// naming pod, container and reason, when a pod cannot pull its image,
/// crashes, cannot be scheduled, or the API server refuses its pods.
pub async fn wait_rollout(
    cluster: &Cluster,
    namespace: &str,
    want: i32,
    until: WaitFor,
    timeout: Duration,
    progress: Progress,
) -> Result<(), RolloutError> {
    // The StatefulSet as this run last read or wrote it: a rollout complete
    // there needs no further read (pods Ready on the update revision are
    // also Running).
    if let Some(Some(set)) = cluster
        .known
        .get::<StatefulSet>(namespace, names::STATEFULSET, false)
        && crate::rollout::rollout_state(&set, want).complete
    {
        progress.count(
            &cluster.zone,
            "pods",
            want.max(0) as usize,
            want.max(0) as usize,
        );
        return Ok(());
    }
    let selector = format!("{}={}", names::APP_KEY, names::APP);
    let stop = |e: RolloutError| WaitError::failed(e);
    let result = poll(timeout, || {
        let selector = selector.clone();
        let namespace = namespace.to_string();
        async move {
            // The StatefulSet controller's Warning events are read in the
            // same round: a poll that is not done needs them, and reading
            // them after the other two would cost a round trip each time.
            let (set, list, warnings) = tokio::join!(
                cluster.read::<StatefulSet>(&namespace, names::STATEFULSET),
                cluster.list_in::<Pod>(&namespace, Some(&selector)),
                cluster.warning_events(&namespace, "StatefulSet", names::STATEFULSET)
            );
            let set = set
                .map_err(|e| stop(RolloutError::Api(e)))?
                .ok_or_else(|| {
                    stop(RolloutError::Gone {
                        namespace: namespace.clone(),
                    })
                })?;
            let list = list.map_err(|e| stop(RolloutError::Api(e)))?;
            if let Some(problem) = list.iter().find_map(crate::rollout::pod_problem) {
                return Err(stop(RolloutError::Pod { namespace, problem }));
            }
            let update = set
                .status
                .as_ref()
                .and_then(|s| s.update_revision.clone())
                .unwrap_or_default();
            let state = crate::rollout::rollout_state(&set, want);
            let running = list
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        && p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("controller-revision-hash"))
                            .is_some_and(|r| *r == update)
                })
                .count() as i32;
            let done = match until {
                WaitFor::Ready => state.complete,
                WaitFor::Running => running >= want && !update.is_empty(),
            };
            progress.count(
                &cluster.zone,
                "pods",
                running.max(0) as usize,
                want.max(0) as usize,
            );
            if done {
                return Ok(Seen::Done(()));
            }
            let mut others: Vec<String> = list.iter().filter_map(not_ready).collect();
            others.sort();
            let seen = format!(
                "{} in namespace {namespace}{}",
                match until {
                    WaitFor::Ready => state.seen.clone(),
                    WaitFor::Running =>
                        format!("{running}/{want} pods running on the new revision"),
                },
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", others.join(", "))
                }
            );
            // The StatefulSet controller records why it could not create a
            // pod on the StatefulSet; a refusal will not change by waiting.
            // Events that cannot be read only cost the early answer.
            let warnings = warnings.unwrap_or_default();
            match events::pod_create_failure(&set.metadata, &warnings) {
                Some(events::PodCreateFailure::Refused(why)) => {
                    Err(stop(RolloutError::PodsRefused {
                        namespace,
                        seen,
                        why,
                    }))
                }
                Some(events::PodCreateFailure::Other(why)) => {
                    Ok(Seen::Waiting(format!("{seen}; last FailedCreate: {why}")))
                }
                None => Ok(Seen::Waiting(seen)),
            }
        }
    })
    .await;
    result.map_err(|e| match e {
        WaitError::Failed(why) => match why.downcast::<RolloutError>() {
            Ok(e) => *e,
            Err(other) => RolloutError::Wait(WaitError::Failed(other)),
        },
        other => RolloutError::Wait(other),
    })
}

/// A pod that is not Running and Ready, as `name: phase`.
fn not_ready(p: &Pod) -> Option<String> {
    let name = p.metadata.name.clone().unwrap_or_default();
    if p.metadata.deletion_timestamp.is_some() {
        return Some(format!("{name}: terminating"));
    }
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    (phase != "Running" || !ready).then(|| {
        format!(
            "{name}: {phase}{}",
            if phase == "Running" {
                ", not ready"
            } else {
                ""
            }
        )
    })
}

/// CockroachDB's view of the federation, read through each API server's
/// pod proxy (`/_status/vars` on the HTTP port of every node; the range
/// gauges are per store, so they are summed): the problems that make it
/// unhealthy, empty when healthy. Also every existing StatefulSet's rollout
/// must be complete.
pub async fn federation_health(clusters: &[&Cluster]) -> Vec<String> {
    let reads = clusters.iter().map(|c| async move {
        let mut problems = Vec::new();
        let mut under = 0.0;
        let mut unavailable = 0.0;
        let set = match c
            .read::<StatefulSet>(&c.namespace, names::STATEFULSET)
            .await
        {
            Ok(Some(set)) => set,
            Ok(None) => return (problems, under, unavailable),
            Err(e) => {
                problems.push(format!(
                    "{}: reading StatefulSet: {}",
                    c.zone,
                    error_text(&e)
                ));
                return (problems, under, unavailable);
            }
        };
        let want = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let state = crate::rollout::rollout_state(&set, want);
        if !state.complete {
            problems.push(format!(
                "{}: StatefulSet {}/{}: {}",
                c.zone,
                c.namespace,
                names::STATEFULSET,
                state.seen
            ));
        }
        let selector = format!("{}={}", names::APP_KEY, names::APP);
        let list = match c.list_in::<Pod>(&c.namespace, Some(&selector)).await {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{}: listing pods: {}", c.zone, error_text(&e)));
                return (problems, under, unavailable);
            }
        };
        for p in &list {
            let name = p.metadata.name.clone().unwrap_or_default();
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if p.metadata.deletion_timestamp.is_some() || phase != "Running" {
                let what = if phase == "Running" {
                    "terminating".to_string()
                } else {
                    phase
                };
                problems.push(format!("{}: pod {name} is {what}", c.zone));
                continue;
            }
            match node_vars(c, &c.namespace, &name).await {
                Ok(text) => {
                    under +=
                        crate::rollout::gauge_sum(&text, "ranges_underreplicated").unwrap_or(0.0);
                    unavailable +=
                        crate::rollout::gauge_sum(&text, "ranges_unavailable").unwrap_or(0.0);
                }
                Err(e) => problems.push(format!("{}: pod {name}: metrics unreadable: {e}", c.zone)),
            }
        }
        (problems, under, unavailable)
    });
    let mut problems = Vec::new();
    let (mut under, mut unavailable) = (0.0, 0.0);
    for (p, u, a) in futures::future::join_all(reads).await {
        problems.extend(p);
        under += u;
        unavailable += a;
    }
    if unavailable > 0.0 {
        problems.push(format!(
            "CockroachDB reports {unavailable} unavailable ranges (ranges_unavailable)"
        ));
    }
    if under > 0.0 {
        problems.push(format!(
            "CockroachDB reports {under} under-replicated ranges (ranges_underreplicated)"
        ));
    }
    problems
}

/// `/_status/vars` of one CockroachDB node through the API server's pod proxy.
pub(super) async fn node_vars(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
) -> Result<String, NodeVarsError> {
    let read = cluster.pod_proxy_get(namespace, pod, names::HTTP_PORT, "_status/vars");
    // The proxy answers 503 while nothing listens, which the client's retry
    // layer would retry for minutes: a bounded read is an answer too.
    match tokio::time::timeout(NODE_VARS_TIMEOUT, read).await {
        Ok(r) => r.map_err(NodeVarsError::Api),
        Err(_) => Err(NodeVarsError::NoAnswer),
    }
}

/// Why a node's `/_status/vars` could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum NodeVarsError {
    #[error("{}", error_text(.0))]
    Api(kube::Error),
    #[error(
        "no answer within {}s (the API server's proxy cannot reach the node)",
        NODE_VARS_TIMEOUT.as_secs()
    )]
    NoAnswer,
}

/// Bound of one `/_status/vars` read through the pod proxy.
pub(super) const NODE_VARS_TIMEOUT: Duration = Duration::from_secs(3);

/// Waits until [`federation_health`] finds no problem.
pub(super) async fn wait_healthy(
    clusters: &[&Cluster],
    timeout: Duration,
) -> Result<(), WaitError> {
    poll(timeout, || async {
        let problems = federation_health(clusters).await;
        Ok(if problems.is_empty() {
            Seen::Done(())
        } else {
            Seen::Waiting(problems.join("; "))
        })
    })
    .await
}

/// What the controller of `owner` (a `kind` in `namespace`) last said about
/// pods it could not create, if anything newer than our last change. Events
/// that cannot be read only cost the early answer.
pub(super) async fn pod_create_failure(
    cluster: &Cluster,
    namespace: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> Option<events::PodCreateFailure> {
    let name = owner.name.as_deref().unwrap_or_default();
    let list = cluster.warning_events(namespace, kind, name).await.ok()?;
    events::pod_create_failure(owner, &list)
}
