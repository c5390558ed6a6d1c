//! The one-off Jobs apply runs in a cluster (`cockroach init`, and the
//! `cockroach node` commands of a decommission): a Job's outcome from its
//! conditions, and the bounded wait for it.
//!
//! The wait watches the Job from the state the caller holds (the answer of
//! its create), as kube-runtime's `await_condition` with
//! `conditions::is_job_completed` does, and also ends early when the Job
//! controller recorded that the API server refused the Job's pods (a
//! `FailedCreate` event, e.g. a Pod Security violation): that does not
//! change by waiting.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

use super::waits::pod_create_failure;
use crate::k8s::events::PodCreateFailure;
use crate::k8s::{Cluster, Seen, WaitError};

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Complete,
    /// The `Failed` condition, with its message (or reason).
    Failed {
        message: String,
    },
}

/// The Job's outcome from its status, `None` while it runs: its `Complete`
/// or `Failed` condition (the Job controller sets one when the Job
/// finishes), or a succeeded pod.
pub fn outcome(job: &Job) -> Option<JobEnd> {
    let status = job.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Some(JobEnd::Complete),
            "Failed" => {
                return Some(JobEnd::Failed {
                    message: c
                        .message
                        .clone()
                        .or_else(|| c.reason.clone())
                        .unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    (status.succeeded.unwrap_or(0) >= 1).then_some(JobEnd::Complete)
}

/// Why a Job was not seen to end.
#[derive(Debug, thiserror::Error)]
pub enum JobWaitError {
    #[error("the Job was deleted")]
    Deleted,
    /// The Job controller could not create the Job's pods: the API server
    /// refused them (`why`, from its `FailedCreate` event).
    #[error("the API server refused the Job's pods: {why}")]
    PodsRefused { seen: String, why: String },
    #[error(transparent)]
    Wait(WaitError),
}

/// Waits until the Job `namespace/name` ends, starting from `current`, its
/// state as the caller holds it; bounded by `timeout`.
pub async fn wait(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    current: Option<Job>,
    timeout: Duration,
) -> Result<JobEnd, JobWaitError> {
    // The Job controller records refused pods on the Job; read now and
    // then while the watch waits.
    let refused = |job: Option<Job>| async move {
        let Some(job) = job else { return Ok(()) };
        match pod_create_failure(cluster, namespace, "Job", &job.metadata).await {
            Some(PodCreateFailure::Refused(why)) => Err(Refused {
                seen: seen(&job),
                why,
            }),
            _ => Ok(()),
        }
    };
    let ended = cluster
        .watch_until_checked(
            namespace,
            name,
            current,
            timeout,
            |job: Option<&Job>| match job {
                None => Seen::Done(None),
                Some(job) => match outcome(job) {
                    Some(end) => Seen::Done(Some(end)),
                    None => Seen::Waiting(seen(job)),
                },
            },
            refused,
        )
        .await;
    match ended {
        Ok(Some(end)) => Ok(end),
        Ok(None) => Err(JobWaitError::Deleted),
        Err(WaitError::Failed(stop)) => match stop.downcast::<Refused>() {
            Ok(r) => Err(JobWaitError::PodsRefused {
                seen: r.seen,
                why: r.why,
            }),
            Err(other) => Err(JobWaitError::Wait(WaitError::Failed(other))),
        },
        Err(e) => Err(JobWaitError::Wait(e)),
    }
}

/// The refusal that stops [`wait`], carried through the watch's typed stop.
#[derive(Debug, thiserror::Error)]
#[error("the API server refused the Job's pods: {why}")]
struct Refused {
    seen: String,
    why: String,
}

/// What a running Job shows: its active and failed pods.
fn seen(job: &Job) -> String {
    let s = job.status.clone().unwrap_or_default();
    format!(
        "{} active, {} failed",
        s.active.unwrap_or(0),
        s.failed.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j"}, "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_outcome_comes_from_the_conditions_the_job_controller_sets() {
        assert_eq!(outcome(&job(serde_json::json!({"active": 1}))), None);
        assert_eq!(
            outcome(&job(serde_json::json!({"conditions": [
                {"type": "Complete", "status": "True"}]}))),
            Some(JobEnd::Complete)
        );
        assert_eq!(
            outcome(&job(serde_json::json!({"conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}))),
            Some(JobEnd::Failed {
                message: "Job has reached the specified backoff limit".into()
            })
        );
        assert_eq!(
            outcome(&job(serde_json::json!({"conditions": [
                {"type": "Failed", "status": "False"}], "succeeded": 1}))),
            Some(JobEnd::Complete)
        );
        assert_eq!(
            outcome(&job(serde_json::json!({"conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}))),
            Some(JobEnd::Failed {
                message: "DeadlineExceeded".into()
            })
        );
    }
}
