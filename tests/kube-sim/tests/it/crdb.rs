//! The simulated CockroachDB and the pod behaviour rolling changes depend
//! on: `/_status/vars` and `/health?ready=1` through the pod proxy,
//! readiness only after `cockroach init`, the availability record,
//! decommission Jobs, graceful pod termination, StatefulSet rolling
//! updates in the real controller's order, and images that do not pull or
//! crash.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_sim::{Federation, Flavor};
use serde_json::{Value, json};

use crate::common::{WAIT, client_with_retry, wait_until};

/// Without kube's retry layer: a pod proxy answers 503 for a pod that does
/// not listen, and CockroachDB answers 503 when not ready; both are answers here.
async fn client(fed: &Federation, zone: &str) -> kube::Client {
    client_with_retry(fed, zone, false).await
}

const IMAGE: &str = "cockroachdb/cockroach:v25.2.0";

fn fed(
    zones: &[&str],
    configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
) -> Federation {
    let b = Federation::builder()
        .zones(zones.iter().copied())
        .flavor(Flavor::Generic)
        .pod_ready_delay(Duration::from_millis(20))
        .job_duration(Duration::from_millis(50))
        .max_termination_grace(Some(Duration::from_millis(150)))
        .crdb_recovery(Duration::from_millis(200));
    configure(b).start().expect("the federation starts")
}

fn crdb_sts(replicas: i32, image: &str, parallel: bool) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "cockroachdb"},
        "spec": {
            "serviceName": "cockroachdb", "replicas": replicas,
            "podManagementPolicy": if parallel { "Parallel" } else { "OrderedReady" },
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": "cockroachdb"}},
            "template": {"metadata": {"labels": {"app": "cockroachdb"}},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{"name": "cockroachdb", "image": image,
                        "ports": [{"name": "grpc", "containerPort": 26257}, {"name": "http", "containerPort": 8080}]}]}},
        },
    }))
    .unwrap()
}

fn job(name: &str, command: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": IMAGE, "command": command}]}}},
    }))
    .unwrap()
}

/// GET through the API server; the status and the body as text.
async fn get_text(client: &kube::Client, uri: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method("GET")
        .uri(uri)
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let resp = client.send(req).await.expect("request is sent");
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn proxy(pod: &str, path: &str) -> String {
    format!("/api/v1/namespaces/default/pods/https:{pod}:8080/proxy/{path}")
}

/// The value of a gauge in Prometheus text, and its node_id label.
fn gauge(text: &str, metric: &str) -> Option<(u64, String)> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        let node = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("node_id=\""))
            .map(|v| v.trim_end_matches('"').to_string())?;
        Some((value.trim().parse().ok()?, node))
    })
}

/// Sum of a gauge over every pod of every zone (as a client must add the
/// per-store values up).
async fn federation_sum(fed: &Federation, zones: &[&str], pods: usize, metric: &str) -> u64 {
    let mut sum = 0;
    for z in zones {
        let c = client(fed, z).await;
        for i in 0..pods {
            let (code, text) =
                get_text(&c, &proxy(&format!("cockroachdb-{i}"), "_status/vars")).await;
            if code == 200 {
                sum += gauge(&text, metric).map(|g| g.0).unwrap_or(0);
            }
        }
    }
    sum
}

fn pod(fed: &Federation, zone: &str, name: &str) -> Option<Value> {
    fed.cluster(zone).get("v1", "Pod", Some("default"), name)
}

fn is_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn all_ready(fed: &Federation, zones: &[&str], n: usize) -> bool {
    zones.iter().all(|z| {
        (0..n).all(|i| {
            pod(fed, z, &format!("cockroachdb-{i}"))
                .is_some_and(|p| is_ready(&p) && p.pointer("/metadata/deletionTimestamp").is_none())
        })
    })
}

