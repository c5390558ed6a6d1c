//! What the simulated clouds refuse: mixed-protocol load balancers (gke,
//! eks), the AWS Load Balancer Controller's `loadBalancerClass`, LB host
//! names that do not resolve yet, and Pod Security admission.

use std::net::UdpSocket;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::{Federation, FederationBuilder, Flavor, PodSecurityLevel};
use serde_json::{Value, json};

use crate::common::{api_code, client, wait_until};

fn builder(flavor: Flavor) -> FederationBuilder {
    Federation::builder()
        .zones(["z1"])
        .flavor(flavor)
        .lb_delay(Duration::from_millis(100))
        .pod_ready_delay(Duration::from_millis(20))
        .job_duration(Duration::from_millis(50))
}

fn lb_service(name: &str, protocols: &[&str], annotations: Value) -> Service {
    let ports: Vec<Value> = protocols
        .iter()
        .map(|p| json!({"name": format!("dns-{}", p.to_lowercase()), "port": 53, "protocol": p}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": "dns"}, "ports": ports},
    }))
    .unwrap()
}

fn ingress(fed: &Federation, name: &str) -> Option<Value> {
    fed.cluster("z1")
        .get("v1", "Service", Some("default"), name)
        .and_then(|s| s.pointer("/status/loadBalancer/ingress/0").cloned())
}

