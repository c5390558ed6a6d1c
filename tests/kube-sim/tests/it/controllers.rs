//! Controller behaviour: StatefulSets (pods, IPs, PVCs, scale), Deployment
//! rollouts, Jobs, LoadBalancers per flavour (and the EKS hostname DNS
//! responder), and what each flavour seeds in kube-system.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::{Federation, Flavor};
use serde_json::{Value, json};

use crate::common::{client, fast, wait_until};

fn sts(name: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": replicas, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "db", "image": "registry.example/db:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "datadir"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))
    .unwrap()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let mask = u32::MAX << (32 - bits.parse::<u32>().unwrap());
    let ip: Ipv4Addr = ip.parse().unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    u32::from(ip) & mask == u32::from(net) & mask
}

fn ready_replicas(fed: &Federation, zone: &str, ns: &str, name: &str) -> i64 {
    fed.cluster(zone)
        .get("apps/v1", "StatefulSet", Some(ns), name)
        .and_then(|s| s.pointer("/status/readyReplicas").and_then(Value::as_i64))
        .unwrap_or(-1)
}

#[tokio::test]
async fn statefulset_pods_get_distinct_ips_in_each_clusters_cidr() {
    let zones = ["a-1", "b-1", "c-1"];
    let fed = fast(&zones, Flavor::Gke);
    let mut cidrs = Vec::new();
    for zone in zones {
        let c = client(&fed, zone).await;
        Api::<StatefulSet>::default_namespaced(c)
            .create(&PostParams::default(), &sts("db", 3))
            .await
            .unwrap();
    }
    for zone in zones {
        let cluster = fed.cluster(zone);
        wait_until(&format!("3 ready replicas in {zone}"), || {
            ready_replicas(&fed, zone, "default", "db") == 3
        })
        .await;
        let pods = cluster.list("v1", "Pod", Some("default"));
        let mut ips: Vec<String> = pods
            .iter()
            .filter(|p| p.pointer("/metadata/labels/app") == Some(&json!("db")))
            .map(|p| {
                p.pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string()
            })
            .collect();
        let names: Vec<&str> = pods
            .iter()
            .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        assert_eq!(names, ["db-0", "db-1", "db-2"]);
        assert!(
            ips.iter().all(|ip| in_cidr(ip, &cluster.pod_cidr())),
            "{ips:?} outside {}",
            cluster.pod_cidr()
        );
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 3);
        let pvcs = cluster.list("v1", "PersistentVolumeClaim", Some("default"));
        assert_eq!(pvcs.len(), 3);
        assert!(
            pvcs.iter()
                .all(|p| p.pointer("/status/phase") == Some(&json!("Bound")))
        );
        cidrs.push(cluster.pod_cidr());
    }
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "each cluster has its own pod CIDR");

    // Pod IPs are stable: a recreated pod gets its old address back.
    let cluster = fed.cluster("a-1");
    let ip_of = |n: &str| {
        cluster.get("v1", "Pod", Some("default"), n).and_then(|p| {
            p.pointer("/status/podIP")
                .and_then(Value::as_str)
                .map(String::from)
        })
    };
    let before = ip_of("db-1").unwrap();
    let uid = cluster.get("v1", "Pod", Some("default"), "db-1").unwrap()["metadata"]["uid"].clone();
    cluster
        .delete("v1", "Pod", Some("default"), "db-1")
        .unwrap();
    wait_until("db-1 to be recreated and running", || {
        cluster
            .get("v1", "Pod", Some("default"), "db-1")
            .is_some_and(|p| p["metadata"]["uid"] != uid && p.pointer("/status/podIP").is_some())
    })
    .await;
    assert_eq!(ip_of("db-1").unwrap(), before);

    // Scale to zero through the scale subresource removes every pod.
    let c = client(&fed, "a-1").await;
    let api: Api<StatefulSet> = Api::default_namespaced(c);
    api.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    wait_until("pods of db to go away", || {
        cluster
            .list("v1", "Pod", Some("default"))
            .iter()
            .all(|p| p.pointer("/metadata/labels/app") != Some(&json!("db")))
    })
    .await;
    wait_until("status.replicas 0", || {
        cluster
            .get("apps/v1", "StatefulSet", Some("default"), "db")
            .is_some_and(|s| s.pointer("/status/replicas") == Some(&json!(0)))
    })
    .await;
    assert_eq!(
        api.get_scale("db").await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
}

