//! Changes to a running federation: rolling one zone at a time, gated on
//! CockroachDB's health (kube-sim's simulated database measures whether
//! ranges became unavailable), waits that stop early on pods that cannot
//! start, and refusals before anything is written.

use std::time::Duration;

use kube_sim::Flavor;
use serde_json::Value;

use super::{Env, assert_exit, stderr};

const FIVE: [&str; 5] = [
    "us-east1-b",
    "us-west1-a",
    "us-central1-a",
    "europe-west1-b",
    "asia-east1-a",
];

fn start(
    zones: &[&str],
    configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
) -> Env {
    Env::start(Flavor::Gke, zones, |b| {
        configure(
            b.pod_ready_delay(Duration::from_millis(60))
                .job_duration(Duration::from_millis(100))
                .max_termination_grace(Some(Duration::from_millis(150)))
                .crdb_recovery(Duration::from_millis(300)),
        )
    })
}

fn image_config(env: &Env, zones: &[&str], image: &str) -> std::path::PathBuf {
    env.config(
        "config.toml",
        zones,
        &format!("[cockroachdb]\nimage = \"{image}\""),
    )
}

fn sts(env: &Env, zone: &str) -> Value {
    env.fed
        .cluster(zone)
        .get("apps/v1", "StatefulSet", Some(zone), "cockroachdb")
        .expect("the StatefulSet exists")
}

fn image_of(env: &Env, zone: &str) -> String {
    sts(env, zone)
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn pod_uids(env: &Env, zone: &str) -> Vec<String> {
    let mut uids: Vec<String> = env
        .fed
        .cluster(zone)
        .list("v1", "Pod", Some(zone))
        .iter()
        .filter(|p| {
            p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some("cockroachdb")
        })
        .map(|p| {
            p["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    uids.sort();
    uids
}

/// Every zone's rollout complete on the revision it reports.
fn assert_rolled_out(env: &Env, zones: &[&str], image: &str) {
    for z in zones {
        let s = sts(env, z);
        let st = &s["status"];
        assert_eq!(image_of(env, z), image, "{z}");
        assert_eq!(st["currentRevision"], st["updateRevision"], "{z}: {st}");
        assert_eq!(st["updatedReplicas"], 3, "{z}: {st}");
        assert_eq!(st["readyReplicas"], 3, "{z}: {st}");
    }
}

#[test]
fn an_image_upgrade_on_five_zones_rolls_one_zone_at_a_time_without_losing_ranges() {
    let env = start(&FIVE, |b| b);
    let config = image_config(&env, &FIVE, "cockroachdb/cockroach:v25.4.1");
    assert_exit(&env.apply(&config, &[]), 0);
    assert_rolled_out(&env, &FIVE, "cockroachdb/cockroach:v25.4.1");
    env.fed.reset_availability();

    let config = image_config(&env, &FIVE, "cockroachdb/cockroach:v25.4.2");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    assert_rolled_out(&env, &FIVE, "cockroachdb/cockroach:v25.4.2");
    let a = env.fed.availability();
    assert_eq!(a["unavailable_ms"], 0, "{a}\n{}", stderr(&out));
    assert!(a["max_zones_unready"].as_u64().unwrap() <= 1, "{a}");
    // Zones were rolled in config order: every pod of a zone was replaced
    // before the first pod of the next went.
    let order: Vec<String> = env
        .fed
        .activity()
        .into_iter()
        .filter(|(_, a)| a.what == "pod-terminating")
        .map(|(z, _)| z)
        .collect();
    let mut zones_in_order = order.clone();
    zones_in_order.dedup();
    assert_eq!(zones_in_order, FIVE, "{order:?}");
}

#[test]
fn the_same_upgrade_without_the_gate_loses_ranges() {
    let env = start(&FIVE, |b| b);
    let config = image_config(&env, &FIVE, "cockroachdb/cockroach:v25.4.1");
    assert_exit(&env.apply(&config, &[]), 0);
    env.fed.reset_availability();
    let config = image_config(&env, &FIVE, "cockroachdb/cockroach:v25.4.2");
    let mut args = vec!["apply", config.to_str().unwrap(), "--wait-timeout", "20s"];
    args.push("-q");
    let out = env.run_with_env(&args, &[(crdb_multiregion::apply::UNGATED_ENV, "1")]);
    assert_exit(&out, 0);
    let a = env.fed.availability();
    assert!(a["unavailable_ms"].as_u64().unwrap() > 0, "{a}");
    assert!(a["max_zones_unready"].as_u64().unwrap() >= 2, "{a}");
}

#[test]
fn a_bad_image_stops_at_the_first_zone_naming_pod_container_and_reason() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b.bad_image("cockroachdb/cockroach:v99.0.0"));
    let config = image_config(&env, zones, "cockroachdb/cockroach:v25.4.1");
    assert_exit(&env.apply(&config, &[]), 0);
    let before: Vec<Vec<String>> = zones[1..].iter().map(|z| pod_uids(&env, z)).collect();

    let config = image_config(&env, zones, "cockroachdb/cockroach:v99.0.0");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    // Stopped on what the pod reports, not by waiting out --wait-timeout.
    assert!(!err.contains("timed out"), "{err}");
    assert!(
        err.contains("pod cockroachdb-2, container cockroachdb:"),
        "{err}"
    );
    assert!(
        err.contains("ErrImagePull") || err.contains("ImagePullBackOff"),
        "{err}"
    );
    assert!(
        err.contains("cockroachdb.image"),
        "the hint names the setting: {err}"
    );
    // The other zones were not touched.
    for (z, uids) in zones[1..].iter().zip(before) {
        assert_eq!(image_of(&env, z), "cockroachdb/cockroach:v25.4.1", "{z}");
        assert_eq!(pod_uids(&env, z), uids, "{z}");
    }
}

#[test]
fn a_crashing_image_stops_at_the_first_zone_with_the_restart_count() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b.crash_image("cockroachdb/cockroach:v25.9.9"));
    let config = image_config(&env, zones, "cockroachdb/cockroach:v25.4.1");
    assert_exit(&env.apply(&config, &[]), 0);
    let config = image_config(&env, zones, "cockroachdb/cockroach:v25.9.9");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("pod cockroachdb-2, container cockroachdb: CrashLoopBackOff (restarted"),
        "{err}"
    );
    for z in &zones[1..] {
        assert_eq!(image_of(&env, z), "cockroachdb/cockroach:v25.4.1", "{z}");
    }
}

