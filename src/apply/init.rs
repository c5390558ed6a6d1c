//! `cockroach init`, once: the init Job in the first zone and the
//! StatefulSet's initialised mark.
//!
//! The mark (an annotation on the StatefulSet) is set only after the Job
//! completed, so a re-run reads the StatefulSet and need not read the Job.
//! The Job is created, never applied (a Job's template cannot change); one
//! that exists already (an earlier run stopped before the mark, or someone
//! created it meanwhile) is waited for instead.

use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use serde::Serialize;

use super::ApplyOptions;
use super::job::{self, JobEnd, JobWaitError};
use crate::k8s::{Cluster, error_text};
use crate::names;
use crate::plan::{Object, ZonePlan};

/// What became of `cockroach init` in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// The StatefulSet carries the initialised mark.
    AlreadyInitialised,
    /// The init Job had completed in an earlier run (the mark is set now).
    CompletedEarlier,
    /// Dry run: the init Job exists and has not finished.
    JobRunning,
    /// Dry run: the Job would be created.
    WouldRun,
    /// This run created the Job and it succeeded.
    Initialised,
    /// The Job existed already (not created by this run) and completed
    /// while this run waited.
    InitialisedByExistingJob,
}

impl InitOutcome {
    /// Whether the run changed (or in a dry run, would change) something.
    pub fn changes(self) -> bool {
        matches!(
            self,
            InitOutcome::WouldRun
                | InitOutcome::Initialised
                | InitOutcome::InitialisedByExistingJob
        )
    }
}

impl fmt::Display for InitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitOutcome::AlreadyInitialised => "cluster already initialised",
            InitOutcome::CompletedEarlier => {
                "cluster already initialised (init Job completed earlier)"
            }
            InitOutcome::JobRunning => "init Job running",
            InitOutcome::WouldRun => "would run cockroach init (Job cluster-init-secure)",
            InitOutcome::Initialised => "initialised (cockroach init succeeded)",
            InitOutcome::InitialisedByExistingJob => "initialised (init Job completed)",
        })
    }
}

/// The report (`apply -o json`) keeps the sentence: the schema's `init` is
/// a string.
impl Serialize for InitOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why `cockroach init` did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("reading {what}: {}", error_text(.source))]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating {job}: {}", error_text(.source))]
    Create {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("init Job {name} failed: {message}")]
    Failed { name: String, message: String },
    #[error("init Job {name} was deleted")]
    Deleted { name: String },
    #[error(
        "init Job {name}: {seen}: the API server refused the Job's pods: {why}\n      hint: `kubectl -n {namespace} describe job {name}` shows the events; make the Job template (cockroachdb.templates_dir) pass the namespace's Pod Security level and policies, then delete the Job and apply again"
    )]
    PodsRefused {
        namespace: String,
        name: String,
        seen: String,
        why: String,
    },
    #[error("waiting for cockroach init: {0}")]
    Wait(crate::k8s::WaitError),
    #[error("marking StatefulSet {}/{} initialised: {}", .namespace, names::STATEFULSET, error_text(.source))]
    Mark {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the plan's init object {0} is not a Job")]
    NotAJob(String),
}

/// Runs `cockroach init` once: never when the Job already exists or the
/// StatefulSet carries the initialised annotation.
pub(super) async fn init(
    cluster: &Cluster,
    zone: &ZonePlan,
    job: &Object,
    opts: &ApplyOptions,
) -> Result<InitOutcome, InitError> {
    let namespace = zone.namespace.as_str();
    let read = |what: String| move |source| InitError::Read { what, source };
    let marked = cluster
        .get_opt::<StatefulSet>(namespace, names::STATEFULSET, false)
        .await
        .map_err(read(format!(
            "StatefulSet {namespace}/{}",
            names::STATEFULSET
        )))?
        .and_then(|s| s.metadata.annotations)
        .is_some_and(|a| {
            a.get(names::INITIALIZED_ANNOTATION)
                .is_some_and(|v| v == "true")
        });
    if marked {
        return Ok(InitOutcome::AlreadyInitialised);
    }
    if opts.dry_run {
        let existing = cluster
            .read::<Job>(namespace, job.name())
            .await
            .map_err(read(job.describe()))?;
        return match existing.as_ref().map(|j| (j, job::outcome(j))) {
            Some((_, Some(JobEnd::Complete))) => Ok(InitOutcome::CompletedEarlier),
            Some((j, Some(JobEnd::Failed { message }))) => Err(failed(j, message)),
            Some((_, None)) => Ok(InitOutcome::JobRunning),
            None => Ok(InitOutcome::WouldRun),
        };
    }
    let Object::Job(typed) = job else {
        return Err(InitError::NotAJob(job.describe()));
    };
    let (created, current) = match cluster.create_in(namespace, typed).await {
        Ok(created) => (true, Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => (
            false,
            cluster
                .read::<Job>(namespace, job.name())
                .await
                .map_err(read(job.describe()))?,
        ),
        Err(source) => {
            return Err(InitError::Create {
                job: job.describe(),
                source,
            });
        }
    };
    let name = job.name().to_string();
    let earlier = match current.as_ref().map(job::outcome) {
        Some(Some(end)) if !created => Some(end),
        _ => None,
    };
    let completed_earlier = earlier.is_some();
    let end = match earlier {
        Some(end) => end,
        None => job::wait(cluster, namespace, &name, current, opts.wait_timeout)
            .await
            .map_err(|e| match e {
                JobWaitError::Deleted => InitError::Deleted { name: name.clone() },
                JobWaitError::PodsRefused { seen, why } => InitError::PodsRefused {
                    namespace: namespace.to_string(),
                    name: name.clone(),
                    seen,
                    why,
                },
                JobWaitError::Wait(e) => InitError::Wait(e),
            })?,
    };
    if let JobEnd::Failed { message } = end {
        return Err(InitError::Failed { name, message });
    }
    cluster
        .mark_initialised(namespace)
        .await
        .map_err(|source| InitError::Mark {
            namespace: namespace.to_string(),
            source,
        })?;
    Ok(match (created, completed_earlier) {
        (_, true) => InitOutcome::CompletedEarlier,
        (true, false) => InitOutcome::Initialised,
        (false, false) => InitOutcome::InitialisedByExistingJob,
    })
}

fn failed(job: &Job, message: String) -> InitError {
    InitError::Failed {
        name: job.metadata.name.clone().unwrap_or_default(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_of_the_job_counts_as_a_change() {
        let all = [
            InitOutcome::AlreadyInitialised,
            InitOutcome::CompletedEarlier,
            InitOutcome::JobRunning,
            InitOutcome::WouldRun,
            InitOutcome::Initialised,
            InitOutcome::InitialisedByExistingJob,
        ];
        let changing: Vec<InitOutcome> = all.into_iter().filter(|o| o.changes()).collect();
        assert_eq!(
            changing,
            [
                InitOutcome::WouldRun,
                InitOutcome::Initialised,
                InitOutcome::InitialisedByExistingJob
            ]
        );
        // The report keeps the sentence the JSON schema documents.
        assert_eq!(
            serde_json::to_value(InitOutcome::Initialised).unwrap(),
            "initialised (cockroach init succeeded)"
        );
    }
}