/// CockroachDB StatefulSets of `n` pods in every zone, initialised, every node Ready.
async fn running_database(fed: &Federation, zones: &[&str], n: i32) {
    for z in zones {
        let c = client(fed, z).await;
        Api::<StatefulSet>::default_namespaced(c)
            .create(&PostParams::default(), &crdb_sts(n, IMAGE, true))
            .await
            .unwrap();
    }
    let zone = zones[0];
    wait_until("the first pod to run", || {
        pod(fed, zone, "cockroachdb-0")
            .is_some_and(|p| p.pointer("/status/phase") == Some(&json!("Running")))
    })
    .await;
    let c = client(fed, zone).await;
    Api::<Job>::default_namespaced(c)
        .create(
            &PostParams::default(),
            &job(
                "init",
                json!([
                    "/cockroach/cockroach",
                    "init",
                    "--certs-dir=/c",
                    "--host=cockroachdb-0"
                ]),
            ),
        )
        .await
        .unwrap();
    wait_until("every node to be Ready after init", || {
        all_ready(fed, zones, n as usize)
    })
    .await;
    wait_until("every node to have an ID", || {
        zones.iter().all(|z| {
            (0..n).all(|i| {
                fed.cluster(z)
                    .crdb_node_id("default", &format!("cockroachdb-{i}"))
                    .is_some()
            })
        })
    })
    .await;
}

#[tokio::test]
async fn cockroachdb_serves_vars_and_health_through_the_pod_proxy_and_is_ready_only_after_init() {
    let zones = ["a-1", "b-1", "c-1"];
    let fed = fed(&zones, |b| b);
    for z in zones {
        let c = client(&fed, z).await;
        Api::<StatefulSet>::default_namespaced(c)
            .create(&PostParams::default(), &crdb_sts(1, IMAGE, true))
            .await
            .unwrap();
    }
    wait_until("pods to run", || {
        zones.iter().all(|z| {
            pod(&fed, z, "cockroachdb-0")
                .is_some_and(|p| p.pointer("/status/phase") == Some(&json!("Running")))
        })
    })
    .await;
    let c = client(&fed, "a-1").await;
    // Before init: running, not ready; the readiness endpoint says 503.
    assert!(!is_ready(&pod(&fed, "a-1", "cockroachdb-0").unwrap()));
    let (code, body) = get_text(&c, &proxy("cockroachdb-0", "health?ready=1")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("node is not healthy"), "{body}");
    // Plain HTTP to the HTTPS port, another port, an unknown path, a missing pod.
    let (code, body) = get_text(
        &c,
        "/api/v1/namespaces/default/pods/http:cockroachdb-0:8080/proxy/_status/vars",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("HTTP request to an HTTPS server"), "{body}");
    let (code, body) = get_text(
        &c,
        "/api/v1/namespaces/default/pods/https:cockroachdb-0:9999/proxy/_status/vars",
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("connection refused"), "{body}");
    let (code, _) = get_text(&c, &proxy("cockroachdb-0", "nothing-here")).await;
    assert_eq!(code, 404);
    let (code, _) = get_text(&c, &proxy("cockroachdb-7", "_status/vars")).await;
    assert_eq!(code, 404);

    Api::<Job>::default_namespaced(c.clone())
        .create(
            &PostParams::default(),
            &job(
                "init",
                json!(["/cockroach/cockroach", "init", "--certs-dir=/c", "--host=x"]),
            ),
        )
        .await
        .unwrap();
    wait_until("every node Ready after init", || all_ready(&fed, &zones, 1)).await;
    let (code, body) = get_text(&c, &proxy("cockroachdb-0", "health?ready=1")).await;
    assert_eq!((code, body.as_str()), (200, "{}"));
    wait_until("node IDs", || {
        zones.iter().all(|z| {
            fed.cluster(z)
                .crdb_node_id("default", "cockroachdb-0")
                .is_some()
        })
    })
    .await;
    let (code, vars) = get_text(&c, &proxy("cockroachdb-0", "_status/vars")).await;
    assert_eq!(code, 200);
    let id = fed
        .cluster("a-1")
        .crdb_node_id("default", "cockroachdb-0")
        .unwrap();
    assert_eq!(
        gauge(&vars, "ranges_underreplicated"),
        Some((0, id.to_string())),
        "{vars}"
    );
    assert_eq!(
        gauge(&vars, "ranges_unavailable"),
        Some((0, id.to_string())),
        "{vars}"
    );
    assert!(
        vars.contains("# TYPE ranges_underreplicated gauge"),
        "{vars}"
    );
    let act = fed.activity();
    assert!(
        act.iter()
            .any(|(z, a)| z == "a-1" && a.what == "cluster-initialised"),
        "{act:?}"
    );
}