#[test]
fn a_rolling_change_is_refused_while_the_federation_is_unhealthy() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b);
    let config = image_config(&env, zones, "cockroachdb/cockroach:v25.4.1");
    assert_exit(&env.apply(&config, &[]), 0);
    // A node of the second zone goes down (its pod is replaced).
    env.fed
        .cluster(zones[1])
        .set_pod_ready_delay(Duration::from_secs(30));
    env.fed
        .cluster(zones[1])
        .delete("v1", "Pod", Some(zones[1]), "cockroachdb-0")
        .unwrap();
    for z in zones {
        env.fed.cluster(z).clear_requests();
    }
    let config = image_config(&env, zones, "cockroachdb/cockroach:v25.4.2");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("not healthy"), "{err}");
    assert!(err.contains("--allow-unhealthy"), "{err}");
    let changed: Vec<String> = zones
        .iter()
        .flat_map(|z| {
            env.fed
                .cluster(z)
                .requests()
                .into_iter()
                .filter(|r| r.changed)
                .map(move |r| format!("{z}: {} {}", r.method, r.path))
        })
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    for z in zones {
        assert_eq!(image_of(&env, z), "cockroachdb/cockroach:v25.4.1", "{z}");
    }
}

#[test]
fn a_storage_change_is_refused_before_any_write_naming_the_field_and_the_remedy() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b);
    let config = env.config("config.toml", zones, "[cockroachdb]\nstorage = \"100Gi\"");
    assert_exit(&env.apply(&config, &[]), 0);
    for z in zones {
        env.fed.cluster(z).clear_requests();
    }
    let config = env.config("config.toml", zones, "[cockroachdb]\nstorage = \"200Gi\"");
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("spec.volumeClaimTemplates[0].spec.resources.requests.storage"),
        "{err}"
    );
    assert!(
        err.contains("docs/operations.md#expanding-storage"),
        "{err}"
    );
    for z in zones {
        let changed: Vec<_> = env
            .fed
            .cluster(z)
            .requests()
            .into_iter()
            .filter(|r| r.changed)
            .collect();
        assert!(changed.is_empty(), "{z}: {changed:?}");
    }
}

