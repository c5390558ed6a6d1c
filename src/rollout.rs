//! What a StatefulSet rollout and the CockroachDB behind it look like from
//! their objects and metrics, so that waits tell the truth: whether the
//! rollout is complete (new revision everywhere, every pod Ready), what in
//! a pod will not get better by waiting (an image that does not pull, a
//! crashing container, a pod nobody can schedule), and the replication
//! gauges CockroachDB exports on `/_status/vars`.
//!
//! Pure: the I/O layer ([`crate::apply`]) reads the objects and the
//! metrics and passes them in; nothing here talks to a cluster.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

/// Container waiting reasons that waiting does not cure: kubelet reports
/// them and backs off (Kubernetes docs, "Images" → "Image pull backoff";
/// "Debug Running Pods"; `CrashLoopBackOff` after a crash).
const STUCK_REASONS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Something in a pod that will not get better by waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    /// None for a pod-level problem (Unschedulable).
    pub container: Option<String>,
    pub reason: String,
    pub message: String,
    pub restarts: i32,
}

impl std::fmt::Display for PodProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}", self.pod)?;
        if let Some(c) = &self.container {
            write!(f, ", container {c}")?;
        }
        write!(f, ": {}", self.reason)?;
        if self.reason == "CrashLoopBackOff" {
            write!(f, " (restarted {} times)", self.restarts)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl PodProblem {
    /// What to do about it.
    pub fn hint(&self, namespace: &str) -> String {
        let describe = format!("`kubectl -n {namespace} describe pod {}`", self.pod);
        match self.reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => format!(
                "check cockroachdb.image (name, tag, registry access and pull secrets); {describe} shows the pull errors. After fixing it, apply again: the StatefulSet replaces the pod"
            ),
            "CrashLoopBackOff" => format!(
                "`kubectl -n {namespace} logs {} --previous` shows why the container exits; fix the config or image and apply again",
                self.pod
            ),
            "Unschedulable" => format!(
                "no node can take the pod: lower cockroachdb cpu/memory requests or add capacity; {describe} shows the scheduler's reasons"
            ),
            _ => format!("{describe} shows the details"),
        }
    }
}

/// The first problem of `pod` that waiting will not cure, if any.
pub fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in statuses {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.clone().unwrap_or_default();
        if STUCK_REASONS.contains(&reason.as_str()) {
            return Some(PodProblem {
                pod: name,
                container: Some(c.name.clone()),
                reason,
                message: waiting.message.clone().unwrap_or_default(),
                restarts: c.restart_count,
            });
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(PodProblem {
        pod: name,
        container: None,
        reason: "Unschedulable".into(),
        message: unschedulable.message.clone().unwrap_or_default(),
        restarts: 0,
    })
}

/// How far a StatefulSet's rollout is, as its controller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutState {
    /// The controller saw the latest spec, every pod is on the update
    /// revision (`currentRevision == updateRevision`), and `replicas`,
    /// `updatedReplicas` and `readyReplicas` all equal `want`.
    pub complete: bool,
    /// "2/3 updated, 1/3 ready, revision cockroachdb-5d8f (current cockroachdb-77aa)".
    pub seen: String,
}

/// The rollout state of `set` for `want` replicas (the number we applied).
pub fn rollout_state(set: &StatefulSet, want: i32) -> RolloutState {
    let status = set.status.clone().unwrap_or_default();
    let generation = set.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let update = status.update_revision.clone().unwrap_or_default();
    let current = status.current_revision.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let complete = observed
        && !update.is_empty()
        && update == current
        && status.replicas == want
        && updated == want
        && ready == want;
    let mut seen = format!("{updated}/{want} updated, {ready}/{want} ready");
    if status.replicas != want {
        seen.push_str(&format!(", {} pods", status.replicas));
    }
    if !observed {
        seen.push_str(", the controller has not seen the change yet");
    } else if update != current {
        seen.push_str(&format!(", revision {update} (current {current})"));
    }
    RolloutState { complete, seen }
}

/// The sum of a gauge over the lines of CockroachDB's Prometheus text
/// (one line per store), or None when the metric is missing.
pub fn gauge_sum(text: &str, metric: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None // another metric with this prefix
        };
        let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) else {
            continue;
        };
        *found.get_or_insert(0.0) += v;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "cockroachdb-2"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn image_pull_and_crash_loops_and_unschedulable_pods_are_problems() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "cockroachdb", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}));
        let problem = pod_problem(&p).unwrap();
        assert_eq!(
            problem.to_string(),
            "pod cockroachdb-2, container cockroachdb: ImagePullBackOff: Back-off pulling image \"x\""
        );
        assert!(problem.hint("ns").contains("cockroachdb.image"));

        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "cockroachdb", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}));
        assert_eq!(
            pod_problem(&p).unwrap().to_string(),
            "pod cockroachdb-2, container cockroachdb: CrashLoopBackOff (restarted 4 times): back-off 40s"
        );

        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        );
        assert_eq!(
            pod_problem(&p).unwrap().to_string(),
            "pod cockroachdb-2: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
        );

        // Starting containers and running ones are not problems.
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "cockroachdb", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(pod_problem(&p), None);
    }

    fn set(generation: i64, status: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "cockroachdb", "generation": generation}, "status": status})).unwrap()
    }

    #[test]
    fn a_rollout_is_complete_only_on_the_new_revision_with_every_pod_ready() {
        let done = set(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
            "currentRevision": "r2", "updateRevision": "r2"}),
        );
        assert!(rollout_state(&done, 3).complete);
        assert!(
            !rollout_state(&done, 4).complete,
            "fewer pods than we asked for"
        );
        let rolling = set(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
            "currentRevision": "r1", "updateRevision": "r2"}),
        );
        let s = rollout_state(&rolling, 3);
        assert!(!s.complete);
        assert_eq!(s.seen, "1/3 updated, 3/3 ready, revision r2 (current r1)");
        let stale = set(
            3,
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
            "currentRevision": "r2", "updateRevision": "r2"}),
        );
        assert!(
            !rollout_state(&stale, 3).complete,
            "the controller has not seen generation 3"
        );
    }

    #[test]
    fn gauges_are_summed_over_stores_and_prefixes_do_not_match() {
        let text = "# TYPE ranges_underreplicated gauge\nranges_underreplicated{store=\"1\",node_id=\"1\"} 2\nranges_underreplicated{store=\"2\",node_id=\"1\"} 3\nranges_underreplicated_total 9\nranges_unavailable 0\n";
        assert_eq!(gauge_sum(text, "ranges_underreplicated"), Some(5.0));
        assert_eq!(gauge_sum(text, "ranges_unavailable"), Some(0.0));
        assert_eq!(gauge_sum(text, "ranges"), None);
    }
}