#[tokio::test]
async fn pods_down_in_two_zones_at_once_make_ranges_unavailable_and_are_recorded() {
    let zones = ["a-1", "b-1", "c-1"];
    let fed = fed(&zones, |b| {
        b.max_termination_grace(Some(Duration::from_millis(400)))
    });
    running_database(&fed, &zones, 1).await;
    fed.reset_availability();

    // One zone at a time: under-replicated while down and for the recovery
    // time, never unavailable.
    fed.cluster("a-1")
        .delete("v1", "Pod", Some("default"), "cockroachdb-0")
        .unwrap();
    wait_until("a-1's pod to terminate", || {
        pod(&fed, "a-1", "cockroachdb-0")
            .is_some_and(|p| p.pointer("/metadata/deletionTimestamp").is_some())
    })
    .await;
    let mut seen_under = 0;
    let deadline = Instant::now() + WAIT;
    while seen_under == 0 && Instant::now() < deadline {
        seen_under = federation_sum(&fed, &zones[1..], 1, "ranges_underreplicated").await;
    }
    assert!(
        seen_under > 0,
        "under-replicated ranges while a node is down"
    );
    assert_eq!(
        federation_sum(&fed, &zones, 1, "ranges_unavailable").await,
        0
    );
    wait_until("a-1 back", || all_ready(&fed, &zones, 1)).await;
    let deadline = Instant::now() + WAIT;
    while federation_sum(&fed, &zones, 1, "ranges_underreplicated").await > 0 {
        assert!(Instant::now() < deadline, "under-replication never healed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = fed.availability();
    assert_eq!(a["unavailable_ms"], 0, "{a}");
    assert_eq!(a["max_zones_unready"], 1, "{a}");

    // Two zones at once: unavailable.
    fed.cluster("a-1")
        .delete("v1", "Pod", Some("default"), "cockroachdb-0")
        .unwrap();
    fed.cluster("b-1")
        .delete("v1", "Pod", Some("default"), "cockroachdb-0")
        .unwrap();
    let c = client(&fed, "c-1").await;
    let deadline = Instant::now() + WAIT;
    let mut unavailable = 0;
    while unavailable == 0 && Instant::now() < deadline {
        let (_, vars) = get_text(&c, &proxy("cockroachdb-0", "_status/vars")).await;
        unavailable = gauge(&vars, "ranges_unavailable").map(|g| g.0).unwrap_or(0);
    }
    assert!(
        unavailable > 0,
        "the only live node reports every unavailable range"
    );
    wait_until("both back", || all_ready(&fed, &zones, 1)).await;
    let a = fed.availability();
    assert!(a["unavailable_ms"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["max_zones_unready"], 2, "{a}");
    assert!(
        a["longest_unavailable_ms"].as_u64().unwrap() <= a["unavailable_ms"].as_u64().unwrap(),
        "{a}"
    );
}

#[tokio::test]
async fn a_rolling_update_replaces_the_highest_ordinal_first_one_at_a_time() {
    let zones = ["a-1"];
    let fed = fed(&zones, |b| b);
    // A single zone of 3 nodes is the whole database here.
    running_database(&fed, &zones, 3).await;
    let cluster = fed.cluster("a-1");
    let before = cluster
        .get("apps/v1", "StatefulSet", Some("default"), "cockroachdb")
        .unwrap();
    let old_rev = before["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(before["status"]["updateRevision"], old_rev.as_str());
    let c = client(&fed, "a-1").await;
    let api: Api<StatefulSet> = Api::default_namespaced(c);
    api.patch(
        "cockroachdb",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "cockroachdb", "image": "cockroachdb/cockroach:v25.3.0"}]}}}})),
    )
    .await
    .unwrap();
    // Sample while it rolls: never more than one pod unready or terminating.
    let deadline = Instant::now() + WAIT;
    let mut mid_rollout = false;
    loop {
        let sts = cluster
            .get("apps/v1", "StatefulSet", Some("default"), "cockroachdb")
            .unwrap();
        let s = &sts["status"];
        let pods: Vec<Value> = (0..3)
            .filter_map(|i| pod(&fed, "a-1", &format!("cockroachdb-{i}")))
            .collect();
        let down = 3 - pods
            .iter()
            .filter(|p| is_ready(p) && p.pointer("/metadata/deletionTimestamp").is_none())
            .count();
        assert!(down <= 1, "{down} pods down at once: {s}");
        if s["updateRevision"] != old_rev.as_str() && s["currentRevision"] == old_rev.as_str() {
            mid_rollout = true;
        }
        if s["updateRevision"] == s["currentRevision"]
            && s["updatedReplicas"] == 3
            && s["readyReplicas"] == 3
            && s["updateRevision"] != old_rev.as_str()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout never completed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        mid_rollout,
        "currentRevision stays old while the rollout runs"
    );
    let order: Vec<String> = cluster
        .activity()
        .into_iter()
        .filter(|a| a.what == "pod-terminating")
        .map(|a| a.object)
        .collect();
    assert_eq!(
        order,
        [
            "default/cockroachdb-2",
            "default/cockroachdb-1",
            "default/cockroachdb-0"
        ]
    );
    assert_eq!(fed.availability()["unavailable_ms"], 0);
}