fn warnings(fed: &Federation, ns: &str, kind: &str, name: &str) -> Vec<(String, String)> {
    fed.cluster("z1")
        .list("v1", "Event", Some(ns))
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
        .filter(|e| e["type"] == "Warning")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Create `refused` and a single-protocol `control` Service together; once
/// the control one has its address, the refused one must have none.
async fn assert_refused(fed: &Federation, refused: Service, control: Service, why: &str) {
    let name = refused.metadata.name.clone().unwrap();
    let api: Api<Service> = Api::default_namespaced(client(fed, "z1").await);
    api.create(&PostParams::default(), &refused).await.unwrap();
    api.create(&PostParams::default(), &control).await.unwrap();
    let control_name = control.metadata.name.clone().unwrap();
    wait_until("the single-protocol load balancer's address", || {
        ingress(fed, &control_name).is_some()
    })
    .await;
    wait_until("the SyncLoadBalancerFailed event", || {
        !warnings(fed, "default", "Service", &name).is_empty()
    })
    .await;
    assert_eq!(ingress(fed, &name), None, "{name} must get no address");
    let w = warnings(fed, "default", "Service", &name);
    assert_eq!(w.len(), 1, "one event, not one per reconcile: {w:?}");
    assert_eq!(w[0].0, "SyncLoadBalancerFailed");
    assert_eq!(
        w[0].1,
        format!("Error syncing load balancer: failed to ensure load balancer: {why}")
    );
    assert!(
        warnings(fed, "default", "Service", &control_name).is_empty(),
        "the accepted Service has no warning"
    );
}

#[tokio::test]
async fn gke_refuses_mixed_protocol_load_balancers_with_an_event() {
    let fed = builder(Flavor::Gke).cloud_lb_rules(true).start().unwrap();
    assert_refused(
        &fed,
        lb_service("dns-lb", &["UDP", "TCP"], json!({})),
        lb_service("dns-udp", &["UDP"], json!({})),
        "mixed protocol is not supported for LoadBalancer",
    )
    .await;
    let svc = fed
        .cluster("z1")
        .get("v1", "Service", Some("default"), "dns-lb")
        .unwrap();
    assert_eq!(
        svc["status"]["conditions"][0]["type"],
        "LoadBalancerPortsError"
    );
    assert_eq!(svc["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn eks_in_tree_refuses_mixed_protocols_and_udp_without_nlb() {
    let fed = builder(Flavor::Eks).cloud_lb_rules(true).start().unwrap();
    let nlb = json!({"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"});
    assert_refused(
        &fed,
        lb_service("mixed", &["UDP", "TCP"], nlb.clone()),
        lb_service("tcp", &["TCP"], nlb.clone()),
        "mixed protocol is not supported for LoadBalancer",
    )
    .await;
    assert_refused(
        &fed,
        lb_service("udp-elb", &["UDP"], json!({})),
        lb_service("udp-nlb", &["UDP"], nlb),
        "Protocol UDP not supported by LoadBalancer",
    )
    .await;
}

#[tokio::test]
async fn aks_and_rules_off_accept_mixed_protocol_load_balancers() {
    for (flavor, rules) in [
        (Flavor::Aks, true),
        (Flavor::Gke, false),
        (Flavor::Eks, false),
    ] {
        let fed = builder(flavor).cloud_lb_rules(rules).start().unwrap();
        let api: Api<Service> = Api::default_namespaced(client(&fed, "z1").await);
        api.create(
            &PostParams::default(),
            &lb_service("dns-lb", &["UDP", "TCP"], json!({})),
        )
        .await
        .unwrap();
        wait_until(
            &format!("{flavor} (rules {rules}) gives an address"),
            || ingress(&fed, "dns-lb").is_some(),
        )
        .await;
        assert!(warnings(&fed, "default", "Service", "dns-lb").is_empty());
    }
}

#[tokio::test]
async fn a_refused_load_balancer_gets_its_address_once_fixed() {
    let fed = builder(Flavor::Gke).cloud_lb_rules(true).start().unwrap();
    let api: Api<Service> = Api::default_namespaced(client(&fed, "z1").await);
    api.create(
        &PostParams::default(),
        &lb_service("dns-lb", &["UDP", "TCP"], json!({})),
    )
    .await
    .unwrap();
    wait_until("the refusal", || {
        !warnings(&fed, "default", "Service", "dns-lb").is_empty()
    })
    .await;
    let mut fixed = api.get("dns-lb").await.unwrap();
    fixed
        .spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .retain(|p| p.protocol.as_deref() == Some("UDP"));
    api.replace("dns-lb", &PostParams::default(), &fixed)
        .await
        .unwrap();
    wait_until("the address after the fix", || {
        ingress(&fed, "dns-lb").is_some()
    })
    .await;
    let svc = fed
        .cluster("z1")
        .get("v1", "Service", Some("default"), "dns-lb")
        .unwrap();
    assert!(svc["status"].get("conditions").is_none(), "{svc}");
}

#[tokio::test]
async fn eks_lb_controller_sets_an_immutable_class_and_serves_mixed_protocols() {
    let fed = builder(Flavor::Eks)
        .cloud_lb_rules(true)
        .eks_lb_controller(true)
        .start()
        .unwrap();
    let c = client(&fed, "z1").await;
    let api: Api<Service> = Api::default_namespaced(c);
    let pp = PatchParams::apply("crdb-multiregion");
    let svc = lb_service("dns-lb", &["UDP", "TCP"], json!({}));
    api.patch("dns-lb", &pp, &Patch::Apply(&svc)).await.unwrap();
    let live = api.get("dns-lb").await.unwrap();
    assert_eq!(
        live.spec.as_ref().unwrap().load_balancer_class.as_deref(),
        Some("service.k8s.aws/nlb")
    );
    // One TCP_UDP listener for port 53: the controller gives it an address.
    wait_until("the NLB host name", || {
        ingress(&fed, "dns-lb").is_some_and(|i| i.get("hostname").is_some())
    })
    .await;
    assert!(warnings(&fed, "default", "Service", "dns-lb").is_empty());
    // The webhook's field belongs to no manager: re-applying without it keeps it.
    api.patch("dns-lb", &pp, &Patch::Apply(&svc)).await.unwrap();
    let live = api.get("dns-lb").await.unwrap();
    assert_eq!(
        live.spec.as_ref().unwrap().load_balancer_class.as_deref(),
        Some("service.k8s.aws/nlb")
    );
    // A replace without it, or with another class, is refused.
    let mut replaced = live.clone();
    replaced.spec.as_mut().unwrap().load_balancer_class = None;
    let e = api
        .replace("dns-lb", &PostParams::default(), &replaced)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (422, "Invalid".to_string()));
    assert!(
        e.to_string()
            .contains("spec.loadBalancerClass: Invalid value: \"null\": may not change once set"),
        "{e}"
    );
    let mut other = live;
    other.spec.as_mut().unwrap().load_balancer_class = Some("example.com/lb".into());
    let e = api
        .replace("dns-lb", &PostParams::default(), &other)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("may not change once set"), "{e}");
}

#[tokio::test]
async fn a_class_no_controller_serves_gets_no_address() {
    let fed = builder(Flavor::Gke).start().unwrap();
    let api: Api<Service> = Api::default_namespaced(client(&fed, "z1").await);
    let mut svc = lb_service("classy", &["TCP"], json!({}));
    svc.spec.as_mut().unwrap().load_balancer_class = Some("service.k8s.aws/nlb".into());
    api.create(&PostParams::default(), &svc).await.unwrap();
    api.create(
        &PostParams::default(),
        &lb_service("plain", &["TCP"], json!({})),
    )
    .await
    .unwrap();
    wait_until("the plain Service's address", || {
        ingress(&fed, "plain").is_some()
    })
    .await;
    assert_eq!(ingress(&fed, "classy"), None);
}

fn dns_rcode(fed: &Federation, host: &str) -> u8 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in host.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, fed.dns_addr()).unwrap();
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).unwrap();
    buf[3] & 0x0f
}

