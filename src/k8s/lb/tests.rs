use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};
use serde_json::json;

use super::*;

fn at(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn service(ours_at: Option<&str>, ingress: serde_json::Value) -> Service {
    let mut svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "kube-dns-lb", "namespace": "kube-system"},
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
    .unwrap();
    svc.metadata = ObjectMeta {
        managed_fields: ours_at.map(|t| {
            vec![
                ManagedFieldsEntry {
                    manager: Some("someone-else".into()),
                    time: Some(at("2030-01-01T00:00:00Z")),
                    ..Default::default()
                },
                ManagedFieldsEntry {
                    manager: Some(names::FIELD_MANAGER.into()),
                    time: Some(at(t)),
                    ..Default::default()
                },
            ]
        }),
        ..svc.metadata
    };
    svc
}

fn event(kind: &str, reason: &str, last: &str, message: &str) -> Event {
    Event {
        type_: Some(kind.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_timestamp: Some(at(last)),
        ..Default::default()
    }
}

#[test]
fn ingress_splits_addresses_and_host_names() {
    let svc = service(
        None,
        json!([{"ip": "10.0.0.5"}, {"hostname": "nlb.example"}, {"ip": "not-an-ip"}]),
    );
    let (ips, hosts) = ingress(&svc);
    assert_eq!(ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
    assert_eq!(hosts, vec!["nlb.example".to_string()]);
    assert_eq!(ingress(&Service::default()), (vec![], vec![]));
}

#[test]
fn a_cloud_refusal_after_our_last_change_is_reported_newest_first() {
    let svc = service(Some("2026-11-30T10:00:00Z"), json!([]));
    let events = [
        event(
            "Warning",
            "SyncLoadBalancerFailed",
            "2026-11-30T10:00:05Z",
            "first try",
        ),
        event(
            "Warning",
            "SyncLoadBalancerFailed",
            "2026-11-30T10:00:20Z",
            "Error syncing load balancer: failed to ensure load balancer: mixed protocol is not supported for LoadBalancer\n",
        ),
        event(
            "Normal",
            "EnsuringLoadBalancer",
            "2026-11-30T10:00:30Z",
            "Ensuring load balancer",
        ),
    ];
    assert_eq!(
        refusal(&svc, &events).as_deref(),
        Some(
            "SyncLoadBalancerFailed: Error syncing load balancer: failed to ensure load balancer: mixed protocol is not supported for LoadBalancer"
        )
    );
}

#[test]
fn refusals_of_an_older_version_of_the_service_are_ignored() {
    // The config was fixed and applied at 10:05; the refusal was about the
    // Service before that.
    let svc = service(Some("2026-11-30T10:05:00Z"), json!([]));
    let events = [event(
        "Warning",
        "SyncLoadBalancerFailed",
        "2026-11-30T10:00:20Z",
        "mixed protocol is not supported",
    )];
    assert_eq!(refusal(&svc, &events), None);
}

#[test]
fn other_warnings_and_normal_events_are_not_refusals() {
    let svc = service(Some("2026-11-30T10:00:00Z"), json!([]));
    let events = [
        event("Warning", "SomethingTransient", "2026-11-30T10:00:20Z", "x"),
        event(
            "Normal",
            "SyncLoadBalancerFailed",
            "2026-11-30T10:00:20Z",
            "not a warning",
        ),
    ];
    assert_eq!(refusal(&svc, &events), None);
    // The AWS Load Balancer Controller's reasons count.
    let aws = [event(
        "Warning",
        "FailedDeployModel",
        "2026-11-30T10:00:20Z",
        "listener conflict",
    )];
    assert_eq!(
        refusal(&svc, &aws).as_deref(),
        Some("FailedDeployModel: listener conflict")
    );
}