#[tokio::test]
async fn pods_terminate_for_their_grace_period_unless_it_is_zero() {
    let fed = fed(&["a-1"], |b| {
        b.max_termination_grace(Some(Duration::from_millis(600)))
    });
    let c = client(&fed, "a-1").await;
    Api::<StatefulSet>::default_namespaced(c.clone())
        .create(
            &PostParams::default(),
            &crdb_sts(2, "registry.example/db:1", true),
        )
        .await
        .unwrap();
    wait_until("pods running", || {
        (0..2).all(|i| pod(&fed, "a-1", &format!("cockroachdb-{i}")).is_some_and(|p| is_ready(&p)))
    })
    .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(c);
    let uid = pod(&fed, "a-1", "cockroachdb-1").unwrap()["metadata"]["uid"].clone();
    pods.delete("cockroachdb-1", &DeleteParams::default())
        .await
        .unwrap();
    let p = pod(&fed, "a-1", "cockroachdb-1").expect("a terminating pod is still there");
    assert_eq!(p["metadata"]["uid"], uid);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 60);
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    wait_until("the terminating pod to be unready", || {
        pod(&fed, "a-1", "cockroachdb-1").is_some_and(|p| !is_ready(&p))
    })
    .await;
    wait_until("the pod to be replaced after its grace period", || {
        pod(&fed, "a-1", "cockroachdb-1").is_some_and(|p| p["metadata"]["uid"] != uid)
    })
    .await;
    let uid0 = pod(&fed, "a-1", "cockroachdb-0").unwrap()["metadata"]["uid"].clone();
    pods.delete(
        "cockroachdb-0",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(
        pod(&fed, "a-1", "cockroachdb-0").is_none_or(|p| p["metadata"]["uid"] != uid0),
        "grace period 0 deletes at once"
    );
}