#[tokio::test]
async fn lb_host_names_answer_nxdomain_until_the_dns_delay_has_passed() {
    let fed = builder(Flavor::Eks)
        .lb_dns_delay(Duration::from_secs(4))
        .start()
        .unwrap();
    let api: Api<Service> = Api::default_namespaced(client(&fed, "z1").await);
    api.create(
        &PostParams::default(),
        &lb_service("dns-lb", &["TCP"], json!({})),
    )
    .await
    .unwrap();
    wait_until("the host name", || ingress(&fed, "dns-lb").is_some()).await;
    let host = ingress(&fed, "dns-lb").unwrap()["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        dns_rcode(&fed, &host),
        3,
        "NXDOMAIN right after it is published"
    );
    wait_until("the host name to resolve", || dns_rcode(&fed, &host) == 0).await;
    // Once the load balancer is gone, so is its name.
    api.delete("dns-lb", &Default::default()).await.unwrap();
    wait_until("the name to go away", || dns_rcode(&fed, &host) == 3).await;
}

fn restricted_fed() -> Federation {
    builder(Flavor::Gke)
        .pod_security(PodSecurityLevel::Restricted)
        .start()
        .unwrap()
}

fn pod_spec(hardened: bool) -> Value {
    if hardened {
        json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "db", "image": "registry.example/db:1",
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}}}],
        })
    } else {
        json!({"containers": [{"name": "db", "image": "registry.example/db:1"}]})
    }
}

fn sts(name: &str, hardened: bool) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(hardened)},
        },
    }))
    .unwrap()
}

fn pods_of(fed: &Federation, ns: &str, app: &str) -> usize {
    fed.cluster("z1")
        .list("v1", "Pod", Some(ns))
        .iter()
        .filter(|p| p.pointer("/metadata/labels/app") == Some(&json!(app)))
        .count()
}

#[tokio::test]
async fn restricted_pod_security_refuses_statefulset_pods_with_failed_create_events() {
    let fed = restricted_fed();
    let api: Api<StatefulSet> = Api::default_namespaced(client(&fed, "z1").await);
    api.create(&PostParams::default(), &sts("root", false))
        .await
        .unwrap();
    api.create(&PostParams::default(), &sts("hardened", true))
        .await
        .unwrap();
    wait_until("the hardened StatefulSet's pods", || {
        pods_of(&fed, "default", "hardened") == 2
    })
    .await;
    wait_until("the FailedCreate event", || {
        !warnings(&fed, "default", "StatefulSet", "root").is_empty()
    })
    .await;
    assert_eq!(pods_of(&fed, "default", "root"), 0);
    let w = warnings(&fed, "default", "StatefulSet", "root");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "FailedCreate");
    assert!(
        w[0].1.starts_with(
            "create Pod root-0 in StatefulSet root failed error: pods \"root-0\" is forbidden: \
             violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
        ),
        "{}",
        w[0].1
    );
    for rule in [
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "seccompProfile",
    ] {
        assert!(w[0].1.contains(rule), "{rule} in {}", w[0].1);
    }
    assert!(warnings(&fed, "default", "StatefulSet", "hardened").is_empty());
}

