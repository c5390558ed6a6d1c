//! What a workload controller's Warning events say about the pods it could
//! not create: the StatefulSet controller and the Job controller record
//! `FailedCreate` on their object when the API server refuses a pod (Pod
//! Security admission, a ResourceQuota, a validating webhook), and they
//! retry the same pod for ever. Waits ask here so they can stop with the
//! API server's reason instead of "0/3 pods running" after the timeout.
//! Pure: the I/O layers read the owner and its events and pass them in.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::lb::event_time;
use crate::names;

/// The reason the StatefulSet and Job controllers give when a pod create
/// fails (k8s.io/kubernetes pkg/controller: `FailedCreatePodReason` and
/// stateful_pod_control.go's `FailedCreate`).
pub const FAILED_CREATE: &str = "FailedCreate";

/// A controller's failure to create pods for `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCreateFailure {
    /// The API server refused the pod ("is forbidden": admission said no).
    /// Retrying the same template cannot help; the message names the rule.
    Refused(String),
    /// Another failure (a timeout, a conflict); the controller retries and
    /// it may pass.
    Other(String),
}

/// The newest `FailedCreate` Warning among `events` (already selected for
/// `owner`) that is not older than our last change of `owner`: an older
/// one is about a template that no longer exists.
pub fn pod_create_failure(owner: &ObjectMeta, events: &[Event]) -> Option<PodCreateFailure> {
    let changed = ours_changed_at(owner);
    let (_, event) = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.reason.as_deref() == Some(FAILED_CREATE))
        .filter_map(|e| Some((event_time(e)?, e)))
        .filter(|(at, _)| changed.is_none_or(|c| *at >= c))
        .max_by_key(|(at, _)| *at)?;
    let message = event
        .message
        .as_deref()
        .unwrap_or("(no message)")
        .trim()
        .to_string();
    Some(if message.contains("is forbidden") {
        PodCreateFailure::Refused(message)
    } else {
        PodCreateFailure::Other(message)
    })
}

/// When our field manager last wrote `meta`'s object (server time), if known.
fn ours_changed_at(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.managed_fields
        .as_deref()?
        .iter()
        .filter(|m| m.manager.as_deref() == Some(names::FIELD_MANAGER))
        .filter_map(|m| Some(m.time.as_ref()?.0))
        .max()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn owner(changed: &str) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(vec![
                ManagedFieldsEntry {
                    manager: Some(names::FIELD_MANAGER.into()),
                    time: Some(at(changed)),
                    ..Default::default()
                },
                ManagedFieldsEntry {
                    manager: Some("someone-else".into()),
                    time: Some(at("2030-01-01T00:00:00Z")),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    fn event(type_: &str, reason: &str, when: &str, message: &str) -> Event {
        Event {
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_timestamp: Some(at(when)),
            ..Default::default()
        }
    }

    const FORBIDDEN: &str = "create Pod cockroachdb-0 in StatefulSet cockroachdb failed error: pods \"cockroachdb-0\" is forbidden: violates PodSecurity \"restricted:latest\": runAsUser=0 (pod must not set runAsUser=0)";

    #[test]
    fn a_forbidden_pod_is_a_refusal_with_the_api_servers_words() {
        let got = pod_create_failure(
            &owner("2026-01-01T00:00:00Z"),
            &[event(
                "Warning",
                "FailedCreate",
                "2026-01-01T00:00:01Z",
                FORBIDDEN,
            )],
        );
        assert_eq!(got, Some(PodCreateFailure::Refused(FORBIDDEN.into())));
    }

    #[test]
    fn other_create_failures_are_reported_but_not_final() {
        let got = pod_create_failure(
            &owner("2026-01-01T00:00:00Z"),
            &[event(
                "Warning",
                "FailedCreate",
                "2026-01-01T00:00:01Z",
                "Error creating: Timeout: request did not complete",
            )],
        );
        assert_eq!(
            got,
            Some(PodCreateFailure::Other(
                "Error creating: Timeout: request did not complete".into()
            ))
        );
    }

    #[test]
    fn a_refusal_of_the_template_before_our_last_change_is_stale() {
        let got = pod_create_failure(
            &owner("2026-01-01T00:00:05Z"),
            &[event(
                "Warning",
                "FailedCreate",
                "2026-01-01T00:00:01Z",
                FORBIDDEN,
            )],
        );
        assert_eq!(got, None);
    }

    #[test]
    fn normal_events_and_other_reasons_are_not_failures() {
        let got = pod_create_failure(
            &owner("2026-01-01T00:00:00Z"),
            &[
                event("Normal", "FailedCreate", "2026-01-01T00:00:01Z", FORBIDDEN),
                event(
                    "Warning",
                    "FailedScheduling",
                    "2026-01-01T00:00:01Z",
                    "0/3 nodes",
                ),
            ],
        );
        assert_eq!(got, None);
    }

    #[test]
    fn the_newest_failure_wins() {
        let got = pod_create_failure(
            &owner("2026-01-01T00:00:00Z"),
            &[
                event(
                    "Warning",
                    "FailedCreate",
                    "2026-01-01T00:00:03Z",
                    "Error creating: conflict",
                ),
                event("Warning", "FailedCreate", "2026-01-01T00:00:02Z", FORBIDDEN),
            ],
        );
        assert_eq!(
            got,
            Some(PodCreateFailure::Other("Error creating: conflict".into()))
        );
    }
}