#[tokio::test]
async fn bad_images_stay_pending_with_pull_errors_and_crashing_images_loop() {
    let fed = fed(&["a-1"], |b| {
        b.bad_image("registry.example/db:broken")
            .crash_image("registry.example/db:crash")
    });
    let c = client(&fed, "a-1").await;
    let api: Api<StatefulSet> = Api::default_namespaced(c.clone());
    let mut bad = crdb_sts(1, "registry.example/db:broken", true);
    bad.metadata.name = Some("bad".into());
    api.create(&PostParams::default(), &bad).await.unwrap();
    let mut crash = crdb_sts(1, "registry.example/db:crash", true);
    crash.metadata.name = Some("crash".into());
    api.create(&PostParams::default(), &crash).await.unwrap();
    let reason = |p: &Value| {
        p.pointer("/status/containerStatuses/0/state/waiting/reason")
            .and_then(Value::as_str)
            .map(String::from)
    };
    let mut reasons = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while reasons.len() < 2 {
        assert!(Instant::now() < deadline, "saw only {reasons:?}");
        if let Some(p) = pod(&fed, "a-1", "bad-0") {
            assert_eq!(p["status"]["phase"], "Pending");
            if let Some(r) = reason(&p) {
                reasons.insert(r);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reasons.into_iter().collect::<Vec<_>>(),
        ["ErrImagePull", "ImagePullBackOff"]
    );
    let p = pod(&fed, "a-1", "bad-0").unwrap();
    assert!(
        p.pointer("/status/containerStatuses/0/state/waiting/message")
            .and_then(Value::as_str)
            .unwrap()
            .contains("registry.example/db:broken")
    );

    wait_until("the crashing container to restart twice", || {
        pod(&fed, "a-1", "crash-0").is_some_and(|p| {
            p.pointer("/status/containerStatuses/0/restartCount")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                >= 2
        })
    })
    .await;
    let p = pod(&fed, "a-1", "crash-0").unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert!(!is_ready(&p));
    assert_eq!(reason(&p).as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        p.pointer("/status/containerStatuses/0/lastState/terminated/exitCode"),
        Some(&json!(1))
    );
}

#[tokio::test]
async fn decommission_jobs_retire_nodes_and_refuse_to_go_below_three() {
    let zones = ["a-1"];
    let fed = fed(&zones, |b| b);
    running_database(&fed, &zones, 4).await;
    let cluster = fed.cluster("a-1");
    let id3 = cluster.crdb_node_id("default", "cockroachdb-3").unwrap();
    let c = client(&fed, "a-1").await;
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    jobs.create(
        &PostParams::default(),
        &job(
            "decommission-3",
            json!([
                "/bin/bash",
                "-c",
                format!("/cockroach/cockroach node decommission {id3} --certs-dir=/c --host=x")
            ]),
        ),
    )
    .await
    .unwrap();
    wait_until("the decommission Job to complete", || {
        cluster
            .get("batch/v1", "Job", Some("default"), "decommission-3")
            .is_some_and(|j| j.pointer("/status/succeeded") == Some(&json!(1)))
    })
    .await;
    // Scaling away a decommissioned node costs no availability.
    let api: Api<StatefulSet> = Api::default_namespaced(c.clone());
    api.patch_scale(
        "cockroachdb",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    wait_until("cockroachdb-3 to go", || {
        pod(&fed, "a-1", "cockroachdb-3").is_none()
    })
    .await;
    let act: Vec<(String, String)> = cluster
        .activity()
        .into_iter()
        .map(|a| (a.what, a.object))
        .collect();
    let decommissioned = act
        .iter()
        .position(|(w, _)| w == "node-decommissioned")
        .expect("decommission recorded");
    let terminating = act
        .iter()
        .position(|(w, o)| w == "pod-terminating" && o == "default/cockroachdb-3")
        .expect("termination recorded");
    assert!(decommissioned < terminating, "{act:?}");
    let a = fed.availability();
    assert_eq!(a["nodes"].as_array().unwrap().len(), 3, "{a}");
    assert_eq!(a["zones_unready"], json!([]), "{a}");

    // Three nodes left: decommissioning one more is refused and the Job fails.
    let id2 = cluster.crdb_node_id("default", "cockroachdb-2").unwrap();
    jobs.create(
        &PostParams::default(),
        &job(
            "decommission-2",
            json!([
                "/cockroach/cockroach",
                "node",
                "decommission",
                id2.to_string()
            ]),
        ),
    )
    .await
    .unwrap();
    wait_until("the refused decommission Job to fail", || {
        cluster
            .get("batch/v1", "Job", Some("default"), "decommission-2")
            .is_some_and(|j| {
                j.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Failed" && c["status"] == "True")
                    })
            })
    })
    .await;
    assert!(
        cluster
            .activity()
            .iter()
            .any(|a| a.what == "decommission-refused")
    );

    // A node scaled away without decommission stays down: under-replicated for good.
    api.patch_scale(
        "cockroachdb",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    wait_until("cockroachdb-2 to go", || {
        pod(&fed, "a-1", "cockroachdb-2").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(federation_sum(&fed, &zones, 2, "ranges_underreplicated").await > 0);
}