#[tokio::test]
async fn restricted_pod_security_refuses_job_pods_and_direct_pods() {
    let fed = restricted_fed();
    let c = client(&fed, "z1").await;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "init"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "init", "image": "cockroachdb/cockroach:v24.1.0",
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}}],
        }}},
    }))
    .unwrap();
    Api::<Job>::default_namespaced(c.clone())
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    wait_until("the Job's FailedCreate event", || {
        !warnings(&fed, "default", "Job", "init").is_empty()
    })
    .await;
    let w = warnings(&fed, "default", "Job", "init");
    assert_eq!(
        w.len(),
        1,
        "one event although every attempt names a new pod: {w:?}"
    );
    assert_eq!(w[0].0, "FailedCreate");
    assert!(
        w[0].1.starts_with("Error creating: pods \"init-"),
        "{}",
        w[0].1
    );
    assert!(
        w[0].1.ends_with(
            "violates PodSecurity \"restricted:latest\": seccompProfile (pod or container \"init\" \
             must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "only the one broken rule is named: {}",
        w[0].1
    );
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec(false),
    }))
    .unwrap();
    let e = Api::<Pod>::default_namespaced(c)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (403, "Forbidden".to_string()));
    assert!(
        e.to_string()
            .contains("pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\""),
        "{e}"
    );
}

#[tokio::test]
async fn the_namespace_enforce_label_overrides_the_cluster_level() {
    let fed = restricted_fed();
    let c = client(&fed, "z1").await;
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "legacy", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}},
    }))
    .unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(c.clone(), "legacy")
        .create(&PostParams::default(), &sts("root", false))
        .await
        .unwrap();
    wait_until("baseline admits the default pod", || {
        pods_of(&fed, "legacy", "root") == 2
    })
    .await;
    // and a privileged container is refused at baseline
    let mut spec = pod_spec(false);
    spec["containers"][0]["securityContext"] = json!({"privileged": true});
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec,
    }))
    .unwrap();
    let e = Api::<Pod>::namespaced(c, "legacy")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "violates PodSecurity \"baseline:latest\": privileged (container \"db\" must not set securityContext.privileged=true)"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn privileged_is_the_default_and_admits_everything() {
    let fed = builder(Flavor::Gke).start().unwrap();
    let api: Api<StatefulSet> = Api::default_namespaced(client(&fed, "z1").await);
    api.create(&PostParams::default(), &sts("root", false))
        .await
        .unwrap();
    wait_until("the pods", || pods_of(&fed, "default", "root") == 2).await;
    assert!(warnings(&fed, "default", "StatefulSet", "root").is_empty());
}

fn managers(cm: &Value) -> Vec<(String, String)> {
    cm.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or("").to_string(),
                m["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn eks_addon_update_overwrites_an_edited_corefile() {
    let fed = builder(Flavor::Eks).start().unwrap();
    let c = fed.cluster("z1");
    let cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    assert_eq!(
        managers(&cm),
        vec![("eks".to_string(), "Apply".to_string())],
        "EKS owns the add-on's ConfigMap by server-side apply"
    );
    // Another manager applies an edited Corefile: a conflict with eks
    // unless forced, as on EKS.
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client(&fed, "z1").await, "kube-system");
    let edited = format!(
        "{}example.internal:53 {{\n    forward . 10.1.2.3\n}}\n",
        kube_sim::STANDARD_COREFILE
    );
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "coredns", "namespace": "kube-system"},
                       "data": {"Corefile": edited}});
    let e = api
        .patch(
            "coredns",
            &PatchParams::apply("crdb-multiregion"),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 409, "{e}");
    assert!(e.to_string().contains("conflict with \"eks\""), "{e}");
    api.patch(
        "coredns",
        &PatchParams::apply("crdb-multiregion").force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();
    let cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    assert_eq!(cm["data"]["Corefile"], edited);
    // The add-on update takes the Corefile back.
    c.addon_update().unwrap();
    let cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    assert_eq!(cm["data"]["Corefile"], kube_sim::STANDARD_COREFILE);
    assert!(
        managers(&cm).contains(&("eks".to_string(), "Apply".to_string())),
        "{:?}",
        managers(&cm)
    );
    // Only eks has the add-on.
    let gke = builder(Flavor::Gke).start().unwrap();
    let e = gke.cluster("z1").addon_update().unwrap_err();
    assert!(
        e.message
            .contains("only eks clusters have the CoreDNS add-on"),
        "{e}"
    );
}

