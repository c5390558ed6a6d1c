//! `apply --zone` and `diff --zone` (issue 12): only the named zones'
//! clusters are written; the others are only read, for their DNS load
//! balancer addresses, and must have one.

use super::*;

/// Requests that stored something, per zone, since the last clear.
fn writes(env: &Env) -> BTreeMap<String, Vec<String>> {
    env.fed
        .clusters()
        .iter()
        .map(|c| {
            let w = c
                .requests()
                .iter()
                .filter(|r| r.changed)
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            (c.zone().to_string(), w)
        })
        .collect()
}

fn clear_requests(env: &Env) {
    for c in env.fed.clusters() {
        c.clear_requests();
    }
}

fn replicas(env: &Env, zone: &str) -> Option<i64> {
    env.fed
        .cluster(zone)
        .get("apps/v1", "StatefulSet", Some(zone), "cockroachdb")?["spec"]["replicas"]
        .as_i64()
}

#[test]
fn apply_zone_writes_only_that_zones_cluster_and_refuses_while_another_zone_has_no_dns_lb() {
    let env = Env::start(Flavor::Gke, &ZONES, |b| b);
    let config = env.config("fed.toml", &ZONES, "");

    // A fresh federation: the other zones have no DNS load balancer yet,
    // so us-west1-a's forwarding could not be configured. Refused before
    // anything is written anywhere.
    clear_requests(&env);
    let out = env.apply(&config, &["--zone", "us-west1-a"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("error: --zone us-west1-a: the DNS forwarding of the zones applied needs the DNS load balancer address of every other zone")
            && err.contains("us-east1-b (context us-east1-b): its DNS load balancer (Service kube-system/kube-dns-lb) has no address; apply that zone first")
            && err.contains("us-central1-a (context us-central1-a)")
            && err.contains("Nothing was changed. Run apply without --zone"),
        "{err}"
    );
    for (zone, w) in writes(&env) {
        assert!(w.is_empty(), "{zone}: refused apply --zone wrote {w:?}");
    }
    assert!(replicas(&env, "us-west1-a").is_none());

    let out = env.apply(&config, &[]);
    assert_exit(&out, 0);

    // One zone gets four replicas. Every zone's join list names the nodes
    // of every zone, so a full apply would change all three join lists;
    // --zone changes only the named zone.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "name = \"us-west1-a\"\n",
        "name = \"us-west1-a\"\nreplicas = 4\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = env.run(&["diff", config.to_str().unwrap(), "--zone", "us-west1-a"]);
    assert_exit(&out, 1);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("us-west1-a: change StatefulSet us-west1-a/cockroachdb"),
        "{shown}"
    );
    // Every line is about the named zone (the diff's values may name the
    // other zones' nodes: the join list holds them).
    assert!(
        shown
            .lines()
            .filter(|l| !l.starts_with([' ', '+', '-', '@']))
            .all(|l| l.starts_with("us-west1-a:")),
        "diff --zone us-west1-a showed other zones:\n{shown}"
    );

    clear_requests(&env);
    let out = env.apply(&config, &["--zone", "us-west1-a"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains(
            "us-east1-b: DNS load balancer address 10.150.0.10 (read only: not in --zone)"
        ),
        "{err}"
    );
    assert_eq!(replicas(&env, "us-west1-a"), Some(4));
    assert_eq!(replicas(&env, "us-east1-b"), Some(3));
    let writes = writes(&env);
    assert!(
        writes["us-west1-a"]
            .iter()
            .any(|w| w.contains("statefulsets/cockroachdb")),
        "{writes:?}"
    );
    for zone in ["us-east1-b", "us-central1-a"] {
        assert!(
            writes[zone].is_empty(),
            "{zone}: written {:?}",
            writes[zone]
        );
    }
    // The summary lists the applied zone only.
    assert!(
        err.lines().any(|l| l.starts_with("us-west1-a "))
            && !err.lines().any(|l| l.starts_with("us-east1-b ")),
        "{err}"
    );
    // us-west1-a's DNS still forwards to both other zones.
    let cm = env
        .fed
        .cluster("us-west1-a")
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .expect("kube-dns ConfigMap");
    let stub = cm["data"]["stubDomains"].as_str().unwrap_or_default();
    assert!(
        stub.contains("us-east1-b.svc.cluster.local")
            && stub.contains("us-central1-a.svc.cluster.local"),
        "{stub}"
    );
}

#[test]
fn apply_and_check_zone_not_in_the_config_exit_2_with_a_suggestion_before_connecting() {
    let env = Env::start(Flavor::Gke, &ZONES[..1], |b| b);
    let config = env.config("fed.toml", &ZONES[..1], "");
    clear_requests(&env);
    for cmd in ["apply", "diff", "check"] {
        let out = env.run(&[cmd, config.to_str().unwrap(), "--zone", "us-east1"]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.starts_with("error: --zone us-east1: no zone \"us-east1\" in ")
                && err.contains("(did you mean \"us-east1-b\"?); its zones are us-east1-b"),
            "{cmd}: {err}"
        );
    }
    let requests: usize = env.fed.clusters().iter().map(|c| c.requests().len()).sum();
    assert_eq!(requests, 0, "a bad --zone reached a cluster");
}