#[tokio::test]
async fn deployment_restarts_are_counted_as_rollouts() {
    let fed = fast(&["z1"], Flavor::Eks);
    let cluster = fed.cluster("z1");
    let c = client(&fed, "z1").await;
    let api: Api<Deployment> = Api::namespaced(c, "kube-system");
    wait_until("coredns available", || {
        cluster
            .get("apps/v1", "Deployment", Some("kube-system"), "coredns")
            .is_some_and(|d| d.pointer("/status/availableReplicas") == Some(&json!(2)))
    })
    .await;
    let old_pods: Vec<Value> = cluster.list("v1", "Pod", Some("kube-system"));
    assert_eq!(cluster.rollouts("kube-system", "coredns"), 0);
    // Metadata-only changes are not rollouts.
    api.patch(
        "coredns",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    let restarted = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    let d = api
        .patch(
            "coredns",
            &PatchParams::default(),
            &Patch::Strategic(restarted),
        )
        .await
        .unwrap();
    let generation = d.metadata.generation.unwrap();
    wait_until("rollout to finish", || {
        cluster
            .get("apps/v1", "Deployment", Some("kube-system"), "coredns")
            .is_some_and(|d| {
                d.pointer("/status/observedGeneration") == Some(&json!(generation))
                    && d.pointer("/status/updatedReplicas") == Some(&json!(2))
                    && d.pointer("/status/availableReplicas") == Some(&json!(2))
                    && d.pointer("/status/replicas") == Some(&json!(2))
            })
    })
    .await;
    assert_eq!(cluster.rollouts("kube-system", "coredns"), 1);
    let new_pods = cluster.list("v1", "Pod", Some("kube-system"));
    for p in &old_pods {
        assert!(
            !new_pods
                .iter()
                .any(|n| n["metadata"]["uid"] == p["metadata"]["uid"]),
            "old pods are replaced"
        );
    }
}

#[tokio::test]
async fn jobs_complete() {
    let fed = fast(&["z1"], Flavor::Generic);
    let c = client(&fed, "z1").await;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "init"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "init", "image": "busybox"}]}}},
    }))
    .unwrap();
    let api: Api<Job> = Api::default_namespaced(c);
    api.create(&PostParams::default(), &job).await.unwrap();
    let done = tokio::time::timeout(
        crate::common::WAIT,
        kube::runtime::wait::await_condition(
            api.clone(),
            "init",
            kube::runtime::wait::conditions::is_job_completed(),
        ),
    )
    .await
    .expect("job completes in time")
    .unwrap()
    .unwrap();
    assert_eq!(done.status.unwrap().succeeded, Some(1));
}

fn lb_service(cluster: &kube_sim::Cluster, name: &str) {
    cluster
        .put(
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 53, "protocol": "UDP"}]},
            }),
            "test",
        )
        .unwrap();
}

fn ingress(cluster: &kube_sim::Cluster, name: &str) -> Option<Value> {
    cluster
        .get("v1", "Service", Some("default"), name)
        .and_then(|s| s.pointer("/status/loadBalancer/ingress/0").cloned())
}

#[tokio::test]
async fn load_balancers_get_ips_or_resolvable_eks_hostnames() {
    let fed = fast(&["gke-z", "other-z"], Flavor::Gke);
    let cluster = fed.cluster("gke-z");
    lb_service(&cluster, "dns-lb");
    wait_until("an LB IP", || ingress(&cluster, "dns-lb").is_some()).await;
    let ip = ingress(&cluster, "dns-lb").unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let other = fed.cluster("other-z");
    lb_service(&other, "dns-lb");
    wait_until("an LB IP in the other cluster", || {
        ingress(&other, "dns-lb").is_some()
    })
    .await;
    assert_ne!(
        ingress(&other, "dns-lb").unwrap()["ip"].as_str().unwrap(),
        ip
    );

    let eks = fast(&["us-east-1a"], Flavor::Eks);
    let cluster = eks.cluster("us-east-1a");
    lb_service(&cluster, "dns-lb");
    wait_until("an LB hostname", || ingress(&cluster, "dns-lb").is_some()).await;
    let host = ingress(&cluster, "dns-lb").unwrap()["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host.ends_with(kube_sim::LB_DOMAIN), "{host}");
    let expected = kube_sim::resolve_lb_hostname(&host).unwrap();

    // Ask the federation's DNS responder, as a resolver would.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in host.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, eks.dns_addr()).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0xab, 0xcd]);
    assert_eq!(&buf[n - 4..n], &expected.octets());
}

#[tokio::test]
async fn flavors_seed_kube_system_with_user_dns() {
    for flavor in [Flavor::Gke, Flavor::Eks, Flavor::Aks, Flavor::Generic] {
        let fed = Federation::builder()
            .zones(["z1"])
            .flavor(flavor)
            .seed_user_dns(true)
            .start()
            .unwrap();
        let c = fed.cluster("z1");
        let svc = c
            .get("v1", "Service", Some("kube-system"), "kube-dns")
            .expect("kube-dns service");
        assert_eq!(svc["spec"]["clusterIP"], c.dns_service_ip().to_string());
        let dns_deploy = if flavor == Flavor::Gke {
            "kube-dns"
        } else {
            "coredns"
        };
        let d = c
            .get("apps/v1", "Deployment", Some("kube-system"), dns_deploy)
            .expect("dns deployment");
        assert_eq!(d["spec"]["selector"]["matchLabels"]["k8s-app"], "kube-dns");
        let pods = c.list("v1", "Pod", Some("kube-system"));
        assert!(
            !pods.is_empty()
                && pods
                    .iter()
                    .all(|p| p["metadata"]["labels"]["k8s-app"] == "kube-dns")
        );
        let user = match flavor {
            Flavor::Gke => c
                .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
                .unwrap()["data"]["stubDomains"]
                .clone(),
            Flavor::Aks => {
                assert!(
                    c.get("v1", "ConfigMap", Some("kube-system"), "coredns")
                        .is_some()
                );
                c.get("v1", "ConfigMap", Some("kube-system"), "coredns-custom")
                    .unwrap()["data"]["user.server"]
                    .clone()
            }
            _ => c
                .get("v1", "ConfigMap", Some("kube-system"), "coredns")
                .unwrap()["data"]["Corefile"]
                .clone(),
        };
        assert!(
            user.as_str().unwrap().contains(kube_sim::USER_STUB_DOMAIN),
            "{flavor}: {user}"
        );
    }
}