#[test]
fn addon_update_runs_through_the_control_endpoint() {
    let fed = Federation::builder()
        .zones(["z1"])
        .flavor(Flavor::Eks)
        .seed_user_dns(true)
        .start()
        .unwrap();
    let c = fed.cluster("z1");
    let seeded = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    assert!(
        seeded["data"]["Corefile"]
            .as_str()
            .unwrap()
            .contains("acme.internal")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "addon-update",
            "--control",
            &fed.control_url(),
            "--zone",
            "z1",
        ])
        .output()
        .expect("kube-sim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "coredns")
        .unwrap();
    assert_eq!(
        cm["data"]["Corefile"],
        kube_sim::STANDARD_COREFILE,
        "the user's stub domain is gone, as with OVERWRITE on EKS"
    );
}

#[tokio::test]
async fn gke_autopilot_has_cloud_dns_instead_of_kube_dns_pods() {
    let fed = builder(Flavor::GkeAutopilot)
        .cloud_lb_rules(true)
        .seed_user_dns(true)
        .start()
        .unwrap();
    let c = fed.cluster("z1");
    assert!(
        c.get("apps/v1", "Deployment", Some("kube-system"), "kube-dns")
            .is_none()
    );
    assert!(
        c.list("apps/v1", "Deployment", Some("kube-system"))
            .is_empty()
    );
    let svc = c
        .get("v1", "Service", Some("kube-system"), "kube-dns")
        .unwrap();
    assert_eq!(svc["spec"]["clusterIP"], c.dns_service_ip().to_string());
    let cm = c
        .get("v1", "ConfigMap", Some("kube-system"), "kube-dns")
        .unwrap();
    assert!(
        cm["data"]["stubDomains"]
            .as_str()
            .unwrap()
            .contains("acme.internal")
    );
    // Mixed protocols are refused as on gke.
    let api: Api<Service> = Api::namespaced(client(&fed, "z1").await, "kube-system");
    api.create(
        &PostParams::default(),
        &lb_service("kube-dns-lb", &["UDP", "TCP"], json!({})),
    )
    .await
    .unwrap();
    wait_until("the refusal", || {
        !warnings(&fed, "kube-system", "Service", "kube-dns-lb").is_empty()
    })
    .await;
    let pods = c.list("v1", "Pod", Some("kube-system"));
    assert!(pods.is_empty(), "no kube-dns pods: {pods:?}");
}

#[tokio::test]
async fn k3s_restart_rewrites_coredns_but_keeps_coredns_custom() {
    let fed = builder(Flavor::K3s).seed_user_dns(true).start().unwrap();
    let c = fed.cluster("z1");
    let get = |name: &str| c.get("v1", "ConfigMap", Some("kube-system"), name).unwrap();
    assert_eq!(get("coredns")["data"]["Corefile"], kube_sim::K3S_COREFILE);
    assert!(get("coredns-custom")["data"]["user.server"].is_string());
    // Someone edits the Corefile, and adds a server block to coredns-custom.
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client(&fed, "z1").await, "kube-system");
    let edited = format!(
        "{}x.svc.cluster.local:53 {{\n    forward . 10.1.2.3\n}}\n",
        kube_sim::K3S_COREFILE
    );
    let pp = PatchParams::apply("crdb-multiregion").force();
    api.patch(
        "coredns",
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "coredns"}, "data": {"Corefile": edited}})),
    )
    .await
    .unwrap();
    api.patch(
        "coredns-custom",
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "coredns-custom"},
                             "data": {"crdb.server": "y.svc.cluster.local:53 {\n    forward . 10.1.2.4\n}\n"}})),
    )
    .await
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "restart-zone",
            "--control",
            &fed.control_url(),
            "--zone",
            "z1",
        ])
        .output()
        .expect("kube-sim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kube-system/coredns"));
    assert_eq!(
        get("coredns")["data"]["Corefile"],
        kube_sim::K3S_COREFILE,
        "k3s writes its manifest again"
    );
    let custom = get("coredns-custom");
    assert!(custom["data"]["crdb.server"].is_string(), "{custom}");
    assert!(custom["data"]["user.server"].is_string(), "{custom}");
    // Other flavours' restarts rewrite nothing.
    let gke = builder(Flavor::Gke).start().unwrap();
    assert!(gke.cluster("z1").restart().unwrap().is_empty());
}
