//! Faults as a client sees them: latency, injected errors with Retry-After,
//! a cluster going down and coming back on the same port, LBs that never
//! become ready, slow namespace deletion, and the control endpoint.

use std::io::{Read, Write};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube_sim::{Faults, Flavor};
use serde_json::{Value, json};

use crate::common::{api_code, client, client_with_retry, fast, raw, wait_until};

#[tokio::test]
async fn latency_shows_in_the_request_log() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    cluster.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Default::default()
    });
    cluster.clear_requests();
    Api::<ConfigMap>::default_namespaced(c)
        .list(&ListParams::default())
        .await
        .unwrap();
    let log = cluster.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("GET", "/api/v1/namespaces/default/configmaps", 200)
    );
    assert!(
        log[0].duration >= Duration::from_millis(150),
        "latency is included: {:?}",
        log[0].duration
    );
}

#[tokio::test]
async fn injected_errors_carry_code_and_retry_after() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client_with_retry(&fed, "z1", false).await;
    cluster.set_faults(Faults {
        error_rate: 1.0,
        error_code: 429,
        retry_after: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let (code, headers, body) = raw(&c, "GET", "/api/v1/namespaces", None, vec![]).await;
    assert_eq!(code, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "3");
    assert_eq!(body["reason"], "TooManyRequests");
    cluster.set_faults(Faults {
        error_rate: 1.0,
        error_code: 503,
        ..Default::default()
    });
    let err = Api::<ConfigMap>::default_namespaced(c.clone())
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).0, 503);
    cluster.set_faults(Faults::default());
    Api::<ConfigMap>::default_namespaced(c)
        .list(&ListParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_down_cluster_refuses_connections_and_comes_back_on_the_same_port() {
    let fed = fast(&["z1", "z2"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let port = cluster.port();
    cluster.set_faults(Faults {
        down: true,
        ..Default::default()
    });
    let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // The other cluster is unaffected.
    let other = client(&fed, "z2").await;
    Api::<ConfigMap>::default_namespaced(other)
        .list(&ListParams::default())
        .await
        .unwrap();
    cluster.set_faults(Faults::default());
    assert_eq!(cluster.port(), port);
    let c = client(&fed, "z1").await;
    Api::<ConfigMap>::default_namespaced(c)
        .list(&ListParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn lb_never_ready_and_slow_namespace_deletion() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    cluster.set_faults(Faults {
        lb_never_ready: true,
        namespace_delete_delay: Duration::from_secs(600),
        ..Default::default()
    });
    cluster
        .put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "default"},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}), "test")
        .unwrap();
    cluster
        .put(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "slow"}}),
            "test",
        )
        .unwrap();
    cluster.delete("v1", "Namespace", None, "slow").unwrap();
    // Several LB delays pass without an address.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let svc = cluster.get("v1", "Service", Some("default"), "lb").unwrap();
    assert!(
        svc.pointer("/status/loadBalancer/ingress").is_none(),
        "{svc}"
    );
    let ns = cluster
        .get("v1", "Namespace", None, "slow")
        .expect("still terminating");
    assert_eq!(ns["status"]["phase"], "Terminating");
    // Clearing the faults lets both finish.
    cluster.set_faults(Faults::default());
    wait_until("the LB address", || {
        cluster
            .get("v1", "Service", Some("default"), "lb")
            .is_some_and(|s| s.pointer("/status/loadBalancer/ingress/0/ip").is_some())
    })
    .await;
    wait_until("the namespace to go", || {
        cluster.get("v1", "Namespace", None, "slow").is_none()
    })
    .await;
}

fn control(base: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let hostport = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, payload) = resp.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(payload).unwrap())
}

#[tokio::test]
async fn control_endpoint_reads_logs_and_sets_faults() {
    let fed = fast(&["z1"], Flavor::Generic);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    Api::<ConfigMap>::default_namespaced(c)
        .list(&ListParams::default())
        .await
        .unwrap();
    let base = fed.control_url();
    let (code, log) = control(&base, "GET", "/clusters/z1/requests", "");
    assert_eq!(code, 200);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "/api/v1/namespaces/default/configmaps")
    );
    let (code, faults) = control(
        &base,
        "PATCH",
        "/clusters/z1/faults",
        r#"{"down": true, "latency_ms": 5}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(faults["down"], true);
    assert!(!cluster.is_listening());
    assert_eq!(cluster.faults().latency, Duration::from_millis(5));
    let (_, summary) = control(&base, "GET", "/clusters/z1", "");
    assert_eq!(summary["listening"], false);
    control(&base, "PATCH", "/clusters/z1/faults", r#"{"down": false}"#);
    assert!(cluster.is_listening());
    let (code, _) = control(&base, "DELETE", "/clusters/z1/requests", "");
    assert_eq!(code, 200);
    assert!(cluster.requests().is_empty());
    assert_eq!(control(&base, "GET", "/clusters/nope/faults", "").0, 404);
}