/// A config of `zones` with the given replicas per zone.
fn replicas_config(env: &Env, name: &str, zones: &[(&str, u32)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (z, n) in zones {
        let region = z.rsplit_once('-').map(|(r, _)| r).unwrap_or(z);
        text.push_str(&format!(
            "\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\nregion = \"{region}\"\nreplicas = {n}\n"
        ));
    }
    let path = env.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The join list as setup.py computes it: every replica of every zone, in
/// config order (each zone's namespace is its name here).
fn expected_join(zones: &[(&str, u32)]) -> String {
    zones
        .iter()
        .flat_map(|(z, n)| (0..*n).map(move |i| format!("cockroachdb-{i}.cockroachdb.{z}")))
        .collect::<Vec<_>>()
        .join(",")
}

fn join_of(env: &Env, zone: &str) -> String {
    env.fed
        .cluster(zone)
        .get("v1", "ConfigMap", Some(zone), "cockroachdb-join")
        .expect("the join ConfigMap exists")["data"]["join"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What must not change in a zone that a change elsewhere does not concern:
/// its pods (by UID) and its StatefulSet's revisions.
fn untouched_state(env: &Env, zone: &str) -> (Vec<String>, Value, Value) {
    let s = sts(env, zone);
    (
        pod_uids(env, zone),
        s["status"]["updateRevision"].clone(),
        s["status"]["currentRevision"].clone(),
    )
}

/// Issue 8, item 2: the join list lives in each zone's ConfigMap, not in the
/// pod template, so adding a zone, scaling one zone and removing a zone
/// restart no pod anywhere else, while every remaining zone's ConfigMap
/// carries the new list (read by a pod when it next starts).
#[test]
fn adding_scaling_and_removing_zones_restarts_no_pod_in_other_zones() {
    let four = &FIVE[..4];
    let env = start(four, |b| b);
    let three: Vec<(&str, u32)> = four[..3].iter().map(|z| (*z, 3)).collect();
    let config = replicas_config(&env, "three.toml", &three);
    assert_exit(&env.apply(&config, &[]), 0);
    for (z, _) in &three {
        assert_eq!(join_of(&env, z), expected_join(&three), "{z}");
    }
    let mut before: Vec<_> = four[..3].iter().map(|z| untouched_state(&env, z)).collect();
    for (state, z) in before.iter().zip(&four[..3]) {
        assert_eq!(state.0.len(), 3, "{z}: {state:?}");
        assert!(state.1.is_string(), "{z}: {state:?}");
    }

    // Adding a zone.
    let all: Vec<(&str, u32)> = four.iter().map(|z| (*z, 3)).collect();
    let config = replicas_config(&env, "four.toml", &all);
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    for (i, z) in four[..3].iter().enumerate() {
        assert_eq!(untouched_state(&env, z), before[i], "{z}: {}", stderr(&out));
    }
    for z in four {
        assert_eq!(join_of(&env, z), expected_join(&all), "{z}");
    }
    assert_eq!(pod_uids(&env, four[3]).len(), 3);
    before.push(untouched_state(&env, four[3]));

    // Scaling one zone (the second) up.
    let mut scaled = all.clone();
    scaled[1].1 = 4;
    let config = replicas_config(&env, "scaled.toml", &scaled);
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    for (i, z) in four.iter().enumerate() {
        if i == 1 {
            continue;
        }
        assert_eq!(untouched_state(&env, z), before[i], "{z}: {}", stderr(&out));
    }
    for z in four {
        assert_eq!(join_of(&env, z), expected_join(&scaled), "{z}");
    }
    let grown = untouched_state(&env, four[1]);
    assert_eq!(grown.0.len(), 4, "{grown:?}");
    // Growing adds a pod and leaves the existing ones (same revision).
    assert!(before[1].0.iter().all(|u| grown.0.contains(u)), "{grown:?}");
    assert_eq!(grown.1, before[1].1);
    before[1] = grown;

    // Removing a zone (explicitly, with --prune).
    let kept: Vec<(&str, u32)> = scaled[..3].to_vec();
    let config = replicas_config(&env, "kept.toml", &kept);
    let removed = four[3];
    let removed_nodes: Vec<u64> = (0..3)
        .map(|i| {
            env.fed
                .cluster(removed)
                .crdb_node_id(removed, &format!("cockroachdb-{i}"))
                .expect("a node")
        })
        .collect();
    let mark = env.fed.cluster(kept[0].0).requests().len();
    let out = env.apply(&config, &["--prune"]);
    assert_exit(&out, 0);
    for (i, (z, _)) in kept.iter().enumerate() {
        assert_eq!(untouched_state(&env, z), before[i], "{z}: {}", stderr(&out));
        assert_eq!(join_of(&env, z), expected_join(&kept), "{z}");
    }
    // The removed zone's nodes were decommissioned (from the first zone)
    // before any DNS forwarding changed there; its own cluster is not
    // touched (the config no longer names its context).
    let log = env.fed.activity();
    for id in &removed_nodes {
        assert!(
            activity_seq(&log, "node-decommissioned", &format!("node {id} (")).is_some(),
            "node {id}: {log:?}"
        );
    }
    assert_eq!(untouched_state(&env, removed), before[3]);
    let first: Vec<String> = env.fed.cluster(kept[0].0).requests()[mark..]
        .iter()
        .filter(|r| r.changed)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let job = first
        .iter()
        .position(|r| r.starts_with("POST ") && r.ends_with("/jobs"))
        .expect("a decommission Job in the first zone");
    let dns = first
        .iter()
        .position(|r| r.ends_with("/configmaps/kube-dns"))
        .expect("the DNS forwarding changed");
    assert!(job < dns, "{first:?}");
    let a = env.fed.availability();
    assert_eq!(a["unavailable_ms"], 0, "{a}");
}

/// The sequence number of the first activity `what` whose object contains
/// `object`.
fn activity_seq(log: &[(String, kube_sim::Activity)], what: &str, object: &str) -> Option<u64> {
    log.iter()
        .find(|(_, a)| a.what == what && a.object.contains(object))
        .map(|(_, a)| a.seq)
}

/// Issue 8, item 4: lowering `replicas` decommissions the nodes of the
/// pods that go, waits until CockroachDB reports them decommissioned, and
/// only then removes the pods, one at a time; the federation stays healthy
/// (a node stopped without decommissioning stays down in kube-sim and its
/// ranges under-replicated, which the health gate would wait on) and no
/// other zone is touched.
#[test]
fn a_scale_down_decommissions_the_nodes_before_their_pods_go() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b);
    let all: Vec<(&str, u32)> = zones.iter().map(|z| (*z, 3)).collect();
    let config = replicas_config(&env, "three.toml", &all);
    assert_exit(&env.apply(&config, &[]), 0);
    let zone = zones[1];
    let node_of = |i: u32| {
        env.fed
            .cluster(zone)
            .crdb_node_id(zone, &format!("cockroachdb-{i}"))
            .expect("every pod is a CockroachDB node after apply")
    };
    let going = [(1, node_of(1)), (2, node_of(2))];
    let others = [
        untouched_state(&env, zones[0]),
        untouched_state(&env, zones[2]),
    ];

    let mut scaled = all.clone();
    scaled[1].1 = 1;
    let config = replicas_config(&env, "scaled.toml", &scaled);
    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);
    let log = env.fed.activity();
    for (i, id) in going {
        let decommissioned = activity_seq(&log, "node-decommissioned", &format!("node {id} ("))
            .unwrap_or_else(|| panic!("node {id} was not decommissioned: {log:?}"));
        let terminating = activity_seq(&log, "pod-terminating", &format!("{zone}/cockroachdb-{i}"))
            .unwrap_or_else(|| panic!("cockroachdb-{i} was not removed: {log:?}"));
        assert!(
            decommissioned < terminating,
            "node {id} decommissioned at #{decommissioned}, its pod terminating at #{terminating}: {log:?}"
        );
    }
    // One pod at a time, highest ordinal first.
    let gone_2 = activity_seq(&log, "pod-deleted", &format!("{zone}/cockroachdb-2")).unwrap();
    let going_1 = activity_seq(&log, "pod-terminating", &format!("{zone}/cockroachdb-1")).unwrap();
    assert!(gone_2 < going_1, "{log:?}");
    assert_eq!(pod_uids(&env, zone).len(), 1);
    assert_eq!(untouched_state(&env, zones[0]), others[0]);
    assert_eq!(untouched_state(&env, zones[2]), others[1]);
    // The decommissioned nodes are gone, not down: the federation is healthy.
    let a = env.fed.availability();
    assert_eq!(a["unavailable_ms"], 0, "{a}");
    let status = env.run(&["status", config.to_str().unwrap()]);
    assert_exit(&status, 0);
    // The one-off Jobs are deleted once they succeeded.
    let jobs = env.fed.cluster(zone).list("batch/v1", "Job", Some(zone));
    assert!(jobs.is_empty(), "{jobs:?}");
}

/// Issue 8, item 4: a scale-down that would leave fewer than 3 nodes in the
/// federation is refused before anything changes.
#[test]
fn a_scale_down_below_three_nodes_is_refused_before_any_change() {
    let zones = &FIVE[..1];
    let env = start(zones, |b| b);
    let config = replicas_config(&env, "three.toml", &[(zones[0], 3)]);
    assert_exit(&env.apply(&config, &[]), 0);
    let before = untouched_state(&env, zones[0]);
    let writes = |env: &Env| {
        env.fed
            .cluster(zones[0])
            .requests()
            .into_iter()
            .filter(|r| r.changed)
            .count()
    };
    let written = writes(&env);

    let config = replicas_config(&env, "two.toml", &[(zones[0], 2)]);
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("keep 2 CockroachDB node(s)"), "{err}");
    assert!(
        err.contains(&format!("scale-down in zone {}", zones[0])),
        "{err}"
    );
    assert_eq!(writes(&env), written, "{err}");
    assert_eq!(untouched_state(&env, zones[0]), before);
    assert_eq!(sts(&env, zones[0])["spec"]["replicas"], 3);
}

/// Issue 8, item 3: a change whose pods no node can hold (kube-sim's node
/// offers GKE's n2-standard-8 allocatable) stops at the first zone with
/// the scheduler's reason, without waiting out --wait-timeout, and leaves
/// the other zones alone.
#[test]
fn an_unschedulable_change_stops_at_the_first_zone_with_the_schedulers_reason() {
    let zones = &FIVE[..3];
    let env = start(zones, |b| b);
    let resources = |cpu: &str| {
        env.config(
            "config.toml",
            zones,
            &format!("[cockroachdb]\ncpu_request = \"{cpu}\"\ncpu_limit = \"{cpu}\""),
        )
    };
    assert_exit(&env.apply(&resources("2"), &[]), 0);
    let before: Vec<Vec<String>> = zones[1..].iter().map(|z| pod_uids(&env, z)).collect();

    let out = env.apply(&resources("16"), &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(!err.contains("timed out"), "{err}");
    assert!(err.contains("pod cockroachdb-2: Unschedulable"), "{err}");
    assert!(err.contains("Insufficient cpu"), "{err}");
    for (z, uids) in zones[1..].iter().zip(before) {
        assert_eq!(pod_uids(&env, z), uids, "{z}");
    }
}
