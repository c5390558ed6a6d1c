//! Typed errors of one zone's work: the step that failed and why, the
//! cause kept as a value (an API error, a wait that ran out, a DNS config
//! problem) and chained through [`std::error::Error::source`]. Reports turn
//! them into text once, at the edge ([`ZoneError::text`]); code that needs
//! to know what went wrong matches on [`Step`] and [`ErrorKind`].

use std::fmt;

use crate::apply::{DecommissionError, InitError, RolloutError};
use crate::k8s::dns_configmap::{DnsConfError, RestoreError};
use crate::k8s::{self, PreflightProblem, WaitError, error_text};
use crate::names;
use crate::resolve::ResolveError;

/// What the zone was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Reaching the cluster (the cause says how it failed).
    Reach,
    /// Listing the objects of one kind.
    List { kind: &'static str },
    /// Deleting one object (`Kind ns/name`).
    Delete { object: String },
    /// Removing our labels from a namespace that existed before apply.
    Release { namespace: String },
    /// Waiting until deleted objects are gone.
    WaitDeletion,
    /// Giving the DNS config back.
    RestoreDns,
    /// Restarting DNS (or reading what it was last restarted for).
    RestartDns,
    /// Applying the zone's objects (the cause names the object).
    Apply,
    /// Waiting for the DNS load balancer's address.
    WaitLb,
    /// Resolving the DNS load balancer's host name.
    ResolveLb,
    /// Configuring DNS forwarding.
    Forwarding,
    /// Waiting for the StatefulSet's rollout in `namespace`.
    Rollout { namespace: String },
    /// `cockroach init`.
    Init,
    /// Decommissioning nodes and lowering the replicas of the StatefulSet.
    ScaleDown,
    /// The rolling change of the StatefulSet (one zone at a time).
    Rolling,
    /// Waiting for CockroachDB to report every range fully replicated.
    Health,
}

impl Step {
    /// The words put before the cause; none where the cause says it all.
    fn prefix(&self) -> Option<String> {
        match self {
            Step::Reach
            | Step::RestoreDns
            | Step::RestartDns
            | Step::Apply
            | Step::ResolveLb
            | Step::Forwarding
            | Step::Init
            | Step::ScaleDown
            | Step::Rolling => None,
            Step::WaitLb => Some("waiting for the DNS load balancer address".into()),
            Step::Rollout { namespace } => Some(format!(
                "waiting for the rollout of StatefulSet {namespace}/{}",
                names::STATEFULSET
            )),
            Step::Health => {
                Some("waiting for CockroachDB to report every range fully replicated".into())
            }
            Step::List { kind } => Some(format!("listing {kind}")),
            Step::Delete { object } => Some(format!("deleting {object}")),
            Step::Release { namespace } => {
                Some(format!("removing our labels from namespace {namespace}"))
            }
            Step::WaitDeletion => Some("waiting for deletion".into()),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.prefix()) {
            (_, Some(p)) => f.write_str(&p),
            (Step::Reach, None) => f.write_str("reaching the cluster"),
            (Step::RestoreDns, None) => f.write_str("restoring the DNS config"),
            (Step::RestartDns, None) => f.write_str("restarting DNS"),
            (Step::Apply, None) => f.write_str("applying objects"),
            (Step::ResolveLb, None) => f.write_str("resolving the DNS load balancer's host name"),
            (Step::Forwarding, None) => f.write_str("configuring DNS forwarding"),
            (Step::Init, None) => f.write_str("running cockroach init"),
            (Step::ScaleDown, None) => f.write_str("scaling down"),
            (_, None) => f.write_str("rolling the StatefulSet"),
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The API server answered with an error, or could not be reached.
    #[error("{}", error_text(.0))]
    Api(kube::Error),
    #[error(transparent)]
    Wait(WaitError),
    #[error("{}", .0.text())]
    Unreachable(PreflightProblem),
    #[error(transparent)]
    Dns(DnsConfError),
    #[error(transparent)]
    Restore(RestoreError),
    /// The API server refused an object; `hint` says what it would take.
    #[error("{error}{}", hint_line(.hint))]
    Apply {
        error: k8s::ApplyError,
        hint: Option<String>,
    },
    #[error("{}\n      hint: {}", .0, .0.hint())]
    Resolve(ResolveError),
    /// Forwarding needs the DNS address of zones that have none.
    #[error(
        "DNS forwarding not configured: no DNS load balancer address for {} (re-run apply once {} succeeded)",
        .missing.join(", "),
        if .missing.len() == 1 { "that zone has" } else { "those zones have" }
    )]
    DnsPending { missing: Vec<String> },
    #[error(transparent)]
    Rollout(RolloutError),
    #[error(transparent)]
    Init(InitError),
    #[error(transparent)]
    Decommission(DecommissionError),
    /// A rolling change stops at the first zone that fails.
    #[error(
        "its StatefulSet was not changed: the rolling change stopped at zone {first}, which failed first"
    )]
    NotRolled { first: String },
}

fn hint_line(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\n      hint: {h}"))
        .unwrap_or_default()
}

/// One zone's step failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub struct ZoneError {
    pub step: Step,
    #[source]
    pub kind: ErrorKind,
}

impl ZoneError {
    pub fn new(step: Step, kind: ErrorKind) -> Self {
        ZoneError { step, kind }
    }

    /// The text reports show: the step (where it adds something) and every
    /// cause, `: `-separated, each said once.
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = self.step.prefix().into_iter().collect();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&self.kind);
        while let Some(c) = cause {
            let s = c.to_string();
            if parts.last().is_none_or(|l| !l.ends_with(&s)) {
                parts.push(s);
            }
            cause = match c.downcast_ref::<ErrorKind>() {
                // These causes carry on in their own source.
                Some(ErrorKind::Wait(_) | ErrorKind::Dns(_) | ErrorKind::Restore(_)) | None => {
                    c.source()
                }
                // The others say their cause in their own text (the API's
                // message, the Job's output).
                Some(_) => None,
            };
        }
        parts.join(": ")
    }
}

/// The report's text of an optional error (`error` in the JSON reports).
pub fn serialize_text<S: serde::Serializer>(
    e: &Option<ZoneError>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(&e.text()),
        None => s.serialize_none(),
    }
}

/// `step` failed with an API error.
pub fn api(step: Step) -> impl FnOnce(kube::Error) -> ZoneError {
    move |e| ZoneError::new(step, ErrorKind::Api(e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_text_names_the_step_then_each_cause_once() {
        let e = ZoneError::new(
            Step::WaitDeletion,
            ErrorKind::Wait(WaitError::Timeout {
                after: Duration::from_secs(5),
                last: "2 object(s) still present".into(),
            }),
        );
        assert_eq!(
            e.text(),
            "waiting for deletion: timed out after 5s; last seen: 2 object(s) still present"
        );
        assert!(matches!(
            e,
            ZoneError {
                step: Step::WaitDeletion,
                kind: ErrorKind::Wait(WaitError::Timeout { .. })
            }
        ));
        let e = ZoneError::new(
            Step::RestartDns,
            ErrorKind::Wait(WaitError::WatchEnded(Box::new(kube::core::Status {
                message: "the Deployment is gone".into(),
                reason: "NotFound".into(),
                code: 404,
                ..Default::default()
            }))),
        );
        assert_eq!(e.text(), "the Deployment is gone (NotFound)");
        assert_eq!(e.to_string(), "restarting DNS");
    }
}
