use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
use time::OffsetDateTime;
use time::macros::datetime;

use super::evaluate::{judge_certs, metric_sum};
use super::*;
use crate::config::Config;

fn config() -> Config {
    Config::parse(
        Path::new("/tmp/c.toml"),
        "[[zones]]\nname = \"a\"\ncontext = \"ca\"\n\n[[zones]]\nname = \"b\"\ncontext = \"cb\"\n",
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sts(desired: i32, ready: i32, current: &str, update: &str) -> StatefulSet {
    StatefulSet {
        spec: Some(StatefulSetSpec {
            replicas: Some(desired),
            ..Default::default()
        }),
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            updated_replicas: Some(ready),
            current_revision: Some(current.into()),
            update_revision: Some(update.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const VARS: &str = "# HELP ranges_underreplicated Number of ranges with fewer live replicas than the replication target\n# TYPE ranges_underreplicated gauge\nranges_underreplicated{store=\"1\",node_id=\"1\"} 0\nranges_unavailable{store=\"1\",node_id=\"1\"} 0\nranges_underreplicated_other 7\n";

/// A healthy zone `zone` whose forwarding points `other` at `other_ip`.
fn healthy(zone: &str, own_ip: &str, other: &str, other_ip: &str) -> Gathered {
    Gathered {
        zone: zone.into(),
        api: Some(Ok("v1.33.0".into())),
        lb: Some(Ok(LbAddresses {
            ips: vec![ip(own_ip)],
            hosts: Vec::new(),
        })),
        dns: Some(Ok((
            DnsProvider::KubeDns,
            vec![Forward {
                domain: format!("{other}.svc.cluster.local"),
                servers: vec![ip(other_ip)],
            }],
        ))),
        statefulset: Some(Ok(Some(sts(3, 3, "r1", "r1")))),
        nodes: Some(NodesGathered {
            list_error: None,
            pods: (0..3)
                .map(|i| {
                    (
                        format!("cockroachdb-{i}"),
                        "Running".to_string(),
                        Some(ProxyAnswer::Ok("ok".into())),
                        Some(ProxyAnswer::Ok(VARS.into())),
                    )
                })
                .collect(),
        }),
        secrets: Vec::new(),
    }
}

fn now() -> OffsetDateTime {
    datetime!(2030-01-01 0:00 UTC)
}

fn both(a: Gathered, b: Gathered) -> StatusReport {
    let shown = vec!["a".to_string(), "b".to_string()];
    evaluate(&config(), &[a, b], &shown, &BTreeMap::new(), now())
}

#[test]
fn two_healthy_zones_are_ok_with_zero_ranges_counted() {
    let r = both(
        healthy("a", "10.0.0.1", "b", "10.0.0.2"),
        healthy("b", "10.0.0.2", "a", "10.0.0.1"),
    );
    assert!(r.ok, "{}", render_text(&r));
    assert_eq!(r.zones[0].nodes.ranges_underreplicated, Some(0));
    assert_eq!(
        r.zones[0].nodes.item.detail,
        "3/3 ready; ranges: 0 under-replicated, 0 unavailable"
    );
    assert!(render_text(&r).ends_with("status: healthy (2 zone(s))\n"));
}

#[test]
fn forwarding_to_an_old_load_balancer_address_fails_naming_both_addresses() {
    let r = both(
        healthy("a", "10.0.0.1", "b", "10.9.9.9"),
        healthy("b", "10.0.0.2", "a", "10.0.0.1"),
    );
    assert!(!r.ok);
    assert!(!r.zones[0].ok && r.zones[1].ok);
    assert_eq!(
        r.zones[0].failures(),
        [
            "dns-forwarding: ConfigMap kube-system/kube-dns: zone b is forwarded to 10.9.9.9 but its DNS load balancer is 10.0.0.2 (run apply)"
        ]
    );
}

#[test]
fn a_zone_without_an_answer_fails_and_the_others_forwarding_to_it_is_unknown() {
    let mut b = healthy("b", "10.0.0.2", "a", "10.0.0.1");
    b.api = Some(Err(ApiUnread::Unreachable(PreflightProblem {
        problem: "the API server https://b is not reachable".into(),
        causes: Vec::new(),
        hint: "check that the cluster is up".into(),
    })));
    b.lb = None;
    let r = both(healthy("a", "10.0.0.1", "b", "10.0.0.2"), b);
    assert!(r.zones[0].ok, "{}", render_text(&r));
    assert_eq!(r.zones[0].dns_forwarding.item.status, Health::Unknown);
    assert!(!r.zones[1].ok);
    assert!(!r.zones[1].could_not_connect);
    assert_eq!(r.zones[1].nodes.item.status, Health::Unknown);
}

#[test]
fn node_health_through_a_missing_pod_proxy_is_unknown_and_does_not_fail_the_zone() {
    let mut a = healthy("a", "10.0.0.1", "b", "10.0.0.2");
    for p in &mut a.nodes.as_mut().unwrap().pods {
        p.2 = Some(ProxyAnswer::ProxyError(
            "the server could not find the requested resource (404 NotFound)".into(),
        ));
        p.3 = None;
    }
    let r = both(a, healthy("b", "10.0.0.2", "a", "10.0.0.1"));
    assert!(r.zones[0].ok);
    assert_eq!(r.zones[0].nodes.item.status, Health::Unknown);
    assert!(
        r.zones[0]
            .nodes
            .item
            .detail
            .starts_with("node health unknown (pod proxy: the server could not find"),
        "{:?}",
        r.zones[0].nodes.item
    );
    assert_eq!(r.zones[0].nodes.ranges_underreplicated, None);
}

#[test]
fn a_node_that_is_not_ready_or_under_replicated_ranges_fail_the_zone() {
    let mut a = healthy("a", "10.0.0.1", "b", "10.0.0.2");
    a.nodes.as_mut().unwrap().pods[1].2 = Some(ProxyAnswer::NotReady(
        "503 Service Unavailable: node is not accepting SQL clients".into(),
    ));
    let r = both(a, healthy("b", "10.0.0.2", "a", "10.0.0.1"));
    assert_eq!(
        r.zones[0].failures(),
        [
            "nodes: 2/3 ready; cockroachdb-1 not ready: 503 Service Unavailable: node is not accepting SQL clients"
        ]
    );

    let mut a = healthy("a", "10.0.0.1", "b", "10.0.0.2");
    a.nodes.as_mut().unwrap().pods[2].3 = Some(ProxyAnswer::Ok(
        "ranges_underreplicated{store=\"3\"} 12\nranges_unavailable 0\n".into(),
    ));
    let r = both(a, healthy("b", "10.0.0.2", "a", "10.0.0.1"));
    assert_eq!(
        r.zones[0].failures(),
        ["nodes: 3/3 ready; ranges: 12 under-replicated, 0 unavailable"]
    );
}

#[test]
fn a_rolling_update_warns_and_missing_ready_pods_fail() {
    let mut a = healthy("a", "10.0.0.1", "b", "10.0.0.2");
    a.statefulset = Some(Ok(Some(sts(3, 3, "r1", "r2"))));
    let r = both(a, healthy("b", "10.0.0.2", "a", "10.0.0.1"));
    assert!(r.zones[0].ok);
    assert_eq!(r.zones[0].statefulset.item.status, Health::Warn);
    assert!(
        r.zones[0]
            .statefulset
            .item
            .detail
            .contains("rolling update to r2 in progress")
    );

    let mut a = healthy("a", "10.0.0.1", "b", "10.0.0.2");
    a.statefulset = Some(Ok(Some(sts(3, 1, "r1", "r1"))));
    let r = both(a, healthy("b", "10.0.0.2", "a", "10.0.0.1"));
    assert_eq!(
        r.zones[0].failures(),
        ["statefulset: 1/3 ready, revision r1"]
    );
}

#[test]
fn certificates_warn_30_days_ahead_and_fail_once_expired() {
    let dir = tempfile::tempdir().unwrap();
    let settings = certs::CertSettings {
        certs_dir: dir.path().join("certs"),
        ca_key_path: dir.path().join("safe").join("ca.key"),
        key_type: certs::KeyType::default(),
    };
    let (bundle, _) = certs::ensure_certs(&settings, &[]).unwrap();
    let end = certs::not_after(&bundle.ca_crt).unwrap();
    let source = vec![("local ca.crt".to_string(), Ok(bundle.ca_crt.clone()))];
    let at = |t: OffsetDateTime| judge_certs(&source, true, t).item.status;
    assert_eq!(at(end - time::Duration::days(31)), Health::Ok);
    assert_eq!(at(end - time::Duration::days(29)), Health::Warn);
    assert_eq!(at(end + time::Duration::days(1)), Health::Fail);
}

#[test]
fn metric_sums_ignore_comments_and_longer_names() {
    assert_eq!(metric_sum(VARS, "ranges_underreplicated"), Some(0));
    assert_eq!(
        metric_sum(
            "ranges_unavailable 2\nranges_unavailable{a=\"b\"} 3\n",
            "ranges_unavailable"
        ),
        Some(5)
    );
    assert_eq!(metric_sum("other 1\n", "ranges_unavailable"), None);
}
